// SPDX-License-Identifier: Apache-2.0
// Helpers of the end-to-end tests of our back-end programs: a temporary
// directory, a program run as a child process with its output in files,
// and a back-end program started on a socket in such a directory.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace vl::e2e
{

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A directory removed with its contents at the end of the test.
class TempDir
{
  public:
    // In `parent` (default: the system's temporary directory).
    explicit TempDir(const fs::path& parent = fs::temp_directory_path())
    {
        std::string pattern = parent / "vl-e2e-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp in " + parent.string() + " failed");
        path_ = pattern;
    }
    ~TempDir() { fs::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

inline std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A program run as a child process, its stdout and stderr in files of
// `dir` (named after `name`). Killed (SIGKILL) if still running at the end.
class Program
{
  public:
    Program(const TempDir& dir, const std::string& program, std::vector<std::string> args,
            const std::string& name = "program")
        : out_(dir.file(name + ".stdout")), err_(dir.file(name + ".stderr"))
    {
        std::string path = program;
        std::vector<char*> argv{path.data()};
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0600);
        posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0600);
        EXPECT_EQ(::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ), 0);
        posix_spawn_file_actions_destroy(&actions);
    }
    ~Program()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            (void)wait();
        }
    }
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    // The exit status (or 128 + signal).
    int wait()
    {
        int status = 0;
        if (::waitpid(pid_, &status, 0) != pid_)
            return -1;
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    // Sends `signal` and waits for the exit.
    int stop(int signal = SIGTERM)
    {
        ::kill(pid_, signal);
        return wait();
    }
    // Whether it has not exited yet. An exited child is a zombie until
    // wait(), which kill(pid, 0) still finds: look without reaping.
    [[nodiscard]] bool running() const
    {
        siginfo_t info{};
        return pid_ > 0 && ::waitid(P_PID, static_cast<id_t>(pid_), &info,
                                    WEXITED | WNOHANG | WNOWAIT) == 0 &&
               info.si_pid == 0;
    }
    [[nodiscard]] std::string out() const { return slurp(out_); }
    [[nodiscard]] std::string err() const { return slurp(err_); }

  private:
    std::string out_;
    std::string err_;
    pid_t pid_ = -1;
};

// A back-end program started with --socket-path DIR/<socket_name> and
// `extra` arguments, waited for until it listens.
struct Backend {
    Backend(const TempDir& dir, const std::string& path, const std::string& socket_name,
            std::vector<std::string> extra = {})
        : socket(dir.file(socket_name)),
          program(
              dir, path,
              [&] {
                  std::vector<std::string> args{"--socket-path", dir.file(socket_name)};
                  args.insert(args.end(), extra.begin(), extra.end());
                  return args;
              }(),
              "backend")
    {
        for (int i = 0; i < 500 && !fs::exists(socket) && program.running(); ++i)
            std::this_thread::sleep_for(10ms);
        EXPECT_TRUE(fs::exists(socket)) << program.err();
    }
    std::string socket;
    Program program;
};

} // namespace vl::e2e

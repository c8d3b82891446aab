#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""unit-run: start systemd services where PID 1 is not systemd.

The guest test of the packages (tests/guest/packages.sh) boots with a
busybox init, so this stands in for the service manager: it reads the
installed unit files (and their drop-ins), and for each service does what
systemd would do to start it: applies Environment= and EnvironmentFile=,
substitutes the specifiers (%i ...) and $VAR/${VAR} in the Exec lines,
creates RuntimeDirectory=/StateDirectory= for the unit's user, runs the
ExecStartPre= lines (prefix '+': as root, '-': failure ignored) and then
ExecStart= as User=/Group=/SupplementaryGroups= (via setpriv) with UMask=,
NoNewPrivileges= and a NOTIFY_SOCKET, and for Type=notify waits for
READY=1. Services start in their Before=/After= order, as booting into a
target that wants them would.

Sandboxing and resource control (Protect*=, Private*=, Restrict*=,
DeviceAllow=, ...) need namespaces and cgroups set up by systemd and are
not applied: systemd-analyze verify checks those lines. Any other key this
script does not know is an error, so the emulation cannot drift silently
from the units.

  unit-run.py [--ready-file PATH] UNIT...

Once all are up it writes the main PIDs (in start order) to the ready
file and waits for SIGTERM/SIGINT, then stops the services in
reverse order with their KillSignal= (SIGTERM) and exits 0 only if every
main process exited with status 0; a service that fails to start or dies
early makes it stop the others and exit 1.
"""
import argparse
import grp
import os
import pwd
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time

UNIT_PATH = ["/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/lib/systemd/system", "/usr/lib/systemd/system"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Keys this emulation applies.
UNIT_KEYS = {"Description", "Documentation", "Before", "After", "Wants", "Requires"}
SERVICE_KEYS = {"Type", "Environment", "EnvironmentFile", "ExecStartPre", "ExecStart", "User", "Group",
                "SupplementaryGroups", "UMask", "RuntimeDirectory", "RuntimeDirectoryMode",
                "RuntimeDirectoryPreserve", "StateDirectory", "StateDirectoryMode", "NoNewPrivileges",
                "KillSignal", "TimeoutStartSec", "TimeoutStopSec"}
# Keys that need PID 1 (namespaces, cgroups, seccomp, restarts): not applied.
SERVICE_IGNORED = {"Restart", "RestartSec", "DevicePolicy", "DeviceAllow", "ProtectSystem", "ProtectHome",
                   "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
                   "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
                   "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
                   "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
                   "SystemCallArchitectures", "SystemCallFilter", "CapabilityBoundingSet"}
LIST_KEYS = {"Before", "After", "Wants", "Requires", "Environment", "EnvironmentFile", "ExecStartPre",
             "ExecStart", "SupplementaryGroups", "RuntimeDirectory", "StateDirectory", "DeviceAllow",
             "Documentation"}


class UnitError(Exception):
    pass


def log(message):
    print(f"unit-run: {message}", flush=True)


def unescape(text):
    """systemd-escape --unescape of an instance name (%I)."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text).replace("-", "/")


def unit_files(name):
    """The unit file and drop-ins for NAME (an instance falls back to its template)."""
    names = [name]
    match = re.fullmatch(r"([^@]+)@([^.]*)\.(\w+)", name)
    if match:
        names.append(f"{match.group(1)}@.{match.group(3)}")
    main = next((os.path.join(d, n) for n in names for d in UNIT_PATH
                 if os.path.isfile(os.path.join(d, n))), None)
    if main is None:
        raise UnitError(f"{name}: no unit file in {', '.join(UNIT_PATH)}")
    dropins = {}
    for n in reversed(names):
        for d in reversed(UNIT_PATH):
            folder = os.path.join(d, n + ".d")
            if os.path.isdir(folder):
                for f in os.listdir(folder):
                    if f.endswith(".conf"):
                        dropins[f] = os.path.join(folder, f)
    return [main] + [dropins[f] for f in sorted(dropins)]


def parse_unit(paths):
    """{section: {key: value or [values]}}; an empty assignment resets a list."""
    sections = {}
    for path in paths:
        section = None
        with open(path, encoding="utf-8") as f:
            lines = f.read().replace("\\\n", " ").splitlines()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = sections.setdefault(line[1:-1], {})
                continue
            if section is None or "=" not in line:
                raise UnitError(f"{path}:{number}: cannot parse '{line}'")
            key, value = (part.strip() for part in line.split("=", 1))
            if key in LIST_KEYS:
                if value:
                    section.setdefault(key, []).append(value)
                else:
                    section[key] = []
            else:
                section[key] = value
    return sections


class Service:
    def __init__(self, name):
        self.name = name
        self.paths = unit_files(name)
        self.unit = parse_unit(self.paths)
        self.service = self.unit.get("Service", {})
        for key in self.unit.get("Unit", {}):
            if key not in UNIT_KEYS:
                raise UnitError(f"{name}: [Unit] {key}= is not emulated by unit-run")
        for key in self.service:
            if key not in SERVICE_KEYS | SERVICE_IGNORED:
                raise UnitError(f"{name}: [Service] {key}= is not emulated by unit-run")
        prefix, _, suffix = name.rpartition(".")
        self.prefix, _, self.instance = prefix.partition("@")
        self.type = self.service.get("Type", "simple")
        if self.type not in ("simple", "exec", "notify", "oneshot"):
            raise UnitError(f"{name}: Type={self.type} is not emulated by unit-run")
        self.process = None
        self.runtime_dirs = []

    def list(self, key, section="Service"):
        return self.unit.get(section, {}).get(key, [])

    def specifiers(self, text):
        table = {"i": self.instance, "I": unescape(self.instance), "n": self.name,
                 "N": self.name.rpartition(".")[0], "p": self.prefix, "P": unescape(self.prefix),
                 "t": "/run", "S": "/var/lib", "C": "/var/cache", "L": "/var/log", "E": "/etc", "%": "%"}

        def one(match):
            if match.group(1) not in table:
                raise UnitError(f"{self.name}: specifier %{match.group(1)} is not emulated")
            return table[match.group(1)]

        return re.sub(r"%(.)", one, text)

    def environment(self):
        env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "INVOCATION_ID": os.urandom(16).hex()}
        user = self.service.get("User")
        if user:
            entry = pwd.getpwnam(user)
            env.update(USER=user, LOGNAME=user, HOME=entry.pw_dir, SHELL=entry.pw_shell)
        for line in self.list("Environment"):
            for assignment in shlex.split(self.specifiers(line)):
                key, _, value = assignment.partition("=")
                env[key] = value
        # Files override Environment=, later files earlier ones.
        for spec in self.list("EnvironmentFile"):
            spec = self.specifiers(spec)
            optional = spec.startswith("-")
            path = spec.lstrip("-")
            if not os.path.exists(path):
                if optional:
                    continue
                raise UnitError(f"{self.name}: EnvironmentFile {path} does not exist")
            with open(path, encoding="utf-8") as f:
                for line in f.read().replace("\\\n", "").splitlines():
                    line = line.strip()
                    if not line or line[0] in "#;" or "=" not in line:
                        continue
                    key, value = (part.strip() for part in line.split("=", 1))
                    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                        value = value[1:-1]
                    env[key] = value
        return env

    def command(self, line, env):
        """(argv, as_root, ignore_failure) of one Exec line."""
        flags = re.match(r"[-@:+!]*", line).group(0)
        if set(flags) - set("-+:"):
            raise UnitError(f"{self.name}: Exec prefix '{flags}' is not emulated")
        words = shlex.split(self.specifiers(line[len(flags):]))
        argv = []
        for word in words:
            whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
            if ":" in flags:
                argv.append(word)
            elif whole:
                argv.extend(env.get(whole.group(1), "").split())
            else:
                argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
        return argv, "+" in flags, "-" in flags

    def credentials(self):
        """setpriv arguments for User=/Group=/SupplementaryGroups=/NoNewPrivileges=."""
        user = self.service.get("User")
        if not user:
            return []
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(self.service["Group"]).gr_gid if "Group" in self.service else entry.pw_gid
        groups = set(os.getgrouplist(user, gid))
        for line in self.list("SupplementaryGroups"):
            groups.update(grp.getgrnam(g).gr_gid for g in self.specifiers(line).split())
        args = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={gid}",
                "--groups=" + ",".join(str(g) for g in sorted(groups))]
        if self.service.get("NoNewPrivileges", "no") in ("yes", "true", "1", "on"):
            args.append("--no-new-privs")
        return args + ["--"]

    def make_dirs(self, env):
        user = self.service.get("User")
        uid = pwd.getpwnam(user).pw_uid if user else 0
        gid = grp.getgrnam(self.service["Group"]).gr_gid if "Group" in self.service else (
            pwd.getpwnam(user).pw_gid if user else 0)
        for key, base, var in (("RuntimeDirectory", "/run", "RUNTIME_DIRECTORY"),
                               ("StateDirectory", "/var/lib", "STATE_DIRECTORY")):
            mode = int(self.service.get(key + "Mode", "0755"), 8)
            paths = []
            for line in self.list(key):
                for name in self.specifiers(line).split():
                    path = os.path.join(base, name)
                    os.makedirs(path, exist_ok=True)
                    os.chown(path, uid, gid)
                    os.chmod(path, mode)
                    paths.append(path)
            if paths:
                env[var] = ":".join(paths)
                if key == "RuntimeDirectory" and self.service.get("RuntimeDirectoryPreserve", "no") == "no":
                    self.runtime_dirs += paths

    def start(self, notify_dir):
        log(f"starting {self.name} ({self.paths[0]})")
        env = self.environment()
        self.make_dirs(env)
        umask = int(self.service.get("UMask", "0022"), 8)
        cred = self.credentials()
        timeout = float(self.service.get("TimeoutStartSec", "90").rstrip("s"))

        def preexec():
            os.umask(umask)
            os.setsid()

        for line in self.list("ExecStartPre"):
            argv, as_root, ignore = self.command(line, env)
            log(f"{self.name}: ExecStartPre: {shlex.join(argv)}{' (as root)' if as_root else ''}")
            status = subprocess.run(([] if as_root else cred) + argv, env=env, preexec_fn=preexec,
                                    timeout=timeout, check=False).returncode
            if status != 0 and not ignore:
                raise UnitError(f"{self.name}: ExecStartPre {argv[0]} exited with status {status}")
            if status != 0:
                log(f"{self.name}: ExecStartPre {argv[0]} exited with status {status} (ignored: '-')")
        if len(self.list("ExecStart")) != 1 and self.type != "oneshot":
            raise UnitError(f"{self.name}: wants exactly one ExecStart=")
        notify = None
        if self.type == "notify":
            path = os.path.join(notify_dir, self.name + ".notify")
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(path)
            os.chmod(path, 0o666)
            env["NOTIFY_SOCKET"] = path
        for line in self.list("ExecStart"):
            argv, as_root, _ = self.command(line, env)
            log(f"{self.name}: ExecStart: {shlex.join(argv)}")
            self.process = subprocess.Popen(([] if as_root else cred) + argv, env=env, preexec_fn=preexec)
            if self.type == "oneshot":
                if self.process.wait(timeout) != 0:
                    raise UnitError(f"{self.name}: exited with status {self.process.returncode}")
        if notify:
            deadline = time.monotonic() + timeout
            try:
                while True:
                    if self.process.poll() is not None:
                        raise UnitError(f"{self.name}: exited with status {self.process.returncode} "
                                        "before READY=1")
                    if time.monotonic() > deadline:
                        raise UnitError(f"{self.name}: no READY=1 within {timeout:.0f} s")
                    if select.select([notify], [], [], 0.2)[0]:
                        message = notify.recv(4096).decode(errors="replace").splitlines()
                        if "READY=1" in message:
                            status = [m[7:] for m in message if m.startswith("STATUS=")]
                            log(f"{self.name}: READY=1 ({status[0] if status else 'no status'})")
                            break
            finally:
                notify.close()
        log(f"{self.name}: started, main PID {self.process.pid}")

    def stop(self):
        """True if the main process exits with status 0 on KillSignal=."""
        if self.process is None or self.type == "oneshot":
            return True
        clean = True
        if self.process.poll() is None:
            signame = self.service.get("KillSignal", "SIGTERM")
            self.process.send_signal(getattr(signal, signame if signame.startswith("SIG") else "SIG" + signame))
            try:
                self.process.wait(float(self.service.get("TimeoutStopSec", "30").rstrip("s")))
            except subprocess.TimeoutExpired:
                log(f"{self.name}: did not stop, killing it")
                self.process.kill()
                self.process.wait()
                clean = False
        status = self.process.returncode
        log(f"{self.name}: " + (f"exited with status {status}" if status >= 0 else f"killed by signal {-status}"))
        for path in self.runtime_dirs:
            subprocess.run(["rm", "-rf", path], check=False)
        return clean and status == 0


def start_order(services):
    """Services sorted by Before=/After= among themselves (stable otherwise)."""
    by_name = {s.name: s for s in services}
    after = {s.name: set() for s in services}
    for s in services:
        for line in s.list("After", "Unit"):
            after[s.name].update(n for n in s.specifiers(line).split() if n in by_name)
        for line in s.list("Before", "Unit"):
            for n in s.specifiers(line).split():
                if n in by_name:
                    after[n].add(s.name)
    ordered, left = [], [s.name for s in services]
    while left:
        ready = [n for n in left if not after[n] - set(ordered)]
        if not ready:
            raise UnitError(f"ordering cycle among {', '.join(left)}")
        ordered.append(ready[0])
        left.remove(ready[0])
    return [by_name[n] for n in ordered]


def main():
    parser = argparse.ArgumentParser(description="Start systemd services without systemd (see the source).")
    parser.add_argument("--ready-file")
    parser.add_argument("units", nargs="+")
    args = parser.parse_args()
    names = list(dict.fromkeys(args.units))

    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))
    notify_dir = "/run/unit-run"
    os.makedirs(notify_dir, mode=0o755, exist_ok=True)
    os.chmod(notify_dir, 0o755)

    started = []
    failed = False
    try:
        for service in start_order([Service(n) for n in names]):
            started.append(service)
            service.start(notify_dir)
        log(f"up: {', '.join(s.name for s in started)}")
        if args.ready_file:
            with open(args.ready_file, "w", encoding="utf-8") as f:
                f.write(" ".join(str(s.process.pid) for s in started if s.process) + "\n")
        while not stop_requested:
            dead = [s for s in started if s.type != "oneshot" and s.process.poll() is not None]
            if dead:
                raise UnitError(f"{dead[0].name}: died with status {dead[0].process.returncode}")
            time.sleep(0.2)
        log("stopping")
    except (UnitError, OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
        log(f"FAILED: {error}")
        failed = True
    for service in reversed(started):
        if not service.stop():
            failed = True
    log("FAILED" if failed else "all services stopped cleanly")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

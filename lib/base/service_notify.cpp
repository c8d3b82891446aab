// SPDX-License-Identifier: Apache-2.0
#include "base/service_notify.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

namespace vl
{

namespace
{

// libsystemd is loaded only when a service manager asked for notifications
// ($NOTIFY_SOCKET is set): linked in, it and the seven libraries it needs
// would be loaded and relocated at every start of every program, which
// costs more than the rest of the adapter's set-up under emulation.
void notify(const std::string& state)
{
    if (std::getenv("NOTIFY_SOCKET") == nullptr)
        return;
    void* libsystemd = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (libsystemd == nullptr)
        return; // best effort, as sd_notify itself is
    using SdNotify = int (*)(int unset_environment, const char* state);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): dlsym's contract
    if (auto sd_notify = reinterpret_cast<SdNotify>(::dlsym(libsystemd, "sd_notify")))
        (void)sd_notify(0, state.c_str()); // a manager that does not listen changes nothing
    ::dlclose(libsystemd);
}

} // namespace

void notify_service_ready(std::string_view status)
{
    std::string state = "READY=1";
    if (!status.empty())
        state += "\nSTATUS=" + std::string(status);
    notify(state);
}

void notify_service_stopping()
{
    notify("STOPPING=1");
}

} // namespace vl

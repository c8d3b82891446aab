// SPDX-License-Identifier: Apache-2.0
#include "base/service_notify.hpp"

#include <string>

#ifdef VL_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace vl
{

namespace
{

void notify(const std::string& state)
{
#ifdef VL_HAVE_LIBSYSTEMD
    // Best effort: a manager that does not listen changes nothing for us.
    (void)::sd_notify(0, state.c_str());
#else
    (void)state;
#endif
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

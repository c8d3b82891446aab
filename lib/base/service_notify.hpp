// SPDX-License-Identifier: Apache-2.0
// Readiness and shutdown notification to a service manager (sd_notify(3)):
// a program started by systemd with Type=notify tells it when it serves
// (READY=1) and when it begins to shut down (STOPPING=1). Without
// $NOTIFY_SOCKET (not started that way), or on a system without
// libsystemd.so.0, these do nothing.
#pragma once

#include <string_view>

namespace vl
{

// READY=1, with an optional STATUS= line ("3 devices created").
void notify_service_ready(std::string_view status = {});
// STOPPING=1.
void notify_service_stopping();

} // namespace vl

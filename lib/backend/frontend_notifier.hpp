// SPDX-License-Identifier: Apache-2.0
// How a device tells the front-end something on its own initiative: the
// back-end channel (protocol feature BACKEND_REQ) of whichever front-end is
// connected right now.
#pragma once

#include <mutex>
#include <optional>

#include "base/result.hpp"
#include "vhost_user/backend_channel.hpp"

namespace vl::backend
{

// Thread-safe; lives as long as the daemon. Sessions attach their channel
// when the front-end sends SET_BACKEND_REQ_FD and detach it when they end.
class FrontendNotifier
{
  public:
    FrontendNotifier() = default;
    FrontendNotifier(const FrontendNotifier&) = delete;
    FrontendNotifier& operator=(const FrontendNotifier&) = delete;

    // BACKEND_CONFIG_CHANGE_MSG: the config space changed; the front-end
    // re-reads it. An error if no front-end is connected with a back-end
    // channel (the change then shows at the next GET_CONFIG), or if the
    // front-end refused or did not answer. With REPLY_ACK it waits for the
    // front-end's ack (at most 5 s): a front-end that is itself waiting for
    // a reply of ours (GET_VRING_BASE stopping this very queue) answers only
    // after that, so call it outside queue callbacks where possible.
    Status config_changed();

    [[nodiscard]] bool attached() const;

    // ---- for the session ----
    void attach(vhost_user::BackendChannel channel);
    void detach();

  private:
    mutable std::mutex mutex_; // protects channel_ and serializes sends on it
    std::optional<vhost_user::BackendChannel> channel_;
};

} // namespace vl::backend

// SPDX-License-Identifier: Apache-2.0
#include "backend/frontend_notifier.hpp"

#include <cerrno>

namespace vl::backend
{

Status FrontendNotifier::config_changed()
{
    std::lock_guard lock(mutex_);
    if (!channel_)
        return Error("cannot notify a config change: no front-end with a back-end channel "
                     "(protocol feature BACKEND_REQ) is connected",
                     ENOTCONN);
    return channel_->config_changed();
}

bool FrontendNotifier::attached() const
{
    std::lock_guard lock(mutex_);
    return channel_.has_value();
}

void FrontendNotifier::attach(vhost_user::BackendChannel channel)
{
    std::lock_guard lock(mutex_);
    channel_.emplace(std::move(channel));
}

void FrontendNotifier::detach()
{
    std::lock_guard lock(mutex_);
    channel_.reset();
}

} // namespace vl::backend

// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/protocol.hpp"

#include <array>
#include <string_view>

namespace vl::vhost_user
{

namespace
{

// Indexed by request number; the spec's names without "VHOST_USER_".
constexpr std::array<std::string_view, kLastRequest + 1> kRequestNames = {
    "NONE",
    "GET_FEATURES",
    "SET_FEATURES",
    "SET_OWNER",
    "RESET_OWNER",
    "SET_MEM_TABLE",
    "SET_LOG_BASE",
    "SET_LOG_FD",
    "SET_VRING_NUM",
    "SET_VRING_ADDR",
    "SET_VRING_BASE",
    "GET_VRING_BASE",
    "SET_VRING_KICK",
    "SET_VRING_CALL",
    "SET_VRING_ERR",
    "GET_PROTOCOL_FEATURES",
    "SET_PROTOCOL_FEATURES",
    "GET_QUEUE_NUM",
    "SET_VRING_ENABLE",
    "SEND_RARP",
    "NET_SET_MTU",
    "SET_BACKEND_REQ_FD",
    "IOTLB_MSG",
    "SET_VRING_ENDIAN",
    "GET_CONFIG",
    "SET_CONFIG",
    "CREATE_CRYPTO_SESSION",
    "CLOSE_CRYPTO_SESSION",
    "POSTCOPY_ADVISE",
    "POSTCOPY_LISTEN",
    "POSTCOPY_END",
    "GET_INFLIGHT_FD",
    "SET_INFLIGHT_FD",
    "GPU_SET_SOCKET",
    "RESET_DEVICE",
    "VRING_KICK",
    "GET_MAX_MEM_SLOTS",
    "ADD_MEM_REG",
    "REM_MEM_REG",
    "SET_STATUS",
    "GET_STATUS",
    "GET_SHARED_OBJECT",
    "SET_DEVICE_STATE_FD",
    "CHECK_DEVICE_STATE",
};

constexpr std::array<std::string_view, kLastBackendRequest + 1> kBackendRequestNames = {
    "NONE",
    "BACKEND_IOTLB_MSG",
    "BACKEND_CONFIG_CHANGE_MSG",
    "BACKEND_VRING_HOST_NOTIFIER_MSG",
    "BACKEND_VRING_CALL",
    "BACKEND_VRING_ERR",
    "BACKEND_SHARED_OBJECT_ADD",
    "BACKEND_SHARED_OBJECT_REMOVE",
    "BACKEND_SHARED_OBJECT_LOOKUP",
};

} // namespace

std::string request_name(std::uint32_t code)
{
    if (code >= kFirstRequest && code <= kLastRequest)
        return std::string(kRequestNames[code]);
    return "unknown request " + std::to_string(code);
}

std::string request_name(Request request)
{
    return request_name(to_code(request));
}

std::string backend_request_name(std::uint32_t code)
{
    if (code >= kFirstBackendRequest && code <= kLastBackendRequest)
        return std::string(kBackendRequestNames[code]);
    return "unknown back-end request " + std::to_string(code);
}

std::string backend_request_name(BackendRequest request)
{
    return backend_request_name(to_code(request));
}

} // namespace vl::vhost_user

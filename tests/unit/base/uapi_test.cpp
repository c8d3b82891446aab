// SPDX-License-Identifier: Apache-2.0
// The uapi structs must have the same layout for every compiler and for
// 32-bit user space on a 64-bit kernel: fixed sizes, no implicit padding.
#include <linux/virtio_loopback.h>

#include <gtest/gtest.h>

#include <cstddef>

namespace {

static_assert(sizeof(virtio_loopback_create) == 328);
static_assert(offsetof(virtio_loopback_create, config) == 72);
static_assert(sizeof(virtio_loopback_info) == 64);
static_assert(sizeof(virtio_loopback_window) == 32);
static_assert(sizeof(virtio_loopback_queue_fds) == 32);
static_assert(sizeof(virtio_loopback_queue_info) == 56);
static_assert(sizeof(virtio_loopback_interrupt) == 8);
static_assert(sizeof(virtio_loopback_config) == 272);
static_assert(sizeof(virtio_loopback_msg) == 272);
static_assert(offsetof(virtio_loopback_msg, status) == 8);
static_assert(sizeof(virtio_loopback_reply) == 16);
static_assert(sizeof(virtio_loopback_requeue) == 16);

TEST(Uapi, IoctlNumbersEncodeTheStructSizes)
{
    EXPECT_EQ(_IOC_SIZE(VIRTIO_LOOPBACK_IOC_CREATE), sizeof(virtio_loopback_create));
    EXPECT_EQ(_IOC_SIZE(VIRTIO_LOOPBACK_IOC_GET_QUEUE), sizeof(virtio_loopback_queue_info));
    EXPECT_EQ(_IOC_DIR(VIRTIO_LOOPBACK_IOC_GET_QUEUE), _IOC_READ | _IOC_WRITE);
    EXPECT_EQ(_IOC_TYPE(VIRTIO_LOOPBACK_IOC_START), VIRTIO_LOOPBACK_IOC_MAGIC);
}

TEST(Uapi, TransportFeatureMaskAllowsOnlyRingFeatures)
{
    constexpr unsigned long long allowed = VIRTIO_LOOPBACK_TRANSPORT_FEATURES_ALLOWED;
    EXPECT_EQ(allowed, (1ULL << 28) | (1ULL << 29) | (1ULL << 32) | (1ULL << 33));
}

} // namespace

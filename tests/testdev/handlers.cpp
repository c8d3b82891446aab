// SPDX-License-Identifier: Apache-2.0
// The two test devices: a pattern rng and a RAM disk. Deliberately plain:
// they exist to exercise the transport, not to be fast.
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include "virtqueue/ring.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "request_handler.hpp"

namespace vl::testdev {

namespace {

constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << n; }
constexpr std::uint64_t kRingFeatures = bit(virtq::kFeatureEventIdx) | bit(virtq::kFeatureIndirectDesc);

class PatternRng final : public RequestHandler {
public:
    explicit PatternRng(std::uint8_t pattern) : pattern_(pattern) {}

    [[nodiscard]] loopback::DeviceParams params() const override
    {
        loopback::DeviceParams p;
        p.device_id = VIRTIO_ID_RNG;
        p.features = kRingFeatures;
        p.num_queues = 1;
        p.max_queue_size = 64;
        p.window_size = 1u << 20; // rng requests are small
        return p;
    }

    std::uint32_t handle(std::uint32_t /*queue*/, const virtq::DescriptorChain& chain) override
    {
        for (auto buf : chain.writable())
            std::fill(buf.begin(), buf.end(), std::byte{pattern_});
        return chain.writable_len();
    }

private:
    std::uint8_t pattern_;
};

class RamBlk final : public RequestHandler {
public:
    RamBlk(std::uint64_t bytes, std::uint32_t queues, std::uint32_t queue_size,
           std::uint32_t size_max)
        : disk_(bytes), queues_(queues), queue_size_(queue_size), size_max_(size_max)
    {
    }

    [[nodiscard]] loopback::DeviceParams params() const override
    {
        virtio_blk_config cfg{};
        cfg.capacity = disk_.size() / 512;
        cfg.seg_max = seg_max();
        cfg.blk_size = 512;
        cfg.num_queues = static_cast<std::uint16_t>(queues_);
        cfg.size_max = size_max_;
        loopback::DeviceParams p;
        p.device_id = VIRTIO_ID_BLOCK;
        p.features = kRingFeatures | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) |
                     bit(VIRTIO_BLK_F_FLUSH) | (queues_ > 1 ? bit(VIRTIO_BLK_F_MQ) : 0) |
                     (size_max_ ? bit(VIRTIO_BLK_F_SIZE_MAX) : 0);
        p.num_queues = queues_;
        p.max_queue_size = queue_size_;
        const auto* raw = reinterpret_cast<const std::byte*>(&cfg);
        p.config.assign(raw, raw + sizeof(cfg));
        p.window_size = 32u << 20;
        return p;
    }

    [[nodiscard]] std::uint32_t max_chain_len() const override { return seg_max() + 2; }

    std::uint32_t handle(std::uint32_t /*queue*/, const virtq::DescriptorChain& chain) override
    {
        virtio_blk_outhdr hdr{};
        if (chain.writable_len() < 1 ||
            !chain.read_exact(std::as_writable_bytes(std::span(&hdr, 1))).ok())
            return 0; // malformed: nothing sensible to answer
        std::uint32_t data_len = chain.writable_len() - 1;
        std::uint8_t status = VIRTIO_BLK_S_OK;
        std::uint32_t written = 0;
        switch (hdr.type) {
        case VIRTIO_BLK_T_IN:
            if (!in_range(hdr.sector, data_len))
                status = VIRTIO_BLK_S_IOERR;
            else
                written = static_cast<std::uint32_t>(
                    chain.write_from(std::span(disk_).subspan(hdr.sector * 512, data_len)));
            break;
        case VIRTIO_BLK_T_OUT: {
            std::uint64_t len = chain.readable_len() - sizeof(hdr);
            if (!in_range(hdr.sector, len))
                status = VIRTIO_BLK_S_IOERR;
            else
                chain.read_into(std::span(disk_).subspan(hdr.sector * 512, len), sizeof(hdr));
            break;
        }
        case VIRTIO_BLK_T_FLUSH:
            break;
        case VIRTIO_BLK_T_GET_ID: {
            std::array<char, VIRTIO_BLK_ID_BYTES> id{};
            std::strncpy(id.data(), "vl-testdev-ramdisk", id.size());
            written = static_cast<std::uint32_t>(
                chain.write_from(std::as_bytes(std::span(id)).first(std::min<std::size_t>(id.size(), data_len))));
            break;
        }
        default:
            status = VIRTIO_BLK_S_UNSUPP;
        }
        std::byte s{status};
        chain.write_from(std::span(&s, 1), data_len);
        return written + 1;
    }

private:
    [[nodiscard]] std::uint32_t seg_max() const { return queue_size_ - 2; }
    [[nodiscard]] bool in_range(std::uint64_t sector, std::uint64_t len) const
    {
        return sector <= disk_.size() / 512 && len <= disk_.size() - sector * 512;
    }

    std::vector<std::byte> disk_;
    std::uint32_t queues_;
    std::uint32_t queue_size_;
    std::uint32_t size_max_;
};

} // namespace

std::unique_ptr<RequestHandler> make_rng(std::uint8_t pattern)
{
    return std::make_unique<PatternRng>(pattern);
}

std::unique_ptr<RequestHandler> make_ram_blk(std::uint64_t bytes, std::uint32_t queues,
                                             std::uint32_t queue_size, std::uint32_t size_max)
{
    return std::make_unique<RamBlk>(bytes, queues, queue_size, size_max);
}

} // namespace vl::testdev

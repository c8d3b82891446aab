// SPDX-License-Identifier: Apache-2.0
// What a virtio-blk device stores its sectors in: a raw image file, a
// block device, or nothing (the null target). Opening it finds what the
// device config reports (capacity, logical block size) and, with O_DIRECT,
// the alignment buffers must have.
#pragma once

#include <cstdint>
#include <string>

#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl::blk
{

inline constexpr std::uint32_t kSectorSize = 512;

class Disk
{
  public:
    enum class Kind { file, block_device, null };

    // Opens `path` (an image file or a block device) for reading, and for
    // writing unless `read_only`; with `direct`, with O_DIRECT. Images are
    // locked (an OFD lock: shared when read-only, exclusive otherwise) and
    // writable block devices opened O_EXCL, so that two back-ends, or a
    // back-end and a mounted file system, do not write the same sectors.
    // Errors say what to change.
    static Result<Disk> open(const std::string& path, bool read_only, bool direct,
                             const Logger& logger);
    // A disk of `size_bytes` (a multiple of 512) with no storage at all.
    static Disk null(std::uint64_t size_bytes);

    [[nodiscard]] Kind kind() const noexcept { return kind_; }
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    // In bytes, a multiple of logical_block_size().
    [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::uint64_t capacity_sectors() const noexcept
    {
        return capacity_ / kSectorSize;
    }
    // The unit every transfer's offset and length must be a multiple of:
    // the device's logical block size, 512 for images (or the file
    // system's direct I/O alignment with O_DIRECT).
    [[nodiscard]] std::uint32_t logical_block_size() const noexcept { return block_size_; }
    [[nodiscard]] bool direct() const noexcept { return direct_; }
    // With O_DIRECT, what every buffer's address and length must be a
    // multiple of (1 without O_DIRECT).
    [[nodiscard]] std::uint32_t memory_alignment() const noexcept { return memory_alignment_; }
    // For an image file, the type of its file system (statfs's f_type, one
    // of the *_MAGIC numbers of <linux/magic.h>): how it does I/O decides
    // the I/O engine (choose_io_engine). 0 for a block device or the null
    // disk.
    [[nodiscard]] std::uint64_t fs_type() const noexcept { return fs_type_; }

  private:
    Disk() = default;
    Status probe_block_device(const Logger& logger);
    Status probe_file(const Logger& logger);
    Status probe_direct_alignment();
    Status lock(bool read_only, const Logger& logger);

    Kind kind_ = Kind::null;
    UniqueFd fd_;
    std::string path_;
    std::uint64_t capacity_ = 0;
    std::uint32_t block_size_ = kSectorSize;
    bool direct_ = false;
    std::uint32_t memory_alignment_ = 1;
    std::uint64_t fs_type_ = 0;
};

} // namespace vl::blk

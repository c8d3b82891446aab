// SPDX-License-Identifier: Apache-2.0
#include "blk/disk.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

namespace vl::blk
{

namespace
{

// The largest logical block size we pass on (Linux's own limit for block
// devices is the page size or a little more).
constexpr std::uint32_t kMaxBlockSize = 64 << 10;

Error open_error(const std::string& path, int code, bool read_only, bool direct)
{
    const char* what = std::strerror(code);
    switch (code) {
    case ENOENT:
        return Error(fmt::format("cannot open {}: {} — create the image first (for example "
                                 "'truncate -s 1G {}') or correct the path",
                                 path, what, path),
                     code);
    case EACCES:
    case EPERM:
        if (read_only)
            return Error(
                fmt::format("cannot open {}: {} — run as a user that can read it", path, what),
                code);
        return Error(fmt::format("cannot open {} for writing: {} — run as a user that can write "
                                 "it, or use --read-only",
                                 path, what),
                     code);
    case EROFS:
        return Error(fmt::format("cannot open {} for writing: {} — use --read-only", path, what),
                     code);
    case EBUSY:
        return Error(fmt::format("cannot open {}: {} — the block device is in use (mounted, or "
                                 "claimed by another program); unmount it or use --read-only",
                                 path, what),
                     code);
    case EINVAL:
        if (direct)
            return Error(fmt::format("cannot open {} with O_DIRECT: {} — its file system does not "
                                     "support direct I/O (tmpfs before Linux 6.6, for example); "
                                     "leave out --direct or put the image elsewhere",
                                     path, what),
                         code);
        break;
    default:
        break;
    }
    return Error(fmt::format("cannot open {}: {}", path, what), code);
}

} // namespace

Result<Disk> Disk::open(const std::string& path, bool read_only, bool direct, const Logger& logger)
{
    Disk disk;
    disk.path_ = path;
    disk.direct_ = direct;
    struct stat st {
    };
    if (::stat(path.c_str(), &st) < 0)
        return open_error(path, errno, read_only, direct);
    const bool block_device = S_ISBLK(st.st_mode);
    if (!block_device && !S_ISREG(st.st_mode))
        return Error(fmt::format("{} is neither a regular file nor a block device; give a raw "
                                 "disk image or a block device",
                                 path),
                     EINVAL);
    int flags = O_CLOEXEC | (read_only ? O_RDONLY : O_RDWR);
    if (direct)
        flags |= O_DIRECT;
    // O_EXCL on a block device fails if it is mounted or claimed.
    if (block_device && !read_only)
        flags |= O_EXCL;
    disk.fd_.reset(::open(path.c_str(), flags));
    if (!disk.fd_)
        return open_error(path, errno, read_only, direct);
    disk.kind_ = block_device ? Kind::block_device : Kind::file;
    VL_TRY(block_device ? disk.probe_block_device(logger) : disk.probe_file(logger));
    if (direct)
        VL_TRY(disk.probe_direct_alignment());
    if (!block_device)
        VL_TRY(disk.lock(read_only, logger));
    // A partial last block cannot be addressed by a driver that works in
    // whole blocks: the device ends before it.
    disk.capacity_ -= disk.capacity_ % disk.block_size_;
    if (disk.capacity_ == 0)
        return Error(fmt::format("{} is smaller than one {}-byte block: there is nothing to serve "
                                 "(grow it first, for example 'truncate -s 1G {}')",
                                 path, disk.block_size_, path),
                     EINVAL);
    return disk;
}

Disk Disk::null(std::uint64_t size_bytes)
{
    Disk disk;
    disk.kind_ = Kind::null;
    disk.path_ = "(null)";
    disk.capacity_ = size_bytes - size_bytes % kSectorSize;
    return disk;
}

Status Disk::probe_block_device(const Logger& logger)
{
    std::uint64_t bytes = 0;
    if (::ioctl(fd_.get(), BLKGETSIZE64, &bytes) < 0)
        return Error::from_errno(fmt::format("BLKGETSIZE64 on {}", path_));
    int logical = 0;
    if (::ioctl(fd_.get(), BLKSSZGET, &logical) < 0)
        return Error::from_errno(fmt::format("BLKSSZGET on {}", path_));
    const auto size = static_cast<std::uint32_t>(logical);
    if (logical < static_cast<int>(kSectorSize) || size > kMaxBlockSize ||
        !std::has_single_bit(size))
        return Error(fmt::format("{} has a logical block size of {} bytes; virtio-blk needs a "
                                 "power of two from 512 to {}",
                                 path_, logical, kMaxBlockSize),
                     EINVAL);
    capacity_ = bytes;
    block_size_ = size;
    logger.debug("{}: block device, {} bytes, logical blocks of {} bytes", path_, bytes, size);
    return ok_status();
}

Status Disk::probe_file(const Logger& logger)
{
    struct stat st {
    };
    if (::fstat(fd_.get(), &st) < 0)
        return Error::from_errno(fmt::format("fstat {}", path_));
    capacity_ = static_cast<std::uint64_t>(st.st_size);
    struct statfs sfs {
    };
    if (::fstatfs(fd_.get(), &sfs) < 0)
        return Error::from_errno(fmt::format("fstatfs {}", path_));
    // Through unsigned long: f_type is a long, and magic numbers with the
    // top bit set (RAMFS_MAGIC) must not be sign-extended where it has 32
    // bits.
    fs_type_ = static_cast<unsigned long>(sfs.f_type);
    if (const std::uint64_t tail = capacity_ % kSectorSize; tail != 0)
        logger.warn("{} is {} bytes, not a whole number of 512-byte sectors: its last {} bytes are "
                    "not served",
                    path_, capacity_, tail);
    return ok_status();
}

// What O_DIRECT requires of offsets and buffers. statx reports it since
// Linux 6.1; before that (or where the file system does not say) assume
// the logical block size, which is what block devices have always needed.
Status Disk::probe_direct_alignment()
{
    std::uint32_t offset_align = block_size_;
    std::uint32_t memory_align = block_size_;
    struct statx stx {
    };
    if (::statx(fd_.get(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) != 0) {
        if (stx.stx_dio_offset_align == 0)
            return Error(fmt::format("{} does not support direct I/O (its file system says so); "
                                     "leave out --direct or put the image elsewhere",
                                     path_),
                         EINVAL);
        offset_align = stx.stx_dio_offset_align;
        memory_align = std::max<std::uint32_t>(stx.stx_dio_mem_align, 1);
    }
    if (!std::has_single_bit(offset_align) || offset_align > kMaxBlockSize)
        return Error(fmt::format("{} wants direct I/O aligned to {} bytes, which virtio-blk cannot "
                                 "express; leave out --direct",
                                 path_, offset_align),
                     EINVAL);
    // The driver then sends only whole blocks of this size at multiples of
    // it: exactly what O_DIRECT needs of offsets and lengths.
    block_size_ = std::max(block_size_, offset_align);
    memory_alignment_ = memory_align;
    return ok_status();
}

Status Disk::lock(bool read_only, const Logger& logger)
{
    struct flock lock {
    };
    lock.l_type = read_only ? F_RDLCK : F_WRLCK;
    lock.l_whence = SEEK_SET; // l_start = l_len = 0: the whole file
    if (::fcntl(fd_.get(), F_OFD_SETLK, &lock) == 0)
        return ok_status();
    if (errno == EAGAIN || errno == EACCES)
        return Error(fmt::format("{} is in use: another process holds a lock on it (another "
                                 "vhost-user-blk, or QEMU); stop it, or serve a copy of the image",
                                 path_),
                     EBUSY);
    // File systems without locks (some network file systems): serve anyway.
    logger.warn("cannot lock {} ({}); make sure nothing else writes it while it is served", path_,
                std::strerror(errno));
    return ok_status();
}

} // namespace vl::blk

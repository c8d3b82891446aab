// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "base/result.hpp"

namespace vl {

// Owns one mmap()ed range; unmaps it exactly once. Move-only.
class Mapping {
public:
    Mapping() noexcept = default;
    Mapping(Mapping&& other) noexcept
        : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0))
    {
    }
    Mapping& operator=(Mapping&& other) noexcept
    {
        if (this != &other) {
            reset();
            addr_ = std::exchange(other.addr_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() { reset(); }

    // mmap(NULL, size, prot, flags, fd, offset).
    static Result<Mapping> map(int fd, std::size_t size, std::uint64_t offset,
                               int prot = PROT_READ | PROT_WRITE, int flags = MAP_SHARED)
    {
        void* addr = ::mmap(nullptr, size, prot, flags, fd, static_cast<off_t>(offset));
        if (addr == MAP_FAILED)
            return Error::from_errno("mmap of " + std::to_string(size) + " bytes at offset " +
                                     std::to_string(offset));
        Mapping m;
        m.addr_ = static_cast<std::byte*>(addr);
        m.size_ = size;
        return m;
    }

    [[nodiscard]] std::byte* data() const noexcept { return addr_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {addr_, size_}; }
    [[nodiscard]] bool valid() const noexcept { return addr_ != nullptr; }

    void reset() noexcept
    {
        if (addr_ != nullptr)
            ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }

private:
    std::byte* addr_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace vl

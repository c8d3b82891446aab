// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <span>

#include "base/result.hpp"

namespace vl::backend
{

// Blocks until one of `fds` is readable (or hung up) and returns the index
// of the first such fd in the list, so earlier fds take priority.
Result<std::size_t> wait_readable(std::span<const int> fds);

} // namespace vl::backend

// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace vl {

// An error a user can act on: a sentence saying what failed and, where we
// know it, what to do; plus the errno behind it (0 if none).
class Error {
public:
    explicit Error(std::string message, int code = 0) : message_(std::move(message)), code_(code) {}

    // "what: strerror(errno)" for a failed system call.
    static Error from_errno(const std::string& what, int code = errno)
    {
        return Error(what + ": " + std::strerror(code), code);
    }

    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    [[nodiscard]] int code() const noexcept { return code_; }

    // Adds context in front: "context: message".
    [[nodiscard]] Error wrap(const std::string& context) const
    {
        return Error(context + ": " + message_, code_);
    }

private:
    std::string message_;
    int code_;
};

// Either a value or an Error. A small stand-in for C++23 std::expected.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}

    [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { return std::get<0>(state_); }
    const T& value() const& { return std::get<0>(state_); }
    T&& value() && { return std::get<0>(std::move(state_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    [[nodiscard]] const Error& error() const& { return std::get<1>(state_); }
    [[nodiscard]] Error&& error() && { return std::get<1>(std::move(state_)); }

private:
    std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)) {}

    [[nodiscard]] bool ok() const noexcept { return !error_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] const Error& error() const& { return *error_; }
    [[nodiscard]] Error&& error() && { return std::move(*error_); }

private:
    std::optional<Error> error_;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

} // namespace vl

// Propagates an error from an expression returning Result/Status.
#define VL_TRY(expr)                                                                     \
    do {                                                                                 \
        auto vl_try_result_ = (expr);                                                    \
        if (!vl_try_result_.ok())                                                        \
            return std::move(vl_try_result_).error();                                    \
    } while (0)

// Evaluates a Result<T>, returning its error or assigning its value to `lhs`.
#define VL_TRY_ASSIGN(lhs, expr)                                                         \
    VL_TRY_ASSIGN_IMPL_(VL_CONCAT_(vl_try_tmp_, __LINE__), lhs, expr)
#define VL_CONCAT_INNER_(a, b) a##b
#define VL_CONCAT_(a, b) VL_CONCAT_INNER_(a, b)
#define VL_TRY_ASSIGN_IMPL_(tmp, lhs, expr)                                              \
    auto tmp = (expr);                                                                   \
    if (!tmp.ok())                                                                       \
        return std::move(tmp).error();                                                   \
    lhs = std::move(tmp).value()

// Status propagation macros. Abseil 20220623 (Debian 12) ships none, so they live here once.
#ifndef LONGENC_COMMON_STATUS_MACROS_H_
#define LONGENC_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LONGENC_CONCAT_INNER_(a, b) a##b
#define LONGENC_CONCAT_(a, b) LONGENC_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    const ::absl::Status longenc_status_ = (expr);    \
    if (!longenc_status_.ok()) return longenc_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(T x, StatusOrExpr)`: declares/assigns x or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(LONGENC_CONCAT_(longenc_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(statusor).value()

#endif  // LONGENC_COMMON_STATUS_MACROS_H_

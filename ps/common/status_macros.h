#ifndef TESSERA_PS_COMMON_STATUS_MACROS_H_
#define TESSERA_PS_COMMON_STATUS_MACROS_H_

// Status propagation macros; Abseil 20220623 has none of its own.
//
//   TESSERA_RETURN_IF_ERROR(store->Write(id, values));
//   TESSERA_ASSIGN_OR_RETURN(auto part, store->Find(id));
//
// Both evaluate their argument exactly once and return the failing status
// unchanged; add context with absl::Status's message in the caller.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TESSERA_RETURN_IF_ERROR(expr)                                      \
  do {                                                                     \
    const ::absl::Status tessera_status_ = (expr);                         \
    if (ABSL_PREDICT_FALSE(!tessera_status_.ok())) return tessera_status_; \
  } while (0)

#define TESSERA_STATUS_CONCAT_INNER_(a, b) a##b
#define TESSERA_STATUS_CONCAT_(a, b) TESSERA_STATUS_CONCAT_INNER_(a, b)

#define TESSERA_ASSIGN_OR_RETURN(lhs, rexpr) \
  TESSERA_ASSIGN_OR_RETURN_IMPL_(            \
      TESSERA_STATUS_CONCAT_(tessera_statusor_, __LINE__), lhs, rexpr)

#define TESSERA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {                  \
    return std::move(statusor).status();                     \
  }                                                          \
  lhs = std::move(statusor).value()

#endif  // TESSERA_PS_COMMON_STATUS_MACROS_H_

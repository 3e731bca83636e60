#ifndef TESSERA_PS_COMMON_STATUS_MATCHERS_H_
#define TESSERA_PS_COMMON_STATUS_MATCHERS_H_

// GoogleMock matchers for absl::Status and absl::StatusOr<T> (testonly):
//
//   EXPECT_THAT(store.Read(id, out), IsOk());
//   EXPECT_THAT(store.Read(bad, out), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(store.Read(bad, out), StatusIs(absl::StatusCode::kNotFound,
//                                              HasSubstr("fc1.weight")));
//   EXPECT_THAT(Parse("3"), IsOkAndHolds(3));

#include <ostream>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace tessera {
namespace status_internal {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}

template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace status_internal

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const absl::Status& status = status_internal::GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code,
          std::string(negation ? "does not have" : "has") + " code " +
              absl::StatusCodeToString(code)) {
  const absl::Status& status = status_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string(negation ? "does not have" : "has") + " code " +
               absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& status = status_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

MATCHER_P(IsOkAndHolds, value_matcher,
          negation ? "is not OK or holds a non-matching value"
                   : "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace tessera

// In a test: asserts that `rexpr` (an absl::StatusOr) is OK and assigns its
// value to `lhs`, or fails the test with the status, as
// TESSERA_ASSIGN_OR_RETURN does outside tests.
//
//   TESSERA_ASSERT_OK_AND_ASSIGN(auto cluster, Cluster::Start(options));
#define TESSERA_ASSERT_OK_AND_ASSIGN(lhs, rexpr)                         \
  TESSERA_ASSERT_OK_AND_ASSIGN_IMPL_(                                    \
      TESSERA_MATCHERS_CONCAT_(tessera_assert_statusor_, __LINE__), lhs, \
      rexpr)

#define TESSERA_MATCHERS_CONCAT_INNER_(a, b) a##b
#define TESSERA_MATCHERS_CONCAT_(a, b) TESSERA_MATCHERS_CONCAT_INNER_(a, b)

#define TESSERA_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                       \
  ASSERT_THAT(statusor, ::tessera::IsOk()) << #rexpr;            \
  lhs = std::move(statusor).value()

#endif  // TESSERA_PS_COMMON_STATUS_MATCHERS_H_

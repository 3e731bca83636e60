#include "ps/common/grpc_status.h"

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::Eq;
using ::testing::HasSubstr;

TEST(GrpcStatusTest, EveryCodeAndMessageSurvivesARoundTrip) {
  for (int code = 1; code <= 16; ++code) {
    absl::Status status(static_cast<absl::StatusCode>(code), "shard 2 said no");
    grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(wire), status);
  }
}

TEST(GrpcStatusTest, OkStaysOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_THAT(FromGrpcStatus(grpc::Status::OK), IsOk());
}

TEST(StatusMatchersTest, MatchCodesMessagesAndValues) {
  absl::StatusOr<int> three = 3;
  EXPECT_THAT(three, IsOkAndHolds(Eq(3)));
  EXPECT_THAT(three, ::testing::Not(IsOkAndHolds(Eq(4))));
  absl::StatusOr<int> missing = absl::NotFoundError("no tensor fc1.weight");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("fc1")));
  EXPECT_THAT(missing.status(), ::testing::Not(IsOk()));
}

}  // namespace
}  // namespace tessera

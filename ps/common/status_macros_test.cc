#include "ps/common/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace tessera {
namespace {

absl::Status Fail() { return absl::InvalidArgumentError("bad"); }
absl::Status Succeed() { return absl::OkStatus(); }

absl::StatusOr<std::unique_ptr<int>> MakeInt(bool ok) {
  if (!ok) return absl::NotFoundError("none");
  return std::make_unique<int>(7);
}

absl::Status UseReturnIfError(bool fail, int* reached) {
  TESSERA_RETURN_IF_ERROR(fail ? Fail() : Succeed());
  ++*reached;
  return absl::OkStatus();
}

absl::StatusOr<int> UseAssignOrReturn(bool ok) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<int> value, MakeInt(ok));
  TESSERA_ASSIGN_OR_RETURN(auto again, MakeInt(ok));
  return *value + *again;
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtTheFirstFailure) {
  int reached = 0;
  EXPECT_EQ(UseReturnIfError(true, &reached).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(UseReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacrosTest, AssignOrReturnMovesTheValueOrPassesTheError) {
  EXPECT_EQ(*UseAssignOrReturn(true), 14);
  EXPECT_EQ(UseAssignOrReturn(false).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera

#include "ps/server/server_options.h"

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

TEST(ParseShardIndexTest, AcceptsNumbersAndPodNames) {
  EXPECT_THAT(ParseShardIndex("0"), IsOkAndHolds(0));
  EXPECT_THAT(ParseShardIndex("17"), IsOkAndHolds(17));
  EXPECT_THAT(ParseShardIndex("ps-3"), IsOkAndHolds(3));
  EXPECT_THAT(ParseShardIndex("tessera-ps-12"), IsOkAndHolds(12));
}

TEST(ParseShardIndexTest, RejectsEverythingElse) {
  for (const char* bad : {"", "ps", "ps-", "-1", "ps-x", "3a", "ps-3 "}) {
    EXPECT_THAT(ParseShardIndex(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

}  // namespace
}  // namespace tessera

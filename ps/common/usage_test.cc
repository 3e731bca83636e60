#include "ps/common/usage.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(UsageTest, ListsTesseraFlagsOnly) {
  EXPECT_TRUE(IsTesseraFlagFile("ps/server/main.cc"));
  EXPECT_TRUE(IsTesseraFlagFile("worker/main.cc"));
  EXPECT_TRUE(IsTesseraFlagFile("tools/demo.cc"));
  EXPECT_TRUE(IsTesseraFlagFile("/work/main/tools/tessera.cc"));
  EXPECT_FALSE(IsTesseraFlagFile("absl/flags/parse.cc"));
  EXPECT_FALSE(IsTesseraFlagFile("./debian/absl/flags/internal/usage.cc"));
  EXPECT_FALSE(IsTesseraFlagFile("glog/logging.cc"));
}

}  // namespace
}  // namespace tessera

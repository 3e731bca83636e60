#include "ps/common/checked_math.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(RangeWithinTest, AcceptsRangesInside) {
  EXPECT_TRUE(RangeWithin(0, 10, 0, 10));
  EXPECT_TRUE(RangeWithin(3, 2, 3, 5));
  EXPECT_TRUE(RangeWithin(5, 0, 3, 5));  // empty range at the end
  EXPECT_TRUE(RangeWithin(kMax - 1, 1, 0, kMax));
}

TEST(RangeWithinTest, RefusesRangesOutside) {
  EXPECT_FALSE(RangeWithin(2, 2, 3, 5));   // starts below
  EXPECT_FALSE(RangeWithin(4, 2, 3, 5));   // ends above
  EXPECT_FALSE(RangeWithin(6, 0, 3, 5));   // starts above
  EXPECT_FALSE(RangeWithin(3, -1, 3, 5));  // negative count
}

TEST(RangeWithinTest, RefusesWhatWouldOverflow) {
  // The bug this replaces: begin + count wraps to a negative number.
  EXPECT_FALSE(RangeWithin(kMax, 1, 0, 100));
  EXPECT_FALSE(RangeWithin(kMax - 63, 64, 0, 100));
  EXPECT_FALSE(RangeWithin(50, kMax, 0, 100));
  EXPECT_FALSE(RangeWithin(kMin, 1, 0, 100));
  EXPECT_FALSE(RangeWithin(kMin, kMax, kMin + 1, 0));
  EXPECT_FALSE(RangeWithin(1, kMax, 0, kMax));
}

TEST(CheckedMathTest, AddAndMulReportOverflow) {
  int64_t r = 7;
  EXPECT_TRUE(CheckedAdd(2, 3, &r));
  EXPECT_EQ(r, 5);
  EXPECT_FALSE(CheckedAdd(kMax, 1, &r));
  EXPECT_FALSE(CheckedAdd(kMin, -1, &r));
  EXPECT_EQ(r, 5);  // untouched on overflow
  EXPECT_TRUE(CheckedMul(-4, 5, &r));
  EXPECT_EQ(r, -20);
  EXPECT_FALSE(CheckedMul(kMax / 2 + 1, 2, &r));
  EXPECT_FALSE(CheckedMul(kMin, -1, &r));
  EXPECT_EQ(r, -20);
}

TEST(CheckedMathTest, SaturatingAddClamps) {
  EXPECT_EQ(SaturatingAdd(1, 2), 3);
  EXPECT_EQ(SaturatingAdd(kMax, 1), kMax);
  EXPECT_EQ(SaturatingAdd(kMax, kMax), kMax);
  EXPECT_EQ(SaturatingAdd(kMin, -1), kMin);
}

TEST(CheckedMathTest, ProductRefusesNegativeAndHuge) {
  int64_t p = 0;
  EXPECT_TRUE(CheckedProduct({}, 10, &p));
  EXPECT_EQ(p, 1);
  EXPECT_TRUE(CheckedProduct({2, 3, 4}, 24, &p));
  EXPECT_EQ(p, 24);
  EXPECT_FALSE(CheckedProduct({2, 3, 4}, 23, &p));
  EXPECT_FALSE(CheckedProduct({2, -3}, 100, &p));
  EXPECT_FALSE(CheckedProduct({1LL << 32, 1LL << 32}, kMax, &p));
  // Overflow in the middle, then a zero: still refused, never wrapped.
  EXPECT_FALSE(CheckedProduct({1LL << 62, 4, 0}, kMax, &p));
  EXPECT_TRUE(CheckedProduct({0, 1LL << 62}, kMax, &p));
  EXPECT_EQ(p, 0);
}

TEST(CheckedMathTest, SizeAtMost) {
  EXPECT_TRUE(SizeAtMost(10, 10));
  EXPECT_FALSE(SizeAtMost(11, 10));
  EXPECT_FALSE(SizeAtMost(std::numeric_limits<uint64_t>::max(), kMax));
  EXPECT_FALSE(SizeAtMost(0, -1));
}

}  // namespace
}  // namespace tessera

#include "ps/common/extrapolate.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(CopyWithHistoryTest, ExtrapolatesAndKeepsWhatWasPulled) {
  const std::vector<float> pulled = {2, 2, 1};
  std::vector<float> out(3), previous = {1, 2, 3};
  CopyWithHistory(pulled.data(), 3, out.data(), previous.data(), true);
  EXPECT_EQ(out, std::vector<float>({3, 2, -1}));
  EXPECT_EQ(previous, pulled);
}

TEST(CopyWithHistoryTest, WithoutExtrapolatingBothGetThePulledValues) {
  const std::vector<float> pulled = {2, 2, 1};
  std::vector<float> out(3), previous = {1, 2, 3};
  CopyWithHistory(pulled.data(), 3, out.data(), previous.data(), false);
  EXPECT_EQ(out, pulled);
  EXPECT_EQ(previous, pulled);
}

// Long enough for the vector loop and its epilogue, from an address that is
// not float-aligned (a frame's bytes): the scalar formula's floats.
TEST(CopyWithHistoryTest, LongUnalignedInputsMatchTheScalarFormula) {
  const size_t n = 1027;
  std::vector<float> cur(n), prev(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = 0.001f * static_cast<float>(i) - 0.3f;
    cur[i] = prev[i] + 1e-4f * static_cast<float>((i * 7919) % 13) - 6e-4f;
  }
  std::vector<char> bytes(n * sizeof(float) + 1);
  std::memcpy(bytes.data() + 1, cur.data(), n * sizeof(float));
  std::vector<float> out(n), previous = prev;
  CopyWithHistory(bytes.data() + 1, n, out.data(), previous.data(), true);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], cur[i] + (cur[i] - prev[i])) << i;
    ASSERT_EQ(previous[i], cur[i]) << i;
  }
}

}  // namespace
}  // namespace tessera

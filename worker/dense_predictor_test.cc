#include "worker/dense_predictor.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;

TEST(DensePredictorTest, AheadPullsAreExtrapolatedByTheLastChange) {
  DensePredictor predictor;
  std::vector<float> first = {1, 2, 3};
  EXPECT_FALSE(predictor.Predict(0, absl::MakeSpan(first), /*ahead=*/true));
  EXPECT_THAT(first, ElementsAre(1, 2, 3));  // Nothing to extrapolate from.

  std::vector<float> second = {2, 2, 1};
  EXPECT_TRUE(predictor.Predict(0, absl::MakeSpan(second), true));
  EXPECT_THAT(second, ElementsAre(3, 2, -1));

  // The chain goes on from what was pulled, not from what was trained on.
  std::vector<float> third = {2.5f, 2, 1};
  EXPECT_TRUE(predictor.Predict(0, absl::MakeSpan(third), true));
  EXPECT_THAT(third, ElementsAre(3, 2, 1));
}

TEST(DensePredictorTest, APullThatIsNotAheadIsKeptAsItCameAndRestarts) {
  DensePredictor predictor;
  std::vector<float> a = {1, 1};
  predictor.Predict(0, absl::MakeSpan(a), true);
  std::vector<float> fresh = {5, 5};
  EXPECT_FALSE(predictor.Predict(0, absl::MakeSpan(fresh), /*ahead=*/false));
  EXPECT_THAT(fresh, ElementsAre(5, 5));
  std::vector<float> next = {6, 4};
  EXPECT_TRUE(predictor.Predict(0, absl::MakeSpan(next), true));
  EXPECT_THAT(next, ElementsAre(7, 3));  // From the fresh pull.

  predictor.Reset();
  std::vector<float> after_reset = {6, 4};
  EXPECT_FALSE(predictor.Predict(0, absl::MakeSpan(after_reset), true));
  EXPECT_THAT(after_reset, ElementsAre(6, 4));
}

TEST(DensePredictorTest, SlotsAreSeparateAndASizeChangeRestarts) {
  DensePredictor predictor;
  std::vector<float> s0 = {1}, s3 = {10, 20};
  predictor.Predict(0, absl::MakeSpan(s0), true);
  predictor.Predict(3, absl::MakeSpan(s3), true);
  std::vector<float> s0b = {2}, s3b = {11, 19, 7};
  EXPECT_TRUE(predictor.Predict(0, absl::MakeSpan(s0b), true));
  EXPECT_FALSE(predictor.Predict(3, absl::MakeSpan(s3b), true));
  EXPECT_THAT(s0b, ElementsAre(3));
  EXPECT_THAT(s3b, ElementsAre(11, 19, 7));
  std::vector<float> s3c = {12, 19, 5};
  EXPECT_TRUE(predictor.Predict(3, absl::MakeSpan(s3c), true));
  EXPECT_THAT(s3c, ElementsAre(13, 19, 3));
}

// Long enough for the vectorized loop and its scalar epilogue; the floats
// are those of the scalar formula.
TEST(DensePredictorTest, LongTensorsMatchTheScalarFormula) {
  DensePredictor predictor;
  const size_t n = 1027;
  std::vector<float> prev(n), cur(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = 0.001f * static_cast<float>(i) - 0.3f;
    cur[i] = prev[i] + 1e-4f * static_cast<float>((i * 7919) % 13) - 6e-4f;
  }
  std::vector<float> first = prev;
  predictor.Predict(0, absl::MakeSpan(first), false);
  std::vector<float> got = cur;
  ASSERT_TRUE(predictor.Predict(0, absl::MakeSpan(got), true));
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(got[i], cur[i] + (cur[i] - prev[i])) << i;
  }
}

}  // namespace
}  // namespace worker
}  // namespace tessera

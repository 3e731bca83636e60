#include "worker/dense_predictor.h"

#include "gtest/gtest.h"

namespace tessera {
namespace worker {
namespace {

TEST(DensePredictorTest, AheadPullsAfterACompletedOneExtrapolate) {
  DensePredictor predictor;
  DenseHistory first = predictor.Next(0, 3, /*ahead=*/true);
  EXPECT_FALSE(first.extrapolate);  // Nothing to extrapolate from.
  EXPECT_EQ(first.previous.size(), 3u);
  EXPECT_FALSE(predictor.Completed(0));

  DenseHistory second = predictor.Next(0, 3, true);
  EXPECT_TRUE(second.extrapolate);
  EXPECT_EQ(second.previous.data(), first.previous.data());  // One buffer.
  EXPECT_TRUE(predictor.Completed(0));
  EXPECT_TRUE(predictor.Next(0, 3, true).extrapolate);
}

TEST(DensePredictorTest,
     APullThatIsNotAheadIsNotExtrapolatedButStartsTheChain) {
  DensePredictor predictor;
  predictor.Next(0, 2, true);
  predictor.Completed(0);
  EXPECT_FALSE(predictor.Next(0, 2, /*ahead=*/false).extrapolate);
  predictor.Completed(0);
  EXPECT_TRUE(predictor.Next(0, 2, true).extrapolate);
}

TEST(DensePredictorTest, APullThatNeverCompletedRestartsTheChain) {
  DensePredictor predictor;
  predictor.Next(0, 2, true);
  predictor.Completed(0);
  predictor.Next(0, 2, true);  // Failed or dropped: no Completed.
  EXPECT_FALSE(predictor.Next(0, 2, true).extrapolate);
  predictor.Completed(0);
  EXPECT_TRUE(predictor.Next(0, 2, true).extrapolate);
}

TEST(DensePredictorTest, SlotsAreSeparateAndASizeChangeRestarts) {
  DensePredictor predictor;
  predictor.Next(0, 1, true);
  predictor.Next(3, 2, true);
  predictor.Completed(0);
  predictor.Completed(3);
  EXPECT_TRUE(predictor.Next(0, 1, true).extrapolate);
  DenseHistory resized = predictor.Next(3, 5, true);
  EXPECT_FALSE(resized.extrapolate);
  EXPECT_EQ(resized.previous.size(), 5u);
  predictor.Completed(3);
  EXPECT_TRUE(predictor.Next(3, 5, true).extrapolate);
  EXPECT_FALSE(predictor.Completed(7));  // Never asked for.
}

}  // namespace
}  // namespace worker
}  // namespace tessera

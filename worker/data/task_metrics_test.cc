#include "worker/data/task_metrics.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/random.h"

namespace tessera {
namespace worker {
namespace {

// O(n^2): every (positive, negative) pair, a tie counting 1/2.
double BruteForceAuc(const std::vector<float>& scores,
                     const std::vector<float>& labels) {
  double wins = 0;
  double pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 1.0f) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (labels[j] != 0.0f) continue;
      pairs += 1;
      if (scores[i] > scores[j]) wins += 1;
      if (scores[i] == scores[j]) wins += 0.5;
    }
  }
  return wins / pairs;
}

TEST(RocAucTest, MatchesBruteForceWithManyTies) {
  SplitMix64 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + static_cast<int>(rng.Below(300));
    // Few distinct scores, so ties are common.
    const int levels = 1 + static_cast<int>(rng.Below(20));
    std::vector<float> scores(n), labels(n);
    for (int i = 0; i < n; ++i) {
      scores[i] = static_cast<float>(rng.Below(levels)) / levels;
      labels[i] = rng.Uniform() < 0.3 + 0.4 * scores[i] ? 1.0f : 0.0f;
    }
    labels[0] = 1.0f;
    labels[1] = 0.0f;
    TESSERA_ASSERT_OK_AND_ASSIGN(const double auc, RocAuc(scores, labels));
    EXPECT_NEAR(auc, BruteForceAuc(scores, labels), 1e-12) << "trial " << trial;
  }
}

TEST(RocAucTest, PerfectReversedAndAllTied) {
  const std::vector<float> labels = {0, 0, 1, 1};
  EXPECT_THAT(RocAuc(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, labels),
              IsOkAndHolds(1.0));
  EXPECT_THAT(RocAuc(std::vector<float>{0.4f, 0.3f, 0.2f, 0.1f}, labels),
              IsOkAndHolds(0.0));
  EXPECT_THAT(RocAuc(std::vector<double>{5, 5, 5, 5}, labels),
              IsOkAndHolds(0.5));
}

TEST(RocAucTest, OneClassIsFailedPrecondition) {
  EXPECT_THAT(RocAuc(std::vector<float>{0.1f, 0.9f}, std::vector<float>{1, 1}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(RocAucTest, BadInputIsInvalidArgument) {
  EXPECT_THAT(RocAuc(std::vector<float>{0.1f}, std::vector<float>{1, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RocAuc(std::vector<float>{}, std::vector<float>{}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RocAuc(std::vector<float>{NAN, 0.5f}, std::vector<float>{1, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RocAuc(std::vector<float>{0.1f, 0.5f}, std::vector<float>{2, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LogLossTest, MatchesDefinitionAndClamps) {
  const std::vector<float> labels = {1, 0, 1};
  const std::vector<float> probabilities = {0.8f, 0.3f, 0.0f};
  const double expected =
      -(std::log(0.8f) + std::log(1 - 0.3f) + std::log(1e-7)) / 3;
  TESSERA_ASSERT_OK_AND_ASSIGN(const double loss,
                               LogLoss(probabilities, labels));
  EXPECT_NEAR(loss, expected, 1e-6);
  EXPECT_THAT(LogLoss(std::vector<float>{1.5f}, std::vector<float>{1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LogLossTest, FromLogitsEqualsFromProbabilities) {
  const std::vector<float> logits = {-3.0f, -0.5f, 0.0f, 2.0f, 40.0f};
  const std::vector<float> labels = {0, 1, 1, 1, 0};
  std::vector<double> probabilities;
  for (float x : logits) probabilities.push_back(1 / (1 + std::exp(-x)));
  TESSERA_ASSERT_OK_AND_ASSIGN(const double from_logits,
                               LogLossFromLogits(logits, labels));
  // Logit 40 with label 0 costs 40, beyond the clamp's -log(1e-7).
  probabilities.pop_back();
  std::vector<float> four_labels(labels.begin(), labels.end() - 1);
  TESSERA_ASSERT_OK_AND_ASSIGN(const double from_probabilities,
                               LogLoss(probabilities, four_labels));
  EXPECT_NEAR(from_logits, (from_probabilities * 4 + 40) / 5, 1e-6);
}

TEST(AccuracyTest, BinaryAndClass) {
  EXPECT_THAT(BinaryAccuracy(std::vector<float>{0.9f, 0.2f, 0.6f, 0.5f},
                             std::vector<float>{1, 0, 0, 1}),
              IsOkAndHolds(0.75));
  EXPECT_THAT(BinaryAccuracy(std::vector<float>{1.0f, -1.0f},
                             std::vector<float>{1, 1}, 0.0f),
              IsOkAndHolds(0.5));
  // Rows: argmax 2, 0 (tie: first), 1.
  const std::vector<float> logits = {0, 1, 3, 5, 5, 0, 0, 2, 1};
  EXPECT_THAT(ClassAccuracy(logits, 3, std::vector<float>{2, 0, 0}),
              IsOkAndHolds(2.0 / 3));
  EXPECT_THAT(ClassAccuracy(logits, 3, std::vector<float>{3, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ClassAccuracy(logits, 2, std::vector<float>{0, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

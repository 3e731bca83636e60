// The MLP trained by the whole system -- 2 tessera-ps shards and 2 async
// tessera-worker processes on loopback -- on the full Fashion-MNIST training
// set reaches 88% test accuracy in 15 epochs, as reported by the worker that
// finished the last epoch. One test: about 80 s alone on two cores.

#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "tests/cluster.h"

namespace tessera {
namespace {

using testing::FindEpoch;
using testing::LocalCluster;
using testing::LocalClusterOptions;

constexpr int kEpochs = 15;  // 10 reach 88.2-88.7%: too close to the bar.
constexpr int kPartitions = 60;
constexpr int64_t kTrainExamples = 60000;
constexpr double kTargetAccuracy = 88.0;  // percent

TEST(TrainingAccuracyTest, MlpReachesEightyEightPercentWithTwoAsyncWorkers) {
  LocalClusterOptions options;
  options.num_shards = 2;
  options.job_config = absl::StrCat(
      "name: \"fashion-mnist-accuracy\"\n", "model { name: \"mlp\" seed: 1 }\n",
      "dataset { format: FASHION_MNIST path: \"", testing::kFashionMnistDir,
      "\" }\n", "batch_size: 64\n", "epochs: ", kEpochs, "\n",
      "partitions_per_epoch: ", kPartitions, "\n",
      "consistency { mode: ASYNC }\n",
      "optimizer { kind: ADAM learning_rate: 0.001 }\n",
      "lease_timeout_s: 30\n");
  auto cluster = LocalCluster::Start(options);
  ASSERT_THAT(cluster, IsOk());
  ASSERT_THAT((*cluster)->StartWorker("w0"), IsOk());
  ASSERT_THAT((*cluster)->StartWorker("w1"), IsOk());
  // ~1 minute alone; the bound leaves room for a loaded machine and stays
  // inside the "large" size's 15 minutes.
  auto finished = (*cluster)->WaitUntilFinished(absl::Minutes(12));
  ASSERT_THAT(finished, IsOk());
  // The last epoch's evaluation is reported before its worker exits.
  auto codes = (*cluster)->WaitForWorkers(absl::Seconds(60));
  ASSERT_THAT(codes, IsOk());
  for (const auto& [id, code] : *codes) {
    EXPECT_EQ(code, 0) << "worker " << id;
  }
  auto status = (*cluster)->Status();
  ASSERT_THAT(status, IsOk());

  for (int e = 0; e < kEpochs; ++e) {
    const v1::EpochStats* stats = FindEpoch(*status, e);
    ASSERT_NE(stats, nullptr) << "epoch " << e;
    EXPECT_EQ(stats->samples(), kTrainExamples) << "epoch " << e;
    EXPECT_EQ(stats->partitions_done(), kPartitions) << "epoch " << e;
    if (stats->test_samples() > 0) {
      std::cout << absl::StrFormat(
          "epoch %2d: %.1fs, train accuracy %.2f%%, test accuracy %.2f%%\n",
          e + 1, (stats->finished_unix_ms() - stats->started_unix_ms()) / 1e3,
          100.0 * stats->correct() / stats->samples(),
          100.0 * stats->test_correct() / stats->test_samples());
    }
  }
  const v1::EpochStats* last = FindEpoch(*status, kEpochs - 1);
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(last->test_samples(), 10000) << status->ShortDebugString();
  const double accuracy = 100.0 * last->test_correct() / last->test_samples();
  EXPECT_GE(accuracy, kTargetAccuracy);
}

}  // namespace
}  // namespace tessera

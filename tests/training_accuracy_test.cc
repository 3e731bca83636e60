// The MLP trained by the whole system -- 2 tessera-ps shards and 2 async
// tessera-worker processes on loopback -- on the full Fashion-MNIST training
// set reaches 87% test accuracy in 15 epochs (88% typically), as reported by
// the worker that finished the last epoch. One test: 35-80 s on two cores.

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

constexpr int kEpochs = 15;
constexpr int kPartitions = 60;
constexpr int64_t kTrainExamples = 60000;
// The final test accuracy of this asynchronous job varies from run to run
// (which updates each pull sees depends on timing). Measured, 15 epochs on 2
// cores: 87.86, 88.42, 88.43% (three runs in a row, another session's
// fuzzer beside them) and 87.91% (a fresh-clone `make test` with other work
// running, which failed the former 88.0 bar): 87.86-88.43, a spread of 0.57
// point. The bound sits 0.86 point below the lowest run measured, 1.5x that
// spread; typical runs reach 88%. With the partition switch pipelined
// (docs/design.md, section 5, "Train"), three runs beside a cold Bazel build
// (load average 5-7): 88.97, 88.69, 89.00%. With dense tensors extrapolated
// (the default since; worker/dense_predictor.h), three runs beside a cold
// build (load average 6-7): 88.39, 88.76, 89.16%. With a step's dense
// tensors in one request per shard (PullDenseBatch / PushDenseBatch), three
// runs beside a cold build (load average 7-9): 88.60, 88.75, 88.68%.
constexpr double kTargetAccuracy = 87.0;  // percent

// The job with `model`: the built-in network or the same network as a
// TorchScript file (examples/fashion_mnist_mlp/mlp.py).
void TrainAndCheckAccuracy(const std::string& model) {
  LocalClusterOptions options;
  options.num_shards = 2;
  options.job_config = absl::StrCat(
      "name: \"fashion-mnist-accuracy\"\n", "model { ", model, " seed: 1 }\n",
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

TEST(TrainingAccuracyTest, MlpReachesEightySevenPercentWithTwoAsyncWorkers) {
  TrainAndCheckAccuracy("name: \"mlp\"");
}

// The built-in MLP rewritten in PyTorch and saved with TorchScript reaches
// the same accuracy under the same bound. Measured, 15 epochs on 2 cores,
// three runs of both tests in a row: TorchScript 88.50, 88.96, 88.27% (a
// spread of 0.69 point; the bound is 1.27 points below the lowest), built-in
// 88.47, 88.42, 88.52% in the same runs; and TorchScript 88.77, 88.70, 88.75%
// in three runs beside a cold Bazel build (load average 5-13). With the
// partition switch pipelined, three runs beside a cold build (load average
// 5-7): TorchScript 88.98, 88.42, 88.61%. With dense tensors extrapolated,
// the same way: 88.69, 89.00, 88.56%. With dense batches, the same way
// (load average 7-9): 88.84, 89.12, 89.03%.
TEST(TrainingAccuracyTest, TorchScriptMlpReachesTheSameAccuracy) {
  TrainAndCheckAccuracy(absl::StrCat(
      "name: \"torchscript\" loss: CROSS_ENTROPY torchscript: \"",
      testing::BinaryPath("examples/fashion_mnist_mlp/mlp.pt"), "\""));
}

}  // namespace
}  // namespace tessera

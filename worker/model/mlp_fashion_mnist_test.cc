// The MLP trained locally (plain SGD, the test playing the parameter server)
// on the installed Fashion-MNIST training set classifies the test set.

#include <memory>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/dataset.h"
#include "worker/data/fashion_mnist.h"
#include "worker/model/local_sgd.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {
namespace {

constexpr char kInstalledDir[] = "/usr/share/datasets/fashion-mnist";

TEST(MlpFashionMnistTest, FewHundredSgdStepsReachSeventyFivePercent) {
  absl::StatusOr<std::unique_ptr<DenseDataset>> train =
      OpenFashionMnist(kInstalledDir, FashionMnistSplit::kTrain);
  ASSERT_THAT(train, IsOk());
  FashionMnistOptions test_options;
  test_options.max_examples = 2000;
  absl::StatusOr<std::unique_ptr<DenseDataset>> test =
      OpenFashionMnist(kInstalledDir, FashionMnistSplit::kTest, test_options);
  ASSERT_THAT(test, IsOk());

  ModelOptions options;
  options.name = "mlp";
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Create(options);
  ASSERT_THAT(model, IsOk());
  LocalSgd sgd(model->get());

  // 300 batches of 64 from a shuffled partition of the training set.
  BatchOptions batches;
  batches.batch_size = 64;
  batches.shuffle = true;
  batches.shuffle_seed = 1;
  auto reader =
      PartitionReader<DenseBatch>::Create(train->get(), 0, 3, batches);
  ASSERT_THAT(reader, IsOk());
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 300; ++step) {
    absl::StatusOr<DenseBatch> batch = reader->Next();
    ASSERT_THAT(batch, IsOk());
    absl::StatusOr<StepResult> result = sgd.Step(*batch, 0.1f);
    ASSERT_THAT(result, IsOk());
    if (step == 0) first_loss = result->loss;
    last_loss = result->loss;
  }
  EXPECT_LT(last_loss, first_loss);

  BatchOptions eval_batches;
  eval_batches.batch_size = 500;
  auto eval =
      PartitionReader<DenseBatch>::Create(test->get(), 0, 1, eval_batches);
  ASSERT_THAT(eval, IsOk());
  int64_t correct = 0, total = 0;
  while (!eval->Done()) {
    absl::StatusOr<DenseBatch> batch = eval->Next();
    ASSERT_THAT(batch, IsOk());
    absl::StatusOr<EvalResult> result = sgd.Evaluate(*batch);
    ASSERT_THAT(result, IsOk());
    correct += result->num_correct;
    total += result->num_examples;
  }
  ASSERT_EQ(total, 2000);
  const double accuracy = static_cast<double>(correct) / total;
  RecordProperty("accuracy", std::to_string(accuracy));
  EXPECT_GT(accuracy, 0.75);
}

}  // namespace
}  // namespace worker
}  // namespace tessera

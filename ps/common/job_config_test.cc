#include "ps/common/job_config.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

constexpr char kExample[] = R"pb(
  name: "fashion-mnist-mlp"
  model { name: "mlp" }
  dataset { format: FASHION_MNIST path: "/usr/share/datasets/fashion-mnist" }
  batch_size: 64
  epochs: 5
  partitions_per_epoch: 120
  consistency { mode: SSP staleness: 4 }
  optimizer { kind: ADAM learning_rate: 0.001 }
  tensor_groups {
    prefix: "emb"
    optimizer { kind: ADAGRAD learning_rate: 0.1 }
  }
  flush_interval_s: 5
)pb";

TEST(JobConfigTest, ParsesTheExampleAndFillsDefaults) {
  auto job = ParseJobConfig(kExample);
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->epochs(), 5);
  EXPECT_EQ(job->model().hidden_size(), 2);
  EXPECT_EQ(job->lease_timeout_s(), 30);
  EXPECT_EQ(StalenessBound(*job), 4);
  EXPECT_EQ(OptimizerFor(*job, "emb.weight").kind(),
            v1::OptimizerConfig::ADAGRAD);
  EXPECT_EQ(OptimizerFor(*job, "fc1.weight").kind(), v1::OptimizerConfig::ADAM);
}

TEST(JobConfigTest, SyntaxErrorsNameTheLine) {
  EXPECT_THAT(
      ParseJobConfig("name: \"x\"\nepochs: five\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseJobConfig("nmae: \"x\""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nmae")));
}

TEST(JobConfigTest, InvalidValuesNameTheField) {
  EXPECT_THAT(
      ParseJobConfig("name: \"x\" model { name: \"rnn\" }"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.name")));
  EXPECT_THAT(
      ParseJobConfig("name: \"x\" model { name: \"mlp\" } epochs: -1"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("epochs")));
  EXPECT_THAT(
      ParseJobConfig("name: \"x\" model { name: \"mlp\" } "
                     "optimizer { learning_rate: -1 }"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("learning_rate")));
  EXPECT_THAT(
      ParseJobConfig("name: \"x\" model { name: \"logreg\" } "
                     "dataset { format: SYNTHETIC_CTR }"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SYNTHETIC_CTR")));
  EXPECT_THAT(LoadJobConfig("/nonexistent/job.pbtxt"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(JobConfigTest, EveryExampleConfigIsValid) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  ASSERT_NE(srcdir, nullptr);
  const std::string dir = std::string(srcdir) + "/tessera/worker/configs";
  int checked = 0;
  for (const char* name : {"fashion_mnist_mlp", "fashion_mnist_cnn",
                           "ctr_logreg", "heart_scale_logreg"}) {
    auto job = LoadJobConfig(dir + "/" + name + ".pbtxt");
    EXPECT_THAT(job, IsOk()) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace tessera

#include "ps/common/job_config.h"

#include <cstdlib>
#include <fstream>
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
  EXPECT_TRUE(ExtrapolatesDense(*job));
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
  for (const char* name :
       {"fashion_mnist_mlp", "fashion_mnist_cnn", "ctr_logreg",
        "heart_scale_logreg", "ctr_logreg_tiered"}) {
    auto job = LoadJobConfig(dir + "/" + name + ".pbtxt");
    EXPECT_THAT(job, IsOk()) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

// A logreg job may set its one table's memory policy and optimizer, by the
// table's name, and nothing else of it; other built-in models take none.
TEST(JobConfigTest, LogregTakesAMemoryPolicyForItsTable) {
  const std::string head =
      "name: \"x\" dataset { format: SYNTHETIC_CTR num_examples: 10 "
      "vocabulary: 10 features_per_example: 2 } model { name: ";
  auto job = [&](const std::string& model, const std::string& table) {
    return ParseJobConfig(head + model + " embedding_tables { " + table +
                          " } }");
  };
  EXPECT_THAT(job("\"logreg\"",
                  "module: \"embedding\" memory_policy { max_rows: 10 "
                  "eviction: EVICTION_DISK }"),
              IsOk());
  EXPECT_THAT(job("\"logreg\"", "module: \"emb\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("a logreg model's table is \"embedding\"")));
  EXPECT_THAT(job("\"logreg\"", "module: \"embedding\" rows: 5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sets rows or initializer")));
  EXPECT_THAT(job("\"logreg\"",
                  "module: \"embedding\" memory_policy { eviction: "
                  "EVICTION_DISK }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs max_rows > 0")));
  EXPECT_THAT(job("\"mlp\"", "module: \"embedding\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only for models torchscript and logreg")));
}

constexpr char kTorchScript[] = R"pb(
  name: "criteo-dlrm"
  model {
    name: "torchscript"
    torchscript: "dlrm.pt"
    loss: BCE_WITH_LOGITS
    embedding_tables { module: "emb_l.0" rows: 1000 }
    embedding_tables { module: "emb_l.1" }
  }
  dataset {
    format: CSV
    path: "/data/clicks"
    max_bad_lines: 10
    csv { label: "clicked" dense: "age" categorical: "ad" categorical: "site" }
  }
)pb";

TEST(JobConfigTest, TorchScriptJobsAreValidated) {
  ASSERT_THAT(ParseJobConfig(kTorchScript), IsOk());
  auto with = [](const std::string& from, const std::string& to) {
    std::string text = kTorchScript;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    return ParseJobConfig(text);
  };
  EXPECT_THAT(with("torchscript: \"dlrm.pt\"", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.torchscript")));
  EXPECT_THAT(with("name: \"torchscript\"", "name: \"mlp\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.torchscript")));
  EXPECT_THAT(
      with("module: \"emb_l.1\"", "module: \"emb_l.0\""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
  EXPECT_THAT(with("module: \"emb_l.1\"", "module: \"\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(".module is empty")));
  EXPECT_THAT(with("rows: 1000", "rows: -1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(".rows")));
  EXPECT_THAT(
      with("loss: BCE_WITH_LOGITS", "loss: 17"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.loss")));
  EXPECT_THAT(
      with("max_bad_lines: 10", "max_bad_lines: -1"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_bad_lines")));
  // One table per categorical field of the data.
  EXPECT_THAT(with(" categorical: \"site\"", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("one table per field")));
  EXPECT_THAT(with("format: CSV", "format: CRITEO"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("26 categorical fields")));
  EXPECT_THAT(with("format: CSV", "format: LIBSVM"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("FASHION_MNIST, CRITEO or CSV")));
  EXPECT_THAT(
      with("max_bad_lines: 10", "limit: 100"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.limit")));
  EXPECT_THAT(with("rows: 1000", "rows: 1000 memory_policy { max_rows: 10 }"),
              IsOk());
  EXPECT_THAT(with("rows: 1000",
                   "rows: 1000 memory_policy { eviction: EVICTION_DISK }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs max_rows > 0")));
  EXPECT_THAT(with("rows: 1000",
                   "rows: 1000 memory_policy { max_rows: 10 "
                   "eviction: EVICTION_DISK }"),
              IsOk());
  EXPECT_THAT(with("rows: 1000",
                   "rows: 1000 memory_policy { max_rows: 10 "
                   "eviction: EVICTION_DISK "
                   "expire_after_steps: 5 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expiry with EVICTION_DISK")));
  EXPECT_THAT(with("rows: 1000", "rows: 1000 memory_policy { max_rows: -1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("embedding_tables[0].memory_policy")));
  EXPECT_THAT(with("rows: 1000", "rows: 1000 optimizer { kind: ADAGRAD }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("embedding_tables[0].optimizer")));
}

TEST(JobConfigTest, ModelFileIsRelativeToTheJobFile) {
  auto job = ParseJobConfig(kTorchScript);
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(ModelFilePath(*job, "/jobs/a/job.textproto"), "/jobs/a/dlrm.pt");
  EXPECT_EQ(ModelFilePath(*job, "job.textproto"), "dlrm.pt");
  job->mutable_model()->set_torchscript("/abs/m.pt");
  EXPECT_EQ(ModelFilePath(*job, "/jobs/a/job.textproto"), "/abs/m.pt");
  job->mutable_model()->clear_torchscript();
  EXPECT_EQ(ModelFilePath(*job, "/jobs/a/job.textproto"), "");
}

TEST(JobConfigTest, ReadFileCappedRefusesMissingAndLargeFiles) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/model.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(1000, 'x');
  }
  EXPECT_THAT(ReadFileCapped(path, 1000), IsOkAndHolds(std::string(1000, 'x')));
  EXPECT_THAT(ReadFileCapped(path, 999),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(path)));
  EXPECT_THAT(ReadFileCapped(path + ".missing", 1000),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(".missing")));
}

}  // namespace
}  // namespace tessera

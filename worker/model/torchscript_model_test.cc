// Gradient parity with PyTorch: worker/model/testdata/make_parity.py saves
// TorchScript models, a batch and the gradients PyTorch computes for it; the
// worker's TorchScript model must compute the same (to float tolerance),
// with its embedding tables cut down to the batch's rows.

#include "worker/model/torchscript_model.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/batch.h"
#include "worker/data/tabular_batch.h"

namespace tessera {
namespace worker {
namespace {

using ::tessera::IsOk;
using ::tessera::StatusIs;
using ::testing::HasSubstr;

std::string TestDataPath(const std::string& name) {
  return std::string(std::getenv("TEST_SRCDIR")) +
         "/tessera/worker/model/testdata/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "name n v1 ... vn" per line.
std::map<std::string, std::vector<float>> ReadRecords(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  std::ifstream in(path);
  std::string name;
  size_t n;
  while (in >> name >> n) {
    std::vector<float>& v = out[name];
    v.resize(n);
    for (float& x : v) in >> x;
  }
  return out;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want,
                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-5 + 1e-4 * std::abs(want[i]))
        << what << "[" << i << "]";
  }
}

std::vector<int64_t> AsInt(const std::vector<float>& v) {
  return std::vector<int64_t>(v.begin(), v.end());
}

TorchScriptOptions DlrmOptions() {
  TorchScriptOptions options;
  options.file = ReadFile(TestDataPath("tiny_dlrm.pt"));
  options.file_name = "tiny_dlrm.pt";
  options.task = TaskKind::kBinary;
  options.input = InputKind::kTabular;
  options.input_dim = 3;
  for (int k = 0; k < 2; ++k) {
    TorchScriptTable table;
    table.module = "emb." + std::to_string(k);
    table.rows = 50;
    table.initializer.set_kind(v1::Initializer::NORMAL);
    table.initializer.set_stddev(1);
    options.tables.push_back(table);
  }
  return options;
}

TEST(TorchScriptModelTest, MapsParametersBuffersAndTables) {
  TESSERA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                               LoadTorchScriptModel(DlrmOptions()));
  std::vector<std::string> names;
  for (const TensorInfo& t : model->Parameters()) {
    names.push_back(t.name);
    if (t.kind == TensorKind::kDense) {
      EXPECT_FALSE(t.initial_values.empty()) << t.name;
    } else {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{50, 4})) << t.name;
      EXPECT_TRUE(t.initial_values.empty());
    }
  }
  EXPECT_THAT(names, ::testing::ElementsAre(
                         "bottom.0.weight", "bottom.0.bias", "bottom.1.weight",
                         "bottom.1.bias", "bottom.3.weight", "bottom.3.bias",
                         "top.weight", "top.bias", "bottom.1.running_mean",
                         "bottom.1.running_var", "bottom.1.num_batches_tracked",
                         "emb.0.weight", "emb.1.weight"));
  EXPECT_TRUE(model->Parameters()[8].buffer);
  EXPECT_EQ(model->Parameters()[12].field, 1);
}

TEST(TorchScriptModelTest, TabularGradientsEqualPyTorch) {
  auto rec = ReadRecords(TestDataPath("tiny_dlrm.txt"));
  TESSERA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                               LoadTorchScriptModel(DlrmOptions()));
  TabularBatch batch;
  batch.batch_size = 6;
  batch.num_dense = 3;
  batch.dense = rec["dense"];
  batch.labels = rec["labels"];
  for (int k = 0; k < 2; ++k) {
    TabularBatch::Field f;
    f.offsets = AsInt(rec["offsets" + std::to_string(k)]);
    for (float id : rec["ids" + std::to_string(k)]) f.ids.push_back(id);
    batch.fields.push_back(f);
  }
  const std::vector<int64_t> rows = {50, 50};
  ASSERT_THAT(AssignTableRows(rows, &batch), IsOk());
  // The shards' values: the file's own for dense tensors (already the
  // model's), the full tables' rows for the batch's ids.
  for (int k = 0; k < 2; ++k) {
    const std::string name = "emb." + std::to_string(k) + ".weight";
    const std::vector<float>& table = rec["value:" + name];
    std::vector<float> pulled;
    for (uint64_t r : batch.fields[k].unique_rows) {
      pulled.insert(pulled.end(), table.begin() + r * 4,
                    table.begin() + (r + 1) * 4);
    }
    ASSERT_THAT(
        model->LoadEmbeddingRows(name, batch.fields[k].unique_rows, pulled),
        IsOk());
  }
  TESSERA_ASSERT_OK_AND_ASSIGN(StepResult step, model->TrainStep(batch));
  EXPECT_NEAR(step.loss, rec["loss"][0], 1e-5);
  for (const TensorGradient& g : step.gradients) {
    if (g.kind == TensorKind::kEmbedding) {
      const int k = g.name == "emb.0.weight" ? 0 : 1;
      const std::vector<float>& full = rec["grad:" + g.name];
      std::vector<float> want;
      for (uint64_t r : batch.fields[k].unique_rows) {
        want.insert(want.end(), full.begin() + r * 4,
                    full.begin() + (r + 1) * 4);
      }
      ExpectNear(g.values, want, g.name);
    } else if (rec.count("grad:" + g.name)) {
      ExpectNear(g.values, rec["grad:" + g.name], g.name);
    } else {
      ExpectNear(g.values, rec["buffer_change:" + g.name], g.name);
    }
  }
}

class DenseGradientsTest : public ::testing::TestWithParam<std::string> {};

// Scripted (torch.jit.script) and traced (torch.jit.trace) files alike.
INSTANTIATE_TEST_SUITE_P(ScriptedAndTraced, DenseGradientsTest,
                         ::testing::Values("mlp.pt", "mlp_traced.pt"));

TEST_P(DenseGradientsTest, EqualPyTorch) {
  auto rec = ReadRecords(TestDataPath("mlp.txt"));
  TorchScriptOptions options;
  options.file = ReadFile(TestDataPath(GetParam()));
  options.task = TaskKind::kClasses;
  options.input = InputKind::kDense;
  options.input_dim = 12;
  TESSERA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                               LoadTorchScriptModel(options));
  DenseBatch batch;
  batch.batch_size = 5;
  batch.feature_dim = 12;
  batch.features = rec["x"];
  batch.labels = AsInt(rec["labels"]);
  TESSERA_ASSERT_OK_AND_ASSIGN(StepResult step, model->TrainStep(batch));
  EXPECT_NEAR(step.loss, rec["loss"][0], 1e-5);
  ASSERT_EQ(step.gradients.size(), 4u);
  for (const TensorGradient& g : step.gradients) {
    ExpectNear(g.values, rec["grad:" + g.name], g.name);
  }
  // A step changes no parameter; loading and reading round-trips.
  TESSERA_ASSERT_OK_AND_ASSIGN(std::vector<float> w,
                               model->DenseValues("fc2.bias"));
  ExpectNear(w, model->Parameters()[3].initial_values, "fc2.bias");
  // The same values staged and committed (the module's tensors swap their
  // memory): the module trains on them as before, twice over, so that the
  // second commit reuses the first's old memory.
  for (int round = 0; round < 2; ++round) {
    for (const TensorInfo& t : model->Parameters()) {
      TESSERA_ASSERT_OK_AND_ASSIGN(std::vector<float> now,
                                   model->DenseValues(t.name));
      TESSERA_ASSERT_OK_AND_ASSIGN(absl::Span<float> staging,
                                   model->DenseStaging(t.name));
      ASSERT_EQ(staging.size(), now.size());
      std::copy(now.begin(), now.end(), staging.begin());
      ASSERT_THAT(model->CommitDense(t.name), IsOk());
    }
    TESSERA_ASSERT_OK_AND_ASSIGN(StepResult again, model->TrainStep(batch));
    EXPECT_NEAR(again.loss, rec["loss"][0], 1e-5);
    for (const TensorGradient& g : again.gradients) {
      ExpectNear(g.values, rec["grad:" + g.name], g.name);
    }
  }
  ASSERT_THAT(model->LoadDense("fc2.bias", {1, 2, 3}), IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(w, model->DenseValues("fc2.bias"));
  EXPECT_EQ(w, (std::vector<float>{1, 2, 3}));
  TESSERA_ASSERT_OK_AND_ASSIGN(absl::Span<float> staging,
                               model->DenseStaging("fc2.bias"));
  std::fill(staging.begin(), staging.end(), 7.0f);
  ASSERT_THAT(model->CommitDense("fc2.bias"), IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(w, model->DenseValues("fc2.bias"));
  EXPECT_EQ(w, (std::vector<float>{7, 7, 7}));
}

// Regression: a [B, 1] output under MSE with real-valued labels, tabular
// data without categorical fields.
TEST(TorchScriptModelTest, MseGradientsEqualPyTorch) {
  auto rec = ReadRecords(TestDataPath("linear.txt"));
  TorchScriptOptions options;
  options.file = ReadFile(TestDataPath("linear.pt"));
  options.task = TaskKind::kRegression;
  options.input = InputKind::kTabular;
  options.input_dim = 12;
  TESSERA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                               LoadTorchScriptModel(options));
  TabularBatch batch;
  batch.batch_size = 5;
  batch.num_dense = 12;
  batch.dense = rec["x"];
  batch.labels = rec["labels"];
  TESSERA_ASSERT_OK_AND_ASSIGN(StepResult step, model->TrainStep(batch));
  EXPECT_NEAR(step.loss, rec["loss"][0], 1e-5);
  ASSERT_EQ(step.gradients.size(), 2u);
  for (const TensorGradient& g : step.gradients) {
    ExpectNear(g.values, rec["grad:" + g.name], g.name);
  }
  TESSERA_ASSERT_OK_AND_ASSIGN(EvalResult eval, model->Evaluate(batch));
  EXPECT_NEAR(eval.loss, rec["loss"][0], 1e-5);
  EXPECT_TRUE(eval.scores.empty());  // AUC is for binary tasks only.
}

TEST(TorchScriptModelTest, RefusesWhatItCannotTrain) {
  TorchScriptOptions options = DlrmOptions();
  options.tables[1].module = "emb.7";
  EXPECT_THAT(LoadTorchScriptModel(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("emb.7")));
  options = DlrmOptions();
  options.tables[1].module = "bottom.1";  // BatchNorm: a 1-d weight.
  EXPECT_THAT(LoadTorchScriptModel(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2-d")));
  // A forward that does not take the tabular contract's inputs.
  options = DlrmOptions();
  options.file = ReadFile(TestDataPath("mlp.pt"));
  options.tables.clear();
  EXPECT_THAT(LoadTorchScriptModel(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("indices: List[Tensor]")));
  options = DlrmOptions();
  options.file = "not a zip file";
  EXPECT_THAT(LoadTorchScriptModel(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The wrong rows loaded for a batch: FailedPrecondition, not a crash.
  TESSERA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                               LoadTorchScriptModel(DlrmOptions()));
  // (Two examples: BatchNorm refuses one in train mode, as in PyTorch.)
  TabularBatch batch;
  batch.batch_size = 2;
  batch.num_dense = 3;
  batch.dense = {0, 1, 0, 1, 0, 1};
  batch.labels = {1, 0};
  batch.fields.resize(2);
  for (auto& f : batch.fields) {
    f.offsets = {0, 1};
    f.ids = {3, 3};
  }
  ASSERT_THAT(AssignTableRows(std::vector<int64_t>{50, 50}, &batch), IsOk());
  EXPECT_THAT(model->TrainStep(batch).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Out-of-range labels for BCE.
  for (int k = 0; k < 2; ++k) {
    ASSERT_THAT(model->LoadEmbeddingRows("emb." + std::to_string(k) + ".weight",
                                         {3}, {0, 0, 0, 0}),
                IsOk());
  }
  batch.labels = {2, 0};
  EXPECT_THAT(model->TrainStep(batch).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("[0, 1]")));
  batch.labels = {1, 0};
  EXPECT_THAT(model->TrainStep(batch).status(), IsOk());
}

}  // namespace
}  // namespace worker
}  // namespace tessera

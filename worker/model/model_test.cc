#include "worker/model/model.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/random.h"
#include "worker/model/local_sgd.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::unique_ptr<Model> MakeModel(ModelOptions options) {
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Create(options);
  EXPECT_THAT(model, IsOk());
  return model.ok() ? *std::move(model) : nullptr;
}

ModelOptions Mlp() {
  ModelOptions options;
  options.name = "mlp";
  return options;
}

// Gaussian features, labels from a fixed rule so the batch is learnable.
DenseBatch RandomDenseBatch(int batch_size, int feature_dim, int num_classes,
                            uint64_t seed) {
  SplitMix64 rng(seed);
  DenseBatch batch;
  batch.batch_size = batch_size;
  batch.feature_dim = feature_dim;
  for (int i = 0; i < batch_size; ++i) {
    for (int f = 0; f < feature_dim; ++f) {
      batch.features.push_back(static_cast<float>(rng.Normal()));
    }
    // The label is the largest of the first num_classes features.
    const float* first = &batch.features[i * feature_dim];
    batch.labels.push_back(
        std::max_element(first, first + std::min(num_classes, feature_dim)) -
        first);
  }
  return batch;
}

// 28 x 28 noise images; class c (of 10) adds a bright 6 x 4 patch at a place
// of its own, learnable by the mlp and the cnn alike.
DenseBatch PatternBatch(int batch_size, uint64_t seed) {
  SplitMix64 rng(seed);
  DenseBatch batch;
  batch.batch_size = batch_size;
  batch.feature_dim = 784;
  for (int i = 0; i < batch_size; ++i) {
    const int64_t label = static_cast<int64_t>(rng.Below(10));
    const size_t first = batch.features.size();
    for (int p = 0; p < 784; ++p) {
      batch.features.push_back(0.5f * static_cast<float>(rng.Normal()));
    }
    const int top = (label / 5) * 14 + 4, left = (label % 5) * 5 + 2;
    for (int r = top; r < top + 6; ++r) {
      for (int c = left; c < left + 4; ++c) {
        batch.features[first + r * 28 + c] += 2.0f;
      }
    }
    batch.labels.push_back(label);
  }
  return batch;
}

// Examples over ids {0..9}, some shared between examples.
SparseBatch SmallSparseBatch() {
  SparseBatchBuilder builder;
  const std::vector<std::vector<uint64_t>> ids = {
      {0, 3, 7}, {3, 9}, {1, 7, 8, 9}, {2}, {0, 1, 2, 3}, {5, 9}};
  const std::vector<float> labels = {1, 0, 1, 0, 1, 0};
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<float> values;
    for (size_t j = 0; j < ids[i].size(); ++j) {
      values.push_back(0.5f + 0.25f * ((i + j) % 3));
    }
    builder.AddExample(labels[i], ids[i], values);
  }
  return std::move(builder).Build();
}

const TensorGradient& GradientOf(const StepResult& step,
                                 const std::string& name) {
  for (const TensorGradient& gradient : step.gradients) {
    if (gradient.name == name) return gradient;
  }
  ADD_FAILURE() << "no gradient for " << name;
  static const TensorGradient* const kNone = new TensorGradient;
  return *kNone;
}

TEST(ModelTest, MlpParametersAreItsNamedParametersWithTheirShapes) {
  auto model = MakeModel(Mlp());
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->input_kind(), InputKind::kDense);
  const std::vector<TensorInfo>& params = model->Parameters();
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  for (const TensorInfo& info : params) {
    names.push_back(info.name);
    shapes.push_back(info.shape);
    EXPECT_EQ(info.kind, TensorKind::kDense) << info.name;
  }
  EXPECT_THAT(names, ElementsAre("fc1.weight", "fc1.bias", "fc2.weight",
                                 "fc2.bias", "fc3.weight", "fc3.bias"));
  EXPECT_THAT(shapes, ElementsAre(ElementsAre(256, 784), ElementsAre(256),
                                  ElementsAre(128, 256), ElementsAre(128),
                                  ElementsAre(10, 128), ElementsAre(10)));
  EXPECT_EQ(params[0].num_elements(), 256 * 784);
}

TEST(ModelTest, InitializersAreLibtorchDefaultsResolvedToBounds) {
  auto model = MakeModel(Mlp());
  const std::vector<TensorInfo>& params = model->Parameters();
  const double bound = 1.0 / std::sqrt(784.0);
  // kaiming_uniform for weights, resolved to its bounds.
  EXPECT_EQ(params[0].initializer.kind(), v1::Initializer::UNIFORM);
  EXPECT_NEAR(params[0].initializer.low(), -bound, 1e-7);
  EXPECT_NEAR(params[0].initializer.high(), bound, 1e-7);
  EXPECT_EQ(params[1].initializer.kind(), v1::Initializer::UNIFORM);
  EXPECT_NEAR(params[1].initializer.high(), bound, 1e-7);
  EXPECT_NE(params[0].initializer.seed(), params[2].initializer.seed());
}

TEST(ModelTest, InitialValuesAreDrawnFromTheSpecsAndTheSeed) {
  auto model = MakeModel(Mlp());
  const TensorInfo& weight = model->Parameters()[2];  // fc2.weight
  absl::StatusOr<std::vector<float>> values = model->DenseValues(weight.name);
  ASSERT_THAT(values, IsOk());
  const auto [min, max] = std::minmax_element(values->begin(), values->end());
  EXPECT_GE(*min, weight.initializer.low());
  EXPECT_LT(*max, weight.initializer.high());
  EXPECT_GT(*max - *min, weight.initializer.high());

  EXPECT_THAT(MakeModel(Mlp())->DenseValues(weight.name),
              IsOkAndHolds(*values));
  ModelOptions other = Mlp();
  other.seed = 1;
  EXPECT_NE(*MakeModel(other)->DenseValues(weight.name), *values);
}

TEST(ModelTest, LoadedValuesReadBack) {
  ModelOptions options = Mlp();
  options.input_dim = 3;
  options.hidden_sizes = {2};
  options.num_classes = 2;
  auto model = MakeModel(options);
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  ASSERT_THAT(model->LoadDense("fc1.weight", values), IsOk());
  EXPECT_THAT(model->DenseValues("fc1.weight"), IsOkAndHolds(values));
}

TEST(ModelTest, StagedValuesAreCommittedWithoutACopyAndTrainAsLoadedOnes) {
  ModelOptions options = Mlp();
  options.input_dim = 4;
  options.hidden_sizes = {3};
  options.num_classes = 2;
  auto staged = MakeModel(options);
  auto loaded = MakeModel(options);
  const DenseBatch batch = RandomDenseBatch(6, 4, 2, 5);
  SplitMix64 rng(11);
  // Two rounds: the second stages into the first round's old memory.
  std::vector<float*> memory;
  for (int round = 0; round < 2; ++round) {
    for (const TensorInfo& t : staged->Parameters()) {
      std::vector<float> values(t.num_elements());
      for (float& v : values) v = static_cast<float>(rng.Normal());
      absl::StatusOr<absl::Span<float>> staging = staged->DenseStaging(t.name);
      ASSERT_THAT(staging, IsOk());
      ASSERT_EQ(staging->size(), values.size());
      std::copy(values.begin(), values.end(), staging->begin());
      if (t.name == "fc1.weight") memory.push_back(staging->data());
      // Staged, not yet current.
      EXPECT_THAT(staged->DenseValues(t.name), IsOk());
      EXPECT_NE(*staged->DenseValues(t.name), values);
      ASSERT_THAT(staged->CommitDense(t.name), IsOk());
      EXPECT_THAT(staged->DenseValues(t.name), IsOkAndHolds(values));
      ASSERT_THAT(loaded->LoadDense(t.name, values), IsOk());
    }
    absl::StatusOr<StepResult> a = staged->TrainStep(batch);
    absl::StatusOr<StepResult> b = loaded->TrainStep(batch);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    EXPECT_EQ(a->loss, b->loss);
    for (size_t i = 0; i < a->gradients.size(); ++i) {
      EXPECT_EQ(a->gradients[i].values, b->gradients[i].values) << i;
    }
  }
  // The two rounds used two buffers, swapped: no copy on commit.
  ASSERT_EQ(memory.size(), 2u);
  EXPECT_NE(memory[0], memory[1]);
  EXPECT_EQ(staged->DenseStaging("fc1.weight")->data(), memory[0]);
  EXPECT_THAT(staged->DenseStaging("fc9.weight"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ModelTest, GradientViewsEqualCopiesAndOutliveTheNextStep) {
  auto copies = MakeModel(Mlp());
  auto views = MakeModel(Mlp());
  views->set_dense_gradient_views(true);
  const DenseBatch first = RandomDenseBatch(8, 784, 10, 3);
  const DenseBatch second = RandomDenseBatch(8, 784, 10, 4);
  absl::StatusOr<StepResult> a = copies->TrainStep(first);
  absl::StatusOr<StepResult> b = views->TrainStep(first);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_EQ(a->gradients.size(), b->gradients.size());
  for (size_t i = 0; i < a->gradients.size(); ++i) {
    EXPECT_EQ(a->gradients[i].owner, nullptr);
    ASSERT_NE(b->gradients[i].owner, nullptr) << i;
    EXPECT_TRUE(b->gradients[i].values.empty());
    const absl::Span<const float> view = b->gradients[i].data();
    EXPECT_EQ(std::vector<float>(view.begin(), view.end()),
              a->gradients[i].values)
        << i;
  }
  // The next step leaves the views it did not make alone.
  const std::vector<float> kept(a->gradients[0].values);
  ASSERT_THAT(views->TrainStep(second), IsOk());
  const absl::Span<const float> view = b->gradients[0].data();
  EXPECT_EQ(std::vector<float>(view.begin(), view.end()), kept);
}

TEST(ModelTest, LoadingTheWrongNumberOfValuesIsInvalidArgument) {
  auto model = MakeModel(Mlp());
  const std::vector<float> values(255, 0.0f);
  EXPECT_THAT(model->LoadDense("fc1.bias", values),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has 256 values, got 255")));
  EXPECT_THAT(model->LoadDense("fc1.weight", values),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelTest, LoadingAnUnknownTensorIsNotFound) {
  auto model = MakeModel(Mlp());
  EXPECT_THAT(model->LoadDense("fc9.weight", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("fc9.weight")));
  EXPECT_THAT(model->LoadEmbeddingRows("embedding", {}, {}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ModelTest, CreateRejectsBadOptions) {
  ModelOptions options;
  options.name = "transformer";
  EXPECT_THAT(Model::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown model 'transformer'")));
  options = Mlp();
  options.hidden_sizes = {0};
  EXPECT_THAT(Model::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.name = "cnn";
  options.input_dim = 100;
  EXPECT_THAT(Model::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.name = "logreg";
  options.embedding_dim = 0;
  EXPECT_THAT(Model::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelTest, MalformedDenseBatchesAreInvalidArgument) {
  auto model = MakeModel(Mlp());
  DenseBatch batch = RandomDenseBatch(4, 784, 10, 1);
  batch.labels[2] = 10;
  EXPECT_THAT(model->TrainStep(batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("label 10 of example 2")));
  EXPECT_THAT(
      model->TrainStep(RandomDenseBatch(4, 100, 10, 1)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("100 features")));
  batch = RandomDenseBatch(4, 784, 10, 1);
  batch.features.pop_back();
  EXPECT_THAT(model->Evaluate(batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(model->TrainStep(SmallSparseBatch()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("reads dense batches")));
}

TEST(ModelTest, TrainStepReturnsAGradientPerParameterInOrder) {
  auto model = MakeModel(Mlp());
  const DenseBatch batch = RandomDenseBatch(8, 784, 10, 2);
  absl::StatusOr<StepResult> step = model->TrainStep(batch);
  ASSERT_THAT(step, IsOk());
  EXPECT_EQ(step->num_examples, 8);
  EXPECT_GE(step->num_correct, 0);
  EXPECT_LE(step->num_correct, 8);
  EXPECT_NEAR(step->loss, std::log(10.0), 0.5);  // Near-uniform at the start.
  ASSERT_THAT(step->gradients, SizeIs(model->Parameters().size()));
  for (size_t i = 0; i < step->gradients.size(); ++i) {
    EXPECT_EQ(step->gradients[i].name, model->Parameters()[i].name);
    EXPECT_THAT(step->gradients[i].values,
                SizeIs(model->Parameters()[i].num_elements()));
  }
  // A second step on the same values gives the same gradients: gradients do
  // not accumulate across steps, and TrainStep changes no parameter.
  absl::StatusOr<StepResult> again = model->TrainStep(batch);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->loss, step->loss);
  EXPECT_EQ(again->gradients[0].values, step->gradients[0].values);

  absl::StatusOr<EvalResult> eval = model->Evaluate(batch);
  ASSERT_THAT(eval, IsOk());
  EXPECT_FLOAT_EQ(eval->loss, step->loss);
  EXPECT_EQ(eval->num_correct, step->num_correct);
}

// Central differences of Evaluate's loss against TrainStep's gradient, for
// every value of every dense tensor and every loaded embedding row.
void ExpectGradientsMatchFiniteDifferences(Model& model,
                                           const DenseBatch* dense,
                                           const SparseBatch* sparse,
                                           std::vector<float> rows) {
  constexpr float kEpsilon = 1e-3f;
  const auto loss = [&]() {
    if (sparse != nullptr) {
      EXPECT_THAT(
          model.LoadEmbeddingRows("embedding", sparse->unique_ids, rows),
          IsOk());
    }
    absl::StatusOr<EvalResult> eval =
        dense != nullptr ? model.Evaluate(*dense) : model.Evaluate(*sparse);
    EXPECT_THAT(eval, IsOk());
    return eval.ok() ? eval->loss : 0.0;
  };
  const auto expect_near = [](double numeric, double analytic,
                              const std::string& what) {
    EXPECT_NEAR(numeric, analytic, 5e-4 + 1e-2 * std::abs(analytic)) << what;
  };
  loss();  // Loads the rows.
  absl::StatusOr<StepResult> step =
      dense != nullptr ? model.TrainStep(*dense) : model.TrainStep(*sparse);
  ASSERT_THAT(step, IsOk());

  int checked = 0;
  for (const TensorGradient& gradient : step->gradients) {
    if (gradient.kind == TensorKind::kEmbedding) {
      ASSERT_EQ(gradient.values.size(), rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        const float original = rows[i];
        rows[i] = original + kEpsilon;
        const double plus = loss();
        rows[i] = original - kEpsilon;
        const double minus = loss();
        rows[i] = original;
        expect_near((plus - minus) / (2 * kEpsilon), gradient.values[i],
                    gradient.name + "[" + std::to_string(i) + "]");
        ++checked;
      }
      continue;
    }
    std::vector<float> values = *model.DenseValues(gradient.name);
    for (size_t i = 0; i < values.size(); ++i) {
      const float original = values[i];
      values[i] = original + kEpsilon;
      ASSERT_THAT(model.LoadDense(gradient.name, values), IsOk());
      const double plus = loss();
      values[i] = original - kEpsilon;
      ASSERT_THAT(model.LoadDense(gradient.name, values), IsOk());
      const double minus = loss();
      values[i] = original;
      ASSERT_THAT(model.LoadDense(gradient.name, values), IsOk());
      expect_near((plus - minus) / (2 * kEpsilon), gradient.values[i],
                  gradient.name + "[" + std::to_string(i) + "]");
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(ModelTest, MlpGradientsMatchFiniteDifferences) {
  ModelOptions options = Mlp();
  options.input_dim = 5;
  options.hidden_sizes = {4, 3};
  options.num_classes = 3;
  options.seed = 3;
  auto model = MakeModel(options);
  const DenseBatch batch = RandomDenseBatch(6, 5, 3, 4);
  ExpectGradientsMatchFiniteDifferences(*model, &batch, nullptr, {});
}

// ReLU and max-pooling kinks make per-value differences of conv weights
// noisy (a small change of one weight moves hundreds of activations), so the
// cnn is checked one tensor at a time along the tensor's gradient g: the
// loss must change at rate |g| there. A gradient that is wrong in scale,
// sign or direction changes that rate.
TEST(ModelTest, CnnGradientsMatchDirectionalFiniteDifferences) {
  constexpr double kEpsilon = 1e-3;
  ModelOptions options;
  options.name = "cnn";
  options.conv_channels = {2, 3};
  options.num_classes = 3;
  options.seed = 6;
  auto model = MakeModel(options);
  const DenseBatch batch = RandomDenseBatch(4, 784, 3, 7);
  absl::StatusOr<StepResult> step = model->TrainStep(batch);
  ASSERT_THAT(step, IsOk());
  ASSERT_THAT(step->gradients, SizeIs(6));

  for (const TensorGradient& gradient : step->gradients) {
    const std::vector<float> start = *model->DenseValues(gradient.name);
    double norm = 0;
    for (float g : gradient.values) norm += g * g;
    norm = std::sqrt(norm);
    ASSERT_GT(norm, 0) << gradient.name;
    const auto loss_at = [&](double t) {
      std::vector<float> values = start;
      for (size_t i = 0; i < values.size(); ++i) {
        values[i] += t * gradient.values[i] / norm;
      }
      EXPECT_THAT(model->LoadDense(gradient.name, values), IsOk());
      absl::StatusOr<EvalResult> eval = model->Evaluate(batch);
      EXPECT_THAT(eval, IsOk());
      return eval.ok() ? eval->loss : 0.0;
    };
    const double numeric =
        (loss_at(kEpsilon) - loss_at(-kEpsilon)) / (2 * kEpsilon);
    EXPECT_NEAR(numeric, norm, 0.03 * norm) << gradient.name;
    ASSERT_THAT(model->LoadDense(gradient.name, start), IsOk());
  }
}

TEST(ModelTest, LogregGradientsMatchFiniteDifferences) {
  ModelOptions options;
  options.name = "logreg";
  auto model = MakeModel(options);
  const SparseBatch batch = SmallSparseBatch();
  ASSERT_THAT(model->LoadDense("bias", std::vector<float>{0.2f}), IsOk());
  std::vector<float> rows;
  for (size_t u = 0; u < batch.unique_ids.size(); ++u) {
    rows.push_back(0.3f * std::sin(1.0f + u));
  }
  ExpectGradientsMatchFiniteDifferences(*model, nullptr, &batch, rows);
}

TEST(ModelTest, WideLogregGradientsMatchFiniteDifferences) {
  ModelOptions options;
  options.name = "logreg";
  options.embedding_dim = 3;
  auto model = MakeModel(options);
  const SparseBatch batch = SmallSparseBatch();
  std::vector<float> rows;
  for (size_t i = 0; i < batch.unique_ids.size() * 3; ++i) {
    rows.push_back(0.3f * std::cos(2.0f + i));
  }
  ExpectGradientsMatchFiniteDifferences(*model, nullptr, &batch, rows);
}

TEST(ModelTest, LogregParametersAreAnEmbeddingTableAndABias) {
  ModelOptions options;
  options.name = "logreg";
  options.vocab_size = 1000;
  auto model = MakeModel(options);
  EXPECT_EQ(model->input_kind(), InputKind::kSparse);
  const std::vector<TensorInfo>& params = model->Parameters();
  ASSERT_THAT(params, SizeIs(2));
  EXPECT_EQ(params[0].name, "bias");
  EXPECT_EQ(params[0].kind, TensorKind::kDense);
  EXPECT_THAT(params[0].shape, ElementsAre(1));
  EXPECT_EQ(params[0].initializer.kind(), v1::Initializer::ZEROS);
  EXPECT_EQ(params[1].name, "embedding");
  EXPECT_EQ(params[1].kind, TensorKind::kEmbedding);
  EXPECT_THAT(params[1].shape, ElementsAre(1000, 1));
  EXPECT_EQ(params[1].num_elements(), 1);
  EXPECT_EQ(params[1].initializer.kind(), v1::Initializer::ZEROS);
}

TEST(ModelTest, SparseStepNeedsTheBatchsRowsLoaded) {
  ModelOptions options;
  options.name = "logreg";
  auto model = MakeModel(options);
  const SparseBatch batch = SmallSparseBatch();
  EXPECT_THAT(model->TrainStep(batch),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("LoadEmbeddingRows")));
  std::vector<uint64_t> other_ids = batch.unique_ids;
  other_ids.back() += 1;
  const std::vector<float> rows(other_ids.size(), 0.0f);
  ASSERT_THAT(model->LoadEmbeddingRows("embedding", other_ids, rows), IsOk());
  EXPECT_THAT(model->TrainStep(batch),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(model->LoadEmbeddingRows("embedding", batch.unique_ids, rows),
              IsOk());
  absl::StatusOr<StepResult> step = model->TrainStep(batch);
  ASSERT_THAT(step, IsOk());
  EXPECT_NEAR(step->loss, std::log(2.0), 1e-6);  // Zero weights: p = 0.5.
  EXPECT_THAT(GradientOf(*step, "embedding").values,
              SizeIs(batch.unique_ids.size()));
}

TEST(ModelTest, LoadingEmbeddingRowsOfTheWrongSizeIsInvalidArgument) {
  ModelOptions options;
  options.name = "logreg";
  options.embedding_dim = 4;
  auto model = MakeModel(options);
  const std::vector<uint64_t> ids = {1, 2};
  EXPECT_THAT(
      model->LoadEmbeddingRows("embedding", ids, std::vector<float>(7, 0.0f)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("need 8 values, got 7")));
  EXPECT_THAT(model->LoadDense("embedding", std::vector<float>(4, 0.0f)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("embedding table")));
  EXPECT_THAT(
      model->LoadEmbeddingRows("head.weight", ids, std::vector<float>(8, 0.0f)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is dense")));
}

struct DenseModelCase {
  std::string name;
  float learning_rate;

  friend void PrintTo(const DenseModelCase& c, std::ostream* os) {
    *os << c.name;
  }
};

class DenseModelSgdTest : public ::testing::TestWithParam<DenseModelCase> {};

TEST_P(DenseModelSgdTest, SgdStepsReduceTheLossOnAFixedBatch) {
  ModelOptions options;
  options.name = GetParam().name;
  auto model = MakeModel(options);
  ASSERT_NE(model, nullptr);
  LocalSgd sgd(model.get());
  const DenseBatch batch = PatternBatch(32, 5);
  absl::StatusOr<EvalResult> before = sgd.Evaluate(batch);
  ASSERT_THAT(before, IsOk());
  for (int step = 0; step < 20; ++step) {
    ASSERT_THAT(sgd.Step(batch, GetParam().learning_rate), IsOk());
  }
  absl::StatusOr<EvalResult> after = sgd.Evaluate(batch);
  ASSERT_THAT(after, IsOk());
  RecordProperty("loss_before", std::to_string(before->loss));
  RecordProperty("loss_after", std::to_string(after->loss));
  EXPECT_LT(after->loss, 0.5 * before->loss);
  EXPECT_GT(after->num_correct, before->num_correct);
}

INSTANTIATE_TEST_SUITE_P(Models, DenseModelSgdTest,
                         ::testing::Values(DenseModelCase{"mlp", 0.1f},
                                           DenseModelCase{"cnn", 0.1f}),
                         [](const auto& info) { return info.param.name; });

TEST(LogregSgdTest, SgdStepsReduceTheLossOnAFixedBatch) {
  for (int64_t dim : {1, 4}) {
    ModelOptions options;
    options.name = "logreg";
    options.embedding_dim = dim;
    auto model = MakeModel(options);
    LocalSgd sgd(model.get());
    const SparseBatch batch = SmallSparseBatch();
    absl::StatusOr<EvalResult> before = sgd.Evaluate(batch);
    ASSERT_THAT(before, IsOk());
    for (int step = 0; step < 50; ++step) {
      ASSERT_THAT(sgd.Step(batch, 1.0f), IsOk());
    }
    absl::StatusOr<EvalResult> after = sgd.Evaluate(batch);
    ASSERT_THAT(after, IsOk());
    EXPECT_LT(after->loss, 0.5 * before->loss) << "dim " << dim;
    EXPECT_EQ(after->num_correct, batch.batch_size) << "dim " << dim;
  }
}

}  // namespace
}  // namespace worker
}  // namespace tessera

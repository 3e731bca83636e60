// Compares tessera::optim against libtorch 1.13's torch::optim on the same
// gradients. This is the only file under ps/ that includes <torch/torch.h>;
// two test targets run it (see BUILD):
//
// - torch_parity_test sets ATEN_CPU_CAPABILITY=default, so ATen runs its
//   reference CPU kernels, which round every tensor op separately as our
//   loops do. Tolerance: 1e-6 relative, with an absolute floor of 1e-7 for
//   values near 0 (where a relative bound means nothing). On x86-64 the two
//   agree bit for bit, and the test expects that too.
// - torch_parity_vectorized_test leaves ATen on the machine's best kernels
//   (AVX2/AVX-512), whose add_(other, alpha) computes x + alpha * y as one
//   fused multiply-add, a single rounding where we round twice. The
//   ulp-level differences compound over steps (a 0.9 momentum buffer carries
//   each one about ten steps) and cancellation leaves them on parameters that
//   pass near 0, so the absolute floor is 1e-6 there: parameters here are
//   O(1) (drawn from N(0, 1)), so that is 1e-6 relative to the tensor's scale,
//   about 8 ulps of 1.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ps/optim/optimizer.h"

namespace tessera {
namespace optim {
namespace {

using Kind = OptimizerConfig::Kind;

constexpr double kRelativeTolerance = 1e-6;
constexpr int kSteps = 25;

// Whether ATen runs its reference kernels (see the top of this file).
bool AtenUsesReferenceKernels() {
  const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
  return capability != nullptr && std::string(capability) == "default";
}

double AbsoluteFloor() { return AtenUsesReferenceKernels() ? 1e-7 : 1e-6; }

struct ParityCase {
  std::string name;
  OptimizerConfig config;
};

void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

// The torch optimizer `config` describes, over `params`. Options are double in
// torch; passing our floats widened keeps the same values on both sides.
std::unique_ptr<torch::optim::Optimizer> NewTorchOptimizer(
    const OptimizerConfig& config, std::vector<torch::Tensor> params) {
  const double lr = config.learning_rate;
  switch (config.kind) {
    case Kind::kSgd:
    case Kind::kMomentum: {
      const bool momentum = config.kind == Kind::kMomentum;
      return std::make_unique<torch::optim::SGD>(
          std::move(params), torch::optim::SGDOptions(lr)
                                 .momentum(momentum ? config.momentum : 0.0)
                                 .dampening(momentum ? config.dampening : 0.0)
                                 .nesterov(config.nesterov)
                                 .weight_decay(config.weight_decay));
    }
    case Kind::kAdagrad:
      return std::make_unique<torch::optim::Adagrad>(
          std::move(params),
          torch::optim::AdagradOptions(lr)
              .lr_decay(config.lr_decay)
              .weight_decay(config.weight_decay)
              .initial_accumulator_value(config.initial_accumulator)
              .eps(config.epsilon));
    case Kind::kAdam:
      if (config.decoupled_weight_decay) {
        return std::make_unique<torch::optim::AdamW>(
            std::move(params), torch::optim::AdamWOptions(lr)
                                   .betas({config.beta1, config.beta2})
                                   .eps(config.epsilon)
                                   .weight_decay(config.weight_decay)
                                   .amsgrad(false));
      }
      return std::make_unique<torch::optim::Adam>(
          std::move(params), torch::optim::AdamOptions(lr)
                                 .betas({config.beta1, config.beta2})
                                 .eps(config.epsilon)
                                 .weight_decay(config.weight_decay)
                                 .amsgrad(false));
  }
  return nullptr;
}

std::vector<float> RandomVector(std::mt19937& rng, size_t n, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

torch::Tensor ToTensor(const std::vector<float>& v) {
  return torch::from_blob(const_cast<float*>(v.data()),
                          {static_cast<int64_t>(v.size())}, torch::kFloat32)
      .clone();
}

// How far ours and torch's parameters are apart, over a whole run.
struct Agreement {
  bool ok = true;
  int64_t compared = 0;
  int64_t not_bit_equal = 0;
  double worst_absolute = 0;
  std::string first_mismatch;

  void Record(::testing::Test& test) const {
    test.RecordProperty("compared", std::to_string(compared));
    test.RecordProperty("not_bit_equal", std::to_string(not_bit_equal));
    std::ostringstream worst;
    worst << worst_absolute;
    test.RecordProperty("worst_absolute_difference", worst.str());
  }

  // The checks every test makes at the end of a run.
  void Expect() const {
    EXPECT_TRUE(ok) << first_mismatch;
#if defined(__x86_64__)
    // Stronger than the tolerance, and what order-of-operations parity means:
    // ATen's reference kernels and our loops round the same float ops in the
    // same order (x86-64 has no FMA in its baseline, so neither side fuses).
    if (AtenUsesReferenceKernels()) {
      EXPECT_EQ(not_bit_equal, 0)
          << "of " << compared << " values; worst difference "
          << worst_absolute;
    }
#endif
  }
};

void Compare(const float* ours, const torch::Tensor& theirs,
             const std::string& where, Agreement& agreement) {
  const torch::Tensor contiguous = theirs.contiguous();
  const float* expected = contiguous.data_ptr<float>();
  const double floor = AbsoluteFloor();
  for (int64_t i = 0; i < contiguous.numel(); ++i) {
    const double diff = std::abs(double{ours[i]} - double{expected[i]});
    const double bound =
        std::max(kRelativeTolerance * std::abs(double{expected[i]}), floor);
    ++agreement.compared;
    if (ours[i] != expected[i]) ++agreement.not_bit_equal;
    agreement.worst_absolute = std::max(agreement.worst_absolute, diff);
    if (!(diff <= bound) && agreement.ok) {
      agreement.ok = false;
      std::ostringstream message;
      message.precision(9);
      message << where << " element " << i << ": ours " << ours[i] << ", torch "
              << expected[i] << ", diff " << diff << " > bound " << bound;
      agreement.first_mismatch = message.str();
    }
  }
}

class TorchParityTest : public ::testing::TestWithParam<ParityCase> {};

TEST_P(TorchParityTest, DenseTensorMatchesTorchOptimOverManySteps) {
  constexpr size_t kSize = 300;
  const OptimizerConfig& config = GetParam().config;
  absl::StatusOr<std::unique_ptr<Optimizer>> ours = NewOptimizer(config);
  ASSERT_TRUE(ours.ok()) << ours.status();

  std::mt19937 rng(20240607);
  std::vector<float> params = RandomVector(rng, kSize, 1.0f);
  std::vector<std::vector<float>> slots((*ours)->num_slots(),
                                        std::vector<float>(kSize));
  std::vector<float*> slot_ptrs;
  for (std::vector<float>& slot : slots) slot_ptrs.push_back(slot.data());
  (*ours)->InitSlots(slot_ptrs, kSize);

  torch::Tensor torch_param = ToTensor(params).requires_grad_(true);
  std::unique_ptr<torch::optim::Optimizer> theirs =
      NewTorchOptimizer(config, {torch_param});
  ASSERT_NE(theirs, nullptr);

  Agreement agreement;
  for (int64_t step = 1; step <= kSteps; ++step) {
    const std::vector<float> grad = RandomVector(rng, kSize, 0.5f);
    torch_param.mutable_grad() = ToTensor(grad);
    theirs->step();
    (*ours)->Apply(absl::MakeSpan(params), grad, slot_ptrs, step);
    Compare(params.data(), torch_param.detach(), "step " + std::to_string(step),
            agreement);
  }
  agreement.Expect();
  agreement.Record(*this);
}

// A [2 x dim] table updated row-wise, each row its own torch parameter in one
// torch optimizer. A row left out of a step has an undefined grad, which torch
// skips entirely (no state change): the lazy semantics of the store, which
// applies each pushed row with its own step count.
TEST_P(TorchParityTest, RowsMatchTorchOptimOverEachRowAsItsOwnParameter) {
  constexpr int kDim = 67;  // Not a multiple of any vector width.
  constexpr int kRows = 2;
  constexpr int kRounds = 30;  // Row 1 is updated in 20 of them.
  const OptimizerConfig& config = GetParam().config;
  absl::StatusOr<std::unique_ptr<Optimizer>> ours = NewOptimizer(config);
  ASSERT_TRUE(ours.ok()) << ours.status();

  std::mt19937 rng(7);
  std::vector<float> table = RandomVector(rng, kRows * kDim, 1.0f);
  std::vector<std::vector<float>> slots((*ours)->num_slots(),
                                        std::vector<float>(table.size()));
  std::vector<float*> slot_ptrs;
  for (std::vector<float>& slot : slots) slot_ptrs.push_back(slot.data());
  (*ours)->InitSlots(slot_ptrs, table.size());

  std::vector<torch::Tensor> torch_rows;
  for (int r = 0; r < kRows; ++r) {
    torch_rows.push_back(
        ToTensor(std::vector<float>(table.begin() + r * kDim,
                                    table.begin() + (r + 1) * kDim))
            .requires_grad_(true));
  }
  std::unique_ptr<torch::optim::Optimizer> theirs =
      NewTorchOptimizer(config, torch_rows);
  ASSERT_NE(theirs, nullptr);

  int64_t row_steps[kRows] = {0, 0};
  Agreement agreement;
  for (int round = 0; round < kRounds; ++round) {
    const bool touched[kRows] = {true, round % 3 != 2};
    const std::vector<float> grad = RandomVector(rng, kRows * kDim, 0.5f);
    for (int r = 0; r < kRows; ++r) {
      if (touched[r]) {
        ++row_steps[r];
        torch_rows[r].mutable_grad() = ToTensor(std::vector<float>(
            grad.begin() + r * kDim, grad.begin() + (r + 1) * kDim));
      } else {
        torch_rows[r].mutable_grad() = torch::Tensor();
      }
    }
    theirs->step();

    // As the store applies a row push: Apply on each touched row, with the
    // row's own step count.
    for (int r = 0; r < kRows; ++r) {
      if (!touched[r]) continue;
      std::vector<float*> row_slots;
      for (float* slot : slot_ptrs) row_slots.push_back(slot + r * kDim);
      (*ours)->Apply(absl::MakeSpan(table.data() + r * kDim, kDim),
                     absl::MakeConstSpan(grad.data() + r * kDim, kDim),
                     row_slots, row_steps[r]);
    }
    for (int r = 0; r < kRows; ++r) {
      Compare(table.data() + r * kDim, torch_rows[r].detach(),
              "round " + std::to_string(round) + " row " + std::to_string(r),
              agreement);
    }
  }
  EXPECT_EQ(row_steps[1], 20);
  agreement.Expect();
  agreement.Record(*this);
}

OptimizerConfig Make(Kind kind, float lr) {
  OptimizerConfig config;
  config.kind = kind;
  config.learning_rate = lr;
  return config;
}

std::vector<ParityCase> Cases() {
  std::vector<ParityCase> cases;
  cases.push_back({"Sgd", Make(Kind::kSgd, 0.05f)});
  {
    OptimizerConfig c = Make(Kind::kSgd, 0.05f);
    c.weight_decay = 0.01f;
    cases.push_back({"SgdWeightDecay", c});
  }
  {
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0.9f;
    cases.push_back({"Momentum", c});
  }
  {
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0.9f;
    c.dampening = 0.3f;
    cases.push_back({"MomentumDampening", c});
  }
  {
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0.9f;
    c.nesterov = true;
    cases.push_back({"Nesterov", c});
  }
  {
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0.8f;
    c.dampening = 0.1f;
    c.weight_decay = 0.02f;
    cases.push_back({"MomentumDampeningWeightDecay", c});
  }
  {
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0.9f;
    c.nesterov = true;
    c.weight_decay = 0.01f;
    cases.push_back({"NesterovWeightDecay", c});
  }
  {
    // torch SGD with momentum 0 is plain SGD whatever the dampening.
    OptimizerConfig c = Make(Kind::kMomentum, 0.05f);
    c.momentum = 0;
    c.dampening = 0.5f;
    cases.push_back({"ZeroMomentum", c});
  }
  {
    OptimizerConfig c = TorchDefaultOptimizerConfig(Kind::kAdagrad);
    c.learning_rate = 0.1f;
    cases.push_back({"Adagrad", c});
  }
  {
    OptimizerConfig c = TorchDefaultOptimizerConfig(Kind::kAdagrad);
    c.learning_rate = 0.1f;
    c.lr_decay = 0.05f;
    c.initial_accumulator = 0.1f;
    c.weight_decay = 0.01f;
    cases.push_back({"AdagradLrDecayInitialAccumulatorWeightDecay", c});
  }
  cases.push_back({"Adam", Make(Kind::kAdam, 0.01f)});
  {
    OptimizerConfig c = Make(Kind::kAdam, 0.01f);
    c.beta1 = 0.8f;
    c.beta2 = 0.99f;
    c.epsilon = 1e-6f;
    cases.push_back({"AdamBetasEpsilon", c});
  }
  {
    OptimizerConfig c = Make(Kind::kAdam, 0.01f);
    c.weight_decay = 0.01f;
    cases.push_back({"AdamWeightDecay", c});
  }
  {
    OptimizerConfig c = Make(Kind::kAdam, 0.01f);
    c.weight_decay = 0.01f;
    c.decoupled_weight_decay = true;
    cases.push_back({"AdamW", c});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllKinds, TorchParityTest,
                         ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<ParityCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace optim
}  // namespace tessera

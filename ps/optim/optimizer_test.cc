#include "ps/optim/optimizer.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace optim {
namespace {

using Kind = OptimizerConfig::Kind;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;

// Owns `num_slots` slot vectors of n floats and the pointer array Apply takes.
struct Slots {
  Slots(const Optimizer& optimizer, size_t n)
      : storage(optimizer.num_slots(), std::vector<float>(n)) {
    for (std::vector<float>& slot : storage) pointers.push_back(slot.data());
    optimizer.InitSlots(pointers, n);
  }

  std::vector<std::vector<float>> storage;
  std::vector<float*> pointers;
};

std::unique_ptr<Optimizer> MustCreate(const OptimizerConfig& config) {
  absl::StatusOr<std::unique_ptr<Optimizer>> optimizer = NewOptimizer(config);
  EXPECT_THAT(optimizer, IsOk());
  return optimizer.ok() ? std::move(*optimizer) : nullptr;
}

OptimizerConfig Config(Kind kind) {
  OptimizerConfig config;
  config.kind = kind;
  return config;
}

// ---------------------------------------------------------------- validation

// Every length (the vector body and its tail) and every position of a NaN,
// +Inf or -Inf, next to the largest finite floats and subnormals.
TEST(AllFiniteTest, FindsEveryNonFiniteValue) {
  EXPECT_TRUE(AllFinite({}));
  for (size_t n = 1; n <= 70; ++n) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
      v[i] = i % 3 == 0   ? std::numeric_limits<float>::max()
             : i % 3 == 1 ? -std::numeric_limits<float>::denorm_min()
                          : 0.0f;
    }
    ASSERT_TRUE(AllFinite(v)) << n;
    for (size_t at = 0; at < n; ++at) {
      for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()}) {
        const float keep = v[at];
        v[at] = bad;
        EXPECT_FALSE(AllFinite(v)) << "n " << n << ", at " << at;
        v[at] = keep;
      }
    }
  }
}

TEST(ValidateOptimizerConfigTest, DefaultConfigOfEveryKindIsValid) {
  for (Kind kind : {Kind::kSgd, Kind::kMomentum, Kind::kAdagrad, Kind::kAdam}) {
    EXPECT_THAT(ValidateOptimizerConfig(Config(kind)), IsOk());
    EXPECT_THAT(ValidateOptimizerConfig(TorchDefaultOptimizerConfig(kind)),
                IsOk());
  }
}

TEST(ValidateOptimizerConfigTest, TorchDefaultsGiveAdagradItsOwnEpsilon) {
  EXPECT_EQ(TorchDefaultOptimizerConfig(Kind::kAdagrad).epsilon, 1e-10f);
  EXPECT_EQ(TorchDefaultOptimizerConfig(Kind::kAdam).epsilon, 1e-8f);
  EXPECT_EQ(TorchDefaultOptimizerConfig(Kind::kAdam).learning_rate, 1e-3f);
}

struct InvalidCase {
  std::string name;
  Kind kind;
  std::function<void(OptimizerConfig&)> mutate;
  std::string field;  // Must appear in the error message.
};

void PrintTo(const InvalidCase& c, std::ostream* os) { *os << c.name; }

class InvalidConfigTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidConfigTest, IsRejectedWithAMessageNamingTheField) {
  OptimizerConfig config = Config(GetParam().kind);
  GetParam().mutate(config);
  EXPECT_THAT(ValidateOptimizerConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("OptimizerConfig." + GetParam().field)));
  EXPECT_THAT(NewOptimizer(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr(GetParam().field)));
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

INSTANTIATE_TEST_SUITE_P(
    AllFields, InvalidConfigTest,
    ::testing::Values(
        InvalidCase{"UnknownKind", Kind::kSgd,
                    [](OptimizerConfig& c) { c.kind = static_cast<Kind>(7); },
                    "kind"},
        InvalidCase{"ZeroLearningRate", Kind::kSgd,
                    [](OptimizerConfig& c) { c.learning_rate = 0; },
                    "learning_rate"},
        InvalidCase{"NegativeLearningRate", Kind::kAdam,
                    [](OptimizerConfig& c) { c.learning_rate = -0.1f; },
                    "learning_rate"},
        InvalidCase{"NaNLearningRate", Kind::kMomentum,
                    [](OptimizerConfig& c) { c.learning_rate = kNaN; },
                    "learning_rate"},
        InvalidCase{"InfiniteLearningRate", Kind::kAdagrad,
                    [](OptimizerConfig& c) { c.learning_rate = kInf; },
                    "learning_rate"},
        InvalidCase{"NegativeWeightDecay", Kind::kSgd,
                    [](OptimizerConfig& c) { c.weight_decay = -1e-4f; },
                    "weight_decay"},
        InvalidCase{"DecoupledWeightDecayWithoutAdam", Kind::kMomentum,
                    [](OptimizerConfig& c) { c.decoupled_weight_decay = true; },
                    "decoupled_weight_decay"},
        InvalidCase{"NesterovWithPlainSgd", Kind::kSgd,
                    [](OptimizerConfig& c) { c.nesterov = true; }, "nesterov"},
        InvalidCase{"NegativeMomentum", Kind::kMomentum,
                    [](OptimizerConfig& c) { c.momentum = -0.5f; }, "momentum"},
        InvalidCase{"NaNMomentum", Kind::kMomentum,
                    [](OptimizerConfig& c) { c.momentum = kNaN; }, "momentum"},
        InvalidCase{"DampeningAboveOne", Kind::kMomentum,
                    [](OptimizerConfig& c) { c.dampening = 1.5f; },
                    "dampening"},
        InvalidCase{"NesterovWithoutMomentum", Kind::kMomentum,
                    [](OptimizerConfig& c) {
                      c.nesterov = true;
                      c.momentum = 0;
                    },
                    "nesterov"},
        InvalidCase{"NesterovWithDampening", Kind::kMomentum,
                    [](OptimizerConfig& c) {
                      c.nesterov = true;
                      c.dampening = 0.1f;
                    },
                    "nesterov"},
        InvalidCase{"ZeroAdagradEpsilon", Kind::kAdagrad,
                    [](OptimizerConfig& c) { c.epsilon = 0; }, "epsilon"},
        InvalidCase{"NegativeInitialAccumulator", Kind::kAdagrad,
                    [](OptimizerConfig& c) { c.initial_accumulator = -1; },
                    "initial_accumulator"},
        InvalidCase{"NegativeLrDecay", Kind::kAdagrad,
                    [](OptimizerConfig& c) { c.lr_decay = -0.1f; }, "lr_decay"},
        InvalidCase{"Beta1OfOne", Kind::kAdam,
                    [](OptimizerConfig& c) { c.beta1 = 1; }, "beta1"},
        InvalidCase{"NegativeBeta1", Kind::kAdam,
                    [](OptimizerConfig& c) { c.beta1 = -0.1f; }, "beta1"},
        InvalidCase{"NaNBeta2", Kind::kAdam,
                    [](OptimizerConfig& c) { c.beta2 = kNaN; }, "beta2"},
        InvalidCase{"Beta2AboveOne", Kind::kAdam,
                    [](OptimizerConfig& c) { c.beta2 = 1.5f; }, "beta2"},
        InvalidCase{"ZeroAdamEpsilon", Kind::kAdam,
                    [](OptimizerConfig& c) { c.epsilon = 0; }, "epsilon"},
        InvalidCase{"InfiniteAdamEpsilon", Kind::kAdam,
                    [](OptimizerConfig& c) { c.epsilon = kInf; }, "epsilon"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) {
      return info.param.name;
    });

TEST(ValidateOptimizerConfigTest, FieldsOfOtherKindsAreNotChecked) {
  // A config converted from a message with every field present may carry
  // zeros in fields its kind ignores.
  OptimizerConfig config = Config(Kind::kSgd);
  config.epsilon = 0;
  config.beta1 = 2;
  config.momentum = -1;
  EXPECT_THAT(ValidateOptimizerConfig(config), IsOk());
}

TEST(ValidateOptimizerConfigTest, MomentumOfZeroIsValid) {
  OptimizerConfig config = Config(Kind::kMomentum);
  config.momentum = 0;
  EXPECT_THAT(ValidateOptimizerConfig(config), IsOk());
}

// ---------------------------------------------------------------- slots

TEST(OptimizerTest, NumSlotsDependsOnTheKind) {
  EXPECT_EQ(MustCreate(Config(Kind::kSgd))->num_slots(), 0);
  EXPECT_EQ(MustCreate(Config(Kind::kMomentum))->num_slots(), 1);
  EXPECT_EQ(MustCreate(Config(Kind::kAdagrad))->num_slots(), 1);
  EXPECT_EQ(MustCreate(Config(Kind::kAdam))->num_slots(), 2);
  OptimizerConfig adamw = Config(Kind::kAdam);
  adamw.decoupled_weight_decay = true;
  EXPECT_EQ(MustCreate(adamw)->num_slots(), 2);
}

TEST(OptimizerTest, ConfigReturnsTheConfigItWasCreatedWith) {
  OptimizerConfig config = Config(Kind::kAdam);
  config.learning_rate = 0.125f;
  config.beta2 = 0.5f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  EXPECT_EQ(optimizer->config().kind, Kind::kAdam);
  EXPECT_EQ(optimizer->config().learning_rate, 0.125f);
  EXPECT_EQ(optimizer->config().beta2, 0.5f);
}

TEST(OptimizerTest, AdagradSlotStartsAtTheInitialAccumulator) {
  OptimizerConfig config = Config(Kind::kAdagrad);
  config.initial_accumulator = 0.25f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> sum(3, -1.0f);
  float* slots[] = {sum.data()};
  optimizer->InitSlots(slots, sum.size());
  EXPECT_THAT(sum, ElementsAre(0.25f, 0.25f, 0.25f));
}

TEST(OptimizerTest, AdamSlotsStartAtZero) {
  std::unique_ptr<Optimizer> optimizer = MustCreate(Config(Kind::kAdam));
  std::vector<float> m(2, -1.0f), v(2, -1.0f);
  float* slots[] = {m.data(), v.data()};
  optimizer->InitSlots(slots, 2);
  EXPECT_THAT(m, ElementsAre(0.0f, 0.0f));
  EXPECT_THAT(v, ElementsAre(0.0f, 0.0f));
}

// ---------------------------------------------------------------- by hand
// Values are dyadic so that the expected results are exact in float.

TEST(SgdTest, StepSubtractsLearningRateTimesGradient) {
  OptimizerConfig config = Config(Kind::kSgd);
  config.learning_rate = 0.25f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f, -2.0f, 0.5f};
  const std::vector<float> grad = {0.5f, 1.0f, -4.0f};
  optimizer->Apply(absl::MakeSpan(params), grad, {}, 1);
  EXPECT_THAT(params, ElementsAre(0.875f, -2.25f, 1.5f));
  optimizer->Apply(absl::MakeSpan(params), grad, {}, 2);
  EXPECT_THAT(params, ElementsAre(0.75f, -2.5f, 2.5f));
}

TEST(SgdTest, WeightDecayAddsTheParameterToTheGradient) {
  OptimizerConfig config = Config(Kind::kSgd);
  config.learning_rate = 0.25f;
  config.weight_decay = 0.5f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f, -2.0f, 0.5f};
  const std::vector<float> grad = {0.5f, 1.0f, -4.0f};
  // d = g + 0.5 p = {1, 0, -3.75}; p -= 0.25 d.
  optimizer->Apply(absl::MakeSpan(params), grad, {}, 1);
  EXPECT_THAT(params, ElementsAre(0.75f, -2.0f, 1.4375f));
}

TEST(MomentumTest, FirstStepSetsTheBufferToTheGradientIgnoringDampening) {
  OptimizerConfig config = Config(Kind::kMomentum);
  config.learning_rate = 0.5f;
  config.momentum = 0.5f;
  config.dampening = 0.5f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f};
  Slots slots(*optimizer, 1);
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{2.0f},
                   slots.pointers, 1);
  EXPECT_THAT(slots.storage[0], ElementsAre(2.0f));
  EXPECT_THAT(params, ElementsAre(0.0f));
  // buf = 0.5 * 2 + (1 - 0.5) * 4 = 3; p = 0 - 0.5 * 3.
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{4.0f},
                   slots.pointers, 2);
  EXPECT_THAT(slots.storage[0], ElementsAre(3.0f));
  EXPECT_THAT(params, ElementsAre(-1.5f));
}

TEST(MomentumTest, NesterovStepsAlongGradientPlusMomentumTimesBuffer) {
  OptimizerConfig config = Config(Kind::kMomentum);
  config.learning_rate = 0.5f;
  config.momentum = 0.5f;
  config.nesterov = true;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f};
  Slots slots(*optimizer, 1);
  // buf = 2; d = 2 + 0.5 * 2 = 3; p = 1 - 1.5.
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{2.0f},
                   slots.pointers, 1);
  EXPECT_THAT(params, ElementsAre(-0.5f));
  // buf = 1 + 4 = 5; d = 4 + 2.5 = 6.5; p = -0.5 - 3.25.
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{4.0f},
                   slots.pointers, 2);
  EXPECT_THAT(params, ElementsAre(-3.75f));
}

TEST(MomentumTest, ZeroMomentumIsPlainSgdAndLeavesTheBufferAlone) {
  OptimizerConfig config = Config(Kind::kMomentum);
  config.learning_rate = 0.25f;
  config.momentum = 0;
  config.dampening = 0.5f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f};
  Slots slots(*optimizer, 1);
  for (int64_t step = 1; step <= 2; ++step) {
    optimizer->Apply(absl::MakeSpan(params), std::vector<float>{2.0f},
                     slots.pointers, step);
  }
  EXPECT_THAT(params, ElementsAre(0.0f));
  EXPECT_THAT(slots.storage[0], ElementsAre(0.0f));
}

TEST(AdagradTest, StepDividesByRootOfAccumulatedSquares) {
  OptimizerConfig config = Config(Kind::kAdagrad);
  config.learning_rate = 0.5f;
  config.initial_accumulator = 7.0f;
  config.lr_decay = 1.0f;
  config.epsilon = 1e-10f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f};
  Slots slots(*optimizer, 1);
  // sum = 7 + 9 = 16; p = 1 - 0.5 * 3 / 4.
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{3.0f},
                   slots.pointers, 1);
  EXPECT_THAT(slots.storage[0], ElementsAre(16.0f));
  EXPECT_THAT(params, ElementsAre(FloatEq(0.625f)));
  // Step 2: clr = 0.5 / (1 + 1 * 1) = 0.25; sum = 16 + 16 = 32;
  // p = 0.625 + 0.25 * 4 / sqrt(32).
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{-4.0f},
                   slots.pointers, 2);
  EXPECT_THAT(slots.storage[0], ElementsAre(32.0f));
  EXPECT_THAT(params,
              ElementsAre(FloatEq(0.625f + 0.25f * 4 / std::sqrt(32.0f))));
}

TEST(AdamTest, FirstStepMovesEachParameterByTheLearningRate) {
  // After bias correction m = g and v = g * g, so the step is lr * g / |g|.
  OptimizerConfig config = Config(Kind::kAdam);
  config.learning_rate = 0.01f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {1.0f, -1.0f, 0.0f};
  Slots slots(*optimizer, 3);
  optimizer->Apply(absl::MakeSpan(params),
                   std::vector<float>{0.5f, -3.0f, 100.0f}, slots.pointers, 1);
  EXPECT_NEAR(params[0], 0.99f, 1e-6);
  EXPECT_NEAR(params[1], -0.99f, 1e-6);
  EXPECT_NEAR(params[2], -0.01f, 1e-6);
}

TEST(AdamTest, CoupledWeightDecayActsThroughTheGradient) {
  // With a zero gradient Adam still moves by ~lr against the sign of p,
  // because weight decay is part of the gradient it normalizes.
  OptimizerConfig config = Config(Kind::kAdam);
  config.learning_rate = 0.01f;
  config.weight_decay = 0.1f;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {2.0f, -4.0f};
  Slots slots(*optimizer, 2);
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{0.0f, 0.0f},
                   slots.pointers, 1);
  EXPECT_NEAR(params[0], 1.99f, 1e-6);
  EXPECT_NEAR(params[1], -3.99f, 1e-6);
}

TEST(AdamTest, DecoupledWeightDecayScalesTheParameter) {
  // AdamW with a zero gradient: p *= 1 - lr * weight_decay, nothing else.
  OptimizerConfig config = Config(Kind::kAdam);
  config.learning_rate = 0.5f;
  config.weight_decay = 0.5f;
  config.decoupled_weight_decay = true;
  std::unique_ptr<Optimizer> optimizer = MustCreate(config);
  std::vector<float> params = {2.0f, -4.0f};
  Slots slots(*optimizer, 2);
  optimizer->Apply(absl::MakeSpan(params), std::vector<float>{0.0f, 0.0f},
                   slots.pointers, 1);
  EXPECT_THAT(params, ElementsAre(1.5f, -3.0f));
}

// An empty block touches nothing, not even the memory right after it.
TEST(OptimizerTest, EmptyBlockIsANoOp) {
  for (Kind kind : {Kind::kSgd, Kind::kMomentum, Kind::kAdagrad, Kind::kAdam}) {
    std::unique_ptr<Optimizer> optimizer = MustCreate(Config(kind));
    std::vector<float> params = {1.5f, -2.0f, 3.25f};
    const std::vector<float> grad = {0.5f, 0.5f, 0.5f};
    Slots slots(*optimizer, params.size());
    const std::vector<std::vector<float>> slots_before = slots.storage;
    optimizer->Apply(absl::MakeSpan(params.data(), 0),
                     absl::MakeConstSpan(grad.data(), 0), slots.pointers, 1);
    EXPECT_EQ(params, (std::vector<float>{1.5f, -2.0f, 3.25f}));
    EXPECT_EQ(slots.storage, slots_before);
    // And the same call on the whole block does change it: the check above
    // can fail.
    optimizer->Apply(absl::MakeSpan(params), grad, slots.pointers, 1);
    EXPECT_NE(params, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  }
}

}  // namespace
}  // namespace optim
}  // namespace tessera

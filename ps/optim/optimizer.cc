#include "ps/optim/optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "ps/common/status_macros.h"
#include "ps/common/vector_clones.h"

namespace tessera {
namespace optim {

// The elementwise loops below are compiled for AVX2 and for the baseline
// (ps/common/vector_clones.h).
namespace {

using Kind = OptimizerConfig::Kind;

// The kernels below mirror libtorch 1.13's torch/csrc/api/src/optim/*.cpp one
// tensor operation at a time. Each tensor op rounds its result to float, so
// every intermediate here is a float and the expressions keep ATen's operand
// order: x.add_(y, alpha) is x + alpha * y, x.addcmul_(a, b, value) is
// x + value * a * b, x.addcdiv_(a, b, value) is x + value * a / b. Scalars
// (torch keeps options as double) are computed in double as torch does and
// rounded to float once, as ATen does when it applies a Scalar to a float
// tensor. The loops are plain and branch-free so the compiler vectorizes them;
// loop-invariant choices are template parameters.

// SGD without momentum: p -= lr * (g + weight_decay * p).
template <bool kWeightDecay>
TESSERA_VECTOR_CLONES void SgdLoop(float* __restrict p,
                                   const float* __restrict g, size_t n,
                                   float weight_decay, float neg_lr) {
  for (size_t i = 0; i < n; ++i) {
    float d = g[i];
    if (kWeightDecay) d = d + weight_decay * p[i];
    p[i] = p[i] + neg_lr * d;
  }
}

void Sgd(float* p, const float* g, size_t n, float weight_decay, float neg_lr) {
  if (weight_decay != 0) {
    SgdLoop<true>(p, g, n, weight_decay, neg_lr);
  } else {
    SgdLoop<false>(p, g, n, weight_decay, neg_lr);
  }
}

struct SgdKernel {
  static constexpr int kNumSlots = 0;

  explicit SgdKernel(const OptimizerConfig& config)
      : weight_decay(config.weight_decay),
        neg_lr(static_cast<float>(-1 * double{config.learning_rate})) {}

  float InitialSlotValue() const { return 0.0f; }

  void Step(float* p, const float* g, float* const* /*slots*/, size_t n,
            int64_t /*step*/) const {
    Sgd(p, g, n, weight_decay, neg_lr);
  }

  const float weight_decay;
  const float neg_lr;
};

// torch SGD with momentum != 0. First step: buf = d. Later:
// buf = buf * momentum + (1 - dampening) * d. Then d = nesterov ?
// d + momentum * buf : buf, and p -= lr * d.
template <bool kWeightDecay, bool kNesterov, bool kFirstStep>
TESSERA_VECTOR_CLONES void MomentumLoop(float* __restrict p,
                                        const float* __restrict g,
                                        float* __restrict buf, size_t n,
                                        float weight_decay, float momentum,
                                        float one_minus_dampening,
                                        float neg_lr) {
  for (size_t i = 0; i < n; ++i) {
    float d = g[i];
    if (kWeightDecay) d = d + weight_decay * p[i];
    float b;
    if (kFirstStep) {
      b = d;
    } else {
      const float decayed = buf[i] * momentum;
      b = decayed + one_minus_dampening * d;
    }
    buf[i] = b;
    if (kNesterov) {
      d = d + momentum * b;
    } else {
      d = b;
    }
    p[i] = p[i] + neg_lr * d;
  }
}

struct MomentumKernel {
  static constexpr int kNumSlots = 1;

  explicit MomentumKernel(const OptimizerConfig& config)
      : weight_decay(config.weight_decay),
        momentum(config.momentum),
        one_minus_dampening(static_cast<float>(1 - double{config.dampening})),
        neg_lr(static_cast<float>(-1 * double{config.learning_rate})),
        nesterov(config.nesterov) {}

  float InitialSlotValue() const { return 0.0f; }

  void Step(float* p, const float* g, float* const* slots, size_t n,
            int64_t step) const {
    // torch skips the buffer entirely when momentum == 0; so do we (the slot
    // stays as it is).
    if (momentum == 0) {
      Sgd(p, g, n, weight_decay, neg_lr);
      return;
    }
    const bool decay = weight_decay != 0;
    const bool first = step == 1;
    // 8 instantiations, picked once per call.
    using Loop = void (*)(float*, const float*, float*, size_t, float, float,
                          float, float);
    static constexpr Loop kLoops[2][2][2] = {
        {{MomentumLoop<false, false, false>, MomentumLoop<false, false, true>},
         {MomentumLoop<false, true, false>, MomentumLoop<false, true, true>}},
        {{MomentumLoop<true, false, false>, MomentumLoop<true, false, true>},
         {MomentumLoop<true, true, false>, MomentumLoop<true, true, true>}},
    };
    kLoops[decay][nesterov][first](p, g, slots[0], n, weight_decay, momentum,
                                   one_minus_dampening, neg_lr);
  }

  const float weight_decay;
  const float momentum;
  const float one_minus_dampening;
  const float neg_lr;
  const bool nesterov;
};

// torch Adagrad (dense): sum += d * d; std = sqrt(sum) + eps;
// p += -clr * d / std with clr = lr / (1 + (step - 1) * lr_decay).
template <bool kWeightDecay>
TESSERA_VECTOR_CLONES void AdagradLoop(float* __restrict p,
                                       const float* __restrict g,
                                       float* __restrict sum, size_t n,
                                       float weight_decay, float eps,
                                       float neg_clr) {
  for (size_t i = 0; i < n; ++i) {
    float d = g[i];
    if (kWeightDecay) d = d + weight_decay * p[i];
    // addcmul_(grad, grad, 1.0): value * d is exact.
    const float s = sum[i] + d * d;
    sum[i] = s;
    const float denom = std::sqrt(s) + eps;
    p[i] = p[i] + neg_clr * d / denom;
  }
}

struct AdagradKernel {
  static constexpr int kNumSlots = 1;

  explicit AdagradKernel(const OptimizerConfig& config)
      : weight_decay(config.weight_decay),
        eps(config.epsilon),
        initial_accumulator(config.initial_accumulator),
        lr(config.learning_rate),
        lr_decay(config.lr_decay) {}

  float InitialSlotValue() const { return initial_accumulator; }

  void Step(float* p, const float* g, float* const* slots, size_t n,
            int64_t step) const {
    const double clr = lr / (1 + static_cast<double>(step - 1) * lr_decay);
    const float neg_clr = static_cast<float>(-clr);
    if (weight_decay != 0) {
      AdagradLoop<true>(p, g, slots[0], n, weight_decay, eps, neg_clr);
    } else {
      AdagradLoop<false>(p, g, slots[0], n, weight_decay, eps, neg_clr);
    }
  }

  const float weight_decay;
  const float eps;
  const float initial_accumulator;
  const double lr;
  const double lr_decay;
};

// torch Adam / AdamW (amsgrad = false):
//   AdamW: p *= 1 - lr * weight_decay.      Adam: d = g + weight_decay * p.
//   m = m * beta1 + (1 - beta1) * d
//   v = v * beta2 + (1 - beta2) * d * d
//   denom = sqrt(v) / sqrt(bias_correction2) + eps
//   p += -(lr / bias_correction1) * m / denom
template <bool kCoupledDecay, bool kDecoupledDecay>
TESSERA_VECTOR_CLONES void AdamLoop(
    float* __restrict p, const float* __restrict g, float* __restrict exp_avg,
    float* __restrict exp_avg_sq, size_t n, float weight_decay,
    float decoupled_factor, float beta1, float one_minus_beta1, float beta2,
    float one_minus_beta2, float sqrt_bias_correction2, float eps,
    float neg_step_size) {
  for (size_t i = 0; i < n; ++i) {
    float param = p[i];
    if (kDecoupledDecay) param = param * decoupled_factor;
    float d = g[i];
    if (kCoupledDecay) d = d + weight_decay * param;
    const float m_decayed = exp_avg[i] * beta1;
    const float m = m_decayed + one_minus_beta1 * d;
    const float v_decayed = exp_avg_sq[i] * beta2;
    const float v = v_decayed + one_minus_beta2 * d * d;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const float denom = std::sqrt(v) / sqrt_bias_correction2 + eps;
    p[i] = param + neg_step_size * m / denom;
  }
}

struct AdamKernel {
  static constexpr int kNumSlots = 2;

  explicit AdamKernel(const OptimizerConfig& config)
      : decoupled(config.decoupled_weight_decay),
        weight_decay(config.weight_decay),
        decoupled_factor(static_cast<float>(
            1 - double{config.learning_rate} * double{config.weight_decay})),
        beta1(config.beta1),
        one_minus_beta1(static_cast<float>(1 - double{config.beta1})),
        beta2(config.beta2),
        one_minus_beta2(static_cast<float>(1 - double{config.beta2})),
        eps(config.epsilon),
        lr(config.learning_rate),
        beta1_d(config.beta1),
        beta2_d(config.beta2) {}

  float InitialSlotValue() const { return 0.0f; }

  void Step(float* p, const float* g, float* const* slots, size_t n,
            int64_t step) const {
    const double bias_correction1 = 1 - std::pow(beta1_d, step);
    const double bias_correction2 = 1 - std::pow(beta2_d, step);
    const float sqrt_bias_correction2 =
        static_cast<float>(std::sqrt(bias_correction2));
    const float neg_step_size = static_cast<float>(-(lr / bias_correction1));
    if (weight_decay == 0) {
      AdamLoop<false, false>(p, g, slots[0], slots[1], n, weight_decay,
                             decoupled_factor, beta1, one_minus_beta1, beta2,
                             one_minus_beta2, sqrt_bias_correction2, eps,
                             neg_step_size);
    } else if (decoupled) {
      AdamLoop<false, true>(p, g, slots[0], slots[1], n, weight_decay,
                            decoupled_factor, beta1, one_minus_beta1, beta2,
                            one_minus_beta2, sqrt_bias_correction2, eps,
                            neg_step_size);
    } else {
      AdamLoop<true, false>(p, g, slots[0], slots[1], n, weight_decay,
                            decoupled_factor, beta1, one_minus_beta1, beta2,
                            one_minus_beta2, sqrt_bias_correction2, eps,
                            neg_step_size);
    }
  }

  const bool decoupled;
  const float weight_decay;
  const float decoupled_factor;
  const float beta1;
  const float one_minus_beta1;
  const float beta2;
  const float one_minus_beta2;
  const float eps;
  const double lr;
  const double beta1_d;
  const double beta2_d;
};

constexpr int kMaxSlots = 2;

// Optimizer over one kernel: size checks once per call, then the kernel's
// loop over a whole block.
template <typename Kernel>
class KernelOptimizer final : public Optimizer {
 public:
  static_assert(Kernel::kNumSlots <= kMaxSlots, "raise kMaxSlots");

  explicit KernelOptimizer(const OptimizerConfig& config)
      : config_(config), kernel_(config) {}

  int num_slots() const override { return Kernel::kNumSlots; }

  void InitSlots(absl::Span<float* const> slots, size_t n) const override {
    CHECK_EQ(slots.size(), static_cast<size_t>(Kernel::kNumSlots));
    const float value = kernel_.InitialSlotValue();
    for (float* slot : slots) std::fill_n(slot, n, value);
  }

  void Apply(absl::Span<float> params, absl::Span<const float> grad,
             absl::Span<float* const> slots, int64_t step) const override {
    CHECK_EQ(grad.size(), params.size());
    CHECK_EQ(slots.size(), static_cast<size_t>(Kernel::kNumSlots));
    CHECK_GE(step, 1);
    kernel_.Step(params.data(), grad.data(), slots.data(), params.size(), step);
  }

  const OptimizerConfig& config() const override { return config_; }

 private:
  const OptimizerConfig config_;
  const Kernel kernel_;
};

absl::Status InvalidField(const char* field, const char* requirement,
                          float value) {
  return absl::InvalidArgumentError(absl::StrCat(
      "OptimizerConfig.", field, " must be ", requirement, ", got ", value));
}

absl::Status CheckFinite(const char* field, float value, bool allow_zero) {
  const bool ok = std::isfinite(value) && (allow_zero ? value >= 0 : value > 0);
  if (ok) return absl::OkStatus();
  return InvalidField(field, allow_zero ? "finite and >= 0" : "finite and > 0",
                      value);
}

absl::Status CheckNonNegative(const char* field, float value) {
  return CheckFinite(field, value, /*allow_zero=*/true);
}

absl::Status CheckPositive(const char* field, float value) {
  return CheckFinite(field, value, /*allow_zero=*/false);
}

absl::Status CheckBeta(const char* field, float value) {
  // Written so that NaN fails.
  if (value >= 0 && value < 1) return absl::OkStatus();
  return InvalidField(field, "in [0, 1)", value);
}

}  // namespace

TESSERA_VECTOR_CLONES
bool AllFinite(absl::Span<const float> values) {
  // NaN and +-Inf are the floats whose exponent bits are all ones. Checking
  // the bits is a loop GCC vectorizes (with this file's cost model): a float
  // reduction it must not reorder would not be, and this check was the
  // largest user-space cost of a 16 MiB push.
  const float* v = values.data();
  const size_t n = values.size();
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], sizeof(bits));
    bad |= (~bits & 0x7f800000u) == 0;
  }
  return bad == 0;
}

OptimizerConfig TorchDefaultOptimizerConfig(OptimizerConfig::Kind kind) {
  OptimizerConfig config;
  config.kind = kind;
  switch (kind) {
    case Kind::kAdagrad:
      config.epsilon = kAdagradDefaultEpsilon;
      break;
    case Kind::kAdam:
      config.learning_rate = 1e-3f;
      break;
    case Kind::kSgd:
    case Kind::kMomentum:
      break;
  }
  return config;
}

absl::Status ValidateOptimizerConfig(const OptimizerConfig& config) {
  switch (config.kind) {
    case Kind::kSgd:
    case Kind::kMomentum:
    case Kind::kAdagrad:
    case Kind::kAdam:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("OptimizerConfig.kind is not a known kind: ",
                       static_cast<int>(config.kind)));
  }
  TESSERA_RETURN_IF_ERROR(CheckPositive("learning_rate", config.learning_rate));
  TESSERA_RETURN_IF_ERROR(
      CheckNonNegative("weight_decay", config.weight_decay));
  if (config.decoupled_weight_decay && config.kind != Kind::kAdam) {
    return absl::InvalidArgumentError(
        "OptimizerConfig.decoupled_weight_decay requires kind kAdam");
  }
  if (config.nesterov && config.kind != Kind::kMomentum) {
    // torch refuses nesterov without momentum too.
    return absl::InvalidArgumentError(
        "OptimizerConfig.nesterov requires kind kMomentum");
  }
  switch (config.kind) {
    case Kind::kSgd:
      break;
    case Kind::kMomentum:
      TESSERA_RETURN_IF_ERROR(CheckNonNegative("momentum", config.momentum));
      if (!(config.dampening >= 0 && config.dampening <= 1)) {
        return InvalidField("dampening", "in [0, 1]", config.dampening);
      }
      if (config.nesterov && (config.momentum <= 0 || config.dampening != 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "OptimizerConfig.nesterov requires momentum > 0 and dampening == "
            "0, got momentum ",
            config.momentum, " and dampening ", config.dampening));
      }
      break;
    case Kind::kAdagrad:
      TESSERA_RETURN_IF_ERROR(CheckPositive("epsilon", config.epsilon));
      TESSERA_RETURN_IF_ERROR(
          CheckNonNegative("initial_accumulator", config.initial_accumulator));
      TESSERA_RETURN_IF_ERROR(CheckNonNegative("lr_decay", config.lr_decay));
      break;
    case Kind::kAdam:
      TESSERA_RETURN_IF_ERROR(CheckBeta("beta1", config.beta1));
      TESSERA_RETURN_IF_ERROR(CheckBeta("beta2", config.beta2));
      TESSERA_RETURN_IF_ERROR(CheckPositive("epsilon", config.epsilon));
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Optimizer>> NewOptimizer(
    const OptimizerConfig& config) {
  TESSERA_RETURN_IF_ERROR(ValidateOptimizerConfig(config));
  switch (config.kind) {
    case Kind::kSgd:
      return std::make_unique<KernelOptimizer<SgdKernel>>(config);
    case Kind::kMomentum:
      return std::make_unique<KernelOptimizer<MomentumKernel>>(config);
    case Kind::kAdagrad:
      return std::make_unique<KernelOptimizer<AdagradKernel>>(config);
    case Kind::kAdam:
      return std::make_unique<KernelOptimizer<AdamKernel>>(config);
  }
  return absl::InternalError("unreachable: kind validated above");
}

}  // namespace optim
}  // namespace tessera

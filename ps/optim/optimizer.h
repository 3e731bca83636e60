#ifndef TESSERA_PS_OPTIM_OPTIMIZER_H_
#define TESSERA_PS_OPTIM_OPTIMIZER_H_

// Server-side optimizers, applied in place when a worker pushes a gradient.
//
// A shard keeps each tensor part's float32 parameters in memory with the
// optimizer's state slots beside them. On push it calls Optimizer::Apply on
// the block a dense push covers, or on each embedding row a push updates, with
// that row's own step count (lazy: rows not pushed are untouched, no momentum
// decay, as TensorFlow's lazy Adam):
//
//   TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer,
//                            NewOptimizer(config));
//   std::vector<std::vector<float>> slots(optimizer->num_slots(),
//                                         std::vector<float>(n));
//   std::vector<float*> slot_ptrs = ...;  // slots[k].data()
//   optimizer->InitSlots(slot_ptrs, n);
//   ...
//   optimizer->Apply(params, grad, slot_ptrs, ++step);
//
// The math is libtorch 1.13's torch::optim::{SGD, Adagrad, Adam, AdamW} for one
// parameter tensor, in float32 with the same order of operations; scalar
// coefficients (bias corrections, decayed learning rates) are computed in
// double and rounded to float once, as ATen does. On x86-64 the results are
// bit-identical to libtorch running its reference CPU kernels
// (ATEN_CPU_CAPABILITY=default) and within a few ulps of its AVX2/AVX-512
// kernels, which fuse x + alpha * y into one multiply-add; torch_parity_test.cc
// checks both.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tessera {
namespace optim {

struct OptimizerConfig {
  enum class Kind { kSgd, kMomentum, kAdagrad, kAdam };
  Kind kind = Kind::kSgd;
  float learning_rate = 0.01f;
  // L2 penalty added to the gradient (grad += weight_decay * param), as
  // torch::optim does; for kAdam like torch's Adam, not AdamW.
  float weight_decay = 0.0f;
  // kAdam only: AdamW behaviour (param *= 1 - learning_rate * weight_decay
  // before the step; the gradient is left alone).
  bool decoupled_weight_decay = false;
  float momentum = 0.9f;   // kMomentum. 0 makes it plain SGD, as torch.
  float dampening = 0.0f;  // kMomentum
  bool nesterov = false;   // kMomentum
  // kAdam. `epsilon` is also Adagrad's eps; torch's Adagrad default is 1e-10
  // (kAdagradDefaultEpsilon), which this struct cannot default to for one kind
  // only: set it, or start from TorchDefaultOptimizerConfig(kAdagrad).
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f;
  float initial_accumulator = 0.0f;  // kAdagrad
  float lr_decay = 0.0f;             // kAdagrad, as torch
};

// torch::optim::AdagradOptions' default eps.
inline constexpr float kAdagradDefaultEpsilon = 1e-10f;

// A config of `kind` with libtorch's defaults where libtorch has them and they
// differ from OptimizerConfig's: kAdagrad epsilon 1e-10; kAdam learning rate
// 1e-3. Everything else is OptimizerConfig's default.
OptimizerConfig TorchDefaultOptimizerConfig(OptimizerConfig::Kind kind);

// True iff no value is NaN or +-Inf (what a shard checks before it applies a
// gradient or takes initial values). Vectorized like the optimizers' loops.
bool AllFinite(absl::Span<const float> values);

// Returns OK if `config` can build an optimizer, else InvalidArgument whose
// message names the offending field ("OptimizerConfig.beta1 ..."). Checks
// only the fields that `config.kind` uses:
//   all kinds:  learning_rate finite and > 0; weight_decay finite and >= 0;
//               decoupled_weight_decay only with kAdam; nesterov only with
//               kMomentum.
//   kMomentum:  momentum finite and >= 0; dampening in [0, 1]; nesterov
//               requires momentum > 0 and dampening == 0.
//   kAdagrad:   epsilon finite and > 0; initial_accumulator and lr_decay
//               finite and >= 0.
//   kAdam:      0 <= beta1, beta2 < 1; epsilon finite and > 0.
// Caveat: stricter than torch, which accepts eps == 0 (a 0/0 on a zero
// gradient would poison the parameters for good on a long-lived shard).
absl::Status ValidateOptimizerConfig(const OptimizerConfig& config);

// Applies one optimizer step in place to a block of float32 parameters.
// Thread-compatible: every method is const and the object holds no state but
// its config, so one Optimizer may serve every part and thread; the caller
// serializes calls that touch the same parameters or slots. Slots are owned by
// the caller.
//
// Preconditions (checked with CHECK once per call, never per element): sizes
// as documented below, step >= 1, and params, grad and every slot are
// disjoint memory. Caveat: the optimizer does not look at values; the caller
// rejects NaN/Inf gradients before applying them.
class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Number of state vectors, each as long as the parameters they belong to:
  // kSgd 0, kMomentum 1 (momentum buffer), kAdagrad 1 (sum of squares),
  // kAdam 2 (exp_avg, exp_avg_sq).
  virtual int num_slots() const = 0;

  // Sets the initial value of `slots.size() == num_slots()` slots of `n`
  // floats each: initial_accumulator for kAdagrad, zeros otherwise.
  virtual void InitSlots(absl::Span<float* const> slots, size_t n) const = 0;

  // One step over a contiguous block of n = params.size() floats. `step` is
  // the 1-based number of updates this block has now received, including this
  // one: Adam's bias correction, Adagrad's lr_decay, and Momentum's first step,
  // which sets the buffer to the gradient (as torch; InitSlots' zeros are
  // overwritten). Requires grad.size() == params.size() and
  // slots.size() == num_slots(), each slot pointing to n floats.
  virtual void Apply(absl::Span<float> params, absl::Span<const float> grad,
                     absl::Span<float* const> slots, int64_t step) const = 0;

  virtual const OptimizerConfig& config() const = 0;
};

// Creates the optimizer `config` describes; InvalidArgument as
// ValidateOptimizerConfig when the config is invalid. Caller owns the result.
absl::StatusOr<std::unique_ptr<Optimizer>> NewOptimizer(
    const OptimizerConfig& config);

}  // namespace optim
}  // namespace tessera

#endif  // TESSERA_PS_OPTIM_OPTIMIZER_H_

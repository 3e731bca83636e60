#ifndef TESSERA_WORKER_DENSE_PREDICTOR_H_
#define TESSERA_WORKER_DENSE_PREDICTOR_H_

// Weight prediction for prefetched dense tensors (the job's
// `consistency.extrapolate_dense`).
//
// Under ASYNC and SSP a step's dense tensors are pulled while the step before
// it computes, so its gradient is computed on values that miss that step's
// update, and the updates other workers push meanwhile, and is applied to
// values that have them. Consecutive updates of a tensor are close (Adam's
// and momentum's are running averages, and SGD's follow a slowly turning
// gradient), so the pulled values plus their change since the previous
// step's pull are a better guess at the values the gradient lands on:
//
//   trained on = pulled + (pulled - previous step's pulled)
//
// The change between two consecutive pulls spans the updates of one step of
// this worker and of everyone else, which is about what a pulled value
// misses, so the guess follows the number of workers without knowing it.
// The guess only decides where a gradient is computed: what the shards hold
// is never extrapolated.
//
// Measured in bench/training_bench (bench/README.md): it recovers most of the
// test accuracy that one step of staleness costs.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace tessera {
namespace worker {

class DensePredictor {
 public:
  // `values`: dense tensor `slot`'s values as pulled. When `ahead` (the pull
  // was issued a step before its values are trained on) and the slot's
  // previous pull had the same size, extrapolates `values` in place and
  // returns true. Either way the pulled values become the slot's previous
  // pull: a pull that is not ahead (the first of a partition that nothing
  // prefetched, a retry, an evaluation) starts the chain again.
  bool Predict(size_t slot, absl::Span<float> values, bool ahead);

  // Forgets every previous pull.
  void Reset() { slots_.clear(); }

 private:
  struct Slot {
    std::vector<float> previous;
    bool valid = false;
  };
  std::vector<Slot> slots_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DENSE_PREDICTOR_H_

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
// This class keeps each dense tensor's previous pull and decides, per pull,
// whether it extrapolates; the client's thread does the arithmetic as the
// values arrive (PsClient::PullDense with a DenseHistory), so the training
// thread pays nothing for it. Measured in bench/training_bench
// (bench/README.md): it recovers most of the test accuracy that one step of
// staleness costs.
//
// Thread-compatible; a slot's history must not be asked for again while its
// last pull is in flight (the exchange waits for a pull before it issues the
// next one of the same tensor).

#include <cstddef>
#include <vector>

#include "ps/client/ps_client.h"

namespace tessera {
namespace worker {

class DensePredictor {
 public:
  // The history for the next pull of dense tensor `slot`, of `n` floats. It
  // extrapolates when the pull is `ahead` (issued a step before its values
  // are trained on) and the slot's last pull of the same size completed
  // (Completed). A pull that is not ahead (a partition's first that nothing
  // prefetched, a retry, an evaluation) is trained on as it comes and starts
  // the chain again; so does one after a pull that never completed.
  DenseHistory Next(size_t slot, size_t n, bool ahead);

  // The slot's pull from the last Next completed: what it pulled is the
  // slot's previous pull. Returns whether it was extrapolated.
  bool Completed(size_t slot);

 private:
  struct Slot {
    std::vector<float> previous;
    bool valid = false;          // `previous` holds a completed pull
    bool extrapolating = false;  // the pull in flight
  };
  std::vector<Slot> slots_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DENSE_PREDICTOR_H_

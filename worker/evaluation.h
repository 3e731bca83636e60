#ifndef TESSERA_WORKER_EVALUATION_H_
#define TESSERA_WORKER_EVALUATION_H_

// The one evaluation loop: a model on a whole dataset (e.g. Fashion-MNIST's
// test split), in batches, with the values the model holds when each batch
// is evaluated. The trainer gives `prepare` to pull the parameters a batch
// needs first; the demo, tests and benchmarks evaluate a pulled model as is.
//
// Thread-compatible (uses the model).

#include <algorithm>
#include <atomic>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/dataset.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

template <typename BatchT>
struct EvaluateOptions {
  int batch_size = 1000;
  // Called before each batch is evaluated (e.g. to pull its parameters); an
  // error stops the evaluation. May be empty.
  std::function<absl::Status(const BatchT&)> prepare;
  // Once set, the evaluation stops early with what it has. May be null.
  const std::atomic<bool>* stop = nullptr;
};

// Summed over every example of `data`: examples, correct ones and the mean
// loss.
template <typename BatchT>
absl::StatusOr<EvalResult> EvaluateDataset(
    Model& model, const Dataset<BatchT>& data,
    const EvaluateOptions<BatchT>& options = {}) {
  EvalResult total;
  double loss_sum = 0;
  std::vector<int64_t> indices;
  const int64_t step = std::max(1, options.batch_size);
  for (int64_t begin = 0; begin < data.size(); begin += step) {
    if (options.stop != nullptr && options.stop->load()) break;
    const int64_t end = std::min<int64_t>(data.size(), begin + step);
    indices.resize(end - begin);
    for (int64_t i = begin; i < end; ++i) indices[i - begin] = i;
    auto batch = data.Gather(indices);
    if (!batch.ok()) return batch.status();
    if (options.prepare) {
      absl::Status prepared = options.prepare(*batch);
      if (!prepared.ok()) return prepared;
    }
    auto eval = model.Evaluate(*batch);
    if (!eval.ok()) return eval.status();
    total.num_correct += eval->num_correct;
    total.num_examples += eval->num_examples;
    loss_sum += eval->loss * eval->num_examples;
  }
  if (total.num_examples > 0) total.loss = loss_sum / total.num_examples;
  return total;
}

// Percent of `data` classified correctly; 0 for an empty dataset.
absl::StatusOr<double> AccuracyPercent(Model& model, const DenseDataset& data);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_EVALUATION_H_

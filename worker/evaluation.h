#ifndef TESSERA_WORKER_EVALUATION_H_
#define TESSERA_WORKER_EVALUATION_H_

// Evaluates a model on a whole dense dataset (e.g. Fashion-MNIST's test
// split) with the values the model holds now. Thread-compatible (uses the
// model).

#include "absl/status/statusor.h"
#include "worker/data/dataset.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

// Summed over every example of `data`, in batches of `batch_size`.
absl::StatusOr<EvalResult> EvaluateDataset(Model& model,
                                           const DenseDataset& data,
                                           int batch_size = 1000);

// Percent of `data` classified correctly; 0 for an empty dataset.
absl::StatusOr<double> AccuracyPercent(Model& model, const DenseDataset& data);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_EVALUATION_H_

#include "worker/evaluation.h"

namespace tessera {
namespace worker {

absl::StatusOr<double> AccuracyPercent(Model& model, const DenseDataset& data) {
  auto eval = EvaluateDataset(model, data);
  if (!eval.ok()) return eval.status();
  if (eval->num_examples == 0) return 0.0;
  return 100.0 * eval->num_correct / eval->num_examples;
}

}  // namespace worker
}  // namespace tessera

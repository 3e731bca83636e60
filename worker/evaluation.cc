#include "worker/evaluation.h"

#include <algorithm>
#include <vector>

namespace tessera {
namespace worker {

absl::StatusOr<EvalResult> EvaluateDataset(Model& model,
                                           const DenseDataset& data,
                                           int batch_size) {
  EvalResult total;
  double loss_sum = 0;
  std::vector<int64_t> indices;
  for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
    const int64_t end = std::min<int64_t>(data.size(), begin + batch_size);
    indices.resize(end - begin);
    for (int64_t i = begin; i < end; ++i) indices[i - begin] = i;
    auto batch = data.Gather(indices);
    if (!batch.ok()) return batch.status();
    auto eval = model.Evaluate(*batch);
    if (!eval.ok()) return eval.status();
    total.num_correct += eval->num_correct;
    total.num_examples += eval->num_examples;
    loss_sum += eval->loss * eval->num_examples;
  }
  if (total.num_examples > 0) total.loss = loss_sum / total.num_examples;
  return total;
}

absl::StatusOr<double> AccuracyPercent(Model& model, const DenseDataset& data) {
  auto eval = EvaluateDataset(model, data);
  if (!eval.ok()) return eval.status();
  if (eval->num_examples == 0) return 0.0;
  return 100.0 * eval->num_correct / eval->num_examples;
}

}  // namespace worker
}  // namespace tessera

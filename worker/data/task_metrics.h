#ifndef TESSERA_WORKER_DATA_TASK_METRICS_H_
#define TESSERA_WORKER_DATA_TASK_METRICS_H_

// Evaluation metrics over a whole test set: ROC AUC, log loss, accuracy.
// Pure functions, thread-safe. Every function checks its input and returns
// InvalidArgument (naming the first bad position) for spans of different
// sizes, an empty input, a non-finite score or a label outside its range.

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tessera {
namespace worker {

// The exact area under the ROC curve: the probability that a random positive
// example scores higher than a random negative one, a tie counting 1/2
// (the Mann-Whitney U statistic over n_pos * n_neg). O(n log n) time, O(n)
// memory. Labels must be 0 or 1; scores may be probabilities, logits or any
// monotone transform of them (the AUC is the same). FailedPrecondition when
// the labels hold only one class (the AUC is undefined).
absl::StatusOr<double> RocAuc(absl::Span<const double> scores,
                              absl::Span<const float> labels);
absl::StatusOr<double> RocAuc(absl::Span<const float> scores,
                              absl::Span<const float> labels);

// Mean binary cross-entropy, -[y log p + (1 - y) log(1 - p)], with p clamped
// to [epsilon, 1 - epsilon] so a confident mistake costs at most -log(epsilon).
// Labels in [0, 1] (soft labels allowed); probabilities in [0, 1].
inline constexpr double kLogLossEpsilon = 1e-7;
absl::StatusOr<double> LogLoss(absl::Span<const double> probabilities,
                               absl::Span<const float> labels,
                               double epsilon = kLogLossEpsilon);
absl::StatusOr<double> LogLoss(absl::Span<const float> probabilities,
                               absl::Span<const float> labels,
                               double epsilon = kLogLossEpsilon);

// As LogLoss with p = sigmoid(logit), computed stably from the logits
// (max(x, 0) - x y + log1p(exp(-|x|))); no clamping is needed.
absl::StatusOr<double> LogLossFromLogits(absl::Span<const float> logits,
                                         absl::Span<const float> labels);

// The fraction of examples with (score >= threshold) == (label == 1), for
// labels 0 or 1 (threshold 0.5 for probabilities, 0 for logits).
absl::StatusOr<double> BinaryAccuracy(absl::Span<const float> scores,
                                      absl::Span<const float> labels,
                                      float threshold = 0.5f);

// Multi-class: `logits` is labels.size() x num_classes, row-major; the
// prediction of a row is its largest logit (the first one on a tie). Labels
// are class indices in [0, num_classes), as floats (TabularBatch::labels).
absl::StatusOr<double> ClassAccuracy(absl::Span<const float> logits,
                                     int64_t num_classes,
                                     absl::Span<const float> labels);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_TASK_METRICS_H_

#include "worker/data/task_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tessera {
namespace worker {
namespace {

absl::Status CheckSizes(size_t scores, size_t labels, absl::string_view what) {
  if (scores != labels) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", scores, " scores but ", labels, " labels"));
  }
  if (labels == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no examples"));
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckFinite(absl::Span<const T> values, absl::string_view what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": value ", i, " is not finite"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBinaryLabels(absl::Span<const float> labels,
                               absl::string_view what) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] != 0.0f && labels[i] != 1.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label ", i, " is ", labels[i], ", not 0 or 1"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<double> RocAucImpl(absl::Span<const T> scores,
                                  absl::Span<const float> labels) {
  absl::Status status = CheckSizes(scores.size(), labels.size(), "RocAuc");
  if (status.ok()) status = CheckFinite(scores, "RocAuc");
  if (status.ok()) status = CheckBinaryLabels(labels, "RocAuc");
  if (!status.ok()) return status;
  std::vector<uint32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return scores[a] < scores[b]; });
  // Walk groups of equal scores in ascending order: each positive beats the
  // negatives below its group and ties half of those within it.
  double wins = 0;  // Exact: an integer or half-integer below 2^53.
  int64_t negatives_below = 0;
  int64_t positives = 0;
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin;
    int64_t group_pos = 0;
    int64_t group_neg = 0;
    while (end < order.size() && scores[order[end]] == scores[order[begin]]) {
      if (labels[order[end]] == 1.0f) {
        ++group_pos;
      } else {
        ++group_neg;
      }
      ++end;
    }
    wins += static_cast<double>(group_pos) *
            (static_cast<double>(negatives_below) + 0.5 * group_neg);
    negatives_below += group_neg;
    positives += group_pos;
    begin = end;
  }
  const int64_t negatives = negatives_below;
  if (positives == 0 || negatives == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("RocAuc: the ", labels.size(),
                     " labels hold only one class; the AUC is undefined"));
  }
  return wins / (static_cast<double>(positives) * negatives);
}

template <typename T>
absl::StatusOr<double> LogLossImpl(absl::Span<const T> probabilities,
                                   absl::Span<const float> labels,
                                   double epsilon) {
  absl::Status status =
      CheckSizes(probabilities.size(), labels.size(), "LogLoss");
  if (!status.ok()) return status;
  if (!(epsilon > 0 && epsilon < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LogLoss: epsilon ", epsilon, " is not in (0, 0.5)"));
  }
  double sum = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double p = probabilities[i];
    const double y = labels[i];
    if (!(p >= 0 && p <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LogLoss: probability ", i, " is ", p, ", not in [0, 1]"));
    }
    if (!(y >= 0 && y <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("LogLoss: label ", i, " is ", y, ", not in [0, 1]"));
    }
    const double q = std::clamp(p, epsilon, 1 - epsilon);
    sum -= y * std::log(q) + (1 - y) * std::log1p(-q);
  }
  return sum / labels.size();
}

}  // namespace

absl::StatusOr<double> RocAuc(absl::Span<const double> scores,
                              absl::Span<const float> labels) {
  return RocAucImpl(scores, labels);
}

absl::StatusOr<double> RocAuc(absl::Span<const float> scores,
                              absl::Span<const float> labels) {
  return RocAucImpl(scores, labels);
}

absl::StatusOr<double> LogLoss(absl::Span<const double> probabilities,
                               absl::Span<const float> labels, double epsilon) {
  return LogLossImpl(probabilities, labels, epsilon);
}

absl::StatusOr<double> LogLoss(absl::Span<const float> probabilities,
                               absl::Span<const float> labels, double epsilon) {
  return LogLossImpl(probabilities, labels, epsilon);
}

absl::StatusOr<double> LogLossFromLogits(absl::Span<const float> logits,
                                         absl::Span<const float> labels) {
  absl::Status status =
      CheckSizes(logits.size(), labels.size(), "LogLossFromLogits");
  if (status.ok()) status = CheckFinite(logits, "LogLossFromLogits");
  if (!status.ok()) return status;
  double sum = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double x = logits[i];
    const double y = labels[i];
    if (!(y >= 0 && y <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LogLossFromLogits: label ", i, " is ", y, ", not in [0, 1]"));
    }
    sum += std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::abs(x)));
  }
  return sum / labels.size();
}

absl::StatusOr<double> BinaryAccuracy(absl::Span<const float> scores,
                                      absl::Span<const float> labels,
                                      float threshold) {
  absl::Status status =
      CheckSizes(scores.size(), labels.size(), "BinaryAccuracy");
  if (status.ok()) status = CheckFinite(scores, "BinaryAccuracy");
  if (status.ok()) status = CheckBinaryLabels(labels, "BinaryAccuracy");
  if (!status.ok()) return status;
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    correct += (scores[i] >= threshold) == (labels[i] == 1.0f);
  }
  return static_cast<double>(correct) / labels.size();
}

absl::StatusOr<double> ClassAccuracy(absl::Span<const float> logits,
                                     int64_t num_classes,
                                     absl::Span<const float> labels) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClassAccuracy: num_classes is ", num_classes));
  }
  if (labels.empty()) {
    return absl::InvalidArgumentError("ClassAccuracy: no examples");
  }
  if (logits.size() / num_classes != labels.size() ||
      logits.size() % num_classes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClassAccuracy: ", logits.size(), " logits for ",
                     labels.size(), " labels of ", num_classes, " classes"));
  }
  absl::Status status = CheckFinite(logits, "ClassAccuracy");
  if (!status.ok()) return status;
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float y = labels[i];
    if (!(y >= 0 && y < num_classes) || y != std::floor(y)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ClassAccuracy: label ", i, " is ", y,
                       ", not a class index in [0, ", num_classes, ")"));
    }
    const float* row = logits.data() + i * num_classes;
    const int64_t predicted = std::max_element(row, row + num_classes) - row;
    correct += predicted == static_cast<int64_t>(y);
  }
  return static_cast<double>(correct) / labels.size();
}

}  // namespace worker
}  // namespace tessera

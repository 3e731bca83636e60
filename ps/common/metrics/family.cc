#include "ps/common/metrics/family.h"

#include <utility>

#include "glog/logging.h"

namespace tessera {
namespace metrics {
namespace internal {

FamilyBase::FamilyBase(MetricType type, std::string name, std::string help,
                       Labels constant_labels)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      constant_labels_(std::move(constant_labels)) {
  CHECK(IsValidMetricName(name_)) << "invalid metric name \"" << name_
                                  << "\": must match [a-zA-Z_:][a-zA-Z0-9_:]*";
  for (const auto& [label, value] : constant_labels_) {
    CHECK(IsValidLabelName(label))
        << "metric " << name_ << ": invalid label name \"" << label
        << "\": must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __";
    CHECK(type_ != MetricType::kHistogram || label != "le")
        << "histogram " << name_ << ": \"le\" is reserved for buckets";
  }
}

std::string FamilyBase::CheckedLabelBlock(const Labels& labels) const {
  Labels all = constant_labels_;
  for (const auto& [label, value] : labels) {
    CHECK(IsValidLabelName(label))
        << "metric " << name_ << ": invalid label name \"" << label
        << "\": must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __";
    CHECK(type_ != MetricType::kHistogram || label != "le")
        << "histogram " << name_ << ": \"le\" is reserved for buckets";
    CHECK(all.emplace(label, value).second)
        << "metric " << name_ << ": label \"" << label
        << "\" is already a constant label of the family";
  }
  return FormatLabelBlock(all);
}

void FamilyBase::AppendText(std::string* out) const {
  AppendFamilyHeader(name_, help_, type_, out);
  AppendSeriesText(out);
}

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

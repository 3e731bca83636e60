#ifndef TESSERA_PS_COMMON_METRICS_FAMILY_H_
#define TESSERA_PS_COMMON_METRICS_FAMILY_H_

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "ps/common/metrics/counter.h"
#include "ps/common/metrics/gauge.h"
#include "ps/common/metrics/histogram.h"
#include "ps/common/metrics/labels.h"
#include "ps/common/metrics/metric_type.h"
#include "ps/common/metrics/text_format.h"

namespace tessera {
namespace metrics {

class Registry;

namespace internal {

// What a Registry needs of a family, whatever its metric type.
// Thread-safe.
class FamilyBase {
 public:
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;
  virtual ~FamilyBase() = default;

  MetricType type() const { return type_; }
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const Labels& constant_labels() const { return constant_labels_; }

  // Appends HELP, TYPE and every series, in text format 0.0.4.
  void AppendText(std::string* out) const;

 protected:
  // CHECKs that `name` and the constant label names are valid.
  FamilyBase(MetricType type, std::string name, std::string help,
             Labels constant_labels);

  // The label block (see FormatLabelBlock) of a series with `labels` plus
  // the constant labels. CHECKs the names: valid, none that is also a
  // constant label, no "le" in a histogram.
  std::string CheckedLabelBlock(const Labels& labels) const;

 private:
  virtual void AppendSeriesText(std::string* out) const = 0;

  const MetricType type_;
  const std::string name_;
  const std::string help_;
  const Labels constant_labels_;
};

}  // namespace internal

// All series of one metric name, one per label set: e.g. the family
// tessera_ps_push_requests_total with a series per {code}. Created by a
// builder (BuildCounter() ... .Register(registry)); the registry owns it and
// everything it holds.
//
// Thread-safe. Add takes a lock: look a series up once and keep the
// reference for hot paths.
template <typename T>
class Family final : public internal::FamilyBase {
 public:
  static_assert(std::is_same_v<T, Counter> || std::is_same_v<T, Gauge> ||
                    std::is_same_v<T, Histogram>,
                "Family<T> holds a Counter, a Gauge or a Histogram");

  // The series with `labels` (plus the family's constant labels), created
  // at zero on first use; the same labels return the same object, valid for
  // the registry's lifetime. Counter and Gauge families only.
  // Invalid label names are a programming error (CHECK).
  T& Add(const Labels& labels);

  // As above for a Histogram family, with the bucket boundaries of a new
  // series. Asking for an existing series with different boundaries is a
  // programming error (CHECK).
  T& Add(const Labels& labels, const Histogram::BucketBoundaries& buckets);

 private:
  friend class Registry;

  struct Series {
    std::string label_block;  // Labels and constant labels, formatted.
    std::unique_ptr<T> metric;
  };

  Family(std::string name, std::string help, Labels constant_labels)
      : FamilyBase(T::kType, std::move(name), std::move(help),
                   std::move(constant_labels)) {}

  void AppendSeriesText(std::string* out) const override;

  mutable absl::Mutex mu_;
  std::map<Labels, Series> series_ ABSL_GUARDED_BY(mu_);
};

// Implementation details follow.

template <typename T>
T& Family<T>::Add(const Labels& labels) {
  static_assert(!std::is_same_v<T, Histogram>,
                "a histogram series needs its bucket boundaries: "
                "Add(labels, buckets)");
  absl::MutexLock lock(&mu_);
  auto it = series_.find(labels);
  if (it == series_.end()) {
    it = series_
             .emplace(labels,
                      Series{CheckedLabelBlock(labels), std::make_unique<T>()})
             .first;
  }
  return *it->second.metric;
}

template <typename T>
T& Family<T>::Add(const Labels& labels,
                  const Histogram::BucketBoundaries& buckets) {
  static_assert(std::is_same_v<T, Histogram>,
                "only a histogram series takes bucket boundaries");
  absl::MutexLock lock(&mu_);
  auto it = series_.find(labels);
  if (it == series_.end()) {
    it = series_
             .emplace(labels, Series{CheckedLabelBlock(labels),
                                     std::make_unique<Histogram>(buckets)})
             .first;
  } else {
    // Compare as the constructor keeps them: a last +Inf dropped.
    const Histogram::BucketBoundaries& existing =
        it->second.metric->bucket_boundaries();
    size_t n = buckets.size();
    if (n > 0 && std::isinf(buckets[n - 1]) && buckets[n - 1] > 0) --n;
    CHECK(n == existing.size() &&
          std::equal(existing.begin(), existing.end(), buckets.begin()))
        << "histogram " << name() << "{" << it->second.label_block
        << "} already exists with different bucket boundaries";
  }
  return *it->second.metric;
}

template <typename T>
void Family<T>::AppendSeriesText(std::string* out) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, series] : series_) {
    internal::AppendSeries(name(), series.label_block, *series.metric, out);
  }
}

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_FAMILY_H_

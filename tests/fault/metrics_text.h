#ifndef TESSERA_TESTS_FAULT_METRICS_TEXT_H_
#define TESSERA_TESTS_FAULT_METRICS_TEXT_H_

// Reads a /metrics scrape (Prometheus text format 0.0.4) for the fault suite:
// series values by name and label block, histogram buckets, and quantiles
// computed the way PromQL's histogram_quantile() does.
//
// Thread-compatible.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::fault {

// (upper bound, cumulative count), ascending; the last bound is +Inf.
using Buckets = std::vector<std::pair<double, double>>;

class MetricsText {
 public:
  MetricsText() = default;
  static MetricsText Parse(absl::string_view text);

  // The value of `name{labels}` (`labels` exactly as printed, without the
  // braces, e.g. `reason="non_finite"`), or 0 when absent.
  double Get(const std::string& name, const std::string& labels = "") const;
  // Whether the series is present at all.
  bool Has(const std::string& name, const std::string& labels = "") const;
  // The sum over every series of `name` whose label block contains
  // `label_substring` (all of them when empty).
  double Sum(const std::string& name,
             const std::string& label_substring = "") const;
  // The buckets of histogram `name` whose other labels are `labels` (e.g.
  // `rpc="push"`); empty when absent.
  Buckets HistogramBuckets(const std::string& name,
                           const std::string& labels) const;

  size_t size() const { return series_.size(); }

 private:
  // "name{labels}" or "name" -> value.
  std::map<std::string, double> series_;
};

// after - before, bucket by bucket (same bounds); `before` may be empty.
Buckets SubtractBuckets(const Buckets& after, const Buckets& before);

// PromQL's histogram_quantile(q, buckets): linear interpolation inside the
// bucket that holds the q-th observation. NaN when there are no observations.
// A quantile that falls in the +Inf bucket is the largest finite bound.
double HistogramQuantile(double q, const Buckets& buckets);

// Total observations of a bucket list (the +Inf bucket's count).
double BucketCount(const Buckets& buckets);

}  // namespace tessera::fault

#endif  // TESSERA_TESTS_FAULT_METRICS_TEXT_H_

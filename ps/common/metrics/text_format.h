#ifndef TESSERA_PS_COMMON_METRICS_TEXT_FORMAT_H_
#define TESSERA_PS_COMMON_METRICS_TEXT_FORMAT_H_

// Internal to the metrics library: pieces of the Prometheus text exposition
// format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
// Every function appends to `out` and is thread-compatible.

#include <string>

#include "absl/strings/string_view.h"
#include "ps/common/metrics/counter.h"
#include "ps/common/metrics/gauge.h"
#include "ps/common/metrics/histogram.h"
#include "ps/common/metrics/labels.h"
#include "ps/common/metrics/metric_type.h"

namespace tessera {
namespace metrics {
namespace internal {

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(absl::string_view name);

// [a-zA-Z_][a-zA-Z0-9_]*, and not starting with "__" (reserved).
bool IsValidLabelName(absl::string_view name);

// A sample value: integral values as integers ("42", "-3"), others in the
// shortest form that parses back to the same double ("0.1", "1e+300"), and
// "+Inf", "-Inf", "NaN".
void AppendValue(double v, std::string* out);
std::string FormatValue(double v);

// HELP text: backslash -> \\, newline -> \n.
void AppendEscapedHelp(absl::string_view help, std::string* out);

// Label value: backslash -> \\, double quote -> \", newline -> \n.
void AppendEscapedLabelValue(absl::string_view value, std::string* out);

// `a="x",b="y"`: the labels in name order, values escaped, no braces.
std::string FormatLabelBlock(const Labels& labels);

// "# HELP name help\n# TYPE name type\n"; no HELP line if `help` is empty.
void AppendFamilyHeader(absl::string_view name, absl::string_view help,
                        MetricType type, std::string* out);

// The sample lines of one series, `label_block` as from FormatLabelBlock.
// A histogram's series is its buckets (cumulative, le last among the labels,
// ending with le="+Inf"), then _sum and _count.
void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Counter& counter, std::string* out);
void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Gauge& gauge, std::string* out);
void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Histogram& histogram, std::string* out);

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_TEXT_FORMAT_H_

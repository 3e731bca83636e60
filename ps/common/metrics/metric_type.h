#ifndef TESSERA_PS_COMMON_METRICS_METRIC_TYPE_H_
#define TESSERA_PS_COMMON_METRICS_METRIC_TYPE_H_

namespace tessera {
namespace metrics {

// The Prometheus metric types this library exports.
enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge" or "histogram", as in a `# TYPE` line.
inline const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_METRIC_TYPE_H_

#ifndef TESSERA_PS_COMMON_METRICS_GAUGE_H_
#define TESSERA_PS_COMMON_METRICS_GAUGE_H_

#include <atomic>

#include "ps/common/metrics/metric_type.h"

namespace tessera {
namespace metrics {

// A value that goes up and down: queue depth, bytes in memory, the time of
// the last flush. Obtained from Family<Gauge>::Add; the registry owns it.
//
// Thread-safe and lock-free. Set is one atomic store; Increment and
// Decrement a compare-and-swap loop on one shared value (a gauge cannot be
// sharded: Set must replace every earlier update).
class Gauge {
 public:
  static constexpr MetricType kType = MetricType::kGauge;

  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }

  void Increment(double v = 1);
  void Decrement(double v = 1) { Increment(-v); }

  // Sets the gauge to the current wall time in seconds since the Unix epoch.
  void SetToCurrentTime();

  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_GAUGE_H_

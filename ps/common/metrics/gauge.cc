#include "ps/common/metrics/gauge.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tessera {
namespace metrics {

void Gauge::Increment(double v) {
  double old = value_.load(std::memory_order_relaxed);
  while (
      !value_.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

void Gauge::SetToCurrentTime() {
  Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

}  // namespace metrics
}  // namespace tessera

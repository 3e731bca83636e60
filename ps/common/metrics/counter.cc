#include "ps/common/metrics/counter.h"

#include <cmath>

#include "glog/logging.h"

namespace tessera {
namespace metrics {
namespace {

// Doubles below this are integers exactly, and so are their sums up to it.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

}  // namespace

void Counter::Increment(double v) {
  DCHECK(v >= 0) << "Counter::Increment(" << v << "): counters only go up";
  if (!(v >= 0)) return;  // Also drops NaN.
  Slot& slot = slots_[internal::ThisThreadSlot()];
  if (v < kMaxExactInteger && v == std::trunc(v)) {
    slot.whole.fetch_add(static_cast<uint64_t>(v), std::memory_order_relaxed);
    return;
  }
  double old = slot.real.load(std::memory_order_relaxed);
  while (!slot.real.compare_exchange_weak(old, old + v,
                                          std::memory_order_relaxed)) {
  }
}

double Counter::Value() const {
  uint64_t whole = 0;
  double real = 0;
  for (const Slot& slot : slots_) {
    whole += slot.whole.load(std::memory_order_relaxed);
    real += slot.real.load(std::memory_order_relaxed);
  }
  return static_cast<double>(whole) + real;
}

}  // namespace metrics
}  // namespace tessera

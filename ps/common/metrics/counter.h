#ifndef TESSERA_PS_COMMON_METRICS_COUNTER_H_
#define TESSERA_PS_COMMON_METRICS_COUNTER_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "ps/common/metrics/metric_type.h"
#include "ps/common/metrics/thread_slot.h"

namespace tessera {
namespace metrics {

// A value that only goes up: requests served, bytes received, errors.
// Obtained from Family<Counter>::Add; the registry owns it.
//
// Thread-safe. Increment is lock-free and sharded over per-thread slots (each
// on its own cache line), so it costs a few nanoseconds even when several
// threads increment the same counter; Value() sums the slots and is meant
// for scrapes and tests, not hot paths.
class Counter {
 public:
  static constexpr MetricType kType = MetricType::kCounter;

  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds 1.
  void Increment() {
    slots_[internal::ThisThreadSlot()].whole.fetch_add(
        1, std::memory_order_relaxed);
  }

  // Adds `v`. A negative or NaN `v` is a programming error: it fails a
  // DCHECK in debug builds and is ignored otherwise. Integral `v` (below
  // 2^53) takes the same fetch-add path as Increment(); other values a
  // compare-and-swap on this thread's slot.
  void Increment(double v);

  // The sum of every increment so far. Concurrent increments may or may not
  // be included.
  double Value() const;

 private:
  struct alignas(internal::kCacheLineSize) Slot {
    std::atomic<uint64_t> whole{0};  // Integral increments.
    std::atomic<double> real{0.0};   // Everything else.
  };

  std::array<Slot, internal::kNumThreadSlots> slots_;
};

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_COUNTER_H_

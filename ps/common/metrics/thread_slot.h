#ifndef TESSERA_PS_COMMON_METRICS_THREAD_SLOT_H_
#define TESSERA_PS_COMMON_METRICS_THREAD_SLOT_H_

// Internal to the metrics library: the per-thread slot that spreads hot-path
// updates (Counter::Increment, Histogram::Observe) over cache lines, so that
// threads updating the same metric do not bounce one cache line between cores.
//
// Each thread gets a slot the first time it asks, round-robin over
// kNumThreadSlots; the first kNumThreadSlots threads created therefore never
// share one. Threads that do share a slot stay correct (updates are atomic),
// they only contend.

#include <cstdint>

#include "absl/base/optimization.h"

namespace tessera {
namespace metrics {
namespace internal {

// Slots per sharded metric. A Counter costs kNumThreadSlots cache lines.
inline constexpr int kNumThreadSlots = 16;

// The size every slot is padded to.
inline constexpr int kCacheLineSize = 64;

// Slot + 1 of this thread; 0 until assigned. Constant-initialized and
// initial-exec, so reading it is a single TLS load with no guard or call.
inline thread_local int thread_slot_plus_one
    __attribute__((tls_model("initial-exec"))) = 0;

// Assigns this thread's slot; out of line, runs once per thread.
int AssignThreadSlot();

// This thread's slot, in [0, kNumThreadSlots).
inline int ThisThreadSlot() {
  const int slot_plus_one = thread_slot_plus_one;
  if (ABSL_PREDICT_FALSE(slot_plus_one == 0)) return AssignThreadSlot();
  return slot_plus_one - 1;
}

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_THREAD_SLOT_H_

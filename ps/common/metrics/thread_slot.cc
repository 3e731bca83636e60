#include "ps/common/metrics/thread_slot.h"

#include <atomic>

namespace tessera {
namespace metrics {
namespace internal {

int AssignThreadSlot() {
  static std::atomic<uint32_t> next_slot{0};
  const int slot = static_cast<int>(
      next_slot.fetch_add(1, std::memory_order_relaxed) % kNumThreadSlots);
  thread_slot_plus_one = slot + 1;
  return slot;
}

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

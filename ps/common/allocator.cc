#include "ps/common/allocator.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

namespace tessera {

bool KeepFreedMessageMemory(int64_t keep_bytes) {
  // Setting either turns off glibc's dynamic thresholds, so set both.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const int keep = static_cast<int>(std::min<int64_t>(keep_bytes, INT_MAX));
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, keep) == 1;
  return mmap_ok && trim_ok;
}

}  // namespace tessera

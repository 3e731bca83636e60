#ifndef TESSERA_PS_SERVER_SHM_SEGMENTS_H_
#define TESSERA_PS_SERVER_SHM_SEGMENTS_H_

// A shard's shared-memory segments (proto/tessera/v1/data.proto,
// SHM_ATTACH), one per client that asked, found by token. At most
// `max_segments` are open: attaching one more closes the one used least
// recently, and a request naming a closed segment fails with shm_lost (the
// client sends it again in frames). A segment's pages cost memory only once
// touched, so the resident cost is bounded by max_segments x segment_bytes
// and, in practice, by the bytes clients keep in flight.
//
// Metrics: tessera_ps_shm_segments (open now), tessera_ps_shm_bytes_total
// {direction="in"|"out"} (values moved through segments).
//
// Thread-safe.

#include <cstdint>
#include <list>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "ps/common/metrics/metrics.h"
#include "ps/wire/shm_segment.h"

namespace tessera {

struct ShmSegmentsOptions {
  // Bytes of each segment; 0 turns shared memory off (SHM_ATTACH refused).
  int64_t segment_bytes = 32 << 20;
  int max_segments = 8;
};

class ShmSegments {
 public:
  // `registry` may be null; otherwise it must outlive this.
  ShmSegments(ShmSegmentsOptions options, metrics::Registry* registry);

  bool enabled() const { return options_.segment_bytes > 0; }

  // A new segment for a client on machine `host` (ShmHostId() there).
  // FailedPrecondition when shared memory is off or `host` is not this
  // machine.
  absl::StatusOr<std::shared_ptr<const ShmSegment>> Attach(
      absl::string_view host) ABSL_LOCKS_EXCLUDED(mu_);

  // The open segment with `token`, or null; marks it used.
  std::shared_ptr<const ShmSegment> Find(uint64_t token)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Counts values moved through a segment.
  void CountBytes(bool in, int64_t bytes);

 private:
  using Lru = std::list<std::shared_ptr<const ShmSegment>>;

  const ShmSegmentsOptions options_;
  absl::Mutex mu_;
  Lru lru_ ABSL_GUARDED_BY(mu_);  // Most recently used first.
  absl::flat_hash_map<uint64_t, Lru::iterator> by_token_ ABSL_GUARDED_BY(mu_);
  metrics::Gauge* open_ = nullptr;
  metrics::Counter* bytes_in_ = nullptr;
  metrics::Counter* bytes_out_ = nullptr;
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_SHM_SEGMENTS_H_

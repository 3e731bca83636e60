#ifndef TESSERA_PS_STORE_FLUSHER_H_
#define TESSERA_PS_STORE_FLUSHER_H_

// Writes what changed in a TensorStore to its ShardStorage every interval, as
// one atomic batch per flush. Each flush first runs the store's expiry sweep
// (TensorStore::ExpireRows), so rows it deletes are deleted on disk by the
// same batch. A failed write (disk full, read-only) keeps the
// changes marked dirty, is reported in stats() and the log, and is retried at
// the next interval: the shard keeps serving from memory meanwhile. A
// successful write tells the store (TensorStore::MarkPersisted), so a caller
// of FlushNow() knows an initialization it set is on disk, and tiered tables
// over their max_rows evict the rows it wrote (TensorStore::EvictFlushed). A
// tiered table whose unwritten rows hold it at more than twice its max_rows,
// or whose new rows the shard's budget refused, asks for a flush
// (TensorStore::TakeFlushRequest), which then comes within kRequestPoll
// rather than at the end of the interval.
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"

namespace tessera {

struct FlushStats {
  int64_t flushes = 0;           // successful flushes that wrote something
  int64_t failures = 0;          // failed writes
  int64_t bytes_total = 0;       // parameter and slot bytes written
  absl::Duration last_duration;  // of the last attempt
  int64_t last_bytes = 0;
  absl::Time last_success;   // last time memory and disk agreed
  absl::Status last_status;  // of the last attempt
};

class Flusher {
 public:
  // `store` and `storage` are not owned and must outlive this. An interval of
  // zero disables the background thread (flushes happen only on FlushNow()).
  Flusher(TensorStore* store, ShardStorage* storage, absl::Duration interval);
  ~Flusher();  // Stops the thread; does not flush (call FlushNow() first).

  // Called after every attempt that had something to write, on the flushing
  // thread, without locks held. Set before Start().
  using Observer = std::function<void(absl::Duration took, int64_t bytes,
                                      const absl::Status& status)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  void Start();

  // Flushes now on the caller's thread; returns the write's status.
  absl::Status FlushNow() ABSL_LOCKS_EXCLUDED(flush_mu_);

  FlushStats stats() const ABSL_LOCKS_EXCLUDED(stats_mu_);

 private:
  void Loop();

  // How often the thread looks for an early request between flushes.
  static constexpr absl::Duration kRequestPoll = absl::Milliseconds(100);

  TensorStore* const store_;     // Not owned.
  ShardStorage* const storage_;  // Not owned.
  const absl::Duration interval_;
  Observer observer_;

  absl::Mutex flush_mu_;  // One flush at a time.

  mutable absl::Mutex stats_mu_;
  FlushStats stats_ ABSL_GUARDED_BY(stats_mu_);
  bool stop_ ABSL_GUARDED_BY(stats_mu_) = false;

  std::thread thread_;
};

}  // namespace tessera

#endif  // TESSERA_PS_STORE_FLUSHER_H_

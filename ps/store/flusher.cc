#include "ps/store/flusher.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "glog/logging.h"

namespace tessera {

Flusher::Flusher(TensorStore* store, ShardStorage* storage,
                 absl::Duration interval)
    : store_(store), storage_(storage), interval_(interval) {
  stats_.last_success = absl::Now();
}

Flusher::~Flusher() {
  {
    absl::MutexLock lock(&stats_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Flusher::Start() {
  if (interval_ > absl::ZeroDuration())
    thread_ = std::thread([this] { Loop(); });
}

void Flusher::Loop() {
  absl::MutexLock lock(&stats_mu_);
  while (!stop_) {
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_mu_) {
      return stop_;
    };
    // The interval, in slices that look for an early request (a tiered
    // table whose dirty rows must be written before they can go).
    const absl::Time due = absl::Now() + interval_;
    bool early = false;
    for (absl::Time now = absl::Now(); now < due && !early && !stop_;
         now = absl::Now()) {
      stats_mu_.AwaitWithTimeout(absl::Condition(&stopping),
                                 std::min(due - now, kRequestPoll));
      early = store_->TakeFlushRequest();
    }
    if (stop_) break;
    if (early) {
      VLOG(1) << "flushing early: a tiered table holds more than twice its "
                 "max_rows, or the shard's budget refused its new rows, in "
                 "rows a flush must write first";
    }
    stats_mu_.Unlock();
    FlushNow().IgnoreError();  // Reported in stats and the log.
    stats_mu_.Lock();
  }
}

absl::Status Flusher::FlushNow() {
  absl::MutexLock flush_lock(&flush_mu_);
  const absl::Time start = absl::Now();
  // Expired rows first, so that this flush deletes them on disk too.
  store_->ExpireRows();
  DirtySnapshot snapshot;
  store_->TakeDirty(&snapshot);
  absl::Status status;
  if (!snapshot.empty()) {
    status = storage_->Write(snapshot);
    if (status.ok()) {
      store_->MarkPersisted(snapshot);
      // Tiered tables over their max_rows: the rows just written may go.
      store_->EvictFlushed();
    } else {
      store_->MarkDirty(snapshot);
    }
  }
  const absl::Duration took = absl::Now() - start;
  if (observer_ && !snapshot.empty()) observer_(took, snapshot.bytes, status);
  absl::MutexLock lock(&stats_mu_);
  const bool was_failing = !stats_.last_status.ok();
  stats_.last_duration = took;
  stats_.last_status = status;
  if (status.ok()) {
    stats_.last_success = start;
    if (!snapshot.empty()) {
      ++stats_.flushes;
      stats_.last_bytes = snapshot.bytes;
      stats_.bytes_total += snapshot.bytes;
      VLOG(1) << "flushed " << snapshot.versions.size() << " parts, "
              << snapshot.bytes << " bytes in " << took;
    }
    if (was_failing) {
      LOG(INFO) << "flush to " << storage_->dir()
                << " works again; memory and disk agree";
    }
  } else {
    ++stats_.failures;
    LOG(ERROR) << "flush to " << storage_->dir() << " failed (attempt "
               << stats_.failures << "), serving from memory and retrying in "
               << interval_ << ": " << status;
  }
  return status;
}

FlushStats Flusher::stats() const {
  absl::MutexLock lock(&stats_mu_);
  return stats_;
}

}  // namespace tessera

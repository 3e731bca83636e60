#ifndef TESSERA_PS_SERVER_COORDINATOR_H_
#define TESSERA_PS_SERVER_COORDINATOR_H_

// The job's coordinator (runs on shard 0): membership, the model's tensor
// specs, data partitions leased to workers with expiry, epochs, worker clocks
// for bounded staleness, and job completion.
//
// Partitions: each epoch's partitions are queued; a worker leases one at a
// time. A worker not heard from within lease_timeout_s is dropped and its
// lease goes back to the front of the queue, so a dead worker costs only its
// unfinished lease. Completed partitions, the epoch, the specs and per-epoch
// figures are persisted (shard 0's RocksDB) before a call that changed them
// returns, so a restart of shard 0 loses no finished partition; leases are
// not persisted: after a restart a worker's heartbeat or completion re-adopts
// its partition if nobody else holds it.
//
// Clocks: a worker's clock is the number of steps it has completed. Under SSP
// with bound s, WaitForClock(c) returns once c - min <= s, where min is the
// smallest clock of live workers that hold a lease (idle workers waiting for a
// partition never hold others back). A worker that (re)starts work is moved up
// to that minimum, or to the highest clock reached when nobody holds a lease,
// so a newcomer does not stall the others; it learns its clock from the lease.
// The largest spread of lease holders' clocks is tracked (JobStatus
// max_clock_spread): with bound s it never exceeds s + 1.
//
// Thread-safe.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ps/common/metrics/metrics.h"
#include "ps/store/shard_storage.h"
#include "tessera/v1/coordinator.pb.h"
#include "tessera/v1/job.pb.h"

namespace tessera {

class Coordinator {
 public:
  // Most workers live at once (each holds a record until its lease expires).
  static constexpr int kMaxLiveWorkers = 4096;
  // Most bad input lines one CompletePartition may report (a sane cap: more
  // than any partition of a text file could hold), and the longest
  // first_bad_line kept (longer ones are cut at a UTF-8 boundary).
  static constexpr int64_t kMaxBadLinesPerReport = int64_t{1} << 40;
  static constexpr size_t kMaxBadLineBytes = 1024;

  using Clock = std::function<absl::Time()>;

  // `storage` and `registry` are not owned and must outlive this. `now` is
  // for tests. The job must be valid (ParseJobConfig).
  Coordinator(v1::JobConfig job, ShardStorage* storage,
              metrics::Registry* registry, Clock now = absl::Now);
  ~Coordinator();

  // Restores persisted state. A stored state of another job (by name) is a
  // FailedPrecondition: point shard 0 at a fresh data directory.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  // The job's model file (ModelConfig.torchscript), read by main() before
  // the coordinator serves: Join reports its size and zlib crc32,
  // FetchModelFile streams it. Call before serving, at most once.
  void SetModelFile(std::string contents) ABSL_LOCKS_EXCLUDED(mu_);
  // The model file; null when the job has none. Immutable: readers stream
  // it without a lock.
  std::shared_ptr<const std::string> model_file() const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Starts a thread that expires silent workers every `period`.
  void StartReaper(absl::Duration period);

  absl::StatusOr<v1::JoinResponse> Join(const v1::JoinRequest& request);
  absl::StatusOr<v1::RegisterModelResponse> RegisterModel(
      const v1::RegisterModelRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request);
  absl::Status Leave(const v1::LeaveRequest& request);
  absl::StatusOr<v1::AcquirePartitionResponse> AcquirePartition(
      const v1::AcquirePartitionRequest& request);
  absl::StatusOr<v1::CompletePartitionResponse> CompletePartition(
      const v1::CompletePartitionRequest& request);
  // Blocks up to min(max_wait, request.max_wait_ms) for the staleness bound.
  absl::StatusOr<v1::WaitForClockResponse> WaitForClock(
      const v1::WaitForClockRequest& request, absl::Duration max_wait);
  absl::Status ReportEvaluation(const v1::ReportEvaluationRequest& request);
  v1::JobStatus Status() const ABSL_LOCKS_EXCLUDED(mu_);

  // Drops workers silent for longer than the lease timeout. Also runs on
  // every call; public for tests.
  void ExpireStale() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Worker {
    int64_t clock = 0;
    int partition = -1;  // leased partition of the current epoch, or -1
    // Trained, its completion on the way (AcquirePartitionRequest's
    // finishing_partition); still leased to this worker; or -1.
    int finishing = -1;
    absl::Time last_seen;
    int64_t samples = 0;
  };

  absl::Status CheckWorkerId(const std::string& id) const;
  // The record of worker `id`, made (a join) if new; ResourceExhausted when
  // kMaxLiveWorkers are live already.
  absl::StatusOr<Worker*> TouchLocked(const std::string& id, bool* joined)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireStaleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequeueLocked(int partition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Requeues every partition `w` holds (its lease and a finishing one);
  // returns how many.
  int RequeueHeldLocked(const Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartEpochLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Min clock over live workers holding a lease; -1 if none.
  int64_t MinActiveClockLocked(std::string* slowest) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  v1::EpochStats& StatsLocked(int epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes the clock spread of lease holders (gauge and maximum); call
  // after any change of a clock or of who holds a lease.
  void NoteClocksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds an accepted completion's bad lines; fails the job past
  // dataset.max_bad_lines.
  void NoteBadLinesLocked(const v1::CompletePartitionRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the persistent state; the snapshot is taken under mu_, the write
  // happens outside it, in order (persist_mu_).
  absl::Status Persist() ABSL_LOCKS_EXCLUDED(mu_);

  const v1::JobConfig job_;
  ShardStorage* const storage_;  // Not owned.
  const Clock now_;
  const int staleness_;  // -1: async
  const absl::Duration lease_timeout_;

  absl::Mutex persist_mu_;

  mutable absl::Mutex mu_;
  int epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<bool> done_ ABSL_GUARDED_BY(mu_);
  int done_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<int> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, std::string> leased_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::TensorSpec> specs_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::EpochStats> epoch_stats_ ABSL_GUARDED_BY(mu_);
  int64_t max_clock_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_clock_spread_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t membership_changes_ ABSL_GUARDED_BY(mu_) = 0;
  // Bad input lines of accepted completions, the first one reported, and
  // why the job failed ("" while it has not).
  int64_t bad_lines_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_bad_line_ ABSL_GUARDED_BY(mu_);
  std::string failed_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const std::string> model_file_ ABSL_GUARDED_BY(mu_);
  uint32_t model_file_crc32_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread reaper_;

  // Metrics (owned by the registry).
  metrics::Gauge* live_workers_;
  metrics::Gauge* partitions_done_;
  metrics::Gauge* partitions_leased_;
  metrics::Gauge* partitions_queued_;
  metrics::Gauge* epoch_gauge_;
  metrics::Gauge* job_finished_;
  metrics::Gauge* clock_spread_;
  metrics::Gauge* job_failed_;
  metrics::Gauge* test_auc_;
  metrics::Counter* bad_lines_total_;
  metrics::Family<metrics::Counter>* membership_;
  metrics::Counter* lease_expirations_;
  metrics::Histogram* ssp_wait_;
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_COORDINATOR_H_

#ifndef TESSERA_PS_SERVER_SHARD_H_
#define TESSERA_PS_SERVER_SHARD_H_

// One parameter-server shard, independent of how requests arrive: the tensor
// store, its RocksDB storage and flusher, the shard's lifecycle (loading ->
// serving -> draining) and its metrics. The gRPC service and the ZeroMQ data
// plane are thin front ends over this class.
//
// Thread-safe.

#include <atomic>
#include <cstdint>
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
#include "absl/types/span.h"
#include "ps/common/metrics/metrics.h"
#include "ps/store/flusher.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/ps.pb.h"

namespace tessera {

struct ShardOptions {
  int shard_index = 0;
  v1::PlacementConfig placement;
  std::string data_dir;
  absl::Duration flush_interval = absl::Seconds(5);
  NonFinitePolicy non_finite = NonFinitePolicy::kReject;
  int64_t max_message_bytes = 64 << 20;
  int64_t block_floats = 1 << 16;
  // Parameters + optimizer slots this shard may hold (0 = no limit).
  int64_t max_memory_bytes = 0;
  // Row ids one push or pull may name, and specs one CreateTensors may carry.
  int64_t max_ids_per_request = 1 << 20;
  int64_t max_specs_per_request = 100000;
  // For tests: see ShardStorage::set_write_fault.
  ShardStorage::WriteFault storage_write_fault;
  // Reported by GetShardInfo so clients find the other ports.
  int data_port = 0;
  int metrics_port = 0;
};

class Shard {
 public:
  enum class State { kLoading, kServing, kDraining, kStopped };

  // `registry` is not owned and must outlive this.
  Shard(ShardOptions options, metrics::Registry* registry);
  ~Shard();

  // Opens the data directory and loads its specs, dense tensors, versions and
  // the rows of tables whose memory policy deletes rows, then starts the
  // flusher and serves: other embedding rows stay on disk, so the time to
  // serve does not grow with the tables. Tiered tables (EVICTION_DISK) read
  // the rows they miss from disk always; the other tables' rows load in the
  // background (a thread; misses read the disk until a table is loaded).
  // Errors leave the shard in kLoading, refusing requests.
  absl::Status Load();

  // Refuses new updates, waits up to `deadline` for in-flight ones, then runs
  // a final flush. Returns the flush's status. Every update acknowledged OK
  // is in that flush, and every update not in it was refused before it
  // changed anything (see InFlight in shard.cc).
  absl::Status Drain(absl::Duration deadline);

  State state() const { return state_.load(); }
  bool serving() const { return state() == State::kServing; }
  const ShardOptions& options() const { return options_; }

  // Requests. Each checks the state first (Unavailable while loading or
  // draining), validates its input, counts rejections by reason, and changes
  // nothing on error.
  absl::StatusOr<CreateResult> CreateTensors(
      absl::Span<const v1::TensorSpec> specs);
  absl::StatusOr<PushResult> PushDense(const std::string& tensor,
                                       int64_t row_begin,
                                       absl::Span<const float> grad);
  absl::StatusOr<PushResult> PushRows(const std::string& tensor,
                                      absl::Span<const uint64_t> ids,
                                      absl::Span<const float> grad);
  absl::StatusOr<int64_t> PullDense(const std::string& tensor,
                                    int64_t row_begin, absl::Span<float> out);
  // TensorStore::PullDenseView: the same without a copy.
  absl::StatusOr<DenseView> PullDenseView(const std::string& tensor,
                                          int64_t row_begin, int64_t floats);
  // TensorStore::InitializeDense, made durable: when it returns OK the
  // part's initial values (this call's or an earlier one's, applied or not)
  // are on disk, written by a synced flush. A failed flush is Unavailable
  // ("not yet on disk; retry"): the values stay in memory and reach disk
  // with the next flush, and a retry (applied=false) flushes again.
  absl::StatusOr<InitializeResult> InitializeTensor(
      const std::string& tensor, int64_t row_begin,
      absl::Span<const float> values);
  absl::StatusOr<int64_t> PullRows(const std::string& tensor,
                                   absl::Span<const uint64_t> ids,
                                   absl::Span<float> out);
  // TensorStore::PushTables / PullTables: all tables or none. The ids over
  // all tables count against max_ids_per_request; a push counts one update
  // per table.
  absl::StatusOr<TablesPushResult> PushTables(
      absl::Span<const TableRowsUpdate> tables);
  absl::StatusOr<std::vector<int64_t>> PullTables(
      absl::Span<const TableRowsRead> tables);
  // TensorStore::PushDenseBatch / PullDenseBatch: all ranges or none; a push
  // counts one update per range.
  absl::StatusOr<TablesPushResult> PushDenseBatch(
      absl::Span<const DenseRangeUpdate> ranges);
  absl::StatusOr<std::vector<int64_t>> PullDenseBatch(
      absl::Span<const DenseRangeRead> ranges);
  // TensorStore::ScanRows; the first batch (cursor 0) of a table that reads
  // the disk flushes first, so the scan sees every row held when it began.
  absl::StatusOr<RowScanBatch> ScanRows(const std::string& tensor,
                                        uint64_t cursor, int64_t max_rows);
  // For tests and operators: true once every table's rows are in memory or
  // tiered (the background load has finished).
  bool rows_loaded() const { return background_load_done_.load(); }

  // Reads that are allowed in every state but kLoading.
  TensorStore* store() { return store_.get(); }
  // Null until Load() succeeded.
  ShardStorage* storage() { return storage_.get(); }
  v1::ShardInfo Info() const;
  // The registry this shard's metrics are in (for its front ends').
  metrics::Registry* registry() const { return registry_; }

  // Counts a request rejected before it reached the shard (malformed frame,
  // oversize message) under `reason`.
  void CountRejected(absl::string_view reason);

  // Per-request metrics, for front ends: one call per finished request.
  void RecordRequest(const std::string& rpc, const absl::Status& status,
                     absl::Duration took, int64_t bytes_in, int64_t bytes_out);

  // The state as a Status: OK when serving, Unavailable otherwise.
  absl::Status CheckServing(bool is_update) const;

 private:
  class InFlight;
  void RegisterMetrics();
  // Per embedding table (label tensor): rows, admissions, drops, evictions,
  // expiries, pull hits and misses, from TensorStore::PolicyStats at scrape.
  void RegisterTableMetrics();
  absl::Status Count(absl::Status status);
  // The background load of rows left on disk (Load), table by table; stops
  // early when the shard stops.
  void LoadRowsInBackground(std::vector<std::string> tables);
  // InvalidArgument (oversize) above max_ids_per_request.
  absl::Status CheckIdCount(size_t ids) const;

  const ShardOptions options_;
  metrics::Registry* const registry_;  // Not owned.
  std::unique_ptr<TensorStore> store_;
  std::unique_ptr<ShardStorage> storage_;
  std::unique_ptr<Flusher> flusher_;
  std::atomic<State> state_{State::kLoading};
  std::thread loader_;
  std::atomic<bool> stop_loading_{false};
  std::atomic<bool> background_load_done_{false};

  // Serializes CreateTensors (prepare, persist, publish).
  absl::Mutex create_mu_;

  // Guards the change of state_ to kDraining against updates registering.
  absl::Mutex inflight_mu_;
  int64_t inflight_ ABSL_GUARDED_BY(inflight_mu_) = 0;

  // Updates apply under it shared; the final flush copies under it exclusive.
  absl::Mutex apply_mu_;
  bool final_flush_started_ ABSL_GUARDED_BY(apply_mu_) = false;

  // Metrics (owned by the registry).
  metrics::Family<metrics::Counter>* requests_ = nullptr;
  metrics::Family<metrics::Histogram>* latency_ = nullptr;
  metrics::Family<metrics::Counter>* received_bytes_ = nullptr;
  metrics::Family<metrics::Counter>* sent_bytes_ = nullptr;
  metrics::Family<metrics::Counter>* rejected_ = nullptr;
  metrics::Counter* updates_applied_ = nullptr;
  metrics::Counter* updates_skipped_ = nullptr;
  metrics::Histogram* flush_duration_ = nullptr;
  metrics::Counter* flush_bytes_ = nullptr;
  metrics::Counter* flush_failures_ = nullptr;
  metrics::Gauge* load_duration_ = nullptr;
  metrics::Gauge* serving_ = nullptr;
  metrics::Gauge* loading_rows_ = nullptr;
  // The table counters exported so far, by tensor (scrapes add what is new).
  absl::Mutex table_stats_mu_;
  absl::flat_hash_map<std::string, TablePolicyStats> table_stats_seen_
      ABSL_GUARDED_BY(table_stats_mu_);
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_SHARD_H_

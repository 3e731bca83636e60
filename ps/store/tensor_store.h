#ifndef TESSERA_PS_STORE_TENSOR_STORE_H_
#define TESSERA_PS_STORE_TENSOR_STORE_H_

// The tensor parts placed on one shard, in memory, with their optimizer state.
//
// Each tensor has at most one part on a shard: a row range of a dense tensor,
// or this shard's rows of an embedding table. Every part has its own lock, so
// pushes and pulls on different parts never wait for each other; the table of
// parts is read-mostly (a reader lock, taken only to find a part).
//
// Every method validates its input first and changes nothing on error. Errors
// carry a reject reason (ps/common/reject_reason.h).
//
// Thread-safe: every method may be called concurrently.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ps/optim/optimizer.h"
#include "ps/spec/placement.h"
#include "tessera/v1/tensor.pb.h"

namespace tessera {

enum class NonFinitePolicy {
  kReject,  // InvalidArgument, nothing applied
  kSkip,    // the whole push is dropped and reported as skipped
};

struct StoreOptions {
  int shard_index = 0;
  v1::PlacementConfig placement;
  // Flush granularity of dense parts: a push marks the blocks it touched.
  int64_t block_floats = 1 << 16;
  NonFinitePolicy non_finite = NonFinitePolicy::kReject;
  // Parameters plus optimizer slots this shard may hold; creating a tensor or
  // embedding rows beyond it is ResourceExhausted. 0 = no limit. Counts
  // memory_bytes(): the tables' row overhead too.
  int64_t max_memory_bytes = 0;
  // Embedding rows live in chunks of at most this many bytes (whole rows, at
  // least one row), allocated as a table grows and never moved. A table's
  // first chunks are smaller, doubling from 1/16 of it, so a small table
  // stays small. Tests lower it to cross chunk boundaries with a few rows.
  int64_t row_chunk_bytes = int64_t{64} << 10;
  // Rows one embedding table's part may hold on this shard: a push or a
  // restore that would create more is ResourceExhausted (out_of_memory) and
  // changes nothing. 0 = no limit but memory and the 2^32 chunks a part can
  // address (2^32 rows at the very least, one per chunk for a huge dim).
  int64_t max_table_rows = 0;
  // The wall clock of memory policies' expiry by seconds; empty = absl::Now.
  // Tests inject a fake one.
  std::function<absl::Time()> clock;
};

// An embedding table's memory policy at work on this shard (v1::MemoryPolicy),
// counted since the store was created (not persisted). Every table has them;
// a table without a policy only ever admits and hits.
struct TablePolicyStats {
  std::string tensor;
  int64_t rows = 0;             // rows in memory
  int64_t total_rows = 0;       // rows in memory and on disk
  int64_t admissions = 0;       // rows created by pushes
  int64_t admission_drops = 0;  // ids' pushes dropped before admission
  int64_t evictions = 0;        // rows deleted over max_rows
  int64_t expiries = 0;         // rows deleted by expiry sweeps
  int64_t pull_hits = 0;        // pulled rows held in memory
  int64_t pull_misses = 0;      // pulled rows not in memory
  // The disk tier (TensorStore::AttachDisk): ids looked up on disk (rows
  // missing from memory that pulls and pushes read), those found there, and
  // rows loaded into memory by LoadRows.
  int64_t disk_reads = 0;
  int64_t disk_hits = 0;
  int64_t rows_loaded = 0;
  // Rows missing from memory are looked up on disk: always for a tiered
  // table (EVICTION_DISK), until FinishLoading for another one.
  bool reads_disk = false;
  bool tiered = false;
};

// An embedding row as stored on disk: the optimizer steps applied to it, then
// dim parameters and dim floats per optimizer slot (DirtySnapshot::Row).
struct StoredRow {
  int64_t step = 0;
  std::vector<float> values;

  friend bool operator==(const StoredRow& a, const StoredRow& b) {
    return a.step == b.step && a.values == b.values;
  }
};

// One batch of RowSource::ScanStoredRows.
struct StoredRowBatch {
  std::vector<std::pair<uint64_t, StoredRow>> rows;  // ascending ids
  // The last id in `rows`, to pass as `start_after` to the next call; the
  // call's own `start_after` when `rows` is empty.
  std::optional<uint64_t> next_start_after;
  bool done = false;  // no stored row of the table after next_start_after
};

// The disk tier under a TensorStore's embedding tables: rows as the last
// successful flush wrote them (the shard's RocksDB, ShardStorage).
// Thread-safe.
class RowSource {
 public:
  virtual ~RowSource() = default;

  // Most ids one ReadRows call takes, and most rows one ScanStoredRows batch
  // returns.
  static constexpr int64_t kMaxRowsPerCall = 16384;

  // result[i] is row ids[i] of table `tensor`, nullopt if none is stored.
  // At most kMaxRowsPerCall ids, read with one batched lookup.
  virtual absl::StatusOr<std::vector<std::optional<StoredRow>>> ReadRows(
      const std::string& tensor, absl::Span<const uint64_t> ids) = 0;

  // The stored rows of table `tensor` with ids after `start_after` (all, if
  // nullopt), in ascending id order, at most `max_rows` (1 to
  // kMaxRowsPerCall) of them.
  virtual absl::StatusOr<StoredRowBatch> ScanStoredRows(
      const std::string& tensor, std::optional<uint64_t> start_after,
      int64_t max_rows) = 0;
};

// Where an embedding table's part on this shard keeps its rows, in bytes
// allocated (for tests, benchmarks and capacity planning).
struct TableFootprint {
  int64_t rows = 0;       // rows held (pushed or restored, not deleted)
  int64_t row_bytes = 0;  // one row in a chunk: id, step, values, slots, pad
  int64_t chunks = 0;
  // The chunks' allocations: their rows, the unused rows of the newest chunk,
  // and one dirty bit per row.
  int64_t chunk_bytes = 0;
  // The arrays of the id -> row index (absl::flat_hash_map slots of 16 bytes
  // and a control byte each, at a load factor between 7/16 and 7/8).
  int64_t index_bytes = 0;
  // Memory policies: slots of deleted rows (within chunk_bytes), reused by
  // new rows first; the list of them; the admission sketch.
  int64_t free_slots = 0;
  int64_t free_list_bytes = 0;
  int64_t sketch_bytes = 0;
};

struct CreateResult {
  int created = 0;    // new tensors with a part on this shard
  int existing = 0;   // already present with an identical spec
  int elsewhere = 0;  // valid specs with no part on this shard
};

struct PushResult {
  int64_t version = 0;   // the part's version after the push
  bool skipped = false;  // dropped for non-finite values (kSkip)
};

// A dense pull without a copy (TensorStore::PullDenseView): `values` point
// into memory that `owner` keeps alive and that nothing changes while it is
// held (the part copies its values before it next changes them).
struct DenseView {
  std::shared_ptr<const std::vector<float>> owner;
  absl::Span<const float> values;
  int64_t version = 0;  // the part's version at the time of the view
};

// One table's rows in TensorStore::PushTables / PullTables.
struct TableRowsUpdate {
  absl::string_view tensor;
  absl::Span<const uint64_t> ids;
  absl::Span<const float> grad;  // ids.size() rows
};
struct TableRowsRead {
  absl::string_view tensor;
  absl::Span<const uint64_t> ids;
  absl::Span<float> out;  // ids.size() rows
};

// One range of a dense tensor in TensorStore::PushDenseBatch /
// PullDenseBatch: rows from row_begin, whole rows in grad / out.
struct DenseRangeUpdate {
  absl::string_view tensor;
  int64_t row_begin = 0;
  absl::Span<const float> grad;
};
struct DenseRangeRead {
  absl::string_view tensor;
  int64_t row_begin = 0;
  absl::Span<float> out;
};

// What PushTables did: each table's version after it (in request order), and
// whether the whole push was dropped for non-finite values (kSkip).
struct TablesPushResult {
  std::vector<int64_t> versions;
  bool skipped = false;
};

// One batch of TensorStore::ScanRows: rows of a table in storage order.
struct RowScanBatch {
  std::vector<uint64_t> ids;
  std::vector<float> values;  // ids.size() rows of dim values (no slots)
  int64_t version = 0;        // the table's version when the batch was read
  uint64_t next = 0;          // the cursor of the next batch
  bool done = false;  // no row at or after `next` when this batch was read
};

struct InitializeResult {
  // true: this call set the values (the version became 1). false: the part
  // had been initialized or updated before, and is unchanged.
  bool applied = false;
  int64_t version = 0;  // the part's version after the call
  // The part holds values set by an initialization (this call's or an
  // earlier one's) that no successful flush has written yet (MarkPersisted).
  bool unpersisted = false;
};

// What changed since the last TakeDirty(): copies, owned by the caller.
struct DirtySnapshot {
  struct Block {
    std::string tensor;
    int64_t block = 0;          // index of block_floats floats in the part
    std::vector<float> values;  // the block's parameters
    std::vector<std::vector<float>> slots;  // each optimizer slot's block
  };
  struct Row {
    std::string tensor;
    uint64_t id = 0;
    int64_t step = 0;
    std::vector<float> values;  // dim parameters, then dim floats per slot
  };
  struct Version {
    std::string tensor;
    int64_t version = 0;
    int64_t step = 0;          // updates the optimizer has applied to the part
    bool initialized = false;  // InitializeDense set the part's values
    int64_t rows = -1;  // an embedding table's rows, in memory and on disk
  };
  std::vector<Block> blocks;
  std::vector<Row> rows;
  // Rows deleted (expired, evicted): to delete on disk before `rows` are
  // written (a row created again since is in `rows`, and wins).
  struct DeletedRow {
    std::string tensor;
    uint64_t id = 0;
  };
  std::vector<DeletedRow> deleted_rows;
  std::vector<Version> versions;
  int64_t bytes = 0;  // parameter and slot bytes copied

  bool empty() const { return versions.empty(); }
};

class TensorStore {
 private:
  class Part;

 public:
  // Tensors validated and built by PrepareTensors, not yet visible to any
  // request. Move-only; dropping it discards them.
  class Pending {
   public:
    Pending();
    Pending(Pending&&);
    Pending& operator=(Pending&&);
    ~Pending();

    const CreateResult& result() const { return result_; }
    // The specs that are new to this store (created here or elsewhere): what
    // must reach disk before Publish.
    const std::vector<v1::TensorSpec>& new_specs() const { return new_specs_; }

   private:
    friend class TensorStore;
    CreateResult result_;
    std::vector<v1::TensorSpec> new_specs_;
    std::vector<std::unique_ptr<Part>> parts_;
    std::vector<v1::TensorSpec> remote_;
  };

  explicit TensorStore(StoreOptions options);
  ~TensorStore();
  TensorStore(const TensorStore&) = delete;
  TensorStore& operator=(const TensorStore&) = delete;

  const StoreOptions& options() const { return options_; }

  // Registers tensors, all or none: a spec that is invalid, or differs from
  // the spec already registered under its name (AlreadyExists, both specs in
  // the message), fails the whole call. Tensors without a part on this shard
  // are validated and counted but not stored.
  absl::StatusOr<CreateResult> CreateTensors(
      absl::Span<const v1::TensorSpec> specs) ABSL_LOCKS_EXCLUDED(mu_);

  // CreateTensors in two steps, for a caller that persists the new specs in
  // between so that a tensor visible in memory is always on disk: Prepare
  // validates and builds (changing nothing), Publish makes them visible. The
  // caller serializes Prepare..Publish against other creates; a tensor that
  // appeared in between keeps its existing part.
  absl::StatusOr<Pending> PrepareTensors(
      absl::Span<const v1::TensorSpec> specs) const ABSL_LOCKS_EXCLUDED(mu_);
  CreateResult Publish(Pending pending) ABSL_LOCKS_EXCLUDED(mu_);

  // Every part on this shard, sorted by tensor name.
  std::vector<v1::TensorPartInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);

  // The part of `tensor` on this shard. NotFound if none.
  absl::StatusOr<v1::TensorPartInfo> Describe(const std::string& tensor) const;

  // Dense tensors. Rows are absolute rows of the tensor and must lie within
  // this shard's part. `grad` / `out` hold whole rows.
  absl::StatusOr<PushResult> PushDense(const std::string& tensor,
                                       int64_t row_begin,
                                       absl::Span<const float> grad);
  // Copies rows [row_begin, row_begin + out.size() / row_size); returns the
  // part's version at the time of the copy.
  absl::StatusOr<int64_t> PullDense(const std::string& tensor,
                                    int64_t row_begin,
                                    absl::Span<float> out) const;

  // PullDense without the copy: `floats` values from row `row_begin` (whole
  // rows within this shard's part), as they are now, shared with the part
  // copy on write. The same errors as PullDense.
  absl::StatusOr<DenseView> PullDenseView(const std::string& tensor,
                                          int64_t row_begin,
                                          int64_t floats) const;

  // PushDense / PullDense over several dense tensors at once, all or
  // nothing: every tensor and range is checked (and, for a push, every
  // gradient's finiteness) before any part changes, so a failing call
  // changes nothing. Parts are then applied (read) one after another, each
  // under its own lock: another request may see some of a push's tensors
  // updated and not yet the rest. A tensor named twice is InvalidArgument
  // (malformed). With kSkip, one non-finite value drops the whole push.
  // Versions (and TablesPushResult::skipped) as for PushTables.
  absl::StatusOr<TablesPushResult> PushDenseBatch(
      absl::Span<const DenseRangeUpdate> ranges);
  absl::StatusOr<std::vector<int64_t>> PullDenseBatch(
      absl::Span<const DenseRangeRead> ranges) const;

  // Sets a dense part to `values` (a user's own initial values), once: only
  // while the part has never been updated nor initialized (version 0).
  // `row_begin` must be the part's first row and `values` the whole part.
  // Applied: the values replace the initializer's, the optimizer state stays
  // as created, the version becomes 1, and every block is marked dirty.
  // Otherwise OK with applied=false and nothing changed. Errors, changing
  // nothing: NotFound (no part here), InvalidArgument for an embedding table
  // (wrong_kind), another row range (rows_out_of_range), another size
  // (wrong_shape), or NaN/Inf (non_finite, whatever the NonFinitePolicy).
  // Runs under the part's lock, so it is atomic against pushes: a push
  // either came first (and the initialization is not applied) or is applied
  // on top of the initial values.
  absl::StatusOr<InitializeResult> InitializeDense(
      const std::string& tensor, int64_t row_begin,
      absl::Span<const float> values);

  // Embedding tables. Every id must belong to this shard. A push creates the
  // rows it updates (with the table's initializer, then applies the
  // gradient); a pull never creates a row: a row never pushed reads as its
  // initial values, a pure function of spec and id, so reading costs no
  // memory. Repeated ids in a push have their gradients summed, as a dense
  // gradient of the table would.
  //
  // A table's memory policy (v1::MemoryPolicy) changes that: a new id's
  // pushes are dropped (and counted) until its admit_after_pushes-th, which
  // creates the row; a push that would hold more than max_rows rows first
  // evicts (deletes) the least recently updated other rows, approximately;
  // ExpireRows deletes rows not updated for expire_after_steps pushes to the
  // table or expire_after_seconds. A deleted row reads as its initial values
  // again, and its slot is reused by a later row.
  absl::StatusOr<PushResult> PushRows(const std::string& tensor,
                                      absl::Span<const uint64_t> ids,
                                      absl::Span<const float> grad);
  absl::StatusOr<int64_t> PullRows(const std::string& tensor,
                                   absl::Span<const uint64_t> ids,
                                   absl::Span<float> out);
  // PushRows / PullRows over several tables at once, all or nothing: every
  // table, size and id is checked (and, for a push, the memory its new rows
  // need and every gradient's finiteness) before any table changes, so a
  // failing call changes nothing. Tables are then applied (read) one after
  // another, each under its own lock: another request may see some of a
  // push's tables updated and not yet the rest. A table named twice is
  // InvalidArgument. With kSkip, one non-finite value drops the whole push.
  absl::StatusOr<TablesPushResult> PushTables(
      absl::Span<const TableRowsUpdate> tables);
  // Returns each table's version at the time of its copy.
  absl::StatusOr<std::vector<int64_t>> PullTables(
      absl::Span<const TableRowsRead> tables);

  // Deletes expired rows of the tables whose memory policy expires them,
  // scanning at most `max_slots_per_table` row slots of each (resuming where
  // the last call stopped), each table's lock held for a few thousand slots
  // at a time. Returns the rows deleted. The flusher calls it every cycle.
  int64_t ExpireRows(int64_t max_slots_per_table = int64_t{1} << 20)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The disk tier. `source` (not owned, outlives the store) holds the rows
  // the last successful flush wrote. Called once, after loading and before
  // serving; `rows_on_disk_only`: the load left rows on disk
  // (LoadOptions::rows false), so every table but those LoadsRowsEagerly
  // names reads rows missing from memory from `source` until FinishLoading
  // (LoadRows brings them in meanwhile). A tiered table (memory policy
  // EVICTION_DISK) reads them from `source` always, and keeps at most its
  // max_rows in memory:
  // - a pull or push reads the rows it misses with one batched
  //   RowSource::ReadRows per table (outside the table's lock) and keeps them
  //   in memory;
  // - rows over max_rows are evicted, approximately least recently used
  //   first; only rows the last flush wrote (clean) are evicted, so their
  //   newest values are on disk. A table whose rows are all dirty holds more
  //   than max_rows until the next flush writes them, which then evicts the
  //   excess (EvictFlushed).
  // A read that fails (an I/O error, DataLoss) fails the pull or push, which
  // changes nothing.
  void AttachDisk(RowSource* source, bool rows_on_disk_only)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Tables whose rows a load must restore before serving: those whose
  // memory policy deletes rows (expiry, or max_rows with EVICTION_DELETE),
  // as a deletion in memory must not be undone by reading the disk.
  bool LoadsRowsEagerly(const std::string& tensor) const;
  // Tables still reading rows missing from memory from disk that are not
  // tiered: what a background load (LoadRows, FinishLoading) is for.
  std::vector<std::string> LoadingTables() const ABSL_LOCKS_EXCLUDED(mu_);
  // Brings stored rows of a loading table into memory, skipping those
  // already there (memory is never older than disk). Returns the rows
  // loaded; ResourceExhausted (loading none of the batch) past the budget.
  absl::StatusOr<int64_t> LoadRows(const std::string& tensor,
                                   const StoredRowBatch& batch);
  // Every stored row of `tensor` is in memory: it stops reading the disk.
  void FinishLoading(const std::string& tensor);
  // True while `tensor` reads rows missing from memory from disk.
  bool ReadsDisk(const std::string& tensor) const;
  // After a successful flush: tiered tables over max_rows evict the rows it
  // wrote. Returns the rows evicted.
  int64_t EvictFlushed() ABSL_LOCKS_EXCLUDED(mu_);
  // True (once) after a push left a tiered table holding more than twice its
  // max_rows, or after the shard's budget refused a tiered table's new rows:
  // either way dirty rows a flush must write before they can go. The flusher
  // then flushes before its interval is up.
  bool TakeFlushRequest() { return wants_flush_.exchange(false); }

  // Every embedding table's policy counters, sorted by tensor name.
  std::vector<TablePolicyStats> PolicyStats() const ABSL_LOCKS_EXCLUDED(mu_);

  // The ids of every row held in memory (pushed or restored from disk, not
  // deleted), sorted.
  absl::StatusOr<std::vector<uint64_t>> RowIds(const std::string& tensor) const;

  // Reads up to `max_rows` (at least 1) of the rows held by table `tensor`,
  // in storage order, from `cursor` on: 0 for the first batch, then the
  // previous batch's `next`, until `done`. Each batch takes the table's lock
  // once, so a scan never holds the lock between batches and its memory is
  // one batch. Consistency of a scan: every row held when it began and still
  // held at its end is returned exactly once, with its values as of the
  // batch that returned it (whose `version` says when); a row created during
  // the scan may or may not be returned. Caveat: an id whose row is freed and
  // created again during a scan may be returned twice (once per row). A
  // cursor not from a batch of the same table reads a meaningless (but
  // safe) selection of its rows. Deleted rows' free slots (memory policies)
  // are skipped, not counted in `max_rows`: a batch of a table with many
  // free slots holds the lock for them too. NotFound / InvalidArgument
  // (wrong_kind) as Footprint.
  //
  // A table that reads the disk (ReadsDisk) is scanned on disk instead, in
  // ascending id order, each row with its values in memory where it is held
  // there (newer than disk): the caller flushes first, so that every row
  // held when the scan began is on disk. The cursor is then the next id.
  // Errors of the disk read as PullRows'.
  absl::StatusOr<RowScanBatch> ScanRows(const std::string& tensor,
                                        uint64_t cursor, int64_t max_rows);

  // Persistence. TakeDirty() copies what changed since the last call and
  // clears the marks; if writing it fails, MarkDirty() puts the marks back
  // (memory always holds the newest values, so nothing is lost).
  void TakeDirty(DirtySnapshot* out) ABSL_LOCKS_EXCLUDED(mu_);
  void MarkDirty(const DirtySnapshot& snapshot) ABSL_LOCKS_EXCLUDED(mu_);
  // After `snapshot`, the last TakeDirty's, was written successfully: the
  // initializations in it are on disk (InitializeResult::unpersisted becomes
  // false), and its rows of tiered tables may be evicted.
  void MarkPersisted(const DirtySnapshot& snapshot) ABSL_LOCKS_EXCLUDED(mu_);

  // Restores state read from disk into an already created tensor. The sizes
  // must match the spec (DataLoss otherwise: the disk disagrees with itself).
  absl::Status RestoreBlock(const std::string& tensor, int64_t block,
                            absl::Span<const float> values,
                            const std::vector<absl::Span<const float>>& slots);
  absl::Status RestoreRow(const std::string& tensor, uint64_t id, int64_t step,
                          absl::Span<const float> values);
  // `initialized`: the part's values were set by InitializeDense (dense
  // parts only; ignored for tables). `rows`: a table's rows in memory and on
  // disk as stored (-1: unknown, a directory from before the count; the
  // loader then counts them with RestoreRowCount).
  absl::Status RestoreVersion(const std::string& tensor, int64_t version,
                              int64_t step, bool initialized = false,
                              int64_t rows = -1);
  absl::Status RestoreRowCount(const std::string& tensor, int64_t rows);
  // Whether `tensor`'s stored row count is known (restored or counted).
  bool KnowsStoredRows(const std::string& tensor) const;

  // Sizes, for metrics. Cheap (atomics). parameter_bytes() and slot_bytes()
  // count 4 bytes per float held; table_overhead_bytes() is what the
  // embedding tables allocate beyond them (each row's id and step, the unused
  // rows of each table's newest chunk, dirty bits, the id index, and for
  // memory policies deleted rows' slots, the free list and the admission
  // sketch: see TableFootprint). memory_bytes() is their sum, what
  // max_memory_bytes limits.
  int64_t parameter_bytes() const { return parameter_bytes_.load(); }
  int64_t slot_bytes() const { return slot_bytes_.load(); }
  int64_t table_overhead_bytes() const { return table_overhead_bytes_.load(); }
  int64_t num_tensors() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t memory_bytes() const {
    return parameter_bytes() + slot_bytes() + table_overhead_bytes();
  }

  // The memory of embedding table `tensor`'s part. NotFound if none;
  // InvalidArgument (wrong_kind) for a dense tensor.
  absl::StatusOr<TableFootprint> Footprint(const std::string& tensor) const;

  // For tests: where row `id` of table `tensor` keeps its values, nullptr if
  // the row is not held (or no such table). Rows never move, so the address
  // stays the same for the life of the store. Caveat: only compare it;
  // reading through it races with pushes.
  const void* RowAddressForTesting(const std::string& tensor,
                                   uint64_t id) const;

 private:
  class DensePart;
  class EmbeddingPart;
  struct RowGrowth;

  absl::StatusOr<Part*> FindPart(absl::string_view tensor) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<DensePart*> FindDense(absl::string_view tensor) const;
  // The parts of a dense batch's ranges, each found, its range checked, and
  // named once.
  // (Range: DenseRangeUpdate or DenseRangeRead; defined in the .cc.)
  template <typename Range>
  absl::StatusOr<std::vector<DensePart*>> DenseBatchParts(
      absl::Span<const Range> ranges, const char* what) const;
  absl::StatusOr<EmbeddingPart*> FindEmbedding(absl::string_view tensor) const;
  // The table `tensor` with `ids` checked, and `floats` (ids x dim) checked
  // against `have`; `what` names the buffer in the error.
  absl::StatusOr<EmbeddingPart*> CheckTableRows(absl::string_view tensor,
                                                absl::Span<const uint64_t> ids,
                                                size_t have,
                                                const char* what) const;
  // Adds what a table's push or restore allocated to the sizes.
  void CountGrowth(const RowGrowth& growth);
  absl::Time Now() const;
  // ResourceExhausted if `more` (> 0) bytes would exceed max_memory_bytes.
  absl::Status CheckMemory(int64_t more, const std::string& what) const;

  // Tables reading the disk (tiered or loading), or all tables.
  std::vector<EmbeddingPart*> Tables(bool disk_only) const
      ABSL_LOCKS_EXCLUDED(mu_);

  const StoreOptions options_;
  std::atomic<int64_t> parameter_bytes_{0};
  std::atomic<int64_t> slot_bytes_{0};
  std::atomic<int64_t> table_overhead_bytes_{0};
  // AttachDisk's; tables created after it get it too.
  std::atomic<RowSource*> source_{nullptr};
  std::atomic<bool> wants_flush_{false};

  mutable absl::Mutex mu_;
  // Parts are created, never removed: a pointer found under mu_ stays valid.
  absl::flat_hash_map<std::string, std::unique_ptr<Part>> parts_
      ABSL_GUARDED_BY(mu_);
  // Specs of tensors with no part here, to detect conflicting re-registration.
  absl::flat_hash_map<std::string, v1::TensorSpec> remote_specs_
      ABSL_GUARDED_BY(mu_);
};

// The optimizer settings of a spec, with the proto's zero defaults resolved.
optim::OptimizerConfig ToOptimizerConfig(const v1::OptimizerConfig& config);

}  // namespace tessera

#endif  // TESSERA_PS_STORE_TENSOR_STORE_H_

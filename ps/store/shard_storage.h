#ifndef TESSERA_PS_STORE_SHARD_STORAGE_H_
#define TESSERA_PS_STORE_SHARD_STORAGE_H_

// A shard's RocksDB directory: tensor specs, parameter blocks, optimizer
// slots, embedding rows, part versions and coordinator state, each in a column
// family of its own. Updates reach it as one atomic write batch per flush.
//
// Writes are not attempted without room for them (Unavailable, "... bytes
// free"): after a failed append to its log, RocksDB 7.x may use that log
// writer again (facebook/rocksdb#12448), and the assertions of Debian's build
// turn that into an abort of the shard. Caveat: a write that fails for
// another reason (an I/O error) can still end that way.
//
// Thread-safe: RocksDB serializes writes; the methods may be called from any
// thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/tensor.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace tessera {

struct LoadStats {
  int64_t tensors = 0;
  int64_t blocks = 0;
  int64_t rows = 0;  // rows restored into the store
  int64_t bytes = 0;
  // With LoadOptions::rows false: RocksDB's estimate of the rows left on disk
  // ("rocksdb.estimate-num-keys" of the rows column family; deletions and
  // overwrites not yet compacted away make it inexact, usually high). Rows
  // are not counted exactly: walking their keys reads and checks every data
  // block of the column family (a ScanStoredRows walk takes a third of the
  // time of restoring the rows, bench/README.md). 0 when rows load.
  int64_t rows_skipped_estimate = 0;
};

struct LoadOptions {
  // Restore the embedding rows into the store. False leaves every row on
  // disk (for ReadRows and ScanStoredRows); specs, dense blocks, optimizer
  // slots and versions load as with true.
  bool rows = true;
};

class ShardStorage : public RowSource {
 public:
  // Opens `dir` for shard `shard_index` of `placement`, creating it when it
  // does not exist or is empty. Errors, all FailedPrecondition unless said:
  // - the directory holds files but no RocksDB database ("not a Tessera data
  //   directory"), or a RocksDB database without Tessera's identity record;
  // - the identity names another shard index or placement (resharding a data
  //   directory is not supported);
  // - DataLoss when RocksDB reports corruption;
  // - Unavailable when the directory is locked by another process.
  static absl::StatusOr<std::unique_ptr<ShardStorage>> Open(
      const std::string& dir, int shard_index,
      const v1::PlacementConfig& placement);

  ~ShardStorage();
  ShardStorage(const ShardStorage&) = delete;
  ShardStorage& operator=(const ShardStorage&) = delete;

  const std::string& dir() const { return dir_; }

  // For tests: called before every write with what is being written; a
  // non-OK status fails that write as a failing disk would. Set before use.
  using WriteFault = std::function<absl::Status(const std::string& what)>;
  void set_write_fault(WriteFault fault) { write_fault_ = std::move(fault); }

  // kMaxRowsPerCall (RowSource): 16384 rows of dim 64 with Adam are 12 MiB
  // of floats.
  // A ScanStoredRows batch also ends once it holds this many bytes of floats
  // (before max_rows for a large dim).
  static constexpr int64_t kMaxScanBytes = 64 << 20;

  // Loads everything stored into `store`, which must hold no tensors yet;
  // with `options.rows` false no embedding row is restored (tables are
  // created empty, their versions restored). DataLoss when stored values
  // disagree with their specs.
  // Caveat: a store loaded without rows pulls initial values for rows that
  // are on disk; the caller must read them with ReadRows.
  absl::StatusOr<LoadStats> LoadInto(TensorStore* store,
                                     const LoadOptions& options = {});

  // Reads the stored rows `ids` of embedding table `tensor` with one batched
  // RocksDB MultiGet: result[i] is id ids[i]'s row, nullopt if none is stored
  // (never written, or deleted). Sees the last successful Write. Errors:
  // - InvalidArgument for more than kMaxRowsPerCall ids;
  // - NotFound if no spec of `tensor` is stored (SaveSpecs), InvalidArgument
  //   if it is not an embedding table;
  // - DataLoss, naming the tensor and the id, for a stored value that is not
  //   8 bytes of step and dim x (1 + optimizer slots) floats, or a corrupt
  //   spec; other RocksDB errors as Open's. No partial result on error.
  absl::StatusOr<std::vector<std::optional<StoredRow>>> ReadRows(
      const std::string& tensor, absl::Span<const uint64_t> ids) override;

  // Returns the next stored rows of embedding table `tensor` in ascending id
  // order: those with ids after `start_after` (all, if nullopt), at most
  // `max_rows` of them and about kMaxScanBytes of floats. A walk of the whole
  // table passes each batch's next_start_after to the next call until done;
  // it holds one batch at a time, and each call's iterator is bounded to the
  // table's keys. A walk is not a snapshot: rows written between its calls
  // may or may not be seen. Errors as ReadRows', and InvalidArgument unless
  // 1 <= max_rows <= kMaxRowsPerCall; a malformed key is DataLoss.
  absl::StatusOr<StoredRowBatch> ScanStoredRows(
      const std::string& tensor, std::optional<uint64_t> start_after,
      int64_t max_rows) override;

  // Walks every stored row of `tensor` in ascending id order, calling `fn`
  // with each ScanStoredRows batch of at most `batch_rows` rows (one batch in
  // memory at a time); stops at the first error of the scan or of `fn`, and
  // returns it.
  absl::Status WalkStoredRows(
      const std::string& tensor, int64_t batch_rows,
      const std::function<absl::Status(const StoredRowBatch&)>& fn);

  // RocksDB's estimate of the bytes table `tensor`'s stored rows take on
  // disk (files and memtables; compression and overwrites not yet compacted
  // make it approximate). 0 on error.
  int64_t ApproximateRowBytes(const std::string& tensor);

  // Stores specs (synchronously: a created tensor survives a crash).
  absl::Status SaveSpecs(absl::Span<const v1::TensorSpec> specs);

  // Writes a snapshot as one atomic, synced batch; its deleted rows are
  // deleted (before its rows are written), so a later LoadInto never
  // restores them.
  absl::Status Write(const DirtySnapshot& snapshot);

  // Small records of other components (the coordinator's state), in a column
  // family of their own. Get returns nullopt when the key is absent.
  absl::Status PutRecord(const std::string& key, const std::string& value);
  absl::StatusOr<std::optional<std::string>> GetRecord(const std::string& key);

 private:
  ShardStorage(std::string dir, std::unique_ptr<rocksdb::DB> db,
               std::vector<rocksdb::ColumnFamilyHandle*> handles);

  // The size of one stored row of `tensor` (dim x (1 + slots) floats), from
  // its stored spec; errors as ReadRows'.
  absl::StatusOr<int64_t> StoredRowFloats(const std::string& tensor);

  // Writes `batch` synced, if the directory has room for it.
  absl::Status WriteSynced(rocksdb::WriteBatch* batch, const std::string& what);

  const std::string dir_;
  WriteFault write_fault_;
  std::unique_ptr<rocksdb::DB> db_;
  // In the order of kColumnFamilies in the .cc file; owned, destroyed before
  // db_.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace tessera

#endif  // TESSERA_PS_STORE_SHARD_STORAGE_H_

#ifndef TESSERA_PS_STORE_SHARD_STORAGE_H_
#define TESSERA_PS_STORE_SHARD_STORAGE_H_

// A shard's RocksDB directory: tensor specs, parameter blocks, optimizer
// slots, embedding rows, part versions and coordinator state, each in a column
// family of its own. Updates reach it as one atomic write batch per flush.
//
// A write that fails (disk full, I/O error) leaves the directory as it was
// before that write, and the next write first reopens the database: RocksDB
// 7.x may otherwise append to a log whose last append failed, which its
// assertions turn into an abort (facebook/rocksdb#12448).
//
// Thread-safe: RocksDB serializes writes; the methods may be called from any
// thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/ps.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace tessera {

struct LoadStats {
  int64_t tensors = 0;
  int64_t blocks = 0;
  int64_t rows = 0;
  int64_t bytes = 0;
};

class ShardStorage {
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

  // Loads everything stored into `store`, which must hold no tensors yet.
  // DataLoss when stored values disagree with their specs.
  absl::StatusOr<LoadStats> LoadInto(TensorStore* store);

  // Stores specs (synchronously: a created tensor survives a crash).
  absl::Status SaveSpecs(absl::Span<const v1::TensorSpec> specs);

  // Writes a snapshot as one atomic, synced batch.
  absl::Status Write(const DirtySnapshot& snapshot);

  // Small records of other components (the coordinator's state), in a column
  // family of their own. Get returns nullopt when the key is absent.
  absl::Status PutRecord(const std::string& key, const std::string& value);
  absl::StatusOr<std::optional<std::string>> GetRecord(const std::string& key);

 private:
  ShardStorage(std::string dir, std::unique_ptr<rocksdb::DB> db,
               std::vector<rocksdb::ColumnFamilyHandle*> handles);

  // Opens the database in `dir` (creating it when `create`).
  static absl::Status OpenDb(
      const std::string& dir, bool create, std::unique_ptr<rocksdb::DB>* db,
      std::vector<rocksdb::ColumnFamilyHandle*>* handles);
  // Reopens the database if a write failed since it was opened.
  absl::Status ReopenIfWriteFailed() ABSL_LOCKS_EXCLUDED(mu_);
  void CloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `batch` synced; a failure marks the database for reopening.
  absl::Status WriteSynced(rocksdb::WriteBatch* batch, const std::string& what)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::string dir_;
  std::atomic<bool> write_failed_{false};
  // Shared by every use of the database, exclusive to reopen it.
  absl::Mutex mu_;
  // Null while a failed write's reopen has not succeeded.
  std::unique_ptr<rocksdb::DB> db_ ABSL_GUARDED_BY(mu_);
  // In the order of kColumnFamilies in the .cc file; owned, destroyed before
  // db_.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera

#endif  // TESSERA_PS_STORE_SHARD_STORAGE_H_

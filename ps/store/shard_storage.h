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

  // For tests: called before every write with what is being written; a
  // non-OK status fails that write as a failing disk would. Set before use.
  using WriteFault = std::function<absl::Status(const std::string& what)>;
  void set_write_fault(WriteFault fault) { write_fault_ = std::move(fault); }

  // Loads everything stored into `store`, which must hold no tensors yet.
  // DataLoss when stored values disagree with their specs.
  absl::StatusOr<LoadStats> LoadInto(TensorStore* store);

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

#include "ps/store/shard_storage.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "ps/common/status_macros.h"
#include "ps/optim/optimizer.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/write_batch.h"
#include "tessera/v1/storage.pb.h"

namespace tessera {
namespace {

constexpr uint32_t kFormatVersion = 1;
constexpr char kIdentityKey[] = "tessera/identity";

// Bytes free on the file system of `dir`; the maximum if it cannot be told.
uint64_t FreeBytes(const std::string& dir) {
  struct statvfs fs {};
  if (statvfs(dir.c_str(), &fs) != 0) return ~uint64_t{0};
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

// Column families, in the order of ShardStorage::handles_.
enum Cf { kDefault, kSpecs, kParams, kSlots, kRows, kVersions, kRecords };
constexpr const char* kColumnFamilies[] = {
    "default", "specs", "params", "slots", "rows", "versions", "records"};
constexpr int kNumColumnFamilies = 7;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::UnavailableError(msg);
  }
  if (s.IsIOError()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

void AppendBigEndian(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t ReadBigEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// name \0 be64(index) [slot byte]
std::string BlockKey(const std::string& tensor, uint64_t index) {
  std::string key = tensor;
  key.push_back('\0');
  AppendBigEndian(&key, index);
  return key;
}

bool ParseBlockKey(const rocksdb::Slice& key, std::string* tensor,
                   uint64_t* index) {
  const char* nul =
      static_cast<const char*>(memchr(key.data(), '\0', key.size()));
  if (nul == nullptr) return false;
  const size_t name_len = nul - key.data();
  if (key.size() < name_len + 9) return false;
  tensor->assign(key.data(), name_len);
  *index = ReadBigEndian(nul + 1);
  return true;
}

rocksdb::Slice FloatSlice(const std::vector<float>& v) {
  return rocksdb::Slice(reinterpret_cast<const char*>(v.data()),
                        v.size() * sizeof(float));
}

// The floats of a value read from RocksDB, copied: a Slice carries no
// alignment promise. DataLoss if its size is not whole floats.
absl::StatusOr<std::vector<float>> Floats(const rocksdb::Slice& s,
                                          absl::string_view what) {
  if (s.size() % sizeof(float) != 0) {
    return absl::DataLossError(
        absl::StrCat(what, " of ", s.size(), " bytes is not whole float32s"));
  }
  std::vector<float> out(s.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// A stored row's value: 8 bytes of step (host order, as Write stores it),
// then `floats` floats. DataLoss naming the row otherwise.
absl::StatusOr<StoredRow> DecodeRow(const rocksdb::Slice& value, int64_t floats,
                                    const std::string& tensor, uint64_t id) {
  const uint64_t want = 8 + static_cast<uint64_t>(floats) * sizeof(float);
  if (value.size() != want) {
    return absl::DataLossError(absl::StrCat(
        "stored row ", id, " of ", tensor, " is corrupt: ", value.size(),
        " bytes, expected ", want, " (8 of step, ", floats, " floats)"));
  }
  StoredRow row;
  std::memcpy(&row.step, value.data(), 8);
  row.values.resize(floats);
  if (floats > 0) std::memcpy(row.values.data(), value.data() + 8, want - 8);
  return row;
}

bool DirHasFiles(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return false;
  return std::filesystem::directory_iterator(dir, ec) !=
         std::filesystem::directory_iterator();
}

}  // namespace

ShardStorage::ShardStorage(std::string dir, std::unique_ptr<rocksdb::DB> db,
                           std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : dir_(std::move(dir)), db_(std::move(db)), handles_(std::move(handles)) {}

ShardStorage::~ShardStorage() {
  // Memtables go to table files now, so the next start-up has no log to
  // replay (up to a memtable per column family: seconds, bench/startup_bench).
  // Skipped without room on the disk, where a failed write could abort
  // (see the header).
  uint64_t memtables = 0;
  db_->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
  if (FreeBytes(dir_) > 2 * memtables + (1 << 20)) {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    db_->Flush(flush, handles_).PermitUncheckedError();
  }
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

absl::Status ShardStorage::WriteSynced(rocksdb::WriteBatch* batch,
                                       const std::string& what) {
  if (write_fault_) {
    absl::Status fault = write_fault_(what);
    if (!fault.ok()) return fault;
  }
  // Room for the log record, twice over, and a margin for RocksDB's own
  // files. Racy (others may fill the disk meanwhile), but it keeps a full
  // disk from reaching RocksDB's failed-append path.
  const uint64_t need = 2 * batch->GetDataSize() + (1 << 20);
  const uint64_t free = FreeBytes(dir_);
  if (free < need) {
    return absl::UnavailableError(
        absl::StrCat(what, ": not attempted, the disk is full (", free,
                     " bytes free, the write needs ", need, ")"));
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(db_->Write(sync, batch), what);
}

absl::StatusOr<std::unique_ptr<ShardStorage>> ShardStorage::Open(
    const std::string& dir, int shard_index,
    const v1::PlacementConfig& placement) {
  const bool existing = DirHasFiles(dir);
  std::error_code ec;
  if (existing && !std::filesystem::exists(dir + "/CURRENT", ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir,
        " holds files but no RocksDB database: not a Tessera data directory; "
        "point --data_dir at an empty or Tessera directory"));
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data directory ", dir, ": ", ec.message()));
  }

  rocksdb::DBOptions options;
  options.create_if_missing = !existing;
  options.create_missing_column_families = !existing;
  options.paranoid_checks = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 3;
  // The log holds every write since the oldest memtable any column family
  // has not written to a table file; the small column families (versions,
  // specs) would keep gigabytes of it alive, all replayed by the restart
  // after a crash (4.5 s at 1 GB of rows, bench/startup_bench, 2.8 s with
  // this). Past this size RocksDB writes the memtables that hold it back.
  // What remains to replay is the last flushes' batches (each flush is one
  // batch: bounded by the rows updated per flush interval, not by the
  // tables).
  options.max_total_wal_size = 64 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : kColumnFamilies) {
    rocksdb::ColumnFamilyOptions cf;
    cf.OptimizeForPointLookup(64);
    families.emplace_back(name, cf);
  }
  if (existing) {
    // An existing database must have exactly our column families.
    std::vector<std::string> names;
    rocksdb::Status listed =
        rocksdb::DB::ListColumnFamilies(options, dir, &names);
    if (!listed.ok()) return FromRocks(listed, "reading " + dir);
    if (names.size() != kNumColumnFamilies) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", dir,
          " holds a RocksDB database that is not Tessera's (column families: ",
          names.size(), ")"));
    }
  }
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, families, &handles, &raw);
  if (!s.ok()) return FromRocks(s, "opening RocksDB in " + dir);
  std::unique_ptr<ShardStorage> storage(
      new ShardStorage(dir, std::unique_ptr<rocksdb::DB>(raw), handles));

  v1::StorageIdentity wanted;
  wanted.set_format_version(kFormatVersion);
  wanted.set_shard_index(shard_index);
  *wanted.mutable_placement() = placement;
  std::string value;
  s = raw->Get(rocksdb::ReadOptions(), handles[kDefault], kIdentityKey, &value);
  if (s.IsNotFound()) {
    if (existing) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", dir,
          " holds a RocksDB database without Tessera's identity record"));
    }
    wanted.set_created_unix_ms(absl::ToUnixMillis(absl::Now()));
    rocksdb::WriteOptions sync;
    sync.sync = true;
    s = raw->Put(sync, handles[kDefault], kIdentityKey,
                 wanted.SerializeAsString());
    if (!s.ok()) return FromRocks(s, "writing identity to " + dir);
    return storage;
  }
  if (!s.ok()) return FromRocks(s, "reading identity from " + dir);
  v1::StorageIdentity found;
  if (!found.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("identity record in ", dir, " is corrupt"));
  }
  if (found.format_version() != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir, " has format version ", found.format_version(),
        "; this binary reads ", kFormatVersion));
  }
  if (found.shard_index() != shard_index ||
      !google::protobuf::util::MessageDifferencer::Equals(found.placement(),
                                                          placement)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir, " belongs to shard ", found.shard_index(),
        " of {", found.placement().ShortDebugString(), "}, but this is shard ",
        shard_index, " of {", placement.ShortDebugString(),
        "}; resharding a data directory is not supported"));
  }
  return storage;
}

absl::StatusOr<LoadStats> ShardStorage::LoadInto(TensorStore* store,
                                                 const LoadOptions& options) {
  LoadStats stats;
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  read.fill_cache = false;

  std::vector<v1::TensorSpec> specs;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read, handles_[kSpecs]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      v1::TensorSpec spec;
      if (!spec.ParseFromArray(it->value().data(), it->value().size())) {
        return absl::DataLossError(absl::StrCat(
            "stored spec of ", it->key().ToString(), " is corrupt"));
      }
      specs.push_back(std::move(spec));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading specs");
  }
  auto created = store->CreateTensors(specs);
  if (!created.ok()) {
    return absl::DataLossError(absl::StrCat("stored specs are inconsistent: ",
                                            created.status().message()));
  }
  stats.tensors = created->created;

  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read, handles_[kParams]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string tensor;
      uint64_t block;
      if (!ParseBlockKey(it->key(), &tensor, &block)) {
        return absl::DataLossError("malformed parameter key");
      }
      std::vector<std::string> slot_values;
      // No optimizer has more than a few slots; a corrupt directory may claim
      // any number (and the slot byte would wrap at 256).
      constexpr int kMaxSlots = 16;
      for (int slot = 0; slot <= kMaxSlots; ++slot) {
        std::string key = BlockKey(tensor, block);
        key.push_back(static_cast<char>(slot));
        std::string value;
        rocksdb::Status s = db_->Get(read, handles_[kSlots], key, &value);
        if (s.IsNotFound()) break;
        if (!s.ok()) return FromRocks(s, "reading optimizer slots");
        slot_values.push_back(std::move(value));
      }
      std::vector<std::vector<float>> slot_floats;
      for (const auto& v : slot_values) {
        auto floats = Floats(v, "stored optimizer slot of " + tensor);
        if (!floats.ok()) return floats.status();
        slot_floats.push_back(*std::move(floats));
      }
      std::vector<absl::Span<const float>> slots(slot_floats.begin(),
                                                 slot_floats.end());
      auto values = Floats(it->value(), "stored block of " + tensor);
      if (!values.ok()) return values.status();
      absl::Status restored = store->RestoreBlock(
          tensor, static_cast<int64_t>(block), *values, slots);
      if (!restored.ok()) return restored;
      ++stats.blocks;
      stats.bytes += it->value().size() * (1 + slots.size());
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading params");
  }
  if (!options.rows) {
    uint64_t keys = 0;
    if (db_->GetIntProperty(handles_[kRows], "rocksdb.estimate-num-keys",
                            &keys)) {
      stats.rows_skipped_estimate = static_cast<int64_t>(keys);
    }
    // Tables whose memory policy deletes rows load them all the same (a
    // deletion in memory must not be undone by a later read of the disk).
    for (const v1::TensorSpec& spec : specs) {
      if (spec.kind() != v1::TensorSpec::EMBEDDING ||
          !store->LoadsRowsEagerly(spec.name())) {
        continue;
      }
      TESSERA_RETURN_IF_ERROR(WalkStoredRows(
          spec.name(), kMaxRowsPerCall,
          [&](const StoredRowBatch& batch) -> absl::Status {
            for (const auto& [id, row] : batch.rows) {
              TESSERA_RETURN_IF_ERROR(
                  store->RestoreRow(spec.name(), id, row.step, row.values));
              ++stats.rows;
              stats.bytes += 8 + row.values.size() * sizeof(float);
            }
            return absl::OkStatus();
          }));
    }
  } else {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read, handles_[kRows]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string tensor;
      uint64_t id;
      const rocksdb::Slice value = it->value();
      if (!ParseBlockKey(it->key(), &tensor, &id) || value.size() < 8) {
        return absl::DataLossError("malformed embedding row record");
      }
      int64_t step;
      std::memcpy(&step, value.data(), 8);
      auto floats = Floats(rocksdb::Slice(value.data() + 8, value.size() - 8),
                           "stored row of " + tensor);
      if (!floats.ok()) return floats.status();
      absl::Status restored = store->RestoreRow(tensor, id, step, *floats);
      if (!restored.ok()) return restored;
      ++stats.rows;
      stats.bytes += value.size();
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading rows");
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read, handles_[kVersions]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      v1::StoredVersion v;
      if (!v.ParseFromArray(it->value().data(), it->value().size())) {
        return absl::DataLossError("malformed version record");
      }
      absl::Status restored =
          store->RestoreVersion(it->key().ToString(), v.version(), v.step(),
                                v.initialized(), v.has_rows() ? v.rows() : -1);
      if (!restored.ok()) return restored;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading versions");
  }
  if (!options.rows) {
    // Tables whose rows stay on disk need their count (TensorPartInfo's
    // num_rows); a directory written before the version records held it
    // is counted once, by a walk of the table's rows.
    for (const v1::TensorSpec& spec : specs) {
      if (spec.kind() != v1::TensorSpec::EMBEDDING ||
          store->LoadsRowsEagerly(spec.name()) ||
          store->KnowsStoredRows(spec.name())) {
        continue;
      }
      int64_t rows = 0;
      TESSERA_RETURN_IF_ERROR(WalkStoredRows(spec.name(), kMaxRowsPerCall,
                                             [&](const StoredRowBatch& batch) {
                                               rows += batch.rows.size();
                                               return absl::OkStatus();
                                             }));
      TESSERA_RETURN_IF_ERROR(store->RestoreRowCount(spec.name(), rows));
    }
  }
  return stats;
}

absl::StatusOr<int64_t> ShardStorage::StoredRowFloats(
    const std::string& tensor) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), handles_[kSpecs], tensor, &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("no spec of tensor ", tensor, " is stored in ", dir_));
  }
  if (!s.ok()) return FromRocks(s, "reading the spec of " + tensor);
  v1::TensorSpec spec;
  if (!spec.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("stored spec of ", tensor, " is corrupt"));
  }
  if (spec.kind() != v1::TensorSpec::EMBEDDING) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", tensor, " is not an embedding table"));
  }
  auto optimizer = optim::NewOptimizer(ToOptimizerConfig(spec.optimizer()));
  // The spec was validated before it was stored: a bad one is corrupt. The
  // dim bound keeps dim x (1 + slots) x 4 far from overflowing.
  constexpr int64_t kMaxDim = int64_t{1} << 24;
  if (!optimizer.ok() || spec.shape_size() != 2 || spec.shape(1) < 1 ||
      spec.shape(1) > kMaxDim) {
    return absl::DataLossError(absl::StrCat("stored spec of ", tensor,
                                            " is corrupt: {",
                                            spec.ShortDebugString(), "}"));
  }
  return spec.shape(1) * (1 + (*optimizer)->num_slots());
}

absl::StatusOr<std::vector<std::optional<StoredRow>>> ShardStorage::ReadRows(
    const std::string& tensor, absl::Span<const uint64_t> ids) {
  if (static_cast<int64_t>(ids.size()) > kMaxRowsPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("reading ", ids.size(), " rows of ", tensor, ": at most ",
                     kMaxRowsPerCall, " per call"));
  }
  auto floats = StoredRowFloats(tensor);
  if (!floats.ok()) return floats.status();
  std::vector<std::optional<StoredRow>> out(ids.size());
  if (ids.empty()) return out;

  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (uint64_t id : ids) keys.push_back(BlockKey(tensor, id));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(ids.size());
  std::vector<rocksdb::Status> statuses(ids.size());
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  db_->MultiGet(read, handles_[kRows], ids.size(), slices.data(), values.data(),
                statuses.data(), /*sorted_input=*/false);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) {
      return FromRocks(statuses[i],
                       absl::StrCat("reading row ", ids[i], " of ", tensor));
    }
    auto row = DecodeRow(values[i], *floats, tensor, ids[i]);
    if (!row.ok()) return row.status();
    out[i] = *std::move(row);
  }
  return out;
}

absl::Status ShardStorage::WalkStoredRows(
    const std::string& tensor, int64_t batch_rows,
    const std::function<absl::Status(const StoredRowBatch&)>& fn) {
  std::optional<uint64_t> after;
  for (;;) {
    auto batch = ScanStoredRows(tensor, after, batch_rows);
    if (!batch.ok()) return batch.status();
    TESSERA_RETURN_IF_ERROR(fn(*batch));
    if (batch->done) return absl::OkStatus();
    after = batch->next_start_after;
  }
}

int64_t ShardStorage::ApproximateRowBytes(const std::string& tensor) {
  std::string begin = tensor;
  begin.push_back('\0');
  std::string end = tensor;
  end.push_back('\1');
  rocksdb::Range range(begin, end);
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  uint64_t size = 0;
  rocksdb::Status s =
      db_->GetApproximateSizes(options, handles_[kRows], &range, 1, &size);
  return s.ok() ? static_cast<int64_t>(size) : 0;
}

absl::StatusOr<StoredRowBatch> ShardStorage::ScanStoredRows(
    const std::string& tensor, std::optional<uint64_t> start_after,
    int64_t max_rows) {
  if (max_rows < 1 || max_rows > kMaxRowsPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("scanning rows of ", tensor, ": max_rows ", max_rows,
                     " is not in [1, ", kMaxRowsPerCall, "]"));
  }
  auto floats = StoredRowFloats(tensor);
  if (!floats.ok()) return floats.status();

  // The table's keys are `tensor` \0 be64(id): all below `tensor` \1, as
  // names hold no NUL.
  std::string prefix = tensor;
  prefix.push_back('\0');
  std::string upper = tensor;
  upper.push_back('\1');
  const rocksdb::Slice upper_bound(upper);
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  read.fill_cache = false;  // a walk would evict the rows ReadRows reuses
  read.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(read, handles_[kRows]));

  StoredRowBatch batch;
  batch.next_start_after = start_after;
  if (start_after.has_value()) {
    const std::string from = BlockKey(tensor, *start_after);
    it->Seek(from);
    if (it->Valid() && it->key() == rocksdb::Slice(from)) it->Next();
  } else {
    it->Seek(prefix);
  }
  int64_t bytes = 0;
  for (; it->Valid(); it->Next()) {
    if (static_cast<int64_t>(batch.rows.size()) >= max_rows ||
        bytes >= kMaxScanBytes) {
      break;
    }
    const rocksdb::Slice key = it->key();
    if (key.size() != prefix.size() + 8 || !key.starts_with(prefix)) {
      return absl::DataLossError(
          absl::StrCat("malformed key of a stored row of ", tensor));
    }
    const uint64_t id = ReadBigEndian(key.data() + prefix.size());
    auto row = DecodeRow(it->value(), *floats, tensor, id);
    if (!row.ok()) return row.status();
    bytes += it->value().size();
    batch.rows.emplace_back(id, *std::move(row));
    batch.next_start_after = id;
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), "scanning rows of " + tensor);
  }
  batch.done = !it->Valid();
  return batch;
}

absl::Status ShardStorage::SaveSpecs(absl::Span<const v1::TensorSpec> specs) {
  rocksdb::WriteBatch batch;
  for (const auto& spec : specs) {
    batch.Put(handles_[kSpecs], spec.name(), spec.SerializeAsString());
  }
  return WriteSynced(&batch, "writing specs to " + dir_);
}

absl::Status ShardStorage::Write(const DirtySnapshot& snapshot) {
  rocksdb::WriteBatch batch;
  for (const auto& block : snapshot.blocks) {
    const std::string key = BlockKey(block.tensor, block.block);
    batch.Put(handles_[kParams], key, FloatSlice(block.values));
    for (size_t s = 0; s < block.slots.size(); ++s) {
      std::string slot_key = key;
      slot_key.push_back(static_cast<char>(s));
      batch.Put(handles_[kSlots], slot_key, FloatSlice(block.slots[s]));
    }
  }
  // Deletions before rows: a row deleted and created again since the last
  // flush is in both, and must stay.
  for (const auto& row : snapshot.deleted_rows) {
    batch.Delete(handles_[kRows], BlockKey(row.tensor, row.id));
  }
  for (const auto& row : snapshot.rows) {
    std::string value(8 + row.values.size() * sizeof(float), '\0');
    std::memcpy(value.data(), &row.step, 8);
    std::memcpy(value.data() + 8, row.values.data(),
                row.values.size() * sizeof(float));
    batch.Put(handles_[kRows], BlockKey(row.tensor, row.id), value);
  }
  for (const auto& v : snapshot.versions) {
    v1::StoredVersion stored;
    stored.set_version(v.version);
    stored.set_step(v.step);
    stored.set_initialized(v.initialized);
    if (v.rows >= 0) stored.set_rows(v.rows);
    batch.Put(handles_[kVersions], v.tensor, stored.SerializeAsString());
  }
  return WriteSynced(&batch, "flushing to " + dir_);
}

absl::Status ShardStorage::PutRecord(const std::string& key,
                                     const std::string& value) {
  rocksdb::WriteBatch batch;
  batch.Put(handles_[kRecords], key, value);
  return WriteSynced(&batch, "writing record " + key);
}

absl::StatusOr<std::optional<std::string>> ShardStorage::GetRecord(
    const std::string& key) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), handles_[kRecords], key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "reading record " + key);
  return std::optional<std::string>(std::move(value));
}

}  // namespace tessera

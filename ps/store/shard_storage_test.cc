#include "ps/store/shard_storage.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "ps/store/flusher.h"
#include "rocksdb/db.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::TensorSpec AdamTensor(const std::string& name, std::vector<int64_t> shape,
                          bool embedding = false) {
  v1::TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  if (embedding) spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(0.1f);
  spec.mutable_initializer()->set_seed(3);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  return spec;
}

class ShardStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    options_.shard_index = 0;
    options_.placement.set_num_shards(1);
    options_.placement.set_split_threshold_bytes(1 << 20);
    options_.block_floats = 16;
  }

  // Pushes `n` deterministic gradients to both tensors.
  void Train(TensorStore* store, int n, int offset) {
    for (int i = 0; i < n; ++i) {
      std::vector<float> grad(40);
      for (size_t j = 0; j < grad.size(); ++j) {
        grad[j] = 0.01f * ((i + offset) * 7 + j) - 0.2f;
      }
      ASSERT_THAT(store->PushDense("w", 0, grad), IsOk());
      std::vector<uint64_t> ids = {static_cast<uint64_t>(i % 3), 99};
      std::vector<float> rows = {grad[0], grad[1], grad[2], grad[3]};
      ASSERT_THAT(store->PushRows("e", ids, rows), IsOk());
    }
  }

  std::vector<float> Values(TensorStore* store) {
    std::vector<float> out(40 + 8);
    EXPECT_THAT(store->PullDense("w", 0, absl::MakeSpan(out.data(), 40)),
                IsOk());
    std::vector<uint64_t> ids = {0, 1, 2, 99};
    EXPECT_THAT(store->PullRows("e", ids, absl::MakeSpan(out.data() + 40, 8)),
                IsOk());
    return out;
  }

  std::string dir_;
  StoreOptions options_;
  const std::vector<v1::TensorSpec> specs_ = {AdamTensor("w", {10, 4}),
                                              AdamTensor("e", {0, 2}, true)};
};

TEST_F(ShardStorageTest, ReopenRestoresLastFlushBitForBit) {
  std::vector<float> flushed;
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    TensorStore store(options_);
    ASSERT_THAT(store.CreateTensors(specs_), IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
    Train(&store, 5, 0);
    Flusher flusher(&store, storage->get(), absl::ZeroDuration());
    ASSERT_THAT(flusher.FlushNow(), IsOk());
    EXPECT_EQ(flusher.stats().flushes, 1);
    flushed = Values(&store);
    Train(&store, 3, 5);  // Lost: never flushed.
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  auto loaded = (*storage)->LoadInto(&store);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->tensors, 2);
  EXPECT_EQ(loaded->rows, 4);
  EXPECT_EQ(Values(&store), flushed);
  EXPECT_EQ(store.Describe("w")->version(), 5);
  EXPECT_EQ(store.Describe("e")->version(), 5);
}

TEST_F(ShardStorageTest, ExpiredAndEvictedRowsStayGoneAfterReopen) {
  v1::TensorSpec spec = AdamTensor("p", {0, 2}, true);
  spec.mutable_memory_policy()->set_expire_after_steps(2);
  spec.mutable_memory_policy()->set_max_rows(3);
  const std::vector<v1::TensorSpec> specs = {spec};
  const std::vector<float> grad = {0.5f, -0.5f};
  std::vector<float> kept(2);
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    TensorStore store(options_);
    ASSERT_THAT(store.CreateTensors(specs), IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs), IsOk());
    Flusher flusher(&store, storage->get(), absl::ZeroDuration());
    for (uint64_t id : {1, 2, 3}) {
      ASSERT_THAT(store.PushRows("p", {id}, grad), IsOk());
    }
    ASSERT_THAT(flusher.FlushNow(), IsOk());  // rows 1 (expired), 2, 3 on disk
    EXPECT_THAT(store.RowIds("p"), IsOkAndHolds(::testing::ElementsAre(2, 3)));
    ASSERT_THAT(store.PushRows("p", {2}, grad), IsOk());  // version 4
    ASSERT_THAT(store.PushRows("p", {4, 5}, {1, 1, 1, 1}), IsOk());  // evicts 3
    ASSERT_THAT(store.PushRows("p", {3}, grad), IsOk());  // 3 again, evicts 2
    ASSERT_THAT(flusher.FlushNow(), IsOk());
    EXPECT_THAT(store.RowIds("p"),
                IsOkAndHolds(::testing::ElementsAre(3, 4, 5)));
    ASSERT_THAT(store.PullRows("p", {3}, absl::MakeSpan(kept)), IsOk());
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  auto loaded = (*storage)->LoadInto(&store);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->rows, 3);
  EXPECT_THAT(store.RowIds("p"), IsOkAndHolds(::testing::ElementsAre(3, 4, 5)));
  std::vector<float> restored(2);
  ASSERT_THAT(store.PullRows("p", {3}, absl::MakeSpan(restored)), IsOk());
  EXPECT_EQ(restored, kept);  // the row created again, not the evicted one
  // Restored rows get a fresh lease: the first sweep after the restart does
  // not expire them, however old they were.
  EXPECT_EQ(store.ExpireRows(), 0);
  EXPECT_THAT(store.RowIds("p"), IsOkAndHolds(::testing::ElementsAre(3, 4, 5)));
}

TEST_F(ShardStorageTest, TrainingContinuesExactlyAsIfNeverStopped) {
  // Optimizer slots and steps are persisted: 5 + 5 steps with a restart in
  // between equal 10 steps in one go.
  TensorStore reference(options_);
  ASSERT_THAT(reference.CreateTensors(specs_), IsOk());
  Train(&reference, 5, 0);
  Train(&reference, 5, 5);
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    TensorStore store(options_);
    ASSERT_THAT(store.CreateTensors(specs_), IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
    Train(&store, 5, 0);
    Flusher flusher(&store, storage->get(), absl::ZeroDuration());
    ASSERT_THAT(flusher.FlushNow(), IsOk());
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  ASSERT_THAT((*storage)->LoadInto(&store), IsOk());
  Train(&store, 5, 5);
  EXPECT_EQ(Values(&store), Values(&reference));
}

TEST_F(ShardStorageTest, ForeignDirectoryIsAClearError) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/notes.txt") << "someone else's files";
  EXPECT_THAT(ShardStorage::Open(dir_, 0, options_.placement),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a Tessera data directory")));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/notes.txt"));
}

TEST_F(ShardStorageTest, DirectoryOfAnotherShardIsRefused) {
  ASSERT_THAT(ShardStorage::Open(dir_, 0, options_.placement), IsOk());
  EXPECT_THAT(ShardStorage::Open(dir_, 1, options_.placement),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("belongs to shard 0")));
  v1::PlacementConfig more = options_.placement;
  more.set_num_shards(2);
  EXPECT_THAT(
      ShardStorage::Open(dir_, 0, more),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("resharding")));
}

TEST_F(ShardStorageTest, CorruptDatabaseIsAnErrorNotAReset) {
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
  }
  // Overwrite every file RocksDB keeps with garbage of the same size.
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const std::string name = entry.path().filename();
    if (name.rfind("MANIFEST", 0) != 0) continue;
    const auto size = std::filesystem::file_size(entry.path());
    std::ofstream(entry.path(), std::ios::trunc) << std::string(size, 'x');
  }
  auto reopened = ShardStorage::Open(dir_, 0, options_.placement);
  EXPECT_THAT(reopened, ::testing::Not(IsOk()));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/CURRENT"));
}

TEST_F(ShardStorageTest, RecordsRoundTrip) {
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  EXPECT_THAT((*storage)->GetRecord("coordinator/state"),
              IsOkAndHolds(std::nullopt));
  ASSERT_THAT((*storage)->PutRecord("coordinator/state", "epoch 3"), IsOk());
  EXPECT_THAT((*storage)->GetRecord("coordinator/state"),
              IsOkAndHolds(std::optional<std::string>("epoch 3")));
}

TEST_F(ShardStorageTest, InitializationSurvivesReopenAndIsNotRepeated) {
  std::vector<float> init(40);
  for (size_t i = 0; i < init.size(); ++i) init[i] = 0.25f * i - 3;
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    TensorStore store(options_);
    ASSERT_THAT(store.CreateTensors(specs_), IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
    auto applied = store.InitializeDense("w", 0, init);
    ASSERT_THAT(applied, IsOk());
    ASSERT_TRUE(applied->applied);
    Flusher flusher(&store, storage->get(), absl::ZeroDuration());
    ASSERT_THAT(flusher.FlushNow(), IsOk());
    auto again = store.InitializeDense("w", 0, init);
    ASSERT_THAT(again, IsOk());
    EXPECT_FALSE(again->unpersisted);
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  ASSERT_THAT((*storage)->LoadInto(&store), IsOk());
  std::vector<float> out(40);
  EXPECT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOkAndHolds(1));
  EXPECT_EQ(out, init);
  auto second = store.InitializeDense("w", 0, std::vector<float>(40, 1.0f));
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->applied);
  EXPECT_FALSE(second->unpersisted);
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out, init);
}

TEST_F(ShardStorageTest, FailedFlushKeepsAnInitializationUnpersisted) {
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  bool fail = true;
  (*storage)->set_write_fault([&fail](const std::string&) {
    return fail ? absl::UnavailableError("disk full") : absl::OkStatus();
  });
  TensorStore store(options_);
  ASSERT_THAT(store.CreateTensors(specs_), IsOk());
  ASSERT_THAT(store.InitializeDense("w", 0, std::vector<float>(40, 2.0f)),
              IsOk());
  Flusher flusher(&store, storage->get(), absl::ZeroDuration());
  EXPECT_THAT(flusher.FlushNow(), StatusIs(absl::StatusCode::kUnavailable));
  auto after = store.InitializeDense("w", 0, std::vector<float>(40, 2.0f));
  ASSERT_THAT(after, IsOk());
  EXPECT_TRUE(after->unpersisted);
  fail = false;
  ASSERT_THAT(flusher.FlushNow(), IsOk());
  after = store.InitializeDense("w", 0, std::vector<float>(40, 2.0f));
  ASSERT_THAT(after, IsOk());
  EXPECT_FALSE(after->unpersisted);
}

// A row of `floats` floats and step `id` + 1, its values derived from `id`.
DirtySnapshot::Row MadeRow(const std::string& tensor, uint64_t id, int floats) {
  DirtySnapshot::Row row;
  row.tensor = tensor;
  row.id = id;
  row.step = static_cast<int64_t>(id % 1000) + 1;
  for (int i = 0; i < floats; ++i) {
    row.values.push_back(static_cast<float>(id % 997) * 0.5f + i);
  }
  return row;
}

StoredRow AsStored(const DirtySnapshot::Row& row) {
  return StoredRow{row.step, row.values};
}

// A snapshot holding only `rows`, for ShardStorage::Write.
DirtySnapshot RowsSnapshot(std::vector<DirtySnapshot::Row> rows) {
  DirtySnapshot snapshot;
  snapshot.rows = std::move(rows);
  return snapshot;
}

TEST_F(ShardStorageTest, ReadRowsReturnsFlushedRowsExactly) {
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  ASSERT_THAT(store.CreateTensors(specs_), IsOk());
  ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
  Train(&store, 5, 0);
  // The flush path's own snapshot: values and Adam's two slots of each row.
  DirtySnapshot snapshot;
  store.TakeDirty(&snapshot);
  ASSERT_EQ(snapshot.rows.size(), 4);
  ASSERT_THAT((*storage)->Write(snapshot), IsOk());

  std::vector<uint64_t> ids;
  for (const auto& row : snapshot.rows) ids.push_back(row.id);
  ids.push_back(7);       // never written
  ids.push_back(ids[0]);  // twice in one call
  auto read = (*storage)->ReadRows("e", ids);
  ASSERT_THAT(read, IsOk());
  ASSERT_EQ(read->size(), ids.size());
  for (size_t i = 0; i < snapshot.rows.size(); ++i) {
    ASSERT_TRUE((*read)[i].has_value()) << "id " << ids[i];
    EXPECT_EQ((*read)[i]->values.size(), 2 * 3);
    EXPECT_EQ(*(*read)[i], AsStored(snapshot.rows[i])) << "id " << ids[i];
    EXPECT_GT((*read)[i]->step, 0);
  }
  EXPECT_EQ((*read)[4], std::nullopt);
  EXPECT_EQ((*read)[5], (*read)[0]);
  EXPECT_THAT((*storage)->ReadRows("e", {}),
              IsOkAndHolds(::testing::IsEmpty()));
}

TEST_F(ShardStorageTest, ReadRowsDoesNotSeeDeletedRows) {
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
  ASSERT_THAT(
      (*storage)->Write(RowsSnapshot({MadeRow("e", 1, 6), MadeRow("e", 2, 6)})),
      IsOk());
  DirtySnapshot deleted;
  deleted.deleted_rows.push_back({"e", 1});
  ASSERT_THAT((*storage)->Write(deleted), IsOk());
  auto read = (*storage)->ReadRows("e", {1, 2});
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ((*read)[0], std::nullopt);
  EXPECT_EQ((*read)[1], AsStored(MadeRow("e", 2, 6)));
}

TEST_F(ShardStorageTest, ReadRowsBoundsIdsAndChecksTheTensor) {
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
  std::vector<uint64_t> ids(ShardStorage::kMaxRowsPerCall);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  auto all_missing = (*storage)->ReadRows("e", ids);
  ASSERT_THAT(all_missing, IsOk());
  EXPECT_EQ(all_missing->size(), ids.size());
  EXPECT_EQ(all_missing->front(), std::nullopt);
  ids.push_back(ids.size());
  EXPECT_THAT(
      (*storage)->ReadRows("e", ids),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 16384")));
  EXPECT_THAT((*storage)->ReadRows("nope", {1}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT((*storage)->ReadRows("w", {1}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not an embedding table")));
}

TEST_F(ShardStorageTest, CorruptRowsAreDataLossNamingTheRow) {
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
    // "e" is dim 2 with Adam: 6 floats a row. Row 5 has 5.
    ASSERT_THAT((*storage)->Write(
                    RowsSnapshot({MadeRow("e", 4, 6), MadeRow("e", 5, 5)})),
                IsOk());
  }
  {
    // Row 6: 3 bytes, shorter than its step, written behind Tessera's back.
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "specs", "params", "slots", "rows",
                             "versions", "records"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(options, dir_, families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string key = "e";
    key.push_back('\0');
    key.append(std::string(7, '\0'));
    key.push_back('\6');
    EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), handles[4], key, "abc").ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  EXPECT_THAT((*storage)->ReadRows("e", {4}),
              IsOkAndHolds(ElementsAre(AsStored(MadeRow("e", 4, 6)))));
  EXPECT_THAT((*storage)->ReadRows("e", {4, 5}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("stored row 5 of e is corrupt: 28 bytes")));
  EXPECT_THAT((*storage)->ReadRows("e", {6, 4}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("stored row 6 of e is corrupt: 3 bytes")));
  EXPECT_THAT(
      (*storage)->ScanStoredRows("e", std::nullopt, 10),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("stored row 5 of e")));
  auto first = (*storage)->ScanStoredRows("e", std::nullopt, 1);
  ASSERT_THAT(first, IsOk());  // row 4 alone is sound
  ASSERT_EQ(first->rows.size(), 1);
  EXPECT_FALSE(first->done);
}

TEST_F(ShardStorageTest, ScanWalksOneTableInBatchesAndNeverAnother) {
  // "e" between "d", "e.b" and "f" (keys "d\0..", "e\0..", "e.b\0..", "f\0..").
  std::vector<v1::TensorSpec> specs;
  for (const char* name : {"d", "e", "e.b", "f"}) {
    specs.push_back(AdamTensor(name, {0, 2}, true));
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  ASSERT_THAT((*storage)->SaveSpecs(specs), IsOk());
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const std::vector<uint64_t> e_ids = {0, 1, 255, 256, 1 << 20, kMax - 1, kMax};
  std::vector<DirtySnapshot::Row> rows;
  for (uint64_t id : e_ids) rows.push_back(MadeRow("e", id, 6));
  for (const char* other : {"d", "e.b", "f"}) {
    for (uint64_t id : {uint64_t{0}, uint64_t{2}, kMax}) {
      rows.push_back(MadeRow(other, id, 6));
    }
  }
  ASSERT_THAT((*storage)->Write(RowsSnapshot(rows)), IsOk());

  std::vector<uint64_t> seen;
  std::optional<uint64_t> start;
  int batches = 0;
  for (bool done = false; !done; ++batches) {
    ASSERT_LT(batches, 10);
    auto batch = (*storage)->ScanStoredRows("e", start, 3);
    ASSERT_THAT(batch, IsOk());
    EXPECT_LE(batch->rows.size(), 3);
    for (const auto& [id, row] : batch->rows) {
      seen.push_back(id);
      EXPECT_EQ(row, AsStored(MadeRow("e", id, 6))) << "id " << id;
    }
    ASSERT_TRUE(batch->next_start_after.has_value());
    EXPECT_EQ(*batch->next_start_after, seen.back());
    start = batch->next_start_after;
    done = batch->done;
  }
  EXPECT_EQ(seen, e_ids);
  EXPECT_EQ(batches, 3);  // 3 + 3 + 1

  // Exactly max_rows left: done is known without another call.
  auto last_three = (*storage)->ScanStoredRows("e", uint64_t{1 << 20}, 2);
  ASSERT_THAT(last_three, IsOk());
  EXPECT_EQ(last_three->rows.size(), 2);
  EXPECT_TRUE(last_three->done);
  // After the last id (UINT64_MAX): nothing, done, the start kept.
  auto after_end = (*storage)->ScanStoredRows("e", kMax, 5);
  ASSERT_THAT(after_end, IsOk());
  EXPECT_TRUE(after_end->rows.empty());
  EXPECT_TRUE(after_end->done);
  EXPECT_EQ(after_end->next_start_after, kMax);
  // From a start that is not stored.
  auto from_gap = (*storage)->ScanStoredRows("e", uint64_t{2}, 1);
  ASSERT_THAT(from_gap, IsOk());
  ASSERT_EQ(from_gap->rows.size(), 1);
  EXPECT_EQ(from_gap->rows[0].first, 255);

  // The first table, the last one, and one with no row at all.
  auto d = (*storage)->ScanStoredRows("d", std::nullopt, 100);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->rows.size(), 3);
  EXPECT_TRUE(d->done);
  auto f = (*storage)->ScanStoredRows("f", uint64_t{0}, 100);
  ASSERT_THAT(f, IsOk());
  ASSERT_EQ(f->rows.size(), 2);
  EXPECT_EQ(f->rows[1].first, kMax);
  ASSERT_THAT((*storage)->SaveSpecs({AdamTensor("empty", {0, 2}, true)}),
              IsOk());
  auto empty = (*storage)->ScanStoredRows("empty", std::nullopt, 100);
  ASSERT_THAT(empty, IsOk());
  EXPECT_TRUE(empty->rows.empty());
  EXPECT_TRUE(empty->done);
  EXPECT_EQ(empty->next_start_after, std::nullopt);

  EXPECT_THAT((*storage)->ScanStoredRows("e", std::nullopt, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*storage)->ScanStoredRows("e", std::nullopt,
                                         ShardStorage::kMaxRowsPerCall + 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*storage)->ScanStoredRows("nope", std::nullopt, 1),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ShardStorageTest, LoadWithoutRowsRestoresEverythingElse) {
  std::vector<float> flushed;
  DirtySnapshot written;
  {
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    TensorStore store(options_);
    ASSERT_THAT(store.CreateTensors(specs_), IsOk());
    ASSERT_THAT((*storage)->SaveSpecs(specs_), IsOk());
    ASSERT_THAT((*storage)->PutRecord("coordinator/state", "epoch 3"), IsOk());
    Train(&store, 5, 0);
    flushed = Values(&store);
    store.TakeDirty(&written);
    ASSERT_THAT((*storage)->Write(written), IsOk());
  }
  auto storage = ShardStorage::Open(dir_, 0, options_.placement);
  ASSERT_THAT(storage, IsOk());
  TensorStore store(options_);
  LoadOptions options;
  options.rows = false;
  auto loaded = (*storage)->LoadInto(&store, options);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->tensors, 2);
  EXPECT_GT(loaded->blocks, 0);
  EXPECT_EQ(loaded->rows, 0);
  EXPECT_EQ(loaded->rows_skipped_estimate, 4);
  // Dense values and optimizer state, versions: as a full load.
  std::vector<float> dense(40);
  EXPECT_THAT(store.PullDense("w", 0, absl::MakeSpan(dense)), IsOkAndHolds(5));
  EXPECT_EQ(dense, std::vector<float>(flushed.begin(), flushed.begin() + 40));
  EXPECT_EQ(store.Describe("w")->version(), 5);
  EXPECT_EQ(store.Describe("e")->version(), 5);
  // No row in memory; all of them on disk.
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(::testing::IsEmpty()));
  EXPECT_EQ(store.Describe("e")->num_rows(), 0);
  auto rows = (*storage)->ReadRows("e", {0, 1, 2, 99});
  ASSERT_THAT(rows, IsOk());
  for (size_t i = 0; i < rows->size(); ++i) {
    ASSERT_TRUE((*rows)[i].has_value());
    EXPECT_EQ(std::vector<float>((*rows)[i]->values.begin(),
                                 (*rows)[i]->values.begin() + 2),
              std::vector<float>(flushed.begin() + 40 + 2 * i,
                                 flushed.begin() + 42 + 2 * i));
  }
  EXPECT_THAT((*storage)->GetRecord("coordinator/state"),
              IsOkAndHolds(std::optional<std::string>("epoch 3")));

  // The default still restores the rows.
  TensorStore full(options_);
  auto all = (*storage)->LoadInto(&full);
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->rows, 4);
  EXPECT_EQ(all->rows_skipped_estimate, 0);
  EXPECT_EQ(Values(&full), flushed);
}

}  // namespace
}  // namespace tessera

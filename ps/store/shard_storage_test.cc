#include "ps/store/shard_storage.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "ps/store/flusher.h"

namespace tessera {
namespace {

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

}  // namespace
}  // namespace tessera

// The disk tier of embedding tables: a TensorStore over a real ShardStorage
// (RocksDB in the test's directory) with its Flusher, against a reference
// store that keeps every row in memory.

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "ps/store/flusher.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kDim = 4;

// A table of dim 4, unbounded ids, rows starting at 0.5; SGD (so a row's
// value is its start minus lr x the sum of its gradients, whatever their
// order) or Adagrad.
v1::TensorSpec Table(const std::string& name, bool adagrad = false) {
  v1::TensorSpec spec;
  spec.set_name(name);
  spec.add_shape(0);
  spec.add_shape(kDim);
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.mutable_initializer()->set_kind(v1::Initializer::CONSTANT);
  spec.mutable_initializer()->set_value(0.5f);
  spec.mutable_optimizer()->set_kind(adagrad ? v1::OptimizerConfig::ADAGRAD
                                             : v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(0.25f);
  return spec;
}

v1::TensorSpec Tiered(const std::string& name, int64_t max_rows,
                      bool adagrad = false) {
  v1::TensorSpec spec = Table(name, adagrad);
  spec.mutable_memory_policy()->set_max_rows(max_rows);
  spec.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  return spec;
}

// Gradient of push `p` for the i-th id: distinct, small, deterministic.
std::vector<float> Grad(size_t ids, int p) {
  std::vector<float> g(ids * kDim);
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = 0.01f * static_cast<float>((p * 31 + i * 7) % 17) - 0.08f;
  }
  return g;
}

// Forwards to a real storage, failing reads while `fail` is set.
class FailingSource : public RowSource {
 public:
  explicit FailingSource(RowSource* real) : real_(real) {}
  std::atomic<bool> fail{false};
  absl::StatusOr<std::vector<std::optional<StoredRow>>> ReadRows(
      const std::string& tensor, absl::Span<const uint64_t> ids) override {
    if (fail) return absl::UnavailableError("injected read error");
    return real_->ReadRows(tensor, ids);
  }
  absl::StatusOr<StoredRowBatch> ScanStoredRows(
      const std::string& tensor, std::optional<uint64_t> start_after,
      int64_t max_rows) override {
    if (fail) return absl::UnavailableError("injected read error");
    return real_->ScanStoredRows(tensor, start_after, max_rows);
  }

 private:
  RowSource* real_;
};

StoreOptions OneShard() {
  StoreOptions options;
  options.placement.set_num_shards(1);
  return options;
}

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    options_.placement.set_num_shards(1);
  }

  // Opens the directory into a new store as a shard does: rows left on disk,
  // the disk attached.
  void Open(const std::vector<v1::TensorSpec>& specs) {
    flusher_.reset();
    store_.reset();
    storage_.reset();
    auto storage = ShardStorage::Open(dir_, 0, options_.placement);
    ASSERT_THAT(storage, IsOk());
    storage_ = *std::move(storage);
    store_ = std::make_unique<TensorStore>(options_);
    LoadOptions load;
    load.rows = false;
    ASSERT_THAT(storage_->LoadInto(store_.get(), load), IsOk());
    if (!specs.empty()) {
      ASSERT_THAT(storage_->SaveSpecs(specs), IsOk());
      ASSERT_THAT(store_->CreateTensors(specs), IsOk());
    }
    store_->AttachDisk(storage_.get(), true);
    flusher_ = std::make_unique<Flusher>(store_.get(), storage_.get(),
                                         absl::ZeroDuration());
  }

  // Pushes the same gradients to `tensor` here and to the reference.
  void Push(const std::string& tensor, const std::vector<uint64_t>& ids,
            int p) {
    const std::vector<float> g = Grad(ids.size(), p);
    ASSERT_THAT(store_->PushRows(tensor, ids, g), IsOk());
    ASSERT_THAT(reference_.PushRows(tensor, ids, g), IsOk());
  }

  // Every row of `ids` pulls the same here as in the reference.
  void ExpectSameRows(const std::string& tensor,
                      const std::vector<uint64_t>& ids) {
    std::vector<float> got(ids.size() * kDim), want(ids.size() * kDim);
    ASSERT_THAT(store_->PullRows(tensor, ids, absl::MakeSpan(got)), IsOk());
    ASSERT_THAT(reference_.PullRows(tensor, ids, absl::MakeSpan(want)), IsOk());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t j = 0; j < kDim; ++j) {
        ASSERT_EQ(got[i * kDim + j], want[i * kDim + j])
            << "row " << ids[i] << " of " << tensor;
      }
    }
  }

  int64_t RowsInMemory(const std::string& tensor) {
    auto f = store_->Footprint(tensor);
    EXPECT_THAT(f, IsOk());
    return f.ok() ? f->rows : -1;
  }

  TablePolicyStats Stats(const std::string& tensor) {
    for (const TablePolicyStats& s : store_->PolicyStats()) {
      if (s.tensor == tensor) return s;
    }
    ADD_FAILURE() << "no table " << tensor;
    return {};
  }

  static std::vector<uint64_t> Range(uint64_t begin, uint64_t end) {
    std::vector<uint64_t> ids;
    for (uint64_t id = begin; id < end; ++id) ids.push_back(id);
    return ids;
  }

  std::string dir_;
  StoreOptions options_;
  std::unique_ptr<ShardStorage> storage_;
  std::unique_ptr<TensorStore> store_;
  std::unique_ptr<Flusher> flusher_;
  TensorStore reference_{OneShard()};
};

TEST_F(DiskTierTest, ATieredTableKeepsMaxRowsInMemoryAndReadsTheRestBack) {
  const v1::TensorSpec spec = Tiered("t", 100, /*adagrad=*/true);
  Open({spec});
  v1::TensorSpec plain = spec;
  plain.clear_memory_policy();
  ASSERT_THAT(reference_.CreateTensors({plain}), IsOk());
  const std::vector<uint64_t> all = Range(0, 1000);
  for (int p = 0; p < 10; ++p) {
    Push("t", Range(p * 100, p * 100 + 100), p);
    ASSERT_THAT(flusher_->FlushNow(), IsOk());
    EXPECT_LE(RowsInMemory("t"), 100) << "after push " << p;
  }
  ExpectSameRows("t", all);           // 900 of them read back from disk
  EXPECT_LE(RowsInMemory("t"), 100);  // and evicted again: they are clean
  // Every row again: each read back (with its Adagrad slot) and updated.
  for (int p = 0; p < 10; ++p) {
    Push("t", Range(p * 100, p * 100 + 100), 10 + p);
    ASSERT_THAT(flusher_->FlushNow(), IsOk());
  }
  ExpectSameRows("t", all);
  const TablePolicyStats s = Stats("t");
  EXPECT_EQ(s.total_rows, 1000);  // in memory and on disk
  auto info = store_->Describe("t");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->num_rows(), 1000);
  EXPECT_TRUE(s.tiered);
  EXPECT_TRUE(s.reads_disk);
  EXPECT_GT(s.evictions, 900);
  EXPECT_GT(s.disk_hits, 900);
  EXPECT_GE(s.disk_reads, s.disk_hits);
  EXPECT_EQ(s.admissions, 1000);  // rows read back are not admitted again
}

// The shard-wide budget: a tiered table that reaches it evicts its own clean
// rows to make room instead of refusing new rows, so memory stays under it.
TEST_F(DiskTierTest, ATieredTableAtTheShardBudgetEvictsInsteadOfRefusing) {
  options_.max_memory_bytes = 64 << 10;
  Open({Tiered("t", 1000000)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  for (int p = 0; p < 50; ++p) {
    Push("t", Range(p * 100, p * 100 + 100), p);
    ASSERT_THAT(flusher_->FlushNow(), IsOk());
    EXPECT_LE(store_->memory_bytes(), options_.max_memory_bytes);
  }
  EXPECT_LT(RowsInMemory("t"), 5000);
  EXPECT_GT(Stats("t").evictions, 0);
  ExpectSameRows("t", Range(0, 5000));  // pulls evict to make room too
  EXPECT_LE(store_->memory_bytes(), options_.max_memory_bytes);
  // A push needing more room than every clean row gives (about 1000 fit) is
  // refused, and changes no value (it may have evicted clean rows).
  const std::vector<float> g = Grad(2000, 99);
  EXPECT_THAT(store_->PushRows("t", Range(10000, 12000), g),
              StatusIs(absl::StatusCode::kResourceExhausted));
  ExpectSameRows("t", Range(10000, 12000));
}

// A new id a pull missed on disk is not looked up again by the push that
// follows; once it exists (and is evicted), it is read back as usual.
TEST_F(DiskTierTest, ANewIdIsLookedUpOnDiskOnce) {
  Open({Tiered("t", 10)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  ExpectSameRows("t", Range(0, 50));  // initial values; 50 lookups
  EXPECT_EQ(Stats("t").disk_reads, 50);
  Push("t", Range(0, 50), 1);
  EXPECT_EQ(Stats("t").disk_reads, 50);  // known absent: no lookup
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  EXPECT_LE(RowsInMemory("t"), 10);
  ExpectSameRows("t", Range(0, 50));  // the evicted ones read back
  EXPECT_GE(Stats("t").disk_hits, 40);
  Push("t", Range(0, 60), 2);  // 10 more new ids: looked up once each
  ExpectSameRows("t", Range(0, 60));
}

TEST_F(DiskTierTest, DirtyRowsStayInMemoryUntilAFlushWritesThem) {
  Open({Tiered("t", 50)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Push("t", Range(0, 300), 1);
  EXPECT_EQ(RowsInMemory("t"), 300);  // all dirty: nothing to evict yet
  storage_->set_write_fault(
      [](const std::string&) { return absl::UnavailableError("disk full"); });
  EXPECT_FALSE(flusher_->FlushNow().ok());
  EXPECT_EQ(RowsInMemory("t"), 300);  // not written: still not evicted
  ExpectSameRows("t", Range(0, 300));
  storage_->set_write_fault(nullptr);
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  EXPECT_LE(RowsInMemory("t"), 50);
  ExpectSameRows("t", Range(0, 300));
}

// A table held over twice its max_rows by unwritten rows gets a flush long
// before the interval (an hour here) is up, which then evicts the excess.
TEST_F(DiskTierTest, ATableFarOverItsMaxRowsIsFlushedEarly) {
  Open({Tiered("t", 10)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Flusher background(store_.get(), storage_.get(), absl::Hours(1));
  background.Start();
  Push("t", Range(0, 15), 1);  // 1.5x: no request
  EXPECT_FALSE(store_->TakeFlushRequest());
  Push("t", Range(15, 100), 2);  // 10x: a request
  for (int i = 0; i < 1000 && RowsInMemory("t") > 10; ++i) {
    absl::SleepFor(absl::Milliseconds(10));  // Polling period.
  }
  EXPECT_LE(RowsInMemory("t"), 10);
  EXPECT_GE(background.stats().flushes, 1);
  ExpectSameRows("t", Range(0, 100));
}

// At the shard's budget with every row dirty (max_rows far above what the
// budget holds), a tiered table's push is refused and asks for a flush; once
// the flush has made the rows clean, the same push succeeds by evicting them.
TEST_F(DiskTierTest, APushRefusedAtTheBudgetAsksForAFlush) {
  options_.max_memory_bytes = 64 << 10;
  Open({Tiered("t", 1000000)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  int64_t next = 0;
  absl::Status pushed;
  for (int p = 0; p < 100 && pushed.ok(); ++p, next += 100) {
    const std::vector<float> g = Grad(100, p);
    pushed = store_->PushRows("t", Range(next, next + 100), g).status();
    if (pushed.ok()) {
      ASSERT_THAT(reference_.PushRows("t", Range(next, next + 100), g), IsOk());
    }
  }
  ASSERT_THAT(pushed, StatusIs(absl::StatusCode::kResourceExhausted));
  next -= 100;  // the refused push
  EXPECT_TRUE(store_->TakeFlushRequest());
  EXPECT_FALSE(store_->TakeFlushRequest());  // once
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  Push("t", Range(next, next + 100), 1000);
  EXPECT_GT(Stats("t").evictions, 0);
  ExpectSameRows("t", Range(0, next + 100));
}

// Filling a tiered table far past the shard's budget (new ids only, a flush
// whenever the budget refuses a push): every refused push goes through after
// one flush, and the table keeps about what the budget holds in memory. (A
// refused push used to evict clean rows and still be refused, the free
// slots' list having taken the store over its budget: the table emptied.)
TEST_F(DiskTierTest, FillingFarPastTheBudgetGoesOnAfterEachFlush) {
  options_.max_memory_bytes = 8 << 20;
  Open({Tiered("t", 10000000)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  constexpr int kBatch = 8192;
  int64_t next = 0, refused = 0, fewest = -1, most = 0;
  for (int p = 0; p < 200; ++p) {
    const std::vector<float> g = Grad(kBatch, p);
    auto pushed = store_->PushRows("t", Range(next, next + kBatch), g);
    if (!pushed.ok()) {
      ASSERT_THAT(pushed, StatusIs(absl::StatusCode::kResourceExhausted));
      ++refused;
      ASSERT_TRUE(store_->TakeFlushRequest());
      ASSERT_THAT(flusher_->FlushNow(), IsOk());
      Push("t", Range(next, next + kBatch), p);  // goes through now
    } else {
      ASSERT_THAT(reference_.PushRows("t", Range(next, next + kBatch), g),
                  IsOk());
    }
    next += kBatch;
    const int64_t rows = RowsInMemory("t");
    most = std::max(most, rows);
    if (refused > 0) fewest = fewest < 0 ? rows : std::min(fewest, rows);
  }
  EXPECT_GT(refused, 5);
  EXPECT_LT(refused, 150);
  EXPECT_GT(fewest, most / 2);  // never emptied
  const std::vector<uint64_t> some = {
      0, 1, 4095, 100000, 1000000, static_cast<uint64_t>(next - 1)};
  ExpectSameRows("t", some);
}

// After a flush evicted most of a table, most of its slots are free: a push
// of a few new rows still evicts as many clean ones (free slots do not use
// up the eviction's scan), so the table stays at max_rows.
TEST_F(DiskTierTest, APushEvictsDownToMaxRowsWhenMostSlotsAreFree) {
  Open({Tiered("t", 50)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Push("t", Range(0, 4000), 1);
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  ASSERT_EQ(RowsInMemory("t"), 50);
  for (int p = 0; p < 10; ++p) {
    Push("t", Range(4000 + 4 * p, 4004 + 4 * p), 2 + p);  // 4 new rows
    EXPECT_EQ(RowsInMemory("t"), 50) << "push " << p;
    ASSERT_THAT(flusher_->FlushNow(), IsOk());
  }
  ExpectSameRows("t", Range(0, 4040));
}

TEST_F(DiskTierTest, RowsUpdatedWhileTheirFlushIsWrittenAreKept) {
  Open({Tiered("t", 10)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Push("t", Range(0, 40), 1);
  // A push between the flush's copy and its write: the rows it updates are
  // dirty again, so the flush's eviction leaves them, and the next flush
  // writes their newest values.
  bool pushed = false;
  storage_->set_write_fault([this, &pushed](const std::string&) {
    if (!pushed) Push("t", Range(0, 40), 2);
    pushed = true;
    return absl::OkStatus();
  });
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  EXPECT_EQ(RowsInMemory("t"), 40);
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  EXPECT_LE(RowsInMemory("t"), 10);
  ExpectSameRows("t", Range(0, 40));
}

TEST_F(DiskTierTest, RestartReadsEveryKindOfTableBack) {
  v1::TensorSpec expiring = Table("x");
  expiring.mutable_memory_policy()->set_expire_after_steps(1000);
  const std::vector<v1::TensorSpec> specs = {Tiered("t", 20), Table("p"),
                                             expiring};
  Open(specs);
  for (const char* name : {"t", "p", "x"}) {
    ASSERT_THAT(reference_.CreateTensors({Table(name)}), IsOk());
    Push(name, Range(0, 200), 1);
    Push(name, Range(100, 300), 2);
  }
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  // "p" as a directory written before version records held the row count:
  // the load counts its rows instead.
  DirtySnapshot legacy;
  legacy.versions.push_back({"p", 2, 0, false, -1});
  ASSERT_THAT(storage_->Write(legacy), IsOk());
  Open({});
  for (const char* name : {"t", "p", "x"}) {
    auto info = store_->Describe(name);
    ASSERT_THAT(info, IsOk());
    EXPECT_EQ(info->num_rows(), 300) << name;  // in memory and on disk
  }
  // Rows of a table whose policy deletes are loaded; the others are not.
  EXPECT_EQ(RowsInMemory("x"), 300);
  EXPECT_EQ(RowsInMemory("t"), 0);
  EXPECT_EQ(RowsInMemory("p"), 0);
  EXPECT_THAT(store_->LoadingTables(), ::testing::ElementsAre("p"));
  EXPECT_TRUE(store_->ReadsDisk("t"));
  EXPECT_FALSE(store_->ReadsDisk("x"));
  ExpectSameRows("p", Range(0, 50));  // read through while loading
  EXPECT_EQ(RowsInMemory("p"), 50);
  // A push to a row still on disk starts from its stored values.
  Push("p", Range(250, 260), 3);
  // The background load brings in the rest, skipping rows held.
  int64_t loaded = 0;
  ASSERT_THAT(storage_->WalkStoredRows(
                  "p", 64,
                  [&](const StoredRowBatch& batch) -> absl::Status {
                    auto n = store_->LoadRows("p", batch);
                    if (!n.ok()) return n.status();
                    loaded += *n;
                    return absl::OkStatus();
                  }),
              IsOk());
  EXPECT_EQ(loaded, 300 - 60);
  store_->FinishLoading("p");
  EXPECT_FALSE(store_->ReadsDisk("p"));
  EXPECT_TRUE(store_->LoadingTables().empty());
  for (const char* name : {"t", "p", "x"}) ExpectSameRows(name, Range(0, 320));
  EXPECT_EQ(Stats("p").rows_loaded, 240);
  Push("t", Range(300, 310), 4);  // 10 new ids
  EXPECT_EQ(Stats("t").total_rows, 310);
  EXPECT_EQ(Stats("p").total_rows, 300);
}

TEST_F(DiskTierTest, AScanOfATieredTableReturnsEveryRowOnce) {
  Open({Tiered("t", 30)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Push("t", Range(0, 250), 1);
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  Push("t", Range(200, 220), 2);  // newer in memory than on disk
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  Push("t", Range(0, 5), 3);  // dirty: the scan's caller flushes first
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  std::vector<uint64_t> ids;
  std::vector<float> values;
  uint64_t cursor = 0;
  for (int batch = 0; batch < 100; ++batch) {
    auto got = store_->ScanRows("t", cursor, 16);
    ASSERT_THAT(got, IsOk());
    EXPECT_LE(got->ids.size(), 16u);
    ids.insert(ids.end(), got->ids.begin(), got->ids.end());
    values.insert(values.end(), got->values.begin(), got->values.end());
    if (got->done) break;
    cursor = got->next;
  }
  ASSERT_EQ(ids, Range(0, 250));
  std::vector<float> want(values.size());
  ASSERT_THAT(reference_.PullRows("t", ids, absl::MakeSpan(want)), IsOk());
  EXPECT_EQ(values, want);
}

TEST_F(DiskTierTest, AFailedDiskReadFailsTheRequestAndChangesNothing) {
  Open({Tiered("t", 10)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  Push("t", Range(0, 100), 1);
  ASSERT_THAT(flusher_->FlushNow(), IsOk());
  FailingSource failing(storage_.get());
  store_->AttachDisk(&failing, false);
  failing.fail = true;
  std::vector<float> out(100 * kDim);
  EXPECT_THAT(store_->PullRows("t", Range(0, 100), absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("reading rows of t from disk")));
  const std::vector<float> g = Grad(100, 2);
  EXPECT_THAT(store_->PushRows("t", Range(0, 100), g),
              StatusIs(absl::StatusCode::kUnavailable));
  failing.fail = false;
  ExpectSameRows("t", Range(0, 100));
}

// Pushes of random ids from several threads while a flusher writes and
// evicts: SGD makes every row's final value independent of the order, so a
// lost update (a row read back older than the one evicted) shows.
TEST_F(DiskTierTest, ConcurrentPushesAndFlushesLoseNoUpdate) {
  Open({Tiered("t", 64)});
  ASSERT_THAT(reference_.CreateTensors({Table("t")}), IsOk());
  std::atomic<bool> stop{false};
  std::thread flusher([this, &stop] {
    for (int i = 0; i < 100000 && !stop; ++i) {
      ASSERT_THAT(flusher_->FlushNow(), IsOk());
    }
  });
  // kMaxPushes x 1 ms bounds the wait for flushes (30 s).
  constexpr int kThreads = 3, kPushes = 300, kMaxPushes = 30000;
  std::vector<std::thread> pushers;
  std::vector<std::vector<std::pair<std::vector<uint64_t>, int>>> done(
      kThreads);
  for (int t = 0; t < kThreads; ++t) {
    pushers.emplace_back([this, t, &done] {
      std::mt19937_64 rng(t + 1);
      // At least kPushes, and on, one a millisecond, until flushes have
      // cleaned rows to evict and pushes have read them back (a synced
      // write may take longer than all kPushes on a loaded machine).
      for (int p = 0; p < kMaxPushes; ++p) {
        if (p >= kPushes) {
          if (flusher_->stats().flushes >= 20) break;
          absl::SleepFor(absl::Milliseconds(1));  // Polling period.
        }
        std::vector<uint64_t> ids(16);
        for (uint64_t& id : ids) id = rng() % 500;
        const std::vector<float> g = Grad(ids.size(), t * kMaxPushes + p);
        ASSERT_THAT(store_->PushRows("t", ids, g), IsOk());
        std::vector<float> out(ids.size() * kDim);
        ASSERT_THAT(store_->PullRows("t", ids, absl::MakeSpan(out)), IsOk());
        done[t].emplace_back(std::move(ids), t * kMaxPushes + p);
      }
    });
  }
  for (std::thread& t : pushers) t.join();
  stop = true;
  flusher.join();
  for (const auto& pushes : done) {
    for (const auto& [ids, p] : pushes) {
      ASSERT_THAT(reference_.PushRows("t", ids, Grad(ids.size(), p)), IsOk());
    }
  }
  // Sums in another order: equal up to float rounding.
  const std::vector<uint64_t> all = Range(0, 500);
  std::vector<float> got(all.size() * kDim), want(all.size() * kDim);
  ASSERT_THAT(store_->PullRows("t", all, absl::MakeSpan(got)), IsOk());
  ASSERT_THAT(reference_.PullRows("t", all, absl::MakeSpan(want)), IsOk());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i])))
        << "row " << all[i / kDim];
  }
  EXPECT_GT(Stats("t").evictions, 0);
  EXPECT_GT(Stats("t").disk_hits, 0);
}

}  // namespace
}  // namespace tessera

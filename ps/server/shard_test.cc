#include "ps/server/shard.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

v1::TensorSpec Dense(const std::string& name, int64_t n) {
  v1::TensorSpec spec;
  spec.set_name(name);
  spec.add_shape(n);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(1.0f);
  return spec;
}

v1::TensorSpec Table(const std::string& name, int64_t dim) {
  v1::TensorSpec spec = Dense(name, 0);
  spec.add_shape(dim);
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  return spec;
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir =
        std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
        "/shard-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ShardOptions Options() const {
    ShardOptions options;
    options.placement.set_num_shards(1);
    options.data_dir = dir_ + "/data";
    // Only the final flush writes: what is on disk is what Drain flushed.
    options.flush_interval = absl::Hours(1);
    return options;
  }

  std::string dir_;
};

// Pushes race Drain: every push answered OK must be on disk after a restart,
// and nothing else may be (an update is applied and persisted exactly when
// it was acknowledged).
TEST_F(ShardTest, EveryAcknowledgedPushSurvivesDrainAndRestart) {
  constexpr int kThreads = 4;
  constexpr int kMaxPushesPerThread = 200000;  // bounds the loops
  std::atomic<int64_t> acked_dense{0}, acked_rows{0};
  {
    metrics::Registry registry;
    Shard shard(Options(), &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    ASSERT_THAT(shard.CreateTensors({Dense("w", 1), Table("e", 1)}), IsOk());
    std::vector<std::thread> pushers;
    for (int t = 0; t < kThreads; ++t) {
      pushers.emplace_back([&, t] {
        const std::vector<float> one = {1.0f};
        const uint64_t id[] = {7};
        for (int i = 0; i < kMaxPushesPerThread; ++i) {
          absl::Status status = t % 2 == 0
                                    ? shard.PushDense("w", 0, one).status()
                                    : shard.PushRows("e", id, one).status();
          if (status.ok()) {
            (t % 2 == 0 ? acked_dense : acked_rows).fetch_add(1);
            continue;
          }
          EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
          return;
        }
      });
    }
    // Drain while pushes are under way (bounded wait, no sleep).
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while ((acked_dense.load() < 1000 || acked_rows.load() < 1000) &&
           absl::Now() < deadline) {
      std::this_thread::yield();
    }
    ASSERT_THAT(shard.Drain(absl::Seconds(30)), IsOk());
    for (auto& p : pushers) p.join();
    EXPECT_THAT(shard.PushDense("w", 0, std::vector<float>{1.0f}),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  ASSERT_GT(acked_dense.load(), 0);
  ASSERT_GT(acked_rows.load(), 0);
  ASSERT_LT(acked_dense.load(), 1 << 24);  // exact in float32

  metrics::Registry registry;
  Shard restarted(Options(), &registry);
  ASSERT_THAT(restarted.Load(), IsOk());
  std::vector<float> w(1), row(1);
  ASSERT_THAT(restarted.PullDense("w", 0, absl::MakeSpan(w)), IsOk());
  const uint64_t id[] = {7};
  ASSERT_THAT(restarted.PullRows("e", id, absl::MakeSpan(row)), IsOk());
  // SGD with learning rate 1 from zeros: each push of 1 subtracts 1.
  EXPECT_EQ(w[0], -static_cast<float>(acked_dense.load()));
  EXPECT_EQ(row[0], -static_cast<float>(acked_rows.load()));
}

// A create whose specs cannot be saved leaves nothing behind: the tensor is
// not visible, a retry (once the disk works) saves it, and a restart finds it.
TEST_F(ShardTest, SpecsReachDiskBeforeTensorsAreVisible) {
  auto failing = std::make_shared<std::atomic<bool>>(true);
  ShardOptions options = Options();
  options.storage_write_fault = [failing](const std::string& what) {
    if (failing->load()) {
      return absl::UnavailableError(what + ": injected disk failure");
    }
    return absl::OkStatus();
  };
  {
    metrics::Registry registry;
    Shard shard(options, &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    EXPECT_THAT(shard.CreateTensors({Dense("w", 4)}),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("injected disk failure")));
    EXPECT_THAT(shard.store()->Describe("w"),
                StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(shard.PushDense("w", 0, std::vector<float>(4, 1.0f)),
                StatusIs(absl::StatusCode::kNotFound));
    failing->store(false);
    auto retried = shard.CreateTensors({Dense("w", 4)});
    ASSERT_THAT(retried, IsOk());
    EXPECT_EQ(retried->created, 1);  // not "existing": the first one left none
    ASSERT_THAT(shard.Drain(absl::Seconds(5)), IsOk());
  }
  metrics::Registry registry;
  Shard restarted(Options(), &registry);
  ASSERT_THAT(restarted.Load(), IsOk());
  EXPECT_THAT(restarted.store()->Describe("w"), IsOk());
}

TEST_F(ShardTest, RequestsNamingTooManyIdsAreRefused) {
  ShardOptions options = Options();
  options.max_ids_per_request = 16;
  metrics::Registry registry;
  Shard shard(options, &registry);
  ASSERT_THAT(shard.Load(), IsOk());
  ASSERT_THAT(shard.CreateTensors({Table("e", 2)}), IsOk());
  std::vector<uint64_t> ids(17);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  std::vector<float> values(ids.size() * 2);
  EXPECT_THAT(shard.PullRows("e", ids, absl::MakeSpan(values)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--max_ids_per_request=16")));
  EXPECT_THAT(shard.PushRows("e", ids, values),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ids.resize(16);
  values.resize(32);
  EXPECT_THAT(shard.PullRows("e", ids, absl::MakeSpan(values)), IsOk());
}

// Per-table metrics of memory policies, and a disk eviction without
// max_rows refused at creation.
TEST_F(ShardTest, TableMetricsCountAdmissionsAndPullHits) {
  metrics::Registry registry;
  Shard shard(Options(), &registry);
  ASSERT_THAT(shard.Load(), IsOk());
  v1::TensorSpec disk = Table("d", 2);
  disk.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  EXPECT_THAT(shard.CreateTensors({disk}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs max_rows > 0")));
  v1::TensorSpec spec = Table("e", 2);
  spec.mutable_memory_policy()->set_admit_after_pushes(2);
  ASSERT_THAT(shard.CreateTensors({spec}), IsOk());
  const std::vector<uint64_t> ids = {1, 2};
  std::vector<float> values(4, 1.0f);
  ASSERT_THAT(shard.PushRows("e", ids, values), IsOk());
  ASSERT_THAT(shard.PushRows("e", {1}, {1.0f, 1.0f}), IsOk());  // admits 1
  ASSERT_THAT(shard.PullRows("e", ids, absl::MakeSpan(values)), IsOk());
  const std::string text = registry.Serialize();
  for (const char* line :
       {"tessera_ps_table_rows{tensor=\"e\"} 1\n",
        "tessera_ps_table_admissions_total{tensor=\"e\"} 1\n",
        "tessera_ps_table_admission_drops_total{tensor=\"e\"} 2\n",
        "tessera_ps_table_evictions_total{tensor=\"e\"} 0\n",
        "tessera_ps_table_expiries_total{tensor=\"e\"} 0\n",
        "tessera_ps_table_pull_hits_total{tensor=\"e\"} 1\n",
        "tessera_ps_table_pull_misses_total{tensor=\"e\"} 1\n"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  // A second scrape adds only what is new.
  ASSERT_THAT(shard.PullRows("e", ids, absl::MakeSpan(values)), IsOk());
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("tessera_ps_table_pull_hits_total{tensor=\"e\"} 2\n"));
}

// A restarted shard serves before its rows are in memory: a tiered table's
// rows stay on disk and are read back on demand, a plain table's load in the
// background; both pull what they held before the restart.
TEST_F(ShardTest, RowsStayOnDiskAtStartAndReadBackAfterRestart) {
  v1::TensorSpec tiered = Table("t", 2);
  tiered.mutable_memory_policy()->set_max_rows(8);
  tiered.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  std::vector<uint64_t> ids;
  for (uint64_t id = 0; id < 100; ++id) ids.push_back(id * 7);
  std::vector<float> grad(ids.size() * 2);
  for (size_t i = 0; i < grad.size(); ++i) grad[i] = 0.01f * (i % 13);
  std::vector<float> want_t(grad.size()), want_p(grad.size());
  {
    metrics::Registry registry;
    Shard shard(Options(), &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    EXPECT_TRUE(shard.rows_loaded());  // a new directory: nothing to load
    ASSERT_THAT(shard.CreateTensors({tiered, Table("p", 2)}), IsOk());
    for (int round = 0; round < 3; ++round) {
      ASSERT_THAT(shard.PushRows("t", ids, grad), IsOk());
      ASSERT_THAT(shard.PushRows("p", ids, grad), IsOk());
    }
    ASSERT_THAT(shard.PullRows("t", ids, absl::MakeSpan(want_t)), IsOk());
    ASSERT_THAT(shard.PullRows("p", ids, absl::MakeSpan(want_p)), IsOk());
    ASSERT_THAT(shard.Drain(absl::Seconds(10)), IsOk());
  }
  metrics::Registry registry;
  Shard shard(Options(), &registry);
  ASSERT_THAT(shard.Load(), IsOk());
  EXPECT_TRUE(shard.serving());
  EXPECT_TRUE(shard.store()->ReadsDisk("t"));
  std::vector<float> got(grad.size());
  ASSERT_THAT(shard.PullRows("t", ids, absl::MakeSpan(got)), IsOk());
  EXPECT_EQ(got, want_t);
  // The pull read 100 rows back and kept about max_rows of them.
  auto footprint = shard.store()->Footprint("t");
  ASSERT_THAT(footprint, IsOk());
  EXPECT_LE(footprint->rows, 8);
  // The background load of "p" ends (bounded poll); its rows are all there.
  for (int i = 0; i < 1000 && !shard.rows_loaded(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));  // Polling period.
  }
  ASSERT_TRUE(shard.rows_loaded());
  EXPECT_FALSE(shard.store()->ReadsDisk("p"));
  ASSERT_THAT(shard.PullRows("p", ids, absl::MakeSpan(got)), IsOk());
  EXPECT_EQ(got, want_p);
  const std::string text = registry.Serialize();
  for (const char* line :
       {"tessera_ps_table_disk_reads_total{tensor=\"t\"} 100\n",
        "tessera_ps_table_disk_hits_total{tensor=\"t\"} 100\n",
        "tessera_ps_table_rows_loaded_total{tensor=\"p\"} 100\n",
        "tessera_ps_loading_rows 0\n"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  EXPECT_THAT(text, HasSubstr("tessera_ps_table_disk_bytes{tensor=\"t\"}"));
  // A whole-table scan of the tiered table returns every row, from disk.
  std::vector<uint64_t> scanned;
  uint64_t cursor = 0;
  for (int batch = 0; batch < 100; ++batch) {
    auto rows = shard.ScanRows("t", cursor, 32);
    ASSERT_THAT(rows, IsOk());
    scanned.insert(scanned.end(), rows->ids.begin(), rows->ids.end());
    if (rows->done) break;
    cursor = rows->next;
  }
  EXPECT_EQ(scanned, ids);  // ascending ids: 0, 7, 14, ...
}

// No Drain and no periodic flush: what survives the Shard going away is only
// what reached disk before a reply, as after a SIGKILL.
TEST_F(ShardTest, InitializationIsOnDiskWhenItReturns) {
  const std::vector<float> init = {1.5f, -2, 3, 0.25f};
  {
    metrics::Registry registry;
    Shard shard(Options(), &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    ASSERT_THAT(shard.CreateTensors({Dense("w", 4), Table("e", 2)}), IsOk());
    auto applied = shard.InitializeTensor("w", 0, init);
    ASSERT_THAT(applied, IsOk());
    EXPECT_TRUE(applied->applied);
    EXPECT_EQ(applied->version, 1);
    EXPECT_THAT(shard.InitializeTensor("e", 0, std::vector<float>(2)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(shard.InitializeTensor("w", 1, init),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  metrics::Registry registry;
  Shard restarted(Options(), &registry);
  ASSERT_THAT(restarted.Load(), IsOk());
  std::vector<float> w(4);
  EXPECT_THAT(restarted.PullDense("w", 0, absl::MakeSpan(w)), IsOkAndHolds(1));
  EXPECT_EQ(w, init);
  auto again = restarted.InitializeTensor("w", 0, std::vector<float>(4, 9.0f));
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->applied);
  ASSERT_THAT(restarted.PullDense("w", 0, absl::MakeSpan(w)), IsOk());
  EXPECT_EQ(w, init);
  // Pushes apply on top, and version 1 + pushes survive a drain.
  ASSERT_THAT(restarted.PushDense("w", 0, std::vector<float>(4, 1.0f)),
              IsOkAndHolds(::testing::Field(&PushResult::version, 2)));
}

TEST_F(ShardTest, InitializationThatCannotReachDiskFailsAndARetryFlushes) {
  auto failing = std::make_shared<std::atomic<bool>>(false);
  ShardOptions options = Options();
  options.storage_write_fault = [failing](const std::string& what) {
    if (failing->load()) {
      return absl::UnavailableError(what + ": injected disk failure");
    }
    return absl::OkStatus();
  };
  const std::vector<float> init = {4, 3, 2, 1};
  {
    metrics::Registry registry;
    Shard shard(options, &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    ASSERT_THAT(shard.CreateTensors({Dense("w", 4)}), IsOk());
    failing->store(true);
    EXPECT_THAT(
        shard.InitializeTensor("w", 0, init),
        StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not yet on disk")));
    failing->store(false);
    auto retried = shard.InitializeTensor("w", 0, init);
    ASSERT_THAT(retried, IsOk());
    EXPECT_FALSE(retried->applied);  // set by the first call, now on disk
  }
  metrics::Registry registry;
  Shard restarted(Options(), &registry);
  ASSERT_THAT(restarted.Load(), IsOk());
  std::vector<float> w(4);
  EXPECT_THAT(restarted.PullDense("w", 0, absl::MakeSpan(w)), IsOkAndHolds(1));
  EXPECT_EQ(w, init);
}

// Initializations race pushes and Drain: no acknowledged push is lost or
// overwritten, and what Drain flushed is what a restart reads.
TEST_F(ShardTest, InitializationRacingPushesLosesNoPush) {
  constexpr int kPushes = 300;
  std::atomic<bool> applied{false};
  std::vector<float> before_restart(8);
  {
    metrics::Registry registry;
    Shard shard(Options(), &registry);
    ASSERT_THAT(shard.Load(), IsOk());
    ASSERT_THAT(shard.CreateTensors({Dense("w", 8)}), IsOk());
    std::thread pusher([&] {
      for (int i = 0; i < kPushes; ++i) {
        ASSERT_THAT(shard.PushDense("w", 0, std::vector<float>(8, 1.0f)),
                    IsOk());
      }
    });
    std::vector<std::thread> initializers;
    for (int t = 0; t < 3; ++t) {
      initializers.emplace_back([&] {
        auto r = shard.InitializeTensor("w", 0, std::vector<float>(8, 1000.0f));
        ASSERT_THAT(r, IsOk());
        if (r->applied) {
          EXPECT_FALSE(applied.exchange(true));
        }
      });
    }
    pusher.join();
    for (auto& t : initializers) t.join();
    auto version = shard.PullDense("w", 0, absl::MakeSpan(before_restart));
    EXPECT_THAT(version, IsOkAndHolds(kPushes + (applied ? 1 : 0)));
    EXPECT_EQ(before_restart[0], (applied ? 1000.0f : 0.0f) - kPushes);
    ASSERT_THAT(shard.Drain(absl::Seconds(10)), IsOk());
    EXPECT_THAT(shard.InitializeTensor("w", 0, std::vector<float>(8)),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  metrics::Registry registry;
  Shard restarted(Options(), &registry);
  ASSERT_THAT(restarted.Load(), IsOk());
  std::vector<float> w(8);
  ASSERT_THAT(restarted.PullDense("w", 0, absl::MakeSpan(w)), IsOk());
  EXPECT_EQ(w, before_restart);
}

}  // namespace
}  // namespace tessera

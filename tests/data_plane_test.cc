// Multi-process tests of the ZeroMQ data plane and the client library: real
// tessera-ps processes on loopback, driven through PsClient and through a raw
// ZeroMQ DEALER socket.

#include <signal.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <limits>
#include <map>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/client/ps_client.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/status_matchers.h"
#include "ps/spec/placement.h"
#include "ps/wire/data_wire.h"
#include "ps/wire/shm_segment.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"
#include "tests/cluster.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::ShardProcess;

constexpr float kLearningRate = 0.1f;
constexpr int kBigRows = 96;
constexpr int kBigCols = 16;  // 6 KiB: split over every shard at 4 KiB.
constexpr int kDim = 8;

v1::TensorSpec Dense(const std::string& name, std::vector<int64_t> shape,
                     uint64_t seed) {
  v1::TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  spec.mutable_initializer()->set_kind(v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-1);
  spec.mutable_initializer()->set_high(1);
  spec.mutable_initializer()->set_seed(seed);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(kLearningRate);
  return spec;
}

v1::TensorSpec Table() {
  v1::TensorSpec spec;
  spec.set_name("emb");
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(0);
  spec.add_shape(kDim);
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(0.1f);
  spec.mutable_initializer()->set_seed(3);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(kLearningRate);
  return spec;
}

std::vector<v1::TensorSpec> Specs() {
  return {Dense("big", {kBigRows, kBigCols}, 1), Dense("small", {4, 8}, 2),
          Dense("bias", {10}, 4), Table()};
}

// Whether every thread of process `pid` is stopped (state T in
// /proc/<pid>/task/*/stat). kill(SIGSTOP) returns before the stop has taken
// effect: on a loaded machine a thread can still answer a request.
bool AllThreadsStopped(pid_t pid) {
  std::error_code ec;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
    if (stat[paren + 2] != 'T' && stat[paren + 2] != 't') return false;
    ++threads;
  }
  return !ec && threads > 0;
}

// Stops `child` and waits (bounded) until every thread of it is stopped.
void StopAndWait(testing::Child& child) {
  child.Signal(SIGSTOP);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!AllThreadsStopped(child.pid()) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(AllThreadsStopped(child.pid())) << "SIGSTOP did not take";
}

std::vector<float> Gradient(size_t n, int step, int salt) {
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) {
    g[i] = static_cast<float>(std::sin(0.37 * step + 0.011 * i + salt));
  }
  return g;
}

// The shard's SGD: p = p + float(-lr) * g, in float.
void Sgd(float* p, const float* g, size_t n) {
  const float neg_lr = static_cast<float>(-1 * double{kLearningRate});
  for (size_t i = 0; i < n; ++i) p[i] = p[i] + neg_lr * g[i];
}

// A local copy of the parameters, updated as the shards should be.
struct Reference {
  std::map<std::string, std::vector<float>> dense;
  std::map<uint64_t, std::vector<float>> rows;

  void PushDense(const std::string& name, int64_t row_begin, int64_t row_size,
                 const std::vector<float>& g) {
    Sgd(dense[name].data() + row_begin * row_size, g.data(), g.size());
  }
  // Repeated ids: summed in order, then one step, as the shard does.
  void PushRows(const std::vector<uint64_t>& ids, const std::vector<float>& g) {
    std::map<uint64_t, std::vector<float>> summed;
    std::vector<uint64_t> order;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto [it, inserted] = summed.try_emplace(ids[i], kDim, 0.0f);
      if (inserted) {
        order.push_back(ids[i]);
        std::copy(g.begin() + i * kDim, g.begin() + (i + 1) * kDim,
                  it->second.begin());
      } else {
        for (int j = 0; j < kDim; ++j) it->second[j] += g[i * kDim + j];
      }
    }
    for (uint64_t id : order) Sgd(rows[id].data(), summed[id].data(), kDim);
  }
};

std::string Text(metrics::Registry& registry) { return registry.Serialize(); }

// The value of `series` (name{labels}) in a Prometheus text, or -1.
double SeriesValue(const std::string& text, const std::string& series) {
  const size_t at = text.find(series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 1));
}

class DataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_dir_ = testing::TempPath(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(base_dir_);
  }

  std::string DataDir(int shard) {
    return absl::StrCat(base_dir_, "/shard", shard);
  }

  // Starts `n` shards; with `fixed_ports`, each on ports picked now, so a
  // restart can reuse them.
  void StartShards(int n, std::vector<std::string> flags,
                   bool fixed_ports = false) {
    flags_.clear();
    shards_.clear();
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> f = flags;
      if (fixed_ports) {
        auto grpc = testing::PickFreePort();
        auto data = testing::PickFreePort();
        ASSERT_TRUE(grpc.ok() && data.ok());
        f.push_back(absl::StrCat("--grpc_port=", *grpc));
        f.push_back(absl::StrCat("--data_port=", *data));
      }
      flags_.push_back(f);
      shards_.push_back(nullptr);
    }
    for (int i = 0; i < n; ++i) StartShard(i);
  }

  void StartShard(int i) {
    shards_[i].reset();
    auto shard = ShardProcess::Start(i, static_cast<int>(flags_.size()),
                                     DataDir(i), flags_[i]);
    ASSERT_TRUE(shard.ok()) << shard.status();
    shards_[i] = *std::move(shard);
  }

  void ConnectClient(
      absl::Duration deadline = absl::Seconds(10),
      int64_t max_push_piece_bytes = PsClientOptions().max_push_piece_bytes) {
    PsClientOptions options;
    options.max_push_piece_bytes = max_push_piece_bytes;
    options.shared_memory_min_bytes = shm_min_bytes_;
    for (auto& shard : shards_) {
      options.shard_addresses.push_back(shard->ports().grpc_address());
    }
    options.default_deadline = deadline;
    options.registry = &registry_;
    auto client = PsClient::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // Pushes and pulls over the shards, several in flight at once, against a
  // local SGD reference; returns the shards' count of push requests.
  double RunReferenceWorkload();
  // Pushes from a thread while shard 1 is frozen, stopped and restarted;
  // checks that every push was applied exactly once.
  void RunRestartWorkload();

  // The attach is answered after a client's first requests may have left
  // (in frames): pulls `tensor` from shard 0 until one went through the
  // segment (20 s at most); whether one did.
  static bool WaitForShm(PsClient& client, metrics::Registry& registry,
                         const std::string& tensor, size_t floats) {
    const std::string series = "tessera_client_shm_bytes_total{shard=\"0\"}";
    std::vector<float> out(floats);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (SeriesValue(Text(registry), series) <= 0 && absl::Now() < deadline) {
      EXPECT_THAT(client.PullDense(tensor, 0, absl::MakeSpan(out)).get(),
                  IsOk());
    }
    return SeriesValue(Text(registry), series) > 0;
  }

  // The client's values moved through shared memory with `shard`.
  double ShmBytes(int shard) {
    return SeriesValue(
        Text(registry_),
        absl::StrCat("tessera_client_shm_bytes_total{shard=\"", shard, "\"}"));
  }

  // Pings every shard: a ping follows the SHM_ATTACH that the client sends
  // as it connects and is answered after it (one client's requests run in
  // order), so afterwards nothing of the connection is still being handled.
  void SettleConnections() {
    for (int i = 0; i < static_cast<int>(shards_.size()); ++i) {
      EXPECT_THAT(client_->Ping(i), IsOk());
    }
  }

  // tessera_ps_data_requests_run_total{thread} summed over the shards.
  double RunOn(const std::string& thread) {
    double sum = 0;
    for (auto& shard : shards_) {
      auto n = shard->Metric("tessera_ps_data_requests_run_total",
                             absl::StrCat("thread=\"", thread, "\""));
      EXPECT_TRUE(n.ok()) << n.status();
      sum += n.value_or(0);
    }
    return sum;
  }

  std::vector<float> PullDense(const std::string& name, size_t floats) {
    std::vector<float> out(floats);
    EXPECT_THAT(client_->PullDense(name, 0, absl::MakeSpan(out)).get(), IsOk());
    return out;
  }

  std::string base_dir_;
  std::vector<std::vector<std::string>> flags_;
  std::vector<std::unique_ptr<ShardProcess>> shards_;
  metrics::Registry registry_;
  std::unique_ptr<PsClient> client_;
  // PsClientOptions::shared_memory_min_bytes of ConnectClient. The default
  // (16 KiB) leaves this suite's tensors (at most 6 KiB) in frames.
  int64_t shm_min_bytes_ = PsClientOptions().shared_memory_min_bytes;
};

TEST_F(DataPlaneTest, PushesAndPullsOverThreeShardsMatchALocalSgdReference) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  ConnectClient();
  RunReferenceWorkload();
}

// The same with every dense push cut into pieces of 7 rows
// (PsClientOptions::max_push_piece_bytes): each piece is applied once and in
// order, so the values equal the reference exactly, and the shards count
// more push requests for the same calls.
TEST_F(DataPlaneTest, PushesCutIntoPiecesMatchTheSameReference) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  ConnectClient(absl::Seconds(10), 7 * kBigCols * sizeof(float));
  const double cut = RunReferenceWorkload();
  shards_.clear();
  std::filesystem::remove_all(base_dir_);
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  ConnectClient(absl::Seconds(10), 0);
  const double whole = RunReferenceWorkload();
  EXPECT_GT(cut, whole + 20 * 10) << "pushes were not cut";
}

// The same workload with every request that moves values either run on the
// socket thread because the data plane is idle (--idle_inline_max_bytes) or
// handed to a worker, then with every one handed over: the values equal the
// reference either way, and tessera_ps_data_requests_run_total says which
// thread ran them.
TEST_F(DataPlaneTest, RequestsRunOnTheSocketThreadWhenIdleMatchTheReference) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600",
                  "--inline_max_bytes=0", "--idle_inline_max_bytes=1048576"});
  ConnectClient();
  // With --inline_max_bytes=0 the connection's SHM_ATTACH goes to a worker;
  // a first pull arriving while it is queued there would follow it.
  SettleConnections();
  double socket = RunOn("socket"), worker = RunOn("worker");
  const double pushes = RunReferenceWorkload();
  // The first pulls are one call at a time: each finds its shard idle.
  EXPECT_GE(RunOn("socket") - socket, 3);
  EXPECT_GE(RunOn("socket") - socket + RunOn("worker") - worker, pushes);

  shards_.clear();
  std::filesystem::remove_all(base_dir_);
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600",
                  "--inline_max_bytes=0", "--idle_inline_max_bytes=0"});
  ConnectClient();
  worker = RunOn("worker");
  // Every request is handed over, pushes included.
  const double handed = RunReferenceWorkload();
  EXPECT_GE(RunOn("worker") - worker, handed);
}

// One call at a time, so the data plane is idle for each: dense pulls run on
// the socket thread, row pulls (which may read a tiered table from disk) are
// handed to a worker all the same.
TEST_F(DataPlaneTest, OnlyDenseRequestsRunOnTheSocketThreadWhenIdle) {
  StartShards(1, {"--flush_interval_s=3600", "--inline_max_bytes=0",
                  "--idle_inline_max_bytes=1048576"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  SettleConnections();
  const double socket = RunOn("socket"), worker = RunOn("worker");
  for (int i = 0; i < 5; ++i) PullDense("small", 32);
  EXPECT_EQ(RunOn("socket") - socket, 5);
  EXPECT_EQ(RunOn("worker") - worker, 0);
  const std::vector<uint64_t> ids = {1, 2, 3};
  std::vector<float> rows(ids.size() * kDim);
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(client_->PullRows("emb", ids, absl::MakeSpan(rows)).get(),
                IsOk());
  }
  EXPECT_EQ(RunOn("socket") - socket, 5);
  EXPECT_EQ(RunOn("worker") - worker, 5);
}

double DataPlaneTest::RunReferenceWorkload() {
  double applied = 0;
  [&] {
    ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
    // The big tensor is split over every shard; the small ones live whole.
    EXPECT_EQ(PlaceDense(Specs()[0], client_->placement()).size(), 3u);
    EXPECT_EQ(PlaceDense(Specs()[1], client_->placement()).size(), 1u);

    Reference ref;
    ref.dense["big"] = PullDense("big", kBigRows * kBigCols);
    ref.dense["small"] = PullDense("small", 32);
    ref.dense["bias"] = PullDense("bias", 10);
    std::vector<uint64_t> all_ids;
    for (uint64_t id = 0; id < 40; ++id) all_ids.push_back(id * 7919 + 5);
    std::vector<float> initial_rows(all_ids.size() * kDim);
    ASSERT_THAT(
        client_->PullRows("emb", all_ids, absl::MakeSpan(initial_rows)).get(),
        IsOk());
    for (size_t i = 0; i < all_ids.size(); ++i) {
      ref.rows[all_ids[i]].assign(initial_rows.begin() + i * kDim,
                                  initial_rows.begin() + (i + 1) * kDim);
    }

    for (int step = 0; step < 20; ++step) {
      std::vector<std::future<absl::Status>> pushed;
      // Several calls in flight at once, two of them to the same parts: the
      // shards apply one client's pushes to a part in order.
      auto whole = std::make_shared<const std::vector<float>>(
          Gradient(kBigRows * kBigCols, step, 0));
      pushed.push_back(client_->PushDense("big", 0, whole));
      ref.PushDense("big", 0, kBigCols, *whole);
      const std::vector<float> range = Gradient(40 * kBigCols, step, 1);
      pushed.push_back(
          client_->PushDense("big", 20, absl::MakeConstSpan(range)));
      ref.PushDense("big", 20, kBigCols, range);
      const std::vector<float> small = Gradient(32, step, 2);
      pushed.push_back(
          client_->PushDense("small", 0, absl::MakeConstSpan(small)));
      ref.PushDense("small", 0, 8, small);
      const std::vector<float> bias = Gradient(4, step, 3);
      pushed.push_back(
          client_->PushDense("bias", 6, absl::MakeConstSpan(bias)));
      ref.PushDense("bias", 6, 1, bias);
      // Rows with repeats, in no particular order.
      std::vector<uint64_t> ids;
      for (int k = 0; k < 12; ++k)
        ids.push_back(all_ids[(step * 5 + k * 3) % 40]);
      ids.push_back(ids[0]);
      ids.push_back(ids[3]);
      const std::vector<float> rows = Gradient(ids.size() * kDim, step, 4);
      pushed.push_back(client_->PushRows("emb", ids, rows));
      ref.PushRows(ids, rows);
      for (auto& f : pushed) ASSERT_THAT(f.get(), IsOk());
    }

    for (const char* name : {"big", "small", "bias"}) {
      const std::vector<float> got = PullDense(name, ref.dense[name].size());
      ASSERT_EQ(got.size(), ref.dense[name].size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_FLOAT_EQ(got[i], ref.dense[name][i]) << name << "[" << i << "]";
      }
    }
    // A row range across shard boundaries comes back in place.
    std::vector<float> middle(50 * kBigCols);
    ASSERT_THAT(client_->PullDense("big", 23, absl::MakeSpan(middle)).get(),
                IsOk());
    for (size_t i = 0; i < middle.size(); ++i) {
      ASSERT_FLOAT_EQ(middle[i], ref.dense["big"][23 * kBigCols + i]);
    }
    // Read in place (PullDenseInPlace): one span per part the rows cover,
    // holding the same values, whether they came in frames or through
    // shared memory; they stay readable after the next calls.
    const size_t big = kBigRows * kBigCols;
    auto whole = client_->PullDenseInPlace("big", 0, big).get();
    auto part = client_->PullDenseInPlace("big", 23, middle.size()).get();
    ASSERT_THAT(whole, IsOk());
    ASSERT_THAT(part, IsOk());
    EXPECT_EQ(whole->spans().size(), 3u);
    size_t touched = 0;
    for (const PartPlacement& p :
         PlaceDense(Specs()[0], client_->placement())) {
      touched += p.row_begin < 23 + 50 && p.row_end > 23;
    }
    EXPECT_EQ(part->spans().size(), touched);
    ASSERT_EQ(whole->size(), big);
    std::vector<float> copied(big);
    ASSERT_THAT(whole->CopyTo(absl::MakeSpan(copied)), IsOk());
    EXPECT_THAT(whole->CopyTo(absl::MakeSpan(middle)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    for (size_t i = 0; i < big; ++i) {
      ASSERT_FLOAT_EQ(copied[i], ref.dense["big"][i]) << "big[" << i << "]";
    }
    std::vector<float> part_copied(middle.size());
    ASSERT_THAT(part->CopyTo(absl::MakeSpan(part_copied)), IsOk());
    EXPECT_EQ(part_copied, middle);
    // Rows come back in the caller's order, repeats included.
    std::vector<uint64_t> ids = {all_ids[9], all_ids[2], all_ids[9],
                                 all_ids[31]};
    std::vector<float> got(ids.size() * kDim);
    ASSERT_THAT(client_->PullRows("emb", ids, absl::MakeSpan(got)).get(),
                IsOk());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int j = 0; j < kDim; ++j) {
        ASSERT_FLOAT_EQ(got[i * kDim + j], ref.rows[ids[i]][j]) << "row " << i;
      }
    }

    // Each shard counted its data-plane requests.
    for (auto& shard : shards_) {
      auto pushes = shard->Metric("tessera_ps_requests_total",
                                  "code=\"OK\",rpc=\"push\"");
      ASSERT_TRUE(pushes.ok());
      EXPECT_GT(*pushes, 0);
      applied += *pushes;
    }
    EXPECT_THAT(Text(registry_),
                HasSubstr("tessera_client_request_latency_seconds_count{op="
                          "\"push\"}"));
  }();
  return applied;
}

// PushTables / PullTables over three shards: every table's rows in one
// request per shard, applied as per-table calls would be (against the local
// SGD reference), ordered with the per-table calls of the same client, and a
// request with one bad table changes no table.
TEST_F(DataPlaneTest, TablesCallsMatchTheReferenceAndOneBadTableChangesNone) {
  StartShards(3, {"--flush_interval_s=3600"});
  ConnectClient();
  v1::TensorSpec bounded = Table();
  bounded.set_name("bounded");
  bounded.set_shape(0, 1000);
  bounded.mutable_initializer()->set_seed(9);
  ASSERT_THAT(client_->CreateTensors({Table(), bounded}), IsOk());
  std::vector<uint64_t> ids_emb, ids_bounded;
  for (uint64_t i = 0; i < 30; ++i) {
    ids_emb.push_back(i * 104729 + 11);
    ids_bounded.push_back(i * 31 + 7);
  }
  // Starting rows, each table's own reference.
  Reference emb, tab;
  std::vector<float> out_emb(ids_emb.size() * kDim),
      out_bounded(ids_bounded.size() * kDim);
  ASSERT_THAT(
      client_
          ->PullTables({{"emb", ids_emb, absl::MakeSpan(out_emb)},
                        {"bounded", ids_bounded, absl::MakeSpan(out_bounded)}})
          .get(),
      IsOk());
  for (size_t i = 0; i < ids_emb.size(); ++i) {
    emb.rows[ids_emb[i]].assign(out_emb.begin() + i * kDim,
                                out_emb.begin() + (i + 1) * kDim);
    tab.rows[ids_bounded[i]].assign(out_bounded.begin() + i * kDim,
                                    out_bounded.begin() + (i + 1) * kDim);
  }
  // The same rows, read one table at a time, are the same.
  std::vector<float> single(out_emb.size());
  ASSERT_THAT(client_->PullRows("emb", ids_emb, absl::MakeSpan(single)).get(),
              IsOk());
  EXPECT_EQ(single, out_emb);

  for (int step = 0; step < 10; ++step) {
    std::vector<uint64_t> a, b;
    for (int k = 0; k < 9; ++k) {
      a.push_back(ids_emb[(step * 7 + k * 3) % ids_emb.size()]);
      b.push_back(ids_bounded[(step * 5 + k) % ids_bounded.size()]);
    }
    a.push_back(a[2]);  // a repeat, summed
    const std::vector<float> ga = Gradient(a.size() * kDim, step, 5);
    const std::vector<float> gb = Gradient(b.size() * kDim, step, 6);
    auto pushed = client_->PushTables({{"emb", a, ga}, {"bounded", b, gb}});
    emb.PushRows(a, ga);
    tab.PushRows(b, gb);
    // Issued after the push without waiting for it: it must see the push.
    std::vector<float> seen(a.size() * kDim);
    auto pulled = client_->PullRows("emb", a, absl::MakeSpan(seen));
    ASSERT_THAT(pushed.get(), IsOk());
    ASSERT_THAT(pulled.get(), IsOk());
    for (size_t i = 0; i < a.size(); ++i) {
      for (int j = 0; j < kDim; ++j) {
        ASSERT_FLOAT_EQ(seen[i * kDim + j], emb.rows[a[i]][j])
            << "step " << step << " row " << i;
      }
    }
  }
  auto check = [&](const std::string& name, const std::vector<uint64_t>& ids,
                   Reference& ref) {
    std::vector<float> got(ids.size() * kDim);
    ASSERT_THAT(client_->PullRows(name, ids, absl::MakeSpan(got)).get(),
                IsOk());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int j = 0; j < kDim; ++j) {
        ASSERT_FLOAT_EQ(got[i * kDim + j], ref.rows[ids[i]][j])
            << name << " row " << ids[i];
      }
    }
  };
  check("emb", ids_emb, emb);
  check("bounded", ids_bounded, tab);

  // Row 1000 is outside "bounded": the shard that holds it refuses its whole
  // request, so "emb" keeps its values on that shard.
  const std::vector<uint64_t> bad = {1000};
  const std::vector<uint64_t> all_emb = ids_emb;
  std::vector<float> g_emb = Gradient(all_emb.size() * kDim, 99, 7);
  std::vector<float> g_bad(kDim, 1.0f);
  const int bad_shard = ShardOfRow(1000, 3);
  std::vector<uint64_t> emb_there;
  std::vector<float> g_there;
  for (size_t i = 0; i < all_emb.size(); ++i) {
    if (ShardOfRow(all_emb[i], 3) != bad_shard) continue;
    emb_there.push_back(all_emb[i]);
    g_there.insert(g_there.end(), g_emb.begin() + i * kDim,
                   g_emb.begin() + (i + 1) * kDim);
  }
  ASSERT_FALSE(emb_there.empty());
  EXPECT_THAT(
      client_
          ->PushTables({{"emb", emb_there, g_there}, {"bounded", bad, g_bad}})
          .get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  check("emb", ids_emb, emb);
  check("bounded", ids_bounded, tab);

  // The shards counted tables requests under their own op.
  double tables = 0;
  for (auto& shard : shards_) {
    auto n = shard->Metric("tessera_ps_requests_total",
                           "code=\"OK\",rpc=\"push_tables\"");
    if (n.ok()) tables += *n;
  }
  EXPECT_GE(tables, 10);
}

TEST_F(DataPlaneTest, BadCallsFailBeforeAnythingIsSent) {
  StartShards(1, {});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  std::vector<float> out(33);
  EXPECT_THAT(
      client_->PullDense("small", 0, absl::MakeSpan(out)).get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rows of 8")));
  out.resize(16);
  EXPECT_THAT(client_->PullDense("small", 3, absl::MakeSpan(out)).get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside its 4 rows")));
  EXPECT_THAT(
      client_->PullDense("emb", 0, absl::MakeSpan(out)).get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PullRows")));
  const std::vector<uint64_t> ids = {1, 2, 3};
  EXPECT_THAT(client_->PullRows("emb", ids, absl::MakeSpan(out)).get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs 24 floats, got 16")));
  EXPECT_THAT(
      client_->PushRows("small", ids, out).get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PushDense")));
  EXPECT_THAT(client_->PullDense("nope", 0, absl::MakeSpan(out)).get(),
              StatusIs(absl::StatusCode::kNotFound));
  v1::TensorSpec changed = Specs()[1];
  changed.set_shape(1, 9);
  EXPECT_THAT(client_->RegisterSpecs({changed}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(client_->CreateTensors({changed}),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("shard 0 at 127.0.0.1:")));
}

// A request larger than the shard accepts fails at once, naming the limit,
// instead of being sent (ZeroMQ would drop it with the connection, and the
// caller would wait for its deadline).
TEST_F(DataPlaneTest, RequestsOverTheShardsLimitFailBeforeSending) {
  StartShards(1, {"--max_message_bytes=65536"});
  ConnectClient();
  std::vector<v1::TensorSpec> specs = Specs();
  specs.push_back(Dense("wide", {1024, 32}, 5));  // 128 KiB, on one shard
  ASSERT_THAT(client_->CreateTensors(specs), IsOk());
  auto received =
      shards_[0]->Metric("tessera_ps_received_bytes_total", "rpc=\"push\"");
  ASSERT_TRUE(received.ok());
  const std::vector<float> grad(1024 * 32, 0.5f);
  // RESOURCE_EXHAUSTED from the client itself: sent, it would have been
  // dropped with the connection and ended in DEADLINE_EXCEEDED.
  EXPECT_THAT(client_->PushDense("wide", 0, grad).get(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("--max_message_bytes=65536")));
  auto after =
      shards_[0]->Metric("tessera_ps_received_bytes_total", "rpc=\"push\"");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *received);  // Nothing reached the shard.
  // A request within the limit still goes through.
  EXPECT_THAT(
      client_->PushDense("small", 0, std::vector<float>(32, 0.5f)).get(),
      IsOk());
}

// InitializeDense splits the values over the shards, sets each part once,
// and what it set is on disk when it returns: a SIGKILL right after keeps it.
TEST_F(DataPlaneTest, InitializeDenseSetsEveryPartOnceAndSurvivesSigkill) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"},
              /*fixed_ports=*/true);
  ConnectClient(absl::Seconds(60));
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  std::vector<float> init(kBigRows * kBigCols);
  for (size_t i = 0; i < init.size(); ++i) init[i] = 0.001f * i - 2;
  int applied = -1;
  ASSERT_THAT(client_->InitializeDense("big", init, &applied), IsOk());
  EXPECT_EQ(applied, 3);  // one part per shard
  EXPECT_EQ(PullDense("big", init.size()), init);
  // Again: nothing changes, nothing applied.
  std::vector<float> other(init.size(), 5.0f);
  ASSERT_THAT(client_->InitializeDense("big", other, &applied), IsOk());
  EXPECT_EQ(applied, 0);
  EXPECT_EQ(PullDense("big", init.size()), init);
  // After a push, a first initialization of another tensor is refused.
  ASSERT_THAT(
      client_->PushDense("small", 0, std::vector<float>(32, 1.0f)).get(),
      IsOk());
  const std::vector<float> small = PullDense("small", 32);
  ASSERT_THAT(
      client_->InitializeDense("small", std::vector<float>(32, 7.0f), &applied),
      IsOk());
  EXPECT_EQ(applied, 0);
  EXPECT_EQ(PullDense("small", 32), small);
  // Refused before sending: wrong size, an embedding table.
  EXPECT_THAT(client_->InitializeDense("big", std::vector<float>(3)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_->InitializeDense("emb", std::vector<float>(kDim)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<float> nan = PullDense("bias", 10);
  nan[0] = std::nanf("");
  EXPECT_THAT(client_->InitializeDense("bias", nan),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));

  // SIGKILL every shard (no flush since: --flush_interval_s=3600) and
  // restart them on their directories: the initial values are there.
  for (auto& shard : shards_) shard->child().Signal(SIGKILL);
  for (int i = 0; i < 3; ++i) StartShard(i);
  EXPECT_EQ(PullDense("big", init.size()), init);
  ASSERT_THAT(client_->InitializeDense("big", other, &applied), IsOk());
  EXPECT_EQ(applied, 0);
  EXPECT_EQ(PullDense("big", init.size()), init);
}

TEST_F(DataPlaneTest, InitializeDenseOverTheShardsLimitFailsBeforeSending) {
  StartShards(1, {"--max_message_bytes=65536"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors({Dense("wide", {1024, 32}, 5)}), IsOk());
  EXPECT_THAT(
      client_->InitializeDense("wide", std::vector<float>(1024 * 32, 0.5f)),
      StatusIs(absl::StatusCode::kResourceExhausted,
               HasSubstr("--max_message_bytes=65536")));
  std::vector<float> row(32);  // a whole pull would be over the limit too
  ASSERT_THAT(client_->PullDense("wide", 0, absl::MakeSpan(row)).get(), IsOk());
  EXPECT_NE(row[0], 0.5f);
}

TEST_F(DataPlaneTest, LoadSpecsLearnsTensorsFromTheShards) {
  StartShards(2, {"--split_threshold_bytes=4096"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  PsClientOptions options;
  for (auto& shard : shards_) {
    options.shard_addresses.push_back(shard->ports().grpc_address());
  }
  auto other = PsClient::Connect(options);
  ASSERT_THAT(other, IsOk());
  std::vector<float> out(32);
  EXPECT_THAT((*other)->PullDense("small", 0, absl::MakeSpan(out)).get(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("LoadSpecs")));
  ASSERT_THAT((*other)->LoadSpecs(), IsOk());
  EXPECT_THAT((*other)->PullDense("small", 0, absl::MakeSpan(out)).get(),
              IsOk());
  EXPECT_EQ(out, PullDense("small", 32));
  auto spec = (*other)->GetSpec("emb");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->shape(1), kDim);
}

TEST_F(DataPlaneTest, ShardRestartedMidStreamIsRetriedAndNothingIsLost) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"},
              /*fixed_ports=*/true);
  ConnectClient(absl::Seconds(60));
  RunRestartWorkload();
}

// The same with every dense request in shared memory: the restarted shard
// does not know the old segment (shm_lost: sent again in frames), the one
// frozen and drained leaves ranges unanswered (the client drops that
// segment), and the client attaches a new one after reconnecting.
TEST_F(DataPlaneTest, ShardRestartedMidStreamInSharedMemoryLosesNothing) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"},
              /*fixed_ports=*/true);
  shm_min_bytes_ = 1;
  ConnectClient(absl::Seconds(60));
  RunRestartWorkload();
  for (int shard = 0; shard < 3; ++shard) EXPECT_GT(ShmBytes(shard), 0);
}

void DataPlaneTest::RunRestartWorkload() {
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  Reference ref;
  ref.dense["big"] = PullDense("big", kBigRows * kBigCols);
  const std::vector<uint64_t> ids = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89};
  std::vector<float> initial(ids.size() * kDim);
  ASSERT_THAT(client_->PullRows("emb", ids, absl::MakeSpan(initial)).get(),
              IsOk());
  for (size_t i = 0; i < ids.size(); ++i) {
    ref.rows[ids[i]].assign(initial.begin() + i * kDim,
                            initial.begin() + (i + 1) * kDim);
  }
  // A row of shard 1 that only the push sent while shard 1 is down touches.
  uint64_t down_id = 1000;
  while (ShardOfRow(down_id, 3) != 1) ++down_id;
  const std::vector<uint64_t> down_ids = {down_id};
  std::vector<float> down_row(kDim);
  ASSERT_THAT(
      client_->PullRows("emb", down_ids, absl::MakeSpan(down_row)).get(),
      IsOk());

  constexpr int kSteps = 150;
  std::atomic<int> done_steps{0};
  absl::Notification restarted;
  absl::Status failure;
  std::thread pusher([&] {
    for (int step = 0; step < kSteps; ++step) {
      auto g = std::make_shared<const std::vector<float>>(
          Gradient(kBigRows * kBigCols, step, 0));
      const std::vector<float> rows = Gradient(ids.size() * kDim, step, 1);
      auto dense = client_->PushDense("big", 0, g);
      auto sparse = client_->PushRows("emb", ids, rows);
      absl::Status a = dense.get();
      absl::Status b = sparse.get();
      if (!a.ok() || !b.ok()) {
        failure = a.ok() ? b : a;
        return;
      }
      ref.PushDense("big", 0, kBigCols, *g);
      ref.PushRows(ids, rows);
      done_steps = step + 1;
      // Keep some steps for after the restart.
      if (step == kSteps / 2)
        restarted.WaitForNotificationWithTimeout(absl::Seconds(120));
    }
  });

  // After a few steps, freeze shard 1 while requests to it are in flight,
  // then stop it with SIGTERM and restart it, while pushes keep coming. The
  // requests it held are either answered before it exits or resent after.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (done_steps < 10 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  StopAndWait(shards_[1]->child());
  double waiting = 0;
  while (waiting <= 0 && absl::Now() < deadline) {
    waiting = SeriesValue(Text(registry_),
                          "tessera_client_waiting_seconds{shard=\"1\"}");
    absl::SleepFor(absl::Milliseconds(5));
  }
  shards_[1]->child().Signal(SIGTERM);
  shards_[1]->child().Signal(SIGCONT);
  auto code = shards_[1]->child().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  const int steps_before_restart = done_steps;
  // Sent while shard 1 is down: it cannot be answered until the restart, so
  // the client must resend it then (whether or not the drain had answered
  // everything in flight), and the shard must apply it exactly once.
  const std::vector<float> down_grad = Gradient(kDim, 7, 3);
  auto down_push = client_->PushRows("emb", down_ids, down_grad);
  StartShard(1);
  restarted.Notify();
  pusher.join();
  ASSERT_THAT(failure, IsOk());
  ASSERT_THAT(down_push.get(), IsOk());
  Sgd(down_row.data(), down_grad.data(), kDim);
  std::vector<float> down_after(kDim);
  ASSERT_THAT(
      client_->PullRows("emb", down_ids, absl::MakeSpan(down_after)).get(),
      IsOk());
  for (int j = 0; j < kDim; ++j) ASSERT_FLOAT_EQ(down_after[j], down_row[j]);
  EXPECT_EQ(done_steps, kSteps);
  EXPECT_LT(steps_before_restart, kSteps);

  const std::vector<float> big = PullDense("big", kBigRows * kBigCols);
  for (size_t i = 0; i < big.size(); ++i) {
    ASSERT_FLOAT_EQ(big[i], ref.dense["big"][i]) << "big[" << i << "]";
  }
  std::vector<float> rows(ids.size() * kDim);
  ASSERT_THAT(client_->PullRows("emb", ids, absl::MakeSpan(rows)).get(),
              IsOk());
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int j = 0; j < kDim; ++j) {
      ASSERT_FLOAT_EQ(rows[i * kDim + j], ref.rows[ids[i]][j]);
    }
  }
  // Not asserted: tessera_client_retries_total. Whether any request is
  // resent depends on timing (the drain answers every request it had read;
  // a request queued while the shard is down goes out once on reconnect),
  // so a count > 0 failed about one run in a few. What must hold is checked
  // exactly above: every push applied once, including the one sent while
  // shard 1 was down.
}

TEST_F(DataPlaneTest, FrozenShardFailsTheCallNamingItThenServesAgain) {
  StartShards(2, {"--split_threshold_bytes=4096"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  std::vector<float> out(kBigRows * kBigCols);
  ASSERT_THAT(client_->PullDense("big", 0, absl::MakeSpan(out)).get(), IsOk());

  StopAndWait(shards_[1]->child());
  CallOptions quick;
  quick.deadline = absl::Seconds(3);
  auto pulled = client_->PullDense("big", 0, absl::MakeSpan(out), quick);
  // While it waits, the client says how long it has waited on shard 1.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  double waiting = 0;
  while (waiting <= 0 && absl::Now() < give_up) {
    waiting = SeriesValue(Text(registry_),
                          "tessera_client_waiting_seconds{shard=\"1\"}");
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT(waiting, 0);
  const std::string who = absl::StrCat(
      "shard 1 at 127.0.0.1:", shards_[1]->ports().data, " did not answer");
  EXPECT_THAT(pulled.get(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(who)));
  EXPECT_EQ(SeriesValue(Text(registry_),
                        "tessera_client_timeouts_total{shard=\"1\"}"),
            1);
  EXPECT_EQ(SeriesValue(Text(registry_),
                        "tessera_client_timeouts_total{shard=\"0\"}"),
            0);

  shards_[1]->child().Signal(SIGCONT);
  EXPECT_THAT(client_->PullDense("big", 0, absl::MakeSpan(out)).get(), IsOk());
  std::vector<float> grad(kBigRows * kBigCols, 0.5f);
  EXPECT_THAT(client_->PushDense("big", 0, absl::MakeConstSpan(grad)).get(),
              IsOk());
  // The gauge goes back to 0 once nothing waits.
  const absl::Time settle = absl::Now() + absl::Seconds(10);
  while (waiting != 0 && absl::Now() < settle) {
    waiting = SeriesValue(Text(registry_),
                          "tessera_client_waiting_seconds{shard=\"1\"}");
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(waiting, 0);
}

// A raw DEALER talking to one shard's data port.
class RawSocket {
 public:
  explicit RawSocket(int port) : context_(1) {
    auto socket = ZmqSocket::Open(context_.get(), ZMQ_DEALER);
    CHECK(socket.ok());
    socket_ = *std::move(socket);
    CHECK(socket_.Connect(absl::StrCat("tcp://127.0.0.1:", port)).ok());
  }

  // Sends `frames` and waits (bounded) for one reply.
  absl::StatusOr<std::vector<ZmqFrame>> RoundTrip(
      std::vector<std::string> frames) {
    std::vector<ZmqFrame> out;
    for (auto& f : frames) out.push_back(ZmqFrame::Copy(f));
    absl::Status sent = ZmqSendFrames(socket_.get(), absl::MakeSpan(out), 0);
    if (!sent.ok()) return sent;
    zmq_pollitem_t item = {socket_.get(), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 20000) <= 0) {
      return absl::DeadlineExceededError("no reply within 20 s");
    }
    std::vector<ZmqFrame> reply;
    auto received = ZmqRecvFrames(socket_.get(), &reply, 0, 8);
    if (!received.ok()) return received.status();
    return reply;
  }

 private:
  ZmqContext context_;
  ZmqSocket socket_;
};

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

TEST_F(DataPlaneTest, MalformedFramesGetErrorRepliesAndChangeNothing) {
  StartShards(1, {"--max_message_bytes=65536"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  const std::vector<float> before = PullDense("small", 32);
  ShardProcess& shard = *shards_[0];
  RawSocket raw(shard.ports().data);

  v1::DataHeader push;
  push.set_request_id(7);
  push.set_op(v1::DataHeader::PUSH_DENSE);
  push.set_tensor_name("small");
  push.set_row_count(4);
  push.set_row_size(8);
  const std::string good_header = push.SerializeAsString();
  const std::string good_values = FloatBytes(std::vector<float>(32, 0.25f));
  v1::DataHeader unknown_op = push;
  unknown_op.set_op(static_cast<v1::DataHeader::Op>(42));
  v1::DataHeader unknown_tensor = push;
  unknown_tensor.set_tensor_name("nope");

  struct Case {
    std::string what;
    std::vector<std::string> frames;
    std::string message;
    std::string reason;
  };
  // Row ranges whose end overflows int64: once answered OK with another
  // tensor's memory (pull) or a SIGSEGV (push).
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  auto dense = [&](v1::DataHeader::Op op, int64_t begin, int64_t rows) {
    v1::DataHeader h = push;
    h.set_op(op);
    h.set_row_begin(begin);
    h.set_row_count(rows);
    return h.SerializeAsString();
  };
  const std::string values64 = FloatBytes(std::vector<float>(64 * 8, 0.5f));
  const std::vector<Case> cases = {
      {"pull at INT64_MAX",
       {dense(v1::DataHeader::PULL_DENSE, kMax, 1)},
       "not within this shard's rows",
       "rows_out_of_range"},
      {"pull of 20 rows at INT64_MAX",
       {dense(v1::DataHeader::PULL_DENSE, kMax, 20)},
       "not within this shard's rows",
       "rows_out_of_range"},
      {"push at INT64_MAX",
       {dense(v1::DataHeader::PUSH_DENSE, kMax, 1),
        FloatBytes(std::vector<float>(8, 0.5f))},
       "not within this shard's rows",
       "rows_out_of_range"},
      {"push of 64 rows at INT64_MAX - 63",
       {dense(v1::DataHeader::PUSH_DENSE, kMax - 63, 64), values64},
       "not within this shard's rows",
       "rows_out_of_range"},
      {"truncated header",
       {good_header.substr(0, 6), good_values},
       "truncated",
       "malformed"},
      {"wrong payload size",
       {good_header, good_values.substr(0, 28 * 4)},
       "4 rows of 8 floats do not fit",
       "malformed"},
      {"ragged payload",
       {good_header, good_values.substr(0, 30)},
       "whole float32s",
       "malformed"},
      {"unknown op",
       {unknown_op.SerializeAsString(), good_values},
       "unknown op 42",
       "malformed"},
      {"garbage",
       {std::string(11, '\xff'), "zzz"},
       "not a DataHeader",
       "malformed"},
      {"empty message", {""}, "empty message", "malformed"},
      {"too many frames",
       {good_header, good_values, "a", "b"},
       "at most 3",
       "malformed"},
      {"missing payload", {good_header}, "expected 1", "malformed"},
      {"oversize",
       {good_header, std::string(100000, '\0')},
       "max_message_bytes",
       "oversize"},
      {"unknown tensor",
       {unknown_tensor.SerializeAsString(), good_values},
       "unknown tensor nope",
       "unknown_tensor"},
  };
  for (const Case& c : cases) {
    const std::string labels = absl::StrCat("reason=\"", c.reason, "\"");
    auto counted = shard.Metric("tessera_ps_rejected_requests_total", labels);
    ASSERT_TRUE(counted.ok()) << counted.status();
    auto reply = raw.RoundTrip(c.frames);
    ASSERT_TRUE(reply.ok()) << c.what << ": " << reply.status();
    ASSERT_EQ(reply->size(), 1u) << c.what << ": an error reply is a header";
    auto header = ParseDataHeader((*reply)[0].view());
    ASSERT_TRUE(header.ok()) << c.what;
    EXPECT_NE(header->status_code(), 0) << c.what;
    EXPECT_THAT(header->status_message(), HasSubstr(c.message)) << c.what;
    auto after = shard.Metric("tessera_ps_rejected_requests_total", labels);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(*after, *counted + 1) << c.what;
  }

  EXPECT_TRUE(shard.child().running());
  EXPECT_EQ(PullDense("small", 32), before);
  // And it still serves: the well-formed push, then a ping.
  auto reply = raw.RoundTrip({good_header, good_values});
  ASSERT_TRUE(reply.ok()) << reply.status();
  auto header = ParseDataHeader((*reply)[0].view());
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->status_code(), 0) << header->status_message();
  EXPECT_EQ(header->request_id(), 7u);
  EXPECT_EQ(header->version(), 1);
  EXPECT_NE(PullDense("small", 32), before);
  EXPECT_THAT(client_->Ping(0), IsOk());
}

// Every dense push and pull in shared memory (shared_memory_min_bytes 1):
// the same values as the reference, to the bit, and both ends count the
// bytes that went through the segments.
TEST_F(DataPlaneTest, SharedMemoryPushesAndPullsMatchTheReference) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  shm_min_bytes_ = 1;
  ConnectClient();
  RunReferenceWorkload();
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(ShmBytes(i), 0) << "shard " << i;
    auto in =
        shards_[i]->Metric("tessera_ps_shm_bytes_total", "direction=\"in\"");
    auto out =
        shards_[i]->Metric("tessera_ps_shm_bytes_total", "direction=\"out\"");
    auto open = shards_[i]->Metric("tessera_ps_shm_segments");
    ASSERT_TRUE(in.ok() && out.ok() && open.ok());
    EXPECT_GT(*in, 0) << "shard " << i;
    EXPECT_GT(*out, 0) << "shard " << i;
    EXPECT_EQ(*open, 1) << "shard " << i;
  }
}

// A shard with shared memory off, and a segment too small for what is in
// flight: the requests go in frames, in order, and the values are right.
TEST_F(DataPlaneTest, SharedMemoryOffOrFullFallsBackToFrames) {
  StartShards(3, {"--shm_segment_bytes=0", "--split_threshold_bytes=4096",
                  "--flush_interval_s=3600"});
  shm_min_bytes_ = 1;
  ConnectClient();
  RunReferenceWorkload();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ShmBytes(i), 0);

  // A 1 MiB segment, and 24 pushes of 96 KiB sent to a frozen shard: none
  // is answered while they are sent, so 10 fit in the segment and the rest
  // go in frames, all applied once and in order.
  shards_.clear();
  std::filesystem::remove_all(base_dir_);
  StartShards(1, {"--shm_segment_bytes=1048576", "--flush_interval_s=3600"});
  client_.reset();
  ConnectClient();
  v1::TensorSpec wide = Dense("wide", {24, 1024}, 9);
  ASSERT_THAT(client_->CreateTensors({wide}), IsOk());
  std::vector<float> ref = PullDense("wide", 24 * 1024);
  ASSERT_TRUE(WaitForShm(*client_, registry_, "wide", 24 * 1024));
  const double before = ShmBytes(0);
  StopAndWait(shards_[0]->child());
  std::vector<std::future<absl::Status>> pushed;
  for (int k = 0; k < 24; ++k) {
    auto g =
        std::make_shared<const std::vector<float>>(Gradient(24 * 1024, k, 5));
    pushed.push_back(client_->PushDense("wide", 0, g));
    Sgd(ref.data(), g->data(), g->size());
  }
  shards_[0]->child().Signal(SIGCONT);
  for (auto& f : pushed) ASSERT_THAT(f.get(), IsOk());
  const std::vector<float> got = PullDense("wide", 24 * 1024);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FLOAT_EQ(got[i], ref[i]) << "wide[" << i << "]";
  }
  // Which ones went through the segment depends on when the client sent
  // them (the first 10 sent before SIGCONT did); the values above do not.
  EXPECT_GT(ShmBytes(0), before);

  // A push larger than the whole segment always goes in frames.
  v1::TensorSpec huge = Dense("huge", {512, 1024}, 10);
  ASSERT_THAT(client_->CreateTensors({huge}), IsOk());
  std::vector<float> huge_ref = PullDense("huge", 512 * 1024);
  const double unchanged = ShmBytes(0);
  const std::vector<float> g = Gradient(512 * 1024, 1, 7);
  ASSERT_THAT(client_->PushDense("huge", 0, absl::MakeConstSpan(g)).get(),
              IsOk());
  Sgd(huge_ref.data(), g.data(), g.size());
  EXPECT_EQ(PullDense("huge", 512 * 1024), huge_ref);
  EXPECT_EQ(ShmBytes(0), unchanged);
}

// One segment at a time on the shard: a second client's attach closes the
// first client's segment, whose next requests are answered shm_lost and sent
// again in frames, without an error or a lost update.
TEST_F(DataPlaneTest, AClosedSegmentSendsTheRequestAgainInFrames) {
  StartShards(1, {"--shm_max_segments=1", "--flush_interval_s=3600"});
  shm_min_bytes_ = 1;
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  std::vector<float> ref = PullDense("small", 32);
  ASSERT_TRUE(WaitForShm(*client_, registry_, "small", 32));

  metrics::Registry other_registry;
  PsClientOptions options;
  options.shard_addresses = {shards_[0]->ports().grpc_address()};
  options.shared_memory_min_bytes = 1;
  options.registry = &other_registry;
  auto other = PsClient::Connect(options);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_THAT((*other)->LoadSpecs(), IsOk());
  // Once the other client has a segment, the first one's is closed.
  ASSERT_TRUE(WaitForShm(**other, other_registry, "small", 32));
  std::vector<float> seen(32);
  ASSERT_THAT((*other)->PullDense("small", 0, absl::MakeSpan(seen)).get(),
              IsOk());
  EXPECT_EQ(seen, ref);

  for (int step = 0; step < 5; ++step) {
    const std::vector<float> g = Gradient(32, step, 6);
    ASSERT_THAT(client_->PushDense("small", 0, absl::MakeConstSpan(g)).get(),
                IsOk());
    Sgd(ref.data(), g.data(), g.size());
  }
  EXPECT_EQ(PullDense("small", 32), ref);
  EXPECT_GT(
      SeriesValue(Text(registry_), "tessera_client_retries_total{shard=\"0\"}"),
      0);
  ASSERT_THAT((*other)->PullDense("small", 0, absl::MakeSpan(seen)).get(),
              IsOk());
  EXPECT_EQ(seen, ref);
}

// Hostile shared-memory requests, from a raw socket that attached a segment
// of its own: each is answered with an error that says what was wrong and
// changes nothing; well-formed ones then work.
TEST_F(DataPlaneTest, BadSharedMemoryRequestsGetErrorsAndChangeNothing) {
  StartShards(1, {"--flush_interval_s=3600"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  const std::vector<float> before = PullDense("small", 32);
  ShardProcess& shard = *shards_[0];
  RawSocket raw(shard.ports().data);

  auto header_of = [](const absl::StatusOr<std::vector<ZmqFrame>>& reply) {
    EXPECT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply.ok() ? reply->size() : 0, 1u);
    auto header = ParseDataHeader((*reply)[0].view());
    EXPECT_TRUE(header.ok());
    return header.ok() ? *header : v1::DataHeader();
  };
  v1::DataHeader attach;
  attach.set_request_id(1);
  attach.set_op(v1::DataHeader::SHM_ATTACH);
  attach.set_shm_host("another-machine");
  v1::DataHeader refused =
      header_of(raw.RoundTrip({attach.SerializeAsString()}));
  EXPECT_EQ(refused.status_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(refused.status_message(), HasSubstr("another machine"));
  attach.set_shm_host(ShmHostId());
  const v1::DataHeader attached =
      header_of(raw.RoundTrip({attach.SerializeAsString()}));
  ASSERT_EQ(attached.status_code(), 0) << attached.status_message();
  auto segment =
      ShmSegment::Attach(attached.shm_pid(), attached.shm_fd(),
                         attached.shm_bytes(), attached.shm_segment());
  ASSERT_THAT(segment, IsOk());
  const int64_t bytes = (*segment)->bytes();
  const int64_t kMax = std::numeric_limits<int64_t>::max();

  v1::DataHeader push;
  push.set_request_id(2);
  push.set_op(v1::DataHeader::PUSH_DENSE);
  push.set_tensor_name("small");
  push.set_row_count(4);
  push.set_row_size(8);
  push.set_shm_segment(attached.shm_segment());
  push.set_shm_offset(4096);
  const std::vector<float> ones(32, 1.0f);
  std::memcpy((*segment)->data() + 4096, ones.data(), 32 * sizeof(float));
  auto with = [&](v1::DataHeader h, auto change) {
    change(h);
    return h.SerializeAsString();
  };
  struct Case {
    std::string what;
    std::vector<std::string> frames;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"unknown segment",
       {with(push, [](auto& h) { h.set_shm_segment(h.shm_segment() + 1); })},
       "is not open on this shard"},
      {"offset in the segment's header",
       {with(push, [](auto& h) { h.set_shm_offset(0); })},
       "not an aligned range"},
      {"past the end",
       {with(push, [&](auto& h) { h.set_shm_offset(bytes - 64); })},
       "not an aligned range"},
      {"offset near INT64_MAX",
       {with(push, [&](auto& h) { h.set_shm_offset(kMax - 3); })},
       "not an aligned range"},
      {"misaligned offset",
       {with(push, [](auto& h) { h.set_shm_offset(4097); })},
       "not an aligned range"},
      {"negative offset",
       {with(push, [](auto& h) { h.set_shm_offset(-64); })},
       "offset not be negative"},
      {"no row size",
       {with(push, [](auto& h) { h.set_row_size(0); })},
       "counts must be positive"},
      {"bytes overflow",
       {with(push,
             [&](auto& h) {
               h.set_row_count(kMax / 8);
               h.set_row_size(8);
             })},
       "fit in int64"},
      {"a values frame as well",
       {push.SerializeAsString(), FloatBytes(ones)},
       "expected 0"},
      {"a row push in shared memory",
       {with(push, [](auto& h) { h.set_op(v1::DataHeader::PUSH_ROWS); }),
        std::string(32, '\0'), FloatBytes(ones)},
       "only dense pushes and pulls do"},
      {"a pull past the end",
       {with(push,
             [&](auto& h) {
               h.set_op(v1::DataHeader::PULL_DENSE);
               h.set_shm_offset(bytes - 4);
             })},
       "not an aligned range"},
      {"the wrong rows",
       {with(push, [](auto& h) { h.set_row_size(4); })},
       "assumes rows of 4 floats"},
  };
  for (const Case& c : cases) {
    const v1::DataHeader reply = header_of(raw.RoundTrip(c.frames));
    EXPECT_NE(reply.status_code(), 0) << c.what;
    EXPECT_THAT(reply.status_message(), HasSubstr(c.message)) << c.what;
    EXPECT_EQ(reply.shm_lost(), c.what == "unknown segment") << c.what;
  }
  EXPECT_TRUE(shard.child().running());
  EXPECT_EQ(PullDense("small", 32), before);

  // Well-formed: the push applies the segment's values (SGD: p - 0.1 * 1),
  // and the pull writes the tensor into the segment.
  v1::DataHeader ok = header_of(raw.RoundTrip({push.SerializeAsString()}));
  ASSERT_EQ(ok.status_code(), 0) << ok.status_message();
  std::vector<float> want = before;
  Sgd(want.data(), ones.data(), 32);
  EXPECT_EQ(PullDense("small", 32), want);
  v1::DataHeader pull = push;
  pull.set_op(v1::DataHeader::PULL_DENSE);
  pull.set_shm_offset(8192);
  ok = header_of(raw.RoundTrip({pull.SerializeAsString()}));
  ASSERT_EQ(ok.status_code(), 0) << ok.status_message();
  std::vector<float> in_segment(32);
  std::memcpy(in_segment.data(), (*segment)->data() + 8192, 32 * sizeof(float));
  EXPECT_EQ(in_segment, want);
}

// Dense batches (PushDenseBatch / PullDenseBatch) over three shards, mixed
// with single-tensor calls to the same tensors: every call is applied in the
// order issued, so the values equal the local SGD reference exactly; a pull
// batch with a history extrapolates like PullDense's.
void DenseBatchWorkload(PsClient& client, std::vector<float>* previous) {
  ASSERT_THAT(client.CreateTensors(Specs()), IsOk());
  auto pull = [&](const std::string& name, size_t floats) {
    std::vector<float> out(floats);
    EXPECT_THAT(client.PullDense(name, 0, absl::MakeSpan(out)).get(), IsOk());
    return out;
  };
  Reference ref;
  ref.dense["big"] = pull("big", kBigRows * kBigCols);
  ref.dense["small"] = pull("small", 32);
  ref.dense["bias"] = pull("bias", 10);
  for (int step = 0; step < 12; ++step) {
    std::vector<std::future<absl::Status>> pushed;
    auto big = std::make_shared<const std::vector<float>>(
        Gradient(kBigRows * kBigCols, step, 0));
    auto small =
        std::make_shared<const std::vector<float>>(Gradient(32, step, 2));
    auto bias =
        std::make_shared<const std::vector<float>>(Gradient(4, step, 3));
    pushed.push_back(client.PushDenseBatch({{"big", 0, big, *big},
                                            {"small", 0, small, *small},
                                            {"bias", 6, bias, *bias}}));
    ref.PushDense("big", 0, kBigCols, *big);
    ref.PushDense("small", 0, 8, *small);
    ref.PushDense("bias", 6, 1, *bias);
    // A single call behind the batch, to tensors the batch named.
    const std::vector<float> more = Gradient(32, step, 5);
    pushed.push_back(client.PushDense("small", 0, absl::MakeConstSpan(more)));
    ref.PushDense("small", 0, 8, more);
    auto rows = std::make_shared<const std::vector<float>>(
        Gradient(10 * kBigCols, step, 6));
    pushed.push_back(
        client.PushDenseBatch({{"big", 40, rows, *rows}}));  // One range.
    ref.PushDense("big", 40, kBigCols, *rows);
    for (auto& f : pushed) ASSERT_THAT(f.get(), IsOk());
  }
  std::vector<float> big(kBigRows * kBigCols), small(32), bias(10);
  ASSERT_THAT(client
                  .PullDenseBatch({{"big", 0, absl::MakeSpan(big), {}},
                                   {"small", 0, absl::MakeSpan(small), {}},
                                   {"bias", 0, absl::MakeSpan(bias), {}}})
                  .get(),
              IsOk());
  for (const auto& [name, got] :
       std::vector<std::pair<std::string, std::vector<float>*>>{
           {"big", &big}, {"small", &small}, {"bias", &bias}}) {
    ASSERT_EQ(got->size(), ref.dense[name].size());
    for (size_t i = 0; i < got->size(); ++i) {
      ASSERT_FLOAT_EQ((*got)[i], ref.dense[name][i]) << name << "[" << i << "]";
    }
  }
  // With a history: small = 2 x pulled - previous, previous = pulled.
  previous->assign(32, 0.5f);
  ASSERT_THAT(client
                  .PullDenseBatch({{"small",
                                    0,
                                    absl::MakeSpan(small),
                                    {absl::MakeSpan(*previous), true}},
                                   {"bias", 0, absl::MakeSpan(bias), {}}})
                  .get(),
              IsOk());
  for (size_t i = 0; i < small.size(); ++i) {
    ASSERT_FLOAT_EQ((*previous)[i], ref.dense["small"][i]);
    ASSERT_FLOAT_EQ(small[i], 2 * ref.dense["small"][i] - 0.5f);
  }
}

TEST_F(DataPlaneTest, DenseBatchesMatchTheReferenceInFrames) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  ConnectClient();
  std::vector<float> previous;
  DenseBatchWorkload(*client_, &previous);
  double batches = 0;
  for (auto& shard : shards_) {
    auto n = shard->Metric("tessera_ps_requests_total",
                           "code=\"OK\",rpc=\"push_dense_batch\"");
    ASSERT_TRUE(n.ok());
    batches += *n;
  }
  // Each step's batch reaches the shards holding big's parts and the small
  // tensors together: at least one batch request per step.
  EXPECT_GE(batches, 12);
  EXPECT_LE(ShmBytes(0), 0);  // Nothing went through shared memory.
}

TEST_F(DataPlaneTest, DenseBatchesMatchTheReferenceInSharedMemory) {
  StartShards(3, {"--split_threshold_bytes=4096", "--flush_interval_s=3600"});
  shm_min_bytes_ = 1;
  ConnectClient();
  // Every link's attach is answered before the batches (under load the first
  // requests may leave in frames): "big" has a part on each shard.
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  auto attached = [&] {
    return ShmBytes(0) > 0 && ShmBytes(1) > 0 && ShmBytes(2) > 0;
  };
  while (!attached() && absl::Now() < deadline) {
    PullDense("big", kBigRows * kBigCols);
  }
  ASSERT_TRUE(attached()) << "no shared memory with every shard within 20 s";
  std::vector<float> previous;
  DenseBatchWorkload(*client_, &previous);
  for (int i = 0; i < 3; ++i) {
    auto in =
        shards_[i]->Metric("tessera_ps_shm_bytes_total", "direction=\"in\"");
    ASSERT_TRUE(in.ok());
    EXPECT_GT(*in, 0) << "shard " << i;
    // Values moved through the segment are the shard's traffic too (the
    // dashboards' bytes and the hot-shard alert read these). Shards 1 and 2
    // hold one range of a step each: a batch of one is a plain request.
    double received = 0, sent = 0;
    for (const char* rpc : {"push", "push_dense_batch"}) {
      auto n = shards_[i]->Metric("tessera_ps_received_bytes_total",
                                  absl::StrCat("rpc=\"", rpc, "\""));
      ASSERT_TRUE(n.ok());
      received += *n;
    }
    for (const char* rpc : {"pull", "pull_dense_batch"}) {
      auto n = shards_[i]->Metric("tessera_ps_sent_bytes_total",
                                  absl::StrCat("rpc=\"", rpc, "\""));
      ASSERT_TRUE(n.ok());
      sent += *n;
    }
    EXPECT_GE(received, *in) << "shard " << i;
    EXPECT_GT(sent, 0) << "shard " << i;
  }
}

// Hostile dense batches: each gets an error reply that says what was wrong,
// and nothing changes (the other ranges of a batch included).
TEST_F(DataPlaneTest, BadDenseBatchesGetErrorRepliesAndChangeNothing) {
  StartShards(1, {"--max_message_bytes=65536"});
  ConnectClient();
  ASSERT_THAT(client_->CreateTensors(Specs()), IsOk());
  const std::vector<float> small = PullDense("small", 32);
  const std::vector<float> bias = PullDense("bias", 10);
  RawSocket raw(shards_[0]->ports().data);
  auto batch =
      [](v1::DataHeader::Op op,
         std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>>
             ranges) {
        v1::DataHeader h;
        h.set_request_id(9);
        h.set_op(op);
        for (const auto& [name, begin, rows, row_size] : ranges) {
          auto* r = h.add_dense_ranges();
          r->set_tensor_name(name);
          r->set_row_begin(begin);
          r->set_row_count(rows);
          r->set_row_size(row_size);
        }
        return h.SerializeAsString();
      };
  const auto kPush = v1::DataHeader::PUSH_DENSE_BATCH;
  const auto kPull = v1::DataHeader::PULL_DENSE_BATCH;
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::string values36 = FloatBytes(std::vector<float>(36, 0.25f));
  std::vector<float> with_nan(36, 0.25f);
  with_nan[35] = NAN;
  struct Case {
    std::string what;
    std::vector<std::string> frames;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"an unknown tensor second",
       {batch(kPush, {{"small", 0, 4, 8}, {"nope", 0, 4, 1}}), values36},
       "nope"},
      {"the wrong row size",
       {batch(kPush, {{"small", 0, 4, 8}, {"bias", 0, 1, 4}}), values36},
       "assumes rows of 4 floats"},
      {"rows past the part",
       {batch(kPush, {{"small", 0, 4, 8}, {"bias", 8, 4, 1}}), values36},
       "not within"},
      {"NaN in the last range",
       {batch(kPush, {{"small", 0, 4, 8}, {"bias", 0, 4, 1}}),
        FloatBytes(with_nan)},
       "NaN"},
      {"a range end that overflows",
       {batch(kPush, {{"small", 0, 4, 8}, {"bias", kMax - 1, 4, 1}}), values36},
       "overflow"},
      {"a tensor twice",
       {batch(kPush, {{"small", 0, 4, 8}, {"small", 0, 0, 1}}), values36},
       "small twice"},
      {"a short values frame",
       {batch(kPush, {{"small", 0, 4, 8}, {"bias", 0, 4, 1}}),
        values36.substr(4)},
       "does not hold the ranges' 36 floats"},
      {"an embedding table",
       {batch(kPull, {{"small", 0, 4, 8}, {"emb", 0, 1, kDim}})},
       "embedding table"},
      {"a pull that assumes other rows",
       {batch(kPull, {{"small", 0, 4, 8}, {"bias", 0, 1, int64_t{1} << 20}})},
       "assumes rows of"},
      {"a segment this shard never made",
       {[&] {
         v1::DataHeader h;
         h.ParseFromString(batch(kPush, {{"small", 0, 4, 8}}));
         h.set_shm_segment(12345);
         h.set_shm_offset(0);
         return h.SerializeAsString();
       }()},
       "not open on this shard"},
  };
  for (const Case& c : cases) {
    auto reply = raw.RoundTrip(c.frames);
    ASSERT_THAT(reply, IsOk()) << c.what;
    ASSERT_EQ(reply->size(), 1u) << c.what;
    auto header = ParseDataHeader((*reply)[0].view());
    ASSERT_THAT(header, IsOk());
    EXPECT_NE(header->status_code(), 0) << c.what;
    EXPECT_THAT(header->status_message(), HasSubstr(c.message)) << c.what;
  }
  EXPECT_EQ(PullDense("small", 32), small);
  EXPECT_EQ(PullDense("bias", 10), bias);
  // The shard still serves a good batch.
  auto reply = raw.RoundTrip(
      {batch(kPush, {{"small", 0, 4, 8}, {"bias", 0, 4, 1}}), values36});
  ASSERT_THAT(reply, IsOk());
  auto header = ParseDataHeader((*reply)[0].view());
  ASSERT_THAT(header, IsOk());
  EXPECT_EQ(header->status_code(), 0) << header->status_message();
  EXPECT_EQ(header->versions_size(), 2);
  EXPECT_NE(PullDense("small", 32), small);
}

}  // namespace
}  // namespace tessera

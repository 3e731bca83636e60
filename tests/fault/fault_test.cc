// The fault-injection suite (issue 7): a small Fashion-MNIST job runs on real
// tessera-ps and tessera-worker processes while shards and workers are
// killed, stopped, frozen, cut off, fed bad input and starved of disk; after
// each scenario the job's promises are checked:
//
//   - the job completes, and every process exits as it should;
//   - each partition is completed exactly once per epoch (the coordinator's
//     per-epoch sample count equals the examples per epoch);
//   - the final test accuracy is within 3 points of an undisturbed run of
//     the same job (the baseline, run once per suite; see the note at
//     kAccuracyTolerance on why the job is as large as it is);
//   - a shard killed with SIGKILL comes back with at least every update that
//     a completed flush covered (measured exactly: part versions sampled
//     before a flush that then completed), and the updates lost are printed;
//   - no process of the scenario is left behind, and each wait is bounded.
//
// The suite runs in network and mount namespaces of its own when it may
// (root): its loopback, its veth pairs and its tmpfs mounts vanish with it.
// Scenarios that need them skip with the reason when they cannot be made.
//
// Every scenario writes its section of docs/reliability.md to
// $TEST_UNDECLARED_OUTPUTS_DIR/reliability/ (tests/fault/assemble_report.py).
//
// TESSERA_FAULT_LONG=1 runs the longer variant: 10 epochs instead of 4.

#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "ps/client/model_pull.h"
#include "ps/client/ps_client.h"
#include "ps/common/status_macros.h"
#include "ps/common/status_matchers.h"
#include "ps/wire/data_wire.h"
#include "ps/wire/shm_segment.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tessera/v1/tensor.pb.h"
#include "tests/fault/fault_cluster.h"
#include "tests/fault/metrics_text.h"
#include "tests/fault/report.h"
#include "tools/launch/launcher.h"

namespace tessera::fault {

// Set by main() before any thread starts.
struct Isolation {
  bool own_netns = false;
  bool own_mountns = false;
  std::string why_not;  // when either is false
};
Isolation g_isolation;

namespace {

using ::testing::HasSubstr;

// Accuracy. The final test accuracy of this asynchronous job varies from run
// to run with no fault at all (which updates each pull sees depends on
// timing, and Adam at a constant learning rate keeps moving): a 6,000-example,
// 2-epoch job spread over 1.5 points in identical runs, 24,000-36,000 examples
// x 3 epochs at Adam 5e-4 over about 2.5, and even 60,000 x 5 at 5e-4 over
// 1.6 (85.5-87.1%). The default job (JobOptions' defaults: MLP 784-64-10,
// Adam 2e-4, batch 64, all 60,000 examples x 4 epochs) ended within 0.65
// point in repeated runs, one of them next to two CPU hogs (85.0-85.7%).
// Scenario minus median-of-3 baseline, measured: -0.06 to +0.30 points in the
// 8 scenarios of one run, and in a later run -1.31 to +0.17 (SIGKILL lowest;
// that scenario also loses up to one flush interval of training per kill),
// with the three baseline runs themselves spread over 1.38 points
// (84.29-85.67%); a fresh-clone CI run on 2 loaded cores measured 1.02 and
// failed the former 1-point bound. The bound is 3 points: 2.3x the worst
// delta measured and 2.2x the widest spread of identical runs. It is a coarse
// check that a fault did not break training (a shard that lost its trained
// values would cost tens of points); the exact promises (no completed flush
// lost, every partition completed exactly once) are checked exactly. See
// tests/fault/findings.md.
constexpr int kBaselineRuns = 3;
constexpr double kAccuracyTolerance = 3.0;

bool LongRun() {
  const char* v = std::getenv("TESSERA_FAULT_LONG");
  return v != nullptr && std::string(v) == "1";
}

JobOptions DefaultJob() {
  JobOptions job;
  if (LongRun()) job.epochs = 10;
  return job;
}

double AccuracyTolerance() { return kAccuracyTolerance; }

// Upper bounds of waits: generous, for two loaded cores; they bound a hang,
// they do not judge speed.
absl::Duration JobTimeout() {
  return LongRun() ? absl::Minutes(20) : absl::Minutes(5);
}

std::string ScenarioDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tessera-fault-",
                      getpid(), "/", name);
}

std::string Seconds(absl::Duration d) {
  return absl::StrFormat("%.2f s", absl::ToDoubleSeconds(d));
}

std::string Ms(absl::Duration d) {
  return absl::StrFormat("%.0f ms", absl::ToDoubleMilliseconds(d));
}

std::string Pct(double v) { return absl::StrFormat("%.2f%%", v); }

int64_t Sum(const std::map<std::string, int64_t>& versions) {
  int64_t s = 0;
  for (const auto& [k, v] : versions) s += v;
  return s;
}

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// Sums histogram buckets over shards (same bounds on every shard).
Buckets AddBuckets(const Buckets& a, const Buckets& b) {
  if (a.empty()) return b;
  Buckets out = a;
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) {
    out[i].second += b[i].second;
  }
  return out;
}

Buckets PushLatency(FaultCluster& c) {
  Buckets total;
  for (int i = 0; i < c.num_shards(); ++i) {
    auto m = c.ShardMetrics(i);
    if (!m.ok()) continue;
    total = AddBuckets(total,
                       m->HistogramBuckets("tessera_ps_request_latency_seconds",
                                           "rpc=\"push\""));
  }
  return total;
}

// --- The tiered table
// ---------------------------------------------------------

// The side table of the SIGKILL and SIGTERM scenarios (issue 13): an
// unbounded embedding table with a disk tier, kTieredMaxRows rows per shard
// in memory, pushed rows of ids from [0, kTieredIds), so that most of each
// shard's rows live on disk.
constexpr char kTieredTable[] = "tiered_emb";
constexpr int64_t kTieredDim = 8;
constexpr int64_t kTieredMaxRows = 64;
constexpr uint64_t kTieredIds = 4096;

v1::TensorSpec TieredSpec() {
  v1::TensorSpec spec;
  spec.set_name(kTieredTable);
  spec.add_shape(0);
  spec.add_shape(kTieredDim);
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.mutable_initializer()->set_kind(v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-0.1f);
  spec.mutable_initializer()->set_high(0.1f);
  spec.mutable_initializer()->set_seed(13);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(0.05f);
  spec.mutable_memory_policy()->set_max_rows(kTieredMaxRows);
  spec.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  return spec;
}

bool IsTiered(const std::string& tensor) { return tensor == kTieredTable; }
bool IsNotTiered(const std::string& tensor) { return !IsTiered(tensor); }

// Adds the tensors of `part` (pulled separately) to `into`.
void Merge(const ShardSnapshot& part, ShardSnapshot* into) {
  for (const auto& [name, b] : part.bytes) into->bytes[name] = b;
  for (const auto& [name, v] : part.versions) into->versions[name] = v;
  for (const auto& [name, n] : part.rows) into->rows[name] = n;
}

// The sum of the versions of the job's own parts (the tiered table left out).
int64_t ModelSum(const std::map<std::string, int64_t>& versions) {
  int64_t s = 0;
  for (const auto& [k, v] : versions) s += IsTiered(k) ? 0 : v;
  return s;
}

// The tiered table's series in one shard's /metrics.
struct TieredMetrics {
  double rows = 0;  // in memory
  double disk_bytes = 0;
  double evictions = 0;
  double disk_hits = 0;
};

absl::StatusOr<TieredMetrics> ScrapeTiered(FaultCluster& c, int shard) {
  TESSERA_ASSIGN_OR_RETURN(MetricsText m, c.ShardMetrics(shard));
  const std::string label = absl::StrCat("tensor=\"", kTieredTable, "\"");
  TieredMetrics t;
  t.rows = m.Get("tessera_ps_table_rows", label);
  t.disk_bytes = m.Get("tessera_ps_table_disk_bytes", label);
  t.evictions = m.Get("tessera_ps_table_evictions_total", label);
  t.disk_hits = m.Get("tessera_ps_table_disk_hits_total", label);
  return t;
}

std::string Describe(const TieredMetrics& t) {
  return absl::StrFormat(
      "%.0f rows in memory, %.0f bytes on disk, %.0f evictions, %.0f disk "
      "hits",
      t.rows, t.disk_bytes, t.evictions, t.disk_hits);
}

// Pushes rows of the tiered table from a thread of its own while a job
// trains, through a PsClient of its own: kTieredIdsPerPush random ids per
// push, one push per kPushPeriod, at most kMaxPushes pushes and no longer
// than `max_time`. Pushes that fail (a shard killed, restarting or
// stopping) are counted, not fatal; the client resends what it may.
// Thread-safe.
class TieredPusher {
 public:
  static constexpr int kIdsPerPush = 64;
  static constexpr int64_t kMaxPushes = 20000;
  // Paces the pushes, so that the side table does not take a core from the
  // job; not a wait for anything.
  static constexpr absl::Duration kPushPeriod = absl::Milliseconds(10);

  struct Stats {
    int64_t pushes = 0;  // answered OK
    int64_t failed = 0;
    std::string last_error;
  };

  // Connects to every shard of `c`, creates the table and starts pushing.
  static absl::StatusOr<std::unique_ptr<TieredPusher>> Start(
      FaultCluster& c, absl::Duration max_time) {
    PsClientOptions options;
    options.shard_addresses = c.grpc_addresses();
    options.default_deadline = absl::Seconds(3);
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<PsClient> client,
                             PsClient::Connect(options));
    const v1::TensorSpec spec = TieredSpec();
    TESSERA_RETURN_IF_ERROR(client->CreateTensors({spec}));
    std::unique_ptr<TieredPusher> p(new TieredPusher(std::move(client)));
    p->thread_ = std::thread(
        [raw = p.get(), until = absl::Now() + max_time] { raw->Run(until); });
    return p;
  }

  ~TieredPusher() { Stop(); }

  // Returns once no push is in flight and none will start before Resume().
  void Pause() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    paused_ = true;
    mu_.Await(absl::Condition(&idle_));
  }
  void Resume() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  // Stops pushing and joins the thread (at most one push's deadline).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  explicit TieredPusher(std::unique_ptr<PsClient> client)
      : client_(std::move(client)) {}

  void Run(absl::Time until) {
    std::mt19937_64 random(13);
    std::uniform_int_distribution<uint64_t> pick(0, kTieredIds - 1);
    std::vector<uint64_t> ids(kIdsPerPush);
    std::vector<float> grad(kIdsPerPush * kTieredDim);
    for (int64_t n = 0; n < kMaxPushes; ++n) {
      {
        absl::MutexLock lock(&mu_);
        idle_ = true;
        mu_.AwaitWithTimeout(absl::Condition(&stop_), kPushPeriod);
        auto may_push = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || !paused_;
        };
        mu_.Await(absl::Condition(&may_push));
        if (stop_ || absl::Now() > until) return;
        idle_ = false;
      }
      for (int i = 0; i < kIdsPerPush; ++i) {
        ids[i] = pick(random);
        for (int64_t d = 0; d < kTieredDim; ++d) {
          grad[i * kTieredDim + d] = 0.01f * static_cast<float>(d + 1);
        }
      }
      absl::Status pushed = client_->PushRows(kTieredTable, ids, grad).get();
      absl::MutexLock lock(&mu_);
      if (pushed.ok()) {
        ++stats_.pushes;
      } else {
        ++stats_.failed;
        stats_.last_error = std::string(pushed.message());
      }
    }
    absl::MutexLock lock(&mu_);
    idle_ = true;
  }

  const std::unique_ptr<PsClient> client_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool idle_ ABSL_GUARDED_BY(mu_) = true;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

// The scenario report's line on the side client; `when` says when it pushes
// ("all through the kills"), or nothing.
std::string TieredInjected(const std::string& when) {
  return absl::StrCat(
      "beside the job, a client of the test pushes rows of a tiered embedding "
      "table (`",
      kTieredTable, "`, dim ", kTieredDim, ", ids from [0, ", kTieredIds,
      "), memory_policy { max_rows: ", kTieredMaxRows,
      " eviction: EVICTION_DISK }: most rows on disk)", when.empty() ? "" : " ",
      when, ", ", TieredPusher::kIdsPerPush, " ids per push");
}

// The side client's pushes: a figure of `r` and a line on stdout.
TieredPusher::Stats ReportPushes(const TieredPusher& pusher,
                                 ScenarioReport& r) {
  const TieredPusher::Stats pushed = pusher.stats();
  r.Figure(absl::StrCat(kTieredTable, " pushes answered OK / failed"),
           absl::StrCat(pushed.pushes, " / ", pushed.failed));
  std::cout << kTieredTable << ": " << pushed.pushes << " pushes, "
            << pushed.failed << " failed (last: " << pushed.last_error << ")"
            << std::endl;
  return pushed;
}

// Waits until every shard's tiered table has evicted rows and read rows back
// from disk (the table really is tiered); what each shard reported.
absl::StatusOr<std::vector<TieredMetrics>> WaitUntilTiered(
    FaultCluster& c, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<TieredMetrics> seen(c.num_shards());
  while (true) {
    bool all = true;
    for (int s = 0; s < c.num_shards(); ++s) {
      auto t = ScrapeTiered(c, s);
      if (t.ok()) seen[s] = *t;
      all = all && seen[s].evictions > 0 && seen[s].disk_hits > 0;
    }
    if (all) return seen;
    if (absl::Now() > deadline) {
      std::string got;
      for (int s = 0; s < c.num_shards(); ++s) {
        absl::StrAppend(&got, " shard ", s, ": ", Describe(seen[s]), ";");
      }
      return absl::DeadlineExceededError(
          absl::StrCat(kTieredTable,
                       " evicted no row or read none back from "
                       "disk within ",
                       absl::FormatDuration(timeout), ":", got));
    }
    absl::SleepFor(absl::Milliseconds(100));  // Scrape period.
  }
}

// --- The baseline ------------------------------------------------------------

struct Baseline {
  absl::Status status;
  std::vector<double> accuracies;  // one per run
  double accuracy = 0;             // their median
  std::vector<absl::Duration> took;
  Buckets push_latency;  // of the first run
  std::vector<std::string> problems;
};

// What a scenario measured about one SIGKILL + restart.
struct KillRecord {
  int shard = 0;
  double progress = 0;
  int64_t flushed = 0;      // sum of part versions covered by a completed flush
  int64_t last_seen = 0;    // sum of part versions last seen before the kill
  int64_t restored = 0;     // sum right after the restart
  std::string short_parts;  // parts restored below the flushed sample
  std::map<std::string, int64_t> flushed_parts;   // the sample, per part
  std::map<std::string, int64_t> restored_parts;  // per part
  absl::Duration lost_window;  // kill time - when `restored` was current
  bool lost_window_known = true;
  absl::Duration restart;  // kill -> SERVING again
  absl::Duration resumed;  // kill -> the shard's versions grow again
};

class FaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (report_ == nullptr) return;
    std::string outcome = "passed";
    if (IsSkipped()) {
      outcome = "skipped: " + skip_reason_;
    } else if (HasFailure()) {
      outcome = "FAILED (see the test log)";
    }
    report_->Figure("scenario wall time", Seconds(absl::Now() - start_));
    report_->Write(outcome);
  }

  ScenarioReport& Report(const std::string& id, const std::string& title) {
    report_ = std::make_unique<ScenarioReport>(id, title);
    start_ = absl::Now();
    return *report_;
  }

  static ClusterOptions DefaultOptions() {
    ClusterOptions o;
    o.job = DefaultJob();
    return o;
  }

  // The undisturbed runs every scenario compares against; run once per
  // suite, kBaselineRuns times (their spread is the job's own noise).
  static const Baseline& GetBaseline() {
    static Baseline* baseline = [] {
      auto* b = new Baseline;
      for (int i = 0; i < kBaselineRuns && b->status.ok(); ++i) {
        RunBaseline(i, b);
      }
      if (!b->accuracies.empty()) {
        std::vector<double> sorted = b->accuracies;
        std::sort(sorted.begin(), sorted.end());
        b->accuracy = sorted[sorted.size() / 2];
      }
      return b;
    }();
    return *baseline;
  }

  static void RunBaseline(int i, Baseline* b) {
    const absl::Time start = absl::Now();
    ClusterOptions o = DefaultOptions();
    o.job.name = absl::StrCat("fault-baseline-", i);
    auto c = FaultCluster::Start(o, ScenarioDir(absl::StrCat("baseline-", i)));
    if (!c.ok()) {
      b->status = c.status();
      return;
    }
    for (const char* w : {"w0", "w1"}) {
      absl::Status s = (*c)->StartWorker(w);
      if (!s.ok()) b->status = s;
    }
    auto job = (*c)->WaitForJob(JobTimeout());
    if (!job.ok()) {
      b->status = job.status();
      return;
    }
    b->problems = CheckJobInvariants(*job, o.job);
    b->took.push_back(absl::Now() - start);
    auto accuracy = (*c)->TestAccuracy();
    if (!accuracy.ok()) {
      b->status = accuracy.status();
      return;
    }
    b->accuracies.push_back(*accuracy);
    if (i == 0) b->push_latency = PushLatency(**c);
    for (const char* w : {"w0", "w1"}) {
      auto code = (*c)->WaitWorker(w, absl::Seconds(60));
      if (!code.ok() || *code != 0) {
        b->status = absl::InternalError(
            absl::StrCat("baseline worker ", w, " did not exit 0"));
      }
    }
    absl::Status shut = (*c)->Shutdown();
    if (!shut.ok()) b->status = shut;
    const std::vector<std::string> left = (*c)->ProcessesLeft();
    if (!left.empty()) {
      b->status = absl::InternalError(
          absl::StrCat("processes left: ", absl::StrJoin(left, "; ")));
    }
  }

  // --- Steps shared by scenarios --------------------------------------------

  // Waits for the job, checks the invariants and the accuracy, waits for
  // every worker not in `killed` to exit 0, then (with `shutdown`) stops the
  // shards with SIGTERM (exit 0) and checks that no process is left.
  void FinishJob(FaultCluster& c, ScenarioReport& r,
                 const std::set<std::string>& killed = {},
                 bool shutdown = true) {
    const Baseline& base = GetBaseline();
    auto job = c.WaitForJob(JobTimeout());
    ASSERT_TRUE(job.ok()) << job.status();
    std::vector<std::string> problems =
        CheckJobInvariants(*job, c.options().job);
    for (const auto& p : problems) ADD_FAILURE() << p;
    std::vector<std::string> samples;
    for (const auto& e : job->epoch_stats()) {
      samples.push_back(
          absl::StrCat(e.samples(), " (", e.partitions_done(), " partitions)"));
    }
    r.Figure("samples per epoch (expected " +
                 absl::StrCat(c.options().job.limit, ", ",
                              c.options().job.partitions, " partitions)"),
             absl::StrJoin(samples, ", "));
    r.Figure("exactly-once partitions", problems.empty() ? "yes" : "NO");
    auto accuracy = c.TestAccuracy();
    ASSERT_TRUE(accuracy.ok()) << accuracy.status();
    EXPECT_NEAR(*accuracy, base.accuracy, AccuracyTolerance())
        << "baseline " << absl::StrJoin(base.accuracies, ", ");
    r.Figure("test accuracy (baseline)",
             absl::StrCat(Pct(*accuracy), " (", Pct(base.accuracy), ")"));
    r.Figure("accuracy delta (bound)",
             absl::StrFormat("%+.2f points (within %.1f)",
                             *accuracy - base.accuracy, AccuracyTolerance()));
    for (const std::string& w : c.AllWorkers()) {
      if (killed.count(w)) continue;
      auto code = c.WaitWorker(w, absl::Seconds(60));
      ASSERT_TRUE(code.ok()) << "worker " << w << ": " << code.status();
      EXPECT_EQ(*code, 0) << "worker " << w << " log:\n" << c.WorkerLog(w);
    }
    if (!shutdown) return;
    ShutdownAndCheck(c, r);
  }

  void ShutdownAndCheck(FaultCluster& c, ScenarioReport& r) {
    absl::Status shut = c.Shutdown();
    EXPECT_TRUE(shut.ok()) << shut;
    const std::vector<std::string> left = c.ProcessesLeft();
    EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n");
    r.Figure("processes left behind", absl::StrCat(left.size()));
  }

  // Kills shard `shard` with SIGKILL and restarts it on the same directory,
  // measuring what the restart kept.
  absl::StatusOr<KillRecord> KillAndRestart(FaultCluster& c, int shard,
                                            double progress) {
    KillRecord k;
    k.shard = shard;
    k.progress = progress;
    const absl::Duration flush = absl::Seconds(c.options().flush_interval_s);
    // A sample of the versions that a flush started afterwards must cover.
    const absl::Time sampled_at = absl::Now();
    auto sample = c.PartVersions(shard);
    if (!sample.ok()) return sample.status();
    absl::Status flushed =
        c.WaitForFlushAfter(shard, sampled_at, 20 * flush + absl::Seconds(5));
    if (!flushed.ok()) return flushed;
    k.flushed = Sum(*sample);
    k.flushed_parts = *sample;
    // Versions over the last moments before the kill, for the lost window;
    // the kill follows the last sample at once.
    std::vector<std::pair<absl::Time, int64_t>> timeline;
    const absl::Time watch_until = absl::Now() + 2 * flush;
    for (int i = 0; i < 1000; ++i) {
      auto v = c.PartVersions(shard);
      if (v.ok()) timeline.push_back({absl::Now(), Sum(*v)});
      if (absl::Now() >= watch_until) break;
      absl::SleepFor(absl::Milliseconds(20));  // Sampling period.
    }
    if (timeline.empty()) return absl::UnavailableError("no versions seen");
    c.SignalShard(shard, SIGKILL);
    const absl::Time killed_at = absl::Now();
    k.last_seen = timeline.back().second;
    auto code = c.WaitShard(shard, absl::Seconds(20));
    if (!code.ok()) return code.status();
    // What the restart will load, read from the directory before any worker
    // can push to the restarted shard.
    auto restored = c.StoredVersions(shard);
    if (!restored.ok()) return restored.status();
    k.restored = Sum(*restored);
    k.restored_parts = *restored;
    absl::Status started = c.StartShard(shard);
    if (!started.ok()) return started;
    k.restart = absl::Now() - killed_at;
    for (const auto& [name, v] : *sample) {
      auto it = restored->find(name);
      const int64_t got = it == restored->end() ? 0 : it->second;
      if (got < v) absl::StrAppend(&k.short_parts, name, ":", got, "<", v, " ");
    }
    // When was the restored state current? The last sample not above it.
    k.lost_window_known = false;
    for (auto it = timeline.rbegin(); it != timeline.rend(); ++it) {
      if (it->second <= k.restored) {
        k.lost_window = killed_at - it->first;
        k.lost_window_known = true;
        break;
      }
    }
    if (!k.lost_window_known)
      k.lost_window = killed_at - timeline.front().first;
    // Training goes on: the restarted shard applies updates again (the
    // model's: a side table's pushes do not count).
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (true) {
      auto now = c.PartVersions(shard);
      if (now.ok() && ModelSum(*now) > ModelSum(*restored)) break;
      auto status = c.Status();
      if (status.ok() && status->finished()) break;
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "shard ", shard, " applied no update within 120 s of restarting"));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    k.resumed = absl::Now() - killed_at;
    return k;
  }

  // Waits until the sum of shard `shard`'s part versions exceeds `above`.
  absl::StatusOr<absl::Duration> WaitForUpdates(FaultCluster& c, int shard,
                                                int64_t above,
                                                absl::Duration timeout) {
    const absl::Time start = absl::Now();
    while (true) {
      auto v = c.PartVersions(shard);
      if (v.ok() && Sum(*v) > above) return absl::Now() - start;
      auto status = c.Status();
      if (status.ok() && status->finished()) return absl::Now() - start;
      if (absl::Now() - start > timeout) {
        return absl::DeadlineExceededError(
            absl::StrCat("shard ", shard, " applied no update within ",
                         absl::FormatDuration(timeout)));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  std::string skip_reason_;
  std::unique_ptr<ScenarioReport> report_;
  absl::Time start_;
};

#define FT_SKIP(reason)                                    \
  do {                                                     \
    skip_reason_ = (reason);                               \
    std::cout << "SKIPPED: " << skip_reason_ << std::endl; \
    GTEST_SKIP() << skip_reason_;                          \
  } while (0)

// --- Scenarios
// -----------------------------------------------------------------

TEST_F(FaultTest, UndisturbedJobSetsTheBaseline) {
  ScenarioReport& r = Report("01-baseline", "Baseline: the job undisturbed");
  const Baseline& b = GetBaseline();
  ASSERT_TRUE(b.status.ok()) << b.status;
  for (const auto& p : b.problems) ADD_FAILURE() << p;
  const JobOptions job = DefaultJob();
  r.Injected(absl::StrCat("nothing: 2 shards, 2 workers; run ", kBaselineRuns,
                          " times"));
  r.Figure("job", absl::StrCat(
                      "Fashion-MNIST MLP 784-", absl::StrJoin(job.hidden, "-"),
                      "-10, ", job.limit, " examples x ", job.epochs,
                      " epochs, ", job.partitions, " partitions/epoch, batch ",
                      job.batch_size, ", ", job.optimizer, ", ",
                      job.consistency, " staleness ", job.staleness));
  std::vector<std::string> accuracies, took;
  for (double a : b.accuracies) accuracies.push_back(Pct(a));
  for (absl::Duration d : b.took) took.push_back(Seconds(d));
  r.Figure("test accuracy of each run (median)",
           absl::StrCat(absl::StrJoin(accuracies, ", "), " (", Pct(b.accuracy),
                        ")"));
  r.Figure("job wall time of each run", absl::StrJoin(took, ", "));
  r.Figure("push p99 (shards' tessera_ps_request_latency_seconds, run 1)",
           Ms(absl::Seconds(HistogramQuantile(0.99, b.push_latency))));
  r.Figure("exactly-once partitions", b.problems.empty() ? "yes" : "NO");
  r.Note(absl::StrFormat(
      "Every scenario below compares its final test accuracy with this run "
      "(the median, when the baseline runs more than once) and fails if "
      "they differ by more than %.1f points (see \"About the accuracy "
      "bound\" in the findings).",
      AccuracyTolerance()));
  for (double a : b.accuracies) {
    EXPECT_GT(a, 70) << "the baseline did not learn";
  }
}

TEST_F(FaultTest, ShardsKilledMidTrainingResumeFromTheirLastFlush) {
  ScenarioReport& r = Report(
      "02-sigkill",
      "SIGKILL and restart on the same data directory: shard 1 three times "
      "and shard 0 (the coordinator) three times, in one job");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-sigkill";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("sigkill")));
  // The tiered table is tiered before the job starts: every shard has
  // evicted rows to disk and read some back.
  TESSERA_ASSERT_OK_AND_ASSIGN(auto pusher,
                               TieredPusher::Start(*c, JobTimeout()));
  TESSERA_ASSERT_OK_AND_ASSIGN(std::vector<TieredMetrics> tiered,
                               WaitUntilTiered(*c, absl::Seconds(120)));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  r.Injected(absl::StrCat(
      "SIGKILL of shard 1 at 10%, 34% and 58% of the job and of shard 0 at "
      "22%, 46% and 70%; each restarted at once on its ports and directory; "
      "flush interval ",
      Ms(absl::Seconds(o.flush_interval_s))));
  r.Injected(TieredInjected("all through the kills"));
  for (int s = 0; s < c->num_shards(); ++s) {
    r.Figure(absl::StrCat(kTieredTable, " on shard ", s,
                          " before the job (tessera_ps_table_*)"),
             Describe(tiered[s]));
  }
  r.Table({"kill", "shard", "at", "versions flushed before kill", "last seen",
           "after restart", "updates lost", "lost window (flush interval)",
           "restart", "training resumed",
           absl::StrCat(kTieredTable, " flushed / after restart")});
  const std::vector<std::pair<double, int>> schedule = {
      {0.10, 1}, {0.22, 0}, {0.34, 1}, {0.46, 0}, {0.58, 1}, {0.70, 0}};
  int n = 0;
  int64_t lost_total = 0;
  for (const auto& [at, shard] : schedule) {
    TESSERA_ASSERT_OK_AND_ASSIGN(auto status,
                                 c->WaitForProgress(at, JobTimeout()));
    TESSERA_ASSERT_OK_AND_ASSIGN(
        KillRecord k,
        KillAndRestart(*c, shard, FaultCluster::Progress(status)));
    ++n;
    // The promise: a restart keeps everything a completed flush covered,
    // the tiered table's part included (short_parts checks every part).
    EXPECT_TRUE(k.short_parts.empty())
        << "shard " << shard << " lost flushed updates: " << k.short_parts;
    EXPECT_GE(k.restored, k.flushed);
    EXPECT_EQ(k.flushed_parts.count(kTieredTable), 1)
        << "shard " << shard << " listed no part of " << kTieredTable;
    const int64_t tiered_flushed = k.flushed_parts[kTieredTable];
    const int64_t tiered_restored = k.restored_parts[kTieredTable];
    EXPECT_GE(tiered_restored, tiered_flushed) << kTieredTable;
    const int64_t lost = std::max<int64_t>(0, k.last_seen - k.restored);
    lost_total += lost;
    r.Row({absl::StrCat(n), absl::StrCat(shard),
           absl::StrFormat("%.0f%%", 100 * k.progress), absl::StrCat(k.flushed),
           absl::StrCat(k.last_seen), absl::StrCat(k.restored),
           absl::StrCat(lost),
           absl::StrCat(k.lost_window_known ? "" : "> ", Ms(k.lost_window),
                        " (", Ms(absl::Seconds(o.flush_interval_s)), ")"),
           Ms(k.restart), Ms(k.resumed),
           absl::StrCat(tiered_flushed, " / ", tiered_restored)});
    std::cout << "kill " << n << ": shard " << shard << " lost " << lost
              << " updates (" << k.last_seen << " -> " << k.restored
              << ", flushed " << k.flushed << ")" << std::endl;
  }
  r.Figure("updates lost over 6 kills (sum of part versions)",
           absl::StrCat(lost_total));
  // The side client pushes until the job ends.
  ASSERT_THAT(c->WaitForJob(JobTimeout()).status(), IsOk());
  pusher->Stop();
  // Since each shard's last restart: the restored table was tiered again.
  for (int s = 0; s < c->num_shards(); ++s) {
    TESSERA_ASSERT_OK_AND_ASSIGN(TieredMetrics t, ScrapeTiered(*c, s));
    r.Figure(absl::StrCat(kTieredTable, " on shard ", s,
                          " at the end (since its last restart)"),
             Describe(t));
  }
  const TieredPusher::Stats pushed = ReportPushes(*pusher, r);
  EXPECT_GT(pushed.pushes, 0);
  r.Observed(absl::StrCat(
      "every kill restored at least the flushed versions of every part, "
      "the tiered table's part included (its rows on disk); pushes of the "
      "side client to a killed shard failed or were resent, and are counted"));
  r.Note(
      "Versions count the updates applied to each tensor part; \"updates "
      "lost\" is the sum over the shard's parts of the versions last seen "
      "before the kill minus those stored in its data directory (read with "
      "the shard's own storage code between the kill and the restart): a "
      "lower bound, as updates applied between the last look and the kill "
      "are not seen. \"Lost window\" is how old the restored state was at "
      "the kill: the promise is at most one flush interval plus the flush "
      "itself. \"Restart\" is kill to SERVING (including the read of the "
      "directory); \"training resumed\" is kill to the shard's next applied "
      "update of the model (the side table's pushes left out). The tiered "
      "table's part is one of the parts checked: its version counts the "
      "pushes applied to it.");
  FinishJob(*c, r);
}

TEST_F(FaultTest, ShardStoppedWithSigtermRestartsBitIdentical) {
  ScenarioReport& r = Report(
      "03-sigterm",
      "SIGTERM and restart: parameters bit-identical across the restart");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-sigterm";
  // Only SIGTERM's final flush may persist the model's updates compared here.
  o.flush_interval_s = 30;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("sigterm")));
  // The tiered table pulled whole from every shard, twice (they must agree:
  // its client is idle). Caveat: each pull flushes its shard first (the
  // table's rows are read from disk), so the model's updates that only the
  // final flush may persist are those applied after it.
  auto pull_tiered = [&]() -> absl::StatusOr<std::vector<ShardSnapshot>> {
    std::vector<ShardSnapshot> out(c->num_shards());
    for (int s = 0; s < c->num_shards(); ++s) {
      TESSERA_ASSIGN_OR_RETURN(out[s], c->PullShard(s, IsTiered));
      TESSERA_ASSIGN_OR_RETURN(ShardSnapshot again, c->PullShard(s, IsTiered));
      if (!(again == out[s])) {
        return absl::InternalError(absl::StrCat(
            kTieredTable, " on shard ", s, " changed with its client idle"));
      }
    }
    return out;
  };
  // Waits until every shard has applied an update of the model since now.
  auto wait_for_model_updates = [&]() -> absl::Status {
    for (int s = 0; s < c->num_shards(); ++s) {
      TESSERA_ASSIGN_OR_RETURN(auto v, c->PartVersions(s));
      TESSERA_RETURN_IF_ERROR(
          WaitForUpdates(*c, s, Sum(v), absl::Seconds(120)).status());
    }
    return absl::OkStatus();
  };
  // The side client's table is tiered before the job starts. With no
  // periodic flush for 30 s, its whole-table pulls are the flushes that let
  // it evict.
  TESSERA_ASSERT_OK_AND_ASSIGN(auto pusher,
                               TieredPusher::Start(*c, JobTimeout()));
  std::vector<TieredMetrics> tiered;
  for (int i = 0; i < 100; ++i) {
    for (int s = 0; s < c->num_shards(); ++s) {
      ASSERT_THAT(c->PullShard(s, IsTiered).status(), IsOk());
    }
    auto seen = WaitUntilTiered(*c, absl::Seconds(1));
    if (seen.ok()) {
      tiered = *std::move(seen);
      break;
    }
  }
  ASSERT_EQ(static_cast<int>(tiered.size()), c->num_shards())
      << kTieredTable << " evicted no row or read none back from disk";
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  r.Injected(TieredInjected(""));
  r.Injected(absl::StrCat(
      "at 30% of the job: the side client paused (it acknowledges it is "
      "idle) and ",
      kTieredTable,
      " pulled whole from every shard (the pull flushes first); once every "
      "shard has applied more updates of the model, both workers paused "
      "(SIGSTOP) until the shards' parameters are quiet, both shards stopped "
      "with SIGTERM and restarted, workers and side client resumed "
      "(SIGCONT); flush interval 30 s, so only the final flush on SIGTERM "
      "persists the model's last updates"));
  r.Injected(absl::StrCat(
      "at 60%: the side client stopped and ", kTieredTable,
      " pulled again; after the job (and its workers' exit): every shard "
      "stopped with SIGTERM and restarted, then the accuracy measured"));
  for (int s = 0; s < c->num_shards(); ++s) {
    r.Figure(absl::StrCat(kTieredTable, " on shard ", s,
                          " before the job (tessera_ps_table_*)"),
             Describe(tiered[s]));
  }
  r.Table({"when", "shard", "versions before SIGTERM", "after restart",
           "bit-identical",
           absl::StrCat(kTieredTable, " rows compared (in memory)")});
  ASSERT_THAT(c->WaitForProgress(0.3, JobTimeout()).status(), IsOk());
  pusher->Pause();
  TESSERA_ASSERT_OK_AND_ASSIGN(std::vector<ShardSnapshot> tiered_before,
                               pull_tiered());
  ASSERT_THAT(wait_for_model_updates(), IsOk());
  for (const std::string& w : c->AllWorkers()) c->SignalWorker(w, SIGSTOP);
  // Quiet: two pulls in a row agree (pushes already sent have landed). The
  // model's tensors only: a pull of the tiered table would flush.
  std::vector<ShardSnapshot> before(c->num_shards());
  for (int s = 0; s < c->num_shards(); ++s) {
    TESSERA_ASSERT_OK_AND_ASSIGN(before[s], c->PullShard(s, IsNotTiered));
    bool quiet = false;
    for (int i = 0; i < 100 && !quiet; ++i) {
      absl::SleepFor(absl::Milliseconds(100));  // Sampling period.
      TESSERA_ASSERT_OK_AND_ASSIGN(ShardSnapshot again,
                                   c->PullShard(s, IsNotTiered));
      quiet = again == before[s];
      before[s] = std::move(again);
    }
    ASSERT_TRUE(quiet) << "shard " << s << " kept changing with workers paused";
    Merge(tiered_before[s], &before[s]);
  }
  int64_t tiered_rows = 0;
  for (int s = 0; s < c->num_shards(); ++s) {
    tiered_rows += before[s].rows[kTieredTable];
  }
  // Most of them were on disk, and all are compared.
  EXPECT_GT(tiered_rows, kTieredMaxRows * c->num_shards())
      << kTieredTable << " rows pulled";
  TESSERA_ASSERT_OK_AND_ASSIGN(v1::JobStatus job_before, c->Status());
  for (int s = 0; s < c->num_shards(); ++s) c->SignalShard(s, SIGTERM);
  for (int s = 0; s < c->num_shards(); ++s) {
    TESSERA_ASSERT_OK_AND_ASSIGN(int code, c->WaitShard(s, absl::Seconds(30)));
    EXPECT_EQ(code, 0) << c->ShardLog(s);
    EXPECT_THAT(c->ShardLog(s), HasSubstr("final flush done"));
  }
  for (int s = 0; s < c->num_shards(); ++s)
    ASSERT_THAT(c->StartShard(s), IsOk());
  int64_t bytes = 0;
  for (int s = 0; s < c->num_shards(); ++s) {
    // A restarted shard leaves the table's rows on disk: this pull reads them
    // from there.
    TESSERA_ASSERT_OK_AND_ASSIGN(ShardSnapshot after, c->PullShard(s));
    EXPECT_TRUE(after == before[s])
        << "shard " << s << " differs after SIGTERM + restart (versions "
        << before[s].total_version() << " -> " << after.total_version() << ")";
    for (const auto& [name, b] : after.bytes) bytes += b.size();
    TESSERA_ASSERT_OK_AND_ASSIGN(TieredMetrics t, ScrapeTiered(*c, s));
    r.Row({"mid-job", absl::StrCat(s), absl::StrCat(before[s].total_version()),
           absl::StrCat(after.total_version()),
           after == before[s] ? "yes" : "NO",
           absl::StrFormat("%d (%.0f)", after.rows[kTieredTable], t.rows)});
  }
  TESSERA_ASSERT_OK_AND_ASSIGN(v1::JobStatus job_after, c->Status());
  EXPECT_EQ(job_after.epoch(), job_before.epoch());
  EXPECT_EQ(job_after.partitions_done(), job_before.partitions_done());
  r.Observed(absl::StrCat("coordinator state kept: epoch ",
                          job_after.epoch() + 1, ", partitions done ",
                          job_after.partitions_done(),
                          " (before: ", job_before.partitions_done(), ")"));
  r.Observed(absl::StrCat(
      kTieredTable, ": ", tiered_rows, " rows compared over ", c->num_shards(),
      " shards holding at most ", kTieredMaxRows,
      " each in memory; after the restart they were read from disk"));
  for (const std::string& w : c->AllWorkers()) c->SignalWorker(w, SIGCONT);
  pusher->Resume();

  ASSERT_THAT(c->WaitForProgress(0.6, JobTimeout()).status(), IsOk());
  pusher->Stop();
  TESSERA_ASSERT_OK_AND_ASSIGN(std::vector<ShardSnapshot> tiered_final,
                               pull_tiered());
  const TieredPusher::Stats pushed = ReportPushes(*pusher, r);
  // After the job: the final state survives SIGTERM + restart too. Checked
  // before FinishJob, whose accuracy pull (the whole model, the tiered table
  // included) would flush every shard; the workers exit first.
  ASSERT_THAT(c->WaitForJob(JobTimeout()).status(), IsOk());
  for (const std::string& w : c->AllWorkers()) {
    TESSERA_ASSERT_OK_AND_ASSIGN(int code, c->WaitWorker(w, absl::Seconds(60)));
    EXPECT_EQ(code, 0) << "worker " << w << " log:\n" << c->WorkerLog(w);
  }
  std::vector<ShardSnapshot> final_state(c->num_shards());
  for (int s = 0; s < c->num_shards(); ++s) {
    TESSERA_ASSERT_OK_AND_ASSIGN(final_state[s], c->PullShard(s, IsNotTiered));
    Merge(tiered_final[s], &final_state[s]);
    c->SignalShard(s, SIGTERM);
    TESSERA_ASSERT_OK_AND_ASSIGN(int code, c->WaitShard(s, absl::Seconds(30)));
    EXPECT_EQ(code, 0);
    ASSERT_THAT(c->StartShard(s), IsOk());
    TESSERA_ASSERT_OK_AND_ASSIGN(ShardSnapshot after, c->PullShard(s));
    EXPECT_TRUE(after == final_state[s]) << "shard " << s;
    TESSERA_ASSERT_OK_AND_ASSIGN(TieredMetrics t, ScrapeTiered(*c, s));
    r.Row({"after the job", absl::StrCat(s),
           absl::StrCat(final_state[s].total_version()),
           absl::StrCat(after.total_version()),
           after == final_state[s] ? "yes" : "NO",
           absl::StrFormat("%d (%.0f)", after.rows[kTieredTable], t.rows)});
  }
  // The accuracy of the model as restored.
  FinishJob(*c, r, {}, /*shutdown=*/false);
  if (HasFatalFailure()) return;
  r.Figure("bytes of parameters and row ids compared (mid-job)",
           absl::StrCat(bytes));
  r.Note(absl::StrCat(
      "A whole-table pull of ", kTieredTable,
      " (or of the whole model) flushes its shard first, as the table's rows "
      "are read from disk. So the tiered table is pulled (at 30% and 60%) "
      "while the job still trains, the model's tensors without it, and the "
      "accuracy after the restart: the model's updates applied since that "
      "pull are persisted by SIGTERM's final flush alone. \"Rows compared "
      "(in memory)\": the table's rows in the snapshot after the restart, "
      "and tessera_ps_table_rows of the restarted shard (its rows stay on "
      "disk: the pull reads them there)."));
  ShutdownAndCheck(*c, r);
}

TEST_F(FaultTest, FrozenShardsMakeWorkersSayWhatTheyWaitForThenTrainingGoesOn) {
  ScenarioReport& r = Report(
      "04-sigstop",
      "SIGSTOP for longer than the deadlines, then SIGCONT: shard 1, then "
      "shard 0 (the coordinator)");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-sigstop";
  o.call_deadline_s = 2;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("sigstop")));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  const absl::Duration freeze = absl::Seconds(8);
  r.Injected(absl::StrCat("shard 1 frozen (SIGSTOP) for ", Seconds(freeze),
                          " at 25% of the job; workers' call deadline ",
                          Seconds(absl::Seconds(o.call_deadline_s))));
  r.Injected(absl::StrCat("shard 0 frozen for ", Seconds(freeze),
                          " at 55% (longer than the lease timeout of ",
                          o.job.lease_timeout_s, " s too)"));

  // Shard 1.
  ASSERT_THAT(c->WaitForProgress(0.25, JobTimeout()).status(), IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(auto v_before, c->PartVersions(1));
  double timeouts_before = 0;
  for (const auto& w : c->RunningWorkers()) {
    auto m = c->WorkerMetrics(w);
    if (m.ok()) {
      timeouts_before += m->Get("tessera_client_timeouts_total", "shard=\"1\"");
    }
  }
  c->SignalShard(1, SIGSTOP);
  const absl::Time frozen_at = absl::Now();
  double max_waiting = 0;
  // The freeze lasts `freeze`; meanwhile the workers' metrics are scraped.
  for (int i = 0; i < 1000 && absl::Now() - frozen_at < freeze; ++i) {
    for (const auto& w : c->RunningWorkers()) {
      auto m = c->WorkerMetrics(w);
      if (m.ok()) {
        max_waiting =
            std::max(max_waiting,
                     m->Get("tessera_client_waiting_seconds", "shard=\"1\""));
      }
    }
    absl::SleepFor(absl::Milliseconds(200));  // Scrape period.
  }
  c->SignalShard(1, SIGCONT);
  TESSERA_ASSERT_OK_AND_ASSIGN(
      absl::Duration resumed,
      WaitForUpdates(*c, 1, Sum(v_before), absl::Seconds(120)));
  double timeouts_after = 0;
  for (const auto& w : c->RunningWorkers()) {
    auto m = c->WorkerMetrics(w);
    if (m.ok()) {
      timeouts_after += m->Get("tessera_client_timeouts_total", "shard=\"1\"");
    }
  }
  bool logged = false;
  std::string example;
  for (const auto& w : c->AllWorkers()) {
    const std::string log = c->WorkerLog(w);
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (absl::StrContains(line, absl::StrCat("waiting for shard 1 at ",
                                               c->data_address(1)))) {
        logged = true;
        if (example.empty())
          example = std::string(line.substr(line.find(']') + 2));
      }
    }
  }
  EXPECT_TRUE(logged) << "no worker logged what it waited for";
  EXPECT_GT(max_waiting, 0.5) << "tessera_client_waiting_seconds{shard=\"1\"}";
  EXPECT_GT(timeouts_after, timeouts_before);
  r.Observed(absl::StrCat("worker log: `", example, "`"));
  r.Figure("shard 1: max tessera_client_waiting_seconds{shard=\"1\"} scraped",
           absl::StrFormat("%.2f s", max_waiting));
  r.Figure("shard 1: calls timed out (tessera_client_timeouts_total)",
           absl::StrCat(timeouts_after - timeouts_before));
  r.Figure("shard 1: updates applied again after SIGCONT", Seconds(resumed));

  // Shard 0, the coordinator.
  ASSERT_THAT(c->WaitForProgress(0.55, JobTimeout()).status(), IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(auto v0_before, c->PartVersions(1));
  c->SignalShard(0, SIGSTOP);
  const absl::Time frozen0_at = absl::Now();
  double max_coordinator_waiting = 0, max_shard0_waiting = 0;
  for (int i = 0; i < 1000 && absl::Now() - frozen0_at < freeze; ++i) {
    for (const auto& w : c->RunningWorkers()) {
      auto m = c->WorkerMetrics(w);
      if (m.ok()) {
        // Shard 0 is the coordinator and a data shard: a worker frozen out
        // waits in a coordinator call (WaitForClock, a completion) or in a
        // pull from shard 0, whichever it was in; each shows in its gauge.
        max_coordinator_waiting =
            std::max(max_coordinator_waiting,
                     m->Get("tessera_worker_coordinator_waiting_seconds"));
        max_shard0_waiting =
            std::max(max_shard0_waiting,
                     m->Get("tessera_client_waiting_seconds", "shard=\"0\""));
      }
    }
    absl::SleepFor(absl::Milliseconds(200));  // Scrape period.
  }
  c->SignalShard(0, SIGCONT);
  const absl::Time thawed = absl::Now();
  TESSERA_ASSERT_OK_AND_ASSIGN(
      auto status_after,
      c->WaitForStatus([](const v1::JobStatus& s) { return true; },
                       absl::Seconds(60), "an answer from the coordinator"));
  const int done_at_thaw =
      status_after.partitions_done() + status_after.epoch() * o.job.partitions;
  ASSERT_THAT(c->WaitForStatus(
                   [&](const v1::JobStatus& s) {
                     return s.finished() ||
                            s.partitions_done() + s.epoch() * o.job.partitions >
                                done_at_thaw;
                   },
                   absl::Seconds(120), "a partition completed after SIGCONT")
                  .status(),
              IsOk());
  const absl::Duration resumed0 = absl::Now() - thawed;
  (void)v0_before;
  bool coordinator_logged = false;
  for (const auto& w : c->AllWorkers()) {
    const std::string log = c->WorkerLog(w);
    coordinator_logged =
        coordinator_logged ||
        LogHasLine(log, {"coordinator at " + c->grpc_address(0)});
  }
  EXPECT_TRUE(coordinator_logged)
      << "no worker logged that it waited for the coordinator";
  EXPECT_GT(std::max(max_coordinator_waiting, max_shard0_waiting), 1)
      << "tessera_worker_coordinator_waiting_seconds, "
         "tessera_client_waiting_seconds{shard=\"0\"}";
  r.Figure("shard 0: max tessera_worker_coordinator_waiting_seconds scraped",
           absl::StrFormat("%.2f s", max_coordinator_waiting));
  r.Figure("shard 0: max tessera_client_waiting_seconds{shard=\"0\"} scraped",
           absl::StrFormat("%.2f s", max_shard0_waiting));
  r.Figure("shard 0: a partition completed again after SIGCONT",
           Seconds(resumed0));
  r.Observed(coordinator_logged
                 ? "workers logged the coordinator they waited for "
                   "(`waiting for coordinator at ...` / `heartbeat to "
                   "coordinator at ... failed`)"
                 : "workers did NOT log the coordinator they waited for");
  FinishJob(*c, r);
}

TEST_F(FaultTest, WorkerChurnCostsOnlyUnfinishedLeases) {
  ScenarioReport& r = Report(
      "05-churn", "Worker churn: killed, added and removed, all at once too");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-churn";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("churn")));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  std::set<std::string> killed;
  r.Table({"at", "action", "workers running after"});
  auto row = [&](double at, const std::string& action) {
    r.Row({absl::StrFormat("%.0f%%", 100 * at), action,
           absl::StrJoin(c->RunningWorkers(), " ")});
  };
  auto kill = [&](const std::string& w) {
    c->SignalWorker(w, SIGKILL);
    killed.insert(w);
    auto code = c->WaitWorker(w, absl::Seconds(10));
    EXPECT_TRUE(code.ok()) << code.status();
  };
  auto term = [&](const std::vector<std::string>& ws) {
    for (const auto& w : ws) c->SignalWorker(w, SIGTERM);
    for (const auto& w : ws) {
      auto code = c->WaitWorker(w, absl::Seconds(60));
      ASSERT_TRUE(code.ok()) << w << ": " << code.status();
      EXPECT_EQ(*code, 0) << c->WorkerLog(w);
    }
  };

  ASSERT_THAT(c->WaitForProgress(0.10, JobTimeout()).status(), IsOk());
  kill("w0");
  ASSERT_THAT(c->StartWorker("w2"), IsOk());
  ASSERT_THAT(c->StartWorker("w3"), IsOk());
  row(0.10, "SIGKILL w0; add w2, w3");

  ASSERT_THAT(c->WaitForProgress(0.25, JobTimeout()).status(), IsOk());
  term({"w1"});
  row(0.25, "SIGTERM w1 (hands back its lease, exits 0)");

  ASSERT_THAT(c->WaitForProgress(0.40, JobTimeout()).status(), IsOk());
  {
    const std::vector<std::string> all = c->RunningWorkers();
    for (const auto& w : all) c->SignalWorker(w, SIGKILL);
    for (const auto& w : all) {
      killed.insert(w);
      EXPECT_TRUE(c->WaitWorker(w, absl::Seconds(10)).ok());
    }
    ASSERT_THAT(c->StartWorker("w4"), IsOk());
    ASSERT_THAT(c->StartWorker("w5"), IsOk());
    row(0.40, absl::StrCat("SIGKILL every worker at once (",
                           absl::StrJoin(all, ", "), "); add w4, w5"));
  }

  ASSERT_THAT(c->WaitForProgress(0.55, JobTimeout()).status(), IsOk());
  ASSERT_THAT(c->StartWorker("w6"), IsOk());
  kill("w4");
  row(0.55, "add w6; SIGKILL w4");

  ASSERT_THAT(c->WaitForProgress(0.70, JobTimeout()).status(), IsOk());
  {
    const std::vector<std::string> all = c->RunningWorkers();
    term(all);
    ASSERT_THAT(c->StartWorker("w7"), IsOk());
    ASSERT_THAT(c->StartWorker("w8"), IsOk());
    row(0.70, absl::StrCat("SIGTERM every worker at once (",
                           absl::StrJoin(all, ", "), "); add w7, w8"));
  }
  TESSERA_ASSERT_OK_AND_ASSIGN(MetricsText coordinator, c->ShardMetrics(0));
  r.Figure("leases expired (tessera_coordinator_lease_expirations_total)",
           absl::StrCat(
               coordinator.Get("tessera_coordinator_lease_expirations_total")));
  r.Figure("membership changes (join / leave / expire)",
           absl::StrCat(
               coordinator.Get("tessera_coordinator_membership_changes_total",
                               "event=\"join\""),
               " / ",
               coordinator.Get("tessera_coordinator_membership_changes_total",
                               "event=\"leave\""),
               " / ",
               coordinator.Get("tessera_coordinator_membership_changes_total",
                               "event=\"expire\"")));
  r.Injected(absl::StrCat(
      "9 workers over the job: SIGKILL of single workers and of every worker "
      "at once, SIGTERM of single workers and of every worker at once, "
      "workers added meanwhile; lease timeout ",
      o.job.lease_timeout_s, " s"));
  FinishJob(*c, r, killed);
}

TEST_F(FaultTest, NanGradientsAreRefusedCountedAndTheJobStillLearns) {
  ScenarioReport& r =
      Report("06-nan", "A worker whose pushes carry NaN gradients");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-nan";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("nan")));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("nan", {"--debug_nan_every_n_steps=10"}), IsOk());
  r.Injected(
      "one of the two workers started with --debug_nan_every_n_steps=10: "
      "every 10th step it pushes gradients made of NaN (so about 5% of the "
      "job's updates are refused)");
  FinishJob(*c, r, {}, /*shutdown=*/false);
  if (HasFatalFailure()) return;
  double rejected = 0;
  for (int s = 0; s < c->num_shards(); ++s) {
    TESSERA_ASSERT_OK_AND_ASSIGN(MetricsText m, c->ShardMetrics(s));
    rejected +=
        m.Get("tessera_ps_rejected_requests_total", "reason=\"non_finite\"");
  }
  const std::string log = c->WorkerLog("nan");
  int injected = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "pushing NaN gradients")) ++injected;
  }
  EXPECT_GT(injected, 0);
  // Each NaN step pushes every tensor; each piece is refused by its shard.
  EXPECT_GE(rejected, injected);
  auto tensors = PullModel(c->grpc_addresses(), absl::Seconds(30));
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  int64_t non_finite = 0;
  for (const auto& t : *tensors) {
    for (float v : t.values) non_finite += std::isfinite(v) ? 0 : 1;
  }
  EXPECT_EQ(non_finite, 0) << "a NaN reached the parameters";
  r.Figure("NaN steps pushed by the worker", absl::StrCat(injected));
  r.Figure(
      "tessera_ps_rejected_requests_total{reason=\"non_finite\"} (all "
      "shards)",
      absl::StrCat(rejected));
  r.Figure("non-finite values in the final model", absl::StrCat(non_finite));
  r.Observed(
      "the NaN worker logs `push failed (update lost): ... non-finite` "
      "and carries on; its refused pushes change nothing");
  ShutdownAndCheck(*c, r);
}

// A tmpfs whose size can be changed under a running shard: shrunk to what it
// holds (disk full) and grown again (the disk recovers). Unmounted on
// destruction; lives in the suite's own mount namespace.
class Tmpfs {
 public:
  ~Tmpfs() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  absl::Status Mount(const std::string& path, int64_t bytes) {
    path_ = path;
    std::filesystem::create_directories(path);
    if (mount("tessera-fault", path.c_str(), "tmpfs", 0,
              absl::StrCat("size=", bytes).c_str()) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("mount -t tmpfs ", path, ": ", strerror(errno)));
    }
    mounted_ = true;
    return absl::OkStatus();
  }
  absl::Status Resize(int64_t bytes) {
    if (mount("tessera-fault", path_.c_str(), "tmpfs", MS_REMOUNT,
              absl::StrCat("size=", bytes).c_str()) != 0) {
      return absl::InternalError(absl::StrCat(
          "remount ", path_, " size=", bytes, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }
  int64_t Used() const {
    struct statvfs v {};
    if (statvfs(path_.c_str(), &v) != 0) return -1;
    return static_cast<int64_t>(v.f_blocks - v.f_bfree) * v.f_frsize;
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Disabled: in the last run the shard wrote into RocksDB's preallocated WAL
// space and no flush failed within 60 s of the disk filling; see
// tests/fault/findings.md. Run with --gtest_also_run_disabled_tests.
TEST_F(FaultTest, FullDiskFailsFlushesVisiblyAndRecoversWhenThereIsRoom) {
  ScenarioReport& r = Report(
      "07-disk-full",
      "Shard 1's data directory runs out of space during flushes, then gets "
      "room again");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  if (!g_isolation.own_mountns) {
    FT_SKIP("no mount namespace of its own (" + g_isolation.why_not +
            "): the suite mounts no tmpfs on the host's");
  }
  const std::string dir = ScenarioDir("disk-full");
  std::filesystem::remove_all(dir);
  Tmpfs disk;
  // Below RocksDB's WAL preallocation (1.1 x 64 MiB), so that every WAL
  // append needs free space.
  const int64_t initial = 64 << 20;
  absl::Status mounted = disk.Mount(dir + "-disk", initial);
  if (!mounted.ok()) FT_SKIP(std::string(mounted.message()));
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-disk";
  o.shard_data_dirs[1] = dir + "-disk/ps-1";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c, FaultCluster::Start(o, dir));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  ASSERT_THAT(c->WaitForProgress(0.2, JobTimeout()).status(), IsOk());

  // Disk full: the file system shrinks to what it holds.
  const int64_t used = disk.Used();
  std::string files;
  for (const auto& e :
       std::filesystem::directory_iterator(dir + "-disk/ps-1")) {
    struct stat st {};
    if (stat(e.path().c_str(), &st) == 0) {
      absl::StrAppend(&files, e.path().filename().string(), " ", st.st_size,
                      "B/", st.st_blocks * 512, "B; ");
    }
  }
  std::cout << "disk-full: shard 1 holds " << files << std::endl;
  ASSERT_THAT(disk.Resize(used + 4096), IsOk());
  const absl::Time full_at = absl::Now();
  r.Injected(
      absl::StrCat("at 20% of the job, shard 1's tmpfs (", initial >> 20,
                   " MiB) shrunk to the ", used >> 10,
                   " KiB it held: every write needs space it does not have"));
  double failures = 0;
  for (int i = 0; i < 600; ++i) {
    auto m = c->ShardMetrics(1);
    if (m.ok()) failures = m->Get("tessera_ps_flush_failures_total");
    if (failures >= 3) break;
    if (absl::Now() - full_at > absl::Seconds(60)) {
      // Say what the shard is doing: its flush figures and its threads.
      const std::string stacks_log = dir + "/shard1-stacks.txt";
      RunCommand({"/usr/bin/gdb", "-batch", "-p", absl::StrCat(c->shard_pid(1)),
                  "-ex", "thread apply all bt 12"},
                 stacks_log, absl::Seconds(60))
          .IgnoreError();
      std::string flush_metrics;
      if (m.ok()) {
        flush_metrics = absl::StrCat(
            "last_flush_age ", m->Get("tessera_ps_last_flush_age_seconds"),
            " s, flushes observed ",
            m->Get("tessera_ps_flush_duration_seconds_count"), ", bytes ",
            m->Get("tessera_ps_flush_bytes_total"));
      }
      FAIL() << "no failed flush within 60 s of the disk filling (used "
             << disk.Used() << " of " << used + 4096 << " bytes; "
             << flush_metrics << "); files then: " << files
             << "\nshard 1 threads (gdb):\n"
             << [&] {
                  std::ifstream in(stacks_log);
                  std::stringstream ss;
                  ss << in.rdbuf();
                  return ss.str().substr(0, 30000);
                }();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Duration detected = absl::Now() - full_at;
  EXPECT_TRUE(LogHasLine(c->ShardLog(1), {"flush to", "failed"}));
  // Still serving from memory: health, and updates applied.
  ASSERT_THAT(launch::WaitForServing(c->grpc_address(1), nullptr,
                                     absl::Now() + absl::Seconds(5)),
              IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(auto during, c->PartVersions(1));
  TESSERA_ASSERT_OK_AND_ASSIGN(
      absl::Duration applied,
      WaitForUpdates(*c, 1, Sum(during), absl::Seconds(60)));
  TESSERA_ASSERT_OK_AND_ASSIGN(MetricsText full_metrics, c->ShardMetrics(1));
  r.Figure("3 failed flushes counted (tessera_ps_flush_failures_total) after",
           Seconds(detected));
  r.Figure("tessera_ps_last_flush_age_seconds while full",
           absl::StrFormat("%.1f s", full_metrics.Get(
                                         "tessera_ps_last_flush_age_seconds")));
  r.Figure("updates still applied while full (next one after)",
           Seconds(applied));
  std::string failed_line;
  for (absl::string_view line : absl::StrSplit(c->ShardLog(1), '\n')) {
    if (absl::StrContains(line, "flush to") &&
        absl::StrContains(line, "failed")) {
      const size_t why = line.find("UNAVAILABLE: ");
      failed_line =
          std::string(why == absl::string_view::npos ? line : line.substr(why));
      const size_t path = failed_line.find(dir);
      if (path != std::string::npos) {
        failed_line.replace(path, dir.size(), "<dir>");
      }
      break;
    }
  }
  r.Observed(
      absl::StrCat("shard 1 log: `flush to <dir>-disk/ps-1 failed "
                   "(attempt 1), serving from memory and retrying in "
                   "500ms: ",
                   failed_line, "`"));

  // Room again.
  ASSERT_THAT(disk.Resize(int64_t{1} << 30), IsOk());
  const absl::Time room_at = absl::Now();
  absl::Status recovered = c->WaitForFlushAfter(1, room_at, absl::Seconds(30));
  EXPECT_TRUE(recovered.ok())
      << recovered << "\nshard 1 log:\n"
      << c->ShardLog(1).substr(std::max<int64_t>(
             0, static_cast<int64_t>(c->ShardLog(1).size()) - 3000));
  if (recovered.ok()) {
    r.Figure("first successful flush after the disk had room",
             Seconds(absl::Now() - room_at));
    EXPECT_TRUE(LogHasLine(c->ShardLog(1), {"works again"}));
  } else {
    r.Observed("flushes did NOT succeed again once the disk had room");
  }
  ASSERT_TRUE(recovered.ok());
  // What is flushed now survives a crash.
  TESSERA_ASSERT_OK_AND_ASSIGN(auto status, c->Status());
  TESSERA_ASSERT_OK_AND_ASSIGN(
      KillRecord k, KillAndRestart(*c, 1, FaultCluster::Progress(status)));
  EXPECT_TRUE(k.short_parts.empty()) << k.short_parts;
  r.Observed(absl::StrCat(
      "after recovery, SIGKILL + restart of shard 1 restored versions ",
      k.restored, " (a completed flush covered ", k.flushed, ")"));
  FinishJob(*c, r);
}

// A network namespace with a veth pair to the suite's own namespace; removed
// on destruction (and with the suite's namespaces in any case).
class NetnsLink {
 public:
  explicit NetnsLink(std::string log) : log_(std::move(log)) {}
  ~NetnsLink() {
    if (!name_.empty()) {
      RunCommand({ip_, "netns", "del", name_}, log_).IgnoreError();
    }
  }
  absl::Status Create() {
    ip_ = IpBinary();
    if (ip_.empty()) return absl::FailedPreconditionError("no ip binary");
    const std::string name = absl::StrCat("tessera-ft-", getpid());
    // /run/netns on a tmpfs of this mount namespace: nothing is left on the
    // host's /run even if the suite dies.
    std::filesystem::create_directories("/run/netns");
    if (mount("tessera-netns", "/run/netns", "tmpfs", 0, "size=1m") != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("mount tmpfs on /run/netns: ", strerror(errno)));
    }
    TESSERA_RETURN_IF_ERROR(Run({ip_, "netns", "add", name}));
    name_ = name;
    TESSERA_RETURN_IF_ERROR(Run(
        {ip_, "link", "add", "ftA", "type", "veth", "peer", "name", "ftB"}));
    TESSERA_RETURN_IF_ERROR(Run({ip_, "link", "set", "ftB", "netns", name_}));
    TESSERA_RETURN_IF_ERROR(
        Run({ip_, "addr", "add", "10.77.0.1/24", "dev", "ftA"}));
    TESSERA_RETURN_IF_ERROR(Run({ip_, "link", "set", "ftA", "up"}));
    TESSERA_RETURN_IF_ERROR(
        InNs({"addr", "add", "10.77.0.2/24", "dev", "ftB"}));
    TESSERA_RETURN_IF_ERROR(InNs({"link", "set", "ftB", "up"}));
    TESSERA_RETURN_IF_ERROR(InNs({"link", "set", "lo", "up"}));
    return absl::OkStatus();
  }
  absl::Status Down() { return InNs({"link", "set", "ftB", "down"}); }
  absl::Status Up() { return InNs({"link", "set", "ftB", "up"}); }
  std::vector<std::string> Wrapper() const {
    return {ip_, "netns", "exec", name_};
  }
  const std::string& name() const { return name_; }

 private:
  absl::Status Run(std::vector<std::string> argv) {
    const std::string what = absl::StrJoin(argv, " ");
    auto code = RunCommand(std::move(argv), log_);
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("`", what, "` exited with ", *code));
    }
    return absl::OkStatus();
  }
  absl::Status InNs(std::vector<std::string> args) {
    std::vector<std::string> argv = {ip_, "netns", "exec", name_, ip_};
    for (auto& a : args) argv.push_back(std::move(a));
    return Run(std::move(argv));
  }

  const std::string log_;
  std::string ip_;
  std::string name_;
};

TEST_F(FaultTest, PartitionedShardMakesCallersTimeOutAndRetryNeverHang) {
  ScenarioReport& r = Report(
      "08-partition",
      "Network partition: shard 1 in its own network namespace, its link "
      "taken down and up");
  ASSERT_TRUE(GetBaseline().status.ok()) << GetBaseline().status;
  if (!g_isolation.own_netns || !g_isolation.own_mountns) {
    FT_SKIP("no network and mount namespaces of its own (" +
            g_isolation.why_not + ")");
  }
  const std::string dir = ScenarioDir("partition");
  std::filesystem::create_directories(dir);
  NetnsLink link(dir + "-ip.log");
  absl::Status created = link.Create();
  if (!created.ok()) {
    FT_SKIP(
        absl::StrCat("cannot create a network namespace with a veth "
                     "pair here: ",
                     created.message()));
  }
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-partition";
  o.call_deadline_s = 2;
  o.shard_hosts[1] = "10.77.0.2";
  o.shard_wrappers[1] = link.Wrapper();
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c, FaultCluster::Start(o, dir));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  const absl::Duration cut = absl::Seconds(6);
  r.Injected(absl::StrCat(
      "shard 1 serves from namespace ", link.name(),
      " at 10.77.0.2 over a veth pair; at 30% of the job its side of the "
      "link goes down for ",
      Seconds(cut),
      " (packets silently dropped: no reset, no error), then up; "
      "workers' call deadline ",
      Seconds(absl::Seconds(o.call_deadline_s))));
  ASSERT_THAT(c->WaitForProgress(0.3, JobTimeout()).status(), IsOk());
  TESSERA_ASSERT_OK_AND_ASSIGN(auto v_before, c->PartVersions(1));
  ASSERT_THAT(link.Down(), IsOk());
  const absl::Time down_at = absl::Now();

  // A caller of our own: a gRPC call with a 1 s deadline fails with
  // DEADLINE_EXCEEDED instead of hanging; run on a thread so that a hang
  // is caught by the bound below, not by Bazel's timeout.
  std::atomic<bool> probe_done{false};
  grpc::Status probe_status;
  absl::Duration probe_took;
  std::thread probe([&] {
    auto stub = v1::ParameterServer::NewStub(grpc::CreateChannel(
        c->grpc_address(1), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    v1::ShardInfo info;
    const absl::Time start = absl::Now();
    probe_status = stub->GetShardInfo(&context, {}, &info);
    probe_took = absl::Now() - start;
    probe_done = true;
  });
  double max_waiting = 0;
  for (int i = 0; i < 1000 && absl::Now() - down_at < cut; ++i) {
    for (const auto& w : c->RunningWorkers()) {
      auto m = c->WorkerMetrics(w);
      if (m.ok()) {
        max_waiting =
            std::max(max_waiting,
                     m->Get("tessera_client_waiting_seconds", "shard=\"1\""));
      }
    }
    absl::SleepFor(absl::Milliseconds(200));  // Scrape period.
  }
  EXPECT_TRUE(probe_done.load()) << "a 1 s call to the cut-off shard hung";
  probe.join();  // Bounded: the call has a deadline.
  EXPECT_EQ(probe_status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << probe_status.error_message();
  ASSERT_THAT(link.Up(), IsOk());
  const absl::Time up_at = absl::Now();
  TESSERA_ASSERT_OK_AND_ASSIGN(
      absl::Duration resumed,
      WaitForUpdates(*c, 1, Sum(v_before), absl::Seconds(120)));
  (void)up_at;
  double timeouts = 0;
  for (const auto& w : c->RunningWorkers()) {
    auto m = c->WorkerMetrics(w);
    if (m.ok())
      timeouts += m->Get("tessera_client_timeouts_total", "shard=\"1\"");
  }
  std::string example;
  for (const auto& w : c->AllWorkers()) {
    for (absl::string_view line : absl::StrSplit(c->WorkerLog(w), '\n')) {
      if (example.empty() &&
          absl::StrContains(line, "waiting for shard 1 at 10.77.0.2")) {
        example = std::string(line.substr(line.find(']') + 2));
      }
    }
  }
  EXPECT_FALSE(example.empty()) << "no worker logged what it waited for";
  EXPECT_GT(timeouts, 0);
  EXPECT_GT(max_waiting, 0.5);
  r.Observed(absl::StrCat(
      "our own GetShardInfo with a 1 s deadline: ",
      probe_status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
          ? "DEADLINE_EXCEEDED"
          : probe_status.error_message(),
      " after ", Ms(probe_took)));
  r.Observed(absl::StrCat("worker log: `", example, "`"));
  r.Figure("max tessera_client_waiting_seconds{shard=\"1\"} scraped",
           absl::StrFormat("%.2f s", max_waiting));
  r.Figure("calls timed out on shard 1 (tessera_client_timeouts_total)",
           absl::StrCat(timeouts));
  r.Figure("updates applied on shard 1 again after the link came up",
           Seconds(resumed));
  FinishJob(*c, r);
}

// Updates applied by every shard so far (their
// tessera_ps_updates_applied_total), or -1 if a shard cannot be scraped.
double UpdatesApplied(FaultCluster& c) {
  double sum = 0;
  for (int i = 0; i < c.num_shards(); ++i) {
    auto m = c.ShardMetrics(i);
    if (!m.ok()) return -1;
    sum += m->Get("tessera_ps_updates_applied_total");
  }
  return sum;
}

TEST_F(FaultTest, ModelPullersDoNotStopPushes) {
  ScenarioReport& r =
      Report("09-load", "Load: model pullers in a loop while the job trains");
  const Baseline& base = GetBaseline();
  ASSERT_TRUE(base.status.ok()) << base.status;
  ClusterOptions o = DefaultOptions();
  o.job.name = "fault-load";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto c,
                               FaultCluster::Start(o, ScenarioDir("load")));
  ASSERT_THAT(c->StartWorker("w0"), IsOk());
  ASSERT_THAT(c->StartWorker("w1"), IsOk());
  constexpr int kPullers = 3;
  constexpr absl::Duration kPullPause = absl::Milliseconds(50);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> pulls{0}, failures{0}, bytes{0}, overlapped{0};
  std::vector<std::thread> pullers;
  const std::vector<std::string> addresses = c->grpc_addresses();
  // Until the first worker has registered the model on every shard, a pull
  // may find a tensor on one shard and not yet on the next (DataLoss: an
  // incomplete tensor), which is right, not a pull held back by pushes. So
  // the pullers start once a whole model has been pulled (bounded poll).
  {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::Status whole = absl::UnknownError("not pulled yet");
    while (absl::Now() < give_up) {
      auto model = PullModel(addresses, absl::Seconds(30));
      whole = model.status();
      if (model.ok() && !model->empty()) break;
      absl::SleepFor(absl::Milliseconds(20));  // Polling, bounded above.
    }
    ASSERT_TRUE(whole.ok()) << "no whole model within 60 s: " << whole;
  }
  absl::Mutex first_failure_mu;
  std::string first_failure;
  for (int i = 0; i < kPullers; ++i) {
    pullers.emplace_back([&] {
      // Bounded: stops when the job ends (or after 100,000 pulls).
      for (int n = 0; n < 100000 && !stop; ++n) {
        const double applied_before = UpdatesApplied(*c);
        auto model = PullModel(addresses, absl::Seconds(30));
        const double applied_after = UpdatesApplied(*c);
        if (!model.ok()) {
          ++failures;
          absl::MutexLock lock(&first_failure_mu);
          if (first_failure.empty()) {
            first_failure = model.status().ToString();
          }
        } else {
          ++pulls;
          for (const auto& t : *model) bytes += t.values.size() * sizeof(float);
          // A push applied while this pull was in flight: pulls do not hold
          // pushes back.
          if (applied_before >= 0 && applied_after > applied_before) {
            ++overlapped;
          }
        }
        absl::SleepFor(kPullPause);  // A client's pace, not a readiness wait.
      }
    });
  }
  auto job = c->WaitForJob(JobTimeout());
  stop = true;
  for (auto& t : pullers) t.join();
  ASSERT_TRUE(job.ok()) << job.status();
  const Buckets with = PushLatency(*c);
  const double p99_with = HistogramQuantile(0.99, with);
  const double p99_without = HistogramQuantile(0.99, base.push_latency);
  const double p50_with = HistogramQuantile(0.5, with);
  const double p50_without = HistogramQuantile(0.5, base.push_latency);
  EXPECT_GT(pulls.load(), 0);
  EXPECT_EQ(failures.load(), 0) << "first failed pull: " << first_failure;
  if (!first_failure.empty()) {
    r.Observed(absl::StrCat("first failed pull: `", first_failure, "`"));
  }
  // Pushes kept being applied while pulls were in flight (hundreds of pulls
  // of a job that pushes every few milliseconds: a pull that held the
  // shards' parts against pushes would leave this at 0), and every step of
  // the job was pushed: at least as many pushes as the undisturbed baseline,
  // which runs the same steps.
  EXPECT_GT(overlapped.load(), 0)
      << "no push was applied while a model pull was in flight";
  EXPECT_GE(BucketCount(with), BucketCount(base.push_latency));
  r.Injected(absl::StrCat(
      kPullers,
      " clients (threads) pulling the whole model (tools' PullModel over "
      "gRPC) in a loop, 50 ms apart, from start to end of the job"));
  r.Figure("model pulls completed (failed)",
           absl::StrCat(pulls.load(), " (", failures.load(), ")"));
  r.Figure("model bytes pulled", absl::StrCat(bytes.load()));
  r.Figure("pulls during which pushes were applied",
           absl::StrCat(overlapped.load(), " of ", pulls.load()));
  r.Figure("pushes served", absl::StrCat(BucketCount(with), " (baseline ",
                                         BucketCount(base.push_latency), ")"));
  r.Figure("push p50 with pullers (baseline)",
           absl::StrCat(Ms(absl::Seconds(p50_with)), " (",
                        Ms(absl::Seconds(p50_without)), ")"));
  r.Figure("push p99 with pullers (baseline)",
           absl::StrCat(Ms(absl::Seconds(p99_with)), " (",
                        Ms(absl::Seconds(p99_without)), ")"));
  r.Note(
      "Push latency is the shards' tessera_ps_request_latency_seconds"
      "{rpc=\"push\"} (receive to reply, all shards), whole job; quantiles "
      "as PromQL's histogram_quantile() computes them from the buckets. "
      "Reported, not judged: timings on a shared machine vary.");
  FinishJob(*c, r);
}

// --- Bad input
// -----------------------------------------------------------------

v1::TensorSpec DenseSpec(const std::string& name, std::vector<int64_t> shape) {
  v1::TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  spec.mutable_initializer()->set_kind(v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-1);
  spec.mutable_initializer()->set_high(1);
  spec.mutable_initializer()->set_seed(7);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  return spec;
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

// A raw data-plane request: frames in, the reply header out (or an error
// when none arrives within 5 s).
absl::StatusOr<v1::DataHeader> RawDataRequest(void* context,
                                              const std::string& address,
                                              std::vector<std::string> frames) {
  auto socket = ZmqSocket::Open(context, ZMQ_DEALER);
  if (!socket.ok()) return socket.status();
  absl::Status connected = socket->Connect("tcp://" + address);
  if (!connected.ok()) return connected;
  std::vector<ZmqFrame> out;
  for (const auto& f : frames) out.push_back(ZmqFrame::Copy(f));
  absl::Status sent = ZmqSendFrames(socket->get(), absl::MakeSpan(out), 0);
  if (!sent.ok()) return sent;
  zmq_pollitem_t item = {socket->get(), 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&item, 1, 5000) <= 0) {
    return absl::DeadlineExceededError("no reply within 5 s");
  }
  std::vector<ZmqFrame> reply;
  auto received = ZmqRecvFrames(socket->get(), &reply, 0, 3);
  if (!received.ok()) return received.status();
  if (reply.empty()) return absl::InternalError("empty reply");
  return ParseDataHeader(reply[0].view());
}

TEST_F(FaultTest, BadInputGetsAClearErrorIsCountedAndChangesNothing) {
  ScenarioReport& r =
      Report("10-bad-input",
             "Bad input to a live shard: gRPC and data-plane requests");
  ClusterOptions o = DefaultOptions();
  o.num_shards = 1;
  o.job.name = "fault-bad-input";
  o.shard_flags = {"--max_message_bytes=1048576"};
  TESSERA_ASSERT_OK_AND_ASSIGN(
      auto c, FaultCluster::Start(o, ScenarioDir("bad-input")));
  auto stub = v1::ParameterServer::NewStub(grpc::CreateChannel(
      c->grpc_address(0), grpc::InsecureChannelCredentials()));
  auto call = [](absl::Duration d) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
    return ctx;
  };
  {
    v1::CreateTensorsRequest create;
    *create.add_specs() = DenseSpec("w", {8, 4});
    *create.add_specs() = DenseSpec("b", {4});
    v1::TensorSpec emb = DenseSpec("emb", {0, 4});
    emb.set_kind(v1::TensorSpec::EMBEDDING);
    *create.add_specs() = emb;
    v1::CreateTensorsResponse created;
    grpc::Status s =
        stub->CreateTensors(call(absl::Seconds(5)).get(), create, &created);
    ASSERT_TRUE(s.ok()) << s.error_message();
    v1::PushGradientRequest push;  // One good update, so versions are > 0.
    push.set_tensor_name("w");
    push.set_values(FloatBytes(std::vector<float>(32, 0.5f)));
    v1::PushGradientResponse pushed;
    s = stub->PushGradient(call(absl::Seconds(5)).get(), push, &pushed);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  r.Table({"path", "input", "answer", "counted as", "state unchanged"});
  ZmqContext zmq;

  auto check = [&](const std::string& path, const std::string& what,
                   const std::function<std::pair<int, std::string>()>& send) {
    auto before = c->PullShard(0);
    auto metrics_before = c->ShardMetrics(0);
    ASSERT_TRUE(before.ok() && metrics_before.ok());
    auto [code, message] = send();
    auto after = c->PullShard(0);
    auto metrics_after = c->ShardMetrics(0);
    ASSERT_TRUE(after.ok() && metrics_after.ok());
    std::string reasons;
    double counted = 0;
    for (const char* reason :
         {"unknown_tensor", "wrong_shape", "rows_out_of_range", "wrong_shard",
          "wrong_kind", "non_finite", "oversize", "bad_spec", "spec_conflict",
          "malformed", "out_of_memory", "shm_unavailable", "other"}) {
      const std::string label = absl::StrCat("reason=\"", reason, "\"");
      const double d =
          metrics_after->Get("tessera_ps_rejected_requests_total", label) -
          metrics_before->Get("tessera_ps_rejected_requests_total", label);
      if (d > 0) {
        counted += d;
        absl::StrAppend(&reasons, reasons.empty() ? "" : ", ", reason);
      }
    }
    const bool unchanged = *after == *before;
    EXPECT_NE(code, 0) << what << " was accepted";
    EXPECT_GE(counted, 1) << what << " was not counted";
    EXPECT_TRUE(unchanged) << what << " changed the shard's state";
    r.Row({path, what,
           absl::StrCat(
               absl::StatusCodeToString(static_cast<absl::StatusCode>(code)),
               ": ", message.substr(0, 90)),
           reasons.empty() ? "NOT COUNTED" : reasons,
           unchanged ? "yes" : "NO"});
  };
  auto grpc_push = [&](v1::PushGradientRequest req) {
    return [&, req]() -> std::pair<int, std::string> {
      v1::PushGradientResponse resp;
      grpc::Status s =
          stub->PushGradient(call(absl::Seconds(5)).get(), req, &resp);
      return {s.error_code(), s.error_message()};
    };
  };
  auto grpc_create = [&](std::vector<v1::TensorSpec> specs) {
    return [&, specs]() -> std::pair<int, std::string> {
      v1::CreateTensorsRequest req;
      for (const auto& s : specs) *req.add_specs() = s;
      v1::CreateTensorsResponse resp;
      grpc::Status s =
          stub->CreateTensors(call(absl::Seconds(5)).get(), req, &resp);
      return {s.error_code(), s.error_message()};
    };
  };
  auto data = [&](std::vector<std::string> frames) {
    return [&, frames]() -> std::pair<int, std::string> {
      auto reply = RawDataRequest(zmq.get(), c->data_address(0), frames);
      if (!reply.ok())
        return {static_cast<int>(reply.status().code()),
                "(no reply) " + std::string(reply.status().message())};
      return {reply->status_code(), reply->status_message()};
    };
  };
  auto header = [](v1::DataHeader::Op op, const std::string& tensor,
                   int64_t row_begin, int64_t row_count) {
    v1::DataHeader h;
    h.set_request_id(1);
    h.set_op(op);
    h.set_tensor_name(tensor);
    h.set_row_begin(row_begin);
    h.set_row_count(row_count);
    return h.SerializeAsString();
  };
  const float nan = std::nanf("");
  const float inf = std::numeric_limits<float>::infinity();

  v1::PushGradientRequest p;
  p.set_tensor_name("nope");
  p.set_values(FloatBytes({1, 2, 3, 4}));
  check("gRPC PushGradient", "unknown tensor", grpc_push(p));
  p.set_tensor_name("w");
  p.set_values(FloatBytes({1, 2, 3}));
  check("gRPC PushGradient", "3 floats for rows of 4 (wrong shape)",
        grpc_push(p));
  p.set_values(FloatBytes({1, 2, 3, 4}));
  p.set_row_begin(8);
  check("gRPC PushGradient", "row 8 of an 8-row tensor (out of range)",
        grpc_push(p));
  p.set_row_begin(-1);
  check("gRPC PushGradient", "row -1", grpc_push(p));
  p.set_row_begin(0);
  p.set_values(FloatBytes({1, nan, 3, 4}));
  check("gRPC PushGradient", "NaN in the gradient", grpc_push(p));
  p.set_values(FloatBytes({1, 2, inf, 4}));
  check("gRPC PushGradient", "+Inf in the gradient", grpc_push(p));
  p.set_values(std::string(7, 'x'));
  check("gRPC PushGradient", "7 bytes of values (not whole floats)",
        grpc_push(p));
  p.set_values(FloatBytes(std::vector<float>(300000, 0.f)));
  check("gRPC PushGradient", "1.2 MB push over --max_message_bytes=1 MiB",
        grpc_push(p));
  p.set_values(FloatBytes({1, 2, 3, 4}));
  p.add_row_ids(3);
  check("gRPC PushGradient", "row ids for a dense tensor", grpc_push(p));
  check("gRPC CreateTensors", "same name, another shape (w [9,4])",
        grpc_create({DenseSpec("w", {9, 4})}));
  check("gRPC CreateTensors", "negative dimension",
        grpc_create({DenseSpec("neg", {-3, 4})}));
  check("gRPC CreateTensors", "a 2^40-float tensor",
        grpc_create({DenseSpec("huge", {1LL << 20, 1LL << 20})}));
  check("gRPC CreateTensors", "a 16 GiB tensor (over the memory limit)",
        grpc_create({DenseSpec("big", {1LL << 22, 1LL << 10})}));
  check("gRPC CreateTensors", "an empty name",
        grpc_create({DenseSpec("", {2})}));

  check("data plane", "garbage header frame", data({"\xff\xff\xff garbage"}));
  {
    const std::string h = header(v1::DataHeader::PUSH_DENSE, "w", 0, 1);
    check("data plane", "truncated header", data({h.substr(0, h.size() - 1)}));
  }
  check("data plane", "unknown op 99",
        data({header(static_cast<v1::DataHeader::Op>(99), "w", 0, 1)}));
  check("data plane", "push without a values frame",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 1)}));
  check("data plane", "push with 4 payload frames",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 1),
              FloatBytes({1, 2, 3, 4}), FloatBytes({1, 2, 3, 4}),
              FloatBytes({1, 2, 3, 4}), FloatBytes({1, 2, 3, 4})}));
  check("data plane", "values frame of 7 bytes",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 1),
              std::string(7, 'x')}));
  check("data plane", "row_count 2 with 1 row of values",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 2),
              FloatBytes({1, 2, 3, 4})}));
  check("data plane", "NaN in a dense push",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 1),
              FloatBytes({nan, 2, 3, 4})}));
  check("data plane", "unknown tensor",
        data({header(v1::DataHeader::PUSH_DENSE, "nope", 0, 1),
              FloatBytes({1, 2, 3, 4})}));
  check("data plane", "rows 7..9 of an 8-row tensor",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 7, 2),
              FloatBytes(std::vector<float>(8, 1.f))}));
  check("data plane", "1.2 MB message over --max_message_bytes=1 MiB",
        data({header(v1::DataHeader::PUSH_DENSE, "w", 0, 75000),
              FloatBytes(std::vector<float>(300000, 0.f))}));
  {
    std::vector<uint64_t> ids = {1, 2};
    std::string id_bytes(reinterpret_cast<const char*>(ids.data()), 16);
    check("data plane", "row pull from a dense tensor",
          data({header(v1::DataHeader::PULL_ROWS, "w", 0, 2), id_bytes}));
    check("data plane", "Inf in an embedding push",
          data({header(v1::DataHeader::PUSH_ROWS, "emb", 0, 2), id_bytes,
                FloatBytes({1, 2, 3, 4, 5, 6, inf, 8})}));
  }
  {
    // Shared memory: this suite attaches a segment of its own, then names
    // ranges of it the shard must refuse.
    v1::DataHeader attach;
    attach.set_request_id(1);
    attach.set_op(v1::DataHeader::SHM_ATTACH);
    attach.set_shm_host(ShmHostId());
    auto attached = RawDataRequest(zmq.get(), c->data_address(0),
                                   {attach.SerializeAsString()});
    ASSERT_TRUE(attached.ok()) << attached.status();
    ASSERT_EQ(attached->status_code(), 0) << attached->status_message();
    auto in_shm = [&](v1::DataHeader::Op op, int64_t offset, int64_t rows) {
      v1::DataHeader h;
      h.set_request_id(1);
      h.set_op(op);
      h.set_tensor_name("w");
      h.set_row_count(rows);
      h.set_row_size(4);
      h.set_shm_segment(attached->shm_segment());
      h.set_shm_offset(offset);
      return h.SerializeAsString();
    };
    const int64_t end = attached->shm_bytes();
    check("data plane", "shared memory: a push past the segment's end",
          data({in_shm(v1::DataHeader::PUSH_DENSE, end - 8, 1)}));
    check("data plane", "shared memory: a pull at offset INT64_MAX - 7",
          data({in_shm(v1::DataHeader::PULL_DENSE,
                       std::numeric_limits<int64_t>::max() - 7, 1)}));
    check("data plane", "shared memory: a push over the segment's header",
          data({in_shm(v1::DataHeader::PUSH_DENSE, 0, 1)}));
    check("data plane", "shared memory: rows whose bytes overflow int64",
          data({in_shm(v1::DataHeader::PUSH_DENSE, 4096,
                       std::numeric_limits<int64_t>::max() / 4)}));
    check("data plane", "shared memory: a push with a values frame too",
          data({in_shm(v1::DataHeader::PUSH_DENSE, 4096, 1),
                FloatBytes({1, 2, 3, 4})}));
  }
  r.Injected(
      "one shard with tensors w [8,4], b [4] and table emb [*,4]; "
      "each bad request is sent once, and the shard's whole state "
      "(every value, row id and version, via PullModel) is compared "
      "before and after");
  r.Note(
      "The fuzzers in tests/fuzz/ try far more inputs against the same "
      "decoders and validators (see below).");
  ShutdownAndCheck(*c, r);
}

}  // namespace

// Puts the suite in network and mount namespaces of its own when it may: its
// loopback, veth pairs and mounts are then invisible outside and vanish with
// it. Must run before any thread starts.
void Isolate() {
  std::vector<std::string> why;
  if (unshare(CLONE_NEWNS) == 0 &&
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) {
    g_isolation.own_mountns = true;
  } else {
    why.push_back(absl::StrCat("mount namespace: ", strerror(errno)));
  }
  if (unshare(CLONE_NEWNET) == 0) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
      ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
      if (ioctl(fd, SIOCSIFFLAGS, &ifr) == 0) g_isolation.own_netns = true;
    }
    if (fd >= 0) close(fd);
    if (!g_isolation.own_netns) {
      why.push_back(absl::StrCat("loopback up: ", strerror(errno)));
    }
  } else {
    why.push_back(absl::StrCat("network namespace: ", strerror(errno)));
  }
  g_isolation.why_not = absl::StrJoin(why, "; ");
  std::cout << "fault suite: "
            << (g_isolation.own_netns ? "own network namespace"
                                      : "host network (loopback)")
            << ", "
            << (g_isolation.own_mountns ? "own mount namespace" : "host mounts")
            << (g_isolation.why_not.empty() ? ""
                                            : " (" + g_isolation.why_not + ")")
            << std::endl;
}

}  // namespace tessera::fault

int main(int argc, char** argv) {
  tessera::fault::Isolate();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

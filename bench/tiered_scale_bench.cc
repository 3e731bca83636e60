// tiered_scale_bench: a tiered embedding table far larger than the shards'
// memory, filled and then trained by the synthetic click-through job, with
// what it costs on the way (issue "embedding tables larger than the shards'
// memory", item 7: 200M rows x dim 16, Adagrad, 2 shards x 4 GiB).
//
//   bazel run -c opt //bench:tiered_scale_bench -- --dir=/var/tmp/scale
//   bazel run -c opt //bench:tiered_scale_bench -- --rows=2000000
//       --memory_gb=0.1 --examples=200000   # a smoke run
//
// Needs ~160 bytes of disk per row under --dir (32 GB at 200M rows).
//
// 1. Start: --shards real tessera-ps children on 127.0.0.1 (free ports),
//    shard 0 coordinating the job, each with --max_memory_bytes; the job is
//    the synthetic click-through logreg of worker/configs/ctr_logreg.pbtxt
//    with a vocabulary of --rows ids of --dim floats, Zipf(--zipf) ids, the
//    table tiered (memory_policy { max_rows: --max_rows eviction:
//    EVICTION_DISK }) with Adagrad. Its tensors are created from the job's
//    own model (worker::ModelSpecs), as the first worker would.
// 2. Fill: every id of the vocabulary pushed once, in order, by this process
//    (PushRows of --fill_batch ids, --fill_depth in flight, zero gradients:
//    each row gets its initial values, as the job's first push of it would).
//    A push the shard's budget refuses is sent again once a flush made room
//    (docs/design.md "Disk tier"). Then waits until flushes wrote every row.
// 3. Train: one tessera-worker runs the job's --examples. At --kill_at of
//    them, shard --kill_shard is SIGKILLed and restarted on its ports (the
//    worker carries on through the outage, ps_client.h's retries); after the
//    job it is stopped with SIGTERM and restarted once more. Both restarts
//    are timed from spawn to SERVING.
//
// Every --sample_s it prints per shard: RSS, rows in memory and in all,
// pull hit rate, rows read from disk, disk bytes, flushes; then a summary:
// fill rows/s, training samples/s and rows/s, hit rate, peak RSS, disk use,
// flush times, restart times, and the job's loss.

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "glog/logging.h"
#include "ps/client/ps_client.h"
#include "ps/common/job_config.h"
#include "tests/cluster.h"
#include "worker/job_model.h"
#include "worker/model_specs.h"

ABSL_FLAG(int64_t, rows, 200000000, "Ids in the vocabulary (rows filled).");
ABSL_FLAG(int, dim, 16, "Row size of the table.");
ABSL_FLAG(int, shards, 2, "Shards.");
ABSL_FLAG(double, memory_gb, 4, "Each shard's --max_memory_bytes, in GiB.");
ABSL_FLAG(int64_t, max_rows, 0,
          "The table's max_rows (per shard); 0: half of what the budget "
          "holds at 4 x dim x 2 + 44 bytes a row (bench/README.md, "
          "row_memory_bench), the other half for rows changed since the "
          "last flush.");
ABSL_FLAG(double, zipf, 1.1, "Zipf exponent of the job's ids.");
ABSL_FLAG(int64_t, examples, 10000000, "Training examples (one epoch).");
ABSL_FLAG(int, fill_batch, 16384, "Ids per push while filling.");
ABSL_FLAG(int, fill_depth, 8, "Pushes in flight while filling.");
ABSL_FLAG(double, flush_interval_s, 5, "The shards' --flush_interval_s.");
ABSL_FLAG(double, kill_at, 0.5,
          "Fraction of the training examples after which a shard is "
          "SIGKILLed and restarted (negative: none).");
ABSL_FLAG(int, kill_shard, 1, "The shard killed and restarted.");
ABSL_FLAG(double, sample_s, 10, "Seconds between progress lines.");
ABSL_FLAG(double, timeout_s, 7200, "Give up after this long.");
ABSL_FLAG(std::string, dir, "",
          "Where the shards' directories go (default $TEST_TMPDIR or /tmp).");
ABSL_FLAG(bool, keep, false, "Keep the data directories.");

namespace tessera {
namespace {

constexpr char kTable[] = "embedding";

std::string JobText(int64_t max_rows) {
  return absl::StrFormat(
      R"(name: "tiered-scale"
model {
  name: "logreg"
  embedding_dim: %d
  seed: 1
  embedding_tables {
    module: "embedding"
    memory_policy { max_rows: %d eviction: EVICTION_DISK }
  }
}
dataset {
  format: SYNTHETIC_CTR
  num_examples: %d
  vocabulary: %d
  features_per_example: 16
  zipf_exponent: %g
  seed: 7
}
batch_size: 256
epochs: 1
partitions_per_epoch: %d
consistency { mode: ASYNC }
optimizer { kind: ADAM learning_rate: 0.01 }
tensor_groups { prefix: "embedding" optimizer { kind: ADAGRAD learning_rate: 0.1 } }
flush_interval_s: %g
)",
      absl::GetFlag(FLAGS_dim), max_rows, absl::GetFlag(FLAGS_examples),
      absl::GetFlag(FLAGS_rows), absl::GetFlag(FLAGS_zipf),
      std::max<int64_t>(1, absl::GetFlag(FLAGS_examples) / 25000),
      absl::GetFlag(FLAGS_flush_interval_s));
}

// One scrape of a shard's /metrics: the series this bench reads.
struct ShardSample {
  double rows = 0, size_rows = 0, pull_hits = 0, pull_misses = 0;
  double disk_reads = 0, disk_hits = 0, evictions = 0;
  double flushes = 0, flush_seconds = 0, flush_age = 0, disk_bytes = 0;
  int64_t rss = 0, dir_bytes = 0;
};

absl::StatusOr<ShardSample> Sample(testing::ShardProcess& shard,
                                   const std::string& dir) {
  auto text = testing::HttpGet(shard.ports().metrics, "/metrics");
  if (!text.ok()) return text.status();
  const std::string table = absl::StrCat("{tensor=\"", kTable, "\"} ");
  const std::vector<std::pair<std::string, double ShardSample::*>> series = {
      {absl::StrCat("tessera_ps_table_rows", table), &ShardSample::rows},
      {absl::StrCat("tessera_ps_table_size_rows", table),
       &ShardSample::size_rows},
      {absl::StrCat("tessera_ps_table_pull_hits_total", table),
       &ShardSample::pull_hits},
      {absl::StrCat("tessera_ps_table_pull_misses_total", table),
       &ShardSample::pull_misses},
      {absl::StrCat("tessera_ps_table_disk_reads_total", table),
       &ShardSample::disk_reads},
      {absl::StrCat("tessera_ps_table_disk_hits_total", table),
       &ShardSample::disk_hits},
      {absl::StrCat("tessera_ps_table_evictions_total", table),
       &ShardSample::evictions},
      {absl::StrCat("tessera_ps_table_disk_bytes", table),
       &ShardSample::disk_bytes},
      {"tessera_ps_flush_duration_seconds_count ", &ShardSample::flushes},
      {"tessera_ps_flush_duration_seconds_sum ", &ShardSample::flush_seconds},
      {"tessera_ps_last_flush_age_seconds ", &ShardSample::flush_age},
  };
  ShardSample s;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    for (const auto& [prefix, field] : series) {
      if (absl::StartsWith(line, prefix)) {
        double v = 0;
        if (absl::SimpleAtod(line.substr(prefix.size()), &v)) s.*field = v;
      }
    }
  }
  s.rss = std::max<int64_t>(
      0, bench::ProcStatusBytes(shard.child().pid(), "VmRSS"));
  s.dir_bytes = bench::DirectoryBytes(dir);
  return s;
}

// The fields of ShardSample that count up over a process's life.
constexpr double ShardSample::*kCounters[] = {
    &ShardSample::pull_hits,    &ShardSample::pull_misses,
    &ShardSample::disk_reads,   &ShardSample::disk_hits,
    &ShardSample::evictions,    &ShardSample::flushes,
    &ShardSample::flush_seconds};

std::string Gb(double bytes) { return absl::StrFormat("%.2f GB", bytes / 1e9); }
std::string M(double n) { return absl::StrFormat("%.2fM", n / 1e6); }

// The shards' samples over a phase: what the summary reports.
class Monitor {
 public:
  Monitor(testing::LocalCluster* cluster, std::string phase)
      : cluster_(cluster), phase_(std::move(phase)), start_(absl::Now()) {
    first_ = Now();
    last_ = first_;
  }

  std::vector<ShardSample> Now() {
    std::vector<ShardSample> out;
    for (int i = 0; i < cluster_->num_shards(); ++i) {
      auto it = replaced_.find(i);
      auto s = Sample(it != replaced_.end() ? *it->second : cluster_->shard(i),
                      ShardDir(i));
      out.push_back(s.ok() ? *s : ShardSample());
    }
    return out;
  }

  // Shard `i` runs as `process` from now on: a new process whose counters
  // start from zero; what the old one counted in this phase is kept.
  void Replace(int i, testing::ShardProcess* process) {
    replaced_[i] = process;
    for (double ShardSample::*f : kCounters) {
      carried_[i].*f += last_[i].*f - first_[i].*f;
      first_[i].*f = 0;
    }
  }

  std::string ShardDir(int i) const {
    return absl::StrCat(cluster_->dir(), "/ps-", i);
  }

  // Takes a sample, keeps the peaks, prints one line per shard.
  void Tick(const std::string& progress) {
    last_ = Now();
    const double t = absl::ToDoubleSeconds(absl::Now() - start_);
    std::printf("[%s %6.0f s] %s\n", phase_.c_str(), t, progress.c_str());
    for (size_t i = 0; i < last_.size(); ++i) {
      const ShardSample& s = last_[i];
      peak_rss_ = std::max(peak_rss_, s.rss);
      // Since a flush of this phase: the time since the last one before
      // it (a shard that had nothing to write) says nothing about this one.
      if (Counted(i, &ShardSample::flushes) > 0) {
        peak_flush_age_ = std::max(peak_flush_age_, s.flush_age);
      }
      const double hits = Counted(i, &ShardSample::pull_hits);
      const double pulled = hits + Counted(i, &ShardSample::pull_misses);
      const double flushes = Counted(i, &ShardSample::flushes);
      std::printf(
          "    shard %zu: RSS %s, rows in memory %s of %s, pull hit rate "
          "%.3f, read from disk %s, evicted %s, disk %s (RocksDB's estimate "
          "%s), flushes %.0f (%.2f s each), last flush %.1f s ago\n",
          i, Gb(s.rss).c_str(), M(s.rows).c_str(), M(s.size_rows).c_str(),
          pulled > 0 ? hits / pulled : 0.0,
          M(Counted(i, &ShardSample::disk_hits)).c_str(),
          M(Counted(i, &ShardSample::evictions)).c_str(),
          Gb(s.dir_bytes).c_str(), Gb(s.disk_bytes).c_str(), flushes,
          Counted(i, &ShardSample::flush_seconds) / std::max(1.0, flushes),
          s.flush_age);
    }
    std::fflush(stdout);
  }

  // A counter's growth over the phase on shard `i`, and over all shards.
  double Counted(size_t i, double ShardSample::*field) const {
    auto carried = carried_.find(i);
    return last_[i].*field - first_[i].*field +
           (carried == carried_.end() ? 0.0 : carried->second.*field);
  }
  double Delta(double ShardSample::*field) const {
    double d = 0;
    for (size_t i = 0; i < last_.size(); ++i) d += Counted(i, field);
    return d;
  }
  double Sum(double ShardSample::*field) const {
    double d = 0;
    for (const ShardSample& s : last_) d += s.*field;
    return d;
  }
  int64_t DirBytes() const {
    int64_t d = 0;
    for (const ShardSample& s : last_) d += s.dir_bytes;
    return d;
  }
  int64_t peak_rss() const { return peak_rss_; }
  double peak_flush_age() const { return peak_flush_age_; }
  absl::Duration elapsed() const { return absl::Now() - start_; }

 private:
  testing::LocalCluster* const cluster_;
  const std::string phase_;
  const absl::Time start_;
  std::vector<ShardSample> first_, last_;
  std::map<int, testing::ShardProcess*> replaced_;
  std::map<size_t, ShardSample> carried_;
  int64_t peak_rss_ = 0;
  double peak_flush_age_ = 0;
};

// Pushes every id in [0, rows) once, zero gradients, --fill_depth in flight;
// a push refused by a shard's budget goes again after a short wait.
struct Fill {
  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  std::vector<int64_t> again ABSL_GUARDED_BY(mu);  // batch starts
  int64_t refused ABSL_GUARDED_BY(mu) = 0;
  int64_t done ABSL_GUARDED_BY(mu) = 0;
  absl::Status error ABSL_GUARDED_BY(mu);
};

void FillTable(PsClient* client, int64_t rows, Monitor* monitor) {
  const int dim = absl::GetFlag(FLAGS_dim);
  const int64_t batch = absl::GetFlag(FLAGS_fill_batch);
  const int depth = absl::GetFlag(FLAGS_fill_depth);
  const std::vector<float> zeros(batch * dim, 0.0f);
  Fill fill;
  int64_t next = 0;
  absl::Time tick = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_sample_s));
  const absl::Time deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  std::vector<uint64_t> ids;
  CallOptions call;
  call.deadline = absl::Seconds(300);
  for (;;) {
    int64_t begin = -1;
    bool retry = false;
    {
      absl::MutexLock lock(&fill.mu);
      auto ready = [&fill]() ABSL_SHARED_LOCKS_REQUIRED(fill.mu) {
        return fill.in_flight < absl::GetFlag(FLAGS_fill_depth) ||
               !fill.error.ok();
      };
      fill.mu.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
      BENCH_CHECK_OK(fill.error);
      if (fill.in_flight < depth) {
        if (!fill.again.empty()) {
          begin = fill.again.back();
          fill.again.pop_back();
          retry = true;
        } else if (next < rows) {
          begin = next;
          next += batch;
        } else if (fill.in_flight == 0) {
          break;
        }
      }
      if (begin >= 0) ++fill.in_flight;
    }
    if (absl::Now() >= tick) {
      int64_t done, refused;
      {
        absl::MutexLock lock(&fill.mu);
        done = fill.done;
        refused = fill.refused;
      }
      monitor->Tick(absl::StrFormat(
          "filled %s of %s rows, %.0f rows/s, %d pushes refused by the budget "
          "(sent again)",
          M(done), M(rows), done / absl::ToDoubleSeconds(monitor->elapsed()),
          refused));
      tick = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_sample_s));
    }
    CHECK(absl::Now() < deadline) << "filling took over --timeout_s";
    if (begin < 0) continue;
    // The budget refused it: the shard asked for a flush, which takes a
    // moment.
    if (retry) absl::SleepFor(absl::Milliseconds(50));
    const int64_t n = std::min(batch, rows - begin);
    ids.resize(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(begin + i);
    client->PushRowsAsync(
        kTable, ids, absl::MakeConstSpan(zeros.data(), n * dim),
        [&fill, begin, n](const absl::Status& s) {
          absl::MutexLock lock(&fill.mu);
          --fill.in_flight;
          if (s.ok()) {
            fill.done += n;
          } else if (absl::IsResourceExhausted(s) && fill.refused < 100000) {
            ++fill.refused;
            fill.again.push_back(begin);
          } else if (fill.error.ok()) {
            fill.error = s;
          }
        },
        call);
  }
}

struct Restart {
  absl::Duration stop;   // signal to exit
  absl::Duration start;  // spawn to SERVING
};

// Signals shard `i`, waits for it to exit, starts it again on its ports and
// data directory. The cluster keeps its process object: the new one replaces
// the old one's child.
Restart RestartShard(testing::LocalCluster* cluster, int i, int signal,
                     const std::vector<std::string>& shard_flags,
                     std::unique_ptr<testing::ShardProcess>* restarted) {
  testing::ShardProcess& current = *restarted ? **restarted : cluster->shard(i);
  const testing::ShardPorts ports = current.ports();
  Restart r;
  const absl::Time t0 = absl::Now();
  current.child().Signal(signal);
  BENCH_CHECK_OK(current.child().Wait(absl::Seconds(600)).status());
  r.stop = absl::Now() - t0;
  std::vector<std::string> flags = shard_flags;
  flags.push_back(absl::StrCat("--grpc_port=", ports.grpc));
  flags.push_back(absl::StrCat("--data_port=", ports.data));
  flags.push_back(absl::StrCat("--metrics_port=", ports.metrics));
  const std::string dir = absl::StrCat(cluster->dir(), "/ps-", i);
  const absl::Time t1 = absl::Now();
  auto process = testing::ShardProcess::Start(i, cluster->num_shards(), dir,
                                              flags, absl::Seconds(600),
                                              absl::StrCat(dir, ".log"));
  BENCH_CHECK_OK(process.status());
  r.start = absl::Now() - t1;
  *restarted = *std::move(process);
  return r;
}

int Run(const char* argv0) {
  testing::EnterRunfiles(argv0);
  if (!absl::GetFlag(FLAGS_dir).empty()) {
    std::filesystem::create_directories(absl::GetFlag(FLAGS_dir));
    setenv("TEST_TMPDIR", absl::GetFlag(FLAGS_dir).c_str(), 1);
  }
  const int64_t rows = absl::GetFlag(FLAGS_rows);
  const int dim = absl::GetFlag(FLAGS_dim);
  const int64_t budget =
      static_cast<int64_t>(absl::GetFlag(FLAGS_memory_gb) * (1LL << 30));
  const int64_t row_bytes = 4LL * dim * 2 + 44;
  const int64_t max_rows = absl::GetFlag(FLAGS_max_rows) > 0
                               ? absl::GetFlag(FLAGS_max_rows)
                               : budget / row_bytes / 2;
  const std::string job_text = JobText(max_rows);
  auto job = ParseJobConfig(job_text);
  BENCH_CHECK_OK(job.status());
  auto model = worker::CreateJobModel(*job, "", 1);
  BENCH_CHECK_OK(model.status());
  const std::vector<v1::TensorSpec> specs = worker::ModelSpecs(**model, *job);
  model->reset();

  std::printf(
      "tiered_scale_bench: %lld rows x dim %d (Adagrad; %s of values and "
      "slots), %d shards with --max_memory_bytes %s each, max_rows %s per "
      "shard, flushes every %g s; synthetic click-through job of %s examples "
      "x 16 Zipf(%g) ids\n",
      static_cast<long long>(rows), dim, Gb(rows * 8.0 * dim).c_str(),
      absl::GetFlag(FLAGS_shards), Gb(budget).c_str(), M(max_rows).c_str(),
      absl::GetFlag(FLAGS_flush_interval_s),
      M(absl::GetFlag(FLAGS_examples)).c_str(), absl::GetFlag(FLAGS_zipf));
  std::fflush(stdout);

  const std::vector<std::string> shard_flags = {
      absl::StrCat("--max_memory_bytes=", budget),
      absl::StrCat("--flush_interval_s=",
                   absl::GetFlag(FLAGS_flush_interval_s)),
  };
  testing::LocalClusterOptions options;
  options.num_shards = absl::GetFlag(FLAGS_shards);
  options.job_config = job_text;
  options.shard_flags = shard_flags;
  auto cluster = testing::LocalCluster::Start(options);
  BENCH_CHECK_OK(cluster.status());
  std::printf("data directories under %s\n", (*cluster)->dir().c_str());

  // 2. Fill.
  PsClientOptions client_options;
  client_options.shard_addresses = (*cluster)->shard_addresses();
  client_options.default_deadline = absl::Seconds(300);
  auto client = PsClient::Connect(client_options);
  BENCH_CHECK_OK(client.status());
  BENCH_CHECK_OK((*client)->CreateTensors(specs));
  Monitor fill(cluster->get(), "fill");
  FillTable(client->get(), rows, &fill);
  const absl::Duration pushed = fill.elapsed();
  // Every row written: the stored counts of the flushes after the last push.
  for (int i = 0;; ++i) {
    fill.Tick("waiting for flushes to write every row");
    if (fill.Sum(&ShardSample::size_rows) >= rows &&
        fill.Sum(&ShardSample::rows) <= max_rows * options.num_shards) {
      break;
    }
    CHECK_LT(i, 720) << "rows not written after 2 hours";
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_sample_s)));
  }
  const absl::Duration filled = fill.elapsed();
  client->reset();

  // 3. Train, with a SIGKILL and restart of one shard on the way.
  Monitor train(cluster->get(), "train");
  BENCH_CHECK_OK((*cluster)->StartWorker("w0").status());
  const int victim = absl::GetFlag(FLAGS_kill_shard);
  const int64_t kill_after =
      absl::GetFlag(FLAGS_kill_at) < 0
          ? -1
          : static_cast<int64_t>(absl::GetFlag(FLAGS_kill_at) *
                                 absl::GetFlag(FLAGS_examples));
  std::unique_ptr<testing::ShardProcess> restarted;
  Restart after_kill{}, after_term{};
  bool killed = false;
  v1::JobStatus status;
  int64_t last_samples = 0;
  absl::Time last_line = absl::Now();
  const absl::Time deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  for (;;) {
    auto s = (*cluster)->Status();
    if (s.ok()) status = *s;
    if (s.ok() && status.finished()) break;
    CHECK(absl::Now() < deadline) << "training took over --timeout_s";
    int64_t samples = 0;
    for (const v1::EpochStats& e : status.epoch_stats()) samples += e.samples();
    if (!killed && kill_after >= 0 && samples >= kill_after) {
      killed = true;
      after_kill = RestartShard(cluster->get(), victim, SIGKILL, shard_flags,
                                &restarted);
      train.Replace(victim, restarted.get());
      std::printf(
          "shard %d SIGKILLed at %s samples; SERVING again %.2f s "
          "after its restart\n",
          victim, M(samples).c_str(), absl::ToDoubleSeconds(after_kill.start));
    }
    const absl::Time now = absl::Now();
    train.Tick(absl::StrFormat(
        "%s samples, %.0f samples/s (%.0f since the last line)", M(samples),
        samples / absl::ToDoubleSeconds(train.elapsed()),
        (samples - last_samples) /
            std::max(1e-3, absl::ToDoubleSeconds(now - last_line))));
    last_samples = samples;
    last_line = now;
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_sample_s)));
  }
  train.Tick("job finished");
  const absl::Duration trained = train.elapsed();
  auto exits = (*cluster)->WaitForWorkers(absl::Seconds(120));
  BENCH_CHECK_OK(exits.status());
  after_term =
      RestartShard(cluster->get(), victim, SIGTERM, shard_flags, &restarted);

  int64_t samples = 0;
  double loss = 0;
  for (const v1::EpochStats& e : status.epoch_stats()) {
    samples += e.samples();
    loss += e.loss_sum();
  }
  const double pulled = train.Delta(&ShardSample::pull_hits) +
                        train.Delta(&ShardSample::pull_misses);
  std::printf(
      "\nsummary (%lld rows x dim %d, %d shards x %s)\n"
      "  fill: %s rows pushed in %.0f s (%.0f rows/s), all written after "
      "%.0f s; flushes %.0f, %.2f s each on average; peak RSS of a shard "
      "%s; longest time since a flush %.1f s\n"
      "  train: %lld samples in %.0f s (%.0f samples/s, %.0f rows pulled/s); "
      "pull hit rate %.3f; rows read from disk %s; evicted %s; flushes "
      "%.0f, %.2f s each on average; peak RSS of a shard %s; longest time "
      "since a flush %.1f s; train loss %.4f\n"
      "  disk: %s in the shards' directories (RocksDB's estimate of the "
      "table: %s)\n"
      "  shard %d: SIGKILL -> SERVING %.2f s; SIGTERM: exit %.2f s, restart "
      "-> SERVING %.2f s\n",
      static_cast<long long>(rows), dim, options.num_shards, Gb(budget).c_str(),
      M(rows).c_str(), absl::ToDoubleSeconds(pushed),
      rows / absl::ToDoubleSeconds(pushed), absl::ToDoubleSeconds(filled),
      fill.Delta(&ShardSample::flushes),
      fill.Delta(&ShardSample::flush_seconds) /
          std::max(1.0, fill.Delta(&ShardSample::flushes)),
      Gb(fill.peak_rss()).c_str(), fill.peak_flush_age(),
      static_cast<long long>(samples), absl::ToDoubleSeconds(trained),
      samples / absl::ToDoubleSeconds(trained),
      pulled / absl::ToDoubleSeconds(trained),
      pulled > 0 ? train.Delta(&ShardSample::pull_hits) / pulled : 0.0,
      M(train.Delta(&ShardSample::disk_hits)).c_str(),
      M(train.Delta(&ShardSample::evictions)).c_str(),
      train.Delta(&ShardSample::flushes),
      train.Delta(&ShardSample::flush_seconds) /
          std::max(1.0, train.Delta(&ShardSample::flushes)),
      Gb(train.peak_rss()).c_str(), train.peak_flush_age(),
      samples > 0 ? loss / samples : 0.0, Gb(train.DirBytes()).c_str(),
      Gb(train.Sum(&ShardSample::disk_bytes)).c_str(), victim,
      absl::ToDoubleSeconds(after_kill.start),
      absl::ToDoubleSeconds(after_term.stop),
      absl::ToDoubleSeconds(after_term.start));
  std::fflush(stdout);
  const std::string dir = (*cluster)->dir();
  restarted.reset();
  cluster->reset();
  if (!absl::GetFlag(FLAGS_keep)) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tiered_scale_bench: a tiered table far larger than the shards' "
      "memory, filled and trained by the synthetic click-through job.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;
  google::InitGoogleLogging(argv[0]);
  return tessera::Run(argv[0]);
}

// startup_bench: how long a shard whose data directory holds gigabytes of
// embedding rows takes to serve, next to what reading those rows takes.
//
//   bazel run -c opt //bench:startup_bench                    # 1 GB, 10 GB
//   bazel run -c opt //bench:startup_bench -- --gigabytes=0.2 # a smoke run
//
// For each size in --gigabytes: a data directory is written in this process
// with the shard's own storage code (ShardStorage::Write, the flusher's
// batches): one tiered embedding table (dim --dim, Adagrad: 8 + 4 x dim x 2
// bytes a row, memory_policy { max_rows: --max_rows, eviction: EVICTION_DISK
// }) with enough rows for that many bytes of values, and a dense tensor of
// 1M floats. Then, with the directory in the page cache (it was just
// written):
//
//   - start: a real tessera-ps child on it (127.0.0.1, free ports), from
//     spawning to its health saying SERVING (the launcher polls it every 20
//     ms);
//   - first pull: one PullRows of 4096 uniformly drawn stored ids right
//     after (every one read from disk);
//   - restart after SIGTERM (the shard then runs with --flush_interval_s=0.5
//     and takes --kill_pushes pushes of 4096 random rows, flushed), and after
//     SIGKILL (RocksDB replays the log of what its memtables held), spawn to
//     SERVING;
//   - full scan: ShardStorage::ScanStoredRows over the whole table in this
//     process (what any restore of every row at least reads), with MiB/s;
//   - full restore: LoadInto with every row (what a shard did before rows
//     stayed on disk), for sizes up to --restore_gigabytes (it needs the
//     table's memory).
//
// The goal (issue "embedding tables larger than the shards' memory", item 4):
// SERVING within about a second whatever the size.

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "glog/logging.h"
#include "ps/client/ps_client.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/tensor.pb.h"
#include "tests/cluster.h"

ABSL_FLAG(std::vector<std::string>, gigabytes, {},
          "Sizes of the rows' values in GB (default 1,10).");
ABSL_FLAG(int, dim, 64, "Row size of the table.");
ABSL_FLAG(int64_t, max_rows, 1000000, "The tiered table's max_rows.");
ABSL_FLAG(double, restore_gigabytes, 2,
          "Sizes up to this also time a full restore of every row.");
ABSL_FLAG(bool, keep, false, "Keep the data directories.");
ABSL_FLAG(int, kill_pushes, 256,
          "Pushes of 4096 random rows before the SIGKILL.");

namespace tessera {
namespace {

constexpr char kTable[] = "emb";
constexpr char kDense[] = "dense";

v1::TensorSpec TableSpec(int dim, int64_t max_rows) {
  v1::TensorSpec spec;
  spec.set_name(kTable);
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(0);
  spec.add_shape(dim);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  spec.mutable_memory_policy()->set_max_rows(max_rows);
  spec.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  return spec;
}

v1::TensorSpec DenseSpec() {
  v1::TensorSpec spec;
  spec.set_name(kDense);
  spec.add_shape(1000);
  spec.add_shape(1000);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
  return spec;
}

// Ids are spread over 64 bits as hashed feature ids are.
uint64_t IdOf(int64_t rank) {
  return static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ULL;
}

// tessera-ps's default placement of one shard (its --split_threshold_bytes).
v1::PlacementConfig OneShard() {
  v1::PlacementConfig placement;
  placement.set_num_shards(1);
  placement.set_split_threshold_bytes(256 << 10);
  return placement;
}

// Writes `rows` rows (and the dense tensor) into a new directory `dir`.
void WriteDirectory(const std::string& dir, int dim, int64_t max_rows,
                    int64_t rows) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  auto storage = ShardStorage::Open(dir, 0, OneShard());
  BENCH_CHECK_OK(storage.status());
  BENCH_CHECK_OK(
      (*storage)->SaveSpecs({TableSpec(dim, max_rows), DenseSpec()}));
  // The dense tensor, as a shard's store would flush it.
  {
    StoreOptions options;
    options.placement = OneShard();
    TensorStore store(options);
    BENCH_CHECK_OK(store.CreateTensors({DenseSpec()}).status());
    std::vector<float> grad(1000 * 1000, 1e-3f);
    BENCH_CHECK_OK(store.PushDense(kDense, 0, grad).status());
    DirtySnapshot snapshot;
    store.TakeDirty(&snapshot);
    BENCH_CHECK_OK((*storage)->Write(snapshot));
  }
  constexpr int64_t kBatch = 16384;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-0.1f, 0.1f);
  std::vector<float> pattern(4096);
  for (float& v : pattern) v = value(rng);
  for (int64_t begin = 0; begin < rows; begin += kBatch) {
    DirtySnapshot snapshot;
    for (int64_t r = begin; r < std::min(rows, begin + kBatch); ++r) {
      DirtySnapshot::Row row;
      row.tensor = kTable;
      row.id = IdOf(r);
      row.step = 1;
      row.values.resize(2 * dim);
      for (int j = 0; j < 2 * dim; ++j) {
        row.values[j] = pattern[(r * 7 + j) % pattern.size()];
      }
      snapshot.rows.push_back(std::move(row));
    }
    // As a shard's flush writes it: with the table's row count.
    snapshot.versions.push_back(
        {kTable, begin / kBatch + 1, 0, false, std::min(rows, begin + kBatch)});
    BENCH_CHECK_OK((*storage)->Write(snapshot));
  }
}

struct Started {
  std::unique_ptr<testing::ShardProcess> process;
  absl::Duration took;
};

Started StartShard(const std::string& dir,
                   std::vector<std::string> flags = {}) {
  const absl::Time start = absl::Now();
  auto process = testing::ShardProcess::Start(0, 1, dir, std::move(flags),
                                              absl::Seconds(600), dir + ".log");
  BENCH_CHECK_OK(process.status());
  return {*std::move(process), absl::Now() - start};
}

std::unique_ptr<PsClient> Connect(testing::ShardProcess& shard) {
  PsClientOptions options;
  options.shard_addresses = {shard.ports().grpc_address()};
  options.default_deadline = absl::Seconds(120);
  auto client = PsClient::Connect(options);
  BENCH_CHECK_OK(client.status());
  BENCH_CHECK_OK((*client)->LoadSpecs());
  return *std::move(client);
}

std::string Secs(absl::Duration d) {
  return absl::StrFormat("%.2f s", absl::ToDoubleSeconds(d));
}

int Run(const char* argv0) {
  testing::EnterRunfiles(argv0);
  std::vector<double> sizes = {1, 10};
  if (!absl::GetFlag(FLAGS_gigabytes).empty()) {
    sizes.clear();
    for (const std::string& g : absl::GetFlag(FLAGS_gigabytes)) {
      double v = 0;
      CHECK(absl::SimpleAtod(g, &v) && v > 0) << "--gigabytes=" << g;
      sizes.push_back(v);
    }
  }
  const int dim = absl::GetFlag(FLAGS_dim);
  const int64_t max_rows = absl::GetFlag(FLAGS_max_rows);
  const int64_t row_bytes = 8 + 4 * 2 * int64_t{dim};
  std::printf(
      "startup_bench: 1 tessera-ps child on 127.0.0.1, a tiered table of dim "
      "%d (Adagrad, %lld bytes a row, max_rows %lld) and a dense tensor of 1M "
      "floats (Adam); directories in the page cache\n\n",
      dim, static_cast<long long>(row_bytes), static_cast<long long>(max_rows));
  std::printf("%8s %11s %9s %10s %10s %12s %12s %12s %12s %12s\n", "values",
              "rows", "on disk", "start", "1st pull", "after TERM",
              "after KILL", "full scan", "scan MiB/s", "full restore");
  std::fflush(stdout);
  for (double gb : sizes) {
    const int64_t rows = static_cast<int64_t>(gb * 1e9 / row_bytes);
    const std::string dir =
        testing::TempPath(absl::StrFormat("startup_bench-%gGB", gb));
    const absl::Time w0 = absl::Now();
    WriteDirectory(dir, dim, max_rows, rows);
    std::fprintf(stderr, "%g GB: %lld rows written in %.1f s\n", gb,
                 static_cast<long long>(rows),
                 absl::ToDoubleSeconds(absl::Now() - w0));
    const int64_t disk = bench::DirectoryBytes(dir);

    // Start, then a first pull of stored rows (all read from disk).
    Started s = StartShard(dir);
    const absl::Duration start = s.took;
    absl::Duration first_pull;
    {
      std::unique_ptr<PsClient> client = Connect(*s.process);
      std::mt19937_64 rng(2);
      std::vector<uint64_t> ids(4096);
      for (uint64_t& id : ids) id = IdOf(rng() % rows);
      std::vector<float> out(ids.size() * dim);
      const absl::Time t = absl::Now();
      BENCH_CHECK_OK(client->PullRows(kTable, ids, absl::MakeSpan(out)).get());
      first_pull = absl::Now() - t;
      CHECK(std::any_of(out.begin(), out.end(), [](float v) { return v != 0; }))
          << "stored rows read as initial values";
    }
    // SIGTERM (final flush), restart.
    s.process->child().Signal(SIGTERM);
    BENCH_CHECK_OK(s.process->child().Wait(absl::Seconds(120)).status());
    // Training-like writes before the SIGKILL: --kill_pushes pushes of 4096
    // rows, flushed every 0.5 s, so RocksDB's log holds what its memtables
    // do when the shard dies (written since their last write to tables).
    s = StartShard(dir, {"--flush_interval_s=0.5"});
    const absl::Duration after_term = s.took;
    {
      std::unique_ptr<PsClient> client = Connect(*s.process);
      std::mt19937_64 rng(3);
      std::vector<uint64_t> ids(4096);
      const std::vector<float> grad(ids.size() * dim, 1e-3f);
      for (int p = 0; p < absl::GetFlag(FLAGS_kill_pushes); ++p) {
        for (uint64_t& id : ids) id = IdOf(rng() % rows);
        BENCH_CHECK_OK(client->PushRows(kTable, ids, grad).get());
      }
      // Killed once a flush wrote the pushes (bounded poll).
      const absl::Time pushed = absl::Now();
      for (int i = 0; i < 600; ++i) {
        auto age = s.process->Metric("tessera_ps_last_flush_age_seconds");
        if (age.ok() && absl::Now() - absl::Seconds(*age) > pushed) break;
        absl::SleepFor(absl::Milliseconds(100));  // Polling period.
      }
    }
    s.process->child().Signal(SIGKILL);
    BENCH_CHECK_OK(s.process->child().Wait(absl::Seconds(60)).status());
    s = StartShard(dir);
    const absl::Duration after_kill = s.took;
    s.process->child().Signal(SIGTERM);
    BENCH_CHECK_OK(s.process->child().Wait(absl::Seconds(120)).status());
    s.process.reset();

    // What reading every row takes, in this process.
    absl::Duration scan;
    int64_t scanned = 0;
    {
      auto storage = ShardStorage::Open(dir, 0, OneShard());
      BENCH_CHECK_OK(storage.status());
      const absl::Time t = absl::Now();
      BENCH_CHECK_OK((*storage)->WalkStoredRows(
          kTable, RowSource::kMaxRowsPerCall, [&](const StoredRowBatch& batch) {
            scanned += batch.rows.size();
            return absl::OkStatus();
          }));
      scan = absl::Now() - t;
    }
    CHECK_GE(scanned, rows) << "the scan missed rows";
    std::string restore = "-";
    if (gb <= absl::GetFlag(FLAGS_restore_gigabytes)) {
      auto storage = ShardStorage::Open(dir, 0, OneShard());
      BENCH_CHECK_OK(storage.status());
      StoreOptions options;
      options.placement = OneShard();
      TensorStore store(options);
      const absl::Time t = absl::Now();
      BENCH_CHECK_OK((*storage)->LoadInto(&store).status());
      restore = Secs(absl::Now() - t);
    }
    std::printf(
        "%7gG %11lld %8.2fG %10s %10s %12s %12s %12s %12.0f %12s\n", gb,
        static_cast<long long>(rows), disk / 1e9, Secs(start).c_str(),
        absl::StrFormat("%.0f ms", absl::ToDoubleMilliseconds(first_pull))
            .c_str(),
        Secs(after_term).c_str(), Secs(after_kill).c_str(), Secs(scan).c_str(),
        scanned * row_bytes / (1 << 20) /
            std::max(1e-9, absl::ToDoubleSeconds(scan)),
        restore.c_str());
    std::fflush(stdout);
    if (!absl::GetFlag(FLAGS_keep)) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      std::filesystem::remove(dir + ".log", ec);
    }
  }
  std::printf(
      "\nstart / after TERM / after KILL: spawning tessera-ps to its health "
      "saying SERVING; 1st pull: 4096 stored ids right after the start, all "
      "read from disk; full scan: every stored row read in id order "
      "(ScanStoredRows) in this process; full restore: LoadInto of every row "
      "into memory, what start-up took before rows stayed on disk.\n"
      "goal: SERVING within about a second at every size.\n");
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "startup_bench: a shard's time to SERVING with gigabytes of embedding "
      "rows on disk, against a full scan and a full restore of them.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;
  google::InitGoogleLogging(argv[0]);
  return tessera::Run(argv[0]);
}

// cold_rows_bench: what reading embedding rows from a shard's RocksDB costs,
// for the disk tier (rows not in memory). Writes --rows rows of one Adagrad
// table (dim --dim, so 2 x dim floats and a step a row) to a ShardStorage in
// a fresh temporary directory with ShardStorage::Write (the flush path, in
// synced batches of --write_batch rows, ids hashed over 64 bits), reopens it,
// then times:
//
//   (a) ReadRows of --ids random stored ids per call (one MultiGet), for
//       --read_seconds: rows/s and ms per call;
//   (b) a full ScanStoredRows walk (batches of kMaxRowsPerCall): MiB/s of
//       stored values (8 + 4 x 2 x dim bytes a row);
//   (c) LoadInto a fresh TensorStore with rows = false, then rows = true:
//       seconds.
//
// The files are in the page cache throughout (just written): these are
// RocksDB's and the decoding's costs, not a cold disk's.
//
//   bazel run -c opt --jobs=2 //bench:cold_rows_bench   # ~20 s on 2 idle cores
//   bazel run -c opt //bench:cold_rows_bench -- --rows=500000 --dim=64

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"

ABSL_FLAG(int64_t, rows, 2000000, "Rows written to the table.");
ABSL_FLAG(int64_t, dim, 16, "The table's dim (Adagrad: one slot).");
ABSL_FLAG(int64_t, write_batch, 65536, "Rows per Write (one synced batch).");
ABSL_FLAG(int64_t, ids, 4096, "Random stored ids per ReadRows call.");
ABSL_FLAG(double, read_seconds, 3.0, "How long (a) runs.");
ABSL_FLAG(std::string, dir, "",
          "Directory for the database (removed after); empty = a new one "
          "under $TMPDIR or /tmp.");

namespace tessera {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64: ids spread over 64 bits
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double Seconds(absl::Time since) {
  return absl::ToDoubleSeconds(absl::Now() - since);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "cold_rows_bench: %s\n", s.ToString().c_str());
  return 1;
}

int Run() {
  const int64_t n = absl::GetFlag(FLAGS_rows);
  const int64_t dim = absl::GetFlag(FLAGS_dim);
  const int64_t floats = 2 * dim;
  const double row_bytes = 8 + 4.0 * floats;
  const double mib = 1 << 20;
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/cold_rows_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  std::filesystem::remove_all(dir);
  std::printf(
      "cold_rows_bench: %lld rows, dim %lld, Adagrad (%.0f B a row "
      "stored), in %s; load average %s\n",
      static_cast<long long>(n), static_cast<long long>(dim), row_bytes,
      dir.c_str(), LoadAverage().c_str());

  v1::PlacementConfig placement;
  placement.set_num_shards(1);
  placement.set_split_threshold_bytes(1 << 20);
  v1::TensorSpec spec;
  spec.set_name("table");
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(0);
  spec.add_shape(dim);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.01f);

  {
    auto storage = ShardStorage::Open(dir, 0, placement);
    if (!storage.ok()) return Fail(storage.status());
    absl::Status saved = (*storage)->SaveSpecs({spec});
    if (!saved.ok()) return Fail(saved);
    const absl::Time start = absl::Now();
    const int64_t batch = absl::GetFlag(FLAGS_write_batch);
    for (int64_t begin = 0; begin < n; begin += batch) {
      DirtySnapshot snapshot;
      for (int64_t i = begin; i < std::min(n, begin + batch); ++i) {
        DirtySnapshot::Row row;
        row.tensor = "table";
        row.id = Mix(i);
        row.step = i % 100 + 1;
        row.values.assign(floats, static_cast<float>(i % 1000) * 1e-3f);
        snapshot.rows.push_back(std::move(row));
      }
      absl::Status written = (*storage)->Write(snapshot);
      if (!written.ok()) return Fail(written);
    }
    const double s = Seconds(start);
    std::printf("write  %lld rows in %.2f s: %.2f M rows/s, %.0f MiB/s\n",
                static_cast<long long>(n), s, n / s / 1e6,
                n * row_bytes / mib / s);
  }

  // Reopened, as a shard after a restart.
  auto storage = ShardStorage::Open(dir, 0, placement);
  if (!storage.ok()) return Fail(storage.status());

  {
    const int64_t per_call = absl::GetFlag(FLAGS_ids);
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int64_t> pick(0, n - 1);
    std::vector<uint64_t> ids(per_call);
    int64_t calls = 0, found = 0;
    const absl::Duration budget =
        absl::Seconds(absl::GetFlag(FLAGS_read_seconds));
    const absl::Time start = absl::Now();
    while (absl::Now() - start < budget || calls < 10) {
      for (auto& id : ids) id = Mix(pick(rng));
      auto rows = (*storage)->ReadRows("table", ids);
      if (!rows.ok()) return Fail(rows.status());
      for (const auto& row : *rows) found += row.has_value();
      ++calls;
    }
    const double s = Seconds(start);
    if (found != calls * per_call) {
      std::fprintf(stderr, "ReadRows missed %lld rows\n",
                   static_cast<long long>(calls * per_call - found));
      return 1;
    }
    std::printf(
        "(a) ReadRows %lld ids/call: %lld calls, %.2f ms/call, "
        "%.2f M rows/s\n",
        static_cast<long long>(per_call), static_cast<long long>(calls),
        s * 1e3 / calls, calls * per_call / s / 1e6);
  }
  {
    const absl::Time start = absl::Now();
    int64_t rows = 0, batches = 0;
    const absl::Status walked =
        (*storage)->WalkStoredRows("table", ShardStorage::kMaxRowsPerCall,
                                   [&](const StoredRowBatch& batch) {
                                     rows += batch.rows.size();
                                     ++batches;
                                     return absl::OkStatus();
                                   });
    if (!walked.ok()) return Fail(walked);
    const double s = Seconds(start);
    if (rows != n) {
      std::fprintf(stderr, "scan saw %lld rows\n",
                   static_cast<long long>(rows));
      return 1;
    }
    std::printf(
        "(b) ScanStoredRows walk: %lld rows in %lld batches, %.2f s, "
        "%.0f MiB/s, %.2f M rows/s\n",
        static_cast<long long>(rows), static_cast<long long>(batches), s,
        rows * row_bytes / mib / s, rows / s / 1e6);
  }
  for (bool with_rows : {false, true}) {
    StoreOptions options;
    options.placement = placement;
    TensorStore store(options);
    LoadOptions load;
    load.rows = with_rows;
    const absl::Time start = absl::Now();
    auto stats = (*storage)->LoadInto(&store, load);
    const double s = Seconds(start);
    if (!stats.ok()) return Fail(stats.status());
    std::printf(
        "(c) LoadInto rows=%s: %.2f s, %lld rows restored, "
        "%lld estimated on disk\n",
        with_rows ? "true " : "false", s, static_cast<long long>(stats->rows),
        static_cast<long long>(stats->rows_skipped_estimate));
  }
  storage->reset();
  std::filesystem::remove_all(dir);
  std::printf("load average after: %s\n", LoadAverage().c_str());
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Embedding rows read from a shard's RocksDB: ReadRows, ScanStoredRows "
      "and LoadInto with and without rows.");
  absl::ParseCommandLine(argc, argv);
  return tessera::Run();
}

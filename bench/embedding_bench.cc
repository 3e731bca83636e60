// embedding_bench: how close one shard's embedding rows, over the data plane,
// come to the same gather/scatter done in-process.
//
//   bazel run -c opt //bench:embedding_bench            # ~1 minute
//   bazel run -c opt //bench:embedding_bench -- --quick # ~10 s
//
// For dim 16 and 64, ids drawn Zipf(1.1) and uniformly over a key space of
// --rows ranks (each rank mapped to a hashed-looking 64-bit id), 4096 ids per
// request, a pool of --pool requests drawn once with a fixed seed and cycled:
//
//   - Tessera: a real tessera-ps child process (1 shard, on 127.0.0.1, ports
//     picked free, started from the runfiles and polled until its health says
//     SERVING; killed and reaped at the end) holding one EMBEDDING table per
//     dim (shape {0, dim}, Adagrad), prefilled by pushing every id of the key
//     space once; one PsClient in this process pulls (PullRows) and pushes
//     (PushRows) the pool's requests with 1 and 4 requests in flight
//     (--api=tables sends them as one-table PullTables / PushTables);
//   - the limit, in the same run on the same ids and dim: an in-process
//     absl::flat_hash_map<uint64_t, uint32_t> from id to a row of one
//     contiguous float array (dim values, then dim Adagrad sums), prefilled
//     with the same ids; gather = copy each id's row to an output buffer,
//     scatter = find-or-insert each id's row and apply the shard's own
//     Adagrad kernel (ps/optim) to it. One thread.
//
// Every configuration of every cell is measured once per round, round-robin
// over --rounds rounds, so that load from elsewhere on the machine disturbs
// the shard and its limit alike; the table shows medians. rows/s counts the
// ids requested (4096 per request, repeats included) on both sides. The
// scatter does the shard's work: it sums a request's repeated ids, then
// applies one step per distinct row. Caveat: the shard works on another core
// than its client, while the limit is one thread. It also
// prints the CPU seconds per million rows of this process (client, or the
// in-process loop) and of the shard child (from /proc/<pid>/stat), and the
// bytes each table costs per row: the shard's tessera_ps_parameter_bytes +
// tessera_ps_optimizer_slot_bytes, the shard's resident-memory growth over
// the prefill, what the in-process map's index and array hold, and the ideal
// 4 x dim x 2 + 8 (values, one Adagrad slot, the id).
//
// The tiered half: the same cells on a second tessera-ps child whose tables
// are tiered (memory_policy { max_rows: rows / 10, eviction: EVICTION_DISK
// }: the table is 10x what the shard keeps in memory; --flush_interval_s=1,
// so pushed rows become evictable within a second), prefilled the same way
// and measured once its tables are down to their max_rows. Its limit, in the
// same run on the same ids: ShardStorage::ReadRows (one RocksDB MultiGet of
// the request's ids, and decoding the rows found) on a RocksDB directory in
// this process that holds the same rows, written as the shard writes them.
// Both directories are in the page cache (the machine has memory for both),
// so the tier is measured against RocksDB's own cost, not the disk's.
//
// The goals (the issue "embedding tables larger than the shards' memory"):
// in memory >= 0.5x the in-process gather (scatter, for a push); tiered >=
// 0.7x the direct MultiGet (for a pull and a push alike: a push reads its
// missing rows the same way); per cell at the better depth, computed from the
// medians of the per-round ratios.

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "bench/bench_util.h"
#include "glog/logging.h"
#include "ps/client/ps_client.h"
#include "ps/common/allocator.h"
#include "ps/optim/optimizer.h"
#include "ps/store/shard_storage.h"
#include "tessera/v1/tensor.pb.h"
#include "tests/cluster.h"

ABSL_FLAG(bool, quick, false,
          "A smoke run: 1 round of 0.15 s per configuration.");
ABSL_FLAG(double, seconds, 0.4, "Measuring time per configuration and round.");
ABSL_FLAG(int, rounds, 5,
          "Rounds: every configuration is measured once per round, "
          "round-robin; the table shows medians.");
ABSL_FLAG(int64_t, rows, 1000000,
          "Ids in the key space (ranks 0..rows-1, each mapped to a 64-bit id); "
          "every one is pushed once before measuring.");
ABSL_FLAG(int, ids_per_request, 4096, "Ids per pull or push.");
ABSL_FLAG(int, pool, 64, "Requests drawn once per distribution and cycled.");
ABSL_FLAG(double, zipf, 1.1, "Exponent of the skewed distribution.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the requests' ids.");
ABSL_FLAG(std::vector<std::string>, dims, {}, "Row sizes (default 16,64).");
ABSL_FLAG(int, data_threads, 2, "The shard's --data_threads.");
ABSL_FLAG(std::string, api, "rows",
          "rows: PullRows / PushRows; tables: the same requests as one-table "
          "PullTables / PushTables.");
ABSL_FLAG(std::string, only, "", "Run only the pull or the push cells.");
ABSL_FLAG(std::string, tiers, "memory,tiered",
          "Tiers to measure: memory, tiered or both.");

namespace tessera {
namespace {

constexpr int kDeepDepth = 4;
constexpr float kLearningRate = 0.01f;
constexpr float kGradient = 1e-3f;

// Where a table's rows live: all in memory, or a table 10x the rows the
// shard keeps in memory (limit: RocksDB MultiGet).
enum class Tier { kInMemory, kTiered };

const char* TierName(Tier tier) {
  return tier == Tier::kInMemory ? "in memory" : "tiered";
}

// splitmix64's finalizer: a bijection, so distinct ranks give distinct ids
// that look hashed.
uint64_t MixId(uint64_t rank) {
  uint64_t z = rank + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A pool of requests of one distribution, drawn once and cycled.
struct IdPool {
  std::string name;
  std::vector<std::vector<uint64_t>> requests;
  double distinct_per_request = 0;
};

// `num_requests` requests of `ids` ids over ranks [0, rows): Zipf(exponent)
// (rank k drawn with probability proportional to (k + 1)^-exponent, from a
// precomputed CDF), or uniform when exponent is 0.
IdPool DrawPool(const std::string& name, int64_t rows, double exponent,
                int num_requests, int ids, uint64_t seed) {
  IdPool pool;
  pool.name = name;
  std::mt19937_64 rng(seed);
  std::vector<double> cdf;
  if (exponent > 0) {
    cdf.resize(rows);
    double sum = 0;
    for (int64_t k = 0; k < rows; ++k) {
      sum += std::pow(static_cast<double>(k + 1), -exponent);
      cdf[k] = sum;
    }
    for (double& c : cdf) c /= sum;
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int64_t> uniform(0, rows - 1);
  int64_t distinct = 0;
  for (int r = 0; r < num_requests; ++r) {
    std::vector<uint64_t> request(ids);
    for (uint64_t& id : request) {
      int64_t rank;
      if (exponent > 0) {
        rank =
            std::lower_bound(cdf.begin(), cdf.end(), unit(rng)) - cdf.begin();
        rank = std::min(rank, rows - 1);
      } else {
        rank = uniform(rng);
      }
      id = MixId(rank);
    }
    distinct +=
        absl::flat_hash_set<uint64_t>(request.begin(), request.end()).size();
    pool.requests.push_back(std::move(request));
  }
  pool.distinct_per_request = static_cast<double>(distinct) / num_requests;
  return pool;
}

// The in-process limit: an id -> row index over one contiguous array of rows
// of `dim` values then `dim` Adagrad sums, updated by the shard's own
// Adagrad kernel. Single-threaded.
class InProcessTable {
 public:
  InProcessTable(int dim, const optim::Optimizer* optimizer)
      : dim_(dim), optimizer_(optimizer) {}

  // Copies each id's row into `out` (ids.size() x dim); a row never pushed
  // reads as zeros, the tables' initializer.
  void Gather(absl::Span<const uint64_t> ids, absl::Span<float> out) const {
    for (size_t i = 0; i < ids.size(); ++i) {
      float* dst = out.data() + i * dim_;
      auto it = index_.find(ids[i]);
      if (it == index_.end()) {
        std::fill_n(dst, dim_, 0.0f);
      } else {
        std::copy_n(rows_.data() + size_t{it->second} * 2 * dim_, dim_, dst);
      }
    }
  }

  // Bytes the index's slots and the row array hold (their capacities).
  int64_t bytes_held() const {
    return static_cast<int64_t>(
        index_.capacity() * (sizeof(std::pair<const uint64_t, uint32_t>) + 1) +
        rows_.capacity() * sizeof(float));
  }

  // As the shard does: sums the gradients of repeated ids, then finds or
  // inserts each distinct id's row and applies one Adagrad step to it (grad
  // holds ids.size() x dim).
  void Scatter(absl::Span<const uint64_t> ids, absl::Span<const float> grad) {
    first_.clear();
    distinct_.clear();
    summed_.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      auto [at, inserted] = first_.try_emplace(ids[i], distinct_.size());
      const float* g = grad.data() + i * dim_;
      if (inserted) {
        distinct_.push_back(ids[i]);
        summed_.insert(summed_.end(), g, g + dim_);
      } else {
        float* sum = summed_.data() + at->second * dim_;
        for (int j = 0; j < dim_; ++j) sum[j] += g[j];
      }
    }
    for (size_t k = 0; k < distinct_.size(); ++k) {
      auto [it, inserted] = index_.try_emplace(
          distinct_[k], static_cast<uint32_t>(index_.size()));
      if (inserted) rows_.resize(rows_.size() + 2 * dim_, 0.0f);
      float* row = rows_.data() + size_t{it->second} * 2 * dim_;
      float* const slots[] = {row + dim_};
      optimizer_->Apply(absl::MakeSpan(row, dim_),
                        absl::MakeConstSpan(summed_).subspan(k * dim_, dim_),
                        absl::MakeSpan(slots),
                        /*step=*/1);
    }
  }

 private:
  const int dim_;
  const optim::Optimizer* const optimizer_;  // Not owned; outlives this.
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  std::vector<float> rows_;
  // Scatter's scratch: each distinct id's position, the ids, their sums.
  absl::flat_hash_map<uint64_t, size_t> first_;
  std::vector<uint64_t> distinct_;
  std::vector<float> summed_;
};

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// User + system CPU seconds of process `pid` (/proc/<pid>/stat), or 0.
double ChildCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return 0;
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  // After "pid (comm) ": state is field 3; utime and stime are 14 and 15.
  std::vector<std::string> fields = absl::StrSplit(line.substr(paren + 2), ' ');
  if (fields.size() < 13) return 0;
  double utime = 0, stime = 0;
  if (!absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return 0;
  }
  return (utime + stime) / sysconf(_SC_CLK_TCK);
}

// Resident bytes of process `pid` (/proc/<pid>/statm), or 0.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/statm"));
  int64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * sysconf(_SC_PAGESIZE);
}

std::string TableName(int dim) { return absl::StrCat("emb", dim); }

v1::TensorSpec TableSpec(int dim, int64_t max_rows = 0) {
  v1::TensorSpec spec;
  spec.set_name(TableName(dim));
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(0);  // Unbounded: hashed ids.
  spec.add_shape(dim);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(kLearningRate);
  if (max_rows > 0) {
    spec.mutable_memory_policy()->set_max_rows(max_rows);
    spec.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  }
  return spec;
}

// One measurement of one configuration.
struct Sample {
  int64_t requests = 0;
  int64_t rows = 0;
  double seconds = 0;
  double cpu_seconds = 0;         // this process
  double shard_cpu = 0;           // the shard child; 0 for the in-process limit
  std::vector<double> latencies;  // seconds per request

  double rows_per_s() const { return seconds > 0 ? rows / seconds : 0; }
};

// The median of `values` (not empty).
double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

std::string Latency(double seconds) {
  if (seconds <= 0) return "-";
  if (seconds < 1e-3) return absl::StrFormat("%.0f us", seconds * 1e6);
  return absl::StrFormat("%.2f ms", seconds * 1e3);
}

// Runs `one` on the pool's requests, cycled, one after another from this
// thread, for `duration`: a limit's loop.
Sample RunLimit(const IdPool& pool, absl::Duration duration,
                const std::function<void(const std::vector<uint64_t>&)>& one) {
  Sample sample;
  size_t next = 0;
  const double cpu_start = ProcessCpuSeconds();
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  absl::Time now = start;
  while (now < end) {
    one(pool.requests[next++ % pool.requests.size()]);
    const absl::Time done = absl::Now();
    sample.latencies.push_back(absl::ToDoubleSeconds(done - now));
    now = done;
  }
  sample.seconds = absl::ToDoubleSeconds(now - start);
  sample.cpu_seconds = ProcessCpuSeconds() - cpu_start;
  sample.requests = static_cast<int64_t>(sample.latencies.size());
  sample.rows = sample.requests * static_cast<int64_t>(pool.requests[0].size());
  return sample;
}

// The in-process limit's loop over the pool for `duration`.
Sample RunInProcess(InProcessTable& table, const IdPool& pool, bool push,
                    int dim, absl::Duration duration) {
  const size_t ids = pool.requests[0].size();
  std::vector<float> out(ids * dim);
  const std::vector<float> grad(ids * dim, kGradient);
  Sample sample =
      RunLimit(pool, duration, [&](const std::vector<uint64_t>& request) {
        if (push) {
          table.Scatter(request, grad);
        } else {
          table.Gather(request, absl::MakeSpan(out));
        }
      });
  volatile float sink = out[out.size() / 2];  // Keeps the copies observable.
  (void)sink;
  return sample;
}

// One tessera-ps child and a client to it.
struct ShardUnderTest {
  std::unique_ptr<testing::ShardProcess> process;
  std::unique_ptr<PsClient> client;
  std::string dir;
};

// `flush_interval_s`: an hour keeps RocksDB out of the in-memory cells.
ShardUnderTest StartShard(const std::string& name, int flush_interval_s) {
  ShardUnderTest s;
  s.dir = testing::TempPath(name);
  std::error_code ec;
  std::filesystem::remove_all(s.dir, ec);
  auto process = testing::ShardProcess::Start(
      0, 1, s.dir,
      {absl::StrCat("--data_threads=", absl::GetFlag(FLAGS_data_threads)),
       absl::StrCat("--flush_interval_s=", flush_interval_s)},
      absl::Seconds(60), s.dir + ".log");
  BENCH_CHECK_OK(process.status());
  s.process = *std::move(process);
  PsClientOptions options;
  options.shard_addresses = {s.process->ports().grpc_address()};
  options.default_deadline = absl::Seconds(60);
  auto client = PsClient::Connect(options);
  BENCH_CHECK_OK(client.status());
  s.client = *std::move(client);
  return s;
}

// Starts one call on `slot`'s buffers; `done` runs when it completes.
using Op = std::function<void(int slot, DoneCallback done)>;

// Runs `op` with `depth` calls in flight for `duration`, from this thread.
Sample Drive(int depth, absl::Duration duration, const Op& op, pid_t shard) {
  absl::Mutex mu;
  std::vector<int> free_slots;
  for (int s = 0; s < depth; ++s) free_slots.push_back(s);
  std::vector<double> latencies;
  latencies.reserve(1 << 14);
  absl::Status error;
  const double cpu_start = ProcessCpuSeconds();
  const double shard_start = ChildCpuSeconds(shard);
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  while (absl::Now() < end) {
    int slot;
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](std::vector<int>* v) { return !v->empty(); }, &free_slots));
      slot = free_slots.back();
      free_slots.pop_back();
    }
    const absl::Time began = absl::Now();
    op(slot, [&, slot, began](const absl::Status& status) {
      const double took = absl::ToDoubleSeconds(absl::Now() - began);
      absl::MutexLock lock(&mu);
      if (!status.ok() && error.ok()) error = status;
      latencies.push_back(took);
      free_slots.push_back(slot);
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all_back = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return free_slots.size() == static_cast<size_t>(depth);
    };
    mu.Await(absl::Condition(&all_back));
  }
  Sample sample;
  sample.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  sample.cpu_seconds = ProcessCpuSeconds() - cpu_start;
  sample.shard_cpu = ChildCpuSeconds(shard) - shard_start;
  BENCH_CHECK_OK(error);
  sample.requests = static_cast<int64_t>(latencies.size());
  sample.latencies = std::move(latencies);
  return sample;
}

// Pulls or pushes the pool's requests on `s` with `depth` in flight.
Sample RunTessera(ShardUnderTest& s, const IdPool& pool, bool push, int dim,
                  int depth, absl::Duration duration) {
  const std::string tensor = TableName(dim);
  const size_t ids = pool.requests[0].size();
  const bool tables = absl::GetFlag(FLAGS_api) == "tables";
  std::vector<std::vector<float>> out(depth, std::vector<float>(ids * dim));
  const std::vector<float> grad(ids * dim, kGradient);
  size_t next = 0;  // Only this thread starts calls.
  PsClient& client = *s.client;
  Op op = [&](int slot, DoneCallback done) {
    const std::vector<uint64_t>& request =
        pool.requests[next++ % pool.requests.size()];
    if (push && tables) {
      const TableRowsPush t{tensor, request, grad};
      client.PushTablesAsync(absl::MakeConstSpan(&t, 1), std::move(done));
    } else if (push) {
      client.PushRowsAsync(tensor, request, grad, std::move(done));
    } else if (tables) {
      const TableRowsPull t{tensor, request, absl::MakeSpan(out[slot])};
      client.PullTablesAsync(absl::MakeConstSpan(&t, 1), std::move(done));
    } else {
      client.PullRowsAsync(tensor, request, absl::MakeSpan(out[slot]),
                           std::move(done));
    }
  };
  const pid_t pid = s.process->child().pid();
  Drive(depth, absl::Milliseconds(50), op, pid);  // Warm up.
  Sample sample = Drive(depth, duration, op, pid);
  sample.rows = sample.requests * static_cast<int64_t>(ids);
  return sample;
}

// Pushes every id of ranks [0, rows) once to `tensor` on `s`, 4096 at a
// time with a few requests in flight.
void Prefill(ShardUnderTest& s, int dim, int64_t rows) {
  constexpr int64_t kChunk = 4096;
  constexpr size_t kInFlight = 4;
  const std::vector<float> grad(kChunk * dim, kGradient);
  std::vector<std::future<absl::Status>> pending;
  std::vector<uint64_t> ids;
  for (int64_t begin = 0; begin < rows; begin += kChunk) {
    ids.clear();
    for (int64_t r = begin; r < std::min(rows, begin + kChunk); ++r) {
      ids.push_back(MixId(r));
    }
    // PushRows copies ids and grad before it returns.
    pending.push_back(
        s.client->PushRows(TableName(dim), ids,
                           absl::MakeConstSpan(grad.data(), ids.size() * dim)));
    if (pending.size() >= kInFlight) {
      BENCH_CHECK_OK(pending.front().get());
      pending.erase(pending.begin());
    }
  }
  for (auto& f : pending) BENCH_CHECK_OK(f.get());
}

// The tiered cells' limit: a RocksDB directory (ShardStorage) in this
// process holding the same rows as the tiered shard's tables.
struct DiskLimit {
  std::string dir;
  std::unique_ptr<ShardStorage> storage;
};

DiskLimit OpenDiskLimit(const std::vector<int>& dims, int64_t rows) {
  DiskLimit limit;
  limit.dir = testing::TempPath("embedding_bench-multiget");
  std::error_code ec;
  std::filesystem::remove_all(limit.dir, ec);
  v1::PlacementConfig placement;
  placement.set_num_shards(1);
  auto storage = ShardStorage::Open(limit.dir, 0, placement);
  BENCH_CHECK_OK(storage.status());
  limit.storage = *std::move(storage);
  std::vector<v1::TensorSpec> specs;
  for (int dim : dims) specs.push_back(TableSpec(dim));
  BENCH_CHECK_OK(limit.storage->SaveSpecs(specs));
  constexpr int64_t kChunk = 16384;
  for (int dim : dims) {
    for (int64_t begin = 0; begin < rows; begin += kChunk) {
      DirtySnapshot snapshot;
      for (int64_t r = begin; r < std::min(rows, begin + kChunk); ++r) {
        DirtySnapshot::Row row;
        row.tensor = TableName(dim);
        row.id = MixId(r);
        row.step = 1;
        row.values.assign(2 * dim, kGradient);  // values, one Adagrad slot
        snapshot.rows.push_back(std::move(row));
      }
      snapshot.versions.push_back({TableName(dim), 1, 0});
      BENCH_CHECK_OK(limit.storage->Write(snapshot));
    }
  }
  return limit;
}

// The tiered limit's loop: one ReadRows (MultiGet) per request.
Sample RunMultiGet(ShardStorage& storage, const IdPool& pool, int dim,
                   absl::Duration duration) {
  int64_t found = 0;
  Sample sample =
      RunLimit(pool, duration, [&](const std::vector<uint64_t>& request) {
        auto rows = storage.ReadRows(TableName(dim), request);
        BENCH_CHECK_OK(rows.status());
        for (const auto& row : *rows) found += row.has_value();
      });
  CHECK_GT(found, 0);
  return sample;
}

// Polls until every tiered table of `s` holds at most 1.05 x `max_rows` in
// memory (the flushes after the prefill evict the rest); false after
// `deadline`.
bool AwaitEvicted(ShardUnderTest& s, const std::vector<int>& dims,
                  int64_t max_rows, absl::Duration deadline) {
  const absl::Time end = absl::Now() + deadline;
  while (absl::Now() < end) {
    bool all = true;
    for (int dim : dims) {
      auto held =
          s.process->Metric("tessera_ps_table_rows",
                            absl::StrCat("tensor=\"", TableName(dim), "\""));
      all = all && held.ok() && *held <= 1.05 * max_rows;
    }
    if (all) return true;
    absl::SleepFor(absl::Milliseconds(200));  // Polling period.
  }
  return false;
}

// One row of the table: a configuration, measured once per round.
struct Config {
  Tier tier = Tier::kInMemory;
  int dim = 0;
  const IdPool* pool = nullptr;
  bool push = false;
  int depth = 0;  // 0: the in-process limit
  std::function<Sample()> run;
  std::vector<Sample> rounds;
  std::vector<double> ratios;  // to the limit of the same cell and round

  bool limit() const { return depth == 0; }
  bool SameCell(const Config& o) const {
    return tier == o.tier && dim == o.dim && pool == o.pool && push == o.push;
  }
  double rows_per_s() const {
    std::vector<double> v;
    for (const Sample& s : rounds) v.push_back(s.rows_per_s());
    return Median(v);
  }
  double ratio() const { return ratios.empty() ? 0 : Median(ratios); }
  // CPU seconds per million rows: this process, the shard.
  double cpu_per_mrow(bool shard) const {
    std::vector<double> v;
    for (const Sample& s : rounds) {
      if (s.rows > 0)
        v.push_back((shard ? s.shard_cpu : s.cpu_seconds) * 1e6 / s.rows);
    }
    return v.empty() ? 0 : Median(v);
  }
  double p50() const {
    std::vector<double> all;
    for (const Sample& s : rounds) {
      all.insert(all.end(), s.latencies.begin(), s.latencies.end());
    }
    return all.empty() ? 0 : Median(all);
  }
};

int Run(const char* argv0) {
  testing::EnterRunfiles(argv0);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const absl::Duration duration =
      absl::Seconds(quick ? 0.15 : absl::GetFlag(FLAGS_seconds));
  const int num_rounds = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_rounds));
  const int64_t rows = absl::GetFlag(FLAGS_rows);
  const int ids_per_request = absl::GetFlag(FLAGS_ids_per_request);
  const std::string api = absl::GetFlag(FLAGS_api);
  const std::string only = absl::GetFlag(FLAGS_only);
  CHECK(rows > 0 && ids_per_request > 0 && absl::GetFlag(FLAGS_pool) > 0);
  CHECK(api == "rows" || api == "tables") << "--api=" << api;
  CHECK(only.empty() || only == "pull" || only == "push") << "--only=" << only;
  const std::string tiers = absl::GetFlag(FLAGS_tiers);
  std::vector<Tier> tier_list;
  if (absl::StrContains(tiers, "memory")) tier_list.push_back(Tier::kInMemory);
  if (absl::StrContains(tiers, "tiered")) tier_list.push_back(Tier::kTiered);
  CHECK(!tier_list.empty()) << "--tiers=" << tiers;
  const bool want_tiered = tier_list.back() == Tier::kTiered;
  const int64_t tiered_max_rows = std::max<int64_t>(1, rows / 10);
  std::vector<int> dims = {16, 64};
  if (!absl::GetFlag(FLAGS_dims).empty()) {
    dims.clear();
    for (const std::string& d : absl::GetFlag(FLAGS_dims)) {
      int n = 0;
      CHECK(absl::SimpleAtoi(d, &n) && n > 0) << "--dims=" << d;
      dims.push_back(n);
    }
  }
  const bool tuned = KeepFreedMessageMemory();

  const double zipf = absl::GetFlag(FLAGS_zipf);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  std::vector<IdPool> pools;
  pools.push_back(DrawPool(absl::StrFormat("zipf %.2g", zipf), rows, zipf,
                           absl::GetFlag(FLAGS_pool), ids_per_request, seed));
  pools.push_back(DrawPool("uniform", rows, 0, absl::GetFlag(FLAGS_pool),
                           ids_per_request, seed + 1));

  std::printf(
      "embedding_bench: 1 tessera-ps child (%d data threads) on 127.0.0.1, "
      "1 PsClient (%s), Adagrad tables of %lld ids, %d ids per request, "
      "%d round(s) of %s per configuration, malloc %s, %ld cores\n",
      absl::GetFlag(FLAGS_data_threads),
      api == "tables" ? "PullTables/PushTables" : "PullRows/PushRows",
      static_cast<long long>(rows), ids_per_request, num_rounds,
      absl::FormatDuration(duration).c_str(),
      tuned ? "tuned (KeepFreedMessageMemory)" : "default",
      sysconf(_SC_NPROCESSORS_ONLN));
  for (const IdPool& pool : pools) {
    std::printf(
        "  %s: %zu requests, %.0f distinct ids per request on average\n",
        pool.name.c_str(), pool.requests.size(), pool.distinct_per_request);
  }
  std::fflush(stdout);

  // The limit's tables, prefilled with the same ids.
  // What the shard builds from TableSpec's optimizer (torch's defaults).
  optim::OptimizerConfig adagrad = optim::TorchDefaultOptimizerConfig(
      optim::OptimizerConfig::Kind::kAdagrad);
  adagrad.learning_rate = kLearningRate;
  auto optimizer = optim::NewOptimizer(adagrad);
  BENCH_CHECK_OK(optimizer.status());
  std::vector<std::unique_ptr<InProcessTable>> local;
  std::vector<int64_t> local_bytes;
  {
    constexpr int64_t kChunk = 4096;
    std::vector<uint64_t> ids;
    for (int dim : dims) {
      local.push_back(std::make_unique<InProcessTable>(dim, optimizer->get()));
      const std::vector<float> grad(kChunk * dim, kGradient);
      for (int64_t begin = 0; begin < rows; begin += kChunk) {
        ids.clear();
        for (int64_t r = begin; r < std::min(rows, begin + kChunk); ++r) {
          ids.push_back(MixId(r));
        }
        local.back()->Scatter(ids, grad);
      }
      local_bytes.push_back(local.back()->bytes_held());
    }
  }

  // The shard, its tables created and prefilled one after another, with its
  // resident-memory growth and its gauges read around each.
  const absl::Time started = absl::Now();
  ShardUnderTest shard = StartShard("embedding_bench-shard", 3600);
  const pid_t shard_pid = shard.process->child().pid();
  std::vector<v1::TensorSpec> specs;
  for (int dim : dims) specs.push_back(TableSpec(dim));
  BENCH_CHECK_OK(shard.client->CreateTensors(specs));
  {
    // Warm the data plane's buffers (a pull creates no row) before the first
    // resident-memory reading.
    std::vector<float> out(pools[1].requests[0].size() *
                           *std::max_element(dims.begin(), dims.end()));
    for (int dim : dims) {
      BENCH_CHECK_OK(
          shard.client
              ->PullRows(
                  TableName(dim), pools[1].requests[0],
                  absl::MakeSpan(out.data(), pools[1].requests[0].size() * dim))
              .get());
    }
  }
  auto gauges = [&] {
    auto p = shard.process->Metric("tessera_ps_parameter_bytes");
    auto s = shard.process->Metric("tessera_ps_optimizer_slot_bytes");
    BENCH_CHECK_OK(p.status());
    BENCH_CHECK_OK(s.status());
    return *p + *s;
  };
  std::vector<int64_t> shard_rss;
  std::vector<double> shard_gauges;
  for (int dim : dims) {
    const int64_t before = ResidentBytes(shard_pid);
    const double gauges_before = gauges();
    Prefill(shard, dim, rows);
    shard_rss.push_back(ResidentBytes(shard_pid) - before);
    shard_gauges.push_back(gauges() - gauges_before);
  }
  std::fprintf(stderr, "shard started and %zu table(s) prefilled in %.1f s\n",
               dims.size(), absl::ToDoubleSeconds(absl::Now() - started));

  // The tiered shard and its limit: the same rows, a tenth of them in
  // memory.
  ShardUnderTest tiered;
  DiskLimit disk;
  if (want_tiered) {
    const absl::Time t0 = absl::Now();
    tiered = StartShard("embedding_bench-tiered", 1);
    std::vector<v1::TensorSpec> tiered_specs;
    for (int dim : dims)
      tiered_specs.push_back(TableSpec(dim, tiered_max_rows));
    BENCH_CHECK_OK(tiered.client->CreateTensors(tiered_specs));
    for (int dim : dims) Prefill(tiered, dim, rows);
    CHECK(AwaitEvicted(tiered, dims, tiered_max_rows, absl::Seconds(300)))
        << "the tiered shard's tables stayed above their max_rows";
    disk = OpenDiskLimit(dims, rows);
    std::fprintf(stderr,
                 "tiered shard prefilled and evicted to %lld rows per table, "
                 "and its limit's RocksDB written, in %.1f s\n",
                 static_cast<long long>(tiered_max_rows),
                 absl::ToDoubleSeconds(absl::Now() - t0));
  }

  // The configurations: per tier, dim, distribution and op, the limit and
  // Tessera at depths 1 and 4.
  std::vector<Config> configs;
  for (Tier tier : tier_list) {
    for (size_t d = 0; d < dims.size(); ++d) {
      const int dim = dims[d];
      for (const IdPool& pool : pools) {
        for (bool push : {false, true}) {
          if (!only.empty() && only != (push ? "push" : "pull")) continue;
          InProcessTable* table = local[d].get();
          const IdPool* p = &pool;
          Config limit{tier, dim, p, push, 0};
          if (tier == Tier::kInMemory) {
            limit.run = [=] {
              return RunInProcess(*table, *p, push, dim, duration);
            };
          } else {
            limit.run = [=, &disk] {
              return RunMultiGet(*disk.storage, *p, dim, duration);
            };
          }
          configs.push_back(std::move(limit));
          ShardUnderTest* target = tier == Tier::kInMemory ? &shard : &tiered;
          for (int depth : {1, kDeepDepth}) {
            Config c{tier, dim, p, push, depth};
            c.run = [=] {
              return RunTessera(*target, *p, push, dim, depth, duration);
            };
            configs.push_back(std::move(c));
          }
        }
      }
    }
  }
  for (int r = 0; r < num_rounds; ++r) {
    for (Config& c : configs) c.rounds.push_back(c.run());
    for (Config& c : configs) {
      for (const Config& l : configs) {
        if (l.limit() && l.SameCell(c) && l.rounds.back().rows_per_s() > 0) {
          c.ratios.push_back(c.rounds.back().rows_per_s() /
                             l.rounds.back().rows_per_s());
        }
      }
    }
    std::fprintf(stderr, "  round %d of %d done\n", r + 1, num_rounds);
  }

  std::printf("\n%-9s %4s %-9s %-4s %-10s %5s %11s %9s %9s %10s %10s\n", "tier",
              "dim", "ids", "op", "path", "depth", "rows/s", "p50", "of limit",
              "cpu s/Mrow", "shard s/Mrow");
  for (const Config& c : configs) {
    std::printf(
        "%-9s %4d %-9s %-4s %-10s %5s %11.0f %9s %8.2fx %10.3f %10s\n",
        TierName(c.tier), c.dim, c.pool->name.c_str(), c.push ? "push" : "pull",
        !c.limit()                  ? "tessera"
        : c.tier == Tier::kInMemory ? "in-process"
                                    : "multiget",
        c.limit() ? "-" : absl::StrCat(c.depth).c_str(), c.rows_per_s(),
        Latency(c.p50()).c_str(), c.ratio(), c.cpu_per_mrow(false),
        c.limit() ? "-"
                  : absl::StrFormat("%.3f", c.cpu_per_mrow(true)).c_str());
  }
  std::printf(
      "\nrows/s: ids requested per second (repeats included), median over "
      "rounds; p50: per request, over all rounds; of limit: median over rounds "
      "of rows/s / the in-process limit's rows/s in the same round (gather "
      "for pull, scatter for push; for the tiered cells, "
      "ShardStorage::ReadRows "
      "of the same ids: one RocksDB MultiGet); cpu s/Mrow: CPU seconds per "
      "million rows of this process (the client, or the limit's loop) and of "
      "the shard child.\n");
  if (want_tiered) {
    std::printf("\ntiered shard after the rounds (max_rows %lld per table):\n",
                static_cast<long long>(tiered_max_rows));
    for (int dim : dims) {
      const std::string labels =
          absl::StrCat("tensor=\"", TableName(dim), "\"");
      auto metric = [&](const char* name) {
        auto v = tiered.process->Metric(name, labels);
        return v.ok() ? *v : -1.0;
      };
      const double hits = metric("tessera_ps_table_pull_hits_total");
      const double misses = metric("tessera_ps_table_pull_misses_total");
      std::printf(
          "  %s: %.0f rows in memory, %.1f MiB on disk (RocksDB's estimate), "
          "pull hit rate %.3f, %.0f rows read from disk, %.0f evicted\n",
          TableName(dim).c_str(), metric("tessera_ps_table_rows"),
          metric("tessera_ps_table_disk_bytes") / (1 << 20),
          hits + misses > 0 ? hits / (hits + misses) : 0.0,
          metric("tessera_ps_table_disk_hits_total"),
          metric("tessera_ps_table_evictions_total"));
    }
  }

  std::printf("\nbytes per row after the prefill (%lld rows per table):\n",
              static_cast<long long>(rows));
  std::printf("  %-44s", "");
  for (int dim : dims) std::printf(" %8s", absl::StrCat("dim ", dim).c_str());
  std::printf("\n");
  auto print_line = [&](const char* what, auto value) {
    std::printf("  %-44s", what);
    for (size_t d = 0; d < dims.size(); ++d) {
      std::printf(" %8.1f", static_cast<double>(value(d)) / rows);
    }
    std::printf("\n");
  };
  print_line("shard: parameter + optimizer slot gauges",
             [&](size_t d) { return shard_gauges[d]; });
  print_line("shard: resident memory growth",
             [&](size_t d) { return static_cast<double>(shard_rss[d]); });
  print_line("in-process map: index slots + row array held",
             [&](size_t d) { return static_cast<double>(local_bytes[d]); });
  print_line("ideal (4 x dim x 2 + 8)", [&](size_t d) {
    return static_cast<double>(rows) * (4.0 * dims[d] * 2 + 8);
  });
  std::printf("  %-44s", "shard resident growth / ideal");
  for (size_t d = 0; d < dims.size(); ++d) {
    std::printf(" %7.2fx", static_cast<double>(shard_rss[d]) / rows /
                               (4.0 * dims[d] * 2 + 8));
  }
  std::printf(
      "\n  (resident growth: the shard process's, over the prefill of that "
      "table; it includes freed buffers that malloc keeps for reuse, "
      "KeepFreedMessageMemory, after the table's arrays grew)\n");

  std::printf(
      "\ngoals (1 shard, the better depth; of the limit of the same ids and "
      "dim):\n");
  for (const Config& l : configs) {
    if (!l.limit()) continue;
    const Config* best = nullptr;  // The better depth of this cell.
    for (const Config& c : configs) {
      if (!c.limit() && c.SameCell(l) &&
          (best == nullptr || c.ratio() > best->ratio())) {
        best = &c;
      }
    }
    if (best == nullptr) continue;
    const bool memory = l.tier == Tier::kInMemory;
    const double goal = memory ? 0.5 : 0.7;
    std::printf(
        "  %s, dim %d, %s, %s: %.2fx the %s at depth %d (goal %.1fx) %s\n",
        TierName(l.tier), l.dim, l.pool->name.c_str(), l.push ? "push" : "pull",
        best->ratio(),
        memory ? (l.push ? "in-process scatter" : "in-process gather")
               : "direct MultiGet",
        best->depth, goal, best->ratio() >= goal ? "met" : "NOT met");
  }
  std::fflush(stdout);

  // Kill and reap the shards, then remove their files.
  std::error_code ec;
  for (ShardUnderTest* s : {&shard, &tiered}) {
    if (s->process == nullptr) continue;
    s->client.reset();
    s->process.reset();
    std::filesystem::remove_all(s->dir, ec);
    std::filesystem::remove(s->dir + ".log", ec);
  }
  if (disk.storage != nullptr) {
    disk.storage.reset();
    std::filesystem::remove_all(disk.dir, ec);
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "embedding_bench: one shard's embedding pulls and pushes over the data "
      "plane against the same gather/scatter on an in-process hash map.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;  // Warnings and up.
  google::InitGoogleLogging(argv[0]);
  return tessera::Run(argv[0]);
}

// row_memory_bench: what an embedding table's rows cost in memory, and the
// memory its growth needs for a moment. Grows one table of a TensorStore to
// --rows rows (pushes of --batch new ids) for every dim in --dims and
// optimizer in --optimizers, and in the same run two baselines grown to the
// same rows:
//
//   chunks       TensorStore's rows (ps/store/tensor_store.cc: chunks that
//                never move, an index of 64 maps);
//   old vectors  the store's layout before chunks: a std::vector per field
//                (values, each optimizer slot, steps, dirty flags, the dirty
//                list, ids) resized row by row, and one
//                flat_hash_map<uint64_t, uint32_t> index;
//   one vector   one std::vector<float> grown by push_back to the floats of
//                the rows' values and slots.
//
// For each it prints bytes per row against the ideal 4 x dim x (1 + slots)
// + 8 (the floats and the id): measured as the process's RSS delta, as
// malloc's in-use delta (mallinfo2), and, for chunks, the store's own
// accounting (memory_bytes(), with the index's share). Then the growth:
// peak/final = the highest RSS during growth over the final RSS (deltas from
// the start), and "worst moment" = the largest, over the pushes ending with
// at least 32 MiB held, of the RSS high-water mark during the push over the
// RSS after it: what growing needs for a moment beyond what the table then
// holds (2 for a vector's doubling: old and new copy at once). The
// high-water mark is reset before each push (clear_refs 5), so a vector's
// copy, freed inside the push, is seen.
//
//   bazel run -c opt //bench:row_memory_bench       # ~20 s on 2 cores
//   bazel run -c opt //bench:row_memory_bench -- --rows=500000 --dims=16
//
// glibc's mmap threshold is fixed at its default 128 KiB (mallopt), so that
// a freed big vector returns to the kernel as in a fresh process, and the
// runs do not depend on each other (each ends with malloc_trim).

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ps/optim/optimizer.h"
#include "ps/spec/initializer.h"
#include "ps/store/tensor_store.h"

ABSL_FLAG(int64_t, rows, 2000000, "Rows each table grows to.");
ABSL_FLAG(int64_t, batch, 4096, "New rows per push.");
ABSL_FLAG(std::string, dims, "16,64", "Embedding dims, comma-separated.");
ABSL_FLAG(std::string, optimizers, "sgd,adagrad,adam",
          "Optimizers (sgd, adagrad, adam), comma-separated.");

namespace tessera {
namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kMinHeld = 32 * kMiB;  // for the worst moment

// VmRSS and VmHWM of this process, in bytes.
struct Rss {
  int64_t rss = 0;
  int64_t hwm = 0;
};

Rss ReadRss() {
  std::ifstream status("/proc/self/status");
  Rss r;
  std::string line;
  while (std::getline(status, line)) {
    int64_t kb = 0;
    auto field = [&](const char* name) {
      const std::string prefix = std::string(name) + ":";
      if (line.rfind(prefix, 0) != 0) return false;
      std::string rest = line.substr(prefix.size());
      rest.erase(std::remove_if(rest.begin(), rest.end(),
                                [](char c) { return c < '0' || c > '9'; }),
                 rest.end());
      return absl::SimpleAtoi(rest, &kb);
    };
    if (field("VmRSS")) r.rss = kb * 1024;
    if (field("VmHWM")) r.hwm = kb * 1024;
  }
  return r;
}

// Resets VmHWM to the current RSS (Linux 4.0+).
void ResetHighWaterMark() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
}

int64_t MallocInUse() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

struct Figures {
  int64_t rss_bytes = 0;     // final RSS - RSS at the start
  int64_t malloc_bytes = 0;  // malloc in use, likewise
  int64_t peak_bytes = 0;    // highest RSS during growth - RSS at the start
  double worst_moment = 0;   // see the top of the file
  int64_t store_bytes = 0;   // chunks only: memory_bytes()
  int64_t index_bytes = 0;   // chunks only: the index's arrays
  double seconds = 0;
};

// Measures `grow(begin, end)` called for batches of rows until `rows`.
template <typename Grow>
Figures Measure(int64_t rows, int64_t batch, Grow grow) {
  malloc_trim(0);
  const Rss start = ReadRss();
  const int64_t malloc_start = MallocInUse();
  Figures f;
  const absl::Time t0 = absl::Now();
  for (int64_t begin = 0; begin < rows; begin += batch) {
    ResetHighWaterMark();
    grow(begin, std::min(rows, begin + batch));
    const Rss now = ReadRss();
    const int64_t peak = now.hwm - start.rss;
    const int64_t held = now.rss - start.rss;
    f.peak_bytes = std::max(f.peak_bytes, peak);
    if (held >= kMinHeld) {
      f.worst_moment =
          std::max(f.worst_moment, static_cast<double>(peak) / held);
    }
  }
  f.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  f.rss_bytes = ReadRss().rss - start.rss;
  f.malloc_bytes = MallocInUse() - malloc_start;
  return f;
}

v1::TensorSpec TableSpec(int64_t dim, const std::string& optimizer) {
  v1::TensorSpec spec;
  spec.set_name("table");
  spec.add_shape(0);
  spec.add_shape(dim);
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.mutable_initializer()->set_kind(v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-0.05f);
  spec.mutable_initializer()->set_high(0.05f);
  v1::OptimizerConfig::Kind kind = v1::OptimizerConfig::SGD;
  if (optimizer == "adagrad") kind = v1::OptimizerConfig::ADAGRAD;
  if (optimizer == "adam") kind = v1::OptimizerConfig::ADAM;
  spec.mutable_optimizer()->set_kind(kind);
  return spec;
}

Figures GrowChunks(const v1::TensorSpec& spec, int64_t rows, int64_t batch) {
  StoreOptions options;
  options.placement.set_num_shards(1);
  auto store = std::make_unique<TensorStore>(options);
  if (!store->CreateTensors({spec}).ok()) std::abort();
  const int64_t dim = spec.shape(1);
  const std::vector<float> grad(batch * dim, 0.01f);
  std::vector<uint64_t> ids;
  Figures f = Measure(rows, batch, [&](int64_t begin, int64_t end) {
    ids.clear();
    for (int64_t id = begin; id < end; ++id) ids.push_back(id);
    auto pushed = store->PushRows(
        "table", ids, absl::MakeConstSpan(grad.data(), ids.size() * dim));
    if (!pushed.ok()) {
      std::fprintf(stderr, "%s\n", pushed.status().ToString().c_str());
      std::abort();
    }
  });
  f.store_bytes = store->memory_bytes();
  f.index_bytes = store->Footprint("table")->index_bytes;
  store.reset();
  return f;
}

// The store's rows before chunks (its RowLocked and Apply's dirty marks).
class OldLayoutTable {
 public:
  explicit OldLayoutTable(const v1::TensorSpec& spec)
      : spec_(spec),
        dim_(spec.shape(1)),
        optimizer_(*optim::NewOptimizer(ToOptimizerConfig(spec.optimizer()))),
        slots_(optimizer_->num_slots()) {}

  void Add(uint64_t id) {
    auto [it, inserted] = index_.try_emplace(id, steps_.size());
    if (!inserted) return;
    const uint32_t r = it->second;
    values_.resize((r + 1) * dim_);
    InitializeRows(spec_, id, absl::MakeSpan(values_.data() + r * dim_, dim_));
    std::vector<float*> slot_ptrs;
    for (auto& s : slots_) {
      s.resize((r + 1) * dim_);
      slot_ptrs.push_back(s.data() + r * dim_);
    }
    optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), dim_);
    steps_.push_back(1);
    dirty_.push_back(true);
    dirty_rows_.push_back(r);
    row_ids_.push_back(id);
  }

 private:
  const v1::TensorSpec spec_;
  const int64_t dim_;
  const std::unique_ptr<optim::Optimizer> optimizer_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  std::vector<uint64_t> row_ids_;
  std::vector<float> values_;
  std::vector<std::vector<float>> slots_;
  std::vector<int64_t> steps_;
  std::vector<bool> dirty_;
  std::vector<uint32_t> dirty_rows_;
};

Figures GrowOldLayout(const v1::TensorSpec& spec, int64_t rows, int64_t batch) {
  auto table = std::make_unique<OldLayoutTable>(spec);
  Figures f = Measure(rows, batch, [&](int64_t begin, int64_t end) {
    for (int64_t id = begin; id < end; ++id) table->Add(id);
  });
  table.reset();
  return f;
}

Figures GrowOneVector(int64_t row_floats, int64_t rows, int64_t batch) {
  auto floats = std::make_unique<std::vector<float>>();
  Figures f = Measure(rows, batch, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * row_floats; i < end * row_floats; ++i) {
      floats->push_back(0.01f * (i & 7));
    }
  });
  floats.reset();
  return f;
}

void Print(const char* layout, const Figures& f, int64_t rows, int64_t ideal,
           bool store) {
  const double rss = static_cast<double>(f.rss_bytes) / rows;
  std::printf("  %-12s %9.1f %7.2fx %10.1f", layout, rss, rss / ideal,
              static_cast<double>(f.malloc_bytes) / rows);
  if (store) {
    std::printf(" %9.1f %5.1f%%", static_cast<double>(f.store_bytes) / rows,
                100.0 * f.index_bytes / f.store_bytes);
  } else {
    std::printf(" %9s %6s", "-", "-");
  }
  std::printf(" %10.2f %8.2f %6.1f\n",
              static_cast<double>(f.peak_bytes) / f.rss_bytes, f.worst_moment,
              f.seconds);
}

int Run() {
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  const int64_t rows = absl::GetFlag(FLAGS_rows);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  std::vector<int64_t> dims;
  for (absl::string_view d : absl::StrSplit(absl::GetFlag(FLAGS_dims), ',')) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(d, &dim) || dim <= 0) {
      std::fprintf(stderr, "bad --dims entry %s\n", std::string(d).c_str());
      return 2;
    }
    dims.push_back(dim);
  }
  const std::vector<std::string> optimizers =
      absl::StrSplit(absl::GetFlag(FLAGS_optimizers), ',');
  std::printf(
      "row_memory_bench: tables grown to %lld rows, %lld new rows per push\n"
      "bytes per row: RSS delta, its ratio to the ideal 4 x dim x (1 + slots) "
      "+ 8, malloc's in-use delta, the store's accounting (memory_bytes) and "
      "the index's share of it\n",
      static_cast<long long>(rows), static_cast<long long>(batch));
  struct Summary {
    std::string config;
    double chunks_rss, chunks_peak, old_peak, chunks_worst, old_worst,
        vector_worst;
  };
  std::vector<Summary> summary;
  for (int64_t dim : dims) {
    for (const std::string& optimizer : optimizers) {
      if (optimizer != "sgd" && optimizer != "adagrad" && optimizer != "adam") {
        std::fprintf(stderr, "bad --optimizers entry %s\n", optimizer.c_str());
        return 2;
      }
      const v1::TensorSpec spec = TableSpec(dim, optimizer);
      const int slots = optimizer == "sgd" ? 0 : optimizer == "adagrad" ? 1 : 2;
      const int64_t ideal = 4 * dim * (1 + slots) + 8;
      std::printf(
          "\ndim %lld, %s (%d slots): ideal %lld bytes/row\n"
          "  %-12s %9s %8s %10s %9s %6s %10s %8s %6s\n",
          static_cast<long long>(dim), optimizer.c_str(), slots,
          static_cast<long long>(ideal), "layout", "RSS B/row", "x ideal",
          "malloc B/r", "store B/r", "index", "peak/final", "worst", "s");
      const Figures chunks = GrowChunks(spec, rows, batch);
      Print("chunks", chunks, rows, ideal, true);
      const Figures old = GrowOldLayout(spec, rows, batch);
      Print("old vectors", old, rows, ideal, false);
      const Figures one = GrowOneVector(dim * (1 + slots), rows, batch);
      Print("one vector", one, rows, ideal, false);
      std::fflush(stdout);
      summary.push_back(
          {std::to_string(dim) + " " + optimizer,
           static_cast<double>(chunks.rss_bytes) / rows / ideal,
           static_cast<double>(chunks.peak_bytes) / chunks.rss_bytes,
           static_cast<double>(old.peak_bytes) / old.rss_bytes,
           chunks.worst_moment, old.worst_moment, one.worst_moment});
    }
  }
  std::printf("\n%-12s %14s %22s %30s\n", "table", "chunks x ideal",
              "peak/final chunks/old", "worst moment chunks/old/one");
  for (const Summary& s : summary) {
    std::printf("%-12s %14.2f %10.2f / %-10.2f %9.2f / %.2f / %.2f\n",
                s.config.c_str(), s.chunks_rss, s.chunks_peak, s.old_peak,
                s.chunks_worst, s.old_worst, s.vector_worst);
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Bytes per embedding row and growth peaks: TensorStore's chunks against "
      "vectors grown by reallocation.");
  absl::ParseCommandLine(argc, argv);
  return tessera::Run();
}

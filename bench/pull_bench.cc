// Memory of `tessera pull` on a large embedding table: one real tessera-ps
// child holding --rows x --dim rows (SGD, so a row is its values, id and
// step), pulled into a model file by this process (tools/pull_to_file.h, what
// the CLI runs). Prints the table's size next to the peak RSS the pull added
// to the shard and to the client (VmHWM after a reset of it through
// /proc/<pid>/clear_refs), and the time. --in_memory also measures the
// in-memory pull (ps/client/model_pull.h + WriteModelFile) for comparison.
//
//   bazel run -c opt --jobs=2 //bench:pull_bench -- [--rows=4000000] [--dim=64]
//
// Not Google Benchmark: one measurement, its own table.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "grpcpp/client_context.h"
#include "ps/client/model_pull.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tests/cluster.h"
#include "tools/model_file.h"
#include "tools/pull_to_file.h"

ABSL_FLAG(int64_t, rows, 4000000, "Rows of the table.");
ABSL_FLAG(int64_t, dim, 64, "Floats per row.");
ABSL_FLAG(int64_t, chunk_floats, 0, "max_chunk_floats; 0 = the default.");
ABSL_FLAG(std::string, format, "pt", "pt or safetensors.");
ABSL_FLAG(bool, in_memory, false,
          "Also pull with the in-memory PullModel + WriteModelFile.");

namespace tessera {
namespace {

std::string Message(const absl::Status& s) { return s.ToString(); }
std::string Message(const grpc::Status& s) { return s.error_message(); }

#define PULL_BENCH_CHECK_OK(expr)                        \
  do {                                                   \
    const auto& _s = (expr);                             \
    if (!_s.ok()) {                                      \
      std::cerr << #expr << ": " << Message(_s) << "\n"; \
      std::exit(1);                                      \
    }                                                    \
  } while (0)

// Resets VmHWM to the current RSS (Linux >= 4.0).
void ResetPeak(pid_t pid) {
  std::ofstream(absl::StrCat("/proc/", pid, "/clear_refs")) << "5";
}

std::string MiB(int64_t bytes) {
  return absl::StrFormat("%.0f MiB", bytes / 1048576.0);
}

struct Peaks {
  int64_t shard_before = 0, shard_peak = 0;
  int64_t client_before = 0, client_peak = 0;
  double seconds = 0;
};

template <typename F>
Peaks Measure(pid_t shard, F pull) {
  Peaks p;
  ResetPeak(shard);
  ResetPeak(getpid());
  p.shard_before = bench::ProcStatusBytes(shard, "VmRSS");
  p.client_before = bench::ProcStatusBytes(getpid(), "VmRSS");
  const absl::Time start = absl::Now();
  pull();
  p.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  p.shard_peak = bench::ProcStatusBytes(shard, "VmHWM");
  p.client_peak = bench::ProcStatusBytes(getpid(), "VmHWM");
  return p;
}

void Print(const char* what, const Peaks& p, int64_t table_bytes) {
  std::cout << absl::StrFormat(
      "%-22s shard RSS %s, peak +%s (%.1f%% of the table); client RSS %s, "
      "peak +%s (%.1f%%); %.1f s, %.0f MiB/s\n",
      what, MiB(p.shard_before), MiB(p.shard_peak - p.shard_before),
      100.0 * (p.shard_peak - p.shard_before) / table_bytes,
      MiB(p.client_before), MiB(p.client_peak - p.client_before),
      100.0 * (p.client_peak - p.client_before) / table_bytes, p.seconds,
      table_bytes / 1048576.0 / p.seconds);
}

int Run() {
  const int64_t rows = absl::GetFlag(FLAGS_rows);
  const int64_t dim = absl::GetFlag(FLAGS_dim);
  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/tessera-pull-bench-", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // No flush while measuring: a flush copies the dirty rows.
  auto shard = testing::ShardProcess::Start(
      0, 1, dir + "/shard", {"--flush_interval_s=100000"}, absl::Seconds(60),
      dir + "/shard.log");
  PULL_BENCH_CHECK_OK(shard.status());
  const pid_t pid = (*shard)->child().pid();
  auto stub = v1::ParameterServer::NewStub((*shard)->channel());
  auto context = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(600));
    return c;
  };

  v1::CreateTensorsRequest create;
  v1::TensorSpec* spec = create.add_specs();
  spec->set_name("emb");
  spec->set_kind(v1::TensorSpec::EMBEDDING);
  spec->add_shape(0);
  spec->add_shape(dim);
  spec->mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec->mutable_initializer()->set_stddev(0.1f);
  spec->mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec->mutable_optimizer()->set_learning_rate(0.1f);
  v1::CreateTensorsResponse created;
  PULL_BENCH_CHECK_OK(stub->CreateTensors(context().get(), create, &created));

  const absl::Time fill = absl::Now();
  const int64_t batch = std::max<int64_t>(1, (int64_t{8} << 20) / (dim * 4));
  std::vector<float> grad(batch * dim, 0.01f);
  for (int64_t begin = 0; begin < rows; begin += batch) {
    const int64_t n = std::min(batch, rows - begin);
    v1::PushGradientRequest push;
    push.set_tensor_name("emb");
    for (int64_t i = 0; i < n; ++i) {
      push.add_row_ids((begin + i) * 0x9E3779B97F4A7C15ULL >> 1);
    }
    push.set_values(reinterpret_cast<const char*>(grad.data()),
                    n * dim * sizeof(float));
    v1::PushGradientResponse pushed;
    PULL_BENCH_CHECK_OK(stub->PushGradient(context().get(), push, &pushed));
  }
  const int64_t table_bytes = rows * dim * 4;
  std::cout << absl::StrFormat(
      "table: %d rows x %d floats = %s of values (shard RSS %s), filled in "
      "%.0f s\n",
      rows, dim, MiB(table_bytes), MiB(bench::ProcStatusBytes(pid, "VmRSS")),
      absl::ToDoubleSeconds(absl::Now() - fill));

  auto format = ParseModelFileFormat(absl::GetFlag(FLAGS_format));
  PULL_BENCH_CHECK_OK(format.status());
  const std::string path = dir + "/model." + absl::GetFlag(FLAGS_format);
  const std::vector<std::string> shards = {(*shard)->ports().grpc_address()};
  PullToFileOptions options;
  options.timeout = absl::Seconds(600);
  options.max_chunk_floats = absl::GetFlag(FLAGS_chunk_floats);
  const Peaks streaming = Measure(pid, [&] {
    auto pulled = PullModelToFile(shards, path, *format, options);
    PULL_BENCH_CHECK_OK(pulled.status());
  });
  const int64_t file_bytes = std::filesystem::file_size(path);
  std::filesystem::remove(path);
  std::cout << absl::StrFormat("file: %s (%s)\n", MiB(file_bytes),
                               ModelFileFormatName(*format));
  Print("streaming pull:", streaming, table_bytes);
  if (absl::GetFlag(FLAGS_in_memory)) {
    const Peaks in_memory = Measure(pid, [&] {
      auto tensors = PullModel(shards, absl::Seconds(600));
      PULL_BENCH_CHECK_OK(tensors.status());
      PULL_BENCH_CHECK_OK(WriteModelFile(path, *tensors, *format));
    });
    std::filesystem::remove(path);
    Print("in-memory pull:", in_memory, table_bytes);
  }
  shard->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return tessera::Run();
}

#include "tools/demo.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tools/cli_status.h"
#include "tools/model_file.h"
#include "tools/model_pull.h"
#include "tools/subprocess.h"
#include "worker/data/dataset.h"
#include "worker/data/fashion_mnist.h"
#include "worker/evaluation.h"
#include "worker/model/model.h"

ABSL_FLAG(int, demo_shards, 2, "demo: parameter-server shards to start.");
ABSL_FLAG(int, demo_workers, 2, "demo: workers to start.");
ABSL_FLAG(int, demo_epochs, 15, "demo: training epochs.");
ABSL_FLAG(std::string, demo_model, "mlp", "demo: mlp or cnn.");
ABSL_FLAG(std::string, demo_consistency, "SSP", "demo: ASYNC, SSP or BSP.");
ABSL_FLAG(int, demo_staleness, 4, "demo: SSP staleness bound in steps.");
ABSL_FLAG(int64_t, demo_limit, 0,
          "demo: train on the first N examples only (0 = all 60000).");
ABSL_FLAG(std::string, demo_dir, "",
          "demo: working directory (RocksDB, logs); default a fresh one "
          "under /tmp.");
ABSL_FLAG(std::string, demo_out, "tessera-demo-model.pt",
          "demo: where to write the trained model.");
ABSL_FLAG(std::string, dataset_dir, "/usr/share/datasets/fashion-mnist",
          "Fashion-MNIST IDX files (Debian's dataset-fashion-mnist).");
ABSL_FLAG(std::string, ps_binary, "",
          "tessera-ps to run; default: found "
          "beside this binary.");
ABSL_FLAG(std::string, worker_binary, "",
          "tessera-worker to run; default: "
          "found beside this binary.");
ABSL_FLAG(double, demo_timeout_s, 900, "demo: give up after this long.");

namespace tessera {
namespace {

std::atomic<bool> interrupted{false};

void OnSignal(int) { interrupted = true; }

// Bazel puts binaries at bazel-bin/<package>/<name>; `bazel run` uses
// runfiles; an installed image has /usr/local/bin.
std::string FindBinary(const std::string& flag, const char* argv0,
                       const std::string& relative) {
  if (!flag.empty()) return flag;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path self = fs::canonical("/proc/self/exe", ec);
  const fs::path arg = fs::absolute(argv0, ec);
  const std::string name = fs::path(relative).filename();
  std::vector<fs::path> candidates = {
      fs::path(arg.string() + ".runfiles") / "tessera" / relative,
      arg.parent_path().parent_path() / relative,
      self.parent_path().parent_path() / relative,
      arg.parent_path() / name,
      fs::path("/usr/local/bin") / name,
  };
  for (const auto& c : candidates) {
    if (fs::exists(c, ec)) return c.string();
  }
  return relative;
}

absl::Status WaitForServing(const std::string& address, Subprocess* child,
                            absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline && !interrupted) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckResponse response;
    if (stub->Check(&context, {}, &response).ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    if (!child->running()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard at ", address, " exited; see ", child->log_path()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "shard at ", address, " not serving; see ", child->log_path()));
}

// Reads "grpc=P" from a shard's port file, polling until it exists.
absl::StatusOr<int> WaitForPort(const std::string& path, Subprocess* child,
                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline && !interrupted) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      int port = 0;
      if (absl::StartsWith(line, "grpc=") &&
          absl::SimpleAtoi(line.substr(5), &port)) {
        return port;
      }
    }
    if (!child->running()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tessera-ps exited during start-up; see ", child->log_path()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("tessera-ps did not start; see ", child->log_path()));
}

// Evaluates the pulled model on the 10,000 test images.
absl::StatusOr<double> TestAccuracy(const std::vector<PulledTensor>& tensors,
                                    const std::string& model_name) {
  worker::ModelOptions options;
  options.name = model_name;
  options.num_threads = 2;
  auto model = worker::Model::Create(options);
  if (!model.ok()) return model.status();
  for (const PulledTensor& t : tensors) {
    absl::Status loaded = (*model)->LoadDense(t.name, t.values);
    if (!loaded.ok()) return loaded;
  }
  auto test = worker::OpenFashionMnist(absl::GetFlag(FLAGS_dataset_dir),
                                       worker::FashionMnistSplit::kTest);
  if (!test.ok()) return test.status();
  return worker::AccuracyPercent(**model, **test);
}

int Fail(const absl::Status& status) {
  std::cerr << "tessera demo: " << status << "\n";
  return 1;
}

}  // namespace

int RunDemo(const char* argv0) {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  const absl::Time start = absl::Now();
  const int num_shards = absl::GetFlag(FLAGS_demo_shards);
  const int num_workers = absl::GetFlag(FLAGS_demo_workers);
  std::string dir = absl::GetFlag(FLAGS_demo_dir);
  if (dir.empty()) dir = absl::StrCat("/tmp/tessera-demo-", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string ps =
      FindBinary(absl::GetFlag(FLAGS_ps_binary), argv0, "ps/server/tessera-ps");
  const std::string worker_bin = FindBinary(absl::GetFlag(FLAGS_worker_binary),
                                            argv0, "worker/tessera-worker");

  const std::string job_path = dir + "/job.pbtxt";
  {
    std::ofstream job(job_path);
    job << "name: \"demo-fashion-mnist-" << absl::GetFlag(FLAGS_demo_model)
        << "\"\n"
        << "model { name: \"" << absl::GetFlag(FLAGS_demo_model)
        << "\" seed: 1 }\n"
        << "dataset { format: FASHION_MNIST path: \""
        << absl::GetFlag(FLAGS_dataset_dir)
        << "\" limit: " << absl::GetFlag(FLAGS_demo_limit) << " }\n"
        << "batch_size: 64\n"
        << "epochs: " << absl::GetFlag(FLAGS_demo_epochs) << "\n"
        << "partitions_per_epoch: 60\n"
        << "consistency { mode: " << absl::GetFlag(FLAGS_demo_consistency)
        << " staleness: " << absl::GetFlag(FLAGS_demo_staleness) << " }\n"
        << "optimizer { kind: ADAM learning_rate: 0.001 }\n"
        << "flush_interval_s: 5\n"
        << "lease_timeout_s: 15\n";
  }
  std::cout << "tessera demo: " << num_shards << " shards, " << num_workers
            << " workers, " << absl::GetFlag(FLAGS_demo_epochs)
            << " epochs of Fashion-MNIST (" << absl::GetFlag(FLAGS_demo_model)
            << "); logs and data in " << dir << "\n";

  // Shards first: shard 0 coordinates.
  std::vector<std::unique_ptr<Subprocess>> shards;
  std::vector<std::string> addresses;
  for (int i = 0; i < num_shards; ++i) {
    const std::string port_file = absl::StrCat(dir, "/ps-", i, ".ports");
    std::vector<std::string> argv = {
        ps,
        absl::StrCat("--shard_index=", i),
        absl::StrCat("--num_shards=", num_shards),
        "--listen_address=127.0.0.1",
        "--grpc_port=0",
        "--data_port=0",
        "--metrics_port=0",
        absl::StrCat("--data_dir=", dir, "/ps-", i),
        absl::StrCat("--port_file=", port_file),
        "--flush_interval_s=5"};
    if (i == 0) argv.push_back("--job_config=" + job_path);
    auto child = Subprocess::Start(argv, absl::StrCat(dir, "/ps-", i, ".log"));
    if (!child.ok()) return Fail(child.status());
    auto port = WaitForPort(port_file, child->get(), absl::Seconds(60));
    if (!port.ok()) return Fail(port.status());
    addresses.push_back(absl::StrCat("127.0.0.1:", *port));
    absl::Status serving =
        WaitForServing(addresses.back(), child->get(), absl::Seconds(60));
    if (!serving.ok()) return Fail(serving);
    shards.push_back(*std::move(child));
  }
  std::cout << "shards serving at " << absl::StrJoin(addresses, ", ") << "\n";

  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int i = 0; i < num_workers; ++i) {
    auto child = Subprocess::Start({worker_bin, "--coordinator=" + addresses[0],
                                    "--shards=" + absl::StrJoin(addresses, ","),
                                    absl::StrCat("--worker_id=demo-worker-", i),
                                    "--metrics_port=0", "--threads=1"},
                                   absl::StrCat(dir, "/worker-", i, ".log"));
    if (!child.ok()) return Fail(child.status());
    workers.push_back(*std::move(child));
  }

  // Progress: one line every few seconds and one per finished epoch.
  const absl::Duration timeout =
      absl::Seconds(absl::GetFlag(FLAGS_demo_timeout_s));
  int reported_epochs = 0;
  int64_t last_samples = 0;
  absl::Time last_time = absl::Now();
  absl::Time last_line = absl::InfinitePast();
  v1::JobStatus status;
  while (true) {
    if (interrupted) {
      std::cout << "\ninterrupted: stopping every process\n";
      return 130;
    }
    if (absl::Now() - start > timeout) {
      return Fail(absl::DeadlineExceededError(
          absl::StrCat("training did not finish in ",
                       absl::FormatDuration(timeout), "; logs in ", dir)));
    }
    int alive = 0;
    for (auto& w : workers) alive += w->running() ? 1 : 0;
    auto fetched = FetchJobStatus(addresses[0], absl::Seconds(5));
    if (fetched.ok()) status = *fetched;
    int64_t samples = 0;
    for (const auto& w : status.workers()) samples += w.samples();
    const absl::Time now = absl::Now();
    const double rate =
        (samples - last_samples) / absl::ToDoubleSeconds(now - last_time);
    for (const auto& e : status.epoch_stats()) {
      if (e.epoch() >= reported_epochs && e.finished_unix_ms() > 0 &&
          e.samples() > 0) {
        const double seconds =
            (e.finished_unix_ms() - e.started_unix_ms()) / 1000.0;
        std::cout << absl::StrFormat(
            "epoch %d/%d done in %.1fs: %d samples, %.0f samples/s, loss "
            "%.4f, train accuracy %.2f%%\n",
            e.epoch() + 1, status.epochs(), seconds, e.samples(),
            e.samples() / std::max(seconds, 1e-3), e.loss_sum() / e.samples(),
            100.0 * e.correct() / e.samples());
        reported_epochs = e.epoch() + 1;
        last_line = now;
      }
    }
    if (status.finished()) break;
    if (alive == 0) {
      return Fail(absl::AbortedError(
          absl::StrCat("every worker exited before the job finished; see ", dir,
                       "/worker-*.log")));
    }
    if (now - last_line >= absl::Seconds(5)) {
      const int total = status.partitions_done() + status.partitions_leased() +
                        status.partitions_queued();
      std::cout << absl::StrFormat(
          "epoch %d/%d  %3d%% of partitions  %6.0f samples/s  %d workers\n",
          std::min(status.epoch() + 1, status.epochs()), status.epochs(),
          total ? 100 * status.partitions_done() / total : 0, rate,
          status.workers_size());
      last_line = now;
    }
    last_samples = samples;
    last_time = now;
    absl::SleepFor(absl::Seconds(1));
  }

  // Workers exit 0 once the job is finished.
  for (size_t i = 0; i < workers.size(); ++i) {
    auto code = workers[i]->Wait(absl::Seconds(30));
    if (!code.ok() || *code != 0) {
      std::cerr << "worker " << i << " did not exit cleanly; see "
                << workers[i]->log_path() << "\n";
    }
  }

  auto tensors = PullModel(addresses, absl::Seconds(60));
  if (!tensors.ok()) return Fail(tensors.status());
  const std::string out =
      std::filesystem::absolute(absl::GetFlag(FLAGS_demo_out)).string();
  absl::Status written = WriteModelFile(out, *tensors);
  if (!written.ok()) return Fail(written);
  auto accuracy = TestAccuracy(*tensors, absl::GetFlag(FLAGS_demo_model));
  if (!accuracy.ok()) return Fail(accuracy.status());

  for (auto& s : shards) s->Signal(SIGTERM);
  for (auto& s : shards) s->Wait(absl::Seconds(30)).IgnoreError();

  std::cout << absl::StrFormat(
      "\ntrained %s in %s; test accuracy %.2f%% on 10000 images\n",
      absl::GetFlag(FLAGS_demo_model),
      absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Seconds(1))),
      *accuracy);
  std::cout << "model written to " << out << " (" << tensors->size()
            << " tensors)\n"
            << "  C++:    torch::pickle_load(bytes).toGenericDict()\n"
            << "  Python: torch.load(\"" << out
            << "\")  # dict name -> tensor\n";
  return 0;
}

}  // namespace tessera

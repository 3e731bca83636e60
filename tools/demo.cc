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
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ps/client/model_pull.h"
#include "tools/cli_status.h"
#include "tools/launch/launcher.h"
#include "tools/launch/subprocess.h"
#include "tools/model_file.h"
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
ABSL_FLAG(std::string, demo_job, "",
          "demo: run this job file (tessera.v1.JobConfig in text format) "
          "instead of the built-in Fashion-MNIST job. Shard 0 reads it "
          "(--job_config), so its relative paths are relative to its "
          "directory. --demo_shards, --demo_workers, --demo_dir, --demo_out "
          "and --demo_timeout_s apply; the other --demo_* flags and the "
          "Fashion-MNIST evaluation do not.");

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

// Writes the built-in Fashion-MNIST job, from the --demo_* flags.
absl::Status WriteBuiltInJob(const std::string& path) {
  std::ofstream job(path);
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
  job.close();
  if (!job) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// One line per epoch whose test figures arrived since the last call
// (evaluations are reported after the epoch that they follow has finished).
void PrintTestFigures(const v1::JobStatus& status, int* reported) {
  for (const auto& e : status.epoch_stats()) {
    if (e.epoch() < *reported || e.test_samples() <= 0) continue;
    std::string line = absl::StrFormat(
        "epoch %d/%d test: %d samples, loss %.4f, accuracy %.2f%%",
        e.epoch() + 1, status.epochs(), e.test_samples(),
        e.test_loss_sum() / e.test_samples(),
        100.0 * e.test_correct() / e.test_samples());
    if (e.has_test_auc())
      absl::StrAppendFormat(&line, ", AUC %.4f", e.test_auc());
    std::cout << line << "\n";
    *reported = e.epoch() + 1;
  }
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

  // A user's job file is passed as it is, not copied: shard 0 resolves its
  // relative paths against the file's own directory.
  const bool built_in = absl::GetFlag(FLAGS_demo_job).empty();
  std::string job_path = dir + "/job.pbtxt";
  if (built_in) {
    absl::Status written = WriteBuiltInJob(job_path);
    if (!written.ok()) return Fail(written);
    std::cout << "tessera demo: " << num_shards << " shards, " << num_workers
              << " workers, " << absl::GetFlag(FLAGS_demo_epochs)
              << " epochs of Fashion-MNIST (" << absl::GetFlag(FLAGS_demo_model)
              << "); logs and data in " << dir << "\n";
  } else {
    std::error_code ec;
    job_path =
        std::filesystem::absolute(absl::GetFlag(FLAGS_demo_job), ec).string();
    if (ec || !std::filesystem::is_regular_file(job_path, ec)) {
      return Fail(absl::NotFoundError(absl::StrCat(
          "--demo_job=", absl::GetFlag(FLAGS_demo_job), " is not a file")));
    }
    std::cout << "tessera demo: " << num_shards << " shards, " << num_workers
              << " workers, job " << job_path << "; logs and data in " << dir
              << "\n";
  }

  // Shards first: shard 0 coordinates.
  std::vector<std::unique_ptr<Subprocess>> shards;
  std::vector<std::string> addresses;
  for (int i = 0; i < num_shards; ++i) {
    launch::ShardCommand command;
    command.binary = ps;
    command.shard_index = i;
    command.num_shards = num_shards;
    command.data_dir = absl::StrCat(dir, "/ps-", i);
    command.port_file = absl::StrCat(dir, "/ps-", i, ".ports");
    if (i == 0) command.job_config = job_path;
    command.extra_flags = {"--flush_interval_s=5"};
    std::cout << "starting shard " << i << "; waiting until it serves\n";
    auto started =
        launch::StartShard(command, absl::StrCat(dir, "/ps-", i, ".log"),
                           absl::Seconds(60), &interrupted);
    if (interrupted) {
      std::cout << "\ninterrupted: stopping every process\n";
      return 130;
    }
    if (!started.ok()) return Fail(started.status());
    addresses.push_back(absl::StrCat("127.0.0.1:", started->ports.grpc));
    shards.push_back(std::move(started->child));
  }
  std::cout << "shards serving at " << absl::StrJoin(addresses, ", ") << "\n";

  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int i = 0; i < num_workers; ++i) {
    launch::WorkerCommand command;
    command.binary = worker_bin;
    command.worker_id = absl::StrCat("demo-worker-", i);
    command.shards = addresses;
    command.extra_flags = {"--threads=1"};
    auto child =
        launch::StartWorker(command, absl::StrCat(dir, "/worker-", i, ".log"));
    if (!child.ok()) return Fail(child.status());
    workers.push_back(*std::move(child));
  }

  // Progress: one line every few seconds and one per finished epoch.
  const absl::Duration timeout =
      absl::Seconds(absl::GetFlag(FLAGS_demo_timeout_s));
  int reported_epochs = 0;
  int reported_tests = 0;
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
    if (!built_in) PrintTestFigures(status, &reported_tests);
    if (!status.failed().empty()) {
      return Fail(absl::AbortedError(absl::StrCat(
          "the job failed: ", status.failed(), "; logs in ", dir)));
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
  if (!built_in) {
    // The last epoch's evaluation arrives after the job finished; the
    // workers that evaluate have exited by now.
    auto final_status = FetchJobStatus(addresses[0], absl::Seconds(5));
    if (final_status.ok()) PrintTestFigures(*final_status, &reported_tests);
    auto text = FormatStatus(addresses[0], addresses, absl::Seconds(5));
    for (auto& s : shards) s->Signal(SIGTERM);
    for (auto& s : shards) s->Wait(absl::Seconds(30)).IgnoreError();
    std::cout << "\n"
              << (text.ok() ? *text
                            : absl::StrCat("status: ", text.status().ToString(),
                                           "\n"))
              << absl::StrFormat("trained %s in %s\n", job_path,
                                 absl::FormatDuration(absl::Trunc(
                                     absl::Now() - start, absl::Seconds(1))))
              << "model written to " << out << " (" << tensors->size()
              << " tensors)\n";
    return 0;
  }
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
            << "  Python: torch.load(\"" << out
            << "\", weights_only=True)  # state_dict: name -> tensor\n";
  return 0;
}

}  // namespace tessera

// training_bench: what the parameter server costs. Trains the same MLP on
// the same Fashion-MNIST examples for the same number of epochs, three ways,
// in one run:
//
//   (a) one libtorch process, no parameter server: the worker's Model with
//       the shards' own Adam (ps/optim) applied in-process after every step,
//       starting from the shards' initial values and visiting the
//       partitions in the coordinator's order, so that (b) differs from it
//       only by the worker's prefetch (each step sees its own update one
//       step late) and the transport, and (c) also by asynchrony;
//   (b) 1 tessera-ps shard + 1 tessera-worker, real binaries as children;
//   (c) 2 shards + 2 workers (async);
//
// and, beside them, (b) again with the same network as a user's TorchScript
// file (//examples/fashion_mnist_mlp:mlp_pt, layers fc1..fc3 as the built-in
// mlp's) in a `model { name: "torchscript" }` job, to price the TorchScript
// path against the built-in network (goal: >= 0.9x its samples/s);
//
// and prints training samples/s of each, the ratios (b)/(a) and (c)/(a), and
// the test accuracy of each model after the same epochs (for (b) and (c) the
// model pulled from the shards), against the goals (b) >= 0.9x (a) (issue #15;
// it was 0.8x) and distributed accuracy within 0.5 points of (a), and the
// TorchScript MLP's samples/s at least 0.9x the built-in mlp's, both on 1 shard
// + 1 worker.
//
//   bazel run -c opt //bench:training_bench                 # ~1-2 minutes
//   bazel run -c opt //bench:training_bench -- --epochs=10  # the demo's job
//
// Training time: (a) the step loop (batches, forward/backward, optimizer);
// (b), (c) the sum over epochs of the coordinator's epoch spans (first lease
// to last completion), so process start-up and the workers' end-of-epoch
// evaluations between epochs are left out of both sides. Every process gets
// --threads libtorch threads; the shards and workers share this machine's
// cores with each other, as they would share a node.

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ps/client/model_pull.h"
#include "ps/optim/optimizer.h"
#include "ps/spec/initializer.h"
#include "tests/cluster.h"
#include "worker/data/dataset.h"
#include "worker/data/fashion_mnist.h"
#include "worker/evaluation.h"
#include "worker/model/model.h"
#include "worker/model_specs.h"
#include "worker/trainer.h"

ABSL_FLAG(int, epochs, 3, "Training epochs of every setup.");
ABSL_FLAG(uint64_t, seed, 1,
          "The model's seed (initial values, partition order, shuffles) of "
          "every setup: another one shows the accuracy's spread.");
ABSL_FLAG(int64_t, limit, 0, "Train on the first N examples (0 = all 60000).");
ABSL_FLAG(int, partitions, 60,
          "Partitions per epoch (distributed runs; the "
          "single process visits the same partitions).");
ABSL_FLAG(int, batch_size, 64, "Examples per step.");
ABSL_FLAG(double, learning_rate, 0.001, "Adam's learning rate.");
ABSL_FLAG(double, weight_decay, 0, "Adam's L2 penalty (as torch's Adam).");
ABSL_FLAG(std::vector<std::string>, hidden,
          std::vector<std::string>({"256", "128"}),
          "Widths of the MLP's hidden layers, comma-separated.");
ABSL_FLAG(int, threads, 1,
          "libtorch intra-op threads of the single process and of each "
          "worker.");
ABSL_FLAG(std::string, dataset_dir, tessera::testing::kFashionMnistDir,
          "Fashion-MNIST IDX files.");
ABSL_FLAG(int, rounds, 1,
          "Run the three setups this many times, in turn, and keep each "
          "one's fastest round: load from elsewhere on the machine then "
          "disturbs all of them alike.");
ABSL_FLAG(double, timeout_s, 900, "Give up on a distributed run after this.");
ABSL_FLAG(std::vector<std::string>, shard_flags, {},
          "Extra tessera-ps flags of the distributed runs, comma-separated "
          "(e.g. --data_threads=1).");
ABSL_FLAG(std::string, extrapolate_dense, "",
          "The jobs' consistency.extrapolate_dense for (b) and (c): true or "
          "false; empty leaves it unset (on).");
ABSL_FLAG(std::vector<std::string>, worker_flags, {},
          "Extra tessera-worker flags of the distributed runs.");
ABSL_FLAG(std::string, torchscript_mlp, "examples/fashion_mnist_mlp/mlp.pt",
          "The built-in mlp as a TorchScript file (784-256-128-10), trained "
          "on 1 shard + 1 worker beside the built-in one; empty: skip it. "
          "Relative paths are from the runfiles tree.");

namespace tessera {
namespace {

uint64_t Seed() { return absl::GetFlag(FLAGS_seed); }

struct Result {
  std::string setup;
  int64_t samples = 0;
  double train_seconds = 0;
  double test_accuracy = 0;  // percent
  double samples_per_second() const {
    return train_seconds > 0 ? samples / train_seconds : 0;
  }
};

std::vector<int64_t> HiddenSizes() {
  std::vector<int64_t> sizes;
  for (const std::string& h : absl::GetFlag(FLAGS_hidden)) {
    int64_t n = 0;
    if (absl::SimpleAtoi(h, &n)) sizes.push_back(n);
  }
  return sizes;
}

absl::StatusOr<std::unique_ptr<worker::Model>> NewModel() {
  worker::ModelOptions options;
  options.name = "mlp";
  options.hidden_sizes = HiddenSizes();
  options.seed = Seed();
  options.num_threads = absl::GetFlag(FLAGS_threads);
  return worker::Model::Create(options);
}

// Percent correct on the whole test set.
absl::StatusOr<double> TestAccuracy(worker::Model& model,
                                    const worker::DenseDataset& test) {
  return worker::AccuracyPercent(model, test);
}

// (a): the worker's step, with the parameter server's optimizer applied in
// this process instead of on a shard.
absl::StatusOr<Result> RunSingleProcess(const worker::DenseDataset& train,
                                        const worker::DenseDataset& test) {
  auto model = NewModel();
  if (!model.ok()) return model.status();
  optim::OptimizerConfig config =
      optim::TorchDefaultOptimizerConfig(optim::OptimizerConfig::Kind::kAdam);
  config.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  config.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  auto optimizer = optim::NewOptimizer(config);
  if (!optimizer.ok()) return optimizer.status();

  struct Param {
    std::string name;
    std::vector<float> values;
    std::vector<std::vector<float>> slots;
    std::vector<float*> slot_ptrs;
  };
  std::vector<Param> params;
  for (const worker::TensorInfo& t : (*model)->Parameters()) {
    Param p;
    p.name = t.name;
    // The shards' initial values (the same rows of the same spec), so that
    // all three setups start from one point.
    p.values.resize(t.num_elements());
    InitializeRows(worker::ToTensorSpec(t, v1::OptimizerConfig()), 0,
                   absl::MakeSpan(p.values));
    absl::Status loaded = (*model)->LoadDense(p.name, p.values);
    if (!loaded.ok()) return loaded;
    p.slots.assign((*optimizer)->num_slots(),
                   std::vector<float>(p.values.size()));
    for (auto& s : p.slots) p.slot_ptrs.push_back(s.data());
    (*optimizer)->InitSlots(p.slot_ptrs, p.values.size());
    params.push_back(std::move(p));
  }

  Result result;
  result.setup = "(a) single process";
  const int partitions = absl::GetFlag(FLAGS_partitions);
  int64_t step_count = 0;
  absl::Duration trained;
  for (int epoch = 0; epoch < absl::GetFlag(FLAGS_epochs); ++epoch) {
    // The coordinator's partition order of this epoch (coordinator.cc).
    std::vector<int> order(partitions);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(Seed() * 1000003 + epoch);
    std::shuffle(order.begin(), order.end(), rng);
    const absl::Time start = absl::Now();
    for (int partition : order) {
      worker::BatchOptions batches;
      batches.batch_size = absl::GetFlag(FLAGS_batch_size);
      batches.shuffle = true;
      batches.shuffle_seed = Seed() * 7919 + epoch;  // As the worker.
      auto reader = worker::PartitionReader<worker::DenseBatch>::Create(
          &train, partition, partitions, batches);
      if (!reader.ok()) return reader.status();
      while (!reader->Done()) {
        auto batch = reader->Next();
        if (!batch.ok()) return batch.status();
        auto step = (*model)->TrainStep(*batch);
        if (!step.ok()) return step.status();
        ++step_count;
        for (size_t i = 0; i < params.size(); ++i) {
          Param& p = params[i];
          (*optimizer)
              ->Apply(absl::MakeSpan(p.values), step->gradients[i].values,
                      p.slot_ptrs, step_count);
          absl::Status loaded = (*model)->LoadDense(p.name, p.values);
          if (!loaded.ok()) return loaded;
        }
        result.samples += step->num_examples;
      }
    }
    trained += absl::Now() - start;
    auto accuracy = TestAccuracy(**model, test);
    if (!accuracy.ok()) return accuracy.status();
    std::fprintf(stderr, "  (a) epoch %d: test accuracy %.2f%%\n", epoch + 1,
                 *accuracy);
    result.test_accuracy = *accuracy;
  }
  result.train_seconds = absl::ToDoubleSeconds(trained);
  return result;
}

// The job; with `torchscript` (an absolute path) the network is that file's
// instead of the built-in mlp.
std::string JobConfig(const std::string& torchscript) {
  const std::string model =
      torchscript.empty()
          ? absl::StrCat("model { name: \"mlp\" seed: ", Seed(), " hidden: [",
                         absl::StrJoin(HiddenSizes(), ", "), "] }\n")
          : absl::StrCat("model { name: \"torchscript\" torchscript: \"",
                         torchscript, "\" loss: CROSS_ENTROPY seed: ", Seed(),
                         " }\n");
  return absl::StrCat(
      "name: \"training-bench\"\n", model,
      "dataset { format: FASHION_MNIST path: \"",
      absl::GetFlag(FLAGS_dataset_dir),
      "\" limit: ", absl::GetFlag(FLAGS_limit), " }\n",
      "batch_size: ", absl::GetFlag(FLAGS_batch_size), "\n",
      "epochs: ", absl::GetFlag(FLAGS_epochs), "\n",
      "partitions_per_epoch: ", absl::GetFlag(FLAGS_partitions), "\n",
      "consistency { mode: ASYNC",
      absl::GetFlag(FLAGS_extrapolate_dense).empty()
          ? ""
          : absl::StrCat(" extrapolate_dense: ",
                         absl::GetFlag(FLAGS_extrapolate_dense)),
      " }\n", "optimizer { kind: ADAM learning_rate: ",
      absl::GetFlag(FLAGS_learning_rate),
      " weight_decay: ", absl::GetFlag(FLAGS_weight_decay), " }\n",
      "flush_interval_s: 5\n", "lease_timeout_s: 30\n");
}

// (b), (c): the real binaries on loopback; with `torchscript`, the job
// trains that file's network (JobConfig).
absl::StatusOr<Result> RunDistributed(int num_shards, int num_workers,
                                      const worker::DenseDataset& test,
                                      const std::string& torchscript = "") {
  testing::LocalClusterOptions options;
  options.num_shards = num_shards;
  options.job_config = JobConfig(torchscript);
  options.shard_flags = {"--flush_interval_s=5"};
  for (const std::string& f : absl::GetFlag(FLAGS_shard_flags)) {
    options.shard_flags.push_back(f);
  }
  options.worker_flags = {
      absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads))};
  for (const std::string& f : absl::GetFlag(FLAGS_worker_flags)) {
    options.worker_flags.push_back(f);
  }
  auto cluster = testing::LocalCluster::Start(options);
  if (!cluster.ok()) return cluster.status();
  for (int i = 0; i < num_workers; ++i) {
    auto started = (*cluster)->StartWorker(absl::StrCat("bench-worker-", i));
    if (!started.ok()) return started.status();
  }
  auto finished = (*cluster)->WaitUntilFinished(
      absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
  if (!finished.ok()) return finished.status();
  auto exited = (*cluster)->WaitForWorkers(absl::Seconds(60));
  if (!exited.ok()) return exited.status();
  auto status = (*cluster)->Status();
  if (!status.ok()) return status.status();

  Result result;
  result.setup =
      absl::StrCat("(", num_shards == 1 ? "b" : "c", ") ", num_shards, " shard",
                   num_shards > 1 ? "s" : "", " + ", num_workers, " worker",
                   num_workers > 1 ? "s" : "");
  if (!torchscript.empty()) {
    result.setup = "(b) TorchScript mlp";
  }
  for (const auto& e : status->epoch_stats()) {
    result.samples += e.samples();
    result.train_seconds +=
        (e.finished_unix_ms() - e.started_unix_ms()) / 1000.0;
    if (e.test_samples() > 0) {
      std::fprintf(stderr, "  %s epoch %d: test accuracy %.2f%% (worker)\n",
                   result.setup.c_str(), e.epoch() + 1,
                   100.0 * e.test_correct() / e.test_samples());
    }
  }

  auto tensors = PullModel((*cluster)->shard_addresses(), absl::Seconds(60));
  if (!tensors.ok()) return tensors.status();
  // The TorchScript file's tensors have the built-in mlp's names and shapes.
  auto model = NewModel();
  if (!model.ok()) return model.status();
  for (const PulledTensor& t : *tensors) {
    absl::Status loaded = (*model)->LoadDense(t.name, t.values);
    if (!loaded.ok()) return loaded;
  }
  auto accuracy = TestAccuracy(**model, test);
  if (!accuracy.ok()) return accuracy.status();
  result.test_accuracy = *accuracy;
  // A run that worked leaves nothing behind (a failed one keeps its logs and
  // RocksDB directories, named in the error).
  const std::string dir = (*cluster)->dir();
  cluster->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

int Run(const char* argv0) {
  testing::EnterRunfiles(argv0);
  const std::string dir = absl::GetFlag(FLAGS_dataset_dir);
  worker::FashionMnistOptions train_options;
  train_options.max_examples = absl::GetFlag(FLAGS_limit);
  auto train = worker::OpenFashionMnist(dir, worker::FashionMnistSplit::kTrain,
                                        train_options);
  auto test = worker::OpenFashionMnist(dir, worker::FashionMnistSplit::kTest);
  if (!train.ok() || !test.ok()) {
    std::fprintf(stderr, "training_bench: %s %s\n",
                 train.status().ToString().c_str(),
                 test.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "training_bench: mlp %s on %lld Fashion-MNIST examples x %d epochs, "
      "batch %d, Adam %g (weight decay %g), %d partitions, %d libtorch "
      "thread(s) per process, %ld cores\n",
      absl::StrJoin(HiddenSizes(), "-").c_str(),
      static_cast<long long>((*train)->size()), absl::GetFlag(FLAGS_epochs),
      absl::GetFlag(FLAGS_batch_size), absl::GetFlag(FLAGS_learning_rate),
      absl::GetFlag(FLAGS_weight_decay), absl::GetFlag(FLAGS_partitions),
      absl::GetFlag(FLAGS_threads), sysconf(_SC_NPROCESSORS_ONLN));
  std::fflush(stdout);

  // The TorchScript file holds the default network only.
  std::string torchscript = absl::GetFlag(FLAGS_torchscript_mlp);
  if (!torchscript.empty() && HiddenSizes() != std::vector<int64_t>{256, 128}) {
    std::printf(
        "(TorchScript mlp skipped: the file is 784-256-128-10, "
        "--hidden is %s)\n",
        absl::StrJoin(HiddenSizes(), ",").c_str());
    torchscript.clear();
  }
  if (!torchscript.empty()) {
    std::error_code ec;
    torchscript = std::filesystem::absolute(torchscript, ec).string();
    if (!std::filesystem::exists(torchscript, ec)) {
      std::fprintf(stderr, "training_bench: no TorchScript file %s\n",
                   torchscript.c_str());
      return 1;
    }
  }
  const int num_setups = torchscript.empty() ? 3 : 4;

  std::vector<Result> results(num_setups);
  std::vector<std::vector<double>> accuracies(num_setups);  // every round's
  for (int round = 1; round <= std::max(1, absl::GetFlag(FLAGS_rounds));
       ++round) {
    for (int setup = 0; setup < num_setups; ++setup) {
      auto r = setup == 0   ? RunSingleProcess(**train, **test)
               : setup == 3 ? RunDistributed(1, 1, **test, torchscript)
                            : RunDistributed(setup, setup, **test);
      if (!r.ok()) {
        std::fprintf(stderr, "setup %d: %s\n", setup,
                     r.status().ToString().c_str());
        return 1;
      }
      std::fprintf(
          stderr, "round %d: %s: %.0f samples/s, test accuracy %.2f%%\n", round,
          r->setup.c_str(), r->samples_per_second(), r->test_accuracy);
      accuracies[setup].push_back(r->test_accuracy);
      if (r->samples_per_second() > results[setup].samples_per_second()) {
        results[setup] = *r;
      }
    }
  }

  const Result& a = results[0];
  std::printf("\n%-26s %9s %9s %10s %8s %9s %9s\n", "setup", "samples",
              "train s", "samples/s", "vs (a)", "test acc", "vs (a)");
  for (const Result& r : results) {
    std::printf("%-26s %9lld %9.1f %10.0f %7.2fx %8.2f%% %+8.2f\n",
                r.setup.c_str(), static_cast<long long>(r.samples),
                r.train_seconds, r.samples_per_second(),
                r.samples_per_second() / a.samples_per_second(),
                r.test_accuracy, r.test_accuracy - a.test_accuracy);
  }
  if (accuracies[0].size() > 1) {
    // The rows above are each setup's fastest round; the accuracy of the
    // others shows how much an asynchronous setup's varies.
    std::printf("\ntest accuracy over %zu rounds:", accuracies[0].size());
    const char* kLabels[] = {"(a)", "(b)", "(c)", "TorchScript"};
    for (int setup = 0; setup < num_setups; ++setup) {
      std::vector<double> acc = accuracies[setup];
      std::sort(acc.begin(), acc.end());
      std::printf("%s %s %.2f-%.2f%% (median %.2f)", setup == 0 ? "" : ";",
                  kLabels[setup], acc.front(), acc.back(), acc[acc.size() / 2]);
    }
    std::printf("\n");
  }
  const double ratio_b =
      results[1].samples_per_second() / a.samples_per_second();
  const double ratio_c =
      results[2].samples_per_second() / a.samples_per_second();
  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  std::printf(
      "\ngoals: (b)/(a) = %.2f >= 0.90: %s; (c)/(a) = %.2f; "
      "|acc(b) - acc(a)| = %.2f <= 0.5: %s; |acc(c) - acc(a)| = %.2f <= 0.5: "
      "%s\n",
      ratio_b, verdict(ratio_b >= 0.9), ratio_c,
      std::fabs(results[1].test_accuracy - a.test_accuracy),
      verdict(std::fabs(results[1].test_accuracy - a.test_accuracy) <= 0.5),
      std::fabs(results[2].test_accuracy - a.test_accuracy),
      verdict(std::fabs(results[2].test_accuracy - a.test_accuracy) <= 0.5));
  if (num_setups > 3) {
    const double ratio_ts =
        results[3].samples_per_second() / results[1].samples_per_second();
    std::printf(
        "goal: TorchScript MLP >= 0.9x the built-in mlp's samples/s (both on "
        "1 shard + 1 worker): %.0f / %.0f = %.2fx: %s\n",
        results[3].samples_per_second(), results[1].samples_per_second(),
        ratio_ts, verdict(ratio_ts >= 0.9));
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "training_bench: the MLP trained in one process, on 1 shard + 1 "
      "worker, and on 2 shards + 2 workers; samples/s and test accuracy.");
  absl::ParseCommandLine(argc, argv);
  return tessera::Run(argv[0]);
}

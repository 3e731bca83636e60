// dlrm_bench: what the parameter server costs a user's TorchScript model with
// embedding tables. Trains the DLRM example's model (examples/dlrm/dlrm.py,
// its default sizes: 26 tables of 20000 rows x 16, written at build time by
// the genrule //bench:dlrm_model with the job file beside it) on planted
// Criteo data (worker/data/planted_criteo.h, written into a temporary
// directory at start) for the same epochs, three ways, in one run:
//
//   (a) one libtorch process, no parameter server: the same TorchScript
//       model (worker/job_model.h, from the same job), the same data read by
//       TabularSource in the coordinator's partition order with the worker's
//       shuffle seeds, and every tensor in a shard's own TensorStore in
//       this process (ps/store/tensor_store.h: the shards' optimizers, Adam
//       on the dense tensors from the file's values and Adagrad on the
//       tables' rows, created on first update from their initializer), each
//       step's gradients pushed to it and its values pulled back;
//   (b) 1 tessera-ps shard + 1 tessera-worker, real binaries as children;
//   (c) 2 shards + 2 workers;
//
// and prints the training samples/s of each, (b)/(a) and (c)/(a), the test
// AUC of each after the same epochs ((a) with task_metrics' RocAuc in this
// process, (b) and (c) the coordinator's JobStatus of the last epoch), the
// planted model's best AUC on the test file, and the goal (b) >= 0.8x (a).
//
//   bazel run -c opt //bench:dlrm_bench        # ~1 minute on 2 cores
//   bazel run -c opt //bench:dlrm_bench -- --train_lines=50000 --epochs=1
//
// Training time: (a) the step loop (reading and preparing batches, the row
// lookups, forward/backward, optimizers); (b), (c) the sum over epochs of the
// coordinator's epoch spans (first lease to last completion), as
// training_bench, so start-up and the end-of-epoch evaluations are left out
// of both sides. The single process and every worker get --threads libtorch
// threads; the shards and workers share this machine's cores.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/text_format.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/job.pb.h"
#include "tests/cluster.h"
#include "worker/data/planted_criteo.h"
#include "worker/data/tabular.h"
#include "worker/data/tabular_batch.h"
#include "worker/data/task_metrics.h"
#include "worker/job_model.h"
#include "worker/model/model.h"
#include "worker/model_specs.h"

ABSL_FLAG(int64_t, train_lines, 300000, "Planted Criteo training lines.");
ABSL_FLAG(int64_t, test_lines, 20000, "Planted Criteo test lines.");
ABSL_FLAG(int64_t, vocabulary, 1000,
          "The largest categorical field's vocabulary (gen-criteo's).");
ABSL_FLAG(uint64_t, data_seed, 1, "The planted data's seed.");
ABSL_FLAG(int, epochs, 2, "Training epochs of every setup.");
ABSL_FLAG(int, threads, 1,
          "libtorch intra-op threads of the single process and of each "
          "worker.");
ABSL_FLAG(std::string, model_dir, "bench/dlrm",
          "Where dlrm.py wrote dlrm.pt and job.pbtxt (relative paths are "
          "from the runfiles tree).");
ABSL_FLAG(std::string, work_dir, "",
          "Where to write the data and the clusters' files (default: a new "
          "directory under $TEST_TMPDIR or /tmp, removed at the end).");
ABSL_FLAG(int, rounds, 1,
          "Run the three setups this many times, in turn, and keep each "
          "one's fastest round: load from elsewhere on the machine then "
          "disturbs all of them alike.");
ABSL_FLAG(double, timeout_s, 900, "Give up on a distributed run after this.");
ABSL_FLAG(std::string, extrapolate_dense, "",
          "The job's consistency.extrapolate_dense for (b) and (c): true or "
          "false; empty leaves the job file's (unset: on).");

namespace tessera {
namespace {

struct Result {
  std::string setup;
  int64_t samples = 0;
  double train_seconds = 0;
  std::optional<double> test_auc;
  double samples_per_second() const {
    return train_seconds > 0 ? samples / train_seconds : 0;
  }
};

std::string AucText(const std::optional<double>& auc) {
  return auc.has_value() ? absl::StrFormat("%.4f", *auc) : "-";
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Every tensor of the model in a shard's own TensorStore, in this process
// (one shard's placement: it holds them all): the shards' optimizers, row
// creation and initializers, without the network. Dense tensors start from
// the file's values, as the shards take them from the first worker.
class LocalParameters {
 public:
  static absl::StatusOr<std::unique_ptr<LocalParameters>> Create(
      worker::Model& model, const v1::JobConfig& job) {
    StoreOptions options;
    options.placement.set_num_shards(1);
    options.placement.set_split_threshold_bytes(
        std::numeric_limits<int64_t>::max());
    std::unique_ptr<LocalParameters> p(new LocalParameters(options));
    p->infos_ = model.Parameters();
    const std::vector<v1::TensorSpec> specs = worker::ModelSpecs(model, job);
    auto created = p->store_.CreateTensors(specs);
    if (!created.ok()) return created.status();
    for (const worker::TensorInfo& t : p->infos_) {
      if (t.kind == worker::TensorKind::kEmbedding) {
        p->rows_per_field_.resize(
            std::max<size_t>(p->rows_per_field_.size(), t.field + 1));
        p->rows_per_field_[t.field] = t.shape[0];
      } else if (!t.initial_values.empty()) {
        auto set = p->store_.InitializeDense(t.name, 0, t.initial_values);
        if (!set.ok()) return set.status();
      }
    }
    return p;
  }

  const std::vector<int64_t>& rows_per_field() const { return rows_per_field_; }

  // Loads the rows `batch` (with AssignTableRows done) uses into `model`.
  absl::Status LoadRows(const worker::TabularBatch& batch,
                        worker::Model& model) {
    for (const worker::TensorInfo& t : infos_) {
      if (t.kind != worker::TensorKind::kEmbedding) continue;
      const std::vector<uint64_t>& ids = batch.fields[t.field].unique_rows;
      scratch_.resize(ids.size() * t.shape[1]);
      auto pulled = store_.PullRows(t.name, ids, absl::MakeSpan(scratch_));
      if (!pulled.ok()) return pulled.status();
      absl::Status loaded = model.LoadEmbeddingRows(t.name, ids, scratch_);
      if (!loaded.ok()) return loaded;
    }
    return absl::OkStatus();
  }

  // Applies `step`'s gradients (frozen tensors are never pushed, as the
  // worker does) and loads the new dense values into `model`.
  absl::Status Apply(const worker::StepResult& step,
                     const worker::TabularBatch& batch, worker::Model& model) {
    for (size_t i = 0; i < infos_.size(); ++i) {
      const worker::TensorInfo& t = infos_[i];
      if (t.frozen) continue;
      const std::vector<float>& grad = step.gradients[i].values;
      if (t.kind == worker::TensorKind::kEmbedding) {
        auto pushed =
            store_.PushRows(t.name, batch.fields[t.field].unique_rows, grad);
        if (!pushed.ok()) return pushed.status();
        continue;
      }
      auto pushed = store_.PushDense(t.name, 0, grad);
      if (!pushed.ok()) return pushed.status();
      scratch_.resize(grad.size());
      auto pulled = store_.PullDense(t.name, 0, absl::MakeSpan(scratch_));
      if (!pulled.ok()) return pulled.status();
      absl::Status loaded = model.LoadDense(t.name, scratch_);
      if (!loaded.ok()) return loaded;
    }
    return absl::OkStatus();
  }

  size_t table_rows() const {
    size_t n = 0;
    for (const worker::TensorInfo& t : infos_) {
      if (t.kind != worker::TensorKind::kEmbedding) continue;
      auto ids = store_.RowIds(t.name);
      if (ids.ok()) n += ids->size();
    }
    return n;
  }

 private:
  explicit LocalParameters(const StoreOptions& options) : store_(options) {}

  TensorStore store_;
  std::vector<worker::TensorInfo> infos_;
  std::vector<int64_t> rows_per_field_;
  std::vector<float> scratch_;
};

// Test AUC of `model` with the rows of `params`, over the whole test file
// in order (as the workers evaluate it).
absl::StatusOr<double> TestAuc(worker::Model& model, LocalParameters& params,
                               const worker::TabularSource& test) {
  worker::TabularSource::ReadOptions read;
  read.batch_size = 1000;
  read.shuffle_buffer = 1;
  auto reader = test.OpenPartition(0, 1, read);
  if (!reader.ok()) return reader.status();
  std::vector<float> scores, labels;
  worker::TabularBatch batch;
  while (true) {
    auto more = (*reader)->Next(&batch);
    if (!more.ok()) return more.status();
    if (!*more) break;
    absl::Status s = worker::AssignTableRows(params.rows_per_field(), &batch);
    if (s.ok()) s = params.LoadRows(batch, model);
    if (!s.ok()) return s;
    auto eval = model.Evaluate(batch);
    if (!eval.ok()) return eval.status();
    scores.insert(scores.end(), eval->scores.begin(), eval->scores.end());
    labels.insert(labels.end(), eval->labels.begin(), eval->labels.end());
  }
  return worker::RocAuc(scores, labels);
}

// (a): the worker's step with the shards' optimizers applied in-process.
absl::StatusOr<Result> RunSingleProcess(const v1::JobConfig& job,
                                        const std::string& model_file) {
  auto model =
      worker::CreateJobModel(job, model_file, absl::GetFlag(FLAGS_threads));
  if (!model.ok()) return model.status();
  auto created = LocalParameters::Create(**model, job);
  if (!created.ok()) return created.status();
  std::unique_ptr<LocalParameters> params = *std::move(created);
  const v1::DatasetConfig& d = job.dataset();
  auto train = worker::OpenTabularSource(d, worker::DatasetSplit::kTrain);
  if (!train.ok()) return train.status();
  auto test = worker::OpenTabularSource(d, worker::DatasetSplit::kTest);
  if (!test.ok()) return test.status();
  auto read = worker::TabularReadOptionsFromConfig(d, job.batch_size());
  if (!read.ok()) return read.status();

  Result result;
  result.setup = "(a) single process";
  const int partitions = job.partitions_per_epoch();
  const uint64_t seed = job.model().seed();
  absl::Duration trained;
  worker::TabularBatch batch;
  for (int epoch = 0; epoch < job.epochs(); ++epoch) {
    // The coordinator's partition order of this epoch (coordinator.cc).
    std::vector<int> order(partitions);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed * 1000003 + epoch);
    std::shuffle(order.begin(), order.end(), rng);
    const absl::Time start = absl::Now();
    for (int partition : order) {
      // The worker's shuffle seed (trainer.cc, job_datasets.cc).
      worker::TabularSource::ReadOptions options = *read;
      options.seed = (seed * 7919 + epoch) ^ (d.seed() * 0x9e3779b97f4a7c15ull);
      auto reader = (*train)->OpenPartition(partition, partitions, options);
      if (!reader.ok()) return reader.status();
      while (true) {
        auto more = (*reader)->Next(&batch);
        if (!more.ok()) return more.status();
        if (!*more) break;
        absl::Status s =
            worker::AssignTableRows(params->rows_per_field(), &batch);
        if (s.ok()) s = params->LoadRows(batch, **model);
        if (!s.ok()) return s;
        auto step = (*model)->TrainStep(batch);
        if (!step.ok()) return step.status();
        s = params->Apply(*step, batch, **model);
        if (!s.ok()) return s;
        result.samples += step->num_examples;
      }
    }
    trained += absl::Now() - start;
    auto auc = TestAuc(**model, *params, **test);
    if (!auc.ok()) return auc.status();
    std::fprintf(stderr, "  (a) epoch %d: test AUC %.4f, %zu table rows\n",
                 epoch + 1, *auc, params->table_rows());
    result.test_auc = *auc;
  }
  result.train_seconds = absl::ToDoubleSeconds(trained);
  return result;
}

// (b), (c): the real binaries on loopback, with the same job.
absl::StatusOr<Result> RunDistributed(int num_shards, int num_workers,
                                      const std::string& job_text) {
  testing::LocalClusterOptions options;
  options.num_shards = num_shards;
  options.job_config = job_text;
  options.shard_flags = {"--flush_interval_s=5"};
  options.worker_flags = {
      absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads))};
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
  for (const v1::EpochStats& e : status->epoch_stats()) {
    result.samples += e.samples();
    result.train_seconds +=
        (e.finished_unix_ms() - e.started_unix_ms()) / 1000.0;
    if (e.has_test_auc()) {
      std::fprintf(stderr, "  %s epoch %d: test AUC %.4f\n",
                   result.setup.c_str(), e.epoch() + 1, e.test_auc());
      result.test_auc = e.test_auc();
    }
  }
  // A run that worked leaves nothing behind (a failed one keeps its logs and
  // RocksDB directories, named in the error).
  const std::string dir = (*cluster)->dir();
  cluster->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "dlrm_bench: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  return 1;
}

int Run(const char* argv0) {
  namespace fs = std::filesystem;
  testing::EnterRunfiles(argv0);
  std::error_code ec;
  const fs::path model_dir = fs::absolute(absl::GetFlag(FLAGS_model_dir), ec);
  const std::string model_path = (model_dir / "dlrm.pt").string();
  auto model_file = ReadFile(model_path);
  if (!model_file.ok()) return Fail("the model", model_file.status());
  auto job_file = ReadFile((model_dir / "job.pbtxt").string());
  if (!job_file.ok()) return Fail("the job", job_file.status());
  v1::JobConfig job;
  if (!google::protobuf::TextFormat::ParseFromString(*job_file, &job)) {
    return Fail("the job", absl::InvalidArgumentError("does not parse"));
  }

  const bool own_work_dir = absl::GetFlag(FLAGS_work_dir).empty();
  const fs::path work_dir = own_work_dir
                                ? fs::path(testing::TempPath("dlrm_bench"))
                                : fs::path(absl::GetFlag(FLAGS_work_dir));
  worker::PlantedCriteoOptions data;
  data.train_lines = absl::GetFlag(FLAGS_train_lines);
  data.test_lines = absl::GetFlag(FLAGS_test_lines);
  data.vocabulary = absl::GetFlag(FLAGS_vocabulary);
  data.seed = absl::GetFlag(FLAGS_data_seed);
  const absl::Time written = absl::Now();
  auto planted = worker::WritePlantedCriteo((work_dir / "data").string(), data);
  if (!planted.ok()) return Fail("the data", planted.status());
  std::fprintf(stderr, "wrote %lld + %lld planted lines in %.1f s\n",
               static_cast<long long>(data.train_lines),
               static_cast<long long>(data.test_lines),
               absl::ToDoubleSeconds(absl::Now() - written));

  // The job dlrm.py wrote, on this data, for --epochs, with the file's
  // absolute path (shard 0 reads it; a relative one would be resolved from
  // the cluster's directory).
  job.mutable_model()->set_torchscript(model_path);
  job.mutable_dataset()->set_path((work_dir / "data" / "train").string());
  job.mutable_dataset()->set_test_path(planted->test_file);
  job.set_epochs(absl::GetFlag(FLAGS_epochs));
  const std::string extrapolate = absl::GetFlag(FLAGS_extrapolate_dense);
  if (!extrapolate.empty()) {
    if (extrapolate != "true" && extrapolate != "false") {
      return Fail("--extrapolate_dense",
                  absl::InvalidArgumentError("is true, false or empty"));
    }
    job.mutable_consistency()->set_extrapolate_dense(extrapolate == "true");
  }
  std::string job_text;
  google::protobuf::TextFormat::PrintToString(job, &job_text);

  int64_t table_rows = 0;
  for (const auto& t : job.model().embedding_tables()) table_rows += t.rows();
  std::printf(
      "dlrm_bench: DLRM (%d tables, %lld rows in all) on %lld planted Criteo "
      "lines (vocabulary %lld) x %d epoch(s), batch %d, %d partitions, %s, "
      "%d libtorch thread(s) per process, %ld cores\n",
      job.model().embedding_tables_size(), static_cast<long long>(table_rows),
      static_cast<long long>(data.train_lines),
      static_cast<long long>(data.vocabulary), job.epochs(), job.batch_size(),
      job.partitions_per_epoch(),
      v1::ConsistencyConfig::Mode_Name(job.consistency().mode()).c_str(),
      absl::GetFlag(FLAGS_threads), sysconf(_SC_NPROCESSORS_ONLN));
  std::fflush(stdout);

  std::vector<Result> results(3);
  for (int round = 1; round <= std::max(1, absl::GetFlag(FLAGS_rounds));
       ++round) {
    for (int setup = 0; setup < 3; ++setup) {
      auto r = setup == 0 ? RunSingleProcess(job, *model_file)
                          : RunDistributed(setup, setup, job_text);
      if (!r.ok()) return Fail(absl::StrCat("setup ", setup), r.status());
      std::fprintf(stderr, "round %d: %s: %.0f samples/s, test AUC %s\n", round,
                   r->setup.c_str(), r->samples_per_second(),
                   AucText(r->test_auc).c_str());
      if (r->samples_per_second() > results[setup].samples_per_second()) {
        results[setup] = *std::move(r);
      }
    }
  }
  if (own_work_dir) fs::remove_all(work_dir, ec);

  const Result& a = results[0];
  std::printf("\n%-26s %9s %9s %10s %8s %9s %11s\n", "setup", "samples",
              "train s", "samples/s", "vs (a)", "test AUC", "vs planted");
  for (const Result& r : results) {
    std::printf(
        "%-26s %9lld %9.1f %10.0f %7.2fx %9s %11s\n", r.setup.c_str(),
        static_cast<long long>(r.samples), r.train_seconds,
        r.samples_per_second(), r.samples_per_second() / a.samples_per_second(),
        AucText(r.test_auc).c_str(),
        r.test_auc.has_value()
            ? absl::StrFormat("%+.4f", *r.test_auc - planted->best_auc).c_str()
            : "-");
  }
  std::printf("planted best AUC on the test file: %.4f\n", planted->best_auc);
  const double ratio_b =
      results[1].samples_per_second() / a.samples_per_second();
  const double ratio_c =
      results[2].samples_per_second() / a.samples_per_second();
  std::printf("\ngoals: (b)/(a) = %.2f >= 0.80: %s; (c)/(a) = %.2f\n", ratio_b,
              ratio_b >= 0.8 ? "met" : "NOT met", ratio_c);
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "dlrm_bench: the DLRM example trained in one process, on 1 shard + 1 "
      "worker, and on 2 shards + 2 workers; samples/s and test AUC.");
  absl::ParseCommandLine(argc, argv);
  return tessera::Run(argv[0]);
}

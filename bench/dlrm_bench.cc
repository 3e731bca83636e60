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
//       shuffle seeds, and the shards' own optimizers applied in-process
//       after every step: Adam on the dense tensors (starting from the
//       file's values, as the shards do), Adagrad on each table's rows, kept
//       in a hash map of row -> values and slots, created on first update
//       from the tables' initializer (ps/spec/initializer.h) with a step
//       count of their own, as the shards' embedding parts;
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
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
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
#include "ps/optim/optimizer.h"
#include "ps/spec/initializer.h"
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

// The rows of one embedding table, as a shard's embedding part holds them:
// created on first update from the table's initializer, each with its
// optimizer slots and its own step count. Single-threaded.
class LocalTable {
 public:
  LocalTable(const v1::TensorSpec& spec,
             std::unique_ptr<optim::Optimizer> optimizer)
      : spec_(spec),
        dim_(spec.shape(1)),
        optimizer_(std::move(optimizer)),
        slots_(optimizer_->num_slots()) {}

  // Copies the rows of `ids` into `out` (ids.size() x dim); a row never
  // updated is its initial value and is not created.
  void Read(absl::Span<const uint64_t> ids, std::vector<float>* out) const {
    out->resize(ids.size() * dim_);
    for (size_t i = 0; i < ids.size(); ++i) {
      float* dst = out->data() + i * dim_;
      auto it = index_.find(ids[i]);
      if (it != index_.end()) {
        std::copy_n(values_.data() + it->second * dim_, dim_, dst);
      } else {
        InitializeRows(spec_, ids[i], absl::MakeSpan(dst, dim_));
      }
    }
  }

  // One optimizer step on each row of `ids` (distinct), with its gradient
  // row of `grad`.
  void Apply(absl::Span<const uint64_t> ids, absl::Span<const float> grad) {
    std::vector<float*> slot_ptrs(slots_.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      const size_t r = Row(ids[i]);
      for (size_t s = 0; s < slots_.size(); ++s) {
        slot_ptrs[s] = slots_[s].data() + r * dim_;
      }
      optimizer_->Apply(absl::MakeSpan(values_.data() + r * dim_, dim_),
                        grad.subspan(i * dim_, dim_), slot_ptrs, ++steps_[r]);
    }
  }

  size_t num_rows() const { return steps_.size(); }

 private:
  size_t Row(uint64_t id) {
    auto [it, inserted] = index_.try_emplace(id, steps_.size());
    if (!inserted) return it->second;
    const size_t r = it->second;
    values_.resize((r + 1) * dim_);
    InitializeRows(spec_, id, absl::MakeSpan(values_.data() + r * dim_, dim_));
    std::vector<float*> slot_ptrs;
    for (auto& s : slots_) {
      s.resize((r + 1) * dim_);
      slot_ptrs.push_back(s.data() + r * dim_);
    }
    optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), dim_);
    steps_.push_back(0);
    return r;
  }

  const v1::TensorSpec spec_;
  const int64_t dim_;
  const std::unique_ptr<optim::Optimizer> optimizer_;
  absl::flat_hash_map<uint64_t, size_t> index_;  // Row id -> row.
  std::vector<float> values_;                    // dim_ per row.
  std::vector<std::vector<float>> slots_;        // Each dim_ per row.
  std::vector<int64_t> steps_;                   // Per row.
};

// Every tensor of the model with its optimizer, applied in this process.
class LocalParameters {
 public:
  static absl::StatusOr<LocalParameters> Create(worker::Model& model,
                                                const v1::JobConfig& job) {
    LocalParameters p;
    const std::vector<v1::TensorSpec> specs = worker::ModelSpecs(model, job);
    const std::vector<worker::TensorInfo>& infos = model.Parameters();
    for (size_t i = 0; i < infos.size(); ++i) {
      const worker::TensorInfo& t = infos[i];
      auto optimizer =
          optim::NewOptimizer(ToOptimizerConfig(specs[i].optimizer()));
      if (!optimizer.ok()) return optimizer.status();
      if (t.kind == worker::TensorKind::kEmbedding) {
        p.rows_per_field_.resize(
            std::max<size_t>(p.rows_per_field_.size(), t.field + 1));
        p.rows_per_field_[t.field] = t.shape[0];
        p.tables_.push_back(
            {i, t.name, t.field,
             std::make_unique<LocalTable>(specs[i], *std::move(optimizer))});
        continue;
      }
      if (t.frozen) continue;  // Never pushed.
      Dense d;
      d.index = i;
      d.name = t.name;
      // The file's values, which the shards take from the first worker.
      auto values = model.DenseValues(t.name);
      if (!values.ok()) return values.status();
      d.values = *std::move(values);
      d.optimizer = *std::move(optimizer);
      d.slots.assign(d.optimizer->num_slots(),
                     std::vector<float>(d.values.size()));
      for (auto& s : d.slots) d.slot_ptrs.push_back(s.data());
      d.optimizer->InitSlots(d.slot_ptrs, d.values.size());
      p.dense_.push_back(std::move(d));
    }
    return p;
  }

  const std::vector<int64_t>& rows_per_field() const { return rows_per_field_; }

  // Loads the rows `batch` (with AssignTableRows done) uses into `model`.
  absl::Status LoadRows(const worker::TabularBatch& batch,
                        worker::Model& model) {
    for (const Table& t : tables_) {
      const std::vector<uint64_t>& ids = batch.fields[t.field].unique_rows;
      t.rows->Read(ids, &scratch_);
      absl::Status loaded = model.LoadEmbeddingRows(t.name, ids, scratch_);
      if (!loaded.ok()) return loaded;
    }
    return absl::OkStatus();
  }

  // Applies `step`'s gradients and loads the new dense values into `model`.
  absl::Status Apply(const worker::StepResult& step,
                     const worker::TabularBatch& batch, worker::Model& model) {
    ++steps_;
    for (Dense& d : dense_) {
      d.optimizer->Apply(absl::MakeSpan(d.values),
                         step.gradients[d.index].values, d.slot_ptrs, steps_);
      absl::Status loaded = model.LoadDense(d.name, d.values);
      if (!loaded.ok()) return loaded;
    }
    for (Table& t : tables_) {
      t.rows->Apply(batch.fields[t.field].unique_rows,
                    step.gradients[t.index].values);
    }
    return absl::OkStatus();
  }

  size_t table_rows() const {
    size_t n = 0;
    for (const Table& t : tables_) n += t.rows->num_rows();
    return n;
  }

 private:
  struct Dense {
    size_t index = 0;  // In Parameters() and StepResult::gradients.
    std::string name;
    std::vector<float> values;
    std::unique_ptr<optim::Optimizer> optimizer;
    std::vector<std::vector<float>> slots;
    std::vector<float*> slot_ptrs;
  };
  struct Table {
    size_t index = 0;
    std::string name;
    int field = 0;
    std::unique_ptr<LocalTable> rows;
  };

  std::vector<Dense> dense_;
  std::vector<Table> tables_;
  std::vector<int64_t> rows_per_field_;
  int64_t steps_ = 0;  // Dense tensors: every step updates them all.
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
  auto params = LocalParameters::Create(**model, job);
  if (!params.ok()) return params.status();
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

// `bazel run` starts binaries in their runfiles tree, where LocalCluster
// finds ps/server/tessera-ps and worker/tessera-worker; started directly from
// bazel-bin, move there.
void EnterRunfiles(const char* argv0) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists("ps/server/tessera-ps", ec)) return;
  const fs::path runfiles =
      fs::path(fs::absolute(argv0, ec).string() + ".runfiles") / "tessera";
  if (fs::exists(runfiles, ec)) fs::current_path(runfiles, ec);
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "dlrm_bench: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  return 1;
}

int Run(const char* argv0) {
  namespace fs = std::filesystem;
  EnterRunfiles(argv0);
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

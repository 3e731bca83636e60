#include "ps/common/job_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace tessera {
namespace {

// Collects the first parse error with its position.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    error_ =
        absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("job config: ", field, " ", why));
}

}  // namespace

void ApplyJobDefaults(v1::JobConfig* job) {
  if (job->batch_size() == 0) job->set_batch_size(64);
  if (job->epochs() == 0) job->set_epochs(1);
  if (job->partitions_per_epoch() == 0) job->set_partitions_per_epoch(100);
  if (job->lease_timeout_s() == 0) job->set_lease_timeout_s(30);
  if (job->optimizer().learning_rate() == 0) {
    job->mutable_optimizer()->set_learning_rate(0.01f);
  }
  v1::ModelConfig* model = job->mutable_model();
  if (model->name() == "mlp" && model->hidden_size() == 0) {
    model->add_hidden(256);
    model->add_hidden(128);
  }
  if (model->name() == "logreg" && model->embedding_dim() == 0) {
    model->set_embedding_dim(1);
  }
  if (job->dataset().format() == v1::DatasetConfig::FASHION_MNIST &&
      job->dataset().path().empty()) {
    job->mutable_dataset()->set_path("/usr/share/datasets/fashion-mnist");
  }
}

absl::Status ValidateJobConfig(const v1::JobConfig& job) {
  if (job.name().empty()) return Invalid("name", "is empty");
  const std::string& model = job.model().name();
  if (model != "mlp" && model != "cnn" && model != "logreg" &&
      model != "torchscript") {
    return Invalid(
        "model.name",
        absl::StrCat("\"", model, "\" is not mlp, cnn, logreg or torchscript"));
  }
  if (model == "torchscript" && job.model().torchscript().empty()) {
    return Invalid("model.torchscript",
                   "is empty: model torchscript needs the path of a "
                   "torch.jit.save file");
  }
  if (model != "torchscript" && !job.model().torchscript().empty()) {
    return Invalid("model.torchscript",
                   absl::StrCat("is set, but model \"", model,
                                "\" is built in; use name: \"torchscript\""));
  }
  if (!v1::ModelConfig::Loss_IsValid(job.model().loss())) {
    return Invalid("model.loss",
                   absl::StrCat(job.model().loss(), " is not a known loss"));
  }
  {
    absl::flat_hash_set<std::string> modules;
    for (int i = 0; i < job.model().embedding_tables_size(); ++i) {
      const v1::EmbeddingTableConfig& t = job.model().embedding_tables(i);
      const std::string where = absl::StrCat("model.embedding_tables[", i, "]");
      if (model == "logreg") {
        // The built-in model's one table: only its policy and optimizer are
        // the job's to set.
        if (t.module() != "embedding") {
          return Invalid(where + ".module",
                         absl::StrCat("\"", t.module(),
                                      "\": a logreg model's table is "
                                      "\"embedding\""));
        }
        if (t.rows() != 0 || t.has_initializer()) {
          return Invalid(where,
                         "sets rows or initializer; a logreg model's table "
                         "takes its rows from model.num_features and has a "
                         "fixed initializer (set memory_policy or optimizer)");
        }
      } else if (model != "torchscript") {
        return Invalid(where, "is only for models torchscript and logreg");
      }
      if (t.module().empty()) return Invalid(where + ".module", "is empty");
      if (!modules.insert(t.module()).second) {
        return Invalid(where + ".module",
                       absl::StrCat("\"", t.module(), "\" is listed twice"));
      }
      if (t.rows() < 0) {
        return Invalid(where + ".rows",
                       absl::StrCat(t.rows(), " is negative (0 = unbounded)"));
      }
      if (!v1::Initializer::Kind_IsValid(t.initializer().kind())) {
        return Invalid(where + ".initializer.kind", "is unknown");
      }
      // The shards check the whole policy again (ValidateTensorSpec); these
      // are the mistakes worth failing the job file for before it starts.
      const v1::MemoryPolicy& policy = t.memory_policy();
      if (policy.eviction() == v1::MemoryPolicy::EVICTION_DISK &&
          policy.max_rows() <= 0) {
        return Invalid(where + ".memory_policy.eviction",
                       "EVICTION_DISK needs max_rows > 0 (the rows each shard "
                       "keeps in memory)");
      }
      if (policy.eviction() == v1::MemoryPolicy::EVICTION_DISK &&
          (policy.expire_after_steps() != 0 ||
           policy.expire_after_seconds() != 0)) {
        return Invalid(where + ".memory_policy",
                       "expiry with EVICTION_DISK is not supported (rows on "
                       "disk would never expire)");
      }
      if (!v1::MemoryPolicy::Eviction_IsValid(policy.eviction())) {
        return Invalid(where + ".memory_policy.eviction", "is unknown");
      }
      if (policy.admit_after_pushes() < 0 || policy.sketch_width() < 0 ||
          policy.sketch_depth() < 0 || policy.expire_after_steps() < 0 ||
          policy.expire_after_seconds() < 0 || policy.max_rows() < 0) {
        return Invalid(where + ".memory_policy", "has a negative field");
      }
    }
  }
  for (int h : job.model().hidden()) {
    if (h <= 0 || h > 65536) {
      return Invalid("model.hidden", absl::StrCat("size ", h, " out of range"));
    }
  }
  if (job.batch_size() < 1 || job.batch_size() > 1 << 20) {
    return Invalid("batch_size",
                   absl::StrCat(job.batch_size(), " not in [1, 1048576]"));
  }
  if (job.epochs() < 1 || job.epochs() > 100000) {
    return Invalid("epochs", absl::StrCat(job.epochs(), " not in [1, 100000]"));
  }
  if (job.partitions_per_epoch() < 1 || job.partitions_per_epoch() > 1000000) {
    return Invalid(
        "partitions_per_epoch",
        absl::StrCat(job.partitions_per_epoch(), " not in [1, 1000000]"));
  }
  if (job.consistency().staleness() < 0) {
    return Invalid("consistency.staleness", "is negative");
  }
  if (!(job.lease_timeout_s() > 0) || !std::isfinite(job.lease_timeout_s())) {
    return Invalid("lease_timeout_s", "must be positive");
  }
  auto check_optimizer = [](const v1::OptimizerConfig& o,
                            const std::string& where) -> absl::Status {
    if (!(o.learning_rate() > 0) || !std::isfinite(o.learning_rate())) {
      return Invalid(where + ".learning_rate", "must be positive");
    }
    if (o.weight_decay() < 0 || o.momentum() < 0) {
      return Invalid(where, "has a negative weight_decay or momentum");
    }
    return absl::OkStatus();
  };
  absl::Status opt = check_optimizer(job.optimizer(), "optimizer");
  if (!opt.ok()) return opt;
  for (int i = 0; i < job.model().embedding_tables_size(); ++i) {
    const auto& t = job.model().embedding_tables(i);
    if (!t.has_optimizer()) continue;
    opt = check_optimizer(t.optimizer(), absl::StrCat("model.embedding_tables[",
                                                      i, "].optimizer"));
    if (!opt.ok()) return opt;
  }
  for (int i = 0; i < job.tensor_groups_size(); ++i) {
    const auto& g = job.tensor_groups(i);
    const std::string where = absl::StrCat("tensor_groups[", i, "]");
    if (g.prefix().empty()) return Invalid(where + ".prefix", "is empty");
    v1::OptimizerConfig o = g.optimizer();
    if (o.learning_rate() == 0) o.set_learning_rate(0.01f);
    opt = check_optimizer(o, where + ".optimizer");
    if (!opt.ok()) return opt;
  }
  const auto& d = job.dataset();
  switch (d.format()) {
    case v1::DatasetConfig::FASHION_MNIST:
    case v1::DatasetConfig::LIBSVM:
    case v1::DatasetConfig::CRITEO:
      if (d.path().empty()) return Invalid("dataset.path", "is empty");
      break;
    case v1::DatasetConfig::CSV:
      if (d.path().empty()) return Invalid("dataset.path", "is empty");
      if (d.csv().label().empty()) {
        return Invalid("dataset.csv.label",
                       "is empty: CSV needs a label column");
      }
      break;
    case v1::DatasetConfig::SYNTHETIC_CTR:
      if (d.num_examples() <= 0 || d.vocabulary() <= 0 ||
          d.features_per_example() <= 0) {
        return Invalid("dataset",
                       "SYNTHETIC_CTR needs num_examples, vocabulary and "
                       "features_per_example > 0");
      }
      break;
    default:
      return Invalid("dataset.format", "is unknown");
  }
  if (d.limit() < 0) return Invalid("dataset.limit", "is negative");
  const bool tabular = d.format() == v1::DatasetConfig::CRITEO ||
                       d.format() == v1::DatasetConfig::CSV;
  if (tabular && d.limit() > 0) {
    return Invalid("dataset.limit",
                   "is not supported for CRITEO and CSV (streams of files); "
                   "give a smaller file or directory instead");
  }
  if (job.model().name() == "torchscript") {
    int fields = 0;
    if (d.format() == v1::DatasetConfig::CRITEO) fields = 26;
    if (d.format() == v1::DatasetConfig::CSV) {
      fields = d.csv().categorical_size();
    }
    if (!tabular && d.format() != v1::DatasetConfig::FASHION_MNIST) {
      return Invalid("dataset.format",
                     "a TorchScript model trains on FASHION_MNIST, CRITEO or "
                     "CSV data");
    }
    if (job.model().embedding_tables_size() != fields) {
      return Invalid(
          "model.embedding_tables",
          absl::StrCat("names ", job.model().embedding_tables_size(),
                       " tables for data with ", fields,
                       " categorical fields; want one table per field, in "
                       "the data's order"));
    }
  }
  if (d.has_max_bad_lines() && d.max_bad_lines() < 0) {
    return Invalid("dataset.max_bad_lines", "is negative");
  }
  if (d.shuffle_buffer() < 0) {
    return Invalid("dataset.shuffle_buffer", "is negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobConfig> ParseJobConfig(absl::string_view text) {
  v1::JobConfig job;
  FirstError errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &job)) {
    return absl::InvalidArgumentError(
        absl::StrCat("job config: ",
                     errors.error().empty() ? "cannot parse" : errors.error()));
  }
  ApplyJobDefaults(&job);
  absl::Status valid = ValidateJobConfig(job);
  if (!valid.ok()) return valid;
  return job;
}

std::string ModelFilePath(const v1::JobConfig& job,
                          const std::string& job_path) {
  const std::string& file = job.model().torchscript();
  if (file.empty()) return "";
  std::filesystem::path p(file);
  if (p.is_absolute()) return file;
  return (std::filesystem::path(job_path).parent_path() / p).string();
}

absl::StatusOr<std::string> ReadFileCapped(const std::string& path,
                                           int64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a directory, not a file"));
  }
  std::string out;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    // Checked per block, so a file that grows while read is still capped.
    if (static_cast<int64_t>(out.size()) + in.gcount() > max_bytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " is larger than the limit of ", max_bytes, " bytes"));
    }
    out.append(buffer, in.gcount());
  }
  if (in.bad()) {
    return absl::NotFoundError(absl::StrCat("error reading ", path));
  }
  return out;
}

absl::StatusOr<v1::JobConfig> LoadJobConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) {
    return absl::NotFoundError(absl::StrCat("cannot read job config ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto job = ParseJobConfig(text.str());
  if (!job.ok()) {
    return absl::Status(job.status().code(),
                        absl::StrCat(path, ": ", job.status().message()));
  }
  return job;
}

v1::OptimizerConfig OptimizerFor(const v1::JobConfig& job,
                                 absl::string_view tensor) {
  for (const auto& g : job.tensor_groups()) {
    if (absl::StartsWith(tensor, g.prefix())) return g.optimizer();
  }
  return job.optimizer();
}

int StalenessBound(const v1::JobConfig& job) {
  switch (job.consistency().mode()) {
    case v1::ConsistencyConfig::SSP:
      return job.consistency().staleness();
    case v1::ConsistencyConfig::BSP:
      return 0;
    default:
      return -1;
  }
}

bool ExtrapolatesDense(const v1::JobConfig& job) {
  return !job.consistency().has_extrapolate_dense() ||
         job.consistency().extrapolate_dense();
}

}  // namespace tessera

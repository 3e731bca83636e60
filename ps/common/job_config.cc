#include "ps/common/job_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

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
  if (model != "mlp" && model != "cnn" && model != "logreg") {
    return Invalid("model.name",
                   absl::StrCat("\"", model, "\" is not mlp, cnn or logreg"));
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
      if (d.path().empty()) return Invalid("dataset.path", "is empty");
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

}  // namespace tessera

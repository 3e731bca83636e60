#include "worker/job_model.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/data/tabular.h"
#include "worker/model/torchscript_model.h"

namespace tessera {
namespace worker {

absl::StatusOr<DatasetShape> ShapeOf(const v1::DatasetConfig& dataset) {
  DatasetShape shape;
  switch (dataset.format()) {
    case v1::DatasetConfig::FASHION_MNIST:
      shape.kind = InputKind::kDense;
      shape.input_dim = 28 * 28;
      return shape;
    case v1::DatasetConfig::LIBSVM:
    case v1::DatasetConfig::SYNTHETIC_CTR:
      shape.kind = InputKind::kSparse;
      return shape;
    case v1::DatasetConfig::CRITEO:
      shape.kind = InputKind::kTabular;
      shape.input_dim = kCriteoNumDense;
      shape.num_fields = kCriteoNumCategorical;
      return shape;
    case v1::DatasetConfig::CSV:
      shape.kind = InputKind::kTabular;
      shape.input_dim = dataset.csv().dense_size();
      shape.num_fields = dataset.csv().categorical_size();
      return shape;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown dataset format ", dataset.format()));
  }
}

namespace {

TaskKind TaskOf(v1::ModelConfig::Loss loss, InputKind input) {
  switch (loss) {
    case v1::ModelConfig::BCE_WITH_LOGITS:
      return TaskKind::kBinary;
    case v1::ModelConfig::CROSS_ENTROPY:
      return TaskKind::kClasses;
    case v1::ModelConfig::MSE:
      return TaskKind::kRegression;
    default:
      return input == InputKind::kTabular ? TaskKind::kBinary
                                          : TaskKind::kClasses;
  }
}

absl::StatusOr<std::unique_ptr<Model>> CreateTorchScript(
    const v1::JobConfig& job, const std::string& model_file, int threads) {
  const v1::ModelConfig& m = job.model();
  if (model_file.empty()) {
    return absl::InvalidArgumentError(
        "model 'torchscript' needs a model file (ModelConfig.torchscript)");
  }
  absl::StatusOr<DatasetShape> shape = ShapeOf(job.dataset());
  if (!shape.ok()) return shape.status();
  if (shape->kind == InputKind::kSparse) {
    return absl::InvalidArgumentError(
        "a TorchScript model trains on dense (FASHION_MNIST) or tabular "
        "(CRITEO, CSV) data; LIBSVM and SYNTHETIC_CTR feed the built-in "
        "logreg");
  }
  if (m.embedding_tables_size() != shape->num_fields) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the data has ", shape->num_fields,
        " categorical fields and the job names ", m.embedding_tables_size(),
        " embedding tables; want one table per field, in the data's order"));
  }
  TorchScriptOptions options;
  options.file = model_file;
  options.file_name = m.torchscript();
  options.input = shape->kind;
  options.input_dim = shape->input_dim;
  options.task = TaskOf(m.loss(), shape->kind);
  options.seed = m.seed();
  options.num_threads = threads;
  for (const v1::EmbeddingTableConfig& t : m.embedding_tables()) {
    TorchScriptTable table;
    table.module = t.module();
    table.rows = t.rows();
    if (t.has_initializer()) {
      table.initializer = t.initializer();
    } else {
      // nn.Embedding's and nn.EmbeddingBag's own default.
      table.initializer.set_kind(v1::Initializer::NORMAL);
      table.initializer.set_mean(0);
      table.initializer.set_stddev(1);
    }
    options.tables.push_back(std::move(table));
  }
  return LoadTorchScriptModel(options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> CreateJobModel(
    const v1::JobConfig& job, const std::string& model_file, int threads) {
  if (job.model().name() == "torchscript") {
    return CreateTorchScript(job, model_file, threads);
  }
  ModelOptions options;
  options.name = job.model().name();
  if (job.model().hidden_size() > 0) {
    options.hidden_sizes.assign(job.model().hidden().begin(),
                                job.model().hidden().end());
  }
  if (job.model().embedding_dim() > 0) {
    options.embedding_dim = job.model().embedding_dim();
  }
  options.vocab_size = job.model().num_features();
  options.seed = job.model().seed();
  options.num_threads = threads;
  return Model::Create(options);
}

}  // namespace worker
}  // namespace tessera

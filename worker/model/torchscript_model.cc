// TorchScript models (worker/model/torchscript_model.h): a second libtorch
// translation unit of worker/model, using only torch/script.h.

#include "worker/model/torchscript_model.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <map>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ps/common/status_macros.h"
#include "worker/model/torch_util.h"

namespace tessera {
namespace worker {
namespace {

// The submodule at dotted `path` ("emb_l.0"), or NotFound.
absl::StatusOr<torch::jit::Module> FindModule(const torch::jit::Module& root,
                                              const std::string& path) {
  torch::jit::Module current = root;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    const std::string name(part);
    if (name.empty() || !current.hasattr(name) ||
        !current.attr(name).isModule()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the model has no module '", path, "' (no '", name, "' in it)"));
    }
    current = current.attr(name).toModule();
  }
  return current;
}

const char* InputName(InputKind kind) {
  switch (kind) {
    case InputKind::kDense:
      return "dense";
    case InputKind::kSparse:
      return "sparse";
    case InputKind::kTabular:
      return "tabular";
  }
  return "unknown";
}

class TorchScriptModel final : public Model {
 public:
  using Model::Evaluate;
  using Model::TrainStep;

  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const TorchScriptOptions& options) {
    if (options.input != InputKind::kDense &&
        options.input != InputKind::kTabular) {
      return absl::InvalidArgumentError(
          absl::StrCat("a TorchScript model reads dense or tabular batches, "
                       "not ",
                       InputName(options.input)));
    }
    if (options.input_dim < 0 ||
        (options.input == InputKind::kDense && options.input_dim == 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("input_dim is ", options.input_dim));
    }
    if (options.input == InputKind::kDense && !options.tables.empty()) {
      return absl::InvalidArgumentError(
          "embedding tables need tabular data (categorical fields)");
    }
    if (options.num_threads > 0) SetIntraOpThreads(options.num_threads);
    std::unique_ptr<TorchScriptModel> model(new TorchScriptModel(options));
    absl::Status s = GuardTorch("loading " + options.file_name,
                                [&]() { return model->Init(); });
    if (!s.ok()) {
      // libtorch's own load errors are the file's fault, not ours.
      return absl::InvalidArgumentError(s.message());
    }
    return std::unique_ptr<Model>(std::move(model));
  }

  InputKind input_kind() const override { return options_.input; }
  TaskKind task_kind() const override { return options_.task; }
  const std::vector<TensorInfo>& Parameters() const override { return infos_; }

  absl::Status LoadDense(absl::string_view name,
                         absl::Span<const float> values) override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    if (static_cast<int64_t>(values.size()) != infos_[slot].num_elements()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has ", infos_[slot].num_elements(),
                       " values, got ", values.size()));
    }
    return GuardTorch("loading a dense tensor", [&]() -> absl::Status {
      torch::NoGradGuard no_grad;
      torch::Tensor& t = dense_[slot];
      t.copy_(FloatTensor(values, t.sizes()));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<absl::Span<float>> DenseStaging(
      absl::string_view name) override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    return staging_.Staging(dense_[slot], slot);
  }

  absl::Status CommitDense(absl::string_view name) override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    return staging_.Commit(dense_[slot], slot);
  }

  absl::Status LoadEmbeddingRows(absl::string_view name,
                                 absl::Span<const uint64_t> ids,
                                 absl::Span<const float> rows) override {
    auto it = index_.find(name);
    if (it == index_.end()) return Unknown(name);
    if (it->second < dense_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is dense; load it with LoadDense"));
    }
    Table& table = tables_[it->second - dense_.size()];
    const int64_t want = static_cast<int64_t>(ids.size()) * table.dim;
    if (static_cast<int64_t>(rows.size()) != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "embedding '", name, "': ", ids.size(), " ids of dim ", table.dim,
          " need ", want, " values, got ", rows.size()));
    }
    return GuardTorch("loading embedding rows", [&]() -> absl::Status {
      table.ids.assign(ids.begin(), ids.end());
      table.rows =
          FloatTensor(rows, {static_cast<int64_t>(ids.size()), table.dim})
              .clone();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<float>> DenseValues(
      absl::string_view name) const override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    return GuardTorch(
        "reading a dense tensor", [&]() -> absl::StatusOr<std::vector<float>> {
          return ToVector(dense_[slot].detach().to(torch::kFloat32));
        });
  }

  absl::StatusOr<StepResult> TrainStep(const DenseBatch& batch) override {
    TESSERA_RETURN_IF_ERROR(CheckDense(batch));
    return Run(&batch, nullptr, /*backward=*/true, nullptr);
  }
  absl::StatusOr<StepResult> TrainStep(const TabularBatch& batch) override {
    TESSERA_RETURN_IF_ERROR(CheckTabular(batch));
    return Run(nullptr, &batch, /*backward=*/true, nullptr);
  }
  absl::StatusOr<EvalResult> Evaluate(const DenseBatch& batch) override {
    TESSERA_RETURN_IF_ERROR(CheckDense(batch));
    EvalResult eval;
    return EvalOf(Run(&batch, nullptr, /*backward=*/false, &eval), &eval);
  }
  absl::StatusOr<EvalResult> Evaluate(const TabularBatch& batch) override {
    TESSERA_RETURN_IF_ERROR(CheckTabular(batch));
    EvalResult eval;
    return EvalOf(Run(nullptr, &batch, /*backward=*/false, &eval), &eval);
  }

 private:
  struct Table {
    std::string name;  // "<module>.weight"
    torch::jit::Module module;
    int64_t dim = 0;
    std::vector<uint64_t> ids;  // Of the loaded rows.
    torch::Tensor rows;         // [ids.size(), dim]
  };

  explicit TorchScriptModel(const TorchScriptOptions& options)
      : options_(options) {}

  absl::Status Init() {
    std::istringstream in(options_.file);
    module_ = torch::jit::load(in);
    TESSERA_RETURN_IF_ERROR(CheckForward());
    // Tables first: their weights are not dense tensors. Their infos go
    // after the dense ones.
    absl::flat_hash_set<std::string> table_weights;
    std::vector<TensorInfo> table_infos;
    for (size_t k = 0; k < options_.tables.size(); ++k) {
      const TorchScriptTable& spec = options_.tables[k];
      TESSERA_ASSIGN_OR_RETURN(torch::jit::Module sub,
                               FindModule(module_, spec.module));
      bool has_weight = false;
      for (const auto& p : sub.named_parameters(/*recurse=*/false)) {
        if (p.name == "weight") has_weight = p.value.dim() == 2;
      }
      if (!has_weight) {
        return absl::InvalidArgumentError(
            absl::StrCat("module '", spec.module,
                         "' has no 2-d parameter 'weight' to hold as an "
                         "embedding table"));
      }
      if (sub.hasattr("padding_idx") && !sub.attr("padding_idx").isNone()) {
        return absl::InvalidArgumentError(
            absl::StrCat("module '", spec.module,
                         "' has a padding_idx, which a table on the "
                         "parameter server cannot keep (its rows are "
                         "remapped each step)"));
      }
      if (spec.rows < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("table '", spec.module, "' has ", spec.rows, " rows"));
      }
      Table table;
      table.name = spec.module + ".weight";
      if (!table_weights.insert(table.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("module '", spec.module, "' is named twice"));
      }
      table.module = sub;
      table.dim = sub.attr("weight").toTensor().size(1);
      TensorInfo info;
      info.name = table.name;
      info.kind = TensorKind::kEmbedding;
      info.shape = {spec.rows, table.dim};
      info.initializer = spec.initializer;
      info.initializer.set_seed(TensorSeed(options_.seed, info.name));
      info.field = static_cast<int>(k);
      table_infos.push_back(std::move(info));
      tables_.push_back(std::move(table));
    }
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      if (table_weights.contains(p.name)) continue;
      AddDense(p.name, p.value, /*buffer=*/false);
      // Frozen in the file (requires_grad False): not trained here either.
      infos_.back().frozen = !p.value.requires_grad();
    }
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) {
      if (b.value.is_complex()) {
        return absl::InvalidArgumentError(
            absl::StrCat("buffer '", b.name, "' is complex"));
      }
      AddDense(b.name, b.value, /*buffer=*/true);
    }
    for (TensorInfo& info : table_infos) {
      index_[info.name] = infos_.size();
      infos_.push_back(std::move(info));
    }
    return absl::OkStatus();
  }

  // The module's forward takes the contract's inputs (torchscript_model.h):
  // a clear error at load rather than a libtorch one at the first step.
  absl::Status CheckForward() const {
    if (!module_.find_method("forward")) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.file_name, " has no forward method"));
    }
    const c10::FunctionSchema& schema =
        module_.get_method("forward").function().getSchema();
    const size_t want = options_.input == InputKind::kTabular ? 4 : 2;
    const char* signature =
        options_.input == InputKind::kTabular
            ? "forward(self, dense: Tensor, indices: List[Tensor], offsets: "
              "List[Tensor])"
            : "forward(self, x: Tensor)";
    size_t required = 0;
    for (const c10::Argument& a : schema.arguments()) {
      if (!a.default_value().has_value()) ++required;
    }
    if (schema.arguments().size() < want || required > want) {
      return absl::InvalidArgumentError(absl::StrCat(
          options_.file_name, ": its forward is ", schema.name(), "(",
          schema.arguments().size() - 1, " arguments); ",
          options_.input == InputKind::kTabular ? "tabular" : "dense",
          " data calls ", signature, " (docs/models.md)"));
    }
    return absl::OkStatus();
  }

  void AddDense(const std::string& name, const torch::Tensor& value,
                bool buffer) {
    TensorInfo info;
    info.name = name;
    info.kind = TensorKind::kDense;
    info.shape = value.sizes().vec();
    info.buffer = buffer;
    // The shards hold zeros until a worker sets the file's values.
    info.initializer.set_kind(v1::Initializer::ZEROS);
    info.initial_values = ToVector(value.detach().to(torch::kFloat32));
    index_[name] = infos_.size();
    infos_.push_back(std::move(info));
    dense_.push_back(value);
  }

  static absl::Status Unknown(absl::string_view name) {
    return absl::NotFoundError(
        absl::StrCat("model has no tensor named '", name, "'"));
  }

  absl::StatusOr<size_t> DenseSlot(absl::string_view name) const {
    auto it = index_.find(name);
    if (it == index_.end()) return Unknown(name);
    if (it->second >= dense_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name,
          "' is an embedding table; load its rows with LoadEmbeddingRows"));
    }
    return it->second;
  }

  absl::Status CheckDense(const DenseBatch& batch) const {
    if (options_.input != InputKind::kDense) {
      return WrongInput(InputKind::kDense);
    }
    TESSERA_RETURN_IF_ERROR(ValidateDenseBatch(batch));
    if (batch.feature_dim != options_.input_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch has ", batch.feature_dim,
          " features per example, the model reads ", options_.input_dim));
    }
    return absl::OkStatus();
  }

  absl::Status CheckTabular(const TabularBatch& batch) const {
    if (options_.input != InputKind::kTabular) {
      return WrongInput(InputKind::kTabular);
    }
    TESSERA_RETURN_IF_ERROR(ValidateTabularBatch(batch));
    if (batch.num_dense != options_.input_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch has ", batch.num_dense, " dense features, the model reads ",
          options_.input_dim));
    }
    if (batch.fields.size() != tables_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch has ", batch.fields.size(), " categorical fields, the job ",
          tables_.size(), " embedding tables"));
    }
    for (size_t k = 0; k < tables_.size(); ++k) {
      const TabularBatch::Field& f = batch.fields[k];
      if (f.unique_index.size() != f.ids.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "field ", k, " has no table rows assigned (AssignTableRows)"));
      }
      if (tables_[k].ids != f.unique_rows) {
        return absl::FailedPreconditionError(absl::StrCat(
            "embedding '", tables_[k].name, "' holds rows for ",
            tables_[k].ids.size(),
            " ids that are not the batch's; call LoadEmbeddingRows first"));
      }
    }
    return absl::OkStatus();
  }

  // `eval` (scores filled by Run) with the step's figures.
  static absl::StatusOr<EvalResult> EvalOf(absl::StatusOr<StepResult> step,
                                           EvalResult* eval) {
    if (!step.ok()) return step.status();
    eval->loss = step->loss;
    eval->num_correct = step->num_correct;
    eval->num_examples = step->num_examples;
    return std::move(*eval);
  }

  // One forward (and backward) pass on `dense` xor `tabular`.
  absl::StatusOr<StepResult> Run(const DenseBatch* dense,
                                 const TabularBatch* tabular, bool backward,
                                 EvalResult* eval) {
    return GuardTorch(
        backward ? "train step" : "evaluation",
        [&]() -> absl::StatusOr<StepResult> {
          std::unique_ptr<torch::NoGradGuard> no_grad;
          if (!backward) no_grad = std::make_unique<torch::NoGradGuard>();
          module_.train(backward);
          int64_t batch_size = 0;
          std::vector<c10::IValue> inputs;
          std::vector<torch::Tensor> leaves;
          torch::Tensor labels;
          if (dense != nullptr) {
            batch_size = dense->batch_size;
            inputs.push_back(
                FloatTensor(dense->features, {batch_size, dense->feature_dim}));
            labels = Int64Tensor(dense->labels).to(torch::kFloat32);
          } else {
            batch_size = tabular->batch_size;
            inputs.push_back(
                FloatTensor(tabular->dense, {batch_size, tabular->num_dense}));
            c10::List<torch::Tensor> indices, offsets;
            for (size_t k = 0; k < tables_.size(); ++k) {
              const TabularBatch::Field& f = tabular->fields[k];
              indices.push_back(Int64Tensor(f.unique_index));
              offsets.push_back(Int64Tensor(f.offsets));
              torch::Tensor leaf =
                  tables_[k].rows.detach().requires_grad_(backward);
              tables_[k].module.setattr("weight", leaf);
              leaves.push_back(leaf);
            }
            inputs.push_back(indices);
            inputs.push_back(offsets);
            labels = FloatTensor(tabular->labels, {batch_size});
          }
          std::vector<torch::Tensor> before;
          if (backward) {
            for (size_t slot = 0; slot < dense_.size(); ++slot) {
              if (infos_[slot].buffer) {
                before.push_back(dense_[slot].detach().to(
                    torch::kFloat32, /*non_blocking=*/false, /*copy=*/true));
              } else {
                dense_[slot].mutable_grad().reset();
              }
            }
          }
          torch::Tensor out = module_.forward(inputs).toTensor();
          StepResult result;
          result.num_examples = batch_size;
          torch::Tensor loss;
          switch (options_.task) {
            case TaskKind::kBinary: {
              TORCH_CHECK(out.numel() == batch_size, "the model returned ",
                          out.sizes(), " for a batch of ", batch_size,
                          "; BCE wants [B] or [B, 1] logits");
              out = out.reshape({batch_size});
              TORCH_CHECK(
                  labels.ge(0).logical_and(labels.le(1)).all().item<bool>(),
                  "BCE labels must be in [0, 1]");
              loss = at::binary_cross_entropy_with_logits(out, labels);
              result.num_correct =
                  out.gt(0).eq(labels.gt(0.5)).sum().item<int64_t>();
              if (eval != nullptr) {
                eval->scores = ToVector(torch::sigmoid(out.detach()));
                eval->labels = ToVector(labels);
              }
              break;
            }
            case TaskKind::kClasses: {
              TORCH_CHECK(out.dim() == 2 && out.size(0) == batch_size,
                          "the model returned ", out.sizes(),
                          " for a batch of ", batch_size,
                          "; cross-entropy wants [B, C] logits");
              const torch::Tensor classes = labels.to(torch::kInt64);
              TORCH_CHECK(
                  classes.to(torch::kFloat32).eq(labels).all().item<bool>() &&
                      classes.ge(0).all().item<bool>() &&
                      classes.lt(out.size(1)).all().item<bool>(),
                  "labels must be class indices in [0, ", out.size(1), ")");
              loss = at::cross_entropy_loss(out, classes);
              result.num_correct =
                  out.argmax(1).eq(classes).sum().item<int64_t>();
              break;
            }
            case TaskKind::kRegression: {
              TORCH_CHECK(out.numel() == batch_size, "the model returned ",
                          out.sizes(), " for a batch of ", batch_size,
                          "; MSE wants [B] or [B, 1] values");
              out = out.reshape({batch_size});
              loss = at::mse_loss(out, labels);
              break;
            }
          }
          result.loss = loss.item<double>();
          if (!backward) return result;
          loss.backward();
          size_t b = 0;
          for (size_t slot = 0; slot < dense_.size(); ++slot) {
            TensorGradient gradient;
            gradient.name = infos_[slot].name;
            gradient.kind = TensorKind::kDense;
            if (infos_[slot].buffer) {
              gradient.values = ToVector(
                  before[b++] - dense_[slot].detach().to(torch::kFloat32));
            } else {
              const torch::Tensor& grad = dense_[slot].grad();
              if (grad.defined()) {
                SetGradient(grad, dense_gradient_views(), &gradient);
              } else {
                gradient.values.assign(dense_[slot].numel(), 0.0f);
              }
            }
            result.gradients.push_back(std::move(gradient));
          }
          for (size_t k = 0; k < leaves.size(); ++k) {
            TensorGradient gradient;
            gradient.name = tables_[k].name;
            gradient.kind = TensorKind::kEmbedding;
            const torch::Tensor& grad = leaves[k].grad();
            gradient.values =
                grad.defined()
                    ? ToVector(grad.is_sparse() ? grad.to_dense() : grad)
                    : std::vector<float>(leaves[k].numel(), 0.0f);
            result.gradients.push_back(std::move(gradient));
          }
          return result;
        });
  }

  const TorchScriptOptions options_;
  torch::jit::Module module_;
  std::vector<TensorInfo> infos_;  // Dense (parameters, buffers), tables.
  std::map<std::string, size_t, std::less<>> index_;  // Name -> infos_ slot.
  std::vector<torch::Tensor> dense_;  // Aliases of the module's tensors.
  DenseDoubleBuffer staging_;         // DenseStaging, by dense_ slot.
  std::vector<Table> tables_;         // Slot - dense_.size().
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadTorchScriptModel(
    const TorchScriptOptions& options) {
  return TorchScriptModel::Load(options);
}

}  // namespace worker
}  // namespace tessera

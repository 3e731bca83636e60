// The only libtorch translation unit of worker/model: networks, the mapping
// of their named_parameters() to parameter-server tensors, and the
// c10::Error -> absl::Status boundary.

#include "worker/model/model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <exception>
#include <functional>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"
#include "worker/model/torch_util.h"

namespace tessera {
namespace worker {
namespace {

v1::Initializer Zeros() {
  v1::Initializer init;
  init.set_kind(v1::Initializer::ZEROS);
  return init;
}

v1::Initializer Uniform(double low, double high) {
  v1::Initializer init;
  init.set_kind(v1::Initializer::UNIFORM);
  init.set_low(low);
  init.set_high(high);
  return init;
}

v1::Initializer Normal(double mean, double stddev) {
  v1::Initializer init;
  init.set_kind(v1::Initializer::NORMAL);
  init.set_mean(mean);
  init.set_stddev(stddev);
  return init;
}

// libtorch's default for Linear and Conv weights: kaiming_uniform_ with
// a = sqrt(5), i.e. uniform on +-sqrt(6 / ((1 + a^2) fan_in)) =
// +-1/sqrt(fan_in), resolved to its bounds so that a server needs no
// knowledge of fans or gains.
v1::Initializer KaimingUniform(int64_t fan_in) {
  const double a = std::sqrt(5.0);
  const double bound = std::sqrt(6.0 / ((1.0 + a * a) * fan_in));
  return Uniform(-bound, bound);
}

enum class LossKind { kSoftmaxCrossEntropy, kBinaryLogistic };

struct EmbeddingSpec {
  std::string name;
  int64_t dim = 1;
  uint64_t num_rows = 0;  // 0: unbounded.
  v1::Initializer initializer;
};

// A sparse batch as tensors, plus the loaded rows of each embedding table.
// The tensors may alias the batch's vectors: valid during one step only.
struct SparseInputs {
  int64_t batch_size = 0;
  torch::Tensor unique_index;       // [nnz] int64, into the rows.
  torch::Tensor example_index;      // [nnz] int64, the example of each nonzero.
  torch::Tensor values;             // [nnz] float.
  std::vector<torch::Tensor> rows;  // Per embedding table: [num_unique, dim].
};

// Sums value * row(feature) over each example's nonzeros: [batch_size, dim].
torch::Tensor SumPool(const torch::Tensor& rows, const SparseInputs& in) {
  torch::Tensor weighted =
      rows.index_select(0, in.unique_index) * in.values.unsqueeze(1);
  return torch::zeros({in.batch_size, rows.size(1)}, rows.options())
      .index_add(0, in.example_index, weighted);
}

// A network: a torch::nn::Module whose named_parameters() are the model's
// dense tensors on the parameter server, named as libtorch names them.
// Embedding tables are not module parameters (the server holds the table;
// a step sees only the batch's rows): a network declares them and reads
// their rows from SparseInputs::rows, in declaration order.
//
// Initializers follow libtorch's defaults without per-model code: a
// parameter "<prefix>weight" of 2 or more dimensions gets kaiming_uniform,
// "<prefix>bias" next to such a weight gets uniform on +-1/sqrt(fan_in);
// anything else gets zeros unless the network sets its own with
// SetInitializer. Adding a model = a subclass and a line in NewNetwork.
class Network : public torch::nn::Module {
 public:
  virtual InputKind input_kind() const = 0;
  virtual LossKind loss_kind() const = 0;

  // Dense input [batch, input_dim] -> logits [batch, num_classes].
  virtual torch::Tensor ForwardDense(const torch::Tensor& features) {
    TORCH_CHECK(false, "this network does not read dense batches");
    return torch::Tensor();
  }
  // Sparse input -> logits [batch].
  virtual torch::Tensor ForwardSparse(const SparseInputs& inputs) {
    TORCH_CHECK(false, "this network does not read sparse batches");
    return torch::Tensor();
  }

  const std::vector<EmbeddingSpec>& embeddings() const { return embeddings_; }

  v1::Initializer InitializerFor(const std::string& name,
                                 const torch::Tensor& value) const {
    auto it = initializers_.find(name);
    if (it != initializers_.end()) return it->second;
    const auto fan_in = [](const torch::Tensor& weight) {
      return weight.numel() / weight.size(0);
    };
    if (absl::EndsWith(name, "weight") && value.dim() >= 2) {
      return KaimingUniform(fan_in(value));
    }
    if (absl::EndsWith(name, "bias")) {
      const std::string weight_name =
          name.substr(0, name.size() - 4) + "weight";
      const auto params = named_parameters();
      const torch::Tensor* weight = params.find(weight_name);
      if (weight != nullptr && weight->dim() >= 2) {
        const double bound = 1.0 / std::sqrt(double(fan_in(*weight)));
        return Uniform(-bound, bound);
      }
    }
    return Zeros();
  }

 protected:
  void DeclareEmbedding(EmbeddingSpec spec) {
    embeddings_.push_back(std::move(spec));
  }
  void SetInitializer(const std::string& name, v1::Initializer spec) {
    initializers_[name] = std::move(spec);
  }

 private:
  std::vector<EmbeddingSpec> embeddings_;
  std::map<std::string, v1::Initializer> initializers_;
};

// Fully connected layers fc1..fcN with ReLU between them.
class Mlp : public Network {
 public:
  explicit Mlp(const ModelOptions& options) {
    int64_t in = options.input_dim;
    std::vector<int64_t> widths = options.hidden_sizes;
    widths.push_back(options.num_classes);
    for (size_t i = 0; i < widths.size(); ++i) {
      layers_.push_back(register_module(absl::StrCat("fc", i + 1),
                                        torch::nn::Linear(in, widths[i])));
      in = widths[i];
    }
  }

  InputKind input_kind() const override { return InputKind::kDense; }
  LossKind loss_kind() const override { return LossKind::kSoftmaxCrossEntropy; }

  torch::Tensor ForwardDense(const torch::Tensor& features) override {
    torch::Tensor h = features;
    for (size_t i = 0; i < layers_.size(); ++i) {
      h = layers_[i]->forward(h);
      if (i + 1 < layers_.size()) h = torch::relu(h);
    }
    return h;
  }

 private:
  std::vector<torch::nn::Linear> layers_;
};

// conv1 -> ReLU -> pool -> conv2 -> ReLU -> pool -> fc, on 28 x 28 images.
class Cnn : public Network {
 public:
  explicit Cnn(const ModelOptions& options)
      : conv1_(register_module(
            "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                           1, options.conv_channels[0], 5)
                                           .padding(2)))),
        conv2_(register_module(
            "conv2", torch::nn::Conv2d(
                         torch::nn::Conv2dOptions(options.conv_channels[0],
                                                  options.conv_channels[1], 5)
                             .padding(2)))),
        fc_(register_module("fc",
                            torch::nn::Linear(options.conv_channels[1] * 7 * 7,
                                              options.num_classes))) {}

  InputKind input_kind() const override { return InputKind::kDense; }
  LossKind loss_kind() const override { return LossKind::kSoftmaxCrossEntropy; }

  torch::Tensor ForwardDense(const torch::Tensor& features) override {
    torch::Tensor h = features.view({-1, 1, 28, 28});
    h = torch::max_pool2d(torch::relu(conv1_->forward(h)), 2);
    h = torch::max_pool2d(torch::relu(conv2_->forward(h)), 2);
    return fc_->forward(h.flatten(1));
  }

 private:
  torch::nn::Conv2d conv1_;
  torch::nn::Conv2d conv2_;
  torch::nn::Linear fc_;
};

// Logistic regression over sparse features: one embedding row per feature.
class LogReg : public Network {
 public:
  explicit LogReg(const ModelOptions& options) : dim_(options.embedding_dim) {
    // With dim 1 zeros is the classic start; wider rows feed a linear head
    // and need symmetry broken.
    DeclareEmbedding(EmbeddingSpec{"embedding", dim_, options.vocab_size,
                                   dim_ == 1 ? Zeros() : Normal(0.0, 0.01)});
    if (dim_ == 1) {
      bias_ = register_parameter("bias", torch::zeros({1}));
    } else {
      head_ = register_module("head", torch::nn::Linear(dim_, 1));
    }
  }

  InputKind input_kind() const override { return InputKind::kSparse; }
  LossKind loss_kind() const override { return LossKind::kBinaryLogistic; }

  torch::Tensor ForwardSparse(const SparseInputs& inputs) override {
    torch::Tensor pooled = SumPool(inputs.rows[0], inputs);
    if (dim_ == 1) return pooled.squeeze(1) + bias_;
    return head_->forward(pooled).squeeze(1);
  }

 private:
  const int64_t dim_;
  torch::Tensor bias_;
  torch::nn::Linear head_{nullptr};
};

absl::Status CheckPositive(absl::string_view what, int64_t value) {
  if (value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", value, ", want > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Network>> NewNetwork(
    const ModelOptions& options) {
  if (options.name == "mlp" || options.name == "cnn") {
    TESSERA_RETURN_IF_ERROR(CheckPositive("input_dim", options.input_dim));
    if (options.num_classes < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_classes is ", options.num_classes, ", want >= 2"));
    }
  }
  if (options.name == "mlp") {
    for (int64_t width : options.hidden_sizes) {
      TESSERA_RETURN_IF_ERROR(CheckPositive("a hidden size", width));
    }
    return std::shared_ptr<Network>(std::make_shared<Mlp>(options));
  }
  if (options.name == "cnn") {
    if (options.input_dim != 28 * 28) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cnn reads 28 x 28 images, but input_dim is ", options.input_dim));
    }
    if (options.conv_channels.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cnn needs 2 conv_channels, got ", options.conv_channels.size()));
    }
    for (int64_t channels : options.conv_channels) {
      TESSERA_RETURN_IF_ERROR(CheckPositive("a conv channel count", channels));
    }
    return std::shared_ptr<Network>(std::make_shared<Cnn>(options));
  }
  if (options.name == "logreg") {
    TESSERA_RETURN_IF_ERROR(
        CheckPositive("embedding_dim", options.embedding_dim));
    return std::shared_ptr<Network>(std::make_shared<LogReg>(options));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model '", options.name, "'; want mlp, cnn or logreg"));
}

// Fills `tensor` from `spec` with a generator seeded by spec.seed(). The
// worker's own copy only; the server initializes the tensor it holds with
// ps/spec/initializer.h from the same spec.
void Initialize(const v1::Initializer& spec, torch::Tensor& tensor) {
  torch::NoGradGuard no_grad;
  at::Generator generator = at::detail::createCPUGenerator(spec.seed());
  switch (spec.kind()) {
    case v1::Initializer::ZEROS:
      tensor.zero_();
      break;
    case v1::Initializer::CONSTANT:
      tensor.fill_(spec.value());
      break;
    case v1::Initializer::UNIFORM:
      tensor.uniform_(spec.low(), spec.high(), generator);
      break;
    case v1::Initializer::NORMAL:
      tensor.normal_(spec.mean(), spec.stddev(), generator);
      break;
    default:
      TORCH_CHECK(false, "initializer ",
                  v1::Initializer::Kind_Name(spec.kind()),
                  " is not used by the built-in models");
  }
}

}  // namespace

int64_t TensorInfo::num_elements() const {
  if (kind == TensorKind::kEmbedding) return shape.empty() ? 0 : shape.back();
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

class BuiltinModel final : public Model {
 public:
  BuiltinModel(const ModelOptions& options, std::shared_ptr<Network> network)
      : options_(options), network_(std::move(network)) {
    uint64_t slot = 0;
    for (const auto& item : network_->named_parameters()) {
      TensorInfo info;
      info.name = item.key();
      info.kind = TensorKind::kDense;
      info.shape = item.value().sizes().vec();
      info.initializer = network_->InitializerFor(item.key(), item.value());
      info.initializer.set_seed(TensorSeed(options.seed, info.name));
      torch::Tensor param = item.value();
      Initialize(info.initializer, param);
      dense_.push_back(param);
      index_[info.name] = slot++;
      infos_.push_back(std::move(info));
    }
    for (const EmbeddingSpec& spec : network_->embeddings()) {
      TensorInfo info;
      info.name = spec.name;
      info.kind = TensorKind::kEmbedding;
      info.shape = {static_cast<int64_t>(spec.num_rows), spec.dim};
      info.initializer = spec.initializer;
      info.initializer.set_seed(TensorSeed(options.seed, info.name));
      EmbeddingSlot embedding;
      embedding.dim = spec.dim;
      embedding.rows = torch::zeros({0, spec.dim});
      embeddings_.push_back(std::move(embedding));
      index_[info.name] = slot++;
      infos_.push_back(std::move(info));
    }
  }

  using Model::Evaluate;
  using Model::TrainStep;

  InputKind input_kind() const override { return network_->input_kind(); }
  TaskKind task_kind() const override {
    return network_->loss_kind() == LossKind::kBinaryLogistic
               ? TaskKind::kBinary
               : TaskKind::kClasses;
  }
  const std::vector<TensorInfo>& Parameters() const override { return infos_; }

  absl::StatusOr<StepResult> TrainStep(const DenseBatch& batch) override {
    return Run(batch, /*backward=*/true, nullptr);
  }
  absl::StatusOr<StepResult> TrainStep(const SparseBatch& batch) override {
    return Run(batch, /*backward=*/true, nullptr);
  }
  absl::StatusOr<EvalResult> Evaluate(const DenseBatch& batch) override {
    return EvaluateBatch(batch);
  }
  absl::StatusOr<EvalResult> Evaluate(const SparseBatch& batch) override {
    return EvaluateBatch(batch);
  }

  // Forward only; Run fills the scores of a binary task.
  template <typename BatchT>
  absl::StatusOr<EvalResult> EvaluateBatch(const BatchT& batch) {
    EvalResult eval;
    TESSERA_ASSIGN_OR_RETURN(StepResult step,
                             Run(batch, /*backward=*/false, &eval));
    eval.loss = step.loss;
    eval.num_correct = step.num_correct;
    eval.num_examples = step.num_examples;
    return eval;
  }

  absl::Status LoadDense(absl::string_view name,
                         absl::Span<const float> values) override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    const TensorInfo& info = infos_[slot];
    if (static_cast<int64_t>(values.size()) != info.num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' of shape [", absl::StrJoin(info.shape, ", "),
          "] has ", info.num_elements(), " values, got ", values.size()));
    }
    return GuardTorch("loading a dense tensor", [&]() -> absl::Status {
      torch::NoGradGuard no_grad;
      dense_[slot].copy_(FloatTensor(values, dense_[slot].sizes()));
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
    if (it == index_.end()) return UnknownTensor(name);
    if (infos_[it->second].kind != TensorKind::kEmbedding) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is dense; load it with LoadDense"));
    }
    EmbeddingSlot& embedding = embeddings_[it->second - dense_.size()];
    const int64_t want = static_cast<int64_t>(ids.size()) * embedding.dim;
    if (static_cast<int64_t>(rows.size()) != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "embedding '", name, "': ", ids.size(), " ids of dim ", embedding.dim,
          " need ", want, " values, got ", rows.size()));
    }
    return GuardTorch("loading embedding rows", [&]() -> absl::Status {
      embedding.ids.assign(ids.begin(), ids.end());
      embedding.rows =
          FloatTensor(rows, {static_cast<int64_t>(ids.size()), embedding.dim})
              .clone();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<float>> DenseValues(
      absl::string_view name) const override {
    TESSERA_ASSIGN_OR_RETURN(const size_t slot, DenseSlot(name));
    return GuardTorch("reading a dense tensor",
                      [&]() -> absl::StatusOr<std::vector<float>> {
                        return ToVector(dense_[slot].detach());
                      });
  }

  absl::StatusOr<StepResult> Run(const DenseBatch& batch, bool backward,
                                 EvalResult* eval) {
    TESSERA_RETURN_IF_ERROR(CheckKind(InputKind::kDense));
    TESSERA_RETURN_IF_ERROR(ValidateDenseBatch(batch));
    if (batch.feature_dim != options_.input_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch has ", batch.feature_dim, " features per example, model '",
          options_.name, "' reads ", options_.input_dim));
    }
    for (int i = 0; i < batch.batch_size; ++i) {
      if (batch.labels[i] < 0 || batch.labels[i] >= options_.num_classes) {
        return absl::InvalidArgumentError(
            absl::StrCat("label ", batch.labels[i], " of example ", i,
                         " is outside [0, ", options_.num_classes, ")"));
      }
    }
    return GuardTorch(
        backward ? "train step" : "evaluation",
        [&]() -> absl::StatusOr<StepResult> {
          std::unique_ptr<torch::NoGradGuard> no_grad;
          if (!backward) no_grad = std::make_unique<torch::NoGradGuard>();
          const torch::Tensor features = FloatTensor(
              batch.features, {batch.batch_size, batch.feature_dim});
          const torch::Tensor labels = Int64Tensor(batch.labels);
          ClearGradients();
          const torch::Tensor logits = network_->ForwardDense(features);
          const torch::Tensor loss =
              torch::nn::functional::cross_entropy(logits, labels);
          StepResult result;
          result.num_examples = batch.batch_size;
          result.num_correct =
              logits.argmax(1).eq(labels).sum().item<int64_t>();
          result.loss = loss.item<double>();
          if (backward) {
            loss.backward();
            CollectDenseGradients(&result);
          }
          return result;
        });
  }

  absl::StatusOr<StepResult> Run(const SparseBatch& batch, bool backward,
                                 EvalResult* eval) {
    TESSERA_RETURN_IF_ERROR(CheckKind(InputKind::kSparse));
    TESSERA_RETURN_IF_ERROR(ValidateSparseBatch(batch));
    for (size_t e = 0; e < embeddings_.size(); ++e) {
      if (embeddings_[e].ids != batch.unique_ids) {
        return absl::FailedPreconditionError(
            absl::StrCat("embedding '", infos_[dense_.size() + e].name,
                         "' holds rows for ", embeddings_[e].ids.size(),
                         " ids that are not the batch's unique_ids (",
                         batch.unique_ids.size(),
                         " ids); call LoadEmbeddingRows with them first"));
      }
    }
    return GuardTorch(
        backward ? "train step" : "evaluation",
        [&]() -> absl::StatusOr<StepResult> {
          std::unique_ptr<torch::NoGradGuard> no_grad;
          if (!backward) no_grad = std::make_unique<torch::NoGradGuard>();
          std::vector<int64_t> example_index(batch.num_nonzeros());
          for (int i = 0; i < batch.batch_size; ++i) {
            for (int64_t j = batch.row_offsets[i]; j < batch.row_offsets[i + 1];
                 ++j) {
              example_index[j] = i;
            }
          }
          SparseInputs inputs;
          inputs.batch_size = batch.batch_size;
          inputs.unique_index = Int64Tensor(batch.unique_index);
          inputs.example_index = Int64Tensor(example_index);
          inputs.values = FloatTensor(batch.values, {batch.num_nonzeros()});
          for (EmbeddingSlot& embedding : embeddings_) {
            // A fresh leaf per step, so its gradient is this step's alone.
            inputs.rows.push_back(
                embedding.rows.detach().requires_grad_(backward));
          }
          const torch::Tensor labels =
              FloatTensor(batch.labels, {batch.batch_size});
          ClearGradients();
          const torch::Tensor logits = network_->ForwardSparse(inputs);
          const torch::Tensor loss =
              torch::nn::functional::binary_cross_entropy_with_logits(logits,
                                                                      labels);
          StepResult result;
          result.num_examples = batch.batch_size;
          result.num_correct =
              logits.gt(0).eq(labels.gt(0.5)).sum().item<int64_t>();
          result.loss = loss.item<double>();
          if (eval != nullptr) {
            eval->scores = ToVector(torch::sigmoid(logits.detach()));
            eval->labels = batch.labels;
          }
          if (backward) {
            loss.backward();
            CollectDenseGradients(&result);
            for (size_t e = 0; e < embeddings_.size(); ++e) {
              TensorGradient gradient;
              gradient.name = infos_[dense_.size() + e].name;
              gradient.kind = TensorKind::kEmbedding;
              const torch::Tensor& grad = inputs.rows[e].grad();
              gradient.values =
                  grad.defined()
                      ? ToVector(grad)
                      : std::vector<float>(inputs.rows[e].numel(), 0.0f);
              result.gradients.push_back(std::move(gradient));
            }
          }
          return result;
        });
  }

 private:
  struct EmbeddingSlot {
    int64_t dim = 1;
    std::vector<uint64_t> ids;  // Of the loaded rows.
    torch::Tensor rows;         // [ids.size(), dim].
  };

  static absl::Status UnknownTensor(absl::string_view name) {
    return absl::NotFoundError(
        absl::StrCat("model has no tensor named '", name, "'"));
  }

  absl::StatusOr<size_t> DenseSlot(absl::string_view name) const {
    auto it = index_.find(name);
    if (it == index_.end()) return UnknownTensor(name);
    if (infos_[it->second].kind != TensorKind::kDense) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name,
          "' is an embedding table; load its rows with LoadEmbeddingRows"));
    }
    return it->second;
  }

  absl::Status CheckKind(InputKind kind) const {
    if (network_->input_kind() == kind) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", options_.name, "' reads ",
        network_->input_kind() == InputKind::kDense ? "dense" : "sparse",
        " batches"));
  }

  void ClearGradients() {
    for (torch::Tensor& param : dense_) param.mutable_grad().reset();
  }

  // Appends the gradients of the dense tensors, in Parameters() order.
  void CollectDenseGradients(StepResult* result) const {
    for (size_t slot = 0; slot < dense_.size(); ++slot) {
      TensorGradient gradient;
      gradient.name = infos_[slot].name;
      gradient.kind = TensorKind::kDense;
      const torch::Tensor& grad = dense_[slot].grad();
      if (grad.defined()) {
        SetGradient(grad, dense_gradient_views(), &gradient);
      } else {
        gradient.values.assign(dense_[slot].numel(), 0.0f);
      }
      result->gradients.push_back(std::move(gradient));
    }
  }

  const ModelOptions options_;
  const std::shared_ptr<Network> network_;
  std::vector<TensorInfo> infos_;  // Dense tensors first, then embeddings.
  std::map<std::string, size_t, std::less<>> index_;  // Name -> infos_ slot.
  std::vector<torch::Tensor> dense_;       // The network's parameters, by slot.
  std::vector<EmbeddingSlot> embeddings_;  // Slot - dense_.size().
  DenseDoubleBuffer staging_;              // DenseStaging, by dense_ slot.
};

absl::StatusOr<std::unique_ptr<Model>> Model::Create(
    const ModelOptions& options) {
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads is ", options.num_threads, ", want >= 0"));
  }
  return GuardTorch(
      "creating a model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
        if (options.num_threads > 0) SetIntraOpThreads(options.num_threads);
        TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Network> network,
                                 NewNetwork(options));
        return std::unique_ptr<Model>(
            std::make_unique<BuiltinModel>(options, std::move(network)));
      });
}

absl::Status Model::WrongInput(InputKind kind) const {
  const auto name = [](InputKind k) {
    switch (k) {
      case InputKind::kDense:
        return "dense";
      case InputKind::kSparse:
        return "sparse";
      case InputKind::kTabular:
        return "tabular";
    }
    return "unknown";
  };
  return absl::InvalidArgumentError(absl::StrCat(
      "the model reads ", name(input_kind()), " batches, not ", name(kind)));
}

absl::StatusOr<StepResult> Model::TrainStep(const DenseBatch&) {
  return WrongInput(InputKind::kDense);
}
absl::StatusOr<StepResult> Model::TrainStep(const SparseBatch&) {
  return WrongInput(InputKind::kSparse);
}
absl::StatusOr<StepResult> Model::TrainStep(const TabularBatch&) {
  return WrongInput(InputKind::kTabular);
}
absl::StatusOr<EvalResult> Model::Evaluate(const DenseBatch&) {
  return WrongInput(InputKind::kDense);
}
absl::StatusOr<EvalResult> Model::Evaluate(const SparseBatch&) {
  return WrongInput(InputKind::kSparse);
}
absl::StatusOr<EvalResult> Model::Evaluate(const TabularBatch&) {
  return WrongInput(InputKind::kTabular);
}

}  // namespace worker
}  // namespace tessera

#ifndef TESSERA_WORKER_MODEL_MODEL_H_
#define TESSERA_WORKER_MODEL_MODEL_H_

// The models a worker trains: libtorch networks whose parameters live on the
// parameter server. This header is libtorch-free (the implementation is
// hidden behind a pimpl), so the training loop and tools include it without
// the cost of <torch/torch.h>.
//
// One training step of a worker:
//
//   for (const TensorInfo& t : model->Parameters()) ...   // register on PS
//   model->LoadDense("fc1.weight", pulled_values);         // each dense tensor
//   model->LoadEmbeddingRows("embedding", batch.unique_ids, pulled_rows);
//   TESSERA_ASSIGN_OR_RETURN(StepResult step, model->TrainStep(batch));
//   push(step.gradients);                                  // PS applies
//   optimizer
//
// There is no optimizer here: TrainStep only computes gradients.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tessera/v1/tensor.pb.h"
#include "worker/data/batch.h"
#include "worker/data/tabular_batch.h"

namespace tessera {
namespace worker {

// How the parameter server should initialize a tensor.
//

enum class TensorKind {
  kDense,      // A whole tensor, pulled and pushed in full.
  kEmbedding,  // A table of rows addressed by feature id; a batch pulls and
               // pushes only the rows of its SparseBatch::unique_ids.
};

// A parameter the server must hold.
struct TensorInfo {
  // The libtorch parameter name, e.g. "fc1.weight".
  std::string name;
  TensorKind kind = TensorKind::kDense;
  // Dense: the tensor's shape (row-major values). Embedding: {num_rows, dim},
  // where num_rows == 0 means unbounded (any uint64 id; rows are created on
  // first touch).
  std::vector<int64_t> shape;
  // How the server initializes it (the one initializer type of the system:
  // proto/tessera/v1/tensor.proto), with the tensor's own seed.
  v1::Initializer initializer;
  // Dense tensors of a TorchScript model: the file's values (row-major),
  // which the first worker sets on the shards with PsClient::InitializeDense.
  // Empty: the shards' initializer is the initial value.
  std::vector<float> initial_values;
  // A module buffer (e.g. BatchNorm's running_mean), not a parameter: its
  // "gradient" is the value it had before the step minus the value after,
  // so that SGD with learning rate 1 applies the step's change.
  bool buffer = false;
  // Embedding tables of tabular models: the categorical field it serves.
  int field = -1;
  // A TorchScript parameter saved with requires_grad False: held on the
  // shards with the file's values (so the pulled model has it), but never
  // pushed, and not pulled either (its values never change).
  bool frozen = false;

  // Dense: number of values. Embedding: values per row (dim).
  int64_t num_elements() const;
};

// What TrainStep returns. Gradients are of the batch-mean loss.
struct TensorGradient {
  std::string name;
  TensorKind kind = TensorKind::kDense;
  // Dense: num_elements() values, row-major. Embedding: one row of `dim`
  // values per entry of the batch's unique_ids, in that order.
  std::vector<float> values;
  // With Model::set_dense_gradient_views(true), a dense gradient may come
  // as `view` instead, over memory that `owner` keeps alive (libtorch's
  // gradient tensor; no copy), with `values` empty.
  std::shared_ptr<const void> owner;
  absl::Span<const float> view;

  // The gradient, wherever it is.
  absl::Span<const float> data() const {
    return owner != nullptr ? view : absl::MakeConstSpan(values);
  }
};

struct StepResult {
  double loss = 0;          // Mean over the batch.
  int64_t num_correct = 0;  // Examples whose prediction matches the label.
  int64_t num_examples = 0;
  std::vector<TensorGradient> gradients;  // One per Parameters(), same order.
};

struct EvalResult {
  double loss = 0;  // Mean over the batch.
  int64_t num_correct = 0;
  int64_t num_examples = 0;
  // Binary tasks: the predicted probability and the label of each example,
  // for AUC (worker/data/task_metrics.h). Empty otherwise.
  std::vector<float> scores;
  std::vector<float> labels;
};

enum class InputKind { kDense, kSparse, kTabular };

// What a model predicts, which decides its loss and metrics.
enum class TaskKind {
  kClasses,     // softmax cross-entropy over class logits; accuracy
  kBinary,      // BCE with logits; accuracy at 0.5, AUC, log loss
  kRegression,  // mean squared error
};

struct ModelOptions {
  // "mlp" and "cnn" classify DenseBatches (softmax cross-entropy); "logreg"
  // is binary logistic regression on SparseBatches (BCE with logits).
  std::string name = "mlp";

  // mlp, cnn: features per example and classes. The cnn reads its input as
  // one 28 x 28 channel, so it needs input_dim == 784.
  int64_t input_dim = 784;
  int64_t num_classes = 10;
  // mlp: widths of the hidden layers (ReLU); layers are fc1, fc2, ...
  std::vector<int64_t> hidden_sizes = {256, 128};
  // cnn: output channels of its two 5 x 5 convolutions (each followed by
  // ReLU and 2 x 2 max-pooling), then one fully connected layer.
  std::vector<int64_t> conv_channels = {8, 16};

  // logreg: logit = sum over the example's features of value * row(id),
  // plus a bias. With embedding_dim 1 the row is the feature's weight; with
  // embedding_dim d > 1 the pooled d-vector goes through a Linear(d, 1).
  int64_t embedding_dim = 1;
  // logreg: rows of the embedding table; 0 = unbounded.
  uint64_t vocab_size = 0;

  // Seeds the initializer specs and the model's own initial values.
  uint64_t seed = 0;
  // If > 0, libtorch's intra-op threads and OpenBLAS's pool are set to
  // num_threads at creation. Caveat: this is process-wide, so the last model
  // created wins.
  int num_threads = 0;
};

// A network and its current parameter values: a built-in network (Create)
// or a TorchScript module (worker/model/torchscript_model.h). Thread-
// compatible: a Model is used by one thread at a time; separate Models may
// run concurrently.
class Model {
 public:
  // A built-in network. InvalidArgument for an unknown name or bad options.
  static absl::StatusOr<std::unique_ptr<Model>> Create(
      const ModelOptions& options);

  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  virtual InputKind input_kind() const = 0;
  virtual TaskKind task_kind() const = 0;

  // Every tensor the parameter server holds for this model: the dense
  // tensors (parameters, then buffers) in the module's order, then the
  // embedding tables. Stable for the life of the model.
  virtual const std::vector<TensorInfo>& Parameters() const = 0;

  // Sets dense tensor `name` to `values` (row-major). NotFound for an
  // unknown name; InvalidArgument for an embedding table or a size other
  // than num_elements().
  //
  // A new Model starts from its initial values (drawn from its initializer
  // specs, seeded by options.seed, or a TorchScript file's own), so it can
  // train locally without loading anything.
  virtual absl::Status LoadDense(absl::string_view name,
                                 absl::Span<const float> values) = 0;

  // Loads dense tensor `name` without a copy. DenseStaging returns memory
  // for num_elements() floats that the caller fills (a pull writes into it,
  // from another thread if it likes) while the model goes on training with
  // its current values; CommitDense then makes what was written the current
  // values. The memory stays valid while the model lives; after a commit,
  // the next DenseStaging may hand out the old values' memory. One staging
  // per tensor at a time, committed from the thread that trains. NotFound /
  // InvalidArgument as for LoadDense. The built-in and TorchScript models
  // swap two tensors' memory (DenseDoubleBuffer in torch_util.h).
  virtual absl::StatusOr<absl::Span<float>> DenseStaging(
      absl::string_view name) = 0;
  virtual absl::Status CommitDense(absl::string_view name) = 0;

  // Whether TrainStep may hand dense gradients out as views of libtorch's
  // gradient tensors (TensorGradient::owner, view) instead of copying them
  // into `values`. Off by default; models without tensors of their own
  // ignore it.
  void set_dense_gradient_views(bool on) { dense_gradient_views_ = on; }
  bool dense_gradient_views() const { return dense_gradient_views_; }

  // Sets the rows of embedding table `name` that the next steps use: row i
  // (values [i * dim, (i + 1) * dim)) belongs to ids[i]. `ids` must equal
  // the rows the batches passed to TrainStep/Evaluate use
  // (SparseBatch::unique_ids; TabularBatch::Field::unique_rows of the
  // table's field). NotFound for an unknown name; InvalidArgument for a
  // dense tensor or rows.size() != ids.size() * dim.
  virtual absl::Status LoadEmbeddingRows(absl::string_view name,
                                         absl::Span<const uint64_t> ids,
                                         absl::Span<const float> rows) = 0;

  // The current values of dense tensor `name` (for tests, checkpoints and
  // seeding the server). NotFound / InvalidArgument as for LoadDense.
  virtual absl::StatusOr<std::vector<float>> DenseValues(
      absl::string_view name) const = 0;

  // Forward and backward on `batch`; returns the mean loss, the number of
  // correct predictions and the gradients. Changes no parameter (a
  // TorchScript model's buffers do change, as in PyTorch's train mode).
  // InvalidArgument if the batch is malformed, of the wrong kind for this
  // model, has the wrong feature_dim, or a label outside [0, num_classes).
  // FailedPrecondition if the loaded embedding rows are not those of the
  // batch. Internal if libtorch fails.
  virtual absl::StatusOr<StepResult> TrainStep(const DenseBatch& batch);
  virtual absl::StatusOr<StepResult> TrainStep(const SparseBatch& batch);
  virtual absl::StatusOr<StepResult> TrainStep(const TabularBatch& batch);

  // Forward only (no gradients; eval mode); same errors as TrainStep.
  virtual absl::StatusOr<EvalResult> Evaluate(const DenseBatch& batch);
  virtual absl::StatusOr<EvalResult> Evaluate(const SparseBatch& batch);
  virtual absl::StatusOr<EvalResult> Evaluate(const TabularBatch& batch);

 protected:
  Model() = default;
  // InvalidArgument: this model does not read `kind` batches.
  absl::Status WrongInput(InputKind kind) const;

 private:
  bool dense_gradient_views_ = false;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_MODEL_MODEL_H_

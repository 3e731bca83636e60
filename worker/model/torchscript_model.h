#ifndef TESSERA_WORKER_MODEL_TORCHSCRIPT_MODEL_H_
#define TESSERA_WORKER_MODEL_TORCHSCRIPT_MODEL_H_

// A user's own PyTorch model, saved with torch.jit.save, trained as a Model
// whose parameters live on the parameter server (docs/models.md).
//
// The forward contract:
//   - dense input (e.g. Fashion-MNIST): forward(x: Tensor) -> Tensor, x of
//     [B, input_dim] float32;
//   - tabular input (Criteo, CSV): forward(dense: Tensor, indices:
//     List[Tensor], offsets: List[Tensor]) -> Tensor, dense [B, num_dense]
//     float32, and for categorical field k the int64 bags indices[k] and
//     offsets[k] ([B]) in nn.EmbeddingBag's (input, offsets) form;
//   - the output is [B] or [B, 1] logits (BCE with logits), [B] or [B, 1]
//     values (MSE), or [B, C] logits (cross-entropy).
//
// Every parameter of the module is a dense tensor on the parameter server
// under its PyTorch name, starting from the file's values; floating-point
// and integer buffers (BatchNorm's running statistics) too, updated by the
// change a step made to them. The embedding modules named in `tables` are
// different: their weight "<module>.weight" is a table on the parameter
// server (of `rows` rows, or unbounded), and each step the module's weight is
// replaced by the batch's rows only, with indices[k] remapped to them. The
// file's weight for such a module only gives the row width.
//
// Header without libtorch.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tessera/v1/tensor.pb.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

struct TorchScriptTable {
  // The module's path, e.g. "emb_l.0": an nn.EmbeddingBag or nn.Embedding
  // (anything with a 2-d "weight" parameter indexed by row) without
  // padding_idx.
  std::string module;
  int64_t rows = 0;  // 0: unbounded (rows are 64-bit ids).
  // The rows' initial values; its seed is set from the model seed.
  v1::Initializer initializer;
};

struct TorchScriptOptions {
  // The bytes of the file written by torch.jit.save.
  std::string file;
  // For messages, e.g. the file's path.
  std::string file_name = "model";
  TaskKind task = TaskKind::kBinary;
  InputKind input = InputKind::kTabular;  // kDense or kTabular
  // kDense: features per example. kTabular: dense features per example.
  int64_t input_dim = 0;
  // kTabular: the table serving each categorical field, in field order.
  std::vector<TorchScriptTable> tables;
  uint64_t seed = 0;
  int num_threads = 0;  // > 0: libtorch and OpenBLAS threads (process-wide).
};

// Loads the module and maps its tensors. InvalidArgument if the file does
// not load, a table's module is missing or has no 2-d weight, or the
// options are inconsistent; the message names the module or file.
absl::StatusOr<std::unique_ptr<Model>> LoadTorchScriptModel(
    const TorchScriptOptions& options);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_MODEL_TORCHSCRIPT_MODEL_H_

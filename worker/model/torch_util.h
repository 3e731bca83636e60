#ifndef TESSERA_WORKER_MODEL_TORCH_UTIL_H_
#define TESSERA_WORKER_MODEL_TORCH_UTIL_H_

// Helpers shared by worker/model's libtorch translation units: the
// exception -> Status boundary, tensor views of spans, and tensor seeds.
// Package-private (includes libtorch).

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/script.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ps/spec/placement.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

// Runs `f`, turning any exception libtorch throws into an Internal status:
// no exception leaves worker/model.
template <typename F>
auto GuardTorch(absl::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what, ": libtorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

// The seed of a tensor's initial values: the model seed mixed with the
// tensor name's stable hash (ps/spec/placement.h), so nearby model seeds
// give unrelated seeds and every process and build computes the same.
inline uint64_t TensorSeed(uint64_t model_seed, absl::string_view name) {
  return Mix64(model_seed ^
               StableHash(std::string_view(name.data(), name.size())));
}

// Model::DenseStaging and CommitDense without a copy: a spare tensor per
// dense slot, which a pull fills while the model trains with the live one.
// Commit swaps the two tensors' memory (Tensor::set_data, PyTorch's
// `param.data = spare`): the module keeps its parameter objects, now over the
// staged values, and the old values' memory becomes the spare. A tensor that
// is not contiguous float32 is staged in a plain buffer and copied in.
class DenseDoubleBuffer {
 public:
  // Memory for the next values of `live`, the tensor of `slot`.
  absl::StatusOr<absl::Span<float>> Staging(const torch::Tensor& live,
                                            size_t slot) {
    return GuardTorch("staging a dense tensor",
                      [&]() -> absl::StatusOr<absl::Span<float>> {
                        return StagingOrThrow(live, slot);
                      });
  }

  // Makes the staged values those of `live`.
  absl::Status Commit(torch::Tensor& live, size_t slot) {
    return GuardTorch("committing a dense tensor", [&]() -> absl::Status {
      return CommitOrThrow(live, slot);
    });
  }

 private:
  absl::Span<float> StagingOrThrow(const torch::Tensor& live, size_t slot) {
    if (slot >= spares_.size()) spares_.resize(slot + 1);
    Spare& s = spares_[slot];
    const bool swappable = live.scalar_type() == torch::kFloat32 &&
                           live.is_contiguous() && !live.is_sparse();
    if (!swappable) {
      s.tensor = torch::Tensor();
      s.buffer.resize(live.numel());
      return absl::MakeSpan(s.buffer);
    }
    if (!s.tensor.defined() || s.tensor.sizes() != live.sizes()) {
      s.tensor =
          torch::empty(live.sizes(), live.options().requires_grad(false));
    }
    return absl::MakeSpan(s.tensor.data_ptr<float>(), s.tensor.numel());
  }

  absl::Status CommitOrThrow(torch::Tensor& live, size_t slot) {
    if (slot >= spares_.size()) {
      return absl::FailedPreconditionError("dense tensor was not staged");
    }
    Spare& s = spares_[slot];
    torch::NoGradGuard no_grad;
    if (!s.tensor.defined()) {
      if (static_cast<int64_t>(s.buffer.size()) != live.numel()) {
        return absl::FailedPreconditionError("dense tensor was not staged");
      }
      live.copy_(
          torch::from_blob(s.buffer.data(), live.sizes(), torch::kFloat32));
      return absl::OkStatus();
    }
    torch::Tensor old = live.variable_data();  // Shares the old memory.
    live.set_data(s.tensor);
    s.tensor = std::move(old);
    return absl::OkStatus();
  }

  struct Spare {
    torch::Tensor tensor;       // Swappable tensors.
    std::vector<float> buffer;  // Others.
  };
  std::vector<Spare> spares_;
};

// Sets libtorch's intra-op threads and, when libtorch computes with
// OpenBLAS, OpenBLAS's own pool to `n`: libtorch's setting does not reach it,
// and its idle threads (one per core) spin. Measured on the DLRM example, 1
// shard + 1 worker on 2 cores: the worker process used 57.6 CPU seconds for
// a 32 s epoch with OpenBLAS's default, 32 with one thread, leaving the
// shard its core.
inline void SetIntraOpThreads(int n) {
  at::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(
          dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(n);
  }
}

inline torch::Tensor FloatTensor(absl::Span<const float> values,
                                 torch::IntArrayRef shape) {
  return torch::from_blob(const_cast<float*>(values.data()), shape,
                          torch::kFloat32);
}

inline torch::Tensor Int64Tensor(absl::Span<const int64_t> values) {
  return torch::from_blob(const_cast<int64_t*>(values.data()),
                          {static_cast<int64_t>(values.size())}, torch::kInt64);
}

inline std::vector<float> ToVector(const torch::Tensor& tensor) {
  const torch::Tensor flat = tensor.contiguous();
  const float* data = flat.data_ptr<float>();
  return std::vector<float>(data, data + flat.numel());
}

// Sets `gradient` to `grad`'s values: a view of the tensor that keeps it
// alive when `view` is set and the tensor is dense float32 (libtorch makes a
// new gradient tensor each step once the old one is reset, so the view's
// memory never changes), a copy otherwise.
inline void SetGradient(const torch::Tensor& grad, bool view,
                        TensorGradient* gradient) {
  torch::Tensor dense = grad.is_sparse() ? grad.to_dense() : grad;
  if (!view || dense.scalar_type() != torch::kFloat32) {
    gradient->values = ToVector(dense.to(torch::kFloat32));
    return;
  }
  auto held = std::make_shared<torch::Tensor>(dense.detach().contiguous());
  gradient->view = absl::MakeConstSpan(held->data_ptr<float>(), held->numel());
  gradient->owner = std::move(held);
}

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_MODEL_TORCH_UTIL_H_

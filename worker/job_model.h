#ifndef TESSERA_WORKER_JOB_MODEL_H_
#define TESSERA_WORKER_JOB_MODEL_H_

// The model a job trains: a built-in network (ModelConfig.name "mlp",
// "cnn", "logreg") or the user's TorchScript module ("torchscript", whose
// file the coordinator hands out), with the input its dataset gives.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tessera/v1/job.pb.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

// The input shape of `dataset`: its kind, features per example (dense) or
// dense features (tabular), and categorical fields (tabular).
struct DatasetShape {
  InputKind kind = InputKind::kDense;
  int64_t input_dim = 0;
  int num_fields = 0;
};
absl::StatusOr<DatasetShape> ShapeOf(const v1::DatasetConfig& dataset);

// `model_file` is the contents of the job's TorchScript file (ignored for a
// built-in model). `threads` > 0 sets libtorch's intra-op threads.
// InvalidArgument naming what does not fit (an unknown model, a TorchScript
// model without a file, a table count other than the data's categorical
// fields).
absl::StatusOr<std::unique_ptr<Model>> CreateJobModel(
    const v1::JobConfig& job, const std::string& model_file, int threads);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_JOB_MODEL_H_

#ifndef TESSERA_WORKER_MODEL_SPECS_H_
#define TESSERA_WORKER_MODEL_SPECS_H_

// What a model asks of the parameter server: the spec (tensor.proto) of each
// of its tensors, with the optimizer the job gives that tensor. Pure
// functions; thread-safe.

#include <vector>

#include "tessera/v1/job.pb.h"
#include "tessera/v1/tensor.pb.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

// The parameter-server spec of a model tensor, with `optimizer`.
v1::TensorSpec ToTensorSpec(const TensorInfo& info,
                            const v1::OptimizerConfig& optimizer);

// The optimizer the shards apply to `t`: SGD with learning rate 1 for a
// buffer (its pushes are the changes a step made), a table's own
// (EmbeddingTableConfig.optimizer) if set, else the job's for its name
// (ps/common/job_config.h, OptimizerFor).
v1::OptimizerConfig OptimizerOf(const TensorInfo& t, const v1::JobConfig& job);

// Every tensor of `model`, in the model's order, each with OptimizerOf, and
// a table with its EmbeddingTableConfig.memory_policy if it has one (a
// tabular model's by field, logreg's "embedding" by name).
std::vector<v1::TensorSpec> ModelSpecs(const Model& model,
                                       const v1::JobConfig& job);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_MODEL_SPECS_H_

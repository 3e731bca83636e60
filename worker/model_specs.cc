#include "worker/model_specs.h"

#include "ps/common/job_config.h"

namespace tessera {
namespace worker {

v1::TensorSpec ToTensorSpec(const TensorInfo& info,
                            const v1::OptimizerConfig& optimizer) {
  v1::TensorSpec spec;
  spec.set_name(info.name);
  for (int64_t d : info.shape) spec.add_shape(d);
  spec.set_dtype(v1::FLOAT32);
  spec.set_kind(info.kind == TensorKind::kEmbedding ? v1::TensorSpec::EMBEDDING
                                                    : v1::TensorSpec::DENSE);
  *spec.mutable_initializer() = info.initializer;
  *spec.mutable_optimizer() = optimizer;
  return spec;
}
std::vector<v1::TensorSpec> ModelSpecs(const Model& model,
                                       const v1::JobConfig& job) {
  std::vector<v1::TensorSpec> specs;
  for (const TensorInfo& t : model.Parameters()) {
    specs.push_back(ToTensorSpec(t, OptimizerFor(job, t.name)));
  }
  return specs;
}

}  // namespace worker
}  // namespace tessera

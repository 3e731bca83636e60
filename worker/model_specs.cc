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
v1::OptimizerConfig OptimizerOf(const TensorInfo& t, const v1::JobConfig& job) {
  if (t.buffer) {
    // A buffer's "gradient" is the change a step made to it (before minus
    // after): plain SGD with learning rate 1 applies that change.
    v1::OptimizerConfig apply_change;
    apply_change.set_kind(v1::OptimizerConfig::SGD);
    apply_change.set_learning_rate(1);
    return apply_change;
  }
  if (t.kind == TensorKind::kEmbedding && t.field >= 0 &&
      t.field < job.model().embedding_tables_size() &&
      job.model().embedding_tables(t.field).has_optimizer()) {
    return job.model().embedding_tables(t.field).optimizer();
  }
  return OptimizerFor(job, t.name);
}

std::vector<v1::TensorSpec> ModelSpecs(const Model& model,
                                       const v1::JobConfig& job) {
  std::vector<v1::TensorSpec> specs;
  for (const TensorInfo& t : model.Parameters()) {
    specs.push_back(ToTensorSpec(t, OptimizerOf(t, job)));
    if (t.kind == TensorKind::kEmbedding && t.field >= 0 &&
        t.field < job.model().embedding_tables_size() &&
        job.model().embedding_tables(t.field).has_memory_policy()) {
      *specs.back().mutable_memory_policy() =
          job.model().embedding_tables(t.field).memory_policy();
    }
  }
  return specs;
}

}  // namespace worker
}  // namespace tessera

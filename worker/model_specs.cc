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
namespace {

// The job's EmbeddingTableConfig of table `t`: a tabular model's by its
// field, a built-in model's (logreg) by its name; nullptr if none.
const v1::EmbeddingTableConfig* TableConfigOf(const TensorInfo& t,
                                              const v1::JobConfig& job) {
  if (t.kind != TensorKind::kEmbedding) return nullptr;
  const auto& tables = job.model().embedding_tables();
  if (t.field >= 0) return t.field < tables.size() ? &tables[t.field] : nullptr;
  for (const v1::EmbeddingTableConfig& c : tables) {
    if (c.module() == t.name) return &c;
  }
  return nullptr;
}

}  // namespace

v1::OptimizerConfig OptimizerOf(const TensorInfo& t, const v1::JobConfig& job) {
  if (t.buffer) {
    // A buffer's "gradient" is the change a step made to it (before minus
    // after): plain SGD with learning rate 1 applies that change.
    v1::OptimizerConfig apply_change;
    apply_change.set_kind(v1::OptimizerConfig::SGD);
    apply_change.set_learning_rate(1);
    return apply_change;
  }
  const v1::EmbeddingTableConfig* table = TableConfigOf(t, job);
  if (table != nullptr && table->has_optimizer()) return table->optimizer();
  return OptimizerFor(job, t.name);
}

std::vector<v1::TensorSpec> ModelSpecs(const Model& model,
                                       const v1::JobConfig& job) {
  std::vector<v1::TensorSpec> specs;
  for (const TensorInfo& t : model.Parameters()) {
    specs.push_back(ToTensorSpec(t, OptimizerOf(t, job)));
    const v1::EmbeddingTableConfig* table = TableConfigOf(t, job);
    if (table != nullptr && table->has_memory_policy()) {
      *specs.back().mutable_memory_policy() = table->memory_policy();
    }
  }
  return specs;
}

}  // namespace worker
}  // namespace tessera

#include "worker/model/local_sgd.h"

#include "glog/logging.h"
#include "ps/common/status_macros.h"
#include "worker/data/random.h"

namespace tessera {
namespace worker {

LocalSgd::LocalSgd(Model* model) : model_(model) {
  for (const TensorInfo& info : model_->Parameters()) {
    if (info.kind == TensorKind::kDense) {
      absl::StatusOr<std::vector<float>> values =
          model_->DenseValues(info.name);
      CHECK(values.ok()) << values.status();
      dense_[info.name] = *std::move(values);
    } else {
      tables_[info.name];
    }
  }
}

std::vector<float> LocalSgd::EmbeddingRow(const std::string& table,
                                          uint64_t id) const {
  const auto& rows = tables_.at(table);
  auto it = rows.find(id);
  return it == rows.end() ? std::vector<float>() : it->second;
}

absl::Status LocalSgd::LoadDense() {
  for (const auto& [name, values] : dense_) {
    TESSERA_RETURN_IF_ERROR(model_->LoadDense(name, values));
  }
  return absl::OkStatus();
}

absl::Status LocalSgd::LoadRows(const SparseBatch& batch) {
  for (const TensorInfo& info : model_->Parameters()) {
    if (info.kind != TensorKind::kEmbedding) continue;
    const int64_t dim = info.num_elements();
    auto& table = tables_[info.name];
    std::vector<float> rows;
    rows.reserve(batch.unique_ids.size() * dim);
    for (uint64_t id : batch.unique_ids) {
      auto [it, created] = table.try_emplace(id);
      if (created) {
        // Rows are created on first touch, as on the server.
        SplitMix64 rng(HashCombine(info.initializer.seed(), id));
        const bool normal = info.initializer.kind() == v1::Initializer::NORMAL;
        for (int64_t d = 0; d < dim; ++d) {
          it->second.push_back(normal ? info.initializer.mean() +
                                            info.initializer.stddev() *
                                                rng.Normal()
                                      : 0.0f);
        }
      }
      rows.insert(rows.end(), it->second.begin(), it->second.end());
    }
    TESSERA_RETURN_IF_ERROR(
        model_->LoadEmbeddingRows(info.name, batch.unique_ids, rows));
  }
  return absl::OkStatus();
}

void LocalSgd::Apply(const StepResult& step, const SparseBatch* batch,
                     float learning_rate) {
  for (const TensorGradient& gradient : step.gradients) {
    if (gradient.kind == TensorKind::kDense) {
      std::vector<float>& values = dense_.at(gradient.name);
      CHECK_EQ(values.size(), gradient.values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        values[i] -= learning_rate * gradient.values[i];
      }
    } else {
      CHECK(batch != nullptr);
      auto& table = tables_.at(gradient.name);
      const size_t dim = gradient.values.size() / batch->unique_ids.size();
      for (size_t u = 0; u < batch->unique_ids.size(); ++u) {
        std::vector<float>& row = table.at(batch->unique_ids[u]);
        for (size_t d = 0; d < dim; ++d) {
          row[d] -= learning_rate * gradient.values[u * dim + d];
        }
      }
    }
  }
}

absl::StatusOr<StepResult> LocalSgd::Step(const DenseBatch& batch,
                                          float learning_rate) {
  TESSERA_RETURN_IF_ERROR(LoadDense());
  TESSERA_ASSIGN_OR_RETURN(StepResult step, model_->TrainStep(batch));
  Apply(step, nullptr, learning_rate);
  return step;
}

absl::StatusOr<StepResult> LocalSgd::Step(const SparseBatch& batch,
                                          float learning_rate) {
  TESSERA_RETURN_IF_ERROR(LoadDense());
  TESSERA_RETURN_IF_ERROR(LoadRows(batch));
  TESSERA_ASSIGN_OR_RETURN(StepResult step, model_->TrainStep(batch));
  Apply(step, &batch, learning_rate);
  return step;
}

absl::StatusOr<EvalResult> LocalSgd::Evaluate(const DenseBatch& batch) {
  TESSERA_RETURN_IF_ERROR(LoadDense());
  return model_->Evaluate(batch);
}

absl::StatusOr<EvalResult> LocalSgd::Evaluate(const SparseBatch& batch) {
  TESSERA_RETURN_IF_ERROR(LoadDense());
  TESSERA_RETURN_IF_ERROR(LoadRows(batch));
  return model_->Evaluate(batch);
}

}  // namespace worker
}  // namespace tessera

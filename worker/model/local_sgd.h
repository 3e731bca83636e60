#ifndef TESSERA_WORKER_MODEL_LOCAL_SGD_H_
#define TESSERA_WORKER_MODEL_LOCAL_SGD_H_

// testonly: plays the parameter server for a Model in a test. It holds every
// tensor's values (embedding rows created on first touch from the table's
// initializer), loads what a batch needs, runs TrainStep and applies plain
// SGD with the returned gradients -- the same flow a worker runs against the
// real server. Thread-compatible.

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/batch.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

class LocalSgd {
 public:
  // `model` is not owned and must outlive this. Starts from the model's own
  // initial dense values.
  explicit LocalSgd(Model* model);

  // Loads the values `batch` needs into the model, runs TrainStep, applies
  // value -= learning_rate * gradient, and returns the step's result.
  absl::StatusOr<StepResult> Step(const DenseBatch& batch, float learning_rate);
  absl::StatusOr<StepResult> Step(const SparseBatch& batch,
                                  float learning_rate);

  // Loads the current values and evaluates.
  absl::StatusOr<EvalResult> Evaluate(const DenseBatch& batch);
  absl::StatusOr<EvalResult> Evaluate(const SparseBatch& batch);

  // The current values of a dense tensor, or of one embedding row (empty if
  // never touched).
  const std::vector<float>& dense(const std::string& name) const {
    return dense_.at(name);
  }
  std::vector<float> EmbeddingRow(const std::string& table, uint64_t id) const;

 private:
  absl::Status LoadDense();
  absl::Status LoadRows(const SparseBatch& batch);
  void Apply(const StepResult& step, const SparseBatch* batch,
             float learning_rate);

  Model* const model_;  // Not owned; outlives this.
  std::map<std::string, std::vector<float>> dense_;
  std::map<std::string, std::unordered_map<uint64_t, std::vector<float>>>
      tables_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_MODEL_LOCAL_SGD_H_

#include "worker/dense_predictor.h"

#include <algorithm>

#include "ps/common/vector_clones.h"

namespace tessera {
namespace worker {
namespace {

// values = 2 * values - previous, and previous = the old values, in one pass.
TESSERA_VECTOR_CLONES void ExtrapolateLoop(float* __restrict values,
                                           float* __restrict previous,
                                           size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float pulled = values[i];
    values[i] = pulled + (pulled - previous[i]);
    previous[i] = pulled;
  }
}

}  // namespace

bool DensePredictor::Predict(size_t slot, absl::Span<float> values,
                             bool ahead) {
  if (slot >= slots_.size()) slots_.resize(slot + 1);
  Slot& s = slots_[slot];
  if (ahead && s.valid && s.previous.size() == values.size()) {
    ExtrapolateLoop(values.data(), s.previous.data(), values.size());
    return true;
  }
  s.previous.assign(values.begin(), values.end());
  s.valid = true;
  return false;
}

}  // namespace worker
}  // namespace tessera

#include "worker/dense_predictor.h"

namespace tessera {
namespace worker {

DenseHistory DensePredictor::Next(size_t slot, size_t n, bool ahead) {
  if (slot >= slots_.size()) slots_.resize(slot + 1);
  Slot& s = slots_[slot];
  const bool same_size = s.previous.size() == n;
  if (!same_size) s.previous.assign(n, 0.0f);
  s.extrapolating = ahead && s.valid && same_size;
  s.valid = false;  // Written by the pull until it completes.
  DenseHistory history;
  history.previous = absl::MakeSpan(s.previous);
  history.extrapolate = s.extrapolating;
  return history;
}

bool DensePredictor::Completed(size_t slot) {
  if (slot >= slots_.size()) return false;
  Slot& s = slots_[slot];
  s.valid = true;
  return s.extrapolating;
}

}  // namespace worker
}  // namespace tessera

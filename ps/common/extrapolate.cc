#include "ps/common/extrapolate.h"

#include <cstring>

#include "ps/common/vector_clones.h"

namespace tessera {
namespace {

// memcpy of each float: `pulled` may be a frame's bytes at any address; the
// compiler turns it into an unaligned vector load.
TESSERA_VECTOR_CLONES void ExtrapolateLoop(const char* __restrict pulled,
                                           size_t n, float* __restrict out,
                                           float* __restrict previous) {
  for (size_t i = 0; i < n; ++i) {
    float p;
    std::memcpy(&p, pulled + i * sizeof(float), sizeof(float));
    out[i] = p + (p - previous[i]);
    previous[i] = p;
  }
}

}  // namespace

void CopyWithHistory(const void* pulled, size_t n, float* out, float* previous,
                     bool extrapolate) {
  if (!extrapolate) {
    std::memcpy(out, pulled, n * sizeof(float));
    std::memcpy(previous, pulled, n * sizeof(float));
    return;
  }
  ExtrapolateLoop(static_cast<const char*>(pulled), n, out, previous);
}

}  // namespace tessera

#ifndef TESSERA_PS_COMMON_EXTRAPOLATE_H_
#define TESSERA_PS_COMMON_EXTRAPOLATE_H_

// The copy of a dense pull that keeps its history (PsClient::PullDense with
// a DenseHistory; worker/dense_predictor.h says what it is for).

#include <cstddef>

namespace tessera {

// For i < n: out[i] = pulled[i] + (pulled[i] - previous[i]) if `extrapolate`,
// else pulled[i]; then previous[i] = pulled[i]. `pulled` needs no alignment;
// the three ranges must not overlap. One pass, vectorized
// (ps/common/vector_clones.h).
void CopyWithHistory(const void* pulled, size_t n, float* out, float* previous,
                     bool extrapolate);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_EXTRAPOLATE_H_

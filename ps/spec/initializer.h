#ifndef TESSERA_PS_SPEC_INITIALIZER_H_
#define TESSERA_PS_SPEC_INITIALIZER_H_

// Deterministic initial values of tensor rows. Row r of a tensor always gets
// the same values, whichever shard computes it and however the tensor is
// split: each row draws from its own stream seeded by (initializer seed,
// tensor name, row). Thread-safe (pure functions).

#include <cstdint>

#include "absl/types/span.h"
#include "tessera/v1/tensor.pb.h"

namespace tessera {

// Fills `out` (row_size floats per row) with rows [row, row + out.size() /
// row_size) of `spec`. For embedding tables `row` is the row id and rows are
// shape[1] floats. Requires a valid spec.
void InitializeRows(const v1::TensorSpec& spec, uint64_t row,
                    absl::Span<float> out);

}  // namespace tessera

#endif  // TESSERA_PS_SPEC_INITIALIZER_H_

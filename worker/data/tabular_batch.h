#ifndef TESSERA_WORKER_DATA_TABULAR_BATCH_H_
#define TESSERA_WORKER_DATA_TABULAR_BATCH_H_

// A batch of tabular examples (Criteo, CSV): dense features, a label, and for
// each categorical field a bag of category ids per example, in
// nn.EmbeddingBag's (input, offsets) form. Plain C++, no libtorch.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace tessera {
namespace worker {

struct TabularBatch {
  // One categorical field of the batch.
  struct Field {
    // batch_size entries: example i's ids are ids[offsets[i], offsets[i+1])
    // (the last one's run to ids.size()). offsets[0] == 0, non-decreasing.
    std::vector<int64_t> offsets;
    // 64-bit category ids (worker/data/tabular.h: CategoryId).
    std::vector<uint64_t> ids;

    // Filled by AssignTableRows: the table rows of `ids` (id % rows for a
    // bounded table, the id itself for an unbounded one), sorted ascending
    // without duplicates, and for each entry of `ids` its position in
    // unique_rows.
    std::vector<uint64_t> unique_rows;
    std::vector<int64_t> unique_index;
  };

  int batch_size = 0;
  int num_dense = 0;
  std::vector<float> dense;   // batch_size x num_dense, row-major.
  std::vector<float> labels;  // batch_size.
  std::vector<Field> fields;  // One per categorical column, in schema order.
};

// OK iff batch_size >= 0, num_dense >= 0, dense has batch_size x num_dense
// finite values, labels batch_size finite values, every field has
// batch_size offsets starting at 0 and non-decreasing, within ids.size() (an
// empty bag is allowed: nn.EmbeddingBag gives it zeros; the readers never
// make one), and unique_rows / unique_index, if
// filled, are strictly ascending / in range. InvalidArgument naming the
// first violation otherwise.
absl::Status ValidateTabularBatch(const TabularBatch& batch);

// Fills every field's unique_rows and unique_index. `rows_per_field[k]` is
// the row count of the table serving field k (0: unbounded).
// InvalidArgument if rows_per_field.size() != batch->fields.size().
absl::Status AssignTableRows(absl::Span<const int64_t> rows_per_field,
                             TabularBatch* batch);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_TABULAR_BATCH_H_

#ifndef TESSERA_WORKER_DATA_BATCH_H_
#define TESSERA_WORKER_DATA_BATCH_H_

// The two kinds of training batch a worker feeds its model. Plain C++: no
// libtorch here, so data code and tests build without it.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace tessera {
namespace worker {

// A dense batch, row-major: example i's features are
// features[i * feature_dim, (i + 1) * feature_dim).
// Invariant (checked by ValidateDenseBatch): features.size() ==
// batch_size * feature_dim and labels.size() == batch_size.
struct DenseBatch {
  std::vector<float> features;  // batch_size x feature_dim.
  std::vector<int64_t> labels;  // Class indices in [0, num_classes).
  int batch_size = 0;
  int feature_dim = 0;  // 784 for Fashion-MNIST (28 x 28, one channel).
};

// A sparse batch in CSR form. Example i's nonzeros are the positions
// [row_offsets[i], row_offsets[i + 1]) of feature_ids / values / unique_index.
//
// unique_ids lists, sorted ascending and without duplicates, every feature id
// the batch touches: these are the embedding rows a worker pulls, and a
// model's embedding gradient has one row per entry, in this order.
// unique_index[j] is the position of feature_ids[j] in unique_ids, i.e.
// unique_ids[unique_index[j]] == feature_ids[j].
struct SparseBatch {
  std::vector<int64_t>
      row_offsets;  // batch_size + 1 entries, row_offsets[0] == 0.
  std::vector<uint64_t> feature_ids;  // One per nonzero.
  std::vector<float> values;          // One per nonzero.
  std::vector<float> labels;          // One per example, 0.0f or 1.0f.
  std::vector<uint64_t> unique_ids;   // Sorted, deduplicated feature_ids.
  std::vector<int64_t> unique_index;  // One per nonzero, into unique_ids.
  int batch_size = 0;

  int64_t num_nonzeros() const { return static_cast<int64_t>(values.size()); }
};

// InvalidArgument, naming the first broken invariant, unless `batch` is a
// well-formed DenseBatch with batch_size > 0.
absl::Status ValidateDenseBatch(const DenseBatch& batch);

// InvalidArgument, naming the first broken invariant, unless `batch` is a
// well-formed SparseBatch with batch_size > 0 (sizes agree, offsets are
// non-decreasing, unique_ids is strictly ascending, and every unique_index
// entry points at its own feature id). O(nonzeros).
absl::Status ValidateSparseBatch(const SparseBatch& batch);

// Builds a SparseBatch row by row and derives unique_ids / unique_index.
// Thread-compatible.
//
//   SparseBatchBuilder builder;
//   builder.AddExample(1.0f, ids, values);
//   SparseBatch batch = std::move(builder).Build();
class SparseBatchBuilder {
 public:
  SparseBatchBuilder();

  // Pre-sizes the buffers for `examples` rows and `nonzeros` entries.
  void Reserve(int64_t examples, int64_t nonzeros);

  // Appends one example. `ids` and `values` must have the same size (CHECKed:
  // this is the caller's invariant, not input).
  void AddExample(float label, absl::Span<const uint64_t> ids,
                  absl::Span<const float> values);

  // Returns the batch, with unique_ids and unique_index filled in. The
  // builder is left empty.
  SparseBatch Build() &&;

 private:
  SparseBatch batch_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_BATCH_H_

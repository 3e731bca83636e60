#ifndef TESSERA_WORKER_DATA_SPARSE_DATASET_H_
#define TESSERA_WORKER_DATA_SPARSE_DATASET_H_

// Sparse examples held in memory in CSR form, and LIBSVM text files.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "worker/data/dataset.h"

namespace tessera {
namespace worker {

// A SparseDataset held in memory: 8 bytes per example plus 12 per nonzero.
// Filled with AddExample, then read with Gather. Thread-compatible while
// being filled; thread-safe (immutable) once only Gather is called.
class InMemorySparseDataset : public SparseDataset {
 public:
  InMemorySparseDataset();

  // Appends an example. `label` must be 0 or 1 and ids.size() ==
  // values.size() (CHECKed: readers validate their input before this).
  void AddExample(float label, absl::Span<const uint64_t> ids,
                  absl::Span<const float> values);

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_nonzeros() const { return static_cast<int64_t>(ids_.size()); }
  // One more than the largest feature id seen (0 when there are none).
  uint64_t feature_id_bound() const { return feature_id_bound_; }

  absl::StatusOr<SparseBatch> Gather(
      absl::Span<const int64_t> indices) const override;

 private:
  std::vector<int64_t> row_offsets_;
  std::vector<uint64_t> ids_;
  std::vector<float> values_;
  std::vector<float> labels_;
  uint64_t feature_id_bound_ = 0;
};

struct LibsvmOptions {
  // LIBSVM's feature indices start at 1, and feature id = index - 1. With
  // zero_based_indices the file's indices are the ids (and 0 is allowed).
  bool zero_based_indices = false;
  // Read only the first max_examples examples (0: all).
  int64_t max_examples = 0;
};

// Reads LIBSVM text, one example a line: `label index:value index:value ...`
// separated by spaces or tabs. Labels +1/-1 or 1/0 become 1/0; indices must
// be strictly ascending within a line; values must be finite floats. Empty
// lines and anything after '#' are ignored. The file may be gzip-compressed.
//
// Errors: NotFound (or another errno code) if the file cannot be opened;
// InvalidArgument "<path>:<line>: <what is wrong>" for a malformed line;
// DataLoss for corrupt gzip data.
absl::StatusOr<std::unique_ptr<InMemorySparseDataset>> ReadLibsvmFile(
    const std::string& path, const LibsvmOptions& options = {});

// As ReadLibsvmFile, over text in memory; errors name `source_name`.
absl::StatusOr<std::unique_ptr<InMemorySparseDataset>> ParseLibsvm(
    absl::string_view text, const LibsvmOptions& options = {},
    absl::string_view source_name = "<text>");

// Writes every example of `dataset` to `path` as LIBSVM text (labels +1/-1,
// index = feature id + 1 unless zero_based_indices, values with 9 significant
// digits so floats read back exactly), replacing the file. Feature ids within
// an example are written in ascending order. Errors: errno-derived codes
// from the file system, or what dataset.Gather returns.
absl::Status WriteLibsvmFile(const SparseDataset& dataset,
                             const std::string& path,
                             const LibsvmOptions& options = {});

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_SPARSE_DATASET_H_

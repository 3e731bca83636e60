#include "worker/data/batch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace tessera {
namespace worker {

absl::Status ValidateDenseBatch(const DenseBatch& batch) {
  if (batch.batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dense batch: batch_size is ", batch.batch_size, ", want > 0"));
  }
  if (batch.feature_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dense batch: feature_dim is ", batch.feature_dim, ", want > 0"));
  }
  const int64_t want =
      static_cast<int64_t>(batch.batch_size) * batch.feature_dim;
  if (static_cast<int64_t>(batch.features.size()) != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dense batch: ", batch.features.size(), " feature values, want ",
        batch.batch_size, " x ", batch.feature_dim, " = ", want));
  }
  if (static_cast<int64_t>(batch.labels.size()) != batch.batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense batch: ", batch.labels.size(), " labels for ",
                     batch.batch_size, " examples"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSparseBatch(const SparseBatch& batch) {
  if (batch.batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse batch: batch_size is ", batch.batch_size, ", want > 0"));
  }
  if (static_cast<int64_t>(batch.labels.size()) != batch.batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse batch: ", batch.labels.size(), " labels for ",
                     batch.batch_size, " examples"));
  }
  if (static_cast<int64_t>(batch.row_offsets.size()) != batch.batch_size + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse batch: ", batch.row_offsets.size(),
        " row offsets, want batch_size + 1 = ", batch.batch_size + 1));
  }
  const int64_t nnz = batch.num_nonzeros();
  if (batch.feature_ids.size() != batch.values.size() ||
      batch.unique_index.size() != batch.values.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse batch: ", batch.feature_ids.size(), " feature ids, ",
        batch.values.size(), " values and ", batch.unique_index.size(),
        " unique indices; want the same number of each"));
  }
  if (batch.row_offsets.front() != 0 || batch.row_offsets.back() != nnz) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse batch: row offsets run from ", batch.row_offsets.front(),
        " to ", batch.row_offsets.back(), ", want 0 to ", nnz));
  }
  for (int i = 0; i < batch.batch_size; ++i) {
    if (batch.row_offsets[i] > batch.row_offsets[i + 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("sparse batch: row offsets decrease at example ", i));
    }
  }
  for (size_t u = 1; u < batch.unique_ids.size(); ++u) {
    if (batch.unique_ids[u - 1] >= batch.unique_ids[u]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sparse batch: unique_ids is not strictly ascending at ", u));
    }
  }
  const int64_t num_unique = static_cast<int64_t>(batch.unique_ids.size());
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t u = batch.unique_index[j];
    if (u < 0 || u >= num_unique ||
        batch.unique_ids[u] != batch.feature_ids[j]) {
      return absl::InvalidArgumentError(
          absl::StrCat("sparse batch: unique_index[", j, "] = ", u,
                       " does not point at feature id ", batch.feature_ids[j]));
    }
  }
  for (int i = 0; i < batch.batch_size; ++i) {
    const float label = batch.labels[i];
    if (label != 0.0f && label != 1.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("sparse batch: label of example ", i, " is ", label,
                       ", want 0 or 1"));
    }
  }
  return absl::OkStatus();
}

SparseBatchBuilder::SparseBatchBuilder() { batch_.row_offsets.push_back(0); }

void SparseBatchBuilder::Reserve(int64_t examples, int64_t nonzeros) {
  batch_.row_offsets.reserve(examples + 1);
  batch_.labels.reserve(examples);
  batch_.feature_ids.reserve(nonzeros);
  batch_.values.reserve(nonzeros);
}

void SparseBatchBuilder::AddExample(float label, absl::Span<const uint64_t> ids,
                                    absl::Span<const float> values) {
  CHECK_EQ(ids.size(), values.size());
  batch_.feature_ids.insert(batch_.feature_ids.end(), ids.begin(), ids.end());
  batch_.values.insert(batch_.values.end(), values.begin(), values.end());
  batch_.row_offsets.push_back(static_cast<int64_t>(batch_.feature_ids.size()));
  batch_.labels.push_back(label);
  ++batch_.batch_size;
}

SparseBatch SparseBatchBuilder::Build() && {
  SparseBatch batch = std::move(batch_);
  batch_ = SparseBatch();
  batch_.row_offsets.push_back(0);

  batch.unique_ids = batch.feature_ids;
  std::sort(batch.unique_ids.begin(), batch.unique_ids.end());
  batch.unique_ids.erase(
      std::unique(batch.unique_ids.begin(), batch.unique_ids.end()),
      batch.unique_ids.end());
  batch.unique_index.resize(batch.feature_ids.size());
  for (size_t j = 0; j < batch.feature_ids.size(); ++j) {
    batch.unique_index[j] =
        std::lower_bound(batch.unique_ids.begin(), batch.unique_ids.end(),
                         batch.feature_ids[j]) -
        batch.unique_ids.begin();
  }
  return batch;
}

}  // namespace worker
}  // namespace tessera

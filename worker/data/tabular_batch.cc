#include "worker/data/tabular_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace worker {

absl::Status ValidateTabularBatch(const TabularBatch& batch) {
  if (batch.batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size is ", batch.batch_size, ", want > 0"));
  }
  if (batch.num_dense < 0 ||
      batch.dense.size() !=
          static_cast<size_t>(batch.batch_size) * batch.num_dense) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense has ", batch.dense.size(), " values for ",
                     batch.batch_size, " examples of ", batch.num_dense));
  }
  if (batch.labels.size() != static_cast<size_t>(batch.batch_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        batch.labels.size(), " labels for ", batch.batch_size, " examples"));
  }
  for (size_t k = 0; k < batch.fields.size(); ++k) {
    const TabularBatch::Field& f = batch.fields[k];
    if (f.offsets.size() != static_cast<size_t>(batch.batch_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", k, " has ", f.offsets.size(),
                       " offsets for ", batch.batch_size, " examples"));
    }
    int64_t previous = 0;
    for (size_t i = 0; i < f.offsets.size(); ++i) {
      const int64_t o = f.offsets[i];
      if ((i == 0 && o != 0) || o < previous ||
          o > static_cast<int64_t>(f.ids.size())) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", k, ": offset ", i, " is ", o));
      }
      previous = o;
    }
    if (f.unique_rows.empty() && f.unique_index.empty()) continue;
    if (f.unique_index.size() != f.ids.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", k, ": ", f.unique_index.size(),
                       " unique_index entries for ", f.ids.size(), " ids"));
    }
    for (size_t i = 1; i < f.unique_rows.size(); ++i) {
      if (f.unique_rows[i - 1] >= f.unique_rows[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", k, ": unique_rows is not ascending"));
      }
    }
    for (int64_t index : f.unique_index) {
      if (index < 0 || index >= static_cast<int64_t>(f.unique_rows.size())) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", k, ": unique_index ", index,
                         " is outside [0, ", f.unique_rows.size(), ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status AssignTableRows(absl::Span<const int64_t> rows_per_field,
                             TabularBatch* batch) {
  if (rows_per_field.size() != batch->fields.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model has ", rows_per_field.size(),
                     " embedding tables, the data ", batch->fields.size(),
                     " categorical fields"));
  }
  for (size_t k = 0; k < batch->fields.size(); ++k) {
    TabularBatch::Field& f = batch->fields[k];
    const int64_t rows = rows_per_field[k];
    if (rows < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("table ", k, " has ", rows, " rows"));
    }
    std::vector<uint64_t> row_of(f.ids.size());
    for (size_t j = 0; j < f.ids.size(); ++j) {
      row_of[j] = rows == 0 ? f.ids[j] : f.ids[j] % static_cast<uint64_t>(rows);
    }
    f.unique_rows = row_of;
    std::sort(f.unique_rows.begin(), f.unique_rows.end());
    f.unique_rows.erase(std::unique(f.unique_rows.begin(), f.unique_rows.end()),
                        f.unique_rows.end());
    f.unique_index.resize(f.ids.size());
    for (size_t j = 0; j < f.ids.size(); ++j) {
      f.unique_index[j] =
          std::lower_bound(f.unique_rows.begin(), f.unique_rows.end(),
                           row_of[j]) -
          f.unique_rows.begin();
    }
  }
  return absl::OkStatus();
}

}  // namespace worker
}  // namespace tessera

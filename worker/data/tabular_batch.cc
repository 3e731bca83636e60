#include "worker/data/tabular_batch.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace worker {

absl::Status ValidateTabularBatch(const TabularBatch& batch) {
  const int64_t b = batch.batch_size;
  if (b < 0 || batch.num_dense < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular batch: batch_size ", b, ", num_dense ", batch.num_dense));
  }
  if (static_cast<int64_t>(batch.dense.size()) != b * batch.num_dense ||
      static_cast<int64_t>(batch.labels.size()) != b) {
    return absl::InvalidArgumentError(
        absl::StrCat("tabular batch of ", b, " x ", batch.num_dense,
                     " dense has ", batch.dense.size(), " dense values and ",
                     batch.labels.size(), " labels"));
  }
  for (size_t i = 0; i < batch.dense.size(); ++i) {
    if (!std::isfinite(batch.dense[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("tabular batch: dense value ", i, " is not finite"));
    }
  }
  for (size_t i = 0; i < batch.labels.size(); ++i) {
    if (!std::isfinite(batch.labels[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("tabular batch: label ", i, " is not finite"));
    }
  }
  for (size_t k = 0; k < batch.fields.size(); ++k) {
    const TabularBatch::Field& field = batch.fields[k];
    if (static_cast<int64_t>(field.offsets.size()) != b) {
      return absl::InvalidArgumentError(
          absl::StrCat("tabular batch: field ", k, " has ",
                       field.offsets.size(), " offsets for ", b, " examples"));
    }
    for (int64_t i = 0; i < b; ++i) {
      const int64_t begin = field.offsets[i];
      const int64_t end = i + 1 < b ? field.offsets[i + 1]
                                    : static_cast<int64_t>(field.ids.size());
      if ((i == 0 && begin != 0) || begin < 0 || end < begin ||
          end > static_cast<int64_t>(field.ids.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tabular batch: field ", k, " example ", i, " has bag [", begin,
            ", ", end, ") of ", field.ids.size(),
            " ids (offsets must start at 0 and not decrease)"));
      }
    }
  }
  for (size_t k = 0; k < batch.fields.size(); ++k) {
    const TabularBatch::Field& f = batch.fields[k];
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
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has ", rows_per_field.size(), " embedding tables, the data ",
        batch->fields.size(), " categorical fields"));
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
      f.unique_index[j] = std::lower_bound(f.unique_rows.begin(),
                                           f.unique_rows.end(), row_of[j]) -
                          f.unique_rows.begin();
    }
  }
  return absl::OkStatus();
}

}  // namespace worker
}  // namespace tessera

#include "worker/data/sparse_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <utility>

#include "absl/strings/charconv.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "ps/common/status_macros.h"
#include "worker/data/input_file.h"

namespace tessera {
namespace worker {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits off the next blank-separated token of *rest; empty at the end.
absl::string_view NextToken(absl::string_view* rest) {
  size_t begin = 0;
  while (begin < rest->size() && IsBlank((*rest)[begin])) ++begin;
  size_t end = begin;
  while (end < rest->size() && !IsBlank((*rest)[end])) ++end;
  absl::string_view token = rest->substr(begin, end - begin);
  rest->remove_prefix(end);
  return token;
}

bool ParseFloat(absl::string_view text, float* out) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const absl::from_chars_result result =
      absl::from_chars(text.data(), text.data() + text.size(), *out);
  return result.ec == std::errc() && result.ptr == text.data() + text.size();
}

// Parses LIBSVM lines into a dataset. Thread-compatible.
class LibsvmParser {
 public:
  LibsvmParser(const LibsvmOptions& options, absl::string_view source_name)
      : options_(options),
        source_name_(source_name),
        dataset_(new InMemorySparseDataset) {}

  bool Full() const {
    return options_.max_examples > 0 &&
           dataset_->size() >= options_.max_examples;
  }

  absl::Status ParseLine(int64_t line_number, absl::string_view line) {
    const size_t comment = line.find('#');
    if (comment != absl::string_view::npos) line = line.substr(0, comment);
    absl::string_view rest = line;
    const absl::string_view label_text = NextToken(&rest);
    if (label_text.empty()) return absl::OkStatus();  // Blank line.

    float label;
    if (!ParseFloat(label_text, &label)) {
      return Error(line_number,
                   absl::StrCat("label '", label_text, "' is not a number"));
    }
    if (label != 1.0f && label != -1.0f && label != 0.0f) {
      return Error(line_number, absl::StrCat("label ", label_text,
                                             " is not binary (+1/-1 or 1/0)"));
    }
    ids_.clear();
    values_.clear();
    for (absl::string_view token = NextToken(&rest); !token.empty();
         token = NextToken(&rest)) {
      const size_t colon = token.find(':');
      if (colon == absl::string_view::npos) {
        return Error(line_number,
                     absl::StrCat("'", token, "' is not index:value"));
      }
      uint64_t index;
      if (!absl::SimpleAtoi(token.substr(0, colon), &index) ||
          token[0] == '-' || token[0] == '+') {
        return Error(line_number, absl::StrCat("feature index in '", token,
                                               "' is not a whole number"));
      }
      if (!options_.zero_based_indices && index == 0) {
        return Error(line_number, absl::StrCat("feature index 0 in '", token,
                                               "': LIBSVM indices start at 1"));
      }
      const uint64_t id = options_.zero_based_indices ? index : index - 1;
      if (!ids_.empty() && id <= ids_.back()) {
        return Error(line_number,
                     absl::StrCat("feature index ", index,
                                  " is not above the one before it (indices "
                                  "must be strictly ascending)"));
      }
      float value;
      if (!ParseFloat(token.substr(colon + 1), &value)) {
        return Error(line_number,
                     absl::StrCat("value in '", token, "' is not a number"));
      }
      if (!std::isfinite(value)) {
        return Error(line_number,
                     absl::StrCat("value in '", token, "' is not finite"));
      }
      ids_.push_back(id);
      values_.push_back(value);
    }
    dataset_->AddExample(label > 0 ? 1.0f : 0.0f, ids_, values_);
    return absl::OkStatus();
  }

  std::unique_ptr<InMemorySparseDataset> Finish() && {
    return std::move(dataset_);
  }

 private:
  absl::Status Error(int64_t line_number, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name_, ":", line_number, ": ", what));
  }

  const LibsvmOptions options_;
  const std::string source_name_;
  std::unique_ptr<InMemorySparseDataset> dataset_;
  std::vector<uint64_t> ids_;  // Of the line being parsed.
  std::vector<float> values_;
};

absl::Status CheckOptions(const LibsvmOptions& options) {
  if (options.max_examples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_examples is ", options.max_examples, ", want >= 0"));
  }
  return absl::OkStatus();
}

}  // namespace

InMemorySparseDataset::InMemorySparseDataset() { row_offsets_.push_back(0); }

void InMemorySparseDataset::AddExample(float label,
                                       absl::Span<const uint64_t> ids,
                                       absl::Span<const float> values) {
  CHECK_EQ(ids.size(), values.size());
  CHECK(label == 0.0f || label == 1.0f) << label;
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  values_.insert(values_.end(), values.begin(), values.end());
  row_offsets_.push_back(static_cast<int64_t>(ids_.size()));
  labels_.push_back(label);
  for (uint64_t id : ids) {
    feature_id_bound_ = std::max(feature_id_bound_, id + 1);
  }
}

absl::StatusOr<SparseBatch> InMemorySparseDataset::Gather(
    absl::Span<const int64_t> indices) const {
  TESSERA_RETURN_IF_ERROR(CheckIndices(indices));
  int64_t nonzeros = 0;
  for (int64_t i : indices) nonzeros += row_offsets_[i + 1] - row_offsets_[i];
  SparseBatchBuilder builder;
  builder.Reserve(indices.size(), nonzeros);
  for (int64_t i : indices) {
    const int64_t begin = row_offsets_[i];
    const int64_t length = row_offsets_[i + 1] - begin;
    builder.AddExample(labels_[i],
                       absl::MakeConstSpan(ids_.data() + begin, length),
                       absl::MakeConstSpan(values_.data() + begin, length));
  }
  return std::move(builder).Build();
}

absl::StatusOr<std::unique_ptr<InMemorySparseDataset>> ReadLibsvmFile(
    const std::string& path, const LibsvmOptions& options) {
  TESSERA_RETURN_IF_ERROR(CheckOptions(options));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> file,
                           InputFile::Open(path));
  LineReader lines(file.get());
  LibsvmParser parser(options, path);
  absl::string_view line;
  while (!parser.Full()) {
    TESSERA_ASSIGN_OR_RETURN(bool more, lines.Next(&line));
    if (!more) break;
    TESSERA_RETURN_IF_ERROR(parser.ParseLine(lines.line_number(), line));
  }
  return std::move(parser).Finish();
}

absl::StatusOr<std::unique_ptr<InMemorySparseDataset>> ParseLibsvm(
    absl::string_view text, const LibsvmOptions& options,
    absl::string_view source_name) {
  TESSERA_RETURN_IF_ERROR(CheckOptions(options));
  LibsvmParser parser(options, source_name);
  int64_t line_number = 0;
  while (!text.empty() && !parser.Full()) {
    const size_t newline = text.find('\n');
    const absl::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == absl::string_view::npos ? text.size()
                                                          : newline + 1);
    TESSERA_RETURN_IF_ERROR(parser.ParseLine(++line_number, line));
  }
  return std::move(parser).Finish();
}

absl::Status WriteLibsvmFile(const SparseDataset& dataset,
                             const std::string& path,
                             const LibsvmOptions& options) {
  constexpr int64_t kExamplesPerGather = 4096;
  FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  }
  std::string text;
  std::vector<int64_t> indices;
  std::vector<int64_t> order;
  absl::Status status;
  for (int64_t begin = 0; begin < dataset.size() && status.ok();
       begin += kExamplesPerGather) {
    const int64_t end = std::min(dataset.size(), begin + kExamplesPerGather);
    indices.resize(end - begin);
    std::iota(indices.begin(), indices.end(), begin);
    absl::StatusOr<SparseBatch> batch = dataset.Gather(indices);
    if (!batch.ok()) {
      status = batch.status();
      break;
    }
    text.clear();
    for (int i = 0; i < batch->batch_size && status.ok(); ++i) {
      const int64_t row_begin = batch->row_offsets[i];
      const int64_t row_end = batch->row_offsets[i + 1];
      order.resize(row_end - row_begin);
      std::iota(order.begin(), order.end(), row_begin);
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return batch->feature_ids[a] < batch->feature_ids[b];
      });
      text += batch->labels[i] > 0.5f ? "+1" : "-1";
      for (size_t k = 0; k < order.size(); ++k) {
        const uint64_t id = batch->feature_ids[order[k]];
        if (k > 0 && id == batch->feature_ids[order[k - 1]]) {
          status = absl::InvalidArgumentError(
              absl::StrCat("example ", begin + i, " has feature id ", id,
                           " twice; LIBSVM cannot express that"));
          break;
        }
        absl::StrAppendFormat(&text, " %d:%.9g",
                              options.zero_based_indices ? id : id + 1,
                              batch->values[order[k]]);
      }
      text += '\n';
    }
    if (status.ok() &&
        std::fwrite(text.data(), 1, text.size(), file) != text.size()) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("writing ", path));
    }
  }
  if (std::fclose(file) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("closing ", path));
  }
  return status;
}

}  // namespace worker
}  // namespace tessera

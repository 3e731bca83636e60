#include "worker/data/tabular.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"
#include "worker/data/input_file.h"
#include "worker/data/random.h"

namespace tessera {
namespace worker {
namespace {

constexpr uint64_t kFieldSalt = 0x9e3779b97f4a7c15ULL;
constexpr size_t kReadChunkBytes = 256 << 10;
// Bad lines logged (with their line numbers) per partition; the rest are
// only counted.
constexpr int kLoggedBadLines = 5;
constexpr int kCriteoFields = 1 + kCriteoNumDense + kCriteoNumCategorical;

bool IsGzipName(absl::string_view path) { return absl::EndsWith(path, ".gz"); }

// A value quoted for a message: at most 40 bytes, C-escaped.
std::string Quote(absl::string_view value) {
  std::string text = absl::StrCat("\"", absl::CHexEscape(value.substr(0, 40)));
  if (value.size() > 40) absl::StrAppend(&text, "...");
  absl::StrAppend(&text, "\"");
  return text;
}

// Bytes of a file, front to back.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to `size` bytes; 0 only at the end.
  virtual absl::StatusOr<size_t> Read(char* data, size_t size) = 0;
};

class PlainSource : public ByteSource {
 public:
  static absl::StatusOr<std::unique_ptr<ByteSource>> Open(
      const std::string& path, int64_t offset) {
    errno = 0;
    FILE* file = std::fopen(path.c_str(), "rb");
    if (file == nullptr) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
    }
    if (offset > 0 && fseeko(file, offset, SEEK_SET) != 0) {
      const int error = errno;
      std::fclose(file);
      return absl::ErrnoToStatus(error, absl::StrCat("cannot seek ", path));
    }
    return std::unique_ptr<ByteSource>(new PlainSource(path, file));
  }
  ~PlainSource() override { std::fclose(file_); }

  absl::StatusOr<size_t> Read(char* data, size_t size) override {
    const size_t got = std::fread(data, 1, size, file_);
    if (got < size && std::ferror(file_)) {
      return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path_));
    }
    return got;
  }

 private:
  PlainSource(std::string path, FILE* file)
      : path_(std::move(path)), file_(file) {}
  const std::string path_;
  FILE* const file_;  // Owned.
};

class GzipSource : public ByteSource {
 public:
  static absl::StatusOr<std::unique_ptr<ByteSource>> Open(
      const std::string& path) {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> file,
                             InputFile::Open(path));
    return std::unique_ptr<ByteSource>(new GzipSource(std::move(file)));
  }
  absl::StatusOr<size_t> Read(char* data, size_t size) override {
    return file_->Read(absl::MakeSpan(data, size));
  }

 private:
  explicit GzipSource(std::unique_ptr<InputFile> file)
      : file_(std::move(file)) {}
  const std::unique_ptr<InputFile> file_;
};

// Splits a ByteSource into lines of at most kMaxTabularLineBytes, never
// holding more than that plus one read chunk. A line excludes its '\n' and
// one '\r' before it; a last line without '\n' counts.
class CappedLineReader {
 public:
  enum Kind { kLine, kTooLong, kEnd };

  // `start_offset`: the file offset of the source's first byte.
  CappedLineReader(std::unique_ptr<ByteSource> source, int64_t start_offset)
      : source_(std::move(source)),
        buffer_(kMaxTabularLineBytes + 2 + kReadChunkBytes),
        buffer_offset_(start_offset) {}

  // The next line and the file offset where it starts. kTooLong: a line
  // longer than the cap, consumed; *line is empty.
  absl::StatusOr<Kind> Next(absl::string_view* line, int64_t* offset) {
    while (true) {
      const char* newline = static_cast<const char*>(
          std::memchr(buffer_.data() + scan_, '\n', end_ - scan_));
      if (newline != nullptr) {
        const size_t at = newline - buffer_.data();
        *offset = buffer_offset_ + begin_;
        const Kind kind = Cut(at, line);
        begin_ = scan_ = at + 1;
        return kind;
      }
      scan_ = end_;
      if (end_ - begin_ > static_cast<size_t>(kMaxTabularLineBytes) + 1) {
        *offset = buffer_offset_ + begin_;
        *line = absl::string_view();
        TESSERA_ASSIGN_OR_RETURN(bool found, DiscardThroughNewline());
        (void)found;
        return kTooLong;
      }
      if (eof_) {
        if (begin_ == end_) return kEnd;
        *offset = buffer_offset_ + begin_;
        const Kind kind = Cut(end_, line);
        begin_ = scan_ = end_;
        return kind;
      }
      TESSERA_RETURN_IF_ERROR(Fill());
    }
  }

  // Discards bytes through the first '\n'; false if the source ended first.
  absl::StatusOr<bool> DiscardThroughNewline() {
    while (true) {
      const char* newline = static_cast<const char*>(
          std::memchr(buffer_.data() + begin_, '\n', end_ - begin_));
      if (newline != nullptr) {
        begin_ = scan_ = newline - buffer_.data() + 1;
        return true;
      }
      buffer_offset_ += end_;
      begin_ = scan_ = end_ = 0;
      if (eof_) return false;
      TESSERA_RETURN_IF_ERROR(Fill());
    }
  }

 private:
  // The line [begin_, stop), without a trailing '\r'.
  Kind Cut(size_t stop, absl::string_view* line) {
    size_t length = stop - begin_;
    if (length > 0 && buffer_[begin_ + length - 1] == '\r') --length;
    if (length > static_cast<size_t>(kMaxTabularLineBytes)) {
      *line = absl::string_view();
      return kTooLong;
    }
    *line = absl::string_view(buffer_.data() + begin_, length);
    return kLine;
  }

  // Moves the unread bytes to the front and appends what the source gives;
  // sets eof_ when it gives nothing.
  absl::Status Fill() {
    if (begin_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      buffer_offset_ += begin_;
      end_ -= begin_;
      scan_ -= begin_;
      begin_ = 0;
    }
    TESSERA_ASSIGN_OR_RETURN(size_t got, source_->Read(buffer_.data() + end_,
                                                       buffer_.size() - end_));
    if (got == 0) eof_ = true;
    end_ += got;
    return absl::OkStatus();
  }

  const std::unique_ptr<ByteSource> source_;
  std::vector<char> buffer_;
  int64_t buffer_offset_;  // File offset of buffer_[0].
  size_t begin_ = 0;       // Start of the unread bytes.
  size_t scan_ = 0;        // No '\n' in [begin_, scan_).
  size_t end_ = 0;         // End of the bytes read.
  bool eof_ = false;
};

// Splits a CSV line into cells (RFC 4180 quoting within the line). Cells are
// views into the line, or into `storage` for quoted cells. False with
// *reason for a malformed quote.
class CsvSplitter {
 public:
  explicit CsvSplitter(char delimiter) : delimiter_(delimiter) {}

  bool Split(absl::string_view line, std::string* reason) {
    cells_.clear();
    size_t quoted = 0;
    size_t i = 0;
    while (true) {
      if (i < line.size() && line[i] == '"') {
        if (quoted == storage_.size()) storage_.emplace_back();
        std::string& cell = storage_[quoted++];
        cell.clear();
        ++i;
        while (true) {
          const size_t quote = line.find('"', i);
          if (quote == absl::string_view::npos) {
            *reason = absl::StrCat("cell ", cells_.size() + 1,
                                   " has an unterminated quote");
            return false;
          }
          cell.append(line.data() + i, quote - i);
          if (quote + 1 < line.size() && line[quote + 1] == '"') {
            cell.push_back('"');
            i = quote + 2;
            continue;
          }
          i = quote + 1;
          break;
        }
        cells_.push_back(cell);
        if (i == line.size()) return true;
        if (line[i] != delimiter_) {
          *reason = absl::StrCat("cell ", cells_.size(),
                                 " has text after its closing quote");
          return false;
        }
        ++i;
        continue;
      }
      const size_t stop = line.find(delimiter_, i);
      if (stop == absl::string_view::npos) {
        cells_.push_back(line.substr(i));
        return true;
      }
      cells_.push_back(line.substr(i, stop - i));
      i = stop + 1;
    }
  }

  const std::vector<absl::string_view>& cells() const { return cells_; }

 private:
  const char delimiter_;
  std::vector<absl::string_view> cells_;
  // Quoted cells; a deque, so growing it leaves earlier cells in place.
  std::deque<std::string> storage_;
};

// One parsed example.
struct Example {
  float label = 0;
  std::vector<float> dense;
  std::vector<uint64_t> ids;       // Every field's bag, in field order.
  std::vector<uint32_t> bag_ends;  // Per field, the end of its bag in ids.
  void Clear() {
    dense.clear();
    ids.clear();
    bag_ends.clear();
  }
};

// Strict [-]digits into int64.
bool ParseInt64(absl::string_view text, int64_t* out) {
  if (text.empty()) return false;
  const bool negative = text[0] == '-';
  if (negative) text.remove_prefix(1);
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > (negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1)) {
    return false;
  }
  *out =
      negative ? static_cast<int64_t>(0 - value) : static_cast<int64_t>(value);
  return true;
}

bool ParseFiniteFloat(absl::string_view text, float* out) {
  if (text.empty()) {
    *out = 0;
    return true;
  }
  return absl::SimpleAtof(text, out) && std::isfinite(*out);
}

bool ParseCriteoLine(absl::string_view line, Example* example,
                     std::string* reason) {
  absl::string_view fields[kCriteoFields];
  int count = 0;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    if (count < kCriteoFields) {
      fields[count] = line.substr(start, tab == absl::string_view::npos
                                             ? absl::string_view::npos
                                             : tab - start);
    }
    ++count;
    if (tab == absl::string_view::npos) break;
    if (count > kCriteoFields) break;
    start = tab + 1;
  }
  if (count != kCriteoFields) {
    *reason = count > kCriteoFields
                  ? absl::StrCat("more than ", kCriteoFields, " fields")
                  : absl::StrCat(count, " fields, not ", kCriteoFields);
    return false;
  }
  if (fields[0] == "0" || fields[0] == "1") {
    example->label = fields[0][0] == '1' ? 1.0f : 0.0f;
  } else {
    *reason = absl::StrCat("label ", Quote(fields[0]), " is not 0 or 1");
    return false;
  }
  for (int j = 0; j < kCriteoNumDense; ++j) {
    const absl::string_view field = fields[1 + j];
    int64_t value = 0;
    if (!field.empty() && !ParseInt64(field, &value)) {
      *reason =
          absl::StrCat("I", j + 1, " ", Quote(field), " is not an integer");
      return false;
    }
    example->dense.push_back(field.empty() ? 0.0f : CriteoDenseValue(value));
  }
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    example->ids.push_back(CategoryId(k, fields[1 + kCriteoNumDense + k]));
    example->bag_ends.push_back(static_cast<uint32_t>(example->ids.size()));
  }
  return true;
}

// Cell indices of a CSV file's columns: label, dense..., categorical...,
// then the header's cell count.
using CsvColumns = std::vector<int>;

void AppendBag(int field, absl::string_view cell, const std::string& separator,
               Example* example) {
  const size_t before = example->ids.size();
  if (!separator.empty()) {
    size_t start = 0;
    while (start <= cell.size()) {
      size_t stop = cell.find(separator, start);
      if (stop == absl::string_view::npos) stop = cell.size();
      if (stop > start) {
        example->ids.push_back(
            CategoryId(field, cell.substr(start, stop - start)));
      }
      start = stop + separator.size();
    }
  } else if (!cell.empty()) {
    example->ids.push_back(CategoryId(field, cell));
  }
  if (example->ids.size() == before) {
    example->ids.push_back(CategoryId(field, ""));
  }
  example->bag_ends.push_back(static_cast<uint32_t>(example->ids.size()));
}

bool ParseCsvLine(absl::string_view line, const TabularCsvOptions& schema,
                  const CsvColumns& columns, CsvSplitter* splitter,
                  Example* example, std::string* reason) {
  if (!splitter->Split(line, reason)) return false;
  const auto& cells = splitter->cells();
  const size_t expected = columns.back();
  if (cells.size() != expected) {
    *reason =
        absl::StrCat(cells.size(), " cells, not ", expected, " (the header's)");
    return false;
  }
  const absl::string_view label = cells[columns[0]];
  if (label.empty() || !ParseFiniteFloat(label, &example->label)) {
    *reason = absl::StrCat("label ", schema.label, " ", Quote(label),
                           " is not a finite number");
    return false;
  }
  const int num_dense = schema.dense.size();
  for (int j = 0; j < num_dense; ++j) {
    const absl::string_view cell = cells[columns[1 + j]];
    float value = 0;
    if (!ParseFiniteFloat(cell, &value)) {
      *reason = absl::StrCat("dense ", schema.dense[j], " ", Quote(cell),
                             " is not a finite number");
      return false;
    }
    example->dense.push_back(value);
  }
  for (size_t k = 0; k < schema.categorical.size(); ++k) {
    AppendBag(k, cells[columns[1 + num_dense + k]],
              schema.multi_value_separator, example);
  }
  return true;
}

absl::Status CheckCsvOptions(const TabularCsvOptions& csv) {
  if (csv.label.empty()) {
    return absl::InvalidArgumentError("CSV schema names no label column");
  }
  if (csv.delimiter.size() != 1 || csv.delimiter[0] == '"' ||
      csv.delimiter[0] == '\n' || csv.delimiter[0] == '\r') {
    return absl::InvalidArgumentError(
        absl::StrCat("CSV delimiter ", Quote(csv.delimiter),
                     " must be one byte other than '\"', CR and LF"));
  }
  if (!csv.multi_value_separator.empty() &&
      (absl::StrContains(csv.multi_value_separator, csv.delimiter) ||
       absl::StrContains(csv.multi_value_separator, "\""))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSV multi_value_separator ", Quote(csv.multi_value_separator),
        " must not contain the delimiter or '\"'"));
  }
  absl::flat_hash_map<std::string, int> seen;
  std::vector<const std::string*> names = {&csv.label};
  for (const std::string& name : csv.dense) names.push_back(&name);
  for (const std::string& name : csv.categorical) names.push_back(&name);
  for (const std::string* name : names) {
    if (!seen.emplace(*name, 0).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("CSV schema names column ", Quote(*name), " twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ByteSource>> OpenSource(const std::string& path,
                                                       int64_t offset) {
  if (IsGzipName(path)) return GzipSource::Open(path);
  return PlainSource::Open(path, offset);
}

// The header of a CSV file mapped to the schema's columns.
absl::StatusOr<CsvColumns> ReadCsvHeader(const std::string& path,
                                         const TabularCsvOptions& csv) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source,
                           OpenSource(path, 0));
  CappedLineReader reader(std::move(source), 0);
  absl::string_view line;
  int64_t offset = 0;
  TESSERA_ASSIGN_OR_RETURN(CappedLineReader::Kind kind,
                           reader.Next(&line, &offset));
  if (kind == CappedLineReader::kEnd) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty CSV file (no header line)"));
  }
  if (kind == CappedLineReader::kTooLong) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":1: header line longer than ", kMaxTabularLineBytes, " bytes"));
  }
  if (absl::StartsWith(line, "\xEF\xBB\xBF")) line.remove_prefix(3);
  CsvSplitter splitter(csv.delimiter[0]);
  std::string reason;
  if (!splitter.Split(line, &reason)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":1: bad header: ", reason));
  }
  absl::flat_hash_map<absl::string_view, int> index;
  absl::flat_hash_map<absl::string_view, int> repeated;
  for (size_t i = 0; i < splitter.cells().size(); ++i) {
    if (!index.emplace(splitter.cells()[i], i).second) {
      repeated.emplace(splitter.cells()[i], i);
    }
  }
  CsvColumns columns;
  auto add = [&](const std::string& name) -> absl::Status {
    auto it = index.find(name);
    if (it == index.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":1: the header has no column ", Quote(name)));
    }
    if (repeated.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":1: the header names column ", Quote(name), " twice"));
    }
    columns.push_back(it->second);
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(add(csv.label));
  for (const std::string& name : csv.dense) TESSERA_RETURN_IF_ERROR(add(name));
  for (const std::string& name : csv.categorical) {
    TESSERA_RETURN_IF_ERROR(add(name));
  }
  columns.push_back(static_cast<int>(splitter.cells().size()));
  return columns;
}

// '\n' bytes in the first `end` bytes of a plain file.
absl::StatusOr<int64_t> CountNewlines(const std::string& path, int64_t end) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source,
                           PlainSource::Open(path, 0));
  std::vector<char> chunk(kReadChunkBytes);
  int64_t count = 0;
  int64_t done = 0;
  while (done < end) {
    const size_t want =
        static_cast<size_t>(std::min<int64_t>(end - done, chunk.size()));
    TESSERA_ASSIGN_OR_RETURN(size_t got, source->Read(chunk.data(), want));
    if (got == 0) break;
    count += std::count(chunk.data(), chunk.data() + got, '\n');
    done += got;
  }
  return count;
}

class Reader : public TabularReader {
 public:
  Reader(const TabularOptions& options, std::vector<std::string> files,
         std::vector<CsvColumns> csv_columns, std::vector<TabularUnit> units,
         int num_dense, int num_fields, int partition,
         const TabularSource::ReadOptions& read_options)
      : options_(options),
        files_(std::move(files)),
        csv_columns_(std::move(csv_columns)),
        units_(std::move(units)),
        num_dense_(num_dense),
        num_fields_(num_fields),
        batch_size_(read_options.batch_size),
        shuffle_buffer_(read_options.shuffle_buffer),
        rng_(HashCombine(read_options.seed, static_cast<uint64_t>(partition))),
        splitter_(options.format == TabularFormat::kCsv
                      ? options.csv.delimiter[0]
                      : '\t') {}

  absl::StatusOr<bool> Next(TabularBatch* out) override {
    if (!failed_.ok()) return failed_;
    out->batch_size = 0;
    out->num_dense = num_dense_;
    out->dense.clear();
    out->labels.clear();
    out->fields.resize(num_fields_);
    for (TabularBatch::Field& field : out->fields) {
      field.offsets.clear();
      field.ids.clear();
    }
    while (out->batch_size < batch_size_) {
      if (!input_done_) {
        absl::StatusOr<bool> got = ReadExample(&scratch_);
        if (!got.ok()) {
          failed_ = got.status();
          return failed_;
        }
        if (!*got) {
          input_done_ = true;
          continue;
        }
        if (buffer_.size() < static_cast<size_t>(shuffle_buffer_)) {
          buffer_.push_back(std::move(scratch_));
          scratch_ = Example();
          continue;
        }
        std::swap(buffer_[rng_.Below(buffer_.size())], scratch_);
        Append(scratch_, out);
      } else {
        if (buffer_.empty()) break;
        std::swap(buffer_[rng_.Below(buffer_.size())], buffer_.back());
        Append(buffer_.back(), out);
        buffer_.pop_back();
      }
    }
    return out->batch_size > 0;
  }

  BadLines stats() const override { return bad_; }
  int64_t examples() const override { return examples_; }

 private:
  void Append(const Example& example, TabularBatch* out) {
    ++out->batch_size;
    ++examples_;
    out->labels.push_back(example.label);
    out->dense.insert(out->dense.end(), example.dense.begin(),
                      example.dense.end());
    uint32_t begin = 0;
    for (int k = 0; k < num_fields_; ++k) {
      TabularBatch::Field& field = out->fields[k];
      field.offsets.push_back(static_cast<int64_t>(field.ids.size()));
      const uint32_t end = example.bag_ends[k];
      field.ids.insert(field.ids.end(), example.ids.begin() + begin,
                       example.ids.begin() + end);
      begin = end;
    }
  }

  // Parses the next good line into *example; false at the end of the
  // partition.
  absl::StatusOr<bool> ReadExample(Example* example) {
    while (true) {
      if (line_reader_ == nullptr) {
        if (next_unit_ == units_.size()) return false;
        TESSERA_RETURN_IF_ERROR(StartUnit(units_[next_unit_++]));
        if (line_reader_ == nullptr) continue;
      }
      absl::string_view line;
      int64_t offset = 0;
      TESSERA_ASSIGN_OR_RETURN(CappedLineReader::Kind kind,
                               line_reader_->Next(&line, &offset));
      if (kind == CappedLineReader::kEnd ||
          (!unit_.whole && offset >= unit_.end)) {
        line_reader_.reset();
        continue;
      }
      if (lines_in_unit_ == 0) first_line_offset_ = offset;
      ++lines_in_unit_;
      if (kind == CappedLineReader::kTooLong) {
        TESSERA_RETURN_IF_ERROR(AddBadLine(
            absl::StrCat("line longer than ", kMaxTabularLineBytes, " bytes")));
        continue;
      }
      const bool header = options_.format == TabularFormat::kCsv &&
                          lines_in_unit_ == 1 &&
                          (unit_.whole || unit_.begin == 0);
      if (header || line.empty()) continue;
      example->Clear();
      std::string reason;
      const bool parsed =
          options_.format == TabularFormat::kCriteo
              ? ParseCriteoLine(line, example, &reason)
              : ParseCsvLine(line, options_.csv, csv_columns_[unit_.file],
                             &splitter_, example, &reason);
      if (parsed) return true;
      TESSERA_RETURN_IF_ERROR(AddBadLine(reason));
    }
  }

  absl::Status StartUnit(const TabularUnit& unit) {
    unit_ = unit;
    lines_in_unit_ = 0;
    base_newlines_ = -1;
    const std::string& path = files_[unit.file];
    const int64_t start = unit.whole || unit.begin == 0 ? 0 : unit.begin - 1;
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source,
                             OpenSource(path, start));
    line_reader_ = std::make_unique<CappedLineReader>(std::move(source), start);
    if (!unit.whole && unit.begin > 0) {
      // The line that starts at unit.begin - 1 or earlier belongs to the
      // partition before; skip it.
      TESSERA_ASSIGN_OR_RETURN(bool more,
                               line_reader_->DiscardThroughNewline());
      if (!more) line_reader_.reset();
    }
    return absl::OkStatus();
  }

  absl::Status AddBadLine(const std::string& reason) {
    ++bad_.count;
    if (bad_.count > kLoggedBadLines) return absl::OkStatus();
    int64_t line_number = lines_in_unit_;
    if (!unit_.whole && unit_.begin > 0) {
      // Counting newlines before the range costs a read of the file up to
      // it: done once per range, only for a bad line that is logged.
      if (base_newlines_ < 0) {
        TESSERA_ASSIGN_OR_RETURN(
            base_newlines_,
            CountNewlines(files_[unit_.file], first_line_offset_));
      }
      line_number += base_newlines_;
    }
    std::string text =
        absl::StrCat(files_[unit_.file], ":", line_number, ": ", reason);
    LOG(WARNING) << "skipping bad line " << text
                 << (bad_.count == kLoggedBadLines
                         ? " (further bad lines of this partition are only "
                           "counted)"
                         : "");
    if (bad_.count == 1) bad_.first = std::move(text);
    return absl::OkStatus();
  }

  const TabularOptions options_;
  const std::vector<std::string> files_;
  const std::vector<CsvColumns> csv_columns_;
  const std::vector<TabularUnit> units_;
  const int num_dense_;
  const int num_fields_;
  const int batch_size_;
  const int shuffle_buffer_;

  SplitMix64 rng_;
  CsvSplitter splitter_;
  size_t next_unit_ = 0;
  TabularUnit unit_;
  std::unique_ptr<CappedLineReader> line_reader_;  // Null between units.
  int64_t lines_in_unit_ = 0;      // Lines read in unit_, bad ones included.
  int64_t first_line_offset_ = 0;  // Where unit_'s first line starts.
  int64_t base_newlines_ = -1;     // Newlines before it; -1: not counted.
  bool input_done_ = false;
  std::vector<Example> buffer_;
  Example scratch_;
  BadLines bad_;
  int64_t examples_ = 0;
  absl::Status failed_;
};

}  // namespace

uint64_t CategoryId(int field, absl::string_view value) {
  return Mix64(StableHash(std::string_view(value.data(), value.size())) +
               kFieldSalt * (static_cast<uint64_t>(field) + 1));
}

float CriteoDenseValue(int64_t x) {
  return x > 0 ? static_cast<float>(std::log1p(static_cast<double>(x))) : 0.0f;
}

absl::StatusOr<TabularOptions> TabularOptionsFromConfig(
    const v1::DatasetConfig& config, DatasetSplit split) {
  TabularOptions options;
  switch (config.format()) {
    case v1::DatasetConfig::CRITEO:
      options.format = TabularFormat::kCriteo;
      break;
    case v1::DatasetConfig::CSV:
      options.format = TabularFormat::kCsv;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dataset format ", static_cast<int>(config.format()),
                       " is not CRITEO or CSV"));
  }
  options.path =
      split == DatasetSplit::kTrain ? config.path() : config.test_path();
  if (options.path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset ", split == DatasetSplit::kTrain ? "path" : "test_path",
        " is empty"));
  }
  const v1::CsvSchema& csv = config.csv();
  options.csv.label = csv.label();
  options.csv.dense.assign(csv.dense().begin(), csv.dense().end());
  options.csv.categorical.assign(csv.categorical().begin(),
                                 csv.categorical().end());
  if (!csv.delimiter().empty()) options.csv.delimiter = csv.delimiter();
  options.csv.multi_value_separator = csv.multi_value_separator();
  return options;
}

absl::StatusOr<std::unique_ptr<TabularSource>> TabularSource::Open(
    const TabularOptions& options) {
  if (options.format == TabularFormat::kCsv) {
    TESSERA_RETURN_IF_ERROR(CheckCsvOptions(options.csv));
  } else if (options.format != TabularFormat::kCriteo) {
    return absl::InvalidArgumentError("unknown tabular format");
  }
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path root(options.path);
  const fs::file_status status = fs::status(root, error);
  if (error || !fs::exists(status)) {
    return absl::NotFoundError(
        absl::StrCat("dataset ", options.path, " does not exist"));
  }
  std::vector<std::string> files;
  if (fs::is_directory(status)) {
    for (fs::directory_iterator it(root, error), end; !error && it != end;
         it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      std::error_code type_error;
      if (!fs::is_regular_file(it->path(), type_error)) continue;
      files.push_back(it->path().string());
    }
    if (error) {
      return absl::ErrnoToStatus(error.value(),
                                 absl::StrCat("cannot list ", options.path));
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "dataset directory ", options.path, " holds no data file"));
    }
  } else {
    files.push_back(options.path);
  }
  std::vector<int64_t> sizes;
  for (const std::string& file : files) {
    const uintmax_t size = fs::file_size(file, error);
    if (error) {
      return absl::ErrnoToStatus(error.value(),
                                 absl::StrCat("cannot stat ", file));
    }
    sizes.push_back(static_cast<int64_t>(size));
  }
  std::vector<CsvColumns> columns;
  if (options.format == TabularFormat::kCsv) {
    for (const std::string& file : files) {
      TESSERA_ASSIGN_OR_RETURN(CsvColumns file_columns,
                               ReadCsvHeader(file, options.csv));
      columns.push_back(std::move(file_columns));
    }
  }
  return std::unique_ptr<TabularSource>(new TabularSource(
      options, std::move(files), std::move(sizes), std::move(columns)));
}

TabularSource::TabularSource(const TabularOptions& options,
                             std::vector<std::string> files,
                             std::vector<int64_t> sizes,
                             std::vector<std::vector<int>> csv_columns)
    : options_(options),
      files_(std::move(files)),
      sizes_(std::move(sizes)),
      csv_columns_(std::move(csv_columns)),
      num_dense_(options.format == TabularFormat::kCriteo
                     ? kCriteoNumDense
                     : static_cast<int>(options.csv.dense.size())),
      num_fields_(options.format == TabularFormat::kCriteo
                      ? kCriteoNumCategorical
                      : static_cast<int>(options.csv.categorical.size())) {}

std::vector<TabularUnit> TabularSource::PartitionUnits(
    int partition, int num_partitions) const {
  std::vector<TabularUnit> units;
  // Plain files: the byte range [lo, hi) of their concatenation.
  unsigned __int128 total = 0;
  for (size_t f = 0; f < files_.size(); ++f) {
    if (!IsGzipName(files_[f])) total += sizes_[f];
  }
  const int64_t lo = static_cast<int64_t>(total * partition / num_partitions);
  const int64_t hi =
      static_cast<int64_t>(total * (partition + 1) / num_partitions);
  int64_t start = 0;
  for (size_t f = 0; f < files_.size(); ++f) {
    if (IsGzipName(files_[f])) continue;
    const int64_t begin = std::max(lo, start) - start;
    const int64_t end = std::min(hi, start + sizes_[f]) - start;
    if (begin < end) {
      units.push_back({static_cast<int>(f), begin, end, false});
    }
    start += sizes_[f];
  }
  // Gzip files: largest first to the least loaded partition.
  std::vector<int> gzip;
  for (size_t f = 0; f < files_.size(); ++f) {
    if (IsGzipName(files_[f])) gzip.push_back(static_cast<int>(f));
  }
  std::stable_sort(gzip.begin(), gzip.end(),
                   [&](int a, int b) { return sizes_[a] > sizes_[b]; });
  std::vector<int64_t> load(num_partitions, 0);
  for (int f : gzip) {
    const int p = std::min_element(load.begin(), load.end()) - load.begin();
    load[p] += sizes_[f];
    if (p == partition) units.push_back({f, 0, sizes_[f], true});
  }
  std::sort(units.begin(), units.end(),
            [](const TabularUnit& a, const TabularUnit& b) {
              return a.file < b.file;
            });
  return units;
}

absl::StatusOr<std::unique_ptr<TabularReader>> TabularSource::OpenPartition(
    int partition, int num_partitions, const ReadOptions& options) const {
  if (num_partitions < 1 || partition < 0 || partition >= num_partitions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition ", partition, " of ", num_partitions, " does not exist"));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size ", options.batch_size, " is not positive"));
  }
  if (options.shuffle_buffer < 1 ||
      options.shuffle_buffer > kMaxShuffleBuffer) {
    return absl::InvalidArgumentError(
        absl::StrCat("shuffle_buffer ", options.shuffle_buffer,
                     " is not in [1, ", kMaxShuffleBuffer, "]"));
  }
  return std::unique_ptr<TabularReader>(new Reader(
      options_, files_, csv_columns_, PartitionUnits(partition, num_partitions),
      num_dense_, num_fields_, partition, options));
}

absl::StatusOr<std::unique_ptr<TabularSource>> OpenTabularSource(
    const v1::DatasetConfig& config, DatasetSplit split) {
  TESSERA_ASSIGN_OR_RETURN(TabularOptions options,
                           TabularOptionsFromConfig(config, split));
  return TabularSource::Open(options);
}

absl::StatusOr<TabularSource::ReadOptions> TabularReadOptionsFromConfig(
    const v1::DatasetConfig& config, int batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size ", batch_size, " is not positive"));
  }
  TabularSource::ReadOptions options;
  options.batch_size = batch_size;
  options.seed = config.seed();
  if (config.shuffle_buffer() < 0 ||
      config.shuffle_buffer() > TabularSource::kMaxShuffleBuffer) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset shuffle_buffer ", config.shuffle_buffer(),
                     " is not in [0, ", TabularSource::kMaxShuffleBuffer, "]"));
  }
  if (config.shuffle_buffer() > 0) {
    options.shuffle_buffer = config.shuffle_buffer();
  }
  return options;
}

}  // namespace worker
}  // namespace tessera

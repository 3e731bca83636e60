#ifndef TESSERA_WORKER_DATA_INPUT_FILE_H_
#define TESSERA_WORKER_DATA_INPUT_FILE_H_

// Sequential reading of data files that may or may not be gzip-compressed.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tessera {
namespace worker {

// A file read front to back through zlib: gzip-compressed files are
// decompressed, any other file is read as is. Thread-compatible.
class InputFile {
 public:
  // NotFound if `path` does not exist, another errno-derived code if it
  // cannot be opened.
  static absl::StatusOr<std::unique_ptr<InputFile>> Open(
      const std::string& path);

  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }

  // Reads up to out.size() bytes and returns how many were read: fewer only
  // at the end of the file, 0 once it is reached. DataLoss if the compressed
  // stream is corrupt or ends before its gzip trailer (a truncated .gz).
  absl::StatusOr<size_t> Read(absl::Span<char> out);

  // Reads exactly out.size() bytes. DataLoss, naming `what` and how many
  // bytes were missing, if the file ends first.
  absl::Status ReadFully(absl::Span<char> out, absl::string_view what);

 private:
  InputFile(std::string path, void* file)
      : path_(std::move(path)), file_(file) {}

  const std::string path_;
  void* const file_;  // A zlib gzFile, owned.
};

// Splits an InputFile into lines. A line excludes its '\n' and a '\r' before
// it; a last line without '\n' still counts. Thread-compatible.
class LineReader {
 public:
  // `file` is not owned and must outlive the reader.
  explicit LineReader(InputFile* file);

  // Points *line at the next line and returns true, or returns false at the
  // end of the file. *line stays valid until the next call. Errors are the
  // file's (see InputFile::Read).
  absl::StatusOr<bool> Next(absl::string_view* line);

  // The 1-based number of the line last returned (0 before the first).
  int64_t line_number() const { return line_number_; }

 private:
  InputFile* const file_;  // Not owned; outlives this.
  std::string buffer_;
  size_t begin_ = 0;  // Start of the unread part of buffer_.
  bool eof_ = false;
  int64_t line_number_ = 0;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_INPUT_FILE_H_

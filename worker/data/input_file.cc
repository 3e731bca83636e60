#include "worker/data/input_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace worker {
namespace {

constexpr unsigned kGzBufferBytes = 256 << 10;
constexpr size_t kLineChunkBytes = 1 << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<InputFile>> InputFile::Open(
    const std::string& path) {
  errno = 0;
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int error = errno != 0 ? errno : ENOMEM;
    return absl::ErrnoToStatus(error, absl::StrCat("cannot open ", path));
  }
  gzbuffer(file, kGzBufferBytes);
  return std::unique_ptr<InputFile>(new InputFile(path, file));
}

InputFile::~InputFile() { gzclose_r(static_cast<gzFile>(file_)); }

absl::StatusOr<size_t> InputFile::Read(absl::Span<char> out) {
  gzFile file = static_cast<gzFile>(file_);
  size_t total = 0;
  while (total < out.size()) {
    const unsigned want = static_cast<unsigned>(
        std::min<size_t>(out.size() - total, INT_MAX / 2));
    const int got = gzread(file, out.data() + total, want);
    // zlib reports a truncated gzip stream as Z_BUF_ERROR with a short read,
    // not as -1, so the error state is checked after every read.
    int error = Z_OK;
    const char* message = gzerror(file, &error);
    if (got < 0 || (error != Z_OK && error != Z_STREAM_END)) {
      if (error == Z_ERRNO) {
        return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path_));
      }
      return absl::DataLossError(absl::StrCat(
          "reading ", path_, ": ",
          error == Z_BUF_ERROR ? "truncated gzip stream" : "corrupt data",
          " (zlib: ", message, ")"));
    }
    if (got == 0) break;
    total += got;
  }
  return total;
}

absl::Status InputFile::ReadFully(absl::Span<char> out,
                                  absl::string_view what) {
  absl::StatusOr<size_t> got = Read(out);
  if (!got.ok()) return got.status();
  if (*got != out.size()) {
    return absl::DataLossError(
        absl::StrCat(path_, " is truncated: it ends ", out.size() - *got,
                     " bytes short of the ", out.size(), " bytes of ", what));
  }
  return absl::OkStatus();
}

LineReader::LineReader(InputFile* file) : file_(file) {}

absl::StatusOr<bool> LineReader::Next(absl::string_view* line) {
  size_t search_from = begin_;
  while (true) {
    const size_t newline = buffer_.find('\n', search_from);
    if (newline != std::string::npos) {
      size_t end = newline;
      if (end > begin_ && buffer_[end - 1] == '\r') --end;
      *line = absl::string_view(buffer_.data() + begin_, end - begin_);
      begin_ = newline + 1;
      ++line_number_;
      return true;
    }
    if (eof_) {
      if (begin_ >= buffer_.size()) return false;
      size_t end = buffer_.size();
      if (end > begin_ && buffer_[end - 1] == '\r') --end;
      *line = absl::string_view(buffer_.data() + begin_, end - begin_);
      begin_ = buffer_.size();
      ++line_number_;
      return true;
    }
    // Keep the partial line, drop what was consumed, append a chunk.
    buffer_.erase(0, begin_);
    begin_ = 0;
    search_from = buffer_.size();
    buffer_.resize(search_from + kLineChunkBytes);
    absl::StatusOr<size_t> got =
        file_->Read(absl::MakeSpan(&buffer_[search_from], kLineChunkBytes));
    if (!got.ok()) return got.status();
    buffer_.resize(search_from + *got);
    if (*got == 0) eof_ = true;
  }
}

}  // namespace worker
}  // namespace tessera

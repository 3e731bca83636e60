// Model files in torch.save's zip format and in safetensors, without libtorch.
//
// References (read, not copied): PyTorch's torch/serialization.py (_save,
// _load), torch/_weights_only_unpickler.py (what weights_only=True accepts),
// caffe2/serialize/inline_container.cc (record layout, 64-byte alignment),
// PKWARE's APPNOTE.TXT (zip, zip64), and the safetensors format description.
#include "tools/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/base/config.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ps/common/checked_math.h"
#include "ps/common/status_macros.h"

// Caveat: both formats are little-endian and tensors are written and read by
// memcpy; a big-endian build stops here rather than write wrong files.
#if defined(ABSL_IS_BIG_ENDIAN)
#error "tools/model_file.cc assumes a little-endian host"
#endif

namespace tessera {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr uint64_t kU32Max = 0xFFFFFFFFu;

// ---- Little-endian fields ---------------------------------------------------

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xFF));
  out->push_back(static_cast<char>(v >> 8));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint16_t GetU16(const char* p) { return static_cast<uint16_t>(GetLE(p, 2)); }
uint32_t GetU32(const char* p) { return static_cast<uint32_t>(GetLE(p, 4)); }
uint64_t GetU64(const char* p) { return GetLE(p, 8); }

uint32_t Crc32(uint32_t crc, const char* data, size_t n) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(data), n));
}

// ---- Tensor declarations ----------------------------------------------------

int64_t ElementSize(ModelDType dtype) {
  return dtype == ModelDType::kInt64 ? 8 : 4;
}

bool ValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= static_cast<size_t>(n)) return false;
    for (int k = 1; k <= n; ++k) {
      const uint8_t d = static_cast<uint8_t>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // No overlong forms, surrogates or code points past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
        (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Row-major strides as PyTorch computes them (a dim of size 0 counts as 1).
std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

// Checks the declarations and returns each tensor's element count.
absl::StatusOr<std::vector<int64_t>> CheckTensorInfos(
    const std::vector<ModelTensorInfo>& tensors) {
  std::vector<int64_t> numels;
  absl::flat_hash_set<absl::string_view> names;
  int64_t total = 0;
  for (const ModelTensorInfo& t : tensors) {
    if (!ValidUtf8(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor name \"", absl::CEscape(t.name), "\" is not valid UTF-8"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", t.name, "\" is declared twice"));
    }
    int64_t numel, nbytes;
    // The product with every 0 dim taken as 1 bounds the strides as well.
    std::vector<int64_t> nonzero;
    for (int64_t d : t.shape) nonzero.push_back(std::max<int64_t>(d, 1));
    int64_t stride_bound;
    if (!CheckedProduct(t.shape, kMaxInt64, &numel) ||
        !CheckedMul(numel, ElementSize(t.dtype), &nbytes) ||
        !CheckedProduct(nonzero, kMaxInt64, &stride_bound) ||
        !CheckedAdd(total, nbytes, &total)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", t.name, "\" has a negative dim or a size past int64"));
    }
    numels.push_back(numel);
  }
  return numels;
}

// ---- The output file --------------------------------------------------------

// A temporary file beside the destination, buffered, renamed onto the
// destination by Commit(); removed if never committed.
class OutputFile {
 public:
  static absl::StatusOr<std::unique_ptr<OutputFile>> Create(
      const std::string& path) {
    static std::atomic<int> counter{0};
    const std::string tmp =
        absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
    const int fd =
        open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
    }
    return std::unique_ptr<OutputFile>(new OutputFile(path, tmp, fd));
  }

  ~OutputFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tmp_.c_str());
  }

  int64_t offset() const { return offset_; }

  absl::Status Write(absl::string_view data) {
    offset_ += data.size();
    if (buffer_.size() + data.size() <= kBufferSize) {
      buffer_.append(data.data(), data.size());
      return absl::OkStatus();
    }
    TESSERA_RETURN_IF_ERROR(Flush());
    if (data.size() < kBufferSize) {
      buffer_.append(data.data(), data.size());
      return absl::OkStatus();
    }
    return WriteFully(data);
  }

  // Overwrites bytes already written at `offset`.
  absl::Status WriteAt(int64_t offset, absl::string_view data) {
    TESSERA_RETURN_IF_ERROR(Flush());
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = pwrite(fd_, data.data() + done, data.size() - done,
                               offset + static_cast<int64_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error("write");
      done += n;
    }
    return absl::OkStatus();
  }

  absl::Status Commit() {
    TESSERA_RETURN_IF_ERROR(Flush());
    if (fsync(fd_) != 0) return Error("sync");
    const int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0) return Error("close");
    if (rename(tmp_.c_str(), path_.c_str()) != 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot rename ", tmp_, " to ", path_, ": ", std::strerror(errno)));
    }
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kBufferSize = 1 << 20;

  OutputFile(std::string path, std::string tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {
    buffer_.reserve(kBufferSize);
  }

  absl::Status Flush() {
    absl::Status s = WriteFully(buffer_);
    buffer_.clear();
    return s;
  }

  absl::Status WriteFully(absl::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error("write");
      done += n;
    }
    return absl::OkStatus();
  }

  absl::Status Error(absl::string_view what) const {
    return absl::UnavailableError(
        absl::StrCat("cannot ", what, " ", tmp_, ": ", std::strerror(errno)));
  }

  const std::string path_;
  const std::string tmp_;
  int fd_;
  bool committed_ = false;
  int64_t offset_ = 0;
  std::string buffer_;
};

// ---- The writer: a cursor over the declared tensors -------------------------

class WriterBase : public ModelFileWriter {
 public:
  absl::Status Append(absl::Span<const float> values) override {
    return AppendBytes(ModelDType::kFloat32,
                       reinterpret_cast<const char*>(values.data()),
                       values.size());
  }
  absl::Status Append(absl::Span<const int64_t> values) override {
    return AppendBytes(ModelDType::kInt64,
                       reinterpret_cast<const char*>(values.data()),
                       values.size());
  }

  absl::Status Finish() override {
    TESSERA_RETURN_IF_ERROR(Usable());
    if (current_ < tensors_.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("tensor \"", tensors_[current_].name, "\" lacks ",
                       remaining_ / ElementSize(tensors_[current_].dtype),
                       " of its ", numels_[current_], " values"));
    }
    absl::Status s = EndFile();
    if (s.ok()) s = file_->Commit();
    if (!s.ok()) return Failed(std::move(s));
    finished_ = true;
    return absl::OkStatus();
  }

  int64_t bytes_written() const override { return file_->offset(); }

 protected:
  WriterBase(std::unique_ptr<OutputFile> file,
             std::vector<ModelTensorInfo> tensors, std::vector<int64_t> numels)
      : file_(std::move(file)),
        tensors_(std::move(tensors)),
        numels_(std::move(numels)) {}

  // Called once the prologue is written: begins the first tensor.
  absl::Status Start() { return Failed(Advance()); }

  // Hooks of each format: before a tensor's first byte, for each of its
  // chunks, after its last byte, and after the last tensor.
  virtual absl::Status BeginTensor(size_t i) = 0;
  virtual absl::Status TensorData(absl::string_view bytes) {
    return file_->Write(bytes);
  }
  virtual absl::Status EndTensor(size_t i) = 0;
  virtual absl::Status EndFile() = 0;

  int64_t nbytes(size_t i) const {
    return numels_[i] * ElementSize(tensors_[i].dtype);
  }

  const std::unique_ptr<OutputFile> file_;
  const std::vector<ModelTensorInfo> tensors_;
  const std::vector<int64_t> numels_;

 private:
  absl::Status Usable() const {
    if (finished_) {
      return absl::FailedPreconditionError("the model file is finished");
    }
    if (!error_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the model file failed earlier: ", error_.ToString()));
    }
    return absl::OkStatus();
  }

  absl::Status Failed(absl::Status s) {
    if (!s.ok() && error_.ok()) error_ = s;
    return s;
  }

  // Begins the current tensor if it is not begun; ends it and moves on while
  // it is full (empty tensors pass through at once).
  absl::Status Advance() {
    while (current_ < tensors_.size()) {
      if (!begun_) {
        TESSERA_RETURN_IF_ERROR(BeginTensor(current_));
        begun_ = true;
        remaining_ = nbytes(current_);
      }
      if (remaining_ > 0) return absl::OkStatus();
      TESSERA_RETURN_IF_ERROR(EndTensor(current_));
      ++current_;
      begun_ = false;
    }
    return absl::OkStatus();
  }

  absl::Status AppendBytes(ModelDType dtype, const char* data, size_t count) {
    TESSERA_RETURN_IF_ERROR(Usable());
    if (count == 0) return absl::OkStatus();
    if (current_ >= tensors_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(count, " values past the last tensor"));
    }
    const ModelTensorInfo& t = tensors_[current_];
    if (dtype != t.dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", t.name, "\" is ",
                       t.dtype == ModelDType::kInt64 ? "int64" : "float32",
                       "; got values of the other type"));
    }
    const int64_t left = remaining_ / ElementSize(dtype);
    if (!SizeAtMost(count, left)) {
      return absl::InvalidArgumentError(
          absl::StrCat("a chunk of ", count, " values is longer than the ",
                       left, " that tensor \"", t.name, "\" still lacks"));
    }
    const int64_t bytes = static_cast<int64_t>(count) * ElementSize(dtype);
    TESSERA_RETURN_IF_ERROR(Failed(TensorData(absl::string_view(data, bytes))));
    remaining_ -= bytes;
    return Failed(Advance());
  }

  size_t current_ = 0;     // the tensor that receives data
  bool begun_ = false;     // BeginTensor(current_) has run
  int64_t remaining_ = 0;  // bytes current_ still lacks, once begun
  bool finished_ = false;
  absl::Status error_;  // the first write error; every later call fails
};

// ---- torch.save's zip format ------------------------------------------------

// The pickle of data.pkl, as Python's pickler (protocol 2) writes a
// collections.OrderedDict of tensors, without memo entries.
class PickleWriter {
 public:
  void Proto() { out_ += "\x80\x02"; }
  void Global(absl::string_view module, absl::string_view name) {
    absl::StrAppend(&out_, "c", module, "\n", name, "\n");
  }
  void Mark() { out_ += '('; }
  void Tuple() { out_ += 't'; }
  void EmptyTuple() { out_ += ')'; }
  void Reduce() { out_ += 'R'; }
  void PersistentId() { out_ += 'Q'; }
  void SetItems() { out_ += 'u'; }
  void False() { out_ += '\x89'; }
  void Stop() { out_ += '.'; }
  void String(absl::string_view s) {
    out_ += 'X';
    PutU32(&out_, static_cast<uint32_t>(s.size()));
    out_.append(s.data(), s.size());
  }
  void Int(int64_t v) {
    if (v >= 0 && v < 0x100) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 0x10000) {
      out_ += 'M';
      PutU16(&out_, static_cast<uint16_t>(v));
    } else if (v >= std::numeric_limits<int32_t>::min() &&
               v <= std::numeric_limits<int32_t>::max()) {
      out_ += 'J';
      PutU32(&out_, static_cast<uint32_t>(v));
    } else {
      // LONG1: the shortest little-endian two's complement.
      std::string bytes;
      uint64_t u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) {
        bytes.push_back(static_cast<char>(u >> (8 * i)));
        const int64_t rest = v >> (8 * i + 7);  // sign of what remains
        if (i < 7 && (rest == 0 || rest == -1)) break;
      }
      out_ += '\x8a';
      out_ += static_cast<char>(bytes.size());
      out_ += bytes;
    }
  }
  void IntTuple(const std::vector<int64_t>& v) {
    if (v.empty()) return EmptyTuple();
    if (v.size() > 3) Mark();
    for (int64_t x : v) Int(x);
    if (v.size() > 3) return Tuple();
    out_ += static_cast<char>(0x84 + v.size());  // TUPLE1, TUPLE2, TUPLE3
  }
  void NewOrderedDict() {
    Global("collections", "OrderedDict");
    EmptyTuple();
    Reduce();
  }

  std::string& out() { return out_; }

 private:
  std::string out_;
};

std::string StorageKey(size_t i) { return absl::StrCat(i); }

std::string TorchPickle(const std::vector<ModelTensorInfo>& tensors,
                        const std::vector<int64_t>& numels) {
  PickleWriter p;
  p.Proto();
  p.NewOrderedDict();
  constexpr size_t kBatch = 1000;  // Python's pickler batches SETITEMS so
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ModelTensorInfo& t = tensors[i];
    if (i % kBatch == 0) p.Mark();
    p.String(t.name);
    // _rebuild_tensor_v2(storage, storage_offset, size, stride,
    //                    requires_grad, backward_hooks)
    p.Global("torch._utils", "_rebuild_tensor_v2");
    p.Mark();
    p.Mark();
    p.String("storage");
    p.Global("torch",
             t.dtype == ModelDType::kInt64 ? "LongStorage" : "FloatStorage");
    p.String(StorageKey(i));
    p.String("cpu");
    p.Int(numels[i]);
    p.Tuple();
    p.PersistentId();
    p.Int(0);
    p.IntTuple(t.shape);
    p.IntTuple(ContiguousStrides(t.shape));
    p.False();
    p.NewOrderedDict();
    p.Tuple();
    p.Reduce();
    if (i % kBatch == kBatch - 1 || i + 1 == tensors.size()) p.SetItems();
  }
  p.Stop();
  return std::move(p.out());
}

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr int kLocalHeaderSize = 30;
constexpr int kCentralHeaderSize = 46;
constexpr int kEndSize = 22;
constexpr int kZip64EndSize = 56;
constexpr int kZip64LocatorSize = 20;
constexpr int kAlignment = 64;       // PyTorch's kFieldAlignment
constexpr uint16_t kDosDate = 0x21;  // 1980-01-01: files are reproducible
constexpr uint16_t kDosTime = 0;
constexpr char kArchive[] = "archive/";

class PtWriter : public WriterBase {
 public:
  static absl::StatusOr<std::unique_ptr<ModelFileWriter>> Create(
      std::unique_ptr<OutputFile> file, std::vector<ModelTensorInfo> tensors,
      std::vector<int64_t> numels, const ModelFileWriterOptions& options) {
    std::unique_ptr<PtWriter> w(new PtWriter(
        std::move(file), std::move(tensors), std::move(numels), options));
    TESSERA_RETURN_IF_ERROR(
        w->WriteEntry("data.pkl", TorchPickle(w->tensors_, w->numels_)));
    TESSERA_RETURN_IF_ERROR(w->WriteEntry("byteorder", "little"));
    TESSERA_RETURN_IF_ERROR(w->Start());
    return std::unique_ptr<ModelFileWriter>(std::move(w));
  }

 private:
  struct Entry {
    std::string name;
    int64_t header_offset;
    int64_t size;
    uint32_t crc;
  };

  PtWriter(std::unique_ptr<OutputFile> file,
           std::vector<ModelTensorInfo> tensors, std::vector<int64_t> numels,
           const ModelFileWriterOptions& options)
      : WriterBase(std::move(file), std::move(tensors), std::move(numels)),
        force_zip64_(options.force_zip64) {}

  // Writes a local header (CRC 0 unless known) whose extra field pads the
  // data to kAlignment, as PyTorch does: [zip64 sizes] then "FB" padding.
  absl::Status BeginEntry(absl::string_view name, int64_t size, uint32_t crc) {
    Entry e{absl::StrCat(kArchive, name), file_->offset(), size, crc};
    const bool zip64 = force_zip64_ || static_cast<uint64_t>(size) >= kU32Max;
    std::string extra;
    if (zip64) {
      PutU16(&extra, 0x0001);
      PutU16(&extra, 16);
      PutU64(&extra, size);
      PutU64(&extra, size);
    }
    const int64_t unpadded =
        e.header_offset + kLocalHeaderSize + e.name.size() + extra.size() + 4;
    const int64_t padding = (kAlignment - unpadded % kAlignment) % kAlignment;
    PutU16(&extra, 0x4246);  // "FB"
    PutU16(&extra, static_cast<uint16_t>(padding));
    extra.append(padding, 'Z');

    std::string h;
    PutU32(&h, kLocalHeaderSig);
    PutU16(&h, zip64 ? 45 : 20);  // version needed to extract
    PutU16(&h, 0);                // flags
    PutU16(&h, 0);                // stored
    PutU16(&h, kDosTime);
    PutU16(&h, kDosDate);
    PutU32(&h, crc);
    PutU32(&h, zip64 ? kU32Max : size);
    PutU32(&h, zip64 ? kU32Max : size);
    PutU16(&h, static_cast<uint16_t>(e.name.size()));
    PutU16(&h, static_cast<uint16_t>(extra.size()));
    h += e.name;
    h += extra;
    entries_.push_back(std::move(e));
    return file_->Write(h);
  }

  absl::Status WriteEntry(absl::string_view name, absl::string_view data) {
    TESSERA_RETURN_IF_ERROR(
        BeginEntry(name, data.size(), Crc32(0, data.data(), data.size())));
    return file_->Write(data);
  }

  absl::Status BeginTensor(size_t i) override {
    crc_ = 0;
    return BeginEntry(absl::StrCat("data/", StorageKey(i)), nbytes(i), 0);
  }

  absl::Status TensorData(absl::string_view bytes) override {
    crc_ = Crc32(crc_, bytes.data(), bytes.size());
    return file_->Write(bytes);
  }

  absl::Status EndTensor(size_t) override {
    Entry& e = entries_.back();
    e.crc = crc_;
    std::string crc;
    PutU32(&crc, crc_);
    return file_->WriteAt(e.header_offset + 14, crc);
  }

  absl::Status EndFile() override {
    TESSERA_RETURN_IF_ERROR(WriteEntry("version", "3\n"));
    const int64_t cd_offset = file_->offset();
    for (const Entry& e : entries_) {
      const bool big_size =
          force_zip64_ || static_cast<uint64_t>(e.size) >= kU32Max;
      const bool big_offset =
          force_zip64_ || static_cast<uint64_t>(e.header_offset) >= kU32Max;
      std::string extra;
      if (big_size || big_offset) {
        PutU16(&extra, 0x0001);
        PutU16(&extra, (big_size ? 16 : 0) + (big_offset ? 8 : 0));
        if (big_size) {
          PutU64(&extra, e.size);
          PutU64(&extra, e.size);
        }
        if (big_offset) PutU64(&extra, e.header_offset);
      }
      std::string h;
      PutU32(&h, kCentralHeaderSig);
      PutU16(&h, (3 << 8) | 45);  // made by: Unix, zip 4.5
      PutU16(&h, extra.empty() ? 20 : 45);
      PutU16(&h, 0);  // flags
      PutU16(&h, 0);  // stored
      PutU16(&h, kDosTime);
      PutU16(&h, kDosDate);
      PutU32(&h, e.crc);
      PutU32(&h, big_size ? kU32Max : e.size);
      PutU32(&h, big_size ? kU32Max : e.size);
      PutU16(&h, static_cast<uint16_t>(e.name.size()));
      PutU16(&h, static_cast<uint16_t>(extra.size()));
      PutU16(&h, 0);               // comment length
      PutU16(&h, 0);               // disk number
      PutU16(&h, 0);               // internal attributes
      PutU32(&h, 0100644u << 16);  // external attributes: rw-r--r--
      PutU32(&h, big_offset ? kU32Max : e.header_offset);
      h += e.name;
      h += extra;
      TESSERA_RETURN_IF_ERROR(file_->Write(h));
    }
    const int64_t cd_size = file_->offset() - cd_offset;
    const uint64_t n = entries_.size();
    const bool zip64 = force_zip64_ || n >= 0xFFFF ||
                       static_cast<uint64_t>(cd_size) >= kU32Max ||
                       static_cast<uint64_t>(cd_offset) >= kU32Max;
    std::string end;
    if (zip64) {
      const int64_t zip64_end_offset = file_->offset();
      PutU32(&end, kZip64EndSig);
      PutU64(&end, kZip64EndSize - 12);  // size of the rest of the record
      PutU16(&end, (3 << 8) | 45);
      PutU16(&end, 45);
      PutU32(&end, 0);  // this disk
      PutU32(&end, 0);  // disk of the central directory
      PutU64(&end, n);
      PutU64(&end, n);
      PutU64(&end, cd_size);
      PutU64(&end, cd_offset);
      PutU32(&end, kZip64LocatorSig);
      PutU32(&end, 0);
      PutU64(&end, zip64_end_offset);
      PutU32(&end, 1);  // total disks
    }
    PutU32(&end, kEndSig);
    PutU16(&end, 0);
    PutU16(&end, 0);
    PutU16(&end, zip64 ? 0xFFFF : n);
    PutU16(&end, zip64 ? 0xFFFF : n);
    PutU32(&end, zip64 ? kU32Max : cd_size);
    PutU32(&end, zip64 ? kU32Max : cd_offset);
    PutU16(&end, 0);  // comment length
    return file_->Write(end);
  }

  const bool force_zip64_;
  std::vector<Entry> entries_;
  uint32_t crc_ = 0;  // of the tensor being written
};

// ---- safetensors
// --------------------------------------------------------------

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (char c : s) {
    const uint8_t u = static_cast<uint8_t>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      absl::StrAppendFormat(out, "\\u%04x", u);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

constexpr uint64_t kMaxSafetensorsHeader = 100000000;  // safetensors' limit

class SafetensorsWriter : public WriterBase {
 public:
  static absl::StatusOr<std::unique_ptr<ModelFileWriter>> Create(
      std::unique_ptr<OutputFile> file, std::vector<ModelTensorInfo> tensors,
      std::vector<int64_t> numels, const ModelFileWriterOptions& options) {
    std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter(
        std::move(file), std::move(tensors), std::move(numels)));
    std::string header = "{\"__metadata__\":{";
    bool has_format = false;
    absl::flat_hash_set<absl::string_view> keys;
    for (const auto& [key, value] : options.metadata) {
      if (!ValidUtf8(key) || !ValidUtf8(value)) {
        return absl::InvalidArgumentError("metadata is not valid UTF-8");
      }
      if (!keys.insert(key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata key \"", key, "\" is given twice"));
      }
      if (key == "format") has_format = true;
      if (header.back() != '{') header += ',';
      AppendJsonString(&header, key);
      header += ':';
      AppendJsonString(&header, value);
    }
    if (!has_format) {
      absl::StrAppend(&header, header.back() != '{' ? "," : "",
                      "\"format\":\"pt\"");
    }
    header += '}';
    int64_t offset = 0;
    for (size_t i = 0; i < w->tensors_.size(); ++i) {
      const ModelTensorInfo& t = w->tensors_[i];
      header += ',';
      AppendJsonString(&header, t.name);
      absl::StrAppend(&header, ":{\"dtype\":\"",
                      t.dtype == ModelDType::kInt64 ? "I64" : "F32",
                      "\",\"shape\":[", absl::StrJoin(t.shape, ","),
                      "],\"data_offsets\":[", offset, ",",
                      offset + w->nbytes(i), "]}");
      offset += w->nbytes(i);  // no overflow: CheckTensorInfos bounds the sum
    }
    header += '}';
    header.append((8 - header.size() % 8) % 8, ' ');
    if (header.size() > kMaxSafetensorsHeader) {
      return absl::InvalidArgumentError(
          absl::StrCat("the safetensors header would be ", header.size(),
                       " bytes, past the format's ", kMaxSafetensorsHeader));
    }
    std::string prefix;
    PutU64(&prefix, header.size());
    TESSERA_RETURN_IF_ERROR(w->file_->Write(prefix));
    TESSERA_RETURN_IF_ERROR(w->file_->Write(header));
    TESSERA_RETURN_IF_ERROR(w->Start());
    return std::unique_ptr<ModelFileWriter>(std::move(w));
  }

 private:
  using WriterBase::WriterBase;

  absl::Status BeginTensor(size_t) override { return absl::OkStatus(); }
  absl::Status EndTensor(size_t) override { return absl::OkStatus(); }
  absl::Status EndFile() override { return absl::OkStatus(); }
};

// ---- Reading: the input file ------------------------------------------------

class InputFile {
 public:
  static absl::StatusOr<std::unique_ptr<InputFile>> Open(
      const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return absl::NotFoundError(absl::StrCat(path, " is not a regular file"));
    }
    return std::unique_ptr<InputFile>(new InputFile(path, fd, st.st_size));
  }
  ~InputFile() { close(fd_); }

  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads [offset, offset + n) into `out`; DataLoss if it is not all within
  // the file.
  absl::Status ReadAt(int64_t offset, int64_t n, char* out) const {
    if (!RangeWithin(offset, n, 0, size_)) {
      return absl::DataLossError(absl::StrCat(
          "bytes [", offset, ", +", n, ") lie past the end of the file (",
          size_, " bytes): truncated?"));
    }
    int64_t done = 0;
    while (done < n) {
      const ssize_t r = pread(fd_, out + done, n - done, offset + done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return absl::UnavailableError(
            absl::StrCat("cannot read ", path_, ": ", std::strerror(errno)));
      }
      if (r == 0) return absl::DataLossError("the file shrank while read");
      done += r;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadString(int64_t offset, int64_t n) const {
    if (!RangeWithin(offset, n, 0, size_)) {
      return ReadAt(offset, n, nullptr);  // the bounds error
    }
    std::string s(n, '\0');
    TESSERA_RETURN_IF_ERROR(ReadAt(offset, n, s.data()));
    return s;
  }

 private:
  InputFile(std::string path, int fd, int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  const int fd_;
  const int64_t size_;
};

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(what);
}

// Reads `numel` elements of `dtype` at `offset` into `t`; `crc`, if given,
// must be the CRC-32 of exactly those bytes.
absl::Status ReadTensorData(const InputFile& file, int64_t offset,
                            int64_t numel, ModelDType dtype,
                            const uint32_t* crc, PulledTensor* t) {
  const int64_t nbytes = numel * ElementSize(dtype);  // within the file
  char* dst;
  if (dtype == ModelDType::kInt64) {
    t->integer = true;
    t->int_values.resize(numel);
    dst = reinterpret_cast<char*>(t->int_values.data());
  } else {
    t->values.resize(numel);
    dst = reinterpret_cast<char*>(t->values.data());
  }
  TESSERA_RETURN_IF_ERROR(file.ReadAt(offset, nbytes, dst));
  if (crc != nullptr && Crc32(0, dst, nbytes) != *crc) {
    return Corrupt(absl::StrCat("the data of tensor \"", t->name,
                                "\" fail their CRC-32 check"));
  }
  return absl::OkStatus();
}

// ---- Reading: zip
// -------------------------------------------------------------

struct ZipEntry {
  std::string name;
  uint16_t flags;
  uint16_t method;
  uint32_t crc;
  int64_t compressed_size;
  int64_t size;
  int64_t header_offset;
};

constexpr int64_t kMaxCentralDirectory = 256 << 20;
constexpr int64_t kMaxPickle = 32 << 20;
constexpr int kMaxPickleValues = 1 << 21;

class ZipReader {
 public:
  explicit ZipReader(const InputFile* file) : file_(file) {}

  absl::Status Open() {
    // The end record: 22 bytes plus a comment of up to 65535 bytes.
    const int64_t tail_size =
        std::min<int64_t>(file_->size(), kEndSize + 65535);
    TESSERA_ASSIGN_OR_RETURN(
        std::string tail,
        file_->ReadString(file_->size() - tail_size, tail_size));
    int64_t end_pos = -1;
    for (int64_t i = tail_size - kEndSize; i >= 0; --i) {
      if (GetU32(&tail[i]) == kEndSig &&
          i + kEndSize + GetU16(&tail[i + 20]) <= tail_size) {
        end_pos = file_->size() - tail_size + i;
        break;
      }
    }
    if (end_pos < 0) {
      return Corrupt("no zip end-of-central-directory record: truncated?");
    }
    const char* e = &tail[end_pos - (file_->size() - tail_size)];
    uint64_t entries = GetU16(e + 10);
    uint64_t cd_size = GetU32(e + 12);
    uint64_t cd_offset = GetU32(e + 16);
    if (GetU16(e + 4) != 0 || GetU16(e + 6) != 0 || GetU16(e + 8) != entries) {
      return absl::UnimplementedError("multi-disk zip archives");
    }
    int64_t cd_limit = end_pos;  // the central directory ends before this
    if (end_pos >= kZip64LocatorSize) {
      char loc[kZip64LocatorSize];
      TESSERA_RETURN_IF_ERROR(
          file_->ReadAt(end_pos - kZip64LocatorSize, kZip64LocatorSize, loc));
      if (GetU32(loc) == kZip64LocatorSig) {
        const uint64_t z = GetU64(loc + 8);
        if (!SizeAtMost(z, end_pos - kZip64LocatorSize - kZip64EndSize)) {
          return Corrupt("the zip64 end record lies outside the file");
        }
        char rec[kZip64EndSize];
        TESSERA_RETURN_IF_ERROR(file_->ReadAt(z, kZip64EndSize, rec));
        if (GetU32(rec) != kZip64EndSig) {
          return Corrupt("the zip64 locator points at no zip64 end record");
        }
        if (GetU64(rec + 24) != GetU64(rec + 32)) {
          return absl::UnimplementedError("multi-disk zip archives");
        }
        entries = GetU64(rec + 32);
        cd_size = GetU64(rec + 40);
        cd_offset = GetU64(rec + 48);
        cd_limit = z;
      }
    }
    if (!SizeAtMost(cd_offset, cd_limit) ||
        !SizeAtMost(cd_size, cd_limit - static_cast<int64_t>(cd_offset))) {
      return Corrupt(absl::StrCat("the zip central directory (", cd_size,
                                  " bytes at ", cd_offset,
                                  ") lies outside the file: truncated?"));
    }
    if (cd_size > kMaxCentralDirectory ||
        entries > cd_size / kCentralHeaderSize) {
      return Corrupt(absl::StrCat("the zip central directory claims ", entries,
                                  " entries in ", cd_size, " bytes"));
    }
    TESSERA_ASSIGN_OR_RETURN(std::string cd,
                             file_->ReadString(cd_offset, cd_size));
    size_t pos = 0;
    for (uint64_t i = 0; i < entries; ++i) {
      if (cd.size() - pos < kCentralHeaderSize ||
          GetU32(&cd[pos]) != kCentralHeaderSig) {
        return Corrupt(
            absl::StrCat("zip central directory entry ", i, " is damaged"));
      }
      const char* h = &cd[pos];
      ZipEntry z;
      z.flags = GetU16(h + 8);
      z.method = GetU16(h + 10);
      z.crc = GetU32(h + 16);
      uint64_t csize = GetU32(h + 20), size = GetU32(h + 24);
      const size_t name_len = GetU16(h + 28), extra_len = GetU16(h + 30),
                   comment_len = GetU16(h + 32);
      uint64_t offset = GetU32(h + 42);
      if (cd.size() - pos - kCentralHeaderSize <
          name_len + extra_len + comment_len) {
        return Corrupt(absl::StrCat("zip central directory entry ", i,
                                    " runs past the directory"));
      }
      z.name = cd.substr(pos + kCentralHeaderSize, name_len);
      absl::string_view extra(h + kCentralHeaderSize + name_len, extra_len);
      // Zip64: the fields that are 0xFFFFFFFF follow, in this order.
      const bool need_size = size == kU32Max, need_csize = csize == kU32Max,
                 need_offset = offset == kU32Max;
      if (need_size || need_csize || need_offset) {
        bool found = false;
        while (extra.size() >= 4) {
          const uint16_t id = GetU16(extra.data());
          const uint16_t len = GetU16(extra.data() + 2);
          if (extra.size() - 4 < len) break;
          absl::string_view body = extra.substr(4, len);
          extra.remove_prefix(4 + len);
          if (id != 0x0001) continue;
          const size_t needed =
              8 * (int{need_size} + int{need_csize} + int{need_offset});
          if (body.size() < needed) break;
          const char* p = body.data();
          if (need_size) size = GetU64(p), p += 8;
          if (need_csize) csize = GetU64(p), p += 8;
          if (need_offset) offset = GetU64(p);
          found = true;
          break;
        }
        if (!found) {
          return Corrupt(
              absl::StrCat("zip entry ", z.name, " lacks its zip64 sizes"));
        }
      }
      if (!SizeAtMost(size, file_->size()) ||
          !SizeAtMost(csize, file_->size()) ||
          !SizeAtMost(offset, file_->size())) {
        return Corrupt(absl::StrCat("zip entry ", z.name,
                                    " claims sizes past the file's end"));
      }
      z.size = size;
      z.compressed_size = csize;
      z.header_offset = offset;
      if (!index_.emplace(z.name, entries_.size()).second) {
        return Corrupt(absl::StrCat("zip entry ", z.name, " appears twice"));
      }
      entries_.push_back(std::move(z));
      pos += kCentralHeaderSize + name_len + extra_len + comment_len;
    }
    return absl::OkStatus();
  }

  const std::vector<ZipEntry>& entries() const { return entries_; }

  const ZipEntry* Find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  // The offset of the entry's data, checked to lie within the file; the
  // entry must be stored, unencrypted.
  absl::StatusOr<int64_t> DataOffset(const ZipEntry& z) const {
    if (z.flags & 0x1) {
      return absl::UnimplementedError(
          absl::StrCat("zip entry ", z.name, " is encrypted"));
    }
    if (z.method != 0 || z.compressed_size != z.size) {
      return absl::UnimplementedError(absl::StrCat(
          "zip entry ", z.name,
          " is compressed; torch.save stores entries uncompressed"));
    }
    char h[kLocalHeaderSize];
    TESSERA_RETURN_IF_ERROR(
        file_->ReadAt(z.header_offset, kLocalHeaderSize, h));
    if (GetU32(h) != kLocalHeaderSig) {
      return Corrupt(absl::StrCat("zip entry ", z.name,
                                  " has no local header where the directory "
                                  "says"));
    }
    const int64_t data =
        z.header_offset + kLocalHeaderSize + GetU16(h + 26) + GetU16(h + 28);
    if (!RangeWithin(data, z.size, 0, file_->size())) {
      return Corrupt(absl::StrCat("the data of zip entry ", z.name,
                                  " run past the end of the file: truncated?"));
    }
    return data;
  }

  // The whole (small) entry, CRC-checked.
  absl::StatusOr<std::string> ReadSmall(const ZipEntry& z,
                                        int64_t max_size) const {
    if (z.size > max_size) {
      return Corrupt(absl::StrCat("zip entry ", z.name, " has ", z.size,
                                  " bytes; at most ", max_size,
                                  " are expected"));
    }
    TESSERA_ASSIGN_OR_RETURN(const int64_t offset, DataOffset(z));
    TESSERA_ASSIGN_OR_RETURN(std::string data,
                             file_->ReadString(offset, z.size));
    if (Crc32(0, data.data(), data.size()) != z.crc) {
      return Corrupt(
          absl::StrCat("zip entry ", z.name, " fails its CRC-32 check"));
    }
    return data;
  }

 private:
  const InputFile* const file_;  // Not owned; outlives this.
  std::vector<ZipEntry> entries_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// ---- Reading: the pickle
// ------------------------------------------------------

// A tensor of data.pkl, before its data are read.
struct PickledTensor {
  std::string name;
  std::string storage_key;
  ModelDType dtype;
  int64_t storage_numel;
  int64_t offset;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
};

// A restricted unpickler for what torch.save writes for a state_dict: the
// opcodes Python's pickler emits (protocols 2 to 4) for dicts, lists, tuples,
// ints, floats, strings and booleans, and only the globals OrderedDict,
// torch.*Storage and torch._utils._rebuild_tensor_v2. Values live in one
// arena and refer to each other by index, so no input can make the reader
// recurse, and every loop is bounded by the pickle's size.
class Unpickler {
 public:
  explicit Unpickler(absl::string_view in) : in_(in) {}

  absl::StatusOr<std::vector<PickledTensor>> Run() {
    TESSERA_ASSIGN_OR_RETURN(const int root, Execute());
    const Value& dict = values_[root];
    if (dict.kind != kDict) {
      return Corrupt("data.pkl does not hold a dict of tensors");
    }
    std::vector<PickledTensor> out;
    absl::flat_hash_map<std::string, size_t> seen;
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const Value& key = values_[dict.items[i]];
      const Value& value = values_[dict.items[i + 1]];
      if (key.kind != kString) {
        return Corrupt("data.pkl has a dict key that is not a string");
      }
      if (value.kind != kTensor) {
        return absl::UnimplementedError(
            absl::StrCat("data.pkl: \"", key.str,
                         "\" is not a tensor; only a dict of "
                         "tensors (a state_dict) is read"));
      }
      PickledTensor t = tensors_[value.i];
      t.name = key.str;
      auto [it, inserted] = seen.emplace(key.str, out.size());
      if (inserted) {
        out.push_back(std::move(t));
      } else {
        out[it->second] = std::move(t);  // Python: the last value wins
      }
    }
    return out;
  }

 private:
  enum Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor
  };
  enum Global {
    kOrderedDict,
    kRebuildTensor,
    kRestoreTypeTag,
    kFloatStorage,
    kLongStorage,
    kOtherStorage
  };
  struct Value {
    Kind kind;
    int64_t i = 0;    // int, bool, Global, dtype of a storage, tensor index
    std::string str;  // string; a storage's key; a global's name
    std::vector<int> items;  // tuple, list; a dict's keys and values in turn
    int64_t numel = 0;       // a storage's
  };

  absl::Status Bad(absl::string_view what) const {
    return Corrupt(absl::StrCat("data.pkl at byte ", op_pos_, ": ", what));
  }

  absl::StatusOr<absl::string_view> Take(size_t n) {
    if (in_.size() - pos_ < n) return Bad("the pickle ends early");
    absl::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  absl::StatusOr<absl::string_view> Line() {
    const size_t nl = in_.find('\n', pos_);
    if (nl == absl::string_view::npos || nl - pos_ > 256) {
      return Bad("a global's name has no end");
    }
    absl::string_view s = in_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }

  absl::StatusOr<int> New(Value v) {
    if (values_.size() >= kMaxPickleValues) {
      return Bad("too many objects");
    }
    values_.push_back(std::move(v));
    return static_cast<int>(values_.size() - 1);
  }

  absl::Status Push(Value v) {
    TESSERA_ASSIGN_OR_RETURN(const int i, New(std::move(v)));
    stack_.push_back(i);
    return absl::OkStatus();
  }

  absl::StatusOr<int> Pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) {
      return Bad("pops an empty stack");
    }
    const int v = stack_.back();
    stack_.pop_back();
    return v;
  }

  absl::StatusOr<int> Top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) {
      return Bad("reads an empty stack");
    }
    return stack_.back();
  }

  absl::StatusOr<std::vector<int>> PopMark() {
    if (marks_.empty()) return Bad("no mark to pop to");
    std::vector<int> items(stack_.begin() + marks_.back(), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }

  absl::Status PushInt(int64_t v) {
    Value x{kInt};
    x.i = v;
    return Push(std::move(x));
  }

  absl::Status PushString(absl::string_view s) {
    Value x{kString};
    x.str = std::string(s);
    return Push(std::move(x));
  }

  absl::Status PushTuple(std::vector<int> items) {
    Value x{kTuple};
    x.items = std::move(items);
    return Push(std::move(x));
  }

  absl::Status PushGlobal(absl::string_view module, absl::string_view name) {
    Value g{kGlobal};
    g.str = absl::StrCat(module, ".", name);
    if (g.str == "collections.OrderedDict") {
      g.i = kOrderedDict;
    } else if (g.str == "torch._utils._rebuild_tensor_v2") {
      g.i = kRebuildTensor;
    } else if (g.str == "torch.jit._pickle.restore_type_tag") {
      g.i = kRestoreTypeTag;  // files of torch::pickle_save (older tessera)
    } else if (g.str == "torch.FloatStorage") {
      g.i = kFloatStorage;
    } else if (g.str == "torch.LongStorage") {
      g.i = kLongStorage;
    } else if (module == "torch" && absl::EndsWith(name, "Storage")) {
      g.i = kOtherStorage;
    } else {
      return absl::UnimplementedError(
          absl::StrCat("data.pkl uses ", g.str,
                       ", which a file of tensors by name does not need"));
    }
    return Push(std::move(g));
  }

  bool IsInt(int v) const { return values_[v].kind == kInt; }

  absl::StatusOr<std::vector<int64_t>> IntTuple(int v, absl::string_view what) {
    if (values_[v].kind != kTuple)
      return Bad(absl::StrCat(what, " is no tuple"));
    std::vector<int64_t> out;
    for (int x : values_[v].items) {
      if (!IsInt(x)) return Bad(absl::StrCat(what, " holds a non-integer"));
      out.push_back(values_[x].i);
    }
    return out;
  }

  // BINPERSID: ('storage', storage type, key, location, numel).
  absl::Status PersistentLoad() {
    TESSERA_ASSIGN_OR_RETURN(const int pid, Pop());
    const Value& t = values_[pid];
    if (t.kind != kTuple || t.items.size() != 5 ||
        values_[t.items[0]].kind != kString ||
        values_[t.items[0]].str != "storage") {
      return Bad("a persistent id that is not a storage");
    }
    const Value& type = values_[t.items[1]];
    const Value& key = values_[t.items[2]];
    const Value& numel = values_[t.items[4]];
    if (type.kind != kGlobal || key.kind != kString || numel.kind != kInt ||
        numel.i < 0) {
      return Bad("a storage id with wrong fields");
    }
    if (type.i != kFloatStorage && type.i != kLongStorage) {
      return absl::UnimplementedError(
          absl::StrCat("data.pkl holds a ", type.str,
                       "; only float32 and int64 tensors are read"));
    }
    Value s{kStorage};
    s.i = type.i == kLongStorage ? static_cast<int>(ModelDType::kInt64)
                                 : static_cast<int>(ModelDType::kFloat32);
    s.str = key.str;
    s.numel = numel.i;
    return Push(std::move(s));
  }

  absl::Status ApplyReduce() {
    TESSERA_ASSIGN_OR_RETURN(const int args, Pop());
    TESSERA_ASSIGN_OR_RETURN(const int func, Pop());
    const Value& f = values_[func];
    const Value& a = values_[args];
    if (f.kind != kGlobal || a.kind != kTuple) {
      return Bad("calls something that is not a known function");
    }
    if (f.i == kOrderedDict) {
      if (!a.items.empty()) return Bad("OrderedDict with arguments");
      return Push(Value{kDict});
    }
    if (f.i == kRestoreTypeTag) {  // (value, type name) -> value
      if (a.items.empty()) return Bad("restore_type_tag without a value");
      stack_.push_back(a.items[0]);
      return absl::OkStatus();
    }
    if (f.i != kRebuildTensor) {
      return Bad(absl::StrCat("calls ", f.str));
    }
    // (storage, storage_offset, size, stride, requires_grad, hooks[, meta])
    if (a.items.size() < 4) return Bad("_rebuild_tensor_v2 lacks arguments");
    const Value& storage = values_[a.items[0]];
    if (storage.kind != kStorage || !IsInt(a.items[1])) {
      return Bad("_rebuild_tensor_v2 without a storage and an offset");
    }
    PickledTensor t;
    t.storage_key = storage.str;
    t.dtype = static_cast<ModelDType>(storage.i);
    t.storage_numel = storage.numel;
    t.offset = values_[a.items[1]].i;
    TESSERA_ASSIGN_OR_RETURN(t.shape, IntTuple(a.items[2], "a tensor's size"));
    TESSERA_ASSIGN_OR_RETURN(t.stride,
                             IntTuple(a.items[3], "a tensor's stride"));
    if (t.shape.size() != t.stride.size()) {
      return Bad("a tensor's size and stride differ in rank");
    }
    Value v{kTensor};
    v.i = tensors_.size();
    tensors_.push_back(std::move(t));
    return Push(std::move(v));
  }

  absl::Status SetItems(int dict, const std::vector<int>& items) {
    if (values_[dict].kind != kDict || items.size() % 2 != 0) {
      return Bad("sets items of something that is not a dict");
    }
    std::vector<int>& d = values_[dict].items;
    d.insert(d.end(), items.begin(), items.end());
    return absl::OkStatus();
  }

  absl::Status Memo(uint64_t index) {
    TESSERA_ASSIGN_OR_RETURN(const int top, Top());
    if (memo_.size() >= kMaxPickleValues && !memo_.contains(index)) {
      return Bad("too many memo entries");
    }
    memo_[index] = top;
    return absl::OkStatus();
  }

  absl::Status Get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return Bad("reads a memo entry never written");
    stack_.push_back(it->second);
    if (stack_.size() > kMaxPickleValues) return Bad("the stack is too deep");
    return absl::OkStatus();
  }

  absl::StatusOr<int> Execute() {
    while (true) {
      op_pos_ = pos_;
      TESSERA_ASSIGN_OR_RETURN(absl::string_view op, Take(1));
      switch (static_cast<uint8_t>(op[0])) {
        case 0x80: {  // PROTO
          TESSERA_ASSIGN_OR_RETURN(absl::string_view v, Take(1));
          if (static_cast<uint8_t>(v[0]) > 5) return Bad("unknown protocol");
          break;
        }
        case 0x95:  // FRAME
          TESSERA_RETURN_IF_ERROR(Take(8).status());
          break;
        case '.': {  // STOP
          TESSERA_ASSIGN_OR_RETURN(const int v, Pop());
          return v;
        }
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case 'c': {  // GLOBAL
          TESSERA_ASSIGN_OR_RETURN(absl::string_view module, Line());
          TESSERA_ASSIGN_OR_RETURN(absl::string_view name, Line());
          TESSERA_RETURN_IF_ERROR(PushGlobal(module, name));
          break;
        }
        case 'R':  // REDUCE
          TESSERA_RETURN_IF_ERROR(ApplyReduce());
          break;
        case 'b': {  // BUILD: an OrderedDict's attributes (_metadata)
          TESSERA_RETURN_IF_ERROR(Pop().status());
          TESSERA_ASSIGN_OR_RETURN(const int target, Top());
          if (values_[target].kind != kDict) return Bad("builds a non-dict");
          break;
        }
        case 'Q':  // BINPERSID
          TESSERA_RETURN_IF_ERROR(PersistentLoad());
          break;
        case ')':  // EMPTY_TUPLE
          TESSERA_RETURN_IF_ERROR(PushTuple({}));
          break;
        case 't': {  // TUPLE
          TESSERA_ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
          TESSERA_RETURN_IF_ERROR(PushTuple(std::move(items)));
          break;
        }
        case 0x85:    // TUPLE1
        case 0x86:    // TUPLE2
        case 0x87: {  // TUPLE3
          std::vector<int> items(static_cast<uint8_t>(op[0]) - 0x84);
          for (size_t k = items.size(); k-- > 0;) {
            TESSERA_ASSIGN_OR_RETURN(items[k], Pop());
          }
          TESSERA_RETURN_IF_ERROR(PushTuple(std::move(items)));
          break;
        }
        case ']':  // EMPTY_LIST
          TESSERA_RETURN_IF_ERROR(Push(Value{kList}));
          break;
        case '}':  // EMPTY_DICT
          TESSERA_RETURN_IF_ERROR(Push(Value{kDict}));
          break;
        case 'a': {  // APPEND
          TESSERA_ASSIGN_OR_RETURN(const int v, Pop());
          TESSERA_ASSIGN_OR_RETURN(const int list, Top());
          if (values_[list].kind != kList) return Bad("appends to a non-list");
          values_[list].items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          TESSERA_ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
          TESSERA_ASSIGN_OR_RETURN(const int list, Top());
          if (values_[list].kind != kList) return Bad("appends to a non-list");
          auto& l = values_[list].items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          TESSERA_ASSIGN_OR_RETURN(const int v, Pop());
          TESSERA_ASSIGN_OR_RETURN(const int k, Pop());
          TESSERA_ASSIGN_OR_RETURN(const int dict, Top());
          TESSERA_RETURN_IF_ERROR(SetItems(dict, {k, v}));
          break;
        }
        case 'u': {  // SETITEMS
          TESSERA_ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
          TESSERA_ASSIGN_OR_RETURN(const int dict, Top());
          TESSERA_RETURN_IF_ERROR(SetItems(dict, items));
          break;
        }
        case 'N':  // NONE
          TESSERA_RETURN_IF_ERROR(Push(Value{kNone}));
          break;
        case 0x88:    // NEWTRUE
        case 0x89: {  // NEWFALSE
          Value b{kBool};
          b.i = static_cast<uint8_t>(op[0]) == 0x88;
          TESSERA_RETURN_IF_ERROR(Push(std::move(b)));
          break;
        }
        case 'K': {  // BININT1
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(1));
          TESSERA_RETURN_IF_ERROR(PushInt(static_cast<uint8_t>(b[0])));
          break;
        }
        case 'M': {  // BININT2
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(2));
          TESSERA_RETURN_IF_ERROR(PushInt(GetU16(b.data())));
          break;
        }
        case 'J': {  // BININT
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(4));
          TESSERA_RETURN_IF_ERROR(
              PushInt(static_cast<int32_t>(GetU32(b.data()))));
          break;
        }
        case 0x8a: {  // LONG1
          TESSERA_ASSIGN_OR_RETURN(absl::string_view n, Take(1));
          const size_t len = static_cast<uint8_t>(n[0]);
          if (len > 8) return Bad("an integer past int64");
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(len));
          uint64_t u = len == 0 ? 0 : GetLE(b.data(), len);
          if (len > 0 && len < 8 && (static_cast<uint8_t>(b[len - 1]) & 0x80)) {
            u |= ~uint64_t{0} << (8 * len);  // sign-extend
          }
          TESSERA_RETURN_IF_ERROR(PushInt(static_cast<int64_t>(u)));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          TESSERA_RETURN_IF_ERROR(Take(8).status());
          TESSERA_RETURN_IF_ERROR(Push(Value{kFloat}));
          break;
        }
        case 'X': {  // BINUNICODE
          TESSERA_ASSIGN_OR_RETURN(absl::string_view n, Take(4));
          TESSERA_ASSIGN_OR_RETURN(absl::string_view s, Take(GetU32(n.data())));
          TESSERA_RETURN_IF_ERROR(PushString(s));
          break;
        }
        case 0x8c:   // SHORT_BINUNICODE
        case 'U': {  // SHORT_BINSTRING
          TESSERA_ASSIGN_OR_RETURN(absl::string_view n, Take(1));
          TESSERA_ASSIGN_OR_RETURN(absl::string_view s,
                                   Take(static_cast<uint8_t>(n[0])));
          TESSERA_RETURN_IF_ERROR(PushString(s));
          break;
        }
        case 'q': {  // BINPUT
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(1));
          TESSERA_RETURN_IF_ERROR(Memo(static_cast<uint8_t>(b[0])));
          break;
        }
        case 'r': {  // LONG_BINPUT
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(4));
          TESSERA_RETURN_IF_ERROR(Memo(GetU32(b.data())));
          break;
        }
        case 0x94:  // MEMOIZE
          TESSERA_RETURN_IF_ERROR(Memo(memo_.size()));
          break;
        case 'h': {  // BINGET
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(1));
          TESSERA_RETURN_IF_ERROR(Get(static_cast<uint8_t>(b[0])));
          break;
        }
        case 'j': {  // LONG_BINGET
          TESSERA_ASSIGN_OR_RETURN(absl::string_view b, Take(4));
          TESSERA_RETURN_IF_ERROR(Get(GetU32(b.data())));
          break;
        }
        default:
          return Bad(absl::StrFormat("unsupported opcode 0x%02x",
                                     static_cast<uint8_t>(op[0])));
      }
    }
  }

  const absl::string_view in_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Value> values_;
  std::vector<int> stack_;
  std::vector<size_t> marks_;  // stack sizes at each MARK
  absl::flat_hash_map<uint64_t, int> memo_;
  std::vector<PickledTensor> tensors_;
};

absl::StatusOr<std::vector<PulledTensor>> ReadPt(const InputFile& file) {
  ZipReader zip(&file);
  TESSERA_RETURN_IF_ERROR(zip.Open());
  if (zip.entries().empty()) return Corrupt("the zip archive is empty");
  // Every record sits in one folder, named after the first entry's
  // (PyTorch's reader does the same).
  const std::string& first = zip.entries()[0].name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) {
    return Corrupt(absl::StrCat("not a torch.save archive: entry ", first,
                                " is in no folder"));
  }
  const std::string prefix = first.substr(0, slash + 1);
  if (const ZipEntry* v = zip.Find(prefix + "version")) {
    TESSERA_ASSIGN_OR_RETURN(std::string text, zip.ReadSmall(*v, 64));
    int version;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &version)) {
      return Corrupt(absl::StrCat("the archive's version is \"",
                                  absl::CEscape(text), "\""));
    }
  }
  if (const ZipEntry* b = zip.Find(prefix + "byteorder")) {
    TESSERA_ASSIGN_OR_RETURN(std::string order, zip.ReadSmall(*b, 64));
    if (order != "little") {
      return absl::UnimplementedError(absl::StrCat(
          "the tensors are stored \"", absl::CEscape(order), "\"-endian"));
    }
  }
  const ZipEntry* pkl = zip.Find(prefix + "data.pkl");
  if (pkl == nullptr) {
    return Corrupt(
        absl::StrCat("not a torch.save archive: no ", prefix, "data.pkl"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::string pickle, zip.ReadSmall(*pkl, kMaxPickle));
  TESSERA_ASSIGN_OR_RETURN(std::vector<PickledTensor> pickled,
                           Unpickler(pickle).Run());

  std::vector<PulledTensor> out;
  absl::flat_hash_map<std::string, std::string> storage_users;
  for (PickledTensor& p : pickled) {
    PulledTensor t;
    t.name = p.name;
    t.shape = p.shape;
    const int64_t elem = ElementSize(p.dtype);
    int64_t numel, storage_bytes;
    if (!CheckedProduct(p.shape, kMaxInt64 / 8, &numel) ||
        !CheckedMul(p.storage_numel, elem, &storage_bytes) ||
        !RangeWithin(p.offset, numel, 0, p.storage_numel)) {
      return Corrupt(
          absl::StrCat("tensor \"", p.name, "\" lies outside its storage"));
    }
    // Contiguous, row-major: strides of dims of size 1 do not matter.
    int64_t expected = 1;
    for (size_t d = p.shape.size(); d-- > 0 && numel > 0;) {
      if (p.shape[d] != 1 && p.stride[d] != expected) {
        return absl::UnimplementedError(
            absl::StrCat("tensor \"", p.name, "\" is not contiguous (a view)"));
      }
      expected *= p.shape[d];
    }
    auto [user, fresh] = storage_users.emplace(p.storage_key, p.name);
    if (!fresh) {
      return absl::UnimplementedError(
          absl::StrCat("tensors \"", user->second, "\" and \"", p.name,
                       "\" share a storage (views are not read)"));
    }
    const ZipEntry* z = zip.Find(prefix + "data/" + p.storage_key);
    if (z == nullptr) {
      return Corrupt(absl::StrCat("the storage of tensor \"", p.name,
                                  "\" is missing from the archive"));
    }
    if (z->size != storage_bytes) {
      return Corrupt(absl::StrCat("the storage of tensor \"", p.name, "\" has ",
                                  z->size, " bytes, not ", storage_bytes));
    }
    TESSERA_ASSIGN_OR_RETURN(const int64_t data, zip.DataOffset(*z));
    if (numel == p.storage_numel) {
      TESSERA_RETURN_IF_ERROR(
          ReadTensorData(file, data, numel, p.dtype, &z->crc, &t));
    } else {
      // Part of its storage: the CRC covers the whole entry. (Read once: a
      // storage has one user.)
      TESSERA_ASSIGN_OR_RETURN(const std::string all,
                               zip.ReadSmall(*z, z->size));
      const char* begin = all.data() + p.offset * elem;
      if (p.dtype == ModelDType::kInt64) {
        t.integer = true;
        t.int_values.resize(numel);
        std::memcpy(t.int_values.data(), begin, numel * elem);
      } else {
        t.values.resize(numel);
        std::memcpy(t.values.data(), begin, numel * elem);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

// ---- Reading: safetensors
// -----------------------------------------------------

// A strict JSON parser (RFC 8259) into an arena, with a depth limit.
class JsonParser {
 public:
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  struct Node {
    Kind kind;
    bool is_int = false;  // a number without fraction or exponent, in int64
    int64_t int_value = 0;
    std::string str;                                   // string
    std::vector<std::pair<std::string, int>> members;  // object
    std::vector<int> elements;                         // array
  };

  explicit JsonParser(absl::string_view in) : in_(in) {}

  absl::StatusOr<int> Parse() {
    TESSERA_ASSIGN_OR_RETURN(const int root, ParseValue(0));
    SkipSpace();
    if (pos_ != in_.size()) return Bad("text after the header's object");
    return root;
  }

  const Node& node(int i) const { return nodes_[i]; }

 private:
  static constexpr int kMaxDepth = 32;

  absl::Status Bad(absl::string_view what) const {
    return Corrupt(
        absl::StrCat("safetensors header at byte ", pos_, ": ", what));
  }

  void SkipSpace() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\t' ||
                                 in_[pos_] == '\n' || in_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view word) {
    if (!absl::StartsWith(in_.substr(pos_), word)) return false;
    pos_ += word.size();
    return true;
  }

  int Add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size() - 1);
  }

  absl::StatusOr<int> ParseValue(int depth) {
    if (depth > kMaxDepth) return Bad("nested too deeply");
    SkipSpace();
    if (pos_ >= in_.size()) return Bad("ends early");
    const char c = in_[pos_];
    if (c == '{') return ParseObject(depth);
    if (c == '[') return ParseArray(depth);
    if (c == '"') {
      Node n{kString};
      TESSERA_ASSIGN_OR_RETURN(n.str, ParseString());
      return Add(std::move(n));
    }
    if (Consume("null")) return Add(Node{kNull});
    if (Consume("true") || Consume("false")) return Add(Node{kBool});
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
    return Bad("unexpected character");
  }

  absl::StatusOr<int> ParseNumber() {
    const size_t start = pos_;
    bool integral = true;
    if (in_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') ++pos_;
      return pos_ > from;
    };
    if (pos_ < in_.size() && in_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return Bad("a malformed number");
    }
    if (pos_ < in_.size() && in_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (!digits()) return Bad("a malformed number");
    }
    if (pos_ < in_.size() && (in_[pos_] == 'e' || in_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < in_.size() && (in_[pos_] == '+' || in_[pos_] == '-')) ++pos_;
      if (!digits()) return Bad("a malformed number");
    }
    Node n{kNumber};
    n.is_int = integral &&
               absl::SimpleAtoi(in_.substr(start, pos_ - start), &n.int_value);
    return Add(std::move(n));
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (in_.size() - pos_ < 4) return Bad("a short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = in_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        v |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        v |= h - 'A' + 10;
      } else {
        return Bad("a bad \\u escape");
      }
    }
    return v;
  }

  absl::StatusOr<std::string> ParseString() {
    ++pos_;  // the opening quote
    std::string out;
    while (true) {
      if (pos_ >= in_.size()) return Bad("a string without its end");
      const char c = in_[pos_++];
      if (c == '"') break;
      if (static_cast<uint8_t>(c) < 0x20) return Bad("a control character");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= in_.size()) return Bad("a string without its end");
      const char e = in_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          TESSERA_ASSIGN_OR_RETURN(uint32_t cp, Hex4());
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!Consume("\\u")) return Bad("a lone surrogate");
            TESSERA_ASSIGN_OR_RETURN(const uint32_t low, Hex4());
            if (low < 0xDC00 || low > 0xDFFF) return Bad("a lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Bad("a lone surrogate");
          }
          if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else if (cp < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default:
          return Bad("a bad escape");
      }
    }
    if (!ValidUtf8(out)) return Bad("a string that is not UTF-8");
    return out;
  }

  absl::StatusOr<int> ParseArray(int depth) {
    ++pos_;
    Node n{kArray};
    SkipSpace();
    if (Consume("]")) return Add(std::move(n));
    while (true) {
      TESSERA_ASSIGN_OR_RETURN(const int v, ParseValue(depth + 1));
      n.elements.push_back(v);
      SkipSpace();
      if (Consume("]")) break;
      if (!Consume(",")) return Bad("expected , or ]");
    }
    return Add(std::move(n));
  }

  absl::StatusOr<int> ParseObject(int depth) {
    ++pos_;
    Node n{kObject};
    SkipSpace();
    if (Consume("}")) return Add(std::move(n));
    while (true) {
      SkipSpace();
      if (pos_ >= in_.size() || in_[pos_] != '"') return Bad("expected a key");
      TESSERA_ASSIGN_OR_RETURN(std::string key, ParseString());
      SkipSpace();
      if (!Consume(":")) return Bad("expected :");
      TESSERA_ASSIGN_OR_RETURN(const int v, ParseValue(depth + 1));
      n.members.emplace_back(std::move(key), v);
      SkipSpace();
      if (Consume("}")) break;
      if (!Consume(",")) return Bad("expected , or }");
    }
    return Add(std::move(n));
  }

  const absl::string_view in_;
  size_t pos_ = 0;
  std::vector<Node> nodes_;
};

absl::StatusOr<std::vector<PulledTensor>> ReadSafetensors(
    const InputFile& file) {
  char prefix[8];
  TESSERA_RETURN_IF_ERROR(file.ReadAt(0, 8, prefix));
  const uint64_t header_size = GetU64(prefix);
  if (header_size > kMaxSafetensorsHeader ||
      !SizeAtMost(header_size, file.size() - 8)) {
    return Corrupt(absl::StrCat("the safetensors header claims ", header_size,
                                " bytes; the file has ", file.size(),
                                ": truncated?"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::string header, file.ReadString(8, header_size));
  JsonParser json(header);
  TESSERA_ASSIGN_OR_RETURN(const int root, json.Parse());
  if (json.node(root).kind != JsonParser::kObject) {
    return Corrupt("the safetensors header is not a JSON object");
  }
  struct Entry {
    PulledTensor tensor;
    ModelDType dtype;
    int64_t begin, end, numel;
  };
  std::vector<Entry> entries;
  absl::flat_hash_set<std::string> names;
  for (const auto& [name, index] : json.node(root).members) {
    if (!names.insert(name).second) {
      return Corrupt(absl::StrCat("tensor \"", name, "\" appears twice"));
    }
    if (name == "__metadata__") continue;
    const JsonParser::Node& n = json.node(index);
    auto field = [&](absl::string_view key) -> const JsonParser::Node* {
      if (n.kind != JsonParser::kObject) return nullptr;
      for (const auto& [k, v] : n.members) {
        if (k == key) return &json.node(v);
      }
      return nullptr;
    };
    auto bad = [&](absl::string_view what) {
      return Corrupt(absl::StrCat("tensor \"", name, "\": ", what));
    };
    auto ints = [&](const JsonParser::Node* a, std::vector<int64_t>* out) {
      if (a == nullptr || a->kind != JsonParser::kArray) return false;
      for (int e : a->elements) {
        const JsonParser::Node& x = json.node(e);
        if (!x.is_int || x.int_value < 0) return false;
        out->push_back(x.int_value);
      }
      return true;
    };
    const JsonParser::Node* dtype = field("dtype");
    if (dtype == nullptr || dtype->kind != JsonParser::kString) {
      return bad("no dtype");
    }
    Entry e;
    e.tensor.name = name;
    if (dtype->str == "F32") {
      e.dtype = ModelDType::kFloat32;
    } else if (dtype->str == "I64") {
      e.dtype = ModelDType::kInt64;
      e.tensor.integer = true;
    } else {
      return absl::UnimplementedError(
          absl::StrCat("tensor \"", name, "\" is ", dtype->str,
                       "; only F32 and I64 tensors are read"));
    }
    std::vector<int64_t> offsets;
    if (!ints(field("shape"), &e.tensor.shape)) return bad("a bad shape");
    if (!ints(field("data_offsets"), &offsets) || offsets.size() != 2 ||
        offsets[0] > offsets[1]) {
      return bad("bad data_offsets");
    }
    e.begin = offsets[0];
    e.end = offsets[1];
    int64_t nbytes;
    if (!CheckedProduct(e.tensor.shape, kMaxInt64, &e.numel) ||
        !CheckedMul(e.numel, ElementSize(e.dtype), &nbytes) ||
        nbytes != e.end - e.begin) {
      return bad("data_offsets that do not match the shape");
    }
    entries.push_back(std::move(e));
  }
  // As safetensors demands: the tensors tile the data exactly.
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  const int64_t data_start = 8 + static_cast<int64_t>(header_size);
  const int64_t data_size = file.size() - data_start;
  int64_t at = 0;
  for (const Entry& e : entries) {
    if (e.begin != at) {
      return Corrupt(absl::StrCat("tensor \"", e.tensor.name,
                                  "\" does not start where the previous "
                                  "one ends"));
    }
    at = e.end;
  }
  if (at != data_size) {
    return Corrupt(absl::StrCat("the tensors hold ", at,
                                " bytes, the file's data part ", data_size,
                                ": truncated?"));
  }
  std::vector<PulledTensor> out;
  for (Entry& e : entries) {
    TESSERA_RETURN_IF_ERROR(ReadTensorData(file, data_start + e.begin, e.numel,
                                           e.dtype, nullptr, &e.tensor));
    out.push_back(std::move(e.tensor));
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelFileFormat> ParseModelFileFormat(absl::string_view name) {
  if (name == "pt") return ModelFileFormat::kPt;
  if (name == "safetensors") return ModelFileFormat::kSafetensors;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model file format \"", name, "\" (pt or safetensors)"));
}

ModelFileFormat ModelFileFormatForPath(absl::string_view path) {
  return absl::EndsWith(path, ".safetensors") ? ModelFileFormat::kSafetensors
                                              : ModelFileFormat::kPt;
}

absl::string_view ModelFileFormatName(ModelFileFormat format) {
  return format == ModelFileFormat::kSafetensors ? "safetensors" : "pt";
}

absl::StatusOr<std::unique_ptr<ModelFileWriter>> NewModelFileWriter(
    const std::string& path, ModelFileFormat format,
    std::vector<ModelTensorInfo> tensors,
    const ModelFileWriterOptions& options) {
  TESSERA_ASSIGN_OR_RETURN(std::vector<int64_t> numels,
                           CheckTensorInfos(tensors));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> file,
                           OutputFile::Create(path));
  if (format == ModelFileFormat::kSafetensors) {
    return SafetensorsWriter::Create(std::move(file), std::move(tensors),
                                     std::move(numels), options);
  }
  return PtWriter::Create(std::move(file), std::move(tensors),
                          std::move(numels), options);
}

absl::Status WriteModelFile(const std::string& path,
                            const std::vector<PulledTensor>& tensors,
                            ModelFileFormat format) {
  std::vector<ModelTensorInfo> infos;
  for (const PulledTensor& t : tensors) {
    ModelTensorInfo info{
        t.name, t.integer ? ModelDType::kInt64 : ModelDType::kFloat32, t.shape};
    int64_t numel;
    const size_t have = t.integer ? t.int_values.size() : t.values.size();
    if (!CheckedProduct(t.shape, kMaxInt64, &numel) ||
        static_cast<uint64_t>(numel) != have) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", t.name, "\" has ", have, " values for shape [",
          absl::StrJoin(t.shape, ", "), "]"));
    }
    infos.push_back(std::move(info));
  }
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ModelFileWriter> writer,
                           NewModelFileWriter(path, format, std::move(infos)));
  for (const PulledTensor& t : tensors) {
    TESSERA_RETURN_IF_ERROR(t.integer ? writer->Append(t.int_values)
                                      : writer->Append(t.values));
  }
  absl::Status s = writer->Finish();
  if (!s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("writing ", path, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PulledTensor>> ReadModelFile(
    const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> file,
                           InputFile::Open(path));
  char magic[9] = {};
  const int64_t n = std::min<int64_t>(file->size(), 9);
  TESSERA_RETURN_IF_ERROR(file->ReadAt(0, n, magic));
  absl::StatusOr<std::vector<PulledTensor>> out;
  if (n >= 4 && absl::string_view(magic, 4) == "PK\x03\x04") {
    out = ReadPt(*file);
  } else if (n == 9 && magic[8] == '{') {
    out = ReadSafetensors(*file);
  } else {
    out = Corrupt("neither a torch.save zip archive nor a safetensors file");
  }
  if (!out.ok()) {
    return absl::Status(out.status().code(),
                        absl::StrCat(path, ": ", out.status().message()));
  }
  return out;
}

}  // namespace tessera

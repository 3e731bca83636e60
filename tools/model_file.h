#ifndef TESSERA_TOOLS_MODEL_FILE_H_
#define TESSERA_TOOLS_MODEL_FILE_H_

// Model files: the tensors of a pulled model, by name (the module's
// state_dict keys), in one of two formats, written without libtorch:
//
//  - kPt: torch.save's zip format (PyTorch >= 1.6): stored entries
//    "archive/data.pkl" (a pickle, protocol 2, of a collections.OrderedDict
//    name -> tensor, each rebuilt by torch._utils._rebuild_tensor_v2 from a
//    torch.FloatStorage or torch.LongStorage), "archive/data/<i>" (the raw
//    little-endian bytes of tensor i, aligned to 64 bytes in the file),
//    "archive/byteorder" ("little") and "archive/version" ("3\n"). Zip64
//    records are used where an entry or an offset reaches 4 GiB.
//    `torch.load(path, weights_only=True)` loads it (the default since
//    PyTorch 2.6), and `module.load_state_dict(...)` takes the result.
//  - kSafetensors: an 8-byte little-endian header length, a JSON header
//    {name: {"dtype": "F32"|"I64", "shape": [...], "data_offsets": [b, e]},
//    "__metadata__": {"format": "pt", ...}} padded with spaces to 8 bytes,
//    then the data of each tensor in order.
//
// Both hold float32 and int64 tensors of any rank (0-d and empty included),
// in the order given. The bytes written depend only on the tensors (no time
// stamps), so equal models give equal files.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ps/client/model_pull.h"

namespace tessera {

enum class ModelFileFormat { kPt, kSafetensors };

// "pt" or "safetensors"; InvalidArgument otherwise.
absl::StatusOr<ModelFileFormat> ParseModelFileFormat(absl::string_view name);

// The format a path's extension asks for: ".safetensors" is kSafetensors,
// anything else kPt.
ModelFileFormat ModelFileFormatForPath(absl::string_view path);

absl::string_view ModelFileFormatName(ModelFileFormat format);

enum class ModelDType { kFloat32, kInt64 };

// What a writer must know of a tensor before its data: safetensors puts every
// shape in the header, torch.save every shape in data.pkl, ahead of the data.
struct ModelTensorInfo {
  std::string name;  // unique, valid UTF-8
  ModelDType dtype = ModelDType::kFloat32;
  std::vector<int64_t> shape;  // each dim >= 0; {} is a 0-d tensor
};

struct ModelFileWriterOptions {
  // safetensors only: the "__metadata__" strings. "format": "pt" (what
  // transformers and safetensors.torch expect) is added unless given.
  std::vector<std::pair<std::string, std::string>> metadata;
  // pt only: zip64 records for every entry and the end of the archive even
  // when nothing reaches 4 GiB. For tests of the zip64 path.
  bool force_zip64 = false;
};

// Streams a model file to disk: the tensors are declared up front, then their
// data arrive in order, in chunks of any size, and go straight to the file
// (memory use does not grow with the model). The file is written under a
// temporary name beside `path` and renamed onto `path` by a successful
// Finish(), so `path` is either the old file or the complete new one.
//
// Thread-compatible.
class ModelFileWriter {
 public:
  // Destroying a writer before a successful Finish() removes the temporary
  // file; `path` is left untouched.
  virtual ~ModelFileWriter() = default;

  // Appends `values` to the current tensor: the first declared tensor that is
  // not yet full (empty tensors need no data). InvalidArgument, with nothing
  // written, if the dtype differs from the current tensor's, if `values` is
  // longer than what the current tensor still lacks (a chunk never spans two
  // tensors), or if every tensor is full. Unavailable on a write error, after
  // which every call fails with FailedPrecondition.
  virtual absl::Status Append(absl::Span<const float> values) = 0;
  virtual absl::Status Append(absl::Span<const int64_t> values) = 0;

  // Completes the file (safetensors: nothing left; pt: the zip's central
  // directory), syncs it and renames it onto `path`. FailedPrecondition if a
  // tensor still lacks data (naming it) or after an earlier error;
  // Unavailable on a write, sync or rename error.
  virtual absl::Status Finish() = 0;

  // Bytes written so far (after Finish(): the file's size).
  virtual int64_t bytes_written() const = 0;
};

// Creates a writer of `tensors` in `format` to `path`. InvalidArgument for a
// duplicate or non-UTF-8 name, a negative dim or a size past int64;
// Unavailable if the temporary file cannot be created. Caller owns the result.
absl::StatusOr<std::unique_ptr<ModelFileWriter>> NewModelFileWriter(
    const std::string& path, ModelFileFormat format,
    std::vector<ModelTensorInfo> tensors,
    const ModelFileWriterOptions& options = {});

// Writes `tensors` (each `integer` one from `int_values`, the others from
// `values`, which must hold the shape's element count: InvalidArgument
// otherwise) to `path` in `format`, through a ModelFileWriter.
absl::Status WriteModelFile(const std::string& path,
                            const std::vector<PulledTensor>& tensors,
                            ModelFileFormat format = ModelFileFormat::kPt);

// Reads a model file of either format (told apart by its first bytes), in
// file order: for kPt the dict's order, for kSafetensors the data's.
// Float32 tensors fill `values`, int64 ones `int_values` (with `integer`);
// `version` is 0. Also reads what torch.save writes for a state_dict of such
// tensors (contiguous, one storage each).
//
// The file is treated as hostile: every offset and size is bounds-checked
// against the file, nothing is allocated beyond the file's size, and CRCs are
// verified. NotFound if `path` cannot be opened; DataLoss for a truncated or
// corrupt file, saying what is wrong; Unimplemented for a valid file this
// reader does not take (another dtype, a compressed entry, a view).
absl::StatusOr<std::vector<PulledTensor>> ReadModelFile(
    const std::string& path);

}  // namespace tessera

#endif  // TESSERA_TOOLS_MODEL_FILE_H_

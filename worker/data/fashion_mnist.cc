#include "worker/data/fashion_mnist.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ps/common/status_macros.h"
#include "worker/data/input_file.h"

namespace tessera {
namespace worker {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // Unsigned bytes, 3 dims.
constexpr uint32_t kLabelsMagic = 0x00000801;  // Unsigned bytes, 1 dim.

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads the header of an IDX file: magic, then `dims` sizes.
absl::StatusOr<std::vector<uint32_t>> ReadIdxHeader(InputFile* file,
                                                    uint32_t want_magic,
                                                    int dims) {
  std::vector<unsigned char> header(4 * (1 + dims));
  TESSERA_RETURN_IF_ERROR(file->ReadFully(
      absl::MakeSpan(reinterpret_cast<char*>(header.data()), header.size()),
      "the IDX header"));
  const uint32_t magic = BigEndian32(header.data());
  if (magic != want_magic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: magic number is 0x%08x, want 0x%08x (an IDX %s file)",
        file->path(), magic, want_magic,
        want_magic == kImagesMagic ? "image" : "label"));
  }
  std::vector<uint32_t> sizes(dims);
  for (int d = 0; d < dims; ++d) sizes[d] = BigEndian32(&header[4 * (d + 1)]);
  return sizes;
}

// Reads `n` bytes, growing the result chunk by chunk so that a header
// claiming more data than the file holds fails with DataLoss instead of
// allocating the claimed size up front.
absl::StatusOr<std::vector<uint8_t>> ReadBytes(InputFile* file, int64_t n,
                                               absl::string_view what) {
  constexpr int64_t kChunk = 16 << 20;
  std::vector<uint8_t> bytes;
  while (static_cast<int64_t>(bytes.size()) < n) {
    const size_t done = bytes.size();
    const size_t step = std::min<int64_t>(kChunk, n - done);
    bytes.resize(done + step);
    TESSERA_ASSIGN_OR_RETURN(size_t got,
                             file->Read(absl::MakeSpan(
                                 reinterpret_cast<char*>(&bytes[done]), step)));
    if (got != step) {
      return absl::DataLossError(
          absl::StrCat(file->path(), " is truncated: it ends ", n - done - got,
                       " bytes short of the ", n, " bytes of ", what));
    }
  }
  return bytes;
}

absl::Status CheckNoTrailingBytes(InputFile* file) {
  char extra;
  TESSERA_ASSIGN_OR_RETURN(size_t got, file->Read(absl::MakeSpan(&extra, 1)));
  if (got != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        file->path(), ": has bytes after the last example its header counts"));
  }
  return absl::OkStatus();
}

// In-memory images (one byte per pixel) and labels. Thread-safe (immutable).
class IdxImageDataset : public DenseDataset {
 public:
  IdxImageDataset(std::vector<uint8_t> pixels, std::vector<uint8_t> labels)
      : pixels_(std::move(pixels)), labels_(std::move(labels)) {
    for (int v = 0; v < 256; ++v) {
      normalized_[v] = (v / 255.0f - kFashionMnistMean) / kFashionMnistStd;
    }
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }

  absl::StatusOr<DenseBatch> Gather(
      absl::Span<const int64_t> indices) const override {
    TESSERA_RETURN_IF_ERROR(CheckIndices(indices));
    DenseBatch batch;
    batch.batch_size = static_cast<int>(indices.size());
    batch.feature_dim = kFashionMnistImageSize;
    batch.features.resize(indices.size() * kFashionMnistImageSize);
    batch.labels.resize(indices.size());
    float* out = batch.features.data();
    for (size_t i = 0; i < indices.size(); ++i) {
      const uint8_t* image =
          pixels_.data() + indices[i] * kFashionMnistImageSize;
      for (int p = 0; p < kFashionMnistImageSize; ++p) {
        *out++ = normalized_[image[p]];
      }
      batch.labels[i] = labels_[indices[i]];
    }
    return batch;
  }

 private:
  const std::vector<uint8_t> pixels_;
  const std::vector<uint8_t> labels_;
  std::array<float, 256> normalized_;
};

bool FileExists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DenseDataset>> ReadFashionMnist(
    const std::string& images_path, const std::string& labels_path,
    const FashionMnistOptions& options) {
  if (options.max_examples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_examples is ", options.max_examples, ", want >= 0"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> images,
                           InputFile::Open(images_path));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> labels,
                           InputFile::Open(labels_path));
  TESSERA_ASSIGN_OR_RETURN(std::vector<uint32_t> image_dims,
                           ReadIdxHeader(images.get(), kImagesMagic, 3));
  TESSERA_ASSIGN_OR_RETURN(std::vector<uint32_t> label_dims,
                           ReadIdxHeader(labels.get(), kLabelsMagic, 1));
  if (image_dims[1] != kFashionMnistImageSide ||
      image_dims[2] != kFashionMnistImageSide) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, ": images are ", image_dims[1], " x ", image_dims[2],
        ", want ", kFashionMnistImageSide, " x ", kFashionMnistImageSide));
  }
  if (image_dims[0] != label_dims[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, " holds ", image_dims[0], " images but ",
                     labels_path, " holds ", label_dims[0], " labels"));
  }
  const int64_t total = image_dims[0];
  const bool whole_file =
      options.max_examples == 0 || options.max_examples >= total;
  const int64_t count = whole_file ? total : options.max_examples;

  TESSERA_ASSIGN_OR_RETURN(
      std::vector<uint8_t> pixels,
      ReadBytes(images.get(), count * kFashionMnistImageSize,
                absl::StrCat(count, " images")));
  TESSERA_ASSIGN_OR_RETURN(
      std::vector<uint8_t> label_values,
      ReadBytes(labels.get(), count, absl::StrCat(count, " labels")));
  for (int64_t i = 0; i < count; ++i) {
    if (label_values[i] >= kFashionMnistClasses) {
      return absl::InvalidArgumentError(absl::StrCat(
          labels_path, ": label ", static_cast<int>(label_values[i]),
          " of example ", i, " is outside [0, ", kFashionMnistClasses, ")"));
    }
  }
  if (whole_file) {
    TESSERA_RETURN_IF_ERROR(CheckNoTrailingBytes(images.get()));
    TESSERA_RETURN_IF_ERROR(CheckNoTrailingBytes(labels.get()));
  }
  return std::unique_ptr<DenseDataset>(
      new IdxImageDataset(std::move(pixels), std::move(label_values)));
}

absl::StatusOr<std::unique_ptr<DenseDataset>> OpenFashionMnist(
    const std::string& dir, FashionMnistSplit split,
    const FashionMnistOptions& options) {
  const std::string prefix = absl::StrCat(
      dir, "/", split == FashionMnistSplit::kTrain ? "train" : "t10k");
  auto pick = [](const std::string& path) {
    const std::string gz = path + ".gz";
    return FileExists(gz) ? gz : path;
  };
  return ReadFashionMnist(pick(prefix + "-images-idx3-ubyte"),
                          pick(prefix + "-labels-idx1-ubyte"), options);
}

}  // namespace worker
}  // namespace tessera

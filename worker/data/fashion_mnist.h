#ifndef TESSERA_WORKER_DATA_FASHION_MNIST_H_
#define TESSERA_WORKER_DATA_FASHION_MNIST_H_

// Fashion-MNIST (and MNIST, which shares the format): IDX files of 28 x 28
// grey images and their labels 0-9, gzip-compressed or plain.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/data/dataset.h"

namespace tessera {
namespace worker {

inline constexpr int kFashionMnistClasses = 10;
inline constexpr int kFashionMnistImageSide = 28;
inline constexpr int kFashionMnistImageSize = 28 * 28;
// Mean and standard deviation of the training images' pixels scaled to
// [0, 1]: a batch holds (pixel / 255 - kFashionMnistMean) / kFashionMnistStd.
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

struct FashionMnistOptions {
  // Read only the first max_examples examples (0: all). The rest of the files
  // is then not read, so not checked either.
  int64_t max_examples = 0;
};

// Reads an IDX image file (magic 0x00000803, dimensions N x 28 x 28, unsigned
// bytes) and its IDX label file (magic 0x00000801, N labels in [0, 10)).
// Either may be gzip-compressed. Batches are dense, feature_dim = 784, pixels
// normalized as above, labels int64.
//
// Errors: NotFound (or another errno code) if a file cannot be opened;
// InvalidArgument for a wrong magic number, image size other than 28 x 28,
// image and label counts that differ, a label outside [0, 10) or bytes after
// the last example; DataLoss for a file that ends early or corrupt gzip data.
// Every message names the file.
//
// Memory: one byte per pixel (47 MB for the 60000 training images); Gather
// normalizes into floats per batch.
absl::StatusOr<std::unique_ptr<DenseDataset>> ReadFashionMnist(
    const std::string& images_path, const std::string& labels_path,
    const FashionMnistOptions& options = {});

enum class FashionMnistSplit { kTrain, kTest };

// ReadFashionMnist over the standard file names in `dir`:
// {train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, each
// with ".gz" if that file exists, else without.
// (The Debian image installs them in /usr/share/datasets/fashion-mnist.)
absl::StatusOr<std::unique_ptr<DenseDataset>> OpenFashionMnist(
    const std::string& dir, FashionMnistSplit split,
    const FashionMnistOptions& options = {});

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_FASHION_MNIST_H_

#include "worker/data/fashion_mnist.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

constexpr char kInstalledDir[] = "/usr/share/datasets/fashion-mnist";

void AppendBigEndian32(std::string* out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

std::string ImagesFile(int count, int rows = 28, int cols = 28,
                       uint32_t magic = 0x803) {
  std::string out;
  AppendBigEndian32(&out, magic);
  AppendBigEndian32(&out, count);
  AppendBigEndian32(&out, rows);
  AppendBigEndian32(&out, cols);
  // Image i: every pixel is (i * 100) % 256, except pixel 0 which is 255.
  for (int i = 0; i < count; ++i) {
    std::string image(rows * cols, static_cast<char>((i * 100) % 256));
    image[0] = static_cast<char>(255);
    out += image;
  }
  return out;
}

std::string LabelsFile(const std::vector<int>& labels, uint32_t magic = 0x801) {
  std::string out;
  AppendBigEndian32(&out, magic);
  AppendBigEndian32(&out, labels.size());
  for (int label : labels) out.push_back(static_cast<char>(label));
  return out;
}

float Normalized(int pixel) {
  return (pixel / 255.0f - kFashionMnistMean) / kFashionMnistStd;
}

class FashionMnistFixtureTest : public ::testing::Test {
 protected:
  // Writes the two files (gzip-compressed unless `plain`) and reads them.
  absl::StatusOr<std::unique_ptr<DenseDataset>> Read(
      const std::string& images, const std::string& labels, bool plain = false,
      FashionMnistOptions options = {}) {
    const std::string suffix = plain ? "" : ".gz";
    images_path_ = TestTmpPath("images-idx3-ubyte" + suffix);
    labels_path_ = TestTmpPath("labels-idx1-ubyte" + suffix);
    if (plain) {
      WriteTestFile(images_path_, images);
      WriteTestFile(labels_path_, labels);
    } else {
      WriteGzipTestFile(images_path_, images);
      WriteGzipTestFile(labels_path_, labels);
    }
    return ReadFashionMnist(images_path_, labels_path_, options);
  }

  std::string images_path_;
  std::string labels_path_;
};

TEST_F(FashionMnistFixtureTest, ReadsGzippedFilesAndNormalizesPixels) {
  auto dataset = Read(ImagesFile(3), LabelsFile({4, 0, 9}));
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 3);

  const std::vector<int64_t> indices = {2, 0};
  absl::StatusOr<DenseBatch> batch = (*dataset)->Gather(indices);
  ASSERT_THAT(batch, IsOk());
  EXPECT_EQ(batch->batch_size, 2);
  EXPECT_EQ(batch->feature_dim, 784);
  ASSERT_EQ(batch->features.size(), 2 * 784);
  EXPECT_THAT(batch->labels, ElementsAre(9, 4));
  EXPECT_FLOAT_EQ(batch->features[0], Normalized(255));
  EXPECT_FLOAT_EQ(batch->features[1], Normalized(200));
  EXPECT_FLOAT_EQ(batch->features[784 + 1], Normalized(0));
  EXPECT_NEAR(Normalized(0), -0.8102f, 1e-4);
  EXPECT_NEAR(Normalized(255), 2.0227f, 1e-4);
}

TEST_F(FashionMnistFixtureTest, ReadsPlainFiles) {
  auto dataset = Read(ImagesFile(2), LabelsFile({1, 2}), /*plain=*/true);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 2);
}

TEST_F(FashionMnistFixtureTest, MaxExamplesReadsOnlyTheFirstOnes) {
  FashionMnistOptions options;
  options.max_examples = 2;
  auto dataset = Read(ImagesFile(5), LabelsFile({1, 2, 3, 4, 5}),
                      /*plain=*/false, options);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 2);
}

TEST_F(FashionMnistFixtureTest, WrongMagicIsInvalidArgument) {
  EXPECT_THAT(Read(ImagesFile(2, 28, 28, 0x801), LabelsFile({1, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("magic number is 0x00000801")));
  EXPECT_THAT(Read(ImagesFile(2), LabelsFile({1, 2}, 0x803)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("labels-idx1-ubyte")));
}

TEST_F(FashionMnistFixtureTest, ImagesOfAnotherSizeAreInvalidArgument) {
  EXPECT_THAT(
      Read(ImagesFile(2, 32, 32), LabelsFile({1, 2})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 x 32")));
}

TEST_F(FashionMnistFixtureTest, CountMismatchIsInvalidArgument) {
  EXPECT_THAT(Read(ImagesFile(3), LabelsFile({1, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds 3 images but")));
}

TEST_F(FashionMnistFixtureTest, TruncatedImagesAreDataLoss) {
  std::string images = ImagesFile(3);
  images.resize(images.size() - 100);
  EXPECT_THAT(Read(images, LabelsFile({1, 2, 3}), /*plain=*/true),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("truncated: it ends 100 bytes short")));
}

TEST_F(FashionMnistFixtureTest, TruncatedHeaderIsDataLoss) {
  EXPECT_THAT(Read(ImagesFile(3).substr(0, 10), LabelsFile({1, 2, 3})),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("IDX header")));
}

TEST_F(FashionMnistFixtureTest, HugeCountInTheHeaderIsDataLossNotACrash) {
  std::string images = ImagesFile(1);
  std::string labels = LabelsFile({1});
  for (std::string* file : {&images, &labels}) {
    (*file)[4] = '\x7f';  // Count 0x7f000001.
  }
  EXPECT_THAT(Read(images, labels), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(FashionMnistFixtureTest, LabelOutOfRangeIsInvalidArgument) {
  EXPECT_THAT(Read(ImagesFile(2), LabelsFile({1, 10})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("label 10 of example 1")));
}

TEST_F(FashionMnistFixtureTest, TrailingBytesAreInvalidArgument) {
  EXPECT_THAT(Read(ImagesFile(2), LabelsFile({1, 2}) + "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bytes after the last example")));
}

TEST(FashionMnistTest, MissingDirectoryIsNotFound) {
  EXPECT_THAT(
      OpenFashionMnist(TestTmpPath("nowhere"), FashionMnistSplit::kTest),
      StatusIs(absl::StatusCode::kNotFound));
}

TEST(FashionMnistTest, ReadsTheInstalledTestSet) {
  auto dataset = OpenFashionMnist(kInstalledDir, FashionMnistSplit::kTest);
  ASSERT_THAT(dataset, IsOk());
  ASSERT_EQ((*dataset)->size(), 10000);

  std::vector<int64_t> all(10000);
  for (int64_t i = 0; i < 10000; ++i) all[i] = i;
  absl::StatusOr<DenseBatch> batch = (*dataset)->Gather(all);
  ASSERT_THAT(batch, IsOk());
  std::vector<int> per_class(kFashionMnistClasses, 0);
  for (int64_t label : batch->labels) ++per_class[label];
  EXPECT_THAT(per_class, Each(1000));  // The test set is balanced.

  double sum = 0, sum_squares = 0;
  for (float x : batch->features) {
    sum += x;
    sum_squares += x * x;
  }
  const double n = batch->features.size();
  const double mean = sum / n;
  // The normalization constants are the training set's: close to 0 and 1.
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sum_squares / n - mean * mean), 1.0, 0.02);
}

}  // namespace
}  // namespace worker
}  // namespace tessera

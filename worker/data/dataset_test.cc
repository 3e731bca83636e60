#include "worker/data/dataset.h"

#include <algorithm>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;

// Example i has the single feature i and label i % 2.
class CountingDataset : public DenseDataset {
 public:
  explicit CountingDataset(int64_t size) : size_(size) {}
  int64_t size() const override { return size_; }
  absl::StatusOr<DenseBatch> Gather(
      absl::Span<const int64_t> indices) const override {
    absl::Status status = CheckIndices(indices);
    if (!status.ok()) return status;
    DenseBatch batch;
    batch.batch_size = indices.size();
    batch.feature_dim = 1;
    for (int64_t i : indices) {
      batch.features.push_back(static_cast<float>(i));
      batch.labels.push_back(i % 2);
    }
    return batch;
  }

 private:
  const int64_t size_;
};

std::vector<int64_t> ReadAll(PartitionReader<DenseBatch>& reader) {
  std::vector<int64_t> seen;
  while (!reader.Done()) {
    absl::StatusOr<DenseBatch> batch = reader.Next();
    EXPECT_THAT(batch, IsOk());
    if (!batch.ok()) break;
    for (float f : batch->features) seen.push_back(static_cast<int64_t>(f));
  }
  return seen;
}

TEST(PartitionRangeTest, PartitionsAreContiguousBalancedAndCoverEverything) {
  for (int64_t n : {0, 1, 7, 100, 60000}) {
    for (int64_t parts : {1, 3, 7, 64, 101}) {
      int64_t expected_begin = 0;
      for (int64_t p = 0; p < parts; ++p) {
        absl::StatusOr<ExampleRange> range = PartitionRange(n, p, parts);
        ASSERT_THAT(range, IsOk());
        EXPECT_EQ(range->begin, expected_begin);
        EXPECT_GE(range->size(), n / parts);
        EXPECT_LE(range->size(), n / parts + 1);
        expected_begin = range->end;
      }
      EXPECT_EQ(expected_begin, n) << n << " examples, " << parts << " parts";
    }
  }
}

TEST(PartitionRangeTest, GivesTheExtraExamplesToTheFirstPartitions) {
  EXPECT_THAT(PartitionRange(10, 0, 4), IsOkAndHolds(ExampleRange{0, 3}));
  EXPECT_THAT(PartitionRange(10, 1, 4), IsOkAndHolds(ExampleRange{3, 6}));
  EXPECT_THAT(PartitionRange(10, 2, 4), IsOkAndHolds(ExampleRange{6, 8}));
  EXPECT_THAT(PartitionRange(10, 3, 4), IsOkAndHolds(ExampleRange{8, 10}));
}

TEST(PartitionRangeTest, RejectsAPartitionOutOfRange) {
  EXPECT_THAT(PartitionRange(10, 4, 4),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PartitionRange(10, -1, 4),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PartitionRange(10, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SeededPermutationTest, IsAPermutationDeterminedByTheSeed) {
  const std::vector<int64_t> a = SeededPermutation(1000, 42);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_EQ(SeededPermutation(1000, 42), a);
  EXPECT_NE(SeededPermutation(1000, 43), a);
  EXPECT_NE(a, identity);
}

TEST(PartitionReaderTest, ReadsThePartitionInOrderInBatches) {
  CountingDataset dataset(10);
  BatchOptions options;
  options.batch_size = 2;
  absl::StatusOr<PartitionReader<DenseBatch>> reader =
      PartitionReader<DenseBatch>::Create(&dataset, 1, 2, options);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->range(), (ExampleRange{5, 10}));
  EXPECT_EQ(reader->num_batches(), 3);

  absl::StatusOr<DenseBatch> first = reader->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->batch_size, 2);
  EXPECT_THAT(first->features, ElementsAre(5, 6));
  EXPECT_THAT(first->labels, ElementsAre(1, 0));
  EXPECT_THAT(ReadAll(*reader), ElementsAre(7, 8, 9));
}

TEST(PartitionReaderTest, LastBatchIsSmaller) {
  CountingDataset dataset(5);
  BatchOptions options;
  options.batch_size = 4;
  auto reader = PartitionReader<DenseBatch>::Create(&dataset, 0, 1, options);
  ASSERT_THAT(reader, IsOk());
  ASSERT_THAT(reader->Next(), IsOk());
  absl::StatusOr<DenseBatch> last = reader->Next();
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(last->batch_size, 1);
  EXPECT_TRUE(reader->Done());
}

TEST(PartitionReaderTest, NextAfterTheEndIsOutOfRange) {
  CountingDataset dataset(3);
  auto reader = PartitionReader<DenseBatch>::Create(&dataset, 0, 1, {});
  ASSERT_THAT(reader, IsOk());
  ReadAll(*reader);
  EXPECT_THAT(reader->Next(), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(PartitionReaderTest, EmptyPartitionIsDoneAtOnce) {
  CountingDataset dataset(2);
  auto reader = PartitionReader<DenseBatch>::Create(&dataset, 4, 5, {});
  ASSERT_THAT(reader, IsOk());
  EXPECT_TRUE(reader->Done());
  EXPECT_EQ(reader->num_batches(), 0);
}

TEST(PartitionReaderTest, ShuffleVisitsEachExampleOfThePartitionOnce) {
  CountingDataset dataset(1000);
  BatchOptions options;
  options.batch_size = 32;
  options.shuffle = true;
  options.shuffle_seed = 7;
  auto reader = PartitionReader<DenseBatch>::Create(&dataset, 2, 4, options);
  ASSERT_THAT(reader, IsOk());
  std::vector<int64_t> seen = ReadAll(*reader);
  std::vector<int64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> expected(250);
  std::iota(expected.begin(), expected.end(), 500);
  EXPECT_EQ(sorted, expected);
  EXPECT_NE(seen, expected);

  auto again = PartitionReader<DenseBatch>::Create(&dataset, 2, 4, options);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(ReadAll(*again), seen) << "same seed, same order";
  options.shuffle_seed = 8;
  auto other = PartitionReader<DenseBatch>::Create(&dataset, 2, 4, options);
  ASSERT_THAT(other, IsOk());
  EXPECT_NE(ReadAll(*other), seen) << "another seed, another order";
}

TEST(PartitionReaderTest, SeekResumesAtABatch) {
  CountingDataset dataset(10);
  BatchOptions options;
  options.batch_size = 3;
  auto reader = PartitionReader<DenseBatch>::Create(&dataset, 0, 1, options);
  ASSERT_THAT(reader, IsOk());
  ASSERT_THAT(reader->Seek(2), IsOk());
  EXPECT_THAT(ReadAll(*reader), ElementsAre(6, 7, 8, 9));
  EXPECT_THAT(reader->Seek(5), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PartitionReaderTest, RejectsBatchSizeZero) {
  CountingDataset dataset(10);
  BatchOptions options;
  options.batch_size = 0;
  EXPECT_THAT(PartitionReader<DenseBatch>::Create(&dataset, 0, 1, options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DatasetTest, GatherRejectsAnIndexOutOfRange) {
  CountingDataset dataset(3);
  const std::vector<int64_t> indices = {0, 3};
  EXPECT_THAT(dataset.Gather(indices),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(dataset.Gather({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

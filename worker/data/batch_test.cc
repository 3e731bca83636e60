#include "worker/data/batch.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

SparseBatch TwoExamples() {
  SparseBatchBuilder builder;
  const std::vector<uint64_t> ids0 = {7, 3, 42};
  const std::vector<float> values0 = {1.0f, 2.0f, 3.0f};
  const std::vector<uint64_t> ids1 = {3, 9};
  const std::vector<float> values1 = {4.0f, 5.0f};
  builder.AddExample(1.0f, ids0, values0);
  builder.AddExample(0.0f, ids1, values1);
  return std::move(builder).Build();
}

TEST(SparseBatchBuilderTest, BuildsCsrRowsInOrder) {
  const SparseBatch batch = TwoExamples();
  EXPECT_EQ(batch.batch_size, 2);
  EXPECT_THAT(batch.row_offsets, ElementsAre(0, 3, 5));
  EXPECT_THAT(batch.feature_ids, ElementsAre(7, 3, 42, 3, 9));
  EXPECT_THAT(batch.values, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(batch.labels, ElementsAre(1, 0));
}

TEST(SparseBatchBuilderTest, UniqueIdsAreSortedAndDeduplicated) {
  const SparseBatch batch = TwoExamples();
  EXPECT_THAT(batch.unique_ids, ElementsAre(3, 7, 9, 42));
  EXPECT_THAT(batch.unique_index, ElementsAre(1, 0, 3, 0, 2));
  EXPECT_THAT(ValidateSparseBatch(batch), IsOk());
}

TEST(SparseBatchBuilderTest, AllowsExamplesWithoutFeatures) {
  SparseBatchBuilder builder;
  builder.AddExample(1.0f, {}, {});
  const SparseBatch batch = std::move(builder).Build();
  EXPECT_THAT(batch.row_offsets, ElementsAre(0, 0));
  EXPECT_TRUE(batch.unique_ids.empty());
  EXPECT_THAT(ValidateSparseBatch(batch), IsOk());
}

TEST(ValidateSparseBatchTest, RejectsUniqueIndexPointingElsewhere) {
  SparseBatch batch = TwoExamples();
  batch.unique_index[2] = 0;
  EXPECT_THAT(ValidateSparseBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unique_index[2]")));
}

TEST(ValidateSparseBatchTest, RejectsOffsetsThatDoNotCoverTheNonzeros) {
  SparseBatch batch = TwoExamples();
  batch.row_offsets.back() = 4;
  EXPECT_THAT(ValidateSparseBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidateSparseBatchTest, RejectsNonBinaryLabels) {
  SparseBatch batch = TwoExamples();
  batch.labels[1] = -1.0f;
  EXPECT_THAT(ValidateSparseBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label")));
}

TEST(ValidateDenseBatchTest, AcceptsAConsistentBatch) {
  DenseBatch batch;
  batch.batch_size = 2;
  batch.feature_dim = 3;
  batch.features.assign(6, 0.5f);
  batch.labels = {1, 2};
  EXPECT_THAT(ValidateDenseBatch(batch), IsOk());
}

TEST(ValidateDenseBatchTest, RejectsFeaturesOfTheWrongSize) {
  DenseBatch batch;
  batch.batch_size = 2;
  batch.feature_dim = 3;
  batch.features.assign(5, 0.5f);
  batch.labels = {1, 2};
  EXPECT_THAT(ValidateDenseBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 x 3")));
}

TEST(ValidateDenseBatchTest, RejectsAnEmptyBatch) {
  EXPECT_THAT(ValidateDenseBatch(DenseBatch()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

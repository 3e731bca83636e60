#include "worker/data/sparse_dataset.h"

#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kHeartScale[] =
    "/usr/share/doc/liblinear-tools/examples/heart_scale";

SparseBatch GatherAll(const SparseDataset& dataset) {
  std::vector<int64_t> indices(dataset.size());
  std::iota(indices.begin(), indices.end(), 0);
  absl::StatusOr<SparseBatch> batch = dataset.Gather(indices);
  EXPECT_THAT(batch, IsOk());
  return batch.ok() ? *std::move(batch) : SparseBatch();
}

TEST(ParseLibsvmTest, ParsesLabelsIdsAndValues) {
  auto dataset = ParseLibsvm(
      "+1 1:0.5 3:-2\n"
      "-1 2:1e-3\n"
      "0 4:7\n"
      "1\n");
  ASSERT_THAT(dataset, IsOk());
  ASSERT_EQ((*dataset)->size(), 4);
  EXPECT_EQ((*dataset)->num_nonzeros(), 4);
  EXPECT_EQ((*dataset)->feature_id_bound(), 4);

  const SparseBatch batch = GatherAll(**dataset);
  EXPECT_THAT(batch.labels, ElementsAre(1, 0, 0, 1));
  EXPECT_THAT(batch.row_offsets, ElementsAre(0, 2, 3, 4, 4));
  // 1-based indices become 0-based ids.
  EXPECT_THAT(batch.feature_ids, ElementsAre(0, 2, 1, 3));
  EXPECT_THAT(batch.values, ElementsAre(0.5f, -2.0f, 1e-3f, 7.0f));
  EXPECT_THAT(batch.unique_ids, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(ValidateSparseBatch(batch), IsOk());
}

TEST(ParseLibsvmTest, SkipsBlankLinesAndComments) {
  auto dataset = ParseLibsvm(
      "# a header comment\n"
      "\n"
      "+1 1:1 # trailing comment\r\n"
      "   \t\n"
      "-1\t2:1\n");
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 2);
  EXPECT_EQ((*dataset)->num_nonzeros(), 2);
}

TEST(ParseLibsvmTest, ZeroBasedIndicesAreKeptAsIds) {
  LibsvmOptions options;
  options.zero_based_indices = true;
  auto dataset = ParseLibsvm("1 0:1 5:2\n", options);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_THAT(GatherAll(**dataset).feature_ids, ElementsAre(0, 5));
}

TEST(ParseLibsvmTest, MaxExamplesStopsEarly) {
  LibsvmOptions options;
  options.max_examples = 1;
  auto dataset = ParseLibsvm("1 1:1\n1 1:1\nnot even parsed\n", options);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 1);
}

struct MalformedCase {
  std::string text;
  std::string message;

  friend void PrintTo(const MalformedCase& c, std::ostream* os) {
    *os << "'" << c.text << "'";
  }
};

class MalformedLibsvmTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedLibsvmTest, IsInvalidArgumentNamingTheLine) {
  EXPECT_THAT(ParseLibsvm("+1 1:1\n" + GetParam().text + "\n", {}, "f.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f.txt:2: " + GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedLibsvmTest,
    ::testing::Values(
        MalformedCase{"yes 1:1", "label 'yes' is not a number"},
        MalformedCase{"2 1:1", "label 2 is not binary"},
        MalformedCase{"1 1-1", "'1-1' is not index:value"},
        MalformedCase{"1 x:1", "feature index in 'x:1'"},
        MalformedCase{"1 -3:1", "feature index in '-3:1'"},
        MalformedCase{"1 0:1", "feature index 0"},
        MalformedCase{"1 3:1 2:1", "feature index 2 is not above"},
        MalformedCase{"1 3:1 3:1", "feature index 3 is not above"},
        MalformedCase{"1 3:", "value in '3:' is not a number"},
        MalformedCase{"1 3:abc", "value in '3:abc' is not a number"},
        MalformedCase{"1 3:inf", "value in '3:inf' is not finite"},
        MalformedCase{"1 3:nan", "value in '3:nan' is not finite"}));

TEST(ReadLibsvmFileTest, ReadsTheInstalledHeartScaleSample) {
  auto dataset = ReadLibsvmFile(kHeartScale);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 270);
  EXPECT_EQ((*dataset)->feature_id_bound(), 13);
  const SparseBatch batch = GatherAll(**dataset);
  EXPECT_EQ(std::accumulate(batch.labels.begin(), batch.labels.end(), 0.0f),
            120.0f);
  // First line: "+1 1:0.708333 2:1 3:1 4:-0.320755 ...".
  EXPECT_EQ(batch.labels[0], 1.0f);
  EXPECT_THAT(
      std::vector<float>(batch.values.begin(), batch.values.begin() + 4),
      ElementsAre(0.708333f, 1.0f, 1.0f, -0.320755f));
  EXPECT_EQ(batch.unique_ids.size(), 13);
}

TEST(ReadLibsvmFileTest, ErrorsNameThePathAndLine) {
  const std::string path = TestTmpPath("bad.libsvm");
  WriteTestFile(path, "+1 1:1\n-1 2:1\n+1 1:x\n");
  EXPECT_THAT(ReadLibsvmFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(path + ":3: value in '1:x'")));
}

TEST(ReadLibsvmFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadLibsvmFile(TestTmpPath("missing.libsvm")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ReadLibsvmFileTest, ReadsGzippedFiles) {
  const std::string path = TestTmpPath("data.libsvm.gz");
  WriteGzipTestFile(path, "+1 1:1 2:2\n-1 3:3\n");
  auto dataset = ReadLibsvmFile(path);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ((*dataset)->size(), 2);
}

TEST(WriteLibsvmFileTest, WhatIsWrittenReadsBackTheSame) {
  InMemorySparseDataset original;
  const std::vector<uint64_t> ids0 = {9, 2, 1000000};
  const std::vector<float> values0 = {0.1f, -3.25f, 1.0f / 3.0f};
  original.AddExample(1.0f, ids0, values0);
  original.AddExample(0.0f, {}, {});
  const std::vector<uint64_t> ids2 = {0};
  const std::vector<float> values2 = {1e-20f};
  original.AddExample(0.0f, ids2, values2);

  const std::string path = TestTmpPath("roundtrip.libsvm");
  ASSERT_THAT(WriteLibsvmFile(original, path), IsOk());
  EXPECT_EQ(ReadTestFile(path),
            "+1 3:-3.25 10:0.100000001 1000001:0.333333343\n"
            "-1\n"
            "-1 1:9.99999968e-21\n");
  auto reread = ReadLibsvmFile(path);
  ASSERT_THAT(reread, IsOk());
  const SparseBatch a = GatherAll(original);
  const SparseBatch b = GatherAll(**reread);
  EXPECT_EQ(b.labels, a.labels);
  EXPECT_EQ(b.row_offsets, a.row_offsets);
  EXPECT_EQ(b.unique_ids, a.unique_ids);
  // Rows come back with ids ascending; the values travel with their ids.
  EXPECT_THAT(b.feature_ids, ElementsAre(2, 9, 1000000, 0));
  EXPECT_THAT(b.values, ElementsAre(-3.25f, 0.1f, 1.0f / 3.0f, 1e-20f));
}

TEST(WriteLibsvmFileTest, UnwritablePathIsAnError) {
  InMemorySparseDataset dataset;
  dataset.AddExample(1.0f, {}, {});
  EXPECT_THAT(WriteLibsvmFile(dataset, TestTmpPath("no/such/dir/file")),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

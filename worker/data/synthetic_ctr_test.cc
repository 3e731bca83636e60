#include "worker/data/synthetic_ctr.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/sparse_dataset.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::Each;
using ::testing::Eq;

std::unique_ptr<SyntheticCtrDataset> Make(const SyntheticCtrOptions& options) {
  auto dataset = SyntheticCtrDataset::Create(options);
  EXPECT_THAT(dataset, IsOk());
  return dataset.ok() ? *std::move(dataset) : nullptr;
}

SparseBatch GatherRange(const SparseDataset& dataset, int64_t begin,
                        int64_t end) {
  std::vector<int64_t> indices(end - begin);
  std::iota(indices.begin(), indices.end(), begin);
  absl::StatusOr<SparseBatch> batch = dataset.Gather(indices);
  EXPECT_THAT(batch, IsOk());
  return batch.ok() ? *std::move(batch) : SparseBatch();
}

SyntheticCtrOptions SmallOptions() {
  SyntheticCtrOptions options;
  options.num_examples = 20000;
  options.vocab_size = 1000;
  options.features_per_example = 8;
  options.seed = 11;
  return options;
}

TEST(SyntheticCtrTest, EveryExampleHasDistinctAscendingIdsInTheVocabulary) {
  auto dataset = Make(SmallOptions());
  ASSERT_NE(dataset, nullptr);
  EXPECT_EQ(dataset->size(), 20000);
  const SparseBatch batch = GatherRange(*dataset, 0, 2000);
  ASSERT_THAT(ValidateSparseBatch(batch), IsOk());
  EXPECT_THAT(batch.values, Each(Eq(1.0f)));
  for (int i = 0; i < batch.batch_size; ++i) {
    ASSERT_EQ(batch.row_offsets[i + 1] - batch.row_offsets[i], 8);
    for (int64_t j = batch.row_offsets[i]; j < batch.row_offsets[i + 1]; ++j) {
      EXPECT_LT(batch.feature_ids[j], 1000u);
      if (j > batch.row_offsets[i]) {
        EXPECT_LT(batch.feature_ids[j - 1], batch.feature_ids[j]);
      }
    }
  }
}

TEST(SyntheticCtrTest, IsDeterministicAndRandomlyAccessible) {
  auto a = Make(SmallOptions());
  auto b = Make(SmallOptions());
  const SparseBatch all = GatherRange(*a, 100, 110);
  const SparseBatch again = GatherRange(*b, 100, 110);
  EXPECT_EQ(all.feature_ids, again.feature_ids);
  EXPECT_EQ(all.labels, again.labels);

  const SparseBatch one = GatherRange(*a, 105, 106);
  EXPECT_EQ(std::vector<uint64_t>(all.feature_ids.begin() + 5 * 8,
                                  all.feature_ids.begin() + 6 * 8),
            one.feature_ids);
  EXPECT_EQ(all.labels[5], one.labels[0]);

  SyntheticCtrOptions other_seed = SmallOptions();
  other_seed.seed = 12;
  EXPECT_NE(GatherRange(*Make(other_seed), 100, 110).feature_ids,
            all.feature_ids);
}

// A held-out set: other examples, the same true model (a different seed
// would be a different model, and no trained model could score well on it).
TEST(SyntheticCtrTest, AnotherExampleSeedKeepsTheTrueModel) {
  auto train = Make(SmallOptions());
  SyntheticCtrOptions held_out_options = SmallOptions();
  held_out_options.example_seed = 1;
  auto held_out = Make(held_out_options);
  EXPECT_NE(GatherRange(*train, 0, 20).feature_ids,
            GatherRange(*held_out, 0, 20).feature_ids);
  for (uint64_t id = 0; id < 100; ++id) {
    EXPECT_EQ(train->TrueWeight(id), held_out->TrueWeight(id));
  }
}

TEST(SyntheticCtrTest, IdFrequenciesFollowZipf) {
  for (double exponent : {0.8, 1.0, 1.3}) {
    SyntheticCtrOptions options = SmallOptions();
    options.num_examples = 200000;
    options.features_per_example = 1;  // No redraws: pure Zipf samples.
    options.zipf_exponent = exponent;
    auto dataset = Make(options);
    const SparseBatch batch = GatherRange(*dataset, 0, options.num_examples);
    std::vector<double> count(options.vocab_size, 0);
    for (uint64_t id : batch.feature_ids) ++count[id];

    double normalizer = 0;
    for (uint64_t r = 1; r <= options.vocab_size; ++r) {
      normalizer += std::pow(r, -exponent);
    }
    const double n = options.num_examples;
    for (uint64_t id : {0, 1, 9}) {
      const double expected = n * std::pow(id + 1, -exponent) / normalizer;
      EXPECT_NEAR(count[id], expected, 5 * std::sqrt(expected))
          << "id " << id << ", exponent " << exponent;
    }
    // The tail: ids 500-999 together.
    double tail = 0, expected_tail = 0;
    for (uint64_t id = 500; id < 1000; ++id) {
      tail += count[id];
      expected_tail += n * std::pow(id + 1, -exponent) / normalizer;
    }
    EXPECT_NEAR(tail, expected_tail, 5 * std::sqrt(expected_tail))
        << "exponent " << exponent;
  }
}

TEST(SyntheticCtrTest, LabelsFollowTheTrueLogisticModel) {
  SyntheticCtrOptions options = SmallOptions();
  options.bias = -0.5;
  auto dataset = Make(options);
  const SparseBatch batch = GatherRange(*dataset, 0, options.num_examples);

  // Calibration per bucket of true probability: the mean label matches the
  // mean probability within 5 standard errors.
  constexpr int kBuckets = 5;
  std::vector<double> labels(kBuckets, 0), probabilities(kBuckets, 0),
      variances(kBuckets, 0), counts(kBuckets, 0);
  for (int i = 0; i < batch.batch_size; ++i) {
    const double p = dataset->TrueProbability(
        absl::MakeConstSpan(batch.feature_ids.data() + batch.row_offsets[i],
                            batch.row_offsets[i + 1] - batch.row_offsets[i]));
    const int bucket = std::min(kBuckets - 1, static_cast<int>(p * kBuckets));
    labels[bucket] += batch.labels[i];
    probabilities[bucket] += p;
    variances[bucket] += p * (1 - p);
    ++counts[bucket];
  }
  for (int b = 0; b < kBuckets; ++b) {
    ASSERT_GT(counts[b], 100) << "bucket " << b << " is nearly empty";
    EXPECT_NEAR(labels[b], probabilities[b], 5 * std::sqrt(variances[b]))
        << "bucket " << b;
  }
}

TEST(SyntheticCtrTest, TrueWeightsAreNormalWithTheConfiguredSpread) {
  SyntheticCtrOptions options = SmallOptions();
  options.weight_stddev = 2.0;
  auto dataset = Make(options);
  double sum = 0, sum_squares = 0;
  constexpr int kIds = 100000;
  for (uint64_t id = 0; id < kIds; ++id) {
    const double w = dataset->TrueWeight(id);
    sum += w;
    sum_squares += w * w;
  }
  EXPECT_NEAR(sum / kIds, 0.0, 0.05);
  EXPECT_NEAR(std::sqrt(sum_squares / kIds), 2.0, 0.05);
  EXPECT_EQ(dataset->TrueWeight(17), Make(options)->TrueWeight(17));
}

TEST(SyntheticCtrTest, AVocabularyOfExactlyKIdsStillYieldsDistinctIds) {
  SyntheticCtrOptions options = SmallOptions();
  options.vocab_size = 5;
  options.features_per_example = 5;
  options.zipf_exponent = 3.0;
  auto dataset = Make(options);
  const SparseBatch batch = GatherRange(*dataset, 0, 100);
  for (int i = 0; i < batch.batch_size; ++i) {
    EXPECT_EQ(std::vector<uint64_t>(
                  batch.feature_ids.begin() + batch.row_offsets[i],
                  batch.feature_ids.begin() + batch.row_offsets[i + 1]),
              (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  }
}

TEST(SyntheticCtrTest, WritesLibsvmThatReadsBackTheSameExamples) {
  SyntheticCtrOptions options = SmallOptions();
  options.num_examples = 500;
  auto dataset = Make(options);
  const std::string path = TestTmpPath("synthetic.libsvm");
  ASSERT_THAT(WriteLibsvmFile(*dataset, path), IsOk());
  auto reread = ReadLibsvmFile(path);
  ASSERT_THAT(reread, IsOk());
  ASSERT_EQ((*reread)->size(), 500);
  const SparseBatch a = GatherRange(*dataset, 0, 500);
  const SparseBatch b = GatherRange(**reread, 0, 500);
  EXPECT_EQ(a.feature_ids, b.feature_ids);
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(a.labels, b.labels);
}

TEST(SyntheticCtrTest, RejectsBadOptions) {
  SyntheticCtrOptions options = SmallOptions();
  options.zipf_exponent = 0;
  EXPECT_THAT(SyntheticCtrDataset::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options = SmallOptions();
  options.features_per_example = 1001;
  EXPECT_THAT(SyntheticCtrDataset::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options = SmallOptions();
  options.vocab_size = 0;
  EXPECT_THAT(SyntheticCtrDataset::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options = SmallOptions();
  options.num_examples = -1;
  EXPECT_THAT(SyntheticCtrDataset::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

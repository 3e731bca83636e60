#include "ps/common/metrics/histogram.h"

#include <cmath>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace metrics {
namespace {

using ::testing::ElementsAre;

TEST(HistogramTest, ObservationsFallInTheFirstBucketTheyAreAtMost) {
  Histogram histogram({1, 2, 5});
  for (const double v : {0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 7.0, -3.0}) {
    histogram.Observe(v);
  }
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_THAT(snapshot.bucket_boundaries, ElementsAre(1, 2, 5));
  // le=1: 0.5 1 -3; le=2: +1.5 2; le=5: +4 5; +Inf: +7.
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(3, 5, 7, 8));
  EXPECT_EQ(snapshot.count, 8);
  EXPECT_EQ(snapshot.sum, 18);
}

TEST(HistogramTest, NanCountsOnlyInTheInfBucket) {
  Histogram histogram({1});
  histogram.Observe(std::nan(""));
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(0, 1));
  EXPECT_TRUE(std::isnan(snapshot.sum));
}

TEST(HistogramTest, ATrailingInfBoundaryIsDroppedAsImplicit) {
  Histogram histogram({1, HUGE_VAL});
  EXPECT_THAT(histogram.bucket_boundaries(), ElementsAre(1));
  histogram.Observe(3);
  EXPECT_THAT(histogram.Snapshot().cumulative_counts, ElementsAre(0, 1));
}

TEST(HistogramTest, NoBoundariesMeansOnlyTheInfBucket) {
  Histogram histogram({});
  histogram.Observe(3);
  EXPECT_THAT(histogram.Snapshot().cumulative_counts, ElementsAre(1));
}

TEST(HistogramTest, ManyBucketsSpanSeveralCacheLinesPerSlot) {
  Histogram histogram(LinearBuckets(1, 1, 30));
  for (int v = 1; v <= 31; ++v) histogram.Observe(v);
  const HistogramSnapshot snapshot = histogram.Snapshot();
  ASSERT_EQ(snapshot.cumulative_counts.size(), 31);
  for (int i = 0; i < 31; ++i) EXPECT_EQ(snapshot.cumulative_counts[i], i + 1);
  EXPECT_EQ(snapshot.sum, 31 * 32 / 2);
}

TEST(HistogramDeathTest, UnsortedOrDuplicateBoundariesAreAProgrammingError) {
  EXPECT_DEATH(Histogram({2, 1}), "strictly ascending");
  EXPECT_DEATH(Histogram({1, 1}), "strictly ascending");
  EXPECT_DEATH(Histogram({1, std::nan("")}), "NaN");
}

TEST(HistogramTest, ObservationsFromManyThreadsAreAllCounted) {
  constexpr int kThreads = 8;
  constexpr int kObservations = 50000;
  Histogram histogram({1, 10});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&histogram] {
      for (int i = 0; i < kObservations; ++i) {
        histogram.Observe(i % 2 == 0 ? 0.5 : 20);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const HistogramSnapshot snapshot = histogram.Snapshot();
  constexpr uint64_t kHalf = kThreads * kObservations / 2;
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(kHalf, kHalf, 2 * kHalf));
  EXPECT_EQ(snapshot.sum, kHalf * 20.5);
}

TEST(BucketsTest, ExponentialBucketsMultiplyByTheFactor) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ElementsAre(1, 2, 4, 8));
}

TEST(BucketsTest, LinearBucketsAddTheWidth) {
  EXPECT_THAT(LinearBuckets(10, 5, 3), ElementsAre(10, 15, 20));
}

TEST(BucketsTest, LatencyBucketsSpan25MicrosecondsTo10Seconds) {
  const Histogram::BucketBoundaries buckets = LatencyBuckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_EQ(buckets.front(), 25e-6);
  EXPECT_EQ(buckets.back(), 10);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  Histogram histogram(buckets);  // Valid: strictly ascending.
}

TEST(BucketsDeathTest, InvalidParametersAreAProgrammingError) {
  EXPECT_DEATH(ExponentialBuckets(0, 2, 3), "start must be positive");
  EXPECT_DEATH(ExponentialBuckets(1, 1, 3), "factor must be above 1");
  EXPECT_DEATH(LinearBuckets(0, 0, 3), "width must be positive");
  EXPECT_DEATH(LinearBuckets(0, 1, 0), "count must be at least 1");
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

#include "tests/fault/metrics_text.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tessera::fault {
namespace {

constexpr char kScrape[] =
    R"(# HELP tessera_ps_rejected_requests_total Requests rejected.
# TYPE tessera_ps_rejected_requests_total counter
tessera_ps_rejected_requests_total{reason="malformed"} 3
tessera_ps_rejected_requests_total{reason="non_finite"} 4
tessera_ps_flush_failures_total 2
tessera_ps_request_latency_seconds_bucket{rpc="push",le="0.001"} 10
tessera_ps_request_latency_seconds_bucket{rpc="push",le="0.01"} 90
tessera_ps_request_latency_seconds_bucket{rpc="push",le="0.1"} 100
tessera_ps_request_latency_seconds_bucket{rpc="push",le="+Inf"} 100
tessera_ps_request_latency_seconds_sum{rpc="push"} 0.5
tessera_ps_request_latency_seconds_count{rpc="push"} 100
tessera_ps_request_latency_seconds_bucket{rpc="pull",le="0.001"} 1
tessera_ps_request_latency_seconds_bucket{rpc="pull",le="+Inf"} 1
)";

TEST(MetricsTextTest, ReadsSeriesByNameAndLabels) {
  MetricsText m = MetricsText::Parse(kScrape);
  EXPECT_EQ(m.Get("tessera_ps_flush_failures_total"), 2);
  EXPECT_EQ(
      m.Get("tessera_ps_rejected_requests_total", "reason=\"non_finite\""), 4);
  EXPECT_EQ(m.Get("tessera_ps_rejected_requests_total", "reason=\"x\""), 0);
  EXPECT_FALSE(m.Has("tessera_ps_rejected_requests_total", "reason=\"x\""));
  EXPECT_EQ(m.Sum("tessera_ps_rejected_requests_total"), 7);
}

TEST(MetricsTextTest, QuantilesInterpolateInsideTheBucketLikePromQL) {
  MetricsText m = MetricsText::Parse(kScrape);
  Buckets push =
      m.HistogramBuckets("tessera_ps_request_latency_seconds", "rpc=\"push\"");
  ASSERT_EQ(push.size(), 4u);
  EXPECT_TRUE(std::isinf(push.back().first));
  EXPECT_EQ(BucketCount(push), 100);
  // The 50th observation lies half-way through (0.001, 0.01].
  EXPECT_NEAR(HistogramQuantile(0.5, push), 0.001 + 0.009 * 40 / 80, 1e-12);
  // The 99th lies 9/10 into (0.01, 0.1].
  EXPECT_NEAR(HistogramQuantile(0.99, push), 0.01 + 0.09 * 9 / 10, 1e-12);
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {})));
}

TEST(MetricsTextTest, SubtractedBucketsCountOnlyTheNewObservations) {
  Buckets before = {{0.001, 5}, {0.01, 5}, {INFINITY, 5}};
  Buckets after = {{0.001, 5}, {0.01, 15}, {INFINITY, 15}};
  Buckets d = SubtractBuckets(after, before);
  EXPECT_EQ(BucketCount(d), 10);
  EXPECT_NEAR(HistogramQuantile(0.5, d), 0.001 + 0.009 * 0.5, 1e-12);
}

}  // namespace
}  // namespace tessera::fault

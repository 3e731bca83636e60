#include "ps/common/metrics/registry.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"

namespace tessera {
namespace metrics {
namespace {

using ::testing::HasSubstr;

TEST(RegistryTest, EmptyRegistrySerializesToNothing) {
  Registry registry;
  EXPECT_EQ(registry.Serialize(), "");
}

TEST(RegistryTest, SerializesCountersAndGaugesInTextFormat004) {
  Registry registry;
  Family<Counter>& requests = BuildCounter()
                                  .Name("tessera_ps_push_requests_total")
                                  .Help("Push requests received.")
                                  .Labels({{"shard", "0"}})
                                  .Register(registry);
  requests.Add({{"code", "OK"}}).Increment(3);
  requests.Add({{"code", "INVALID_ARGUMENT"}}).Increment();
  BuildGauge()
      .Name("tessera_ps_parameter_bytes")
      .Help("Bytes of parameters held.")
      .Register(registry)
      .Add({})
      .Set(0.25);

  EXPECT_EQ(registry.Serialize(),
            "# HELP tessera_ps_parameter_bytes Bytes of parameters held.\n"
            "# TYPE tessera_ps_parameter_bytes gauge\n"
            "tessera_ps_parameter_bytes 0.25\n"
            "# HELP tessera_ps_push_requests_total Push requests received.\n"
            "# TYPE tessera_ps_push_requests_total counter\n"
            "tessera_ps_push_requests_total{code=\"INVALID_ARGUMENT\","
            "shard=\"0\"} 1\n"
            "tessera_ps_push_requests_total{code=\"OK\",shard=\"0\"} 3\n");
}

TEST(RegistryTest, SerializesHistogramsWithCumulativeBucketsSumAndCount) {
  Registry registry;
  Histogram& latency = BuildHistogram()
                           .Name("tessera_ps_pull_latency_seconds")
                           .Help("Pull latency.")
                           .Register(registry)
                           .Add({{"rpc", "Pull"}}, {0.005, 0.1, 1});
  latency.Observe(0.001);
  latency.Observe(0.05);
  latency.Observe(0.05);
  latency.Observe(3);

  EXPECT_EQ(
      registry.Serialize(),
      "# HELP tessera_ps_pull_latency_seconds Pull latency.\n"
      "# TYPE tessera_ps_pull_latency_seconds histogram\n"
      "tessera_ps_pull_latency_seconds_bucket{rpc=\"Pull\",le=\"0.005\"} 1\n"
      "tessera_ps_pull_latency_seconds_bucket{rpc=\"Pull\",le=\"0.1\"} 3\n"
      "tessera_ps_pull_latency_seconds_bucket{rpc=\"Pull\",le=\"1\"} 3\n"
      "tessera_ps_pull_latency_seconds_bucket{rpc=\"Pull\",le=\"+Inf\"} 4\n"
      "tessera_ps_pull_latency_seconds_sum{rpc=\"Pull\"} 3.101\n"
      "tessera_ps_pull_latency_seconds_count{rpc=\"Pull\"} 4\n");
}

TEST(RegistryTest, HistogramWithoutLabelsPutsOnlyLeInBraces) {
  Registry registry;
  BuildHistogram()
      .Name("size_bytes")
      .Help("Sizes.")
      .Register(registry)
      .Add({}, {10})
      .Observe(20);
  EXPECT_EQ(registry.Serialize(),
            "# HELP size_bytes Sizes.\n"
            "# TYPE size_bytes histogram\n"
            "size_bytes_bucket{le=\"10\"} 0\n"
            "size_bytes_bucket{le=\"+Inf\"} 1\n"
            "size_bytes_sum 20\n"
            "size_bytes_count 1\n");
}

TEST(RegistryTest, EscapesHelpAndLabelValues) {
  Registry registry;
  BuildGauge()
      .Name("odd")
      .Help("Back\\slash and\nnewline, \"quotes\" kept.")
      .Register(registry)
      .Add({{"path", "C:\\dir\n\"x\""}})
      .Set(1);
  EXPECT_EQ(registry.Serialize(),
            "# HELP odd Back\\\\slash and\\nnewline, \"quotes\" kept.\n"
            "# TYPE odd gauge\n"
            "odd{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST(RegistryTest, SpecialValuesAreSpelledAsPrometheusExpects) {
  Registry registry;
  Family<Gauge>& family = BuildGauge().Name("g").Help("G.").Register(registry);
  family.Add({{"v", "a"}}).Set(HUGE_VAL);
  family.Add({{"v", "b"}}).Set(-HUGE_VAL);
  family.Add({{"v", "c"}}).Set(std::nan(""));
  family.Add({{"v", "d"}}).Set(1e300);
  EXPECT_EQ(registry.Serialize(),
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{v=\"a\"} +Inf\n"
            "g{v=\"b\"} -Inf\n"
            "g{v=\"c\"} NaN\n"
            "g{v=\"d\"} 1e+300\n");
}

TEST(RegistryTest, FamilyWithoutSeriesStillPrintsHelpAndType) {
  Registry registry;
  BuildCounter().Name("idle_total").Help("Nothing yet.").Register(registry);
  EXPECT_EQ(registry.Serialize(),
            "# HELP idle_total Nothing yet.\n# TYPE idle_total counter\n");
}

TEST(RegistryTest, FamiliesAreSerializedInNameOrder) {
  Registry registry;
  BuildGauge().Name("b").Help("B.").Register(registry).Add({}).Set(2);
  BuildGauge().Name("a").Help("A.").Register(registry).Add({}).Set(1);
  EXPECT_EQ(registry.Serialize(),
            "# HELP a A.\n# TYPE a gauge\na 1\n"
            "# HELP b B.\n# TYPE b gauge\nb 2\n");
}

TEST(RegistryTest, AddWithTheSameLabelsReturnsTheSameSeries) {
  Registry registry;
  Family<Counter>& family =
      BuildCounter().Name("c_total").Help("C.").Register(registry);
  Counter& first = family.Add({{"a", "1"}, {"b", "2"}});
  Counter& again = family.Add({{"b", "2"}, {"a", "1"}});
  Counter& other = family.Add({{"a", "1"}});
  EXPECT_EQ(&first, &again);
  EXPECT_NE(&first, &other);
  EXPECT_EQ(family.name(), "c_total");
}

TEST(RegistryTest, ReRegisteringAnIdenticalFamilyReturnsTheExistingOne) {
  Registry registry;
  Family<Counter>& first =
      BuildCounter().Name("c_total").Help("C.").Register(registry);
  Registry* pointer = &registry;
  Family<Counter>& again =
      BuildCounter().Name("c_total").Help("C.").Register(pointer);
  EXPECT_EQ(&first, &again);
  EXPECT_TRUE(registry.HasFamily("c_total"));
  EXPECT_FALSE(registry.HasFamily("d_total"));
}

TEST(RegistryTest, HistogramSeriesAddedAgainWithTheSameBucketsIsTheSame) {
  Registry registry;
  Family<Histogram>& family =
      BuildHistogram().Name("h").Help("H.").Register(registry);
  Histogram& first = family.Add({}, LatencyBuckets());
  Histogram& again = family.Add({}, LatencyBuckets());
  Histogram::BucketBoundaries with_inf = LatencyBuckets();
  with_inf.push_back(HUGE_VAL);
  Histogram& with_explicit_inf = family.Add({}, with_inf);
  EXPECT_EQ(&first, &again);
  EXPECT_EQ(&first, &with_explicit_inf);
}

TEST(RegistryDeathTest, ReRegisteringWithADifferentDefinitionIsAnError) {
  Registry registry;
  BuildCounter().Name("x_total").Help("X.").Register(registry);
  EXPECT_DEATH(BuildCounter().Name("x_total").Help("Y.").Register(registry),
               "registered twice with different definitions");
  EXPECT_DEATH(BuildGauge().Name("x_total").Help("X.").Register(registry),
               "registered twice with different definitions");
  EXPECT_DEATH(BuildCounter()
                   .Name("x_total")
                   .Help("X.")
                   .Labels({{"a", "b"}})
                   .Register(registry),
               "registered twice with different definitions");
}

TEST(RegistryDeathTest, InvalidNamesAreAProgrammingError) {
  Registry registry;
  EXPECT_DEATH(BuildCounter().Help("No name.").Register(registry),
               "invalid metric name");
  EXPECT_DEATH(BuildCounter().Name("bad-name").Help("X.").Register(registry),
               "invalid metric name");
  EXPECT_DEATH(BuildCounter()
                   .Name("x_total")
                   .Help("X.")
                   .Labels({{"__reserved", "v"}})
                   .Register(registry),
               "invalid label name");
  Family<Counter>& family = BuildCounter()
                                .Name("y_total")
                                .Help("Y.")
                                .Labels({{"shard", "0"}})
                                .Register(registry);
  EXPECT_DEATH(family.Add({{"bad label", "v"}}), "invalid label name");
  EXPECT_DEATH(family.Add({{"shard", "1"}}), "already a constant label");
  Family<Histogram>& histograms =
      BuildHistogram().Name("z").Help("Z.").Register(registry);
  EXPECT_DEATH(histograms.Add({{"le", "1"}}, {1}), "reserved for buckets");
  histograms.Add({}, {1, 2});
  EXPECT_DEATH(histograms.Add({}, {1, 3}), "different bucket boundaries");
}

TEST(RegistryTest, CollectHooksRunBeforeEachSerialize) {
  Registry registry;
  Gauge& scrapes =
      BuildGauge().Name("scrapes").Help("S.").Register(registry).Add({});
  registry.AddCollectHook([&scrapes] { scrapes.Increment(); });
  EXPECT_THAT(registry.Serialize(), HasSubstr("\nscrapes 1\n"));
  EXPECT_THAT(registry.Serialize(), HasSubstr("\nscrapes 2\n"));
}

TEST(RegistryTest, CollectHookMayRegisterFamiliesAndSeries) {
  Registry registry;
  registry.AddCollectHook([&registry] {
    BuildGauge().Name("late").Help("L.").Register(registry).Add({}).Set(7);
  });
  EXPECT_THAT(registry.Serialize(), HasSubstr("\nlate 7\n"));
}

TEST(RegistryTest, SerializeRacesSafelyWithUpdatesAndRegistration) {
  Registry registry;
  Family<Counter>& family =
      BuildCounter().Name("c_total").Help("C.").Register(registry);
  constexpr int kThreads = 4;
  constexpr int kSteps = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kSteps; ++i) {
        family.Add({{"t", std::to_string(t)}}).Increment();
        if (i % 100 == 0) {
          BuildGauge()
              .Name("g" + std::to_string(i))
              .Help("G.")
              .Register(registry);
          registry.Serialize();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::string text = registry.Serialize();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_THAT(text, HasSubstr("c_total{t=\"" + std::to_string(t) + "\"} " +
                                std::to_string(kSteps) + "\n"));
  }
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

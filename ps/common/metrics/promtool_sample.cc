// Prints the exposition of a registry that uses every feature of the
// library (counters, gauges, histograms, constant and per-series labels,
// escaping, special values, process metrics, build info), for
// promtool_test.sh to lint with `promtool check metrics`.

#include <cmath>
#include <iostream>

#include "ps/common/metrics/metrics.h"
#include "ps/common/metrics/process_metrics.h"

namespace tessera {
namespace metrics {
namespace {

void Populate(Registry& registry) {
  Family<Counter>& pushes = BuildCounter()
                                .Name("tessera_ps_push_requests_total")
                                .Help("Push requests received, by code.")
                                .Labels({{"shard", "0"}})
                                .Register(registry);
  pushes.Add({{"code", "OK"}}).Increment(1234);
  pushes.Add({{"code", "INVALID_ARGUMENT"}}).Increment();
  BuildCounter()
      .Name("tessera_ps_received_bytes_total")
      .Help("Bytes received on the data port.")
      .Register(registry)
      .Add({})
      .Increment(1e12);
  BuildCounter()
      .Name("tessera_ps_apply_seconds_total")
      .Help("Time spent applying updates.")
      .Register(registry)
      .Add({})
      .Increment(0.1 + 0.2);
  BuildCounter()
      .Name("tessera_ps_rejected_pushes_total")
      .Help("Pushes refused; no series until the first one.")
      .Register(registry);

  Family<Gauge>& gauges =
      BuildGauge()
          .Name("tessera_test_values")
          .Help("Values that need care: back\\slash, new\nline, \"quotes\".")
          .Register(registry);
  gauges.Add({{"kind", "inf"}}).Set(HUGE_VAL);
  gauges.Add({{"kind", "minus_inf"}}).Set(-HUGE_VAL);
  gauges.Add({{"kind", "nan"}}).Set(std::nan(""));
  gauges.Add({{"kind", "negative"}}).Set(-3.5);
  gauges.Add({{"kind", "tiny"}}).Set(2.5e-05);
  gauges.Add({{"kind", "huge"}}).Set(1e300);
  gauges.Add({{"kind", "escaped \\ \" \n value"}}).Set(1);
  BuildGauge()
      .Name("tessera_ps_last_flush_timestamp_seconds")
      .Help("When the last flush finished.")
      .Register(registry)
      .Add({})
      .SetToCurrentTime();

  Family<Histogram>& latency = BuildHistogram()
                                   .Name("tessera_ps_pull_latency_seconds")
                                   .Help("Pull latency.")
                                   .Labels({{"shard", "0"}})
                                   .Register(registry);
  Histogram& pull = latency.Add({{"rpc", "PullTensor"}}, LatencyBuckets());
  for (const double v : {0.00001, 0.0003, 0.004, 0.2, 7.0, 30.0}) {
    pull.Observe(v);
  }
  latency.Add({{"rpc", "PullModel"}}, LatencyBuckets());
  Histogram& sizes = BuildHistogram()
                         .Name("tessera_ps_push_size_bytes")
                         .Help("Push message sizes.")
                         .Register(registry)
                         .Add({}, ExponentialBuckets(64, 4, 10));
  sizes.Observe(100);
  sizes.Observe(1e9);

  RegisterProcessMetrics(&registry);
  RegisterBuildInfo(&registry, "ps");
  RegisterBuildInfo(&registry, "worker");
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

int main() {
  tessera::metrics::Registry registry;
  tessera::metrics::Populate(registry);
  std::cout << registry.Serialize();
  return std::cout.good() ? 0 : 1;
}

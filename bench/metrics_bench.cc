// Cost of the metrics hot paths, next to two baselines in the same run:
// a std::atomic<double> compare-and-swap increment (what prometheus-cpp's
// Counter does) and a mutex-protected double. The *_Threads variants share
// one metric among the benchmark's threads; the time reported is per
// operation per thread.
//
//   bazel run -c opt //bench:metrics_bench

#include <atomic>
#include <mutex>
#include <string>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "ps/common/metrics/metrics.h"

namespace tessera {
namespace metrics {
namespace {

// Shared by every thread of a multi-threaded benchmark run.
Registry& BenchRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

Counter& SharedCounter() {
  static Counter& counter = BuildCounter()
                                .Name("bench_counter_total")
                                .Help("Bench.")
                                .Register(BenchRegistry())
                                .Add({});
  return counter;
}

void BM_CounterIncrement(benchmark::State& state) {
  Counter& counter = SharedCounter();
  for (auto _ : state) counter.Increment();
  benchmark::DoNotOptimize(counter);
}
BENCHMARK(BM_CounterIncrement)->ThreadRange(1, 4);

void BM_CounterIncrementByFraction(benchmark::State& state) {
  Counter& counter = SharedCounter();
  for (auto _ : state) counter.Increment(0.5);
}
BENCHMARK(BM_CounterIncrementByFraction)->ThreadRange(1, 4);

// Baseline: one shared std::atomic<double>, CAS loop.
std::atomic<double> atomic_double{0};
void BM_BaselineAtomicDoubleCas(benchmark::State& state) {
  for (auto _ : state) {
    double old = atomic_double.load(std::memory_order_relaxed);
    while (!atomic_double.compare_exchange_weak(old, old + 1,
                                                std::memory_order_relaxed)) {
    }
  }
}
BENCHMARK(BM_BaselineAtomicDoubleCas)->ThreadRange(1, 4);

// Baseline: one shared double behind a mutex.
std::mutex std_mutex;
double mutex_double = 0;
void BM_BaselineStdMutexDouble(benchmark::State& state) {
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(std_mutex);
    mutex_double += 1;
  }
}
BENCHMARK(BM_BaselineStdMutexDouble)->ThreadRange(1, 4);

absl::Mutex absl_mutex;
double absl_mutex_double = 0;
void BM_BaselineAbslMutexDouble(benchmark::State& state) {
  for (auto _ : state) {
    absl::MutexLock lock(&absl_mutex);
    absl_mutex_double += 1;
  }
}
BENCHMARK(BM_BaselineAbslMutexDouble)->ThreadRange(1, 4);

void BM_GaugeSet(benchmark::State& state) {
  static Gauge& gauge = BuildGauge()
                            .Name("bench_gauge")
                            .Help("Bench.")
                            .Register(BenchRegistry())
                            .Add({});
  double v = 0;
  for (auto _ : state) gauge.Set(v += 1);
}
BENCHMARK(BM_GaugeSet)->ThreadRange(1, 4);

void BM_GaugeIncrement(benchmark::State& state) {
  static Gauge& gauge = BuildGauge()
                            .Name("bench_gauge_inc")
                            .Help("Bench.")
                            .Register(BenchRegistry())
                            .Add({});
  for (auto _ : state) gauge.Increment();
}
BENCHMARK(BM_GaugeIncrement)->ThreadRange(1, 4);

void BM_HistogramObserve(benchmark::State& state) {
  static Histogram& histogram = BuildHistogram()
                                    .Name("bench_latency_seconds")
                                    .Help("Bench.")
                                    .Register(BenchRegistry())
                                    .Add({}, LatencyBuckets());
  // Latencies spread over the buckets, so the search is not always equal.
  static const double kValues[8] = {3e-5, 2e-4, 9e-4, 4e-3, 3e-2, 0.2, 1.7, 20};
  int i = 0;
  for (auto _ : state) histogram.Observe(kValues[i++ & 7]);
}
BENCHMARK(BM_HistogramObserve)->ThreadRange(1, 4);

// Family::Add on an existing series: the cost of not caching the reference.
void BM_FamilyAddExisting(benchmark::State& state) {
  static Family<Counter>& family = BuildCounter()
                                       .Name("bench_family_total")
                                       .Help("Bench.")
                                       .Register(BenchRegistry());
  const Labels labels = {{"code", "OK"}, {"rpc", "Push"}};
  for (auto _ : state) family.Add(labels).Increment();
}
BENCHMARK(BM_FamilyAddExisting);

// A registry like a shard's: ~200 series over counters, gauges and
// histograms (each histogram series is ~20 sample lines).
void BM_Serialize200Series(benchmark::State& state) {
  Registry registry;
  Family<Counter>& requests = BuildCounter()
                                  .Name("tessera_ps_requests_total")
                                  .Help("Requests, by rpc and code.")
                                  .Labels({{"shard", "0"}})
                                  .Register(registry);
  Family<Gauge>& bytes = BuildGauge()
                             .Name("tessera_ps_tensor_bytes")
                             .Help("Bytes held, by tensor.")
                             .Register(registry);
  Family<Histogram>& latency = BuildHistogram()
                                   .Name("tessera_ps_latency_seconds")
                                   .Help("Latency, by rpc.")
                                   .Register(registry);
  int series = 0;
  for (int rpc = 0; rpc < 10; ++rpc) {
    for (int code = 0; code < 10; ++code, ++series) {
      requests
          .Add({{"rpc", "Rpc" + std::to_string(rpc)},
                {"code", "CODE_" + std::to_string(code)}})
          .Increment(rpc * 1000 + code);
    }
  }
  for (int tensor = 0; tensor < 90; ++tensor, ++series) {
    bytes.Add({{"tensor", "layer" + std::to_string(tensor) + ".weight"}})
        .Set(tensor * 4096.5);
  }
  for (int rpc = 0; rpc < 10; ++rpc, ++series) {
    Histogram& h =
        latency.Add({{"rpc", "Rpc" + std::to_string(rpc)}}, LatencyBuckets());
    for (int i = 0; i < 100; ++i) h.Observe(i * 1e-3);
  }
  size_t size = 0;
  for (auto _ : state) {
    const std::string text = registry.Serialize();
    size = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["series"] = series;
  state.counters["bytes"] = static_cast<double>(size);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_Serialize200Series);

}  // namespace
}  // namespace metrics
}  // namespace tessera

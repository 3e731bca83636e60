#ifndef TESSERA_PS_COMMON_METRICS_HISTOGRAM_H_
#define TESSERA_PS_COMMON_METRICS_HISTOGRAM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "ps/common/metrics/metric_type.h"
#include "ps/common/metrics/thread_slot.h"

namespace tessera {
namespace metrics {

// What a histogram held at one moment (see Histogram::Snapshot).
struct HistogramSnapshot {
  // The finite upper bounds, ascending; the +Inf bucket is implicit.
  std::vector<double> bucket_boundaries;
  // Cumulative counts, one per boundary plus a last one for +Inf, as
  // exported: cumulative_counts[i] = observations <= bucket_boundaries[i].
  std::vector<uint64_t> cumulative_counts;
  uint64_t count = 0;  // Equals cumulative_counts.back().
  double sum = 0;
};

// Counts observations (latencies, sizes) into buckets with fixed upper
// bounds, Prometheus style: bucket i counts observations <= boundary i, and
// an implicit last bucket +Inf counts every observation (NaN included).
// Obtained from Family<Histogram>::Add; the registry owns it.
//
// Thread-safe. Observe is lock-free and sharded over per-thread slots like
// Counter::Increment: a binary search over the boundaries, one fetch-add and
// one compare-and-swap on this thread's slot.
class Histogram {
 public:
  static constexpr MetricType kType = MetricType::kHistogram;
  using BucketBoundaries = std::vector<double>;

  // `boundaries` must be strictly ascending and free of NaN (CHECKed); a
  // last +Inf is accepted and dropped since that bucket is always present.
  explicit Histogram(const BucketBoundaries& boundaries);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);

  // The finite boundaries (any +Inf given at construction dropped).
  const BucketBoundaries& bucket_boundaries() const { return boundaries_; }

  // Sums the slots. Under concurrent Observe calls the counts and the sum
  // may each miss the latest observations, but count always equals the
  // +Inf bucket.
  HistogramSnapshot Snapshot() const;

 private:
  struct alignas(internal::kCacheLineSize) Line {
    std::atomic<uint64_t> cells[internal::kCacheLineSize / sizeof(uint64_t)];
  };
  static constexpr int kCellsPerLine = internal::kCacheLineSize / 8;

  // Cell `i` of `slot`: cells 0..num_buckets-1 are non-cumulative bucket
  // counts, cell num_buckets the bits of the slot's double sum.
  std::atomic<uint64_t>& Cell(int slot, int i) const {
    return lines_[slot * lines_per_slot_ + i / kCellsPerLine]
        .cells[i % kCellsPerLine];
  }

  const BucketBoundaries boundaries_;
  const int num_buckets_;     // boundaries_.size() + 1.
  const int lines_per_slot_;  // Padding keeps slots on separate lines.
  const std::unique_ptr<Line[]> lines_;
};

// `count` boundaries start, start*factor, start*factor^2, ...
// Requires start > 0, factor > 1, count >= 1 (CHECKed).
Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                               int count);

// `count` boundaries start, start+width, start+2*width, ...
// Requires width > 0, count >= 1 (CHECKed).
Histogram::BucketBoundaries LinearBuckets(double start, double width,
                                          int count);

// Boundaries in seconds for RPC and I/O latencies: 25us, 50us, 100us, 250us,
// 500us, 1ms, ... in steps of 1-2.5-5 (and 2.5-5-10 below 1ms), up to 10s.
Histogram::BucketBoundaries LatencyBuckets();

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_HISTOGRAM_H_

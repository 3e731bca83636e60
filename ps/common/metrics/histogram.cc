#include "ps/common/metrics/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "glog/logging.h"

namespace tessera {
namespace metrics {
namespace {

Histogram::BucketBoundaries CheckedBoundaries(
    Histogram::BucketBoundaries boundaries) {
  if (!boundaries.empty() && std::isinf(boundaries.back()) &&
      boundaries.back() > 0) {
    boundaries.pop_back();
  }
  for (size_t i = 0; i < boundaries.size(); ++i) {
    CHECK(!std::isnan(boundaries[i])) << "histogram bucket boundary is NaN";
    if (i > 0) {
      CHECK_LT(boundaries[i - 1], boundaries[i])
          << "histogram bucket boundaries must be strictly ascending";
    }
  }
  return boundaries;
}

double BitsToDouble(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof(d));
  return d;
}

uint64_t DoubleToBits(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof(bits));
  return bits;
}

}  // namespace

Histogram::Histogram(const BucketBoundaries& boundaries)
    : boundaries_(CheckedBoundaries(boundaries)),
      num_buckets_(static_cast<int>(boundaries_.size()) + 1),
      // num_buckets_ counts plus one sum cell, rounded up to whole lines.
      lines_per_slot_((num_buckets_ + 1 + kCellsPerLine - 1) / kCellsPerLine),
      lines_(new Line[internal::kNumThreadSlots * lines_per_slot_]) {
  for (int slot = 0; slot < internal::kNumThreadSlots; ++slot) {
    for (int i = 0; i < num_buckets_; ++i) {
      Cell(slot, i).store(0, std::memory_order_relaxed);
    }
    Cell(slot, num_buckets_)
        .store(DoubleToBits(0.0), std::memory_order_relaxed);
  }
}

void Histogram::Observe(double v) {
  // lower_bound finds the first boundary >= v, i.e. the bucket "le" that v
  // falls in; none (v above every boundary, or NaN) is the +Inf bucket.
  const int bucket =
      std::isnan(v) ? num_buckets_ - 1
                    : static_cast<int>(std::lower_bound(boundaries_.begin(),
                                                        boundaries_.end(), v) -
                                       boundaries_.begin());
  const int slot = internal::ThisThreadSlot();
  Cell(slot, bucket).fetch_add(1, std::memory_order_relaxed);
  std::atomic<uint64_t>& sum = Cell(slot, num_buckets_);
  uint64_t old = sum.load(std::memory_order_relaxed);
  while (!sum.compare_exchange_weak(old, DoubleToBits(BitsToDouble(old) + v),
                                    std::memory_order_relaxed)) {
  }
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.bucket_boundaries = boundaries_;
  snapshot.cumulative_counts.assign(num_buckets_, 0);
  for (int slot = 0; slot < internal::kNumThreadSlots; ++slot) {
    for (int i = 0; i < num_buckets_; ++i) {
      snapshot.cumulative_counts[i] +=
          Cell(slot, i).load(std::memory_order_relaxed);
    }
    snapshot.sum +=
        BitsToDouble(Cell(slot, num_buckets_).load(std::memory_order_relaxed));
  }
  for (int i = 1; i < num_buckets_; ++i) {
    snapshot.cumulative_counts[i] += snapshot.cumulative_counts[i - 1];
  }
  snapshot.count = snapshot.cumulative_counts.back();
  return snapshot;
}

Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                               int count) {
  CHECK_GT(start, 0) << "ExponentialBuckets: start must be positive";
  CHECK_GT(factor, 1) << "ExponentialBuckets: factor must be above 1";
  CHECK_GE(count, 1) << "ExponentialBuckets: count must be at least 1";
  Histogram::BucketBoundaries boundaries(count);
  double boundary = start;
  for (int i = 0; i < count; ++i) {
    boundaries[i] = boundary;
    boundary *= factor;
  }
  return boundaries;
}

Histogram::BucketBoundaries LinearBuckets(double start, double width,
                                          int count) {
  CHECK_GT(width, 0) << "LinearBuckets: width must be positive";
  CHECK_GE(count, 1) << "LinearBuckets: count must be at least 1";
  Histogram::BucketBoundaries boundaries(count);
  for (int i = 0; i < count; ++i) boundaries[i] = start + i * width;
  return boundaries;
}

Histogram::BucketBoundaries LatencyBuckets() {
  // Literals rather than products, so that every boundary prints as written
  // (le="0.0025", not le="0.0025000000000000005").
  return {0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
          0.0025,   0.005,   0.01,   0.025,   0.05,   0.1,
          0.25,     0.5,     1,      2.5,     5,      10};
}

}  // namespace metrics
}  // namespace tessera

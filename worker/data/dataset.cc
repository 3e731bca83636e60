#include "worker/data/dataset.h"

#include "worker/data/random.h"

namespace tessera {
namespace worker {

absl::StatusOr<ExampleRange> PartitionRange(int64_t num_examples,
                                            int64_t partition,
                                            int64_t num_partitions) {
  if (num_examples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_examples is ", num_examples, ", want >= 0"));
  }
  if (num_partitions < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_partitions is ", num_partitions, ", want >= 1"));
  }
  if (partition < 0 || partition >= num_partitions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition ", partition, " is outside [0, ", num_partitions, ")"));
  }
  const int64_t base = num_examples / num_partitions;
  const int64_t extra = num_examples % num_partitions;
  ExampleRange range;
  range.begin = partition * base + std::min(partition, extra);
  range.end = range.begin + base + (partition < extra ? 1 : 0);
  return range;
}

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  SplitMix64 rng(seed);
  // Fisher-Yates.
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Below(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace worker
}  // namespace tessera

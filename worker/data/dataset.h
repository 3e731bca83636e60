#ifndef TESSERA_WORKER_DATA_DATASET_H_
#define TESSERA_WORKER_DATA_DATASET_H_

// A dataset is an indexed collection of examples, cut into contiguous
// partitions (the unit the coordinator leases to workers) and read in batches.
//
//   TESSERA_ASSIGN_OR_RETURN(auto reader,
//       PartitionReader<DenseBatch>::Create(dataset.get(), lease.partition,
//                                           job.num_partitions, options));
//   while (!reader.Done()) {
//     TESSERA_ASSIGN_OR_RETURN(DenseBatch batch, reader.Next());
//     ...
//   }

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "worker/data/batch.h"

namespace tessera {
namespace worker {

// The examples [begin, end) of a dataset.
struct ExampleRange {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  friend bool operator==(const ExampleRange& a, const ExampleRange& b) {
    return a.begin == b.begin && a.end == b.end;
  }
};

// Partition `partition` of `num_partitions` over `num_examples` examples:
// the partitions are contiguous, in order, cover every example exactly once,
// and differ in size by at most one (the first num_examples % num_partitions
// get the extra example). A pure function: every worker computes the same
// ranges. Partitions may be empty when num_partitions > num_examples.
// InvalidArgument unless num_examples >= 0, num_partitions >= 1 and
// 0 <= partition < num_partitions.
absl::StatusOr<ExampleRange> PartitionRange(int64_t num_examples,
                                            int64_t partition,
                                            int64_t num_partitions);

// A random permutation of [0, n) determined by `seed` alone (the same on
// every platform and standard library: it uses its own generator, not
// std::shuffle).
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed);

// An indexed, immutable collection of examples, read in batches of type
// `BatchT` (DenseBatch or SparseBatch).
// Thread-safe: Gather may be called concurrently (it is const).
template <typename BatchT>
class Dataset {
 public:
  using Batch = BatchT;

  virtual ~Dataset() = default;

  // Number of examples.
  virtual int64_t size() const = 0;

  // Returns the examples `indices`, in that order, as one batch.
  // InvalidArgument if `indices` is empty or an index is outside [0, size()).
  virtual absl::StatusOr<Batch> Gather(
      absl::Span<const int64_t> indices) const = 0;

  // PartitionRange(size(), partition, num_partitions).
  absl::StatusOr<ExampleRange> PartitionRange(int64_t partition,
                                              int64_t num_partitions) const {
    return ::tessera::worker::PartitionRange(size(), partition, num_partitions);
  }

 protected:
  // InvalidArgument unless `indices` is non-empty and inside [0, size()).
  absl::Status CheckIndices(absl::Span<const int64_t> indices) const {
    if (indices.empty()) {
      return absl::InvalidArgumentError("no example indices to gather");
    }
    const int64_t n = size();
    for (int64_t index : indices) {
      if (index < 0 || index >= n) {
        return absl::InvalidArgumentError(
            absl::StrCat("example index ", index, " is outside [0, ", n, ")"));
      }
    }
    return absl::OkStatus();
  }
};

using DenseDataset = Dataset<DenseBatch>;
using SparseDataset = Dataset<SparseBatch>;

struct BatchOptions {
  // Examples per batch; the last batch of a partition may be smaller.
  int batch_size = 64;
  // Visit the partition's examples in a random order determined by
  // (shuffle_seed, partition). To reshuffle each epoch, mix the epoch into
  // the seed. Unshuffled, examples come in index order.
  bool shuffle = false;
  uint64_t shuffle_seed = 0;
};

// Reads the batches of one partition of a dataset, in order.
// Thread-compatible.
template <typename BatchT>
class PartitionReader {
 public:
  // `dataset` is not owned and must outlive the reader. InvalidArgument if
  // the partition is out of range or options.batch_size < 1.
  static absl::StatusOr<PartitionReader> Create(const Dataset<BatchT>* dataset,
                                                int64_t partition,
                                                int64_t num_partitions,
                                                const BatchOptions& options) {
    if (options.batch_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch_size is ", options.batch_size, ", want >= 1"));
    }
    absl::StatusOr<ExampleRange> range =
        dataset->PartitionRange(partition, num_partitions);
    if (!range.ok()) return range.status();
    std::vector<int64_t> order(range->size());
    if (options.shuffle) {
      order = SeededPermutation(
          range->size(),
          options.shuffle_seed ^
              (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(partition + 1)));
      for (int64_t& index : order) index += range->begin;
    } else {
      std::iota(order.begin(), order.end(), range->begin);
    }
    return PartitionReader(dataset, *range, std::move(order),
                           options.batch_size);
  }

  // The examples of this partition.
  const ExampleRange& range() const { return range_; }
  // Batches in the partition: ceil(range().size() / batch_size).
  int64_t num_batches() const {
    return (range_.size() + batch_size_ - 1) / batch_size_;
  }
  // Batches already returned by Next() (or skipped by Seek()).
  int64_t next_batch() const { return next_batch_; }
  bool Done() const { return next_batch_ >= num_batches(); }

  // Positions the reader before batch `batch_index` (e.g. to resume a lease
  // part-way). InvalidArgument unless 0 <= batch_index <= num_batches().
  absl::Status Seek(int64_t batch_index) {
    if (batch_index < 0 || batch_index > num_batches()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch ", batch_index, " is outside [0, ", num_batches(), "]"));
    }
    next_batch_ = batch_index;
    return absl::OkStatus();
  }

  // The next batch. OutOfRange when Done(); otherwise what Gather returns.
  absl::StatusOr<BatchT> Next() {
    if (Done()) {
      return absl::OutOfRangeError(
          absl::StrCat("partition [", range_.begin, ", ", range_.end,
                       ") has no batch after ", num_batches()));
    }
    const int64_t begin = next_batch_ * batch_size_;
    const int64_t end = std::min<int64_t>(begin + batch_size_,
                                          static_cast<int64_t>(order_.size()));
    ++next_batch_;
    return dataset_->Gather(
        absl::MakeConstSpan(order_.data() + begin, end - begin));
  }

 private:
  PartitionReader(const Dataset<BatchT>* dataset, ExampleRange range,
                  std::vector<int64_t> order, int batch_size)
      : dataset_(dataset),
        range_(range),
        order_(std::move(order)),
        batch_size_(batch_size) {}

  const Dataset<BatchT>* dataset_;  // Not owned; outlives this.
  ExampleRange range_;
  std::vector<int64_t> order_;  // Example indices in visiting order.
  int batch_size_;
  int64_t next_batch_ = 0;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_DATASET_H_

#ifndef TESSERA_WORKER_DATA_BATCH_STREAM_H_
#define TESSERA_WORKER_DATA_BATCH_STREAM_H_

// The batches of one partition (or of a whole held-out set), read in order:
// what the trainer consumes, whether the data is an indexed Dataset
// (dataset.h) or a stream of text files (tabular.h).
//
//   TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<BatchStream<DenseBatch>> s,
//                            source.open(partition, partitions, options));
//   DenseBatch batch;
//   while (true) {
//     TESSERA_ASSIGN_OR_RETURN(bool more, s->Next(&batch));
//     if (!more) break;
//     ...
//   }

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "worker/data/dataset.h"

namespace tessera {
namespace worker {

template <typename BatchT>
class BatchStream {
 public:
  virtual ~BatchStream() = default;
  // The next batch into `out`; false (and `out` unchanged) at the end.
  virtual absl::StatusOr<bool> Next(BatchT* out) = 0;
  // Input lines skipped so far because they did not parse, and the first
  // of them as "file:line: reason" (text formats; 0 and "" otherwise).
  virtual int64_t bad_lines() const { return 0; }
  virtual std::string first_bad_line() const { return ""; }
};

// Where a job's batches come from: the training data cut into partitions,
// and an optional held-out set.
template <typename BatchT>
struct BatchSource {
  using Stream = BatchStream<BatchT>;
  // Partition `partition` of `num_partitions`, in batches of
  // options.batch_size, shuffled by options.shuffle_seed if options.shuffle.
  std::function<absl::StatusOr<std::unique_ptr<Stream>>(
      int64_t partition, int64_t num_partitions, const BatchOptions& options)>
      open_train;
  // The whole held-out set in order, in batches of `batch_size`; empty when
  // there is none.
  std::function<absl::StatusOr<std::unique_ptr<Stream>>(int batch_size)>
      open_test;

  explicit operator bool() const { return static_cast<bool>(open_train); }
};

// A partition of an indexed dataset as a stream.
template <typename BatchT>
class PartitionStream : public BatchStream<BatchT> {
 public:
  explicit PartitionStream(PartitionReader<BatchT> reader)
      : reader_(std::move(reader)) {}
  absl::StatusOr<bool> Next(BatchT* out) override {
    if (reader_.Done()) return false;
    absl::StatusOr<BatchT> batch = reader_.Next();
    if (!batch.ok()) return batch.status();
    *out = *std::move(batch);
    return true;
  }

 private:
  PartitionReader<BatchT> reader_;
};

// A BatchSource over indexed datasets (shared: the source's functions keep
// them alive). `test` may be null.
template <typename BatchT>
BatchSource<BatchT> IndexedSource(std::shared_ptr<const Dataset<BatchT>> train,
                                  std::shared_ptr<const Dataset<BatchT>> test) {
  using Stream = BatchStream<BatchT>;
  BatchSource<BatchT> source;
  source.open_train = [train](int64_t partition, int64_t num_partitions,
                              const BatchOptions& options)
      -> absl::StatusOr<std::unique_ptr<Stream>> {
    absl::StatusOr<PartitionReader<BatchT>> reader =
        PartitionReader<BatchT>::Create(train.get(), partition, num_partitions,
                                        options);
    if (!reader.ok()) return reader.status();
    return std::unique_ptr<Stream>(
        std::make_unique<PartitionStream<BatchT>>(*std::move(reader)));
  };
  if (test != nullptr) {
    source.open_test =
        [test](int batch_size) -> absl::StatusOr<std::unique_ptr<Stream>> {
      BatchOptions options;
      options.batch_size = batch_size;
      absl::StatusOr<PartitionReader<BatchT>> reader =
          PartitionReader<BatchT>::Create(test.get(), 0, 1, options);
      if (!reader.ok()) return reader.status();
      return std::unique_ptr<Stream>(
          std::make_unique<PartitionStream<BatchT>>(*std::move(reader)));
    };
  }
  return source;
}

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_BATCH_STREAM_H_

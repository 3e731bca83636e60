#include "worker/job_datasets.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "glog/logging.h"
#include "ps/common/status_macros.h"
#include "worker/data/fashion_mnist.h"
#include "worker/data/sparse_dataset.h"
#include "worker/data/synthetic_ctr.h"
#include "worker/data/tabular.h"

namespace tessera {
namespace worker {
namespace {

// A partition of tabular text files as a stream.
class TabularStream : public BatchStream<TabularBatch> {
 public:
  explicit TabularStream(std::unique_ptr<TabularReader> reader)
      : reader_(std::move(reader)) {}
  absl::StatusOr<bool> Next(TabularBatch* out) override {
    return reader_->Next(out);
  }
  int64_t bad_lines() const override { return reader_->stats().count; }
  std::string first_bad_line() const override { return reader_->stats().first; }

 private:
  std::unique_ptr<TabularReader> reader_;
};

absl::StatusOr<BatchSource<TabularBatch>> TabularSourceOf(
    const v1::DatasetConfig& d) {
  using Stream = BatchStream<TabularBatch>;
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<const TabularSource> train,
                           OpenTabularSource(d, DatasetSplit::kTrain));
  std::shared_ptr<const TabularSource> test;
  if (!d.test_path().empty()) {
    TESSERA_ASSIGN_OR_RETURN(test, OpenTabularSource(d, DatasetSplit::kTest));
  }
  BatchSource<TabularBatch> source;
  source.open_train = [train, d](int64_t partition, int64_t num_partitions,
                                 const BatchOptions& options)
      -> absl::StatusOr<std::unique_ptr<Stream>> {
    TESSERA_ASSIGN_OR_RETURN(
        TabularSource::ReadOptions read,
        TabularReadOptionsFromConfig(d, options.batch_size));
    // The epoch's order: the trainer's seed (mixed with the epoch) and the
    // dataset's.
    read.seed = options.shuffle_seed ^ (d.seed() * 0x9e3779b97f4a7c15ull);
    TESSERA_ASSIGN_OR_RETURN(
        std::unique_ptr<TabularReader> reader,
        train->OpenPartition(partition, num_partitions, read));
    return std::unique_ptr<Stream>(
        std::make_unique<TabularStream>(std::move(reader)));
  };
  if (test != nullptr) {
    source.open_test =
        [test](int batch_size) -> absl::StatusOr<std::unique_ptr<Stream>> {
      TabularSource::ReadOptions read;
      read.batch_size = batch_size;
      read.shuffle_buffer = 1;  // In file order.
      TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<TabularReader> reader,
                               test->OpenPartition(0, 1, read));
      return std::unique_ptr<Stream>(
          std::make_unique<TabularStream>(std::move(reader)));
    };
  }
  return source;
}

}  // namespace

absl::StatusOr<JobDatasets> OpenJobDatasets(const v1::DatasetConfig& d) {
  JobDatasets out;
  switch (d.format()) {
    case v1::DatasetConfig::FASHION_MNIST: {
      FashionMnistOptions train_options;
      train_options.max_examples = d.limit();
      auto train =
          OpenFashionMnist(d.path(), FashionMnistSplit::kTrain, train_options);
      if (!train.ok()) return train.status();
      std::shared_ptr<const DenseDataset> test_set;
      auto test = OpenFashionMnist(d.path(), FashionMnistSplit::kTest);
      if (test.ok()) {
        test_set = *std::move(test);
      } else {
        LOG(WARNING) << "no test set: " << test.status();
      }
      out.dense = IndexedSource<DenseBatch>(*std::move(train), test_set);
      break;
    }
    case v1::DatasetConfig::LIBSVM: {
      LibsvmOptions o;
      o.max_examples = d.limit();
      auto train = ReadLibsvmFile(d.path(), o);
      if (!train.ok()) return train.status();
      std::shared_ptr<const SparseDataset> test_set;
      if (!d.test_path().empty()) {
        auto test = ReadLibsvmFile(d.test_path());
        if (!test.ok()) return test.status();
        test_set = *std::move(test);
      }
      out.sparse = IndexedSource<SparseBatch>(*std::move(train), test_set);
      break;
    }
    case v1::DatasetConfig::SYNTHETIC_CTR: {
      SyntheticCtrOptions o;
      o.num_examples = d.num_examples();
      o.vocab_size = d.vocabulary();
      o.features_per_example = d.features_per_example();
      if (d.zipf_exponent() > 0) o.zipf_exponent = d.zipf_exponent();
      o.seed = d.seed();
      auto train = SyntheticCtrDataset::Create(o);
      if (!train.ok()) return train.status();
      o.num_examples = std::max<int64_t>(1000, d.num_examples() / 10);
      // Held-out examples of the same true model (a different seed would
      // draw a different model).
      o.example_seed = 1;
      auto test = SyntheticCtrDataset::Create(o);
      std::shared_ptr<const SparseDataset> test_set;
      if (test.ok()) test_set = *std::move(test);
      out.sparse = IndexedSource<SparseBatch>(*std::move(train), test_set);
      break;
    }
    case v1::DatasetConfig::CRITEO:
    case v1::DatasetConfig::CSV: {
      TESSERA_ASSIGN_OR_RETURN(out.tabular, TabularSourceOf(d));
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown dataset format");
  }
  return out;
}

}  // namespace worker
}  // namespace tessera

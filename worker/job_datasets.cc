#include "worker/job_datasets.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "glog/logging.h"
#include "worker/data/fashion_mnist.h"
#include "worker/data/sparse_dataset.h"
#include "worker/data/synthetic_ctr.h"

namespace tessera {
namespace worker {

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
    default:
      return absl::InvalidArgumentError("unknown dataset format");
  }
  return out;
}

}  // namespace worker
}  // namespace tessera

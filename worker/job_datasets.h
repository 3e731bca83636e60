#ifndef TESSERA_WORKER_JOB_DATASETS_H_
#define TESSERA_WORKER_JOB_DATASETS_H_

// The datasets a job names (tessera.v1.DatasetConfig): its training set and,
// when there is one, its test set, dense (Fashion-MNIST) or sparse (LIBSVM,
// the synthetic click-through generator). Thread-compatible.

#include <memory>

#include "absl/status/statusor.h"
#include "tessera/v1/job.pb.h"
#include "worker/data/dataset.h"

namespace tessera {
namespace worker {

struct JobDatasets {
  // Exactly one of the two training sets is set; its test set may be null.
  std::unique_ptr<DenseDataset> dense_train, dense_test;
  std::unique_ptr<SparseDataset> sparse_train, sparse_test;
};

// Opens the training set (an error if it cannot be read) and the test set
// (a missing Fashion-MNIST test split is logged and skipped; a named LIBSVM
// test file must be readable). InvalidArgument for an unknown format.
absl::StatusOr<JobDatasets> OpenJobDatasets(const v1::DatasetConfig& config);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_JOB_DATASETS_H_

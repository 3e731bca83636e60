#ifndef TESSERA_WORKER_JOB_DATASETS_H_
#define TESSERA_WORKER_JOB_DATASETS_H_

// The datasets a job names (tessera.v1.DatasetConfig): its training set and,
// when there is one, its test set, dense (Fashion-MNIST), sparse (LIBSVM,
// the synthetic click-through generator) or tabular (Criteo, CSV: streams of
// text files). Thread-compatible.

#include <memory>

#include "absl/status/statusor.h"
#include "tessera/v1/job.pb.h"
#include "worker/data/batch.h"
#include "worker/data/batch_stream.h"
#include "worker/data/tabular_batch.h"

namespace tessera {
namespace worker {

struct JobDatasets {
  // Exactly one is set; its open_test may be empty.
  BatchSource<DenseBatch> dense;
  BatchSource<SparseBatch> sparse;
  BatchSource<TabularBatch> tabular;
};

// Opens the training set (an error if it cannot be read) and the test set
// (a missing Fashion-MNIST test split is logged and skipped; a named LIBSVM
// test file must be readable). InvalidArgument for an unknown format.
absl::StatusOr<JobDatasets> OpenJobDatasets(const v1::DatasetConfig& config);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_JOB_DATASETS_H_

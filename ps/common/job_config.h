#ifndef TESSERA_PS_COMMON_JOB_CONFIG_H_
#define TESSERA_PS_COMMON_JOB_CONFIG_H_

// The training job's configuration: parsing from protobuf text format,
// defaults, validation. Thread-safe (pure functions).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tessera/v1/job.pb.h"
#include "tessera/v1/tensor.pb.h"

namespace tessera {

// Parses text format, fills defaults and validates. InvalidArgument with the
// line and column of a syntax error, or naming the invalid field.
absl::StatusOr<v1::JobConfig> ParseJobConfig(absl::string_view text);

// Reads and parses a file; NotFound if it cannot be read.
absl::StatusOr<v1::JobConfig> LoadJobConfig(const std::string& path);

// The job's model file (model.torchscript) for a job read from `job_path`:
// a relative path is relative to the job file's directory. "" when the job
// names none.
std::string ModelFilePath(const v1::JobConfig& job,
                          const std::string& job_path);

// Reads a whole file of at most `max_bytes`. NotFound when it cannot be
// read, FailedPrecondition when it is a directory or larger; the message
// names the path.
absl::StatusOr<std::string> ReadFileCapped(const std::string& path,
                                           int64_t max_bytes);

// Fills unset fields with their documented defaults.
void ApplyJobDefaults(v1::JobConfig* job);

// Checks a config with defaults applied.
absl::Status ValidateJobConfig(const v1::JobConfig& job);

// The optimizer for `tensor`: the first tensor group whose prefix matches,
// else the job's optimizer.
v1::OptimizerConfig OptimizerFor(const v1::JobConfig& job,
                                 absl::string_view tensor);

// The staleness bound in steps; -1 for ASYNC (never wait).
int StalenessBound(const v1::JobConfig& job);

// Whether workers train on extrapolated dense tensors when they pull a step
// ahead (consistency.extrapolate_dense; unset means true).
bool ExtrapolatesDense(const v1::JobConfig& job);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_JOB_CONFIG_H_

#ifndef TESSERA_TOOLS_CLI_STATUS_H_
#define TESSERA_TOOLS_CLI_STATUS_H_

// `tessera status`: the job as the coordinator sees it, and each shard's
// health, as text for a terminal.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tessera/v1/coordinator.pb.h"

namespace tessera {

// Fetches the job status from `coordinator` (a gRPC address).
absl::StatusOr<v1::JobStatus> FetchJobStatus(const std::string& coordinator,
                                             absl::Duration timeout);

// The job part of the report (job, failure, epochs, bad input lines,
// partitions, workers), from a JobStatus.
std::string FormatJobStatus(const v1::JobStatus& job);

// The whole report: job, epochs, partitions, workers, and one line per shard
// (an unreachable shard is a line saying so, not an error).
absl::StatusOr<std::string> FormatStatus(const std::string& coordinator,
                                         const std::vector<std::string>& shards,
                                         absl::Duration timeout);

}  // namespace tessera

#endif  // TESSERA_TOOLS_CLI_STATUS_H_

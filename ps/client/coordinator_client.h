#ifndef TESSERA_PS_CLIENT_COORDINATOR_CLIENT_H_
#define TESSERA_PS_CLIENT_COORDINATOR_CLIENT_H_

// A client of tessera.v1.Coordinator (shard 0): the calls a worker and the
// CLI make, with the retry policy every caller needs in one place.
//
// The job calls (Join, RegisterModel, AcquirePartition, CompletePartition,
// WaitForClock, ReportEvaluation) are retried while the coordinator is
// unreachable or restarting (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED), with
// backoff from 100 ms to 2 s, until `patience` passes (DeadlineExceeded
// naming the coordinator and how long it was waited for) or `*stop` is set.
// While it waits, it logs "waiting for coordinator at ADDR (what)" every 5 s
// and sets the `waiting` gauge to the seconds waited (0 when done). Any other
// error is returned at once. Heartbeat, Leave and GetStatus are single
// attempts: their callers retry on their own schedule.
//
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ps/common/metrics/metrics.h"
#include "tessera/v1/coordinator.grpc.pb.h"

namespace tessera {

struct CoordinatorClientOptions {
  std::string address;  // the coordinator's gRPC address (shard 0)
  // Deadline of each attempt.
  absl::Duration call_deadline = absl::Seconds(10);
  // Seconds the current call has been retried; may be null. Not owned.
  metrics::Gauge* waiting = nullptr;
  // Once set (and after 2 s of retrying), retrying calls give up. May be
  // null. Not owned.
  const std::atomic<bool>* stop = nullptr;
};

// True for the errors worth retrying: UNAVAILABLE, DEADLINE_EXCEEDED,
// ABORTED.
bool IsRetryable(const absl::Status& status);

class CoordinatorClient {
 public:
  explicit CoordinatorClient(CoordinatorClientOptions options);

  const std::string& address() const { return options_.address; }

  absl::StatusOr<v1::JoinResponse> Join(const v1::JoinRequest& request,
                                        absl::Duration patience);
  absl::StatusOr<v1::RegisterModelResponse> RegisterModel(
      const v1::RegisterModelRequest& request, absl::Duration patience);
  absl::StatusOr<v1::AcquirePartitionResponse> AcquirePartition(
      const v1::AcquirePartitionRequest& request, absl::Duration patience);
  absl::StatusOr<v1::CompletePartitionResponse> CompletePartition(
      const v1::CompletePartitionRequest& request, absl::Duration patience);
  absl::StatusOr<v1::WaitForClockResponse> WaitForClock(
      const v1::WaitForClockRequest& request, absl::Duration patience);
  absl::StatusOr<v1::ReportEvaluationResponse> ReportEvaluation(
      const v1::ReportEvaluationRequest& request, absl::Duration patience);

  // The job's model file (JoinResponse.model_file_bytes and
  // model_file_crc32 say what to expect), streamed by FetchModelFile and
  // retried from the start like the job calls, each attempt bounded by what
  // is left of `patience`. The stream is hostile: a chunk at another offset,
  // larger than 1 MiB, or beyond `expected_bytes`, a short file, or another
  // crc32 is DataLoss (the buffer never grows past `expected_bytes`);
  // InvalidArgument for `expected_bytes` < 0 or > kMaxModelFileBytes;
  // NotFound when the job has no model file.
  static constexpr int64_t kMaxModelFileBytes = int64_t{1} << 30;
  absl::StatusOr<std::string> FetchModelFile(int64_t expected_bytes,
                                             uint32_t crc32,
                                             absl::Duration patience);

  // Single attempts, each with call_deadline (GetStatus: `timeout`).
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request);
  absl::Status Leave(const v1::LeaveRequest& request);
  absl::StatusOr<v1::JobStatus> GetStatus(absl::Duration timeout);

 private:
  template <typename Request, typename Response>
  using Rpc = grpc::Status (v1::Coordinator::Stub::*)(grpc::ClientContext*,
                                                      const Request&,
                                                      Response*);

  template <typename Request, typename Response>
  absl::StatusOr<Response> Retry(const char* what, Rpc<Request, Response> rpc,
                                 const Request& request,
                                 absl::Duration patience);
  template <typename Request, typename Response>
  absl::StatusOr<Response> Once(Rpc<Request, Response> rpc,
                                const Request& request,
                                absl::Duration deadline);

  // One attempt of FetchModelFile.
  absl::StatusOr<std::string> FetchOnce(int64_t expected_bytes, uint32_t crc32,
                                        absl::Duration deadline);

  const CoordinatorClientOptions options_;
  const std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace tessera

#endif  // TESSERA_PS_CLIENT_COORDINATOR_CLIENT_H_

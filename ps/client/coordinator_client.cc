#include "ps/client/coordinator_client.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/common/grpc_status.h"

namespace tessera {

bool IsRetryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
         absl::IsAborted(s);
}

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options)
    : options_(std::move(options)),
      stub_(v1::Coordinator::NewStub(NewChannel(options_.address))) {}

template <typename Request, typename Response>
absl::StatusOr<Response> CoordinatorClient::Once(Rpc<Request, Response> rpc,
                                                 const Request& request,
                                                 absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Response response;
  absl::Status s =
      FromGrpcStatus((stub_.get()->*rpc)(&context, request, &response));
  if (!s.ok()) {
    return absl::Status(
        s.code(),
        absl::StrCat("coordinator at ", options_.address, ": ", s.message()));
  }
  return response;
}

template <typename Request, typename Response>
absl::StatusOr<Response> CoordinatorClient::Retry(const char* what,
                                                  Rpc<Request, Response> rpc,
                                                  const Request& request,
                                                  absl::Duration patience) {
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(100);
  absl::Time last_log = start;
  // The wait shows in a metric as well as in the log; 0 once it is over.
  struct ResetOnReturn {
    metrics::Gauge* gauge;
    ~ResetOnReturn() {
      if (gauge != nullptr) gauge->Set(0);
    }
  } reset{options_.waiting};
  while (true) {
    auto response = Once(rpc, request, options_.call_deadline);
    if (response.ok() || !IsRetryable(response.status())) return response;
    const absl::Duration waited = absl::Now() - start;
    if (options_.waiting != nullptr) {
      options_.waiting->Set(absl::ToDoubleSeconds(waited));
    }
    if (options_.stop != nullptr && options_.stop->load() &&
        waited > absl::Seconds(2)) {
      return response;
    }
    if (waited > patience) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": coordinator at ", options_.address, " unreachable for ",
          absl::FormatDuration(absl::Trunc(waited, absl::Seconds(1))), ": ",
          response.status().message()));
    }
    if (absl::Now() - last_log > absl::Seconds(5)) {
      LOG(WARNING) << "waiting for coordinator at " << options_.address
                   << " for "
                   << absl::FormatDuration(
                          absl::Trunc(waited, absl::Seconds(1)))
                   << " (" << what << "): " << response.status().message();
      last_log = absl::Now();
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

absl::StatusOr<v1::JoinResponse> CoordinatorClient::Join(
    const v1::JoinRequest& request, absl::Duration patience) {
  return Retry("join", &v1::Coordinator::Stub::Join, request, patience);
}

absl::StatusOr<v1::RegisterModelResponse> CoordinatorClient::RegisterModel(
    const v1::RegisterModelRequest& request, absl::Duration patience) {
  return Retry("register model", &v1::Coordinator::Stub::RegisterModel, request,
               patience);
}

absl::StatusOr<v1::AcquirePartitionResponse>
CoordinatorClient::AcquirePartition(const v1::AcquirePartitionRequest& request,
                                    absl::Duration patience) {
  return Retry("acquire partition", &v1::Coordinator::Stub::AcquirePartition,
               request, patience);
}

absl::StatusOr<v1::CompletePartitionResponse>
CoordinatorClient::CompletePartition(
    const v1::CompletePartitionRequest& request, absl::Duration patience) {
  return Retry("complete partition", &v1::Coordinator::Stub::CompletePartition,
               request, patience);
}

absl::StatusOr<v1::WaitForClockResponse> CoordinatorClient::WaitForClock(
    const v1::WaitForClockRequest& request, absl::Duration patience) {
  return Retry("wait for clock", &v1::Coordinator::Stub::WaitForClock, request,
               patience);
}

absl::StatusOr<v1::ReportEvaluationResponse>
CoordinatorClient::ReportEvaluation(const v1::ReportEvaluationRequest& request,
                                    absl::Duration patience) {
  return Retry("report evaluation", &v1::Coordinator::Stub::ReportEvaluation,
               request, patience);
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  return Once(&v1::Coordinator::Stub::Heartbeat, request,
              options_.call_deadline);
}

absl::Status CoordinatorClient::Leave(const v1::LeaveRequest& request) {
  return Once(&v1::Coordinator::Stub::Leave, request, options_.call_deadline)
      .status();
}

absl::StatusOr<v1::JobStatus> CoordinatorClient::GetStatus(
    absl::Duration timeout) {
  return Once(&v1::Coordinator::Stub::GetStatus, v1::GetStatusRequest(),
              timeout);
}

}  // namespace tessera

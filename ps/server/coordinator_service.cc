#include "ps/server/coordinator_service.h"

#include <chrono>

#include "absl/time/clock.h"
#include "ps/common/grpc_status.h"
#include "ps/common/reject_reason.h"

namespace tessera {
namespace {

// Longest a WaitForClock holds a server thread; callers loop.
constexpr absl::Duration kMaxClockWait = absl::Seconds(2);

template <typename Response, typename Call>
grpc::Status Serve(Shard* shard, bool ready, const char* rpc,
                   Response* response, Call call) {
  const absl::Time start = absl::Now();
  absl::Status status = shard->CheckServing(false);
  if (status.ok() && !ready) {
    status = absl::UnavailableError("the coordinator is starting");
  }
  if (status.ok()) {
    auto result = call();
    status = result.status();
    if (result.ok()) *response = *std::move(result);
    // The coordinator refuses bad requests with InvalidArgument, and new
    // workers beyond its limit with ResourceExhausted.
    if (absl::IsInvalidArgument(status)) shard->CountRejected(kReasonMalformed);
    if (absl::IsResourceExhausted(status))
      shard->CountRejected(kReasonOversize);
  } else {
    shard->CountRejected(RejectReasonOf(status));
  }
  shard->RecordRequest(rpc, status, absl::Now() - start, 0, 0);
  return ToGrpcStatus(status);
}

template <typename T>
absl::StatusOr<T> Wrap(absl::Status status) {
  if (!status.ok()) return status;
  return T();
}

}  // namespace

grpc::Status CoordinatorService::Join(grpc::ServerContext*,
                                      const v1::JoinRequest* request,
                                      v1::JoinResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "Join", response,
               [&] { return coordinator_.load()->Join(*request); });
}

grpc::Status CoordinatorService::RegisterModel(
    grpc::ServerContext*, const v1::RegisterModelRequest* request,
    v1::RegisterModelResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "RegisterModel",
               response,
               [&] { return coordinator_.load()->RegisterModel(*request); });
}

grpc::Status CoordinatorService::Heartbeat(grpc::ServerContext*,
                                           const v1::HeartbeatRequest* request,
                                           v1::HeartbeatResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "Heartbeat", response,
               [&] { return coordinator_.load()->Heartbeat(*request); });
}

grpc::Status CoordinatorService::Leave(grpc::ServerContext*,
                                       const v1::LeaveRequest* request,
                                       v1::LeaveResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "Leave", response, [&] {
    return Wrap<v1::LeaveResponse>(coordinator_.load()->Leave(*request));
  });
}

grpc::Status CoordinatorService::AcquirePartition(
    grpc::ServerContext*, const v1::AcquirePartitionRequest* request,
    v1::AcquirePartitionResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "AcquirePartition",
               response,
               [&] { return coordinator_.load()->AcquirePartition(*request); });
}

grpc::Status CoordinatorService::CompletePartition(
    grpc::ServerContext*, const v1::CompletePartitionRequest* request,
    v1::CompletePartitionResponse* response) {
  return Serve(
      shard_, coordinator_.load() != nullptr, "CompletePartition", response,
      [&] { return coordinator_.load()->CompletePartition(*request); });
}

grpc::Status CoordinatorService::WaitForClock(
    grpc::ServerContext* context, const v1::WaitForClockRequest* request,
    v1::WaitForClockResponse* response) {
  // Never hold the caller past its own deadline.
  absl::Duration wait = kMaxClockWait;
  const auto left = context->deadline() - std::chrono::system_clock::now();
  wait = std::min(wait, absl::FromChrono(left) - absl::Milliseconds(50));
  if (wait < absl::ZeroDuration()) wait = absl::ZeroDuration();
  return Serve(
      shard_, coordinator_.load() != nullptr, "WaitForClock", response,
      [&] { return coordinator_.load()->WaitForClock(*request, wait); });
}

grpc::Status CoordinatorService::ReportEvaluation(
    grpc::ServerContext*, const v1::ReportEvaluationRequest* request,
    v1::ReportEvaluationResponse* response) {
  return Serve(shard_, coordinator_.load() != nullptr, "ReportEvaluation",
               response, [&] {
                 return Wrap<v1::ReportEvaluationResponse>(
                     coordinator_.load()->ReportEvaluation(*request));
               });
}

grpc::Status CoordinatorService::GetStatus(grpc::ServerContext*,
                                           const v1::GetStatusRequest*,
                                           v1::JobStatus* response) {
  return Serve(
      shard_, coordinator_.load() != nullptr, "GetStatus", response, [&] {
        return absl::StatusOr<v1::JobStatus>(coordinator_.load()->Status());
      });
}

grpc::Status CoordinatorService::FetchModelFile(
    grpc::ServerContext* context, const v1::FetchModelFileRequest*,
    grpc::ServerWriter<v1::FileChunk>* writer) {
  const absl::Time start = absl::Now();
  absl::Status status = shard_->CheckServing(false);
  Coordinator* coordinator = coordinator_.load();
  if (status.ok() && coordinator == nullptr) {
    status = absl::UnavailableError("the coordinator is starting");
  }
  int64_t sent = 0;
  if (status.ok()) {
    std::shared_ptr<const std::string> file = coordinator->model_file();
    if (file == nullptr) {
      status = absl::NotFoundError(
          "the job has no model file (model.torchscript is not set)");
    } else {
      int64_t offset = 0;
      const int64_t size = file->size();
      while (offset < size) {
        if (context->IsCancelled()) {
          status = absl::CancelledError("the client cancelled the fetch");
          break;
        }
        const int64_t n = std::min(kModelFileChunkBytes, size - offset);
        v1::FileChunk chunk;
        chunk.set_offset(offset);
        chunk.set_data(file->data() + offset, n);
        if (!writer->Write(chunk)) {
          status = absl::UnavailableError("the client went away mid-stream");
          break;
        }
        offset += n;
        sent += n;
      }
    }
  } else {
    shard_->CountRejected(RejectReasonOf(status));
  }
  shard_->RecordRequest("FetchModelFile", status, absl::Now() - start, 0, sent);
  return ToGrpcStatus(status);
}

}  // namespace tessera

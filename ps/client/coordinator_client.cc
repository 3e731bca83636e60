#include "ps/client/coordinator_client.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/common/grpc_status.h"
#include "zlib.h"

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

absl::StatusOr<std::string> CoordinatorClient::FetchOnce(
    int64_t expected_bytes, uint32_t crc, absl::Duration deadline) {
  constexpr int64_t kMaxChunkBytes = 1 << 20;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  std::unique_ptr<grpc::ClientReader<v1::FileChunk>> reader =
      stub_->FetchModelFile(&context, v1::FetchModelFileRequest());
  std::string file;
  file.reserve(expected_bytes);  // Bounded by kMaxModelFileBytes.
  absl::Status bad;
  v1::FileChunk chunk;
  while (reader->Read(&chunk)) {
    const int64_t size = chunk.data().size();
    if (chunk.offset() != static_cast<int64_t>(file.size())) {
      bad = absl::DataLossError(
          absl::StrCat("model file chunk at offset ", chunk.offset(),
                       "; expected offset ", file.size()));
    } else if (size > kMaxChunkBytes) {
      bad = absl::DataLossError(absl::StrCat(
          "model file chunk of ", size, " bytes; at most ", kMaxChunkBytes));
    } else if (size > expected_bytes - static_cast<int64_t>(file.size())) {
      bad = absl::DataLossError(
          absl::StrCat("the coordinator sends more than the ", expected_bytes,
                       " bytes of the model file it announced"));
    }
    if (!bad.ok()) {
      context.TryCancel();
      break;
    }
    file.append(chunk.data());
  }
  absl::Status finished = FromGrpcStatus(reader->Finish());
  if (!bad.ok()) finished = bad;
  if (finished.ok() && static_cast<int64_t>(file.size()) != expected_bytes) {
    finished =
        absl::DataLossError(absl::StrCat("model file ended after ", file.size(),
                                         " of ", expected_bytes, " bytes"));
  }
  if (finished.ok()) {
    uLong got = crc32(0L, Z_NULL, 0);
    for (size_t at = 0; at < file.size(); at += kMaxChunkBytes) {
      const size_t n = std::min<size_t>(kMaxChunkBytes, file.size() - at);
      got = crc32(got, reinterpret_cast<const Bytef*>(file.data() + at),
                  static_cast<uInt>(n));
    }
    if (static_cast<uint32_t>(got) != crc) {
      finished = absl::DataLossError(absl::StrFormat(
          "model file has crc32 %08x; the coordinator announced %08x",
          static_cast<uint32_t>(got), crc));
    }
  }
  if (!finished.ok()) {
    return absl::Status(
        finished.code(),
        absl::StrCat("coordinator at ", options_.address,
                     ": fetch model file: ", finished.message()));
  }
  return file;
}

absl::StatusOr<std::string> CoordinatorClient::FetchModelFile(
    int64_t expected_bytes, uint32_t crc, absl::Duration patience) {
  if (expected_bytes < 0 || expected_bytes > kMaxModelFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file of ", expected_bytes, " bytes; at most ",
                     kMaxModelFileBytes));
  }
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    const absl::Duration left =
        std::max(absl::Seconds(1), patience - (absl::Now() - start));
    auto file = FetchOnce(expected_bytes, crc, left);
    if (file.ok() || !IsRetryable(file.status())) return file;
    const absl::Duration waited = absl::Now() - start;
    if (waited > patience ||
        (options_.stop != nullptr && options_.stop->load())) {
      return absl::DeadlineExceededError(absl::StrCat(
          "fetch model file: ", file.status().message(), " (retried for ",
          absl::FormatDuration(absl::Trunc(waited, absl::Seconds(1))), ")"));
    }
    LOG(WARNING) << "fetching the model file again in " << backoff << ": "
                 << file.status().message();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
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

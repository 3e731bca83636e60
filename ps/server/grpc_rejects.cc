#include "ps/server/grpc_rejects.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "ps/common/reject_reason.h"

namespace tessera {
namespace {

using grpc::experimental::InterceptionHookPoints;

// "/tessera.v1.ParameterServer/PushGradient" -> "PushGradient", the rpc label
// the handlers record under.
std::string RpcName(absl::string_view method) {
  const size_t slash = method.rfind('/');
  return std::string(
      slash == absl::string_view::npos ? method : method.substr(slash + 1));
}

class RejectCountingInterceptor : public grpc::experimental::Interceptor {
 public:
  RejectCountingInterceptor(Shard* shard, std::string method)
      : shard_(shard), method_(std::move(method)), start_(absl::Now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Null when the request could not be decoded (or never arrived).
      decoded_ = methods->GetRecvMessage() != nullptr;
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        !decoded_) {
      // gRPC's own refusals: INTERNAL (not decodable) and RESOURCE_EXHAUSTED
      // (over the receive limit), on Tessera's services (not health's or
      // reflection's, whose streams may end without a message).
      const grpc::Status status = methods->GetSendStatus();
      if ((status.error_code() == grpc::StatusCode::INTERNAL ||
           status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) &&
          absl::StartsWith(method_, "/tessera.")) {
        Refused(methods, status);
      }
    }
    methods->Proceed();
  }

 private:
  void Refused(grpc::experimental::InterceptorBatchMethods* methods,
               const grpc::Status& status) {
    const bool oversize =
        status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    absl::Status refused;
    if (oversize) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat(method_, ": ", status.error_message()));
    } else {
      refused = absl::InvalidArgumentError(absl::StrCat(
          method_,
          ": the request could not be decoded as this method's "
          "request message",
          status.error_message().empty() ? "" : ": ", status.error_message()));
      methods->ModifySendStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                             std::string(refused.message())));
    }
    shard_->CountRejected(oversize ? kReasonOversize : kReasonMalformed);
    shard_->RecordRequest(RpcName(method_), refused, absl::Now() - start_, 0,
                          0);
  }

  Shard* const shard_;  // Not owned.
  const std::string method_;
  const absl::Time start_;
  // Until a message arrives decoded, a failed status is gRPC's own refusal
  // (handlers only run with a decoded request).
  bool decoded_ = false;
};

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Shard* shard) : shard_(shard) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RejectCountingInterceptor(shard_, info->method());
  }

 private:
  Shard* const shard_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewRejectCountingInterceptorFactory(Shard* shard) {
  return std::make_unique<Factory>(shard);
}

}  // namespace tessera

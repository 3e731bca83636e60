#include "ps/server/grpc_rejects.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/reject_reason.h"
#include "ps/server/ps_service.h"
#include "ps/server/shard.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {
namespace {

// The value of the series of `family` whose labels contain `label`.
double SeriesValue(const std::string& text, const std::string& family,
                   const std::string& label) {
  size_t at = 0;
  while ((at = text.find(family + "{", at)) != std::string::npos) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end;
    if (line.find(label) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

class GrpcRejectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir =
        std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
        "/grpc-rejects-XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    ShardOptions options;
    options.placement.set_num_shards(1);
    options.data_dir = dir_ + "/data";
    options.flush_interval = absl::ZeroDuration();
    options.max_message_bytes = 1 << 20;
    shard_ = std::make_unique<Shard>(options, &registry_);
    ASSERT_TRUE(shard_->Load().ok());
    service_ = std::make_unique<ParameterServerService>(shard_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(2 << 20);
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(NewRejectCountingInterceptorFactory(shard_.get()));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    channel_ =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                  grpc::InsecureChannelCredentials(), args);
  }

  void TearDown() override {
    server_->Shutdown();
    server_.reset();
    service_.reset();
    shard_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Sends `bytes` as the request of `method`; returns the status.
  grpc::Status SendRaw(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return status;
  }

  std::string dir_;
  metrics::Registry registry_;
  std::unique_ptr<Shard> shard_;
  std::unique_ptr<ParameterServerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(GrpcRejectsTest, EveryReasonIsExportedAtZeroFromStartUp) {
  const std::string text = registry_.Serialize();
  for (const char* reason : kRejectReasons) {
    EXPECT_EQ(SeriesValue(text, "tessera_ps_rejected_requests_total",
                          std::string("reason=\"") + reason + "\""),
              0)
        << reason;
  }
}

TEST_F(GrpcRejectsTest, UndecodableRequestIsInvalidArgumentAndCounted) {
  // Field 1 (tensor_name) as a length-delimited field that runs past the end.
  const grpc::Status status =
      SendRaw("/tessera.v1.ParameterServer/PushGradient",
              std::string("\x0a\x7f\x01", 3));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("PushGradient"), std::string::npos)
      << status.error_message();
  const std::string text = registry_.Serialize();
  EXPECT_EQ(SeriesValue(text, "tessera_ps_rejected_requests_total",
                        "reason=\"malformed\""),
            1);
  EXPECT_EQ(
      SeriesValue(text, "tessera_ps_requests_total", "rpc=\"PushGradient\""),
      1);
}

TEST_F(GrpcRejectsTest, OversizeRequestsAreRefusedClearly) {
  // Over --max_message_bytes (1 MiB) but within gRPC's receive limit (2 MiB):
  // the handler refuses and counts it.
  v1::PushGradientRequest request;
  request.set_tensor_name("w");
  request.set_values(std::string(3 << 19, '\0'));
  grpc::Status status = SendRaw("/tessera.v1.ParameterServer/PushGradient",
                                request.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(
      SeriesValue(registry_.Serialize(), "tessera_ps_rejected_requests_total",
                  "reason=\"oversize\""),
      1);
  // Over gRPC's own limit: gRPC core refuses it before the server sees a
  // call (no hook counts it), still with a clear RESOURCE_EXHAUSTED.
  request.set_values(std::string(3 << 20, '\0'));
  status = SendRaw("/tessera.v1.ParameterServer/PushGradient",
                   request.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(GrpcRejectsTest, ValidRequestsAreNotCountedAsRefused) {
  v1::PushGradientRequest request;
  request.set_tensor_name("no_such_tensor");
  const grpc::Status status = SendRaw(
      "/tessera.v1.ParameterServer/PushGradient", request.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string text = registry_.Serialize();
  EXPECT_EQ(SeriesValue(text, "tessera_ps_rejected_requests_total",
                        "reason=\"malformed\""),
            0);
  EXPECT_EQ(SeriesValue(text, "tessera_ps_rejected_requests_total",
                        "reason=\"unknown_tensor\""),
            1);
}

}  // namespace
}  // namespace tessera

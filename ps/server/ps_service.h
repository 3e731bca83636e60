#ifndef TESSERA_PS_SERVER_PS_SERVICE_H_
#define TESSERA_PS_SERVER_PS_SERVICE_H_

// tessera.v1.ParameterServer over gRPC: a thin front end over Shard that
// converts messages and statuses and records per-rpc metrics.
//
// Thread-safe (gRPC calls handlers concurrently).

#include "ps/server/shard.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {

class ParameterServerService final : public v1::ParameterServer::Service {
 public:
  // `shard` is not owned and must outlive this.
  explicit ParameterServerService(Shard* shard) : shard_(shard) {}

  grpc::Status CreateTensors(grpc::ServerContext* context,
                             const v1::CreateTensorsRequest* request,
                             v1::CreateTensorsResponse* response) override;
  grpc::Status ListTensors(grpc::ServerContext* context,
                           const v1::ListTensorsRequest* request,
                           v1::ListTensorsResponse* response) override;
  grpc::Status PullTensor(grpc::ServerContext* context,
                          const v1::PullTensorRequest* request,
                          grpc::ServerWriter<v1::TensorChunk>* writer) override;
  grpc::Status PullModel(grpc::ServerContext* context,
                         const v1::PullModelRequest* request,
                         grpc::ServerWriter<v1::TensorChunk>* writer) override;
  grpc::Status PushGradient(grpc::ServerContext* context,
                            const v1::PushGradientRequest* request,
                            v1::PushGradientResponse* response) override;
  grpc::Status InitializeTensor(
      grpc::ServerContext* context, const v1::InitializeTensorRequest* request,
      v1::InitializeTensorResponse* response) override;
  grpc::Status GetShardInfo(grpc::ServerContext* context,
                            const v1::GetShardInfoRequest* request,
                            v1::ShardInfo* response) override;

 private:
  // Streams this shard's part of `tensor`; adds the bytes written to `*sent`.
  absl::Status StreamTensor(
      grpc::ServerContext* context, const std::string& tensor,
      const google::protobuf::RepeatedField<uint64_t>& ids,
      int64_t max_chunk_floats, grpc::ServerWriter<v1::TensorChunk>* writer,
      int64_t* sent);

  Shard* const shard_;  // Not owned.
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_PS_SERVICE_H_

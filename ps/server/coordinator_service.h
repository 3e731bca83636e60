#ifndef TESSERA_PS_SERVER_COORDINATOR_SERVICE_H_
#define TESSERA_PS_SERVER_COORDINATOR_SERVICE_H_

// tessera.v1.Coordinator over gRPC, on shard 0: converts statuses and
// records per-rpc metrics. Thread-safe.

#include <atomic>

#include "ps/server/coordinator.h"
#include "ps/server/shard.h"
#include "tessera/v1/coordinator.grpc.pb.h"

namespace tessera {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  // Neither is owned; both must outlive this. `coordinator` may be null
  // until the shard has loaded: calls answer UNAVAILABLE meanwhile.
  CoordinatorService(Coordinator* coordinator, Shard* shard)
      : coordinator_(coordinator), shard_(shard) {}

  // Publishes the coordinator once it is ready. Call once.
  void set_coordinator(Coordinator* coordinator) {
    coordinator_.store(coordinator);
  }

  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest*,
                    v1::JoinResponse*) override;
  grpc::Status RegisterModel(grpc::ServerContext*,
                             const v1::RegisterModelRequest*,
                             v1::RegisterModelResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse*) override;
  grpc::Status Leave(grpc::ServerContext*, const v1::LeaveRequest*,
                     v1::LeaveResponse*) override;
  grpc::Status AcquirePartition(grpc::ServerContext*,
                                const v1::AcquirePartitionRequest*,
                                v1::AcquirePartitionResponse*) override;
  grpc::Status CompletePartition(grpc::ServerContext*,
                                 const v1::CompletePartitionRequest*,
                                 v1::CompletePartitionResponse*) override;
  grpc::Status WaitForClock(grpc::ServerContext*,
                            const v1::WaitForClockRequest*,
                            v1::WaitForClockResponse*) override;
  grpc::Status ReportEvaluation(grpc::ServerContext*,
                                const v1::ReportEvaluationRequest*,
                                v1::ReportEvaluationResponse*) override;
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::JobStatus*) override;
  // The model file in chunks of kModelFileChunkBytes; NOT_FOUND when the job
  // has none.
  grpc::Status FetchModelFile(grpc::ServerContext*,
                              const v1::FetchModelFileRequest*,
                              grpc::ServerWriter<v1::FileChunk>*) override;

  static constexpr int64_t kModelFileChunkBytes = 1 << 20;

 private:
  std::atomic<Coordinator*> coordinator_;  // Not owned.
  Shard* const shard_;                     // Not owned.
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_COORDINATOR_SERVICE_H_

#ifndef TESSERA_PS_COMMON_GRPC_STATUS_H_
#define TESSERA_PS_COMMON_GRPC_STATUS_H_

// The one conversion point between absl::Status and grpc::Status. The codes
// share their numbering (both follow google.rpc.Code), and messages pass
// through unchanged.

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace tessera {

grpc::Status ToGrpcStatus(const absl::Status& status);

absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_GRPC_STATUS_H_

#ifndef TESSERA_PS_SERVER_GRPC_REJECTS_H_
#define TESSERA_PS_SERVER_GRPC_REJECTS_H_

// Requests gRPC refuses before any handler runs: a message that does not
// decode as the method's request type. gRPC answers it with INTERNAL and an
// empty message and counts it nowhere; this interceptor counts it in
// tessera_ps_rejected_requests_total{reason="malformed"} and
// tessera_ps_requests_total, and turns the empty INTERNAL into
// INVALID_ARGUMENT with a message that names the method.
//
// Size limits: a request over --max_message_bytes reaches its handler, which
// refuses and counts it (reason "oversize"). One over gRPC's receive limit
// (twice that, plus 1 MiB) is refused by gRPC core with RESOURCE_EXHAUSTED;
// when gRPC still shows that call to interceptors it is counted as "oversize"
// here, but gRPC 1.51 usually refuses it before any server call exists
// (ps/server/grpc_rejects_test.cc), and then nothing of ours can count it.
//
// Install with grpc::ServerBuilder::experimental().SetInterceptorCreators.
// Thread-safe.

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "ps/server/shard.h"

namespace tessera {

// `shard` is not owned and must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewRejectCountingInterceptorFactory(Shard* shard);

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_GRPC_REJECTS_H_

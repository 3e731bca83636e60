#ifndef TESSERA_PS_CLIENT_CHANNEL_H_
#define TESSERA_PS_CLIENT_CHANNEL_H_

// The one way Tessera's clients open a gRPC channel to a shard or the
// coordinator, so that every caller (workers, the CLI, tests, benchmarks)
// uses the same message limits: replies as large as a shard sends (64 MiB
// chunks, ps/server/main.cc) and requests up to the shard's
// --max_message_bytes default.
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace tessera {

struct ChannelOptions {
  // Largest message sent or received on the channel.
  int64_t max_message_bytes = int64_t{64} << 20;
};

// An insecure channel to `address` ("host:port" or a gRPC target such as
// "dns:///ps-0.ps:7000"). Connects lazily.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address,
                                          const ChannelOptions& options = {});

}  // namespace tessera

#endif  // TESSERA_PS_CLIENT_CHANNEL_H_

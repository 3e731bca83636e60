#ifndef TESSERA_PS_COMMON_PROTOBUF_LOG_H_
#define TESSERA_PS_COMMON_PROTOBUF_LOG_H_

// Protobuf's own log lines, rate-limited. Parsing a message from a peer logs
// an error per message for some bad input (a string field with invalid
// UTF-8): 10,000 such requests wrote 2.2 MB of log. The parse still fails and
// the request is still refused and counted by its front end; this only keeps
// a hostile peer from filling the disk. Each distinct message is logged at
// most once per `interval`, with the number suppressed since.
//
// Call once in main(). Thread-safe afterwards.

#include "absl/time/time.h"

namespace tessera {

void RateLimitProtobufLogs(absl::Duration interval = absl::Seconds(60));

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_PROTOBUF_LOG_H_

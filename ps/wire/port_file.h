#ifndef TESSERA_PS_WIRE_PORT_FILE_H_
#define TESSERA_PS_WIRE_PORT_FILE_H_

// The ports a server bound, in a small file for supervisors that start it on
// port 0 (`tessera demo`, tests, benchmarks): "grpc=P\ndata=P\nmetrics=P\n".
// tessera-ps writes it once serving (--port_file); the local launcher
// (tools/launch/launcher.h) reads it.
//
// Thread-safe (stateless).

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera {

struct ServerPorts {
  int grpc = 0;
  int data = 0;
  int metrics = 0;
};

// Writes `ports` to `path` atomically (write + rename), so a supervisor that
// polls for the file never reads half of it.
absl::Status WritePortFile(const std::string& path, const ServerPorts& ports);

// Parses a port file's text. InvalidArgument unless it names a gRPC port in
// [1, 65535]; data and metrics stay 0 when absent.
absl::StatusOr<ServerPorts> ParsePortFile(absl::string_view text);

// Reads and parses `path`. NotFound while it does not exist.
absl::StatusOr<ServerPorts> ReadPortFile(const std::string& path);

}  // namespace tessera

#endif  // TESSERA_PS_WIRE_PORT_FILE_H_

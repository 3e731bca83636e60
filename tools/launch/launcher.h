#ifndef TESSERA_TOOLS_LAUNCH_LAUNCHER_H_
#define TESSERA_TOOLS_LAUNCH_LAUNCHER_H_

// The one launcher of local shards and workers, used by `tessera demo`, the
// multi-process tests (tests/cluster.h), the fault suite
// (tests/fault/fault_cluster.h) and the benchmarks: it builds each binary's
// command line, starts it as a Subprocess (killed and reaped when its owner
// lets go), and waits for readiness by polling (the shard's port file, then
// its gRPC health) up to a deadline; it never sleeps for readiness.
//
// Errors name the process, say what it was waited for, and carry the tail of
// its log.
//
// Thread-compatible.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ps/wire/port_file.h"
#include "tools/launch/subprocess.h"

namespace tessera::launch {

// A TCP port on `host` that was free a moment ago, for processes that must
// keep their port across restarts. Picked at random outside the kernel's
// ephemeral range (ip_local_port_range), so no outgoing connection or bind(0)
// on the machine can take it before the child binds it; never the same port
// twice in one process.
absl::StatusOr<int> PickFreePort(const std::string& host = "127.0.0.1");

// The last `bytes` of `text`.
std::string Tail(const std::string& text, size_t bytes = 3000);

// Polls gRPC health of `address` until SERVING. Fails when `deadline`
// passes (DeadlineExceeded, with the last answer), when `child` (may be
// null) exits (FailedPrecondition), or when `*cancel` (may be null) is set
// (Cancelled).
absl::Status WaitForServing(const std::string& address, Subprocess* child,
                            absl::Time deadline,
                            const std::atomic<bool>* cancel = nullptr);

// Polls `path` until it holds a port file; fails as WaitForServing does.
absl::StatusOr<ServerPorts> WaitForPortFile(
    const std::string& path, Subprocess* child, absl::Time deadline,
    const std::atomic<bool>* cancel = nullptr);

// One tessera-ps. Ports 0 let the shard pick (read back from the port file).
struct ShardCommand {
  std::string binary;  // path of tessera-ps
  int shard_index = 0;
  int num_shards = 1;
  std::string host = "127.0.0.1";
  int grpc_port = 0;
  int data_port = 0;
  int metrics_port = 0;
  std::string data_dir;
  std::string port_file;   // required: how the launcher learns the ports
  std::string job_config;  // --job_config, if set (shard 0 coordinates)
  // Run the binary through this command (e.g. "ip netns exec ns1").
  std::vector<std::string> wrapper;
  // Appended last, so they win (e.g. --flush_interval_s=1).
  std::vector<std::string> extra_flags;
};

std::vector<std::string> ShardArgv(const ShardCommand& command);

struct StartedShard {
  std::unique_ptr<Subprocess> child;
  ServerPorts ports;
};

// Starts the shard (log appended to `log_path`) and waits until it serves:
// its port file (removed first, so a stale one is never read), then gRPC
// health at host:grpc.
absl::StatusOr<StartedShard> StartShard(
    const ShardCommand& command, const std::string& log_path,
    absl::Duration timeout, const std::atomic<bool>* cancel = nullptr);

// One tessera-worker.
struct WorkerCommand {
  std::string binary;  // path of tessera-worker
  std::string worker_id;
  std::vector<std::string> shards;  // gRPC addresses, shard order
  std::string host = "127.0.0.1";   // --listen_address (its /metrics)
  int metrics_port = 0;
  std::vector<std::string> extra_flags;  // appended last
};

std::vector<std::string> WorkerArgv(const WorkerCommand& command);

// Starts the worker (log appended to `log_path`); does not wait for it to
// join: its progress shows in the coordinator's status.
absl::StatusOr<std::unique_ptr<Subprocess>> StartWorker(
    const WorkerCommand& command, const std::string& log_path);

}  // namespace tessera::launch

#endif  // TESSERA_TOOLS_LAUNCH_LAUNCHER_H_

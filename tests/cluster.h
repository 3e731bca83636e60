#ifndef TESSERA_TESTS_CLUSTER_H_
#define TESSERA_TESTS_CLUSTER_H_

// Test support for multi-process tests: starts the real binaries as child
// processes on loopback with ports picked at run time, waits for readiness by
// polling (port file, then gRPC health), and kills and reaps every child when
// the owning object goes away, also when a test fails.
//
// Thread-compatible.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "tools/subprocess.h"

namespace tessera::testing {

// A file under $TEST_TMPDIR (or /tmp) unique to this test process.
std::string TempPath(const std::string& name);

// Path of a binary built by Bazel and listed in the test's data, e.g.
// "ps/server/tessera-ps".
std::string BinaryPath(const std::string& workspace_relative);

// Child processes: the project's Subprocess, killed and reaped on
// destruction.
using Child = ::tessera::Subprocess;

// A shard started by ShardProcess::Start.
struct ShardPorts {
  int grpc = 0;
  int data = 0;
  int metrics = 0;
  std::string grpc_address() const;
};

class ShardProcess {
 public:
  // Starts tessera-ps with --shard_index, --num_shards, --data_dir, ports 0
  // and a port file, plus `extra_flags`; waits up to `timeout` until its
  // health says SERVING. On failure the error includes the log's tail.
  // `extra_flags` come last and win: pass e.g. --data_port=<PickFreePort()>
  // to restart a shard on the same ports.
  static absl::StatusOr<std::unique_ptr<ShardProcess>> Start(
      int shard_index, int num_shards, const std::string& data_dir,
      std::vector<std::string> extra_flags,
      absl::Duration timeout = absl::Seconds(60));

  Child& child() { return *child_; }
  const ShardPorts& ports() const { return ports_; }
  std::shared_ptr<grpc::Channel> channel();

  // Scrapes /metrics and returns the value of the series `name{labels}`
  // (labels as printed, e.g. `reason="non_finite"`), or 0 if absent.
  absl::StatusOr<double> Metric(const std::string& name,
                                const std::string& labels = "");

 private:
  std::unique_ptr<Child> child_;
  ShardPorts ports_;
  std::shared_ptr<grpc::Channel> channel_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
// released), for processes that must keep their port across restarts.
absl::StatusOr<int> PickFreePort();

// Polls gRPC health of `address` until SERVING or `timeout`.
absl::Status WaitForServing(const std::string& address, absl::Duration timeout);

// GET http://127.0.0.1:port/path, body only.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_CLUSTER_H_

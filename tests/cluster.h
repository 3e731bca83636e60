#ifndef TESSERA_TESTS_CLUSTER_H_
#define TESSERA_TESTS_CLUSTER_H_

// Test support for multi-process tests: starts the real binaries as child
// processes on loopback with ports picked at run time, through the local
// launcher (tools/launch/launcher.h), which waits for readiness by polling
// (port file, then gRPC health); every child is killed and reaped when the
// owning object goes away, also when a test fails.
//
// Thread-compatible.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "tessera/v1/coordinator.pb.h"
#include "tools/launch/launcher.h"
#include "tools/launch/subprocess.h"

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
  // to restart a shard on the same ports. The log goes to `log_path`
  // (appended), by default a file under $TEST_TMPDIR named by the index.
  static absl::StatusOr<std::unique_ptr<ShardProcess>> Start(
      int shard_index, int num_shards, const std::string& data_dir,
      std::vector<std::string> extra_flags,
      absl::Duration timeout = absl::Seconds(60),
      const std::string& log_path = "");

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

// A free port on 127.0.0.1, for processes that must keep their port across
// restarts: the launcher's.
using launch::PickFreePort;

// GET http://127.0.0.1:port/path, body only.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// Where Debian's dataset-fashion-mnist installs the IDX files.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// A tessera-worker started by LocalCluster::StartWorker.
class WorkerProcess {
 public:
  const std::string& id() const { return id_; }
  Child& child() { return *child_; }

 private:
  friend class LocalCluster;
  WorkerProcess(std::string id, std::unique_ptr<Child> child)
      : id_(std::move(id)), child_(std::move(child)) {}

  const std::string id_;
  std::unique_ptr<Child> child_;
};

struct LocalClusterOptions {
  int num_shards = 2;
  // The job (tessera.v1.JobConfig in protobuf text format); written to the
  // cluster's directory and given to shard 0 with --job_config.
  std::string job_config;
  // Appended to every shard's command line, and to every worker's.
  std::vector<std::string> shard_flags;
  std::vector<std::string> worker_flags = {"--threads=1"};
  // For the shards to serve.
  absl::Duration start_timeout = absl::Seconds(60);
};

// A whole job on loopback: N tessera-ps shards (shard 0 coordinating the
// job) in a fresh directory under $TEST_TMPDIR (or /tmp), and any number of
// tessera-worker processes started and stopped by the test. Every child is
// killed (SIGKILL) and reaped when the cluster goes away, workers first.
//
// Thread-compatible.
class LocalCluster {
 public:
  // Starts the shards in order and waits until each is SERVING.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(
      LocalClusterOptions options);
  ~LocalCluster();

  const std::string& dir() const { return dir_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  ShardProcess& shard(int i) { return *shards_[i]; }
  // gRPC addresses in shard order; [0] is the coordinator.
  std::vector<std::string> shard_addresses() const;

  // Starts tessera-worker --worker_id=`id` against this cluster, plus
  // `extra_flags`; does not wait for it to join. The worker is owned by the
  // cluster; the pointer stays valid for the cluster's life. An id already
  // started is an AlreadyExists error.
  absl::StatusOr<WorkerProcess*> StartWorker(
      const std::string& id, std::vector<std::string> extra_flags = {});
  // The worker started as `id`, or nullptr.
  WorkerProcess* worker(const std::string& id);

  // One Coordinator.GetStatus call.
  absl::StatusOr<v1::JobStatus> Status(
      absl::Duration timeout = absl::Seconds(5));

  // Polls Status() until `done` holds for it (returns that status) or
  // `timeout` passes: DeadlineExceeded naming `what`, with the last status
  // and the tails of the logs. Also fails (Aborted) once `fail_if_no_worker`
  // is set and no started worker is running any more while `done` is false.
  absl::StatusOr<v1::JobStatus> WaitFor(
      const std::string& what,
      const std::function<bool(const v1::JobStatus&)>& done,
      absl::Duration timeout, bool fail_if_no_worker = false);
  // WaitFor(status.finished(), fail_if_no_worker = true).
  absl::StatusOr<v1::JobStatus> WaitUntilFinished(absl::Duration timeout);

  // Waits up to `timeout` for every started worker to exit; the exit codes
  // by worker id. DeadlineExceeded naming a worker still running.
  absl::StatusOr<std::map<std::string, int>> WaitForWorkers(
      absl::Duration timeout);

  // The tails of every shard's and worker's log, for failure messages.
  std::string LogTails(size_t bytes_per_log = 1500) const;

 private:
  LocalCluster() = default;

  LocalClusterOptions options_;
  std::string dir_;
  std::vector<std::unique_ptr<ShardProcess>> shards_;
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
};

// `bazel run` starts a binary in its runfiles tree, where ShardProcess and
// LocalCluster find ps/server/tessera-ps and worker/tessera-worker; a binary
// started directly from bazel-bin (`argv0`) moves there. Does nothing when
// the binaries are already in reach or no runfiles tree exists.
void EnterRunfiles(const char* argv0);

// The entry of worker `id` in `status`, or nullptr if it is not live.
const v1::WorkerStatus* FindWorker(const v1::JobStatus& status,
                                   const std::string& id);

// The stats of `epoch` in `status`, or nullptr.
const v1::EpochStats* FindEpoch(const v1::JobStatus& status, int epoch);

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_CLUSTER_H_

#ifndef TESSERA_TESTS_FAULT_FAULT_CLUSTER_H_
#define TESSERA_TESTS_FAULT_FAULT_CLUSTER_H_

// The fault suite's scenario runner: a whole Tessera job on this machine
// (tessera-ps shards, shard 0 coordinating, tessera-worker processes) whose
// processes a test can kill, stop, restart, add and remove while it trains,
// plus the probes the invariants need (job status, part versions, exact
// parameter snapshots, flush times, /metrics scrapes, test accuracy of the
// pulled model, processes left behind).
//
// Every shard keeps its ports and data directory for the whole scenario, so
// a restarted shard is found where it was. Every child is killed and reaped
// when the cluster goes away, also when a test fails half-way. Waits poll a
// condition with a deadline; nothing sleeps to wait for readiness.
//
// Caveat: children get PR_SET_PDEATHSIG from the thread that starts them;
// start and restart processes from the test's main thread only.
//
// Thread-compatible (the probes that only read over the network may be
// called from other threads).

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tessera/v1/coordinator.pb.h"
#include "tests/fault/metrics_text.h"
#include "tools/launch/subprocess.h"

namespace tessera::fault {

// The training job every scenario runs (a small Fashion-MNIST MLP).
struct JobOptions {
  std::string name = "fault";
  std::vector<int> hidden = {64};  // the MLP's hidden layer sizes
  int64_t limit = 60000;           // training examples per epoch
  int epochs = 4;
  int partitions = 60;
  int batch_size = 64;
  std::string consistency = "SSP";
  int staleness = 4;
  std::string optimizer = "kind: ADAM learning_rate: 0.0002";
  double lease_timeout_s = 4;
  uint64_t seed = 1;
};

struct ClusterOptions {
  int num_shards = 2;
  JobOptions job;
  double flush_interval_s = 0.5;
  double call_deadline_s = 3;  // workers' --call_deadline_s
  // Shards' --split_threshold_bytes: small enough that fc1.weight is split
  // over both shards, so that each shard holds a large part.
  int64_t split_threshold_bytes = 64 << 10;
  // Extra flags for every shard / one shard (they come last and win).
  std::vector<std::string> shard_flags;
  std::map<int, std::vector<std::string>> shard_extra_flags;
  // Where shard i listens (default 127.0.0.1), its data directory (default
  // <dir>/ps-<i>) and a command its binary runs under (e.g. `ip netns exec
  // <ns>`).
  std::map<int, std::string> shard_hosts;
  std::map<int, std::string> shard_data_dirs;
  std::map<int, std::vector<std::string>> shard_wrappers;
};

// One shard's parameters, exactly: per tensor, its values' bytes (and row ids
// for embedding tables) and the part's version.
struct ShardSnapshot {
  std::map<std::string, std::string> bytes;
  std::map<std::string, int64_t> versions;
  std::map<std::string, int64_t> rows;  // embedding tables: rows pulled
  bool operator==(const ShardSnapshot& o) const {
    return bytes == o.bytes && versions == o.versions;
  }
  int64_t total_version() const;
};

class FaultCluster {
 public:
  // Makes `dir` (fresh), writes the job config, picks every shard's ports,
  // and starts the shards (not the workers).
  static absl::StatusOr<std::unique_ptr<FaultCluster>> Start(
      ClusterOptions options, const std::string& dir);
  // Kills and reaps every child still running.
  ~FaultCluster();

  const ClusterOptions& options() const { return options_; }
  const std::string& dir() const { return dir_; }
  int num_shards() const { return options_.num_shards; }
  std::string grpc_address(int shard) const;
  std::string data_address(int shard) const;
  std::vector<std::string> grpc_addresses() const;

  // --- Shards ---------------------------------------------------------------
  // Starts shard `i` on its ports and directory; waits (up to `timeout`) for
  // SERVING. The error carries the log's tail.
  absl::Status StartShard(int i, absl::Duration timeout = absl::Seconds(60));
  void SignalShard(int i, int signal);
  // Waits for shard `i` to exit; its exit code (128 + signal if killed).
  absl::StatusOr<int> WaitShard(int i, absl::Duration timeout);
  bool ShardRunning(int i);
  std::string ShardLog(int i) const;
  int shard_pid(int i) const;

  // --- Workers --------------------------------------------------------------
  // Starts a worker named `name` (ids are made unique per cluster) with
  // `extra_flags`.
  absl::Status StartWorker(const std::string& name,
                           std::vector<std::string> extra_flags = {});
  void SignalWorker(const std::string& name, int signal);
  absl::StatusOr<int> WaitWorker(const std::string& name,
                                 absl::Duration timeout);
  bool WorkerRunning(const std::string& name);
  std::vector<std::string> RunningWorkers();
  std::vector<std::string> AllWorkers() const;
  std::string WorkerLog(const std::string& name) const;
  int worker_metrics_port(const std::string& name) const;

  // --- Probes ---------------------------------------------------------------
  absl::StatusOr<v1::JobStatus> Status(
      absl::Duration timeout = absl::Seconds(3));
  // Fraction of the job's partitions completed, 0..1.
  static double Progress(const v1::JobStatus& status);
  // Polls the job status until `done(status)`, up to `timeout`; fails early
  // if every worker has exited without finishing the job.
  absl::StatusOr<v1::JobStatus> WaitForStatus(
      const std::function<bool(const v1::JobStatus&)>& done,
      absl::Duration timeout, const std::string& what);
  absl::StatusOr<v1::JobStatus> WaitForProgress(double fraction,
                                                absl::Duration timeout);
  absl::StatusOr<v1::JobStatus> WaitForJob(absl::Duration timeout);

  absl::StatusOr<std::map<std::string, int64_t>> PartVersions(int shard);
  // Every tensor of shard `shard` (PullModel), or with `only` those it
  // accepts (one PullTensor each). Caveat: pulling an embedding table that
  // reads the disk (a tiered table, EVICTION_DISK) flushes the shard first.
  absl::StatusOr<ShardSnapshot> PullShard(
      int shard, const std::function<bool(const std::string&)>& only = {});
  // The part versions stored in shard `shard`'s data directory, read with
  // the shard's own storage code while the shard is down: exactly what a
  // restart will load. FailedPrecondition while the shard runs.
  absl::StatusOr<std::map<std::string, int64_t>> StoredVersions(int shard);
  // GetShardInfo.last_flush_unix_ms: the start of the last flush after which
  // memory and disk agreed.
  absl::StatusOr<int64_t> LastFlushMs(int shard);
  // Waits until a flush that started after `after` has succeeded.
  absl::Status WaitForFlushAfter(int shard, absl::Time after,
                                 absl::Duration timeout);
  absl::StatusOr<MetricsText> ShardMetrics(int shard);
  absl::StatusOr<MetricsText> WorkerMetrics(const std::string& name);

  // Pulls the model from every shard and evaluates it on the 10,000 test
  // images; percent correct. Tensors that are not the model's parameters
  // (a test's own tables) are left out.
  absl::StatusOr<double> TestAccuracy();

  // SIGTERM to every running worker and then every shard; each must exit 0
  // within `timeout`. Everything is reaped either way.
  absl::Status Shutdown(absl::Duration timeout = absl::Seconds(30));

  // Processes of this cluster still alive anywhere on the machine (found in
  // /proc by the cluster's directory or worker-id prefix), as "pid cmdline".
  std::vector<std::string> ProcessesLeft() const;

 private:
  struct ShardSlot {
    std::string host;
    int grpc_port = 0;
    int data_port = 0;
    int metrics_port = 0;
    std::string data_dir;
    std::string log;
    std::unique_ptr<Subprocess> child;
    int starts = 0;
  };
  struct WorkerSlot {
    std::string id;
    int metrics_port = 0;
    std::string log;
    std::unique_ptr<Subprocess> child;
  };

  FaultCluster(ClusterOptions options, std::string dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}
  WorkerSlot* FindWorker(const std::string& name);
  const WorkerSlot* FindWorker(const std::string& name) const;

  const ClusterOptions options_;
  const std::string dir_;
  std::string job_path_;
  std::string worker_prefix_;
  std::vector<ShardSlot> shards_;
  std::vector<WorkerSlot> workers_;
};

// The job's invariants after it finished: one problem per line, empty when
// all hold. Every epoch has exactly `limit` samples from exactly
// `partitions` completions (each partition completed once).
std::vector<std::string> CheckJobInvariants(const v1::JobStatus& status,
                                            const JobOptions& job);

// GET http://host:port/path; the body.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path);

// Whether the text of `log` has a line containing all of `parts`.
bool LogHasLine(const std::string& log, const std::vector<std::string>& parts);

// Path of a binary in the test's runfiles ("ps/server/tessera-ps").
std::string BinaryPath(const std::string& workspace_relative);

// Runs argv (absolute path first) to completion within `timeout`; its output
// goes to `log_path`. Exit code, or an error if it could not run in time.
absl::StatusOr<int> RunCommand(std::vector<std::string> argv,
                               const std::string& log_path,
                               absl::Duration timeout = absl::Seconds(20));

}  // namespace tessera::fault

#endif  // TESSERA_TESTS_FAULT_FAULT_CLUSTER_H_

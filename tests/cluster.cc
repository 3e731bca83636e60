#include "tests/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ps/client/channel.h"
#include "tessera/v1/coordinator.grpc.pb.h"
#include "tools/launch/launcher.h"

namespace tessera::testing {
std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir ? dir : "/tmp", "/", getpid(), "-", name);
}

std::string BinaryPath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return workspace_relative;
  return absl::StrCat(srcdir, "/tessera/", workspace_relative);
}

std::string ShardPorts::grpc_address() const {
  return absl::StrCat("127.0.0.1:", grpc);
}

absl::StatusOr<std::unique_ptr<ShardProcess>> ShardProcess::Start(
    int shard_index, int num_shards, const std::string& data_dir,
    std::vector<std::string> extra_flags, absl::Duration timeout,
    const std::string& log_path) {
  launch::ShardCommand command;
  command.binary = BinaryPath("ps/server/tessera-ps");
  command.shard_index = shard_index;
  command.num_shards = num_shards;
  command.data_dir = data_dir;
  command.port_file = TempPath(absl::StrCat(
      "shard", shard_index, "-", absl::ToUnixNanos(absl::Now()), ".ports"));
  command.extra_flags = std::move(extra_flags);
  auto started = launch::StartShard(
      command,
      log_path.empty() ? TempPath(absl::StrCat("shard", shard_index, ".log"))
                       : log_path,
      timeout);
  std::remove(command.port_file.c_str());  // Read; nothing else needs it.
  if (!started.ok()) return started.status();
  auto shard = std::unique_ptr<ShardProcess>(new ShardProcess());
  shard->child_ = std::move(started->child);
  shard->ports_.grpc = started->ports.grpc;
  shard->ports_.data = started->ports.data;
  shard->ports_.metrics = started->ports.metrics;
  return shard;
}

std::shared_ptr<grpc::Channel> ShardProcess::channel() {
  if (channel_ == nullptr) {
    channel_ = NewChannel(ports_.grpc_address());
  }
  return channel_;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", port));
  }
  const std::string request =
      absl::StrCat("GET ", path,
                   " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("short write");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) {
    return absl::UnavailableError("no HTTP response");
  }
  return response.substr(body + 4);
}

absl::StatusOr<double> ShardProcess::Metric(const std::string& name,
                                            const std::string& labels) {
  auto text = HttpGet(ports_.metrics, "/metrics");
  if (!text.ok()) return text.status();
  const std::string series =
      labels.empty() ? name + " " : absl::StrCat(name, "{", labels, "} ");
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::StartsWith(line, series)) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(series.size()), &v)) return v;
    }
  }
  return 0.0;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    LocalClusterOptions options) {
  static std::atomic<int> next_cluster{0};
  auto cluster = std::unique_ptr<LocalCluster>(new LocalCluster());
  cluster->dir_ = TempPath(absl::StrCat("cluster-", next_cluster++));
  std::error_code ec;
  std::filesystem::remove_all(cluster->dir_, ec);
  std::filesystem::create_directories(cluster->dir_, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", cluster->dir_, ": ", ec.message()));
  }
  const std::string job_path = cluster->dir_ + "/job.pbtxt";
  {
    std::ofstream job(job_path);
    job << options.job_config;
    if (!job.good()) {
      return absl::InternalError(absl::StrCat("cannot write ", job_path));
    }
  }
  for (int i = 0; i < options.num_shards; ++i) {
    std::vector<std::string> flags = options.shard_flags;
    if (i == 0) flags.push_back("--job_config=" + job_path);
    auto shard = ShardProcess::Start(
        i, options.num_shards, absl::StrCat(cluster->dir_, "/ps-", i),
        std::move(flags), options.start_timeout,
        absl::StrCat(cluster->dir_, "/ps-", i, ".log"));
    if (!shard.ok()) {
      return absl::Status(
          shard.status().code(),
          absl::StrCat("shard ", i, ": ", shard.status().message()));
    }
    cluster->shards_.push_back(*std::move(shard));
  }
  cluster->options_ = std::move(options);
  return cluster;
}

LocalCluster::~LocalCluster() {
  // Workers first, so none of them spends its last moments retrying a shard
  // that is gone; each Child's destructor kills and reaps.
  workers_.clear();
  shards_.clear();
}

std::vector<std::string> LocalCluster::shard_addresses() const {
  std::vector<std::string> addresses;
  for (const auto& s : shards_) addresses.push_back(s->ports().grpc_address());
  return addresses;
}

absl::StatusOr<WorkerProcess*> LocalCluster::StartWorker(
    const std::string& id, std::vector<std::string> extra_flags) {
  if (worker(id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("worker ", id, " exists"));
  }
  launch::WorkerCommand command;
  command.binary = BinaryPath("worker/tessera-worker");
  command.worker_id = id;
  command.shards = shard_addresses();
  command.extra_flags = options_.worker_flags;
  for (auto& f : extra_flags) command.extra_flags.push_back(std::move(f));
  auto child =
      launch::StartWorker(command, absl::StrCat(dir_, "/worker-", id, ".log"));
  if (!child.ok()) return child.status();
  workers_.push_back(
      std::unique_ptr<WorkerProcess>(new WorkerProcess(id, *std::move(child))));
  return workers_.back().get();
}

WorkerProcess* LocalCluster::worker(const std::string& id) {
  for (auto& w : workers_) {
    if (w->id() == id) return w.get();
  }
  return nullptr;
}

absl::StatusOr<v1::JobStatus> LocalCluster::Status(absl::Duration timeout) {
  auto stub = v1::Coordinator::NewStub(shards_[0]->channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(timeout));
  v1::JobStatus status;
  grpc::Status s = stub->GetStatus(&context, v1::GetStatusRequest(), &status);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("GetStatus: ", s.error_message()));
  }
  return status;
}

absl::StatusOr<v1::JobStatus> LocalCluster::WaitFor(
    const std::string& what,
    const std::function<bool(const v1::JobStatus&)>& done,
    absl::Duration timeout, bool fail_if_no_worker) {
  // Not too often: each poll is a gRPC call on cores the job needs.
  constexpr absl::Duration kStatusPoll = absl::Milliseconds(50);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no status yet";
  while (true) {
    auto status = Status();
    if (status.ok()) {
      if (done(*status)) return *status;
      last = status->ShortDebugString();
    } else {
      last = std::string(status.status().message());
    }
    if (fail_if_no_worker) {
      bool any_running = false;
      for (auto& w : workers_) any_running |= w->child().running();
      if (!any_running) {
        return absl::AbortedError(
            absl::StrCat("every worker exited while waiting for ", what,
                         "; last status: ", last, "\n", LogTails()));
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no ", what, " after ", absl::FormatDuration(timeout),
                       "; last status: ", last, "\n", LogTails()));
    }
    absl::SleepFor(kStatusPoll);
  }
}

absl::StatusOr<v1::JobStatus> LocalCluster::WaitUntilFinished(
    absl::Duration timeout) {
  return WaitFor(
      "finished job", [](const v1::JobStatus& s) { return s.finished(); },
      timeout, /*fail_if_no_worker=*/true);
}

absl::StatusOr<std::map<std::string, int>> LocalCluster::WaitForWorkers(
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<std::string, int> codes;
  for (auto& w : workers_) {
    auto code =
        w->child().Wait(std::max(absl::ZeroDuration(), deadline - absl::Now()));
    if (!code.ok()) {
      return absl::DeadlineExceededError(
          absl::StrCat("worker ", w->id(), " still running after ",
                       absl::FormatDuration(timeout), "\n", LogTails()));
    }
    codes[w->id()] = *code;
  }
  return codes;
}

std::string LocalCluster::LogTails(size_t bytes_per_log) const {
  std::string out;
  auto add = [&](const std::string& name, const Child& child) {
    absl::StrAppend(&out, "--- ", name, " (", child.log_path(), ") ---\n",
                    launch::Tail(child.Log(), bytes_per_log), "\n");
  };
  for (size_t i = 0; i < shards_.size(); ++i) {
    add(absl::StrCat("shard ", i), shards_[i]->child());
  }
  for (const auto& w : workers_) add("worker " + w->id(), *w->child_);
  return out;
}

const v1::WorkerStatus* FindWorker(const v1::JobStatus& status,
                                   const std::string& id) {
  for (const auto& w : status.workers()) {
    if (w.worker_id() == id) return &w;
  }
  return nullptr;
}

const v1::EpochStats* FindEpoch(const v1::JobStatus& status, int epoch) {
  for (const auto& e : status.epoch_stats()) {
    if (e.epoch() == epoch) return &e;
  }
  return nullptr;
}

void EnterRunfiles(const char* argv0) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists("ps/server/tessera-ps", ec)) return;
  const fs::path runfiles =
      fs::path(fs::absolute(argv0, ec).string() + ".runfiles") / "tessera";
  if (fs::exists(runfiles, ec)) fs::current_path(runfiles, ec);
}

}  // namespace tessera::testing

#include "tools/launch/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"

namespace tessera::launch {
namespace {

// Poll interval while waiting for a condition; never a readiness sleep.
constexpr absl::Duration kPoll = absl::Milliseconds(20);

// The lowest port PickFreePort hands out: above the well-known and most
// registered service ports.
constexpr int kPickLow = 12768;

bool Cancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load();
}

std::string LogOf(Subprocess* child) {
  return child == nullptr ? std::string()
                          : absl::StrCat("; log ", child->log_path(), ":\n",
                                         Tail(child->Log()));
}

}  // namespace

std::string Tail(const std::string& text, size_t bytes) {
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

namespace {

// The kernel's range for bind(0) and for the source ports of outgoing
// connections. A port picked inside it can be handed to any connect() on the
// machine between the pick and the child's own bind, so picks stay below it.
std::pair<int, int> EphemeralRange() {
  int low = 32768, high = 60999;
  if (FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (fscanf(f, "%d %d", &low, &high) != 2) low = 32768, high = 60999;
    fclose(f);
  }
  return {low, high};
}

// Whether `port` on `addr` can be bound now (no SO_REUSEADDR, so a port in
// TIME_WAIT counts as taken too).
bool CanBind(sockaddr_in addr, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

absl::StatusOr<int> PickFreePort(const std::string& host) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an IPv4 address: ", host));
  }
  // Ports handed out by this process, never handed out twice.
  static absl::Mutex mu(absl::kConstInit);
  static auto* given = new absl::flat_hash_set<int>();
  static auto* rng = new std::mt19937(std::random_device{}());
  absl::MutexLock lock(&mu);
  const auto [ephemeral_low, ephemeral_high] = EphemeralRange();
  // Below the ephemeral range when it leaves room (Linux's default
  // leaves 12,768-32,767), else above it.
  int low = kPickLow, high = ephemeral_low - 1;
  if (high - low < 1000) low = ephemeral_high + 1, high = 65535;
  if (high - low < 1000) {
    return absl::UnavailableError(
        absl::StrCat("no room for fixed ports outside the ephemeral range ",
                     ephemeral_low, "-", ephemeral_high));
  }
  std::uniform_int_distribution<int> pick(low, high);
  for (int attempt = 0; attempt < 500; ++attempt) {
    const int port = pick(*rng);
    if (given->contains(port) || !CanBind(addr, port)) continue;
    given->insert(port);
    return port;
  }
  return absl::UnavailableError(absl::StrCat(
      "no free port on ", host, " in ", low, "-", high, " after 500 tries"));
}

absl::Status WaitForServing(const std::string& address, Subprocess* child,
                            absl::Time deadline,
                            const std::atomic<bool>* cancel) {
  auto stub = grpc::health::v1::Health::NewStub(NewChannel(address));
  std::string last = "no answer";
  while (true) {
    if (Cancelled(cancel)) {
      return absl::CancelledError(
          absl::StrCat("stopped waiting for ", address, " to serve"));
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(
        std::min(deadline, absl::Now() + absl::Milliseconds(500))));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stub->Check(&context, {}, &response);
    if (s.ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = s.ok() ? "NOT_SERVING" : s.error_message();
    if (child != nullptr && !child->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the process serving ", address,
                       " exited before SERVING", LogOf(child)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(address, " not SERVING in time: ", last, LogOf(child)));
    }
    absl::SleepFor(kPoll);
  }
}

absl::StatusOr<ServerPorts> WaitForPortFile(const std::string& path,
                                            Subprocess* child,
                                            absl::Time deadline,
                                            const std::atomic<bool>* cancel) {
  while (true) {
    auto ports = ReadPortFile(path);
    if (ports.ok() || ports.status().code() != absl::StatusCode::kNotFound) {
      return ports;
    }
    if (Cancelled(cancel)) {
      return absl::CancelledError(
          absl::StrCat("stopped waiting for port file ", path));
    }
    if (child != nullptr && !child->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the process exited before writing its port file ", path,
                       LogOf(child)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no port file ", path, " in time", LogOf(child)));
    }
    absl::SleepFor(kPoll);
  }
}

std::vector<std::string> ShardArgv(const ShardCommand& c) {
  std::vector<std::string> argv = c.wrapper;
  for (std::string flag :
       {c.binary, absl::StrCat("--shard_index=", c.shard_index),
        absl::StrCat("--num_shards=", c.num_shards),
        absl::StrCat("--listen_address=", c.host),
        absl::StrCat("--grpc_port=", c.grpc_port),
        absl::StrCat("--data_port=", c.data_port),
        absl::StrCat("--metrics_port=", c.metrics_port),
        absl::StrCat("--data_dir=", c.data_dir),
        absl::StrCat("--port_file=", c.port_file)}) {
    argv.push_back(std::move(flag));
  }
  if (!c.job_config.empty()) argv.push_back("--job_config=" + c.job_config);
  for (const auto& f : c.extra_flags) argv.push_back(f);
  return argv;
}

absl::StatusOr<StartedShard> StartShard(const ShardCommand& command,
                                        const std::string& log_path,
                                        absl::Duration timeout,
                                        const std::atomic<bool>* cancel) {
  if (command.port_file.empty()) {
    return absl::InvalidArgumentError("StartShard needs a port file");
  }
  std::remove(command.port_file.c_str());
  const absl::Time deadline = absl::Now() + timeout;
  auto child = Subprocess::Start(ShardArgv(command), log_path);
  if (!child.ok()) return child.status();
  StartedShard shard;
  shard.child = *std::move(child);
  const std::string name = absl::StrCat("shard ", command.shard_index);
  auto ports =
      WaitForPortFile(command.port_file, shard.child.get(), deadline, cancel);
  if (!ports.ok()) {
    return absl::Status(ports.status().code(),
                        absl::StrCat(name, ": ", ports.status().message()));
  }
  shard.ports = *ports;
  absl::Status serving =
      WaitForServing(absl::StrCat(command.host, ":", shard.ports.grpc),
                     shard.child.get(), deadline, cancel);
  if (!serving.ok()) {
    return absl::Status(serving.code(),
                        absl::StrCat(name, ": ", serving.message()));
  }
  return shard;
}

std::vector<std::string> WorkerArgv(const WorkerCommand& c) {
  std::vector<std::string> argv = {
      c.binary,
      "--coordinator=" + (c.shards.empty() ? std::string() : c.shards[0]),
      "--shards=" + absl::StrJoin(c.shards, ","),
      "--worker_id=" + c.worker_id,
      "--listen_address=" + c.host,
      absl::StrCat("--metrics_port=", c.metrics_port)};
  for (const auto& f : c.extra_flags) argv.push_back(f);
  return argv;
}

absl::StatusOr<std::unique_ptr<Subprocess>> StartWorker(
    const WorkerCommand& command, const std::string& log_path) {
  if (command.shards.empty()) {
    return absl::InvalidArgumentError("StartWorker needs the shards");
  }
  return Subprocess::Start(WorkerArgv(command), log_path);
}

}  // namespace tessera::launch

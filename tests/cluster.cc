#include "tests/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace tessera::testing {
namespace {

// Poll interval while waiting for a condition; never a readiness sleep.
constexpr absl::Duration kPoll = absl::Milliseconds(20);

std::string Tail(const std::string& text, size_t n = 3000) {
  return text.size() <= n ? text : text.substr(text.size() - n);
}

}  // namespace

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

absl::Status WaitForServing(const std::string& address,
                            absl::Duration timeout) {
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stub->Check(&context, request, &response);
    if (s.ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = s.ok() ? "NOT_SERVING" : s.error_message();
    absl::SleepFor(kPoll);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      address, " not SERVING after ", absl::FormatDuration(timeout), ": ",
      last));
}

absl::StatusOr<std::unique_ptr<ShardProcess>> ShardProcess::Start(
    int shard_index, int num_shards, const std::string& data_dir,
    std::vector<std::string> extra_flags, absl::Duration timeout) {
  const std::string port_file =
      TempPath(absl::StrCat("shard", shard_index, "-",
                            absl::ToUnixNanos(absl::Now()), ".ports"));
  std::vector<std::string> argv = {
      BinaryPath("ps/server/tessera-ps"),
      absl::StrCat("--shard_index=", shard_index),
      absl::StrCat("--num_shards=", num_shards),
      "--listen_address=127.0.0.1",
      "--grpc_port=0",
      "--data_port=0",
      "--metrics_port=0",
      absl::StrCat("--data_dir=", data_dir),
      absl::StrCat("--port_file=", port_file)};
  for (auto& f : extra_flags) argv.push_back(std::move(f));
  auto child = Child::Start(
      argv, TempPath(absl::StrCat("shard", shard_index, ".log")));
  if (!child.ok()) return child.status();
  auto shard = std::unique_ptr<ShardProcess>(new ShardProcess());
  shard->child_ = *std::move(child);

  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    std::ifstream in(port_file);
    if (in.good()) break;
    if (!shard->child_->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("tessera-ps exited before serving; log:\n",
                       Tail(shard->child_->Log())));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("tessera-ps wrote no port file in ",
                       absl::FormatDuration(timeout), "; log:\n",
                       Tail(shard->child_->Log())));
    }
    absl::SleepFor(kPoll);
  }
  std::ifstream in(port_file);
  std::string line;
  while (std::getline(in, line)) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, '=');
    int port = 0;
    if (!absl::SimpleAtoi(kv.second, &port)) continue;
    if (kv.first == "grpc") shard->ports_.grpc = port;
    if (kv.first == "data") shard->ports_.data = port;
    if (kv.first == "metrics") shard->ports_.metrics = port;
  }
  absl::Status serving = WaitForServing(shard->ports_.grpc_address(),
                                        deadline - absl::Now());
  if (!serving.ok()) {
    return absl::Status(serving.code(),
                        absl::StrCat(serving.message(), "; log:\n",
                                     Tail(shard->child_->Log())));
  }
  return shard;
}

std::shared_ptr<grpc::Channel> ShardProcess::channel() {
  if (channel_ == nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(ports_.grpc_address(),
                                         grpc::InsecureChannelCredentials(),
                                         args);
  }
  return channel_;
}

absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::UnavailableError("cannot bind a free port");
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
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
  const std::string request = absl::StrCat(
      "GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
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

}  // namespace tessera::testing

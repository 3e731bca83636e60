#include "ps/common/metrics/metrics_server.h"

#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "glog/logging.h"

namespace tessera {
namespace metrics {
namespace {

constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// Turns "host:port" into civetweb's listening_ports syntax.
absl::StatusOr<std::string> ToCivetwebPorts(const std::string& address) {
  absl::string_view host;
  absl::string_view port = address;
  const size_t colon = address.rfind(':');
  if (colon != std::string::npos) {
    host = absl::string_view(address).substr(0, colon);
    port = absl::string_view(address).substr(colon + 1);
  }
  int port_number = -1;
  if (port.empty() || !absl::c_all_of(port, absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address,
                     "\": expected host:port with a port in 0..65535"));
  }
  if (host.empty()) return std::string(port);
  if (host == "localhost") host = "127.0.0.1";
  const bool ipv6 =
      host.size() > 2 && host.front() == '[' && host.back() == ']';
  const bool ipv4 = absl::c_all_of(
      host, [](char c) { return absl::ascii_isdigit(c) || c == '.'; });
  if (!ipv6 && !ipv4) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address,
                     "\": the host must be an IPv4 address, [an IPv6 address], "
                     "localhost or empty"));
  }
  if (ipv6 && mg_check_feature(MG_FEATURES_IPV6) == 0) {
    return absl::UnimplementedError(absl::StrCat(
        "metrics listen address \"", address,
        "\": this civetweb is built without IPv6; use an IPv4 address"));
  }
  return absl::StrCat(host, ":", port);
}

// The descriptors of this process that listen on TCP `port`: civetweb's
// listening sockets, which its API does not expose.
std::vector<int> FindListeningSockets(int port) {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (const struct dirent* entry = readdir(dir)) {
    int fd;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == dirfd(dir)) continue;
    int listening = 0;
    socklen_t length = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 ||
        !listening) {
      continue;
    }
    struct sockaddr_storage address;
    length = sizeof(address);
    if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&address),
                    &length) != 0) {
      continue;
    }
    int bound_port = -1;
    if (address.ss_family == AF_INET) {
      bound_port =
          ntohs(reinterpret_cast<struct sockaddr_in*>(&address)->sin_port);
    } else if (address.ss_family == AF_INET6) {
      bound_port =
          ntohs(reinterpret_cast<struct sockaddr_in6*>(&address)->sin6_port);
    }
    if (bound_port == port) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

// While Start runs on this thread, civetweb's messages (why it could not
// listen) are collected here for the Status rather than logged.
thread_local std::string* start_messages = nullptr;

int LogCivetwebMessage(const struct mg_connection*, const char* message) {
  if (start_messages != nullptr) {
    if (!start_messages->empty()) start_messages->append("; ");
    start_messages->append(message);
    return 1;
  }
  LOG(WARNING) << "metrics server (civetweb): " << message;
  return 1;  // Handled; civetweb prints nothing itself.
}

// civetweb's request handler; `cbdata` is the Registry.
int HandleRequest(struct mg_connection* connection, void* cbdata) {
  const Registry* registry = static_cast<const Registry*>(cbdata);
  const struct mg_request_info* request = mg_get_request_info(connection);
  const absl::string_view method = request->request_method;
  const absl::string_view path =
      request->local_uri != nullptr ? request->local_uri : "";
  const bool is_metrics = path == "/metrics";
  if (!is_metrics && path != "/healthz") {
    mg_send_http_error(connection, 404, "%s", "not found: try /metrics\n");
    return 404;
  }
  if (method != "GET" && method != "HEAD") {
    mg_send_http_error(connection, 405, "%s", "only GET and HEAD\n");
    return 405;
  }
  const std::string body =
      is_metrics ? registry->Serialize() : std::string("ok");
  mg_send_http_ok(
      connection,
      is_metrics ? kMetricsContentType : "text/plain; charset=utf-8",
      static_cast<long long>(body.size()));
  if (method == "GET") mg_write(connection, body.data(), body.size());
  return 200;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen_address, const Registry* registry) {
  CHECK(registry != nullptr);
  absl::StatusOr<std::string> ports = ToCivetwebPorts(listen_address);
  if (!ports.ok()) return ports.status();

  static absl::once_flag init_once;
  absl::call_once(init_once, [] { mg_init_library(0); });

  std::unique_ptr<MetricsServer> server(new MetricsServer());
  const char* options[] = {
      "listening_ports", ports->c_str(),
      // Prometheus scrapes every few seconds: two threads are plenty.
      "num_threads", "2",
      // Bounds how long a stalled client can hold a thread, and the
      // destructor.
      "request_timeout_ms", "10000", nullptr};
  struct mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &LogCivetwebMessage;
  struct mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = nullptr;
  init.configuration_options = options;
  unsigned error_code = 0;
  char error_text[256] = "";
  struct mg_error_data error;
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  std::string messages;
  start_messages = &messages;
  server->context_ = mg_start2(&init, &error);
  start_messages = nullptr;
  if (server->context_ == nullptr) {
    if (messages.empty()) messages = error_text;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot serve metrics on ", listen_address, ": ",
                     messages.empty() ? "civetweb failed" : messages));
  }
  if (!messages.empty()) LOG(WARNING) << "metrics server: " << messages;
  struct mg_server_port bound[4];
  const int num_bound = mg_get_server_ports(server->context_, 4, bound);
  if (num_bound < 1) {
    return absl::InternalError(absl::StrCat(
        "metrics server on ", listen_address, ": no listening port"));
  }
  server->port_ = bound[0].port;
  server->listening_fds_ = FindListeningSockets(server->port_);
  // The handler for "/" receives every request (a prefix match); it
  // dispatches on the path itself.
  mg_set_request_handler(server->context_, "/", &HandleRequest,
                         const_cast<Registry*>(registry));
  LOG(INFO) << "serving metrics on " << listen_address << " (port "
            << server->port_ << ")";
  return server;
}

MetricsServer::~MetricsServer() {
  if (context_ == nullptr) return;
  // civetweb's master thread notices mg_stop only when its poll of the
  // listening socket returns, after up to 2 s without traffic. Shutting the
  // listening socket down makes the poll return at once (and refuses new
  // connections), so the server stops within milliseconds. civetweb still
  // owns and closes the descriptor.
  for (const int fd : listening_fds_) shutdown(fd, SHUT_RDWR);
  mg_stop(context_);
}

}  // namespace metrics
}  // namespace tessera

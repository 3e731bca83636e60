#ifndef TESSERA_PS_COMMON_METRICS_METRICS_SERVER_H_
#define TESSERA_PS_COMMON_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ps/common/metrics/registry.h"

struct mg_context;  // civetweb.h

namespace tessera {
namespace metrics {

// Serves a Registry over HTTP for Prometheus, on civetweb:
//   GET /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8",
//                 body Registry::Serialize() (collect hooks run per scrape)
//   GET /healthz  200, body "ok"
// HEAD is answered like GET; other methods get 405, other paths 404.
// Serving runs on civetweb's own threads (two), from Start until the
// destructor.
//
// Thread-safe: port() may be called from any thread.
class MetricsServer {
 public:
  // Starts serving `registry` on `listen_address`, "host:port":
  // "0.0.0.0:9100" (every IPv4 interface), "127.0.0.1:0" (loopback, port 0
  // picks a free one: see port()), ":9100" or "9100" (every IPv4
  // interface), "localhost:9100" (= 127.0.0.1), "[::1]:9100" (IPv6, if
  // civetweb was built with it; Debian 12's is not).
  // `registry` is not owned and must outlive the server.
  // Errors: InvalidArgument for a malformed address; Unimplemented for IPv6
  // without civetweb support; FailedPrecondition if the server cannot
  // listen there (port in use, address not on this host), with civetweb's
  // reason. Never crashes on any of them.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen_address, const Registry* registry);

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Stops serving: returns once civetweb's threads have finished the
  // requests in flight (each bounded by a 10 s request timeout); with none
  // in flight, within milliseconds.
  ~MetricsServer();

  // The port bound, e.g. the one chosen for a port-0 address.
  int port() const { return port_; }

 private:
  MetricsServer() = default;

  // Set once in Start, before the server is shared.
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::vector<int> listening_fds_;  // civetweb's; closed by mg_stop.
};

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_METRICS_SERVER_H_

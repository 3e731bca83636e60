#include "ps/common/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace metrics {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Connects to 127.0.0.1:port; -1 on failure (errno set).
int ConnectToLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  // A guard against hanging forever on a broken server, not a timing check.
  struct timeval timeout = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&address),
              sizeof(address)) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// Sends one HTTP/1.0 request and returns the whole response (headers and
// body): the server closes the connection after answering.
absl::StatusOr<std::string> HttpRequest(int port, const std::string& method,
                                        const std::string& path) {
  const int fd = ConnectToLoopback(port);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to port ", port, ": ", strerror(errno)));
  }
  const std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) {
    response.append(buffer, n);
  }
  close(fd);
  if (n < 0) return absl::UnavailableError("recv failed");
  return response;
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class MetricsServerTest : public ::testing::Test {
 protected:
  MetricsServerTest() {
    BuildCounter()
        .Name("tessera_test_requests_total")
        .Help("Requests.")
        .Register(registry_)
        .Add({{"code", "OK"}})
        .Increment(5);
  }

  Registry registry_;
};

TEST_F(MetricsServerTest, ServesMetricsOnAFreePort) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(server, IsOk());
  ASSERT_GT((*server)->port(), 0);

  absl::StatusOr<std::string> response =
      HttpRequest((*server)->port(), "GET", "/metrics");
  ASSERT_THAT(response, IsOk());
  EXPECT_THAT(*response,
              AllOf(StartsWith("HTTP/1.0 200 OK\r\n"),
                    HasSubstr("Content-Type: text/plain; version=0.0.4; "
                              "charset=utf-8\r\n")));
  EXPECT_EQ(Body(*response), registry_.Serialize());
  EXPECT_THAT(Body(*response),
              HasSubstr("tessera_test_requests_total{code=\"OK\"} 5\n"));
}

TEST_F(MetricsServerTest, EachScrapeRunsTheCollectHooks) {
  Gauge& scrapes =
      BuildGauge().Name("scrapes").Help("S.").Register(registry_).Add({});
  registry_.AddCollectHook([&scrapes] { scrapes.Increment(); });
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(server, IsOk());
  ASSERT_THAT(HttpRequest((*server)->port(), "GET", "/metrics"), IsOk());
  absl::StatusOr<std::string> second =
      HttpRequest((*server)->port(), "GET", "/metrics");
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(Body(*second), HasSubstr("\nscrapes 2\n"));
}

TEST_F(MetricsServerTest, HealthzAnswersOk) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(server, IsOk());
  absl::StatusOr<std::string> response =
      HttpRequest((*server)->port(), "GET", "/healthz");
  ASSERT_THAT(response, IsOk());
  EXPECT_THAT(*response, StartsWith("HTTP/1.0 200 OK\r\n"));
  EXPECT_EQ(Body(*response), "ok");
}

TEST_F(MetricsServerTest, HeadHasNoBodyAndOtherPathsAndMethodsAreRefused) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(server, IsOk());
  const int port = (*server)->port();

  absl::StatusOr<std::string> head = HttpRequest(port, "HEAD", "/metrics");
  ASSERT_THAT(head, IsOk());
  EXPECT_THAT(*head, StartsWith("HTTP/1.0 200 OK\r\n"));
  EXPECT_EQ(Body(*head), "");

  absl::StatusOr<std::string> unknown = HttpRequest(port, "GET", "/nope");
  ASSERT_THAT(unknown, IsOk());
  EXPECT_THAT(*unknown, StartsWith("HTTP/1.0 404"));

  absl::StatusOr<std::string> metrics_prefix =
      HttpRequest(port, "GET", "/metrics/x");
  ASSERT_THAT(metrics_prefix, IsOk());
  EXPECT_THAT(*metrics_prefix, StartsWith("HTTP/1.0 404"));

  absl::StatusOr<std::string> post = HttpRequest(port, "POST", "/metrics");
  ASSERT_THAT(post, IsOk());
  EXPECT_THAT(*post, StartsWith("HTTP/1.0 405"));
}

TEST_F(MetricsServerTest, ASecondServerOnTheSamePortFailsWithAClearStatus) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> first =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(first, IsOk());
  const std::string address = absl::StrCat("127.0.0.1:", (*first)->port());

  absl::StatusOr<std::unique_ptr<MetricsServer>> second =
      MetricsServer::Start(address, &registry_);
  EXPECT_THAT(second,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cannot serve metrics on " + address),
                             HasSubstr("in use"))));
  // The first one is unharmed.
  EXPECT_THAT(HttpRequest((*first)->port(), "GET", "/healthz"), IsOk());
}

TEST_F(MetricsServerTest, MalformedAddressesAreInvalidArguments) {
  for (const char* address :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536",
        "127.0.0.1:-1", "metrics.example.com:9100"}) {
    EXPECT_THAT(MetricsServer::Start(address, &registry_),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("metrics listen address")))
        << address;
  }
}

TEST_F(MetricsServerTest, WildcardAndPortOnlyAddressesServeLoopbackToo) {
  for (const char* address : {"0.0.0.0:0", ":0", "0"}) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start(address, &registry_);
    ASSERT_THAT(server, IsOk()) << address;
    EXPECT_THAT(HttpRequest((*server)->port(), "GET", "/healthz"), IsOk())
        << address;
  }
}

TEST_F(MetricsServerTest, LocalhostMeansLoopback) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("localhost:0", &registry_);
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT(HttpRequest((*server)->port(), "GET", "/healthz"), IsOk());
}

bool HasIpv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  struct sockaddr_in6 address = {};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<struct sockaddr*>(&address),
                       sizeof(address)) == 0;
  close(fd);
  return ok;
}

TEST_F(MetricsServerTest, Ipv6AddressesListenOrAreUnimplemented) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("[::1]:0", &registry_);
  if (!server.ok()) {
    // Debian 12's civetweb is built without IPv6.
    EXPECT_THAT(server, StatusIs(absl::StatusCode::kUnimplemented,
                                 HasSubstr("without IPv6")));
    return;
  }
  if (!HasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here";
  EXPECT_GT((*server)->port(), 0);
}

TEST_F(MetricsServerTest, DestroyingTheServerStopsServing) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", &registry_);
  ASSERT_THAT(server, IsOk());
  const int port = (*server)->port();
  ASSERT_THAT(HttpRequest(port, "GET", "/healthz"), IsOk());
  server->reset();
  EXPECT_EQ(ConnectToLoopback(port), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
}

int CountOpenFds() {
  int count = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (fcntl(fd, F_GETFD) != -1) ++count;
  }
  return count;
}

TEST_F(MetricsServerTest, StartingAndStoppingLeaksNoDescriptors) {
  // Warm up: civetweb's one-time initialization may keep descriptors.
  ASSERT_THAT(MetricsServer::Start("127.0.0.1:0", &registry_), IsOk());
  const int before = CountOpenFds();
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start("127.0.0.1:0", &registry_);
    ASSERT_THAT(server, IsOk());
    ASSERT_THAT(HttpRequest((*server)->port(), "GET", "/metrics"), IsOk());
  }
  EXPECT_EQ(CountOpenFds(), before);
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

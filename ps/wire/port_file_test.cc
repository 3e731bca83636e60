#include "ps/wire/port_file.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

TEST(PortFileTest, RoundTrips) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/ports";
  EXPECT_THAT(ReadPortFile(path), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(WritePortFile(path, ServerPorts{7000, 7001, 9100}), IsOk());
  auto ports = ReadPortFile(path);
  ASSERT_THAT(ports, IsOk());
  EXPECT_EQ(ports->grpc, 7000);
  EXPECT_EQ(ports->data, 7001);
  EXPECT_EQ(ports->metrics, 9100);
}

TEST(PortFileTest, RefusesGarbage) {
  for (const char* bad :
       {"", "grpc=", "grpc=x", "grpc=70000", "data=5\n", "grpc=-1"}) {
    EXPECT_THAT(ParsePortFile(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(ParsePortFile("grpc=5\n"), IsOk());
}

}  // namespace
}  // namespace tessera

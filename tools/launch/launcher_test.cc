#include "tools/launch/launcher.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera::launch {
namespace {

using ::testing::HasSubstr;

std::string Tmp(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir ? dir : "/tmp", "/", name);
}

std::string Runfile(const std::string& path) {
  const char* dir = std::getenv("TEST_SRCDIR");
  return dir ? absl::StrCat(dir, "/tessera/", path) : path;
}

TEST(LauncherTest, PicksDistinctFreePortsOutsideTheEphemeralRange) {
  int low = 0, high = 0;
  FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fscanf(f, "%d %d", &low, &high), 2);
  fclose(f);
  absl::flat_hash_set<int> seen;
  for (int i = 0; i < 200; ++i) {
    TESSERA_ASSERT_OK_AND_ASSIGN(int port, PickFreePort());
    EXPECT_TRUE(port < low || port > high) << port;
    EXPECT_TRUE(seen.insert(port).second) << "port " << port << " twice";
  }
  EXPECT_THAT(PickFreePort("localhost").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LauncherTest, ShardCommandLineLetsExtraFlagsWin) {
  ShardCommand c;
  c.binary = "ps";
  c.shard_index = 1;
  c.num_shards = 3;
  c.data_dir = "/d";
  c.port_file = "/p";
  c.job_config = "/job";
  c.wrapper = {"ip", "netns", "exec", "ns1"};
  c.extra_flags = {"--grpc_port=7"};
  EXPECT_THAT(
      ShardArgv(c),
      ::testing::ElementsAre(
          "ip", "netns", "exec", "ns1", "ps", "--shard_index=1",
          "--num_shards=3", "--listen_address=127.0.0.1", "--grpc_port=0",
          "--data_port=0", "--metrics_port=0", "--data_dir=/d",
          "--port_file=/p", "--job_config=/job", "--grpc_port=7"));
}

TEST(LauncherTest, StartsAShardAndWaitsUntilItServes) {
  ShardCommand c;
  c.binary = Runfile("ps/server/tessera-ps");
  c.data_dir = Tmp("shard-data");
  c.port_file = Tmp("shard.ports");
  auto shard = StartShard(c, Tmp("shard.log"), absl::Seconds(60));
  ASSERT_THAT(shard, IsOk());
  EXPECT_GT(shard->ports.grpc, 0);
  EXPECT_GT(shard->ports.data, 0);
  EXPECT_GT(shard->ports.metrics, 0);
  EXPECT_THAT(
      WaitForServing(absl::StrCat("127.0.0.1:", shard->ports.grpc),
                     shard->child.get(), absl::Now() + absl::Seconds(10)),
      IsOk());
  shard->child->Signal(SIGTERM);
  EXPECT_THAT(shard->child->Wait(absl::Seconds(30)), IsOkAndHolds(0));
}

TEST(LauncherTest, AShardThatExitsFailsTheWaitWithItsLog) {
  ShardCommand c;
  c.binary = Runfile("ps/server/tessera-ps");
  c.data_dir = Tmp("bad-shard-data");
  c.port_file = Tmp("bad-shard.ports");
  c.extra_flags = {"--nan_policy=maybe"};  // refused at start-up
  auto shard = StartShard(c, Tmp("bad-shard.log"), absl::Seconds(60));
  EXPECT_THAT(shard, StatusIs(absl::StatusCode::kFailedPrecondition,
                              HasSubstr("--nan_policy=maybe")));
}

TEST(LauncherTest, WaitsAreBoundedAndCancellable) {
  EXPECT_THAT(WaitForPortFile(Tmp("never.ports"), nullptr,
                              absl::Now() + absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  std::atomic<bool> cancel{true};
  EXPECT_THAT(WaitForPortFile(Tmp("never.ports"), nullptr,
                              absl::InfiniteFuture(), &cancel),
              StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace tessera::launch

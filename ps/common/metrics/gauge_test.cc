#include "ps/common/metrics/gauge.h"

#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace metrics {
namespace {

TEST(GaugeTest, StartsAtZero) {
  Gauge gauge;
  EXPECT_EQ(gauge.Value(), 0);
}

TEST(GaugeTest, SetReplacesAndIncrementDecrementAdjust) {
  Gauge gauge;
  gauge.Set(10);
  gauge.Increment();
  gauge.Increment(2.5);
  gauge.Decrement();
  gauge.Decrement(20);
  EXPECT_EQ(gauge.Value(), -7.5);
  gauge.Set(3);
  EXPECT_EQ(gauge.Value(), 3);
}

TEST(GaugeTest, SetToCurrentTimeSetsSecondsSinceTheEpoch) {
  Gauge gauge;
  const double before = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  gauge.SetToCurrentTime();
  const double after = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_GE(gauge.Value(), before);
  EXPECT_LE(gauge.Value(), after);
}

TEST(GaugeTest, ConcurrentIncrementsAndDecrementsAreAllApplied) {
  constexpr int kThreads = 8;
  constexpr int kSteps = 50000;
  Gauge gauge;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&gauge, t] {
      for (int i = 0; i < kSteps; ++i) {
        if (t % 2 == 0) {
          gauge.Increment(3);
        } else {
          gauge.Decrement();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(gauge.Value(), (kThreads / 2) * kSteps * 2.0);
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

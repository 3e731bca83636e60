#include "ps/common/metrics/counter.h"

#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace metrics {
namespace {

TEST(CounterTest, StartsAtZero) {
  Counter counter;
  EXPECT_EQ(counter.Value(), 0);
}

TEST(CounterTest, IncrementAddsOneOrTheGivenAmount) {
  Counter counter;
  counter.Increment();
  counter.Increment(2);
  counter.Increment(0.5);
  counter.Increment(0);
  EXPECT_EQ(counter.Value(), 3.5);
}

TEST(CounterTest, LargeAndInfiniteIncrementsAreKept) {
  Counter counter;
  counter.Increment(1e20);
  EXPECT_EQ(counter.Value(), 1e20);
  counter.Increment(HUGE_VAL);
  EXPECT_EQ(counter.Value(), HUGE_VAL);
}

TEST(CounterTest, NegativeIncrementIsAProgrammingErrorAndIgnoredInOptBuilds) {
  Counter counter;
  counter.Increment(1);
  EXPECT_DEBUG_DEATH(counter.Increment(-1), "counters only go up");
  EXPECT_EQ(counter.Value(), 1);
}

TEST(CounterTest, IncrementsFromManyThreadsAreAllCounted) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 100000;
  Counter counter;
  absl::Barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&counter, &start] {
      start.Block();
      for (int i = 0; i < kIncrements; ++i) {
        counter.Increment();
        counter.Increment(0.5);  // Exact in binary: the sum stays exact.
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), kThreads * kIncrements * 1.5);
}

TEST(CounterTest, MoreThreadsThanSlotsStillCountExactly) {
  constexpr int kThreads = 3 * internal::kNumThreadSlots;
  constexpr int kIncrements = 10000;
  Counter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&counter] {
      for (int i = 0; i < kIncrements; ++i) counter.Increment();
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), kThreads * kIncrements);
}

}  // namespace
}  // namespace metrics
}  // namespace tessera

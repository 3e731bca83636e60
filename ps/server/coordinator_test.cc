#include "ps/server/coordinator.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/job_config.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using Result = v1::AcquirePartitionResponse;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/coord-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    placement_.set_num_shards(1);
    auto storage = ShardStorage::Open(dir_, 0, placement_);
    ASSERT_THAT(storage, IsOk());
    storage_ = *std::move(storage);
    job_ = *ParseJobConfig(R"pb(
      name: "test-job"
      model { name: "mlp" }
      epochs: 2
      partitions_per_epoch: 6
      lease_timeout_s: 10
      consistency { mode: SSP staleness: 2 }
    )pb");
  }

  std::unique_ptr<Coordinator> Make() {
    auto c = std::make_unique<Coordinator>(job_, storage_.get(), &registry_,
                                           [this] { return now_; });
    EXPECT_THAT(c->Load(), IsOk());
    return c;
  }

  Result Acquire(Coordinator* c, const std::string& worker) {
    v1::AcquirePartitionRequest r;
    r.set_worker_id(worker);
    return *c->AcquirePartition(r);
  }

  Result AcquireFinishing(Coordinator* c, const std::string& worker,
                          int finishing) {
    v1::AcquirePartitionRequest r;
    r.set_worker_id(worker);
    r.set_finishing_partition(finishing);
    return *c->AcquirePartition(r);
  }

  v1::CompletePartitionResponse Complete(Coordinator* c,
                                         const std::string& worker,
                                         const Result& lease) {
    v1::CompletePartitionRequest r;
    r.set_worker_id(worker);
    r.set_epoch(lease.epoch());
    r.set_partition(lease.partition());
    r.set_samples(10);
    return *c->CompletePartition(r);
  }

  std::string dir_;
  v1::PlacementConfig placement_;
  std::unique_ptr<ShardStorage> storage_;
  v1::JobConfig job_;
  metrics::Registry registry_;
  absl::Time now_ = absl::FromUnixSeconds(1000000);
};

TEST_F(CoordinatorTest, EveryPartitionIsCompletedOncePerEpochUntilFinished) {
  auto c = Make();
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int> seen;
    for (int i = 0; i < 6; ++i) {
      Result lease = Acquire(c.get(), i % 2 ? "a" : "b");
      ASSERT_EQ(lease.result(), Result::LEASED);
      EXPECT_EQ(lease.epoch(), epoch);
      EXPECT_TRUE(seen.insert(lease.partition()).second);
      auto done = Complete(c.get(), i % 2 ? "a" : "b", lease);
      EXPECT_TRUE(done.accepted());
      // A second completion of the same partition is not counted.
      EXPECT_FALSE(Complete(c.get(), "a", lease).accepted());
    }
  }
  EXPECT_EQ(Acquire(c.get(), "a").result(), Result::FINISHED);
  v1::JobStatus status = c->Status();
  EXPECT_TRUE(status.finished());
  ASSERT_EQ(status.epoch_stats_size(), 2);
  EXPECT_EQ(status.epoch_stats(0).samples(), 60);
}

TEST_F(CoordinatorTest, SilentWorkersLeaseReturnsToTheQueue) {
  auto c = Make();
  Result dead = Acquire(c.get(), "dead");
  ASSERT_EQ(dead.result(), Result::LEASED);
  now_ += absl::Seconds(5);
  // Everything else is leased by a live worker, which stays in touch.
  std::vector<Result> others;
  for (int i = 0; i < 5; ++i) {
    others.push_back(Acquire(c.get(), "live"));
    Complete(c.get(), "live", others.back());
  }
  EXPECT_EQ(Acquire(c.get(), "live").result(), Result::WAIT);
  now_ += absl::Seconds(6);  // "dead" silent for 11 s > 10 s.
  Result again = Acquire(c.get(), "live");
  ASSERT_EQ(again.result(), Result::LEASED);
  EXPECT_EQ(again.partition(), dead.partition());
  EXPECT_EQ(c->Status().workers_size(), 1);
  // The dead worker's late completion is refused: the partition is leased to
  // "live" now.
  EXPECT_FALSE(Complete(c.get(), "dead", dead).accepted());
  EXPECT_TRUE(Complete(c.get(), "live", again).accepted());
  EXPECT_EQ(c->Status().epoch(), 1);
}

TEST_F(CoordinatorTest, FinishingPartitionStaysLeasedWhileTheNextOneTrains) {
  auto c = Make();
  Result first = Acquire(c.get(), "w");
  ASSERT_EQ(first.result(), Result::LEASED);
  // "w" leases its next partition before completing the first.
  Result second = AcquireFinishing(c.get(), "w", first.partition());
  ASSERT_EQ(second.result(), Result::LEASED);
  EXPECT_NE(second.partition(), first.partition());
  EXPECT_EQ(c->Status().partitions_leased(), 2);
  // Nobody else gets either of them.
  std::set<int> others;
  for (int i = 0; i < 4; ++i) {
    Result lease = Acquire(c.get(), "v");
    ASSERT_EQ(lease.result(), Result::LEASED);
    others.insert(lease.partition());
    Complete(c.get(), "v", lease);
  }
  EXPECT_EQ(others.count(first.partition()), 0u);
  EXPECT_EQ(others.count(second.partition()), 0u);
  EXPECT_EQ(Acquire(c.get(), "v").result(), Result::WAIT);
  EXPECT_TRUE(Complete(c.get(), "w", first).accepted());
  auto last = Complete(c.get(), "w", second);
  EXPECT_TRUE(last.accepted());
  EXPECT_TRUE(last.epoch_finished());
  EXPECT_EQ(c->Status().epoch(), 1);
}

TEST_F(CoordinatorTest, CompletionBeforeTheNextLeaseAndStaleFinishingNames) {
  auto c = Make();
  Result first = Acquire(c.get(), "w");
  // The completion overtook the lease request that names it.
  EXPECT_TRUE(Complete(c.get(), "w", first).accepted());
  Result second = AcquireFinishing(c.get(), "w", first.partition());
  ASSERT_EQ(second.result(), Result::LEASED);
  EXPECT_EQ(c->Status().partitions_leased(), 1);
  // Naming a partition the worker does not hold hands back the one it does,
  // as a plain lease request would.
  Result third = AcquireFinishing(c.get(), "w", first.partition());
  ASSERT_EQ(third.result(), Result::LEASED);
  EXPECT_EQ(c->Status().partitions_leased(), 1);
  EXPECT_EQ(c->Status().partitions_queued(), 4);
  // A second finishing partition hands back the first, whose completion
  // never came: one at most.
  Result fourth = AcquireFinishing(c.get(), "w", third.partition());
  Result fifth = AcquireFinishing(c.get(), "w", fourth.partition());
  ASSERT_EQ(fifth.result(), Result::LEASED);
  EXPECT_EQ(c->Status().partitions_leased(), 2);
  EXPECT_EQ(c->Status().partitions_queued(), 3);
  // Hostile names are partitions nobody holds: a plain lease request.
  for (int hostile : {-1, std::numeric_limits<int32_t>::min(),
                      std::numeric_limits<int32_t>::max()}) {
    ASSERT_EQ(AcquireFinishing(c.get(), "w", hostile).result(), Result::LEASED);
    EXPECT_EQ(c->Status().partitions_leased(), 2);
  }
}

TEST_F(CoordinatorTest, LeaveAndExpiryHandBackTheFinishingPartitionToo) {
  auto c = Make();
  Result first = Acquire(c.get(), "w");
  AcquireFinishing(c.get(), "w", first.partition());
  v1::LeaveRequest leave;
  leave.set_worker_id("w");
  ASSERT_THAT(c->Leave(leave), IsOk());
  EXPECT_EQ(c->Status().partitions_leased(), 0);
  EXPECT_EQ(c->Status().partitions_queued(), 6);

  first = Acquire(c.get(), "x");
  AcquireFinishing(c.get(), "x", first.partition());
  now_ += absl::Seconds(11);  // "x" silent for longer than the lease timeout.
  c->ExpireStale();
  EXPECT_EQ(c->Status().partitions_leased(), 0);
  EXPECT_EQ(c->Status().partitions_queued(), 6);
}

TEST_F(CoordinatorTest, RestartKeepsFinishedPartitionsAndReadoptsLeases) {
  std::set<int> finished;
  Result in_flight;
  {
    auto c = Make();
    for (int i = 0; i < 3; ++i) {
      Result lease = Acquire(c.get(), "w");
      finished.insert(lease.partition());
      Complete(c.get(), "w", lease);
    }
    in_flight = Acquire(c.get(), "w");
  }
  auto c = Make();
  v1::JobStatus status = c->Status();
  EXPECT_EQ(status.partitions_done(), 3);
  EXPECT_EQ(status.partitions_queued(), 3);
  // The worker's heartbeat re-adopts its lease.
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w");
  hb.set_partition(in_flight.partition());
  hb.set_epoch(0);
  auto beat = c->Heartbeat(hb);
  ASSERT_THAT(beat, IsOk());
  EXPECT_FALSE(beat->lease_lost());
  EXPECT_EQ(c->Status().partitions_queued(), 2);
  for (int i = 0; i < 2; ++i) {
    Result lease = Acquire(c.get(), "v");
    EXPECT_EQ(finished.count(lease.partition()), 0u);
    EXPECT_NE(lease.partition(), in_flight.partition());
  }
}

TEST_F(CoordinatorTest, ModelIsRegisteredOnceAndConflictsAreRefused) {
  auto c = Make();
  v1::RegisterModelRequest r;
  r.set_worker_id("a");
  r.add_specs()->set_name("fc1.weight");
  r.mutable_specs(0)->add_shape(4);
  EXPECT_THAT(c->RegisterModel(r), IsOk());
  auto again = c->RegisterModel(r);
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->created());
  r.mutable_specs(0)->set_shape(0, 5);
  EXPECT_THAT(c->RegisterModel(r), StatusIs(absl::StatusCode::kAlreadyExists,
                                            HasSubstr("different")));
  v1::JoinRequest join;
  join.set_worker_id("b");
  EXPECT_EQ(c->Join(join)->specs_size(), 1);
}

TEST_F(CoordinatorTest, InvalidModelsAreRefusedBeforeTheyAreKept) {
  auto c = Make();
  v1::RegisterModelRequest r;
  r.set_worker_id("a");
  r.add_specs()->set_name("w");
  r.mutable_specs(0)->add_shape(-4);
  EXPECT_THAT(c->RegisterModel(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape")));
  r.mutable_specs(0)->set_shape(0, 4);
  r.mutable_specs(0)->mutable_initializer()->set_kind(
      v1::Initializer::CONSTANT);
  r.mutable_specs(0)->mutable_initializer()->set_value(
      std::numeric_limits<float>::infinity());
  EXPECT_THAT(c->RegisterModel(r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::JoinRequest join;
  join.set_worker_id("b");
  EXPECT_EQ(c->Join(join)->specs_size(), 0);  // nothing was kept
}

TEST_F(CoordinatorTest, StalenessBoundHoldsTheFastWorkerOnly) {
  auto c = Make();
  Acquire(c.get(), "fast");
  Acquire(c.get(), "slow");
  auto wait = [&](const std::string& w, int64_t clock) {
    v1::WaitForClockRequest r;
    r.set_worker_id(w);
    r.set_clock(clock);
    return *c->WaitForClock(r, absl::ZeroDuration());
  };
  EXPECT_TRUE(wait("slow", 1).may_proceed());
  EXPECT_TRUE(wait("fast", 3).may_proceed());  // 3 - 1 <= 2
  auto held = wait("fast", 4);
  EXPECT_FALSE(held.may_proceed());
  EXPECT_EQ(held.slowest_worker(), "slow");
  EXPECT_TRUE(wait("slow", 2).may_proceed());
  EXPECT_TRUE(wait("fast", 4).may_proceed());
  // A worker without a lease does not hold anyone back.
  v1::LeaveRequest leave;
  leave.set_worker_id("slow");
  ASSERT_THAT(c->Leave(leave), IsOk());
  EXPECT_TRUE(wait("fast", 100).may_proceed());
}

TEST_F(CoordinatorTest, NewcomerStartsAtTheSlowestActiveClock) {
  auto c = Make();
  Acquire(c.get(), "a");
  v1::WaitForClockRequest r;
  r.set_worker_id("a");
  r.set_clock(40);
  ASSERT_THAT(c->WaitForClock(r, absl::ZeroDuration()), IsOk());
  v1::JoinRequest join;
  join.set_worker_id("late");
  EXPECT_EQ(c->Join(join)->initial_clock(), 40);
}

TEST_F(CoordinatorTest, MaxClockSpreadIsTheWidestGapAmongLeaseHolders) {
  auto c = Make();  // SSP, staleness 2.
  Acquire(c.get(), "fast");
  Acquire(c.get(), "slow");
  auto wait = [&](const std::string& w, int64_t clock) {
    v1::WaitForClockRequest r;
    r.set_worker_id(w);
    r.set_clock(clock);
    return *c->WaitForClock(r, absl::ZeroDuration());
  };
  EXPECT_TRUE(wait("slow", 1).may_proceed());
  EXPECT_TRUE(wait("fast", 3).may_proceed());
  EXPECT_EQ(c->Status().max_clock_spread(), 2);
  // Held at 4 while the slowest is at 1: the clock is recorded, so the
  // spread reaches the bound plus one, never more.
  EXPECT_FALSE(wait("fast", 4).may_proceed());
  EXPECT_EQ(c->Status().max_clock_spread(), 3);
  EXPECT_TRUE(wait("slow", 4).may_proceed());
  EXPECT_EQ(c->Status().max_clock_spread(), 3);  // The maximum stays.
  // An idle worker (no lease) does not count.
  v1::HeartbeatRequest hb;
  hb.set_worker_id("idle");
  hb.set_partition(-1);
  hb.set_clock(100);
  ASSERT_THAT(c->Heartbeat(hb), IsOk());
  EXPECT_EQ(c->Status().max_clock_spread(), 3);
}

TEST_F(CoordinatorTest, BspWorkerThatIdledIsMovedUpWhenItLeasesFirst) {
  job_.set_partitions_per_epoch(2);
  job_.mutable_consistency()->set_mode(v1::ConsistencyConfig::BSP);
  job_.mutable_consistency()->set_staleness(0);
  auto c = Make();
  auto wait = [&](const std::string& w, int64_t clock) {
    v1::WaitForClockRequest r;
    r.set_worker_id(w);
    r.set_clock(clock);
    return *c->WaitForClock(r, absl::ZeroDuration());
  };
  Result a = Acquire(c.get(), "a");
  Result b = Acquire(c.get(), "b");
  EXPECT_TRUE(wait("a", 0).may_proceed());
  EXPECT_TRUE(wait("b", 0).may_proceed());
  EXPECT_FALSE(wait("a", 1).may_proceed());  // Held: b is at 0.
  // b finishes its partition and idles; a trains the rest alone.
  ASSERT_TRUE(Complete(c.get(), "b", b).accepted());
  for (int64_t clock = 1; clock <= 10; ++clock) {
    EXPECT_TRUE(wait("a", clock).may_proceed());
  }
  ASSERT_TRUE(Complete(c.get(), "a", a).accepted());
  ASSERT_EQ(c->Status().epoch(), 1);
  // b leases first in the new epoch: it starts at the highest clock, not at
  // its own stale 0 (which would hold a back for 10 steps).
  Result b2 = Acquire(c.get(), "b");
  ASSERT_EQ(b2.result(), Result::LEASED);
  EXPECT_EQ(b2.clock(), 10);
  Result a2 = Acquire(c.get(), "a");
  EXPECT_EQ(a2.clock(), 10);
  EXPECT_TRUE(wait("a", 10).may_proceed());
  EXPECT_FALSE(wait("a", 11).may_proceed());
  EXPECT_TRUE(wait("b", 11).may_proceed());
  EXPECT_TRUE(wait("a", 11).may_proceed());
  EXPECT_EQ(c->Status().max_clock_spread(), 1);
}

TEST_F(CoordinatorTest, EpochStatsCountEachPartitionOnce) {
  auto c = Make();
  Result dead = Acquire(c.get(), "dead");
  now_ += absl::Seconds(11);  // "dead" expires; its partition is redone.
  for (int i = 0; i < 6; ++i) {
    Result lease = Acquire(c.get(), "live");
    ASSERT_EQ(lease.result(), Result::LEASED);
    ASSERT_TRUE(Complete(c.get(), "live", lease).accepted());
  }
  EXPECT_FALSE(Complete(c.get(), "dead", dead).accepted());
  v1::JobStatus status = c->Status();
  ASSERT_GE(status.epoch_stats_size(), 1);
  EXPECT_EQ(status.epoch_stats(0).partitions_done(), 6);
  EXPECT_EQ(status.epoch_stats(0).samples(), 60);
}

TEST_F(CoordinatorTest, StateOfAnotherJobIsRefused) {
  { Make(); }
  job_.set_name("other-job");
  Coordinator c(job_, storage_.get(), &registry_, [this] { return now_; });
  EXPECT_THAT(c.Load(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("test-job")));
}

TEST_F(CoordinatorTest, HostileCountsAndClocksAreRefusedAndChangeNothing) {
  auto c = Make();
  const Result lease = Acquire(c.get(), "w0");
  ASSERT_EQ(lease.result(), Result::LEASED);
  v1::CompletePartitionRequest complete;
  complete.set_worker_id("w0");
  complete.set_epoch(lease.epoch());
  complete.set_partition(lease.partition());
  for (auto [samples, correct] :
       std::vector<std::pair<int64_t, int64_t>>{{-1, 0}, {5, 6}, {0, -1}}) {
    complete.set_samples(samples);
    complete.set_correct(correct);
    EXPECT_THAT(c->CompletePartition(complete),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  complete.set_samples(1);
  complete.set_correct(0);
  complete.set_loss_sum(std::nan(""));
  EXPECT_THAT(c->CompletePartition(complete),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(c->Status().partitions_done(), 0);
  // Totals saturate instead of wrapping.
  complete.set_loss_sum(0);
  complete.set_samples(std::numeric_limits<int64_t>::max());
  complete.set_correct(std::numeric_limits<int64_t>::max());
  ASSERT_THAT(c->CompletePartition(complete), IsOk());
  const Result next = Acquire(c.get(), "w0");
  complete.set_partition(next.partition());
  ASSERT_THAT(c->CompletePartition(complete), IsOk());
  EXPECT_EQ(c->Status().epoch_stats(0).samples(),
            std::numeric_limits<int64_t>::max());

  v1::HeartbeatRequest beat;
  beat.set_worker_id("w0");
  beat.set_clock(-5);
  EXPECT_THAT(c->Heartbeat(beat), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::WaitForClockRequest wait;
  wait.set_worker_id("w0");
  wait.set_clock(std::numeric_limits<int64_t>::min());
  EXPECT_THAT(c->WaitForClock(wait, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kInvalidArgument));

  // Evaluations of epochs the job does not have add no records.
  v1::ReportEvaluationRequest eval;
  eval.set_worker_id("w0");
  eval.set_samples(10);
  eval.set_correct(5);
  for (int epoch : {-1, 2, 1 << 30}) {
    eval.set_epoch(epoch);
    EXPECT_THAT(c->ReportEvaluation(eval),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_EQ(c->Status().epoch_stats_size(), 1);
}

TEST_F(CoordinatorTest, InventedWorkerIdsAreBounded) {
  auto c = Make();
  v1::HeartbeatRequest beat;
  for (int i = 0; i < Coordinator::kMaxLiveWorkers; ++i) {
    beat.set_worker_id(absl::StrCat("w", i));
    ASSERT_THAT(c->Heartbeat(beat), IsOk()) << i;
  }
  beat.set_worker_id("one-too-many");
  EXPECT_THAT(c->Heartbeat(beat), StatusIs(absl::StatusCode::kResourceExhausted,
                                           HasSubstr("live workers")));
  beat.set_worker_id("w7");  // a live worker is still served
  EXPECT_THAT(c->Heartbeat(beat), IsOk());
  // Once the others' leases expire, new workers join again.
  now_ += absl::Seconds(11);
  c->ExpireStale();
  beat.set_worker_id("one-too-many");
  EXPECT_THAT(c->Heartbeat(beat), IsOk());
}

TEST_F(CoordinatorTest, BadLinesAreSummedAndFailTheJobPastTheLimit) {
  job_.mutable_dataset()->set_max_bad_lines(5);
  auto c = Make();
  auto complete = [&](const std::string& worker, int64_t bad,
                      const std::string& first) {
    const Result lease = Acquire(c.get(), worker);
    EXPECT_EQ(lease.result(), Result::LEASED);
    v1::CompletePartitionRequest r;
    r.set_worker_id(worker);
    r.set_epoch(lease.epoch());
    r.set_partition(lease.partition());
    r.set_samples(10);
    r.set_bad_lines(bad);
    r.set_first_bad_line(first);
    return c->CompletePartition(r);
  };
  auto first = complete("w1", 3, "a.csv:7: 2 fields, expected 3");
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->accepted());
  EXPECT_EQ(first->failed(), "");
  EXPECT_EQ(c->Status().bad_lines(), 3);
  EXPECT_EQ(c->Status().failed(), "");

  auto second = complete("w2", 3, "b.csv:1: not a number");
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(second->accepted());
  const std::string reason =
      "6 bad input lines, more than max_bad_lines 5; first: a.csv:7: 2 "
      "fields, expected 3";
  EXPECT_EQ(second->failed(), reason);
  v1::JobStatus status = c->Status();
  EXPECT_EQ(status.bad_lines(), 6);
  EXPECT_EQ(status.first_bad_line(), "a.csv:7: 2 fields, expected 3");
  EXPECT_EQ(status.failed(), reason);
  EXPECT_FALSE(status.finished());

  // Workers learn it from every call, and get no more work.
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_partition(-1);
  EXPECT_EQ(c->Heartbeat(hb)->failed(), reason);
  v1::JoinRequest join;
  join.set_worker_id("w3");
  EXPECT_EQ(c->Join(join)->failed(), reason);
  EXPECT_EQ(Acquire(c.get(), "w3").result(), Result::FINISHED);

  // It is persisted.
  c.reset();
  c = Make();
  status = c->Status();
  EXPECT_EQ(status.bad_lines(), 6);
  EXPECT_EQ(status.failed(), reason);
  EXPECT_EQ(Acquire(c.get(), "w1").result(), Result::FINISHED);
}

TEST_F(CoordinatorTest, BadLinesWithoutALimitNeverFailTheJob) {
  auto c = Make();
  const Result lease = Acquire(c.get(), "w1");
  v1::CompletePartitionRequest r;
  r.set_worker_id("w1");
  r.set_epoch(lease.epoch());
  r.set_partition(lease.partition());
  r.set_bad_lines(1000000);
  ASSERT_THAT(c->CompletePartition(r), IsOk());
  EXPECT_EQ(c->Status().bad_lines(), 1000000);
  EXPECT_EQ(c->Status().failed(), "");
  EXPECT_EQ(c->Status().first_bad_line(), "");
}

TEST_F(CoordinatorTest, HostileBadLineReportsAreRefusedOrCut) {
  auto c = Make();
  const Result lease = Acquire(c.get(), "w1");
  v1::CompletePartitionRequest r;
  r.set_worker_id("w1");
  r.set_epoch(lease.epoch());
  r.set_partition(lease.partition());
  for (int64_t bad : {int64_t{-1}, Coordinator::kMaxBadLinesPerReport + 1,
                      std::numeric_limits<int64_t>::max(),
                      std::numeric_limits<int64_t>::min()}) {
    r.set_bad_lines(bad);
    EXPECT_THAT(c->CompletePartition(r),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_EQ(c->Status().partitions_done(), 0);  // nothing changed
  EXPECT_EQ(c->Status().bad_lines(), 0);
  // A long first line is kept cut, at a character boundary (UTF-8 'é').
  std::string line;
  while (line.size() < 3000) line += "\xc3\xa9";
  r.set_bad_lines(1);
  r.set_first_bad_line("x" + line);
  ASSERT_THAT(c->CompletePartition(r), IsOk());
  const std::string kept = c->Status().first_bad_line();
  EXPECT_LE(kept.size(), Coordinator::kMaxBadLineBytes);
  EXPECT_GE(kept.size(), Coordinator::kMaxBadLineBytes - 1);
  EXPECT_EQ(kept, ("x" + line).substr(0, kept.size()));
  EXPECT_NE(static_cast<unsigned char>(kept.back()), 0xc3);
  // And the state still parses after a restart.
  c.reset();
  c = Make();
  EXPECT_EQ(c->Status().first_bad_line(), kept);
}

TEST_F(CoordinatorTest, AucIsRecordedPerEpochAndHostileValuesAreRefused) {
  auto c = Make();
  v1::ReportEvaluationRequest r;
  r.set_worker_id("w1");
  r.set_epoch(0);
  r.set_samples(100);
  r.set_correct(80);
  for (double bad :
       {std::nan(""), std::numeric_limits<double>::infinity(), 1.5, -0.1}) {
    r.set_auc(bad);
    EXPECT_THAT(c->ReportEvaluation(r),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  ASSERT_EQ(c->Status().epoch_stats_size(), 0);  // nothing recorded
  r.clear_auc();
  ASSERT_THAT(c->ReportEvaluation(r), IsOk());
  ASSERT_EQ(c->Status().epoch_stats_size(), 1);
  EXPECT_FALSE(c->Status().epoch_stats(0).has_test_auc());
  r.set_auc(0.75);
  ASSERT_THAT(c->ReportEvaluation(r), IsOk());
  EXPECT_DOUBLE_EQ(c->Status().epoch_stats(0).test_auc(), 0.75);
  c.reset();
  c = Make();
  EXPECT_DOUBLE_EQ(c->Status().epoch_stats(0).test_auc(), 0.75);
}

TEST_F(CoordinatorTest, JoinReportsTheModelFilesSizeAndCrc) {
  auto c = Make();
  v1::JoinRequest join;
  join.set_worker_id("w1");
  EXPECT_EQ(c->Join(join)->model_file_bytes(), 0);
  EXPECT_EQ(c->model_file(), nullptr);
  c->SetModelFile("hello");
  auto joined = c->Join(join);
  ASSERT_THAT(joined, IsOk());
  EXPECT_EQ(joined->model_file_bytes(), 5);
  EXPECT_EQ(joined->model_file_crc32(), 0x3610a686u);  // zlib crc32("hello")
  EXPECT_EQ(*c->model_file(), "hello");
}

}  // namespace
}  // namespace tessera

// Multi-process tests of training: real tessera-ps shards and tessera-worker
// processes on loopback, small Fashion-MNIST jobs (a few thousand examples,
// two or three epochs). The coordinator's JobStatus is the record every test
// checks: which worker holds which lease, each epoch's completed partitions
// and examples, the clock spread.
//
// The accuracy test on the full training set is training_accuracy_test.cc.

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/client/model_pull.h"
#include "ps/common/status_macros.h"
#include "ps/common/status_matchers.h"
#include "tests/cluster.h"
#include "tools/model_file.h"
#include "worker/data/dataset.h"
#include "worker/data/fashion_mnist.h"
#include "worker/data/synthetic_ctr.h"
#include "worker/data/task_metrics.h"
#include "worker/evaluation.h"
#include "worker/model/model.h"

namespace tessera {
namespace {

using testing::FindEpoch;
using testing::FindWorker;
using ::testing::HasSubstr;
using testing::LocalCluster;
using testing::LocalClusterOptions;
using testing::WorkerProcess;

// Generous bounds: two loaded cores run every process of a test.
constexpr absl::Duration kJobTimeout = absl::Seconds(180);
constexpr absl::Duration kExitTimeout = absl::Seconds(60);
// SyntheticCtrTestAucApproachesTheTrueModels: how far below the true
// model's AUC the trained one may be. Measured on 2 cores, 5 runs: 0.8277 or
// 0.8278 against the true model's 0.8497 (gaps 0.0219-0.0220; test accuracy
// 74.50-74.59% against 77.06-77.11% in training).
constexpr double kCtrAucGap = 0.03;

struct JobSpec {
  std::string name = "training-test";
  int64_t limit = 6000;  // training examples
  int epochs = 2;
  int partitions = 12;
  std::string consistency = "ASYNC";
  int staleness = 0;
  std::string consistency_extra;  // more ConsistencyConfig fields
  double lease_timeout_s = 30;
};

std::string JobText(const JobSpec& j) {
  return absl::StrCat(
      "name: \"", j.name, "\"\n", "model { name: \"mlp\" seed: 1 }\n",
      "dataset { format: FASHION_MNIST path: \"", testing::kFashionMnistDir,
      "\" limit: ", j.limit, " }\n", "batch_size: 64\n", "epochs: ", j.epochs,
      "\n", "partitions_per_epoch: ", j.partitions, "\n",
      "consistency { mode: ", j.consistency, " staleness: ", j.staleness, " ",
      j.consistency_extra, " }\n",
      "optimizer { kind: ADAM learning_rate: 0.001 }\n",
      "flush_interval_s: 5\n", "lease_timeout_s: ", j.lease_timeout_s, "\n");
}

std::unique_ptr<LocalCluster> StartCluster(const JobSpec& job,
                                           int num_shards = 2) {
  LocalClusterOptions options;
  options.num_shards = num_shards;
  options.job_config = JobText(job);
  options.shard_flags = {"--flush_interval_s=5"};
  auto cluster = LocalCluster::Start(options);
  EXPECT_THAT(cluster, IsOk());
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

// The coordinator's record of a finished job: every epoch counted each of its
// partitions once and each example once (partitions differ in size, so a
// partition counted twice and another missed would not add up either, and
// partitions_done would exceed or miss the count).
void ExpectEachPartitionCompletedOncePerEpoch(const v1::JobStatus& status,
                                              const JobSpec& job) {
  ASSERT_TRUE(status.finished());
  // The last epoch never turns over: its count is still there.
  EXPECT_EQ(status.partitions_done(), job.partitions);
  EXPECT_EQ(status.partitions_leased(), 0);
  EXPECT_EQ(status.partitions_queued(), 0);
  ASSERT_EQ(status.epoch_stats_size(), job.epochs);
  for (int e = 0; e < job.epochs; ++e) {
    const v1::EpochStats* stats = FindEpoch(status, e);
    ASSERT_NE(stats, nullptr) << "epoch " << e;
    EXPECT_EQ(stats->partitions_done(), job.partitions) << "epoch " << e;
    EXPECT_EQ(stats->samples(), job.limit) << "epoch " << e;
    EXPECT_GT(stats->finished_unix_ms(), 0) << "epoch " << e;
  }
}

// Waits for every started worker to exit; expects exit code 0 from each one
// in `clean` (the others were killed by the test).
void ExpectWorkersExitCleanly(LocalCluster& cluster,
                              const std::vector<std::string>& clean) {
  auto codes = cluster.WaitForWorkers(kExitTimeout);
  ASSERT_THAT(codes, IsOk());
  for (const std::string& id : clean) {
    EXPECT_EQ(codes->at(id), 0) << "worker " << id << "\n"
                                << cluster.LogTails();
  }
}

TEST(TrainingTest, EveryPartitionIsCompletedExactlyOncePerEpoch) {
  JobSpec job;
  job.name = "exactly-once";
  job.limit = 6007;  // 24 partitions of 250 or 251 examples
  job.partitions = 24;
  job.epochs = 3;
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  ASSERT_THAT(cluster->StartWorker("w0"), IsOk());
  ASSERT_THAT(cluster->StartWorker("w1"), IsOk());
  auto status = cluster->WaitUntilFinished(kJobTimeout);
  ASSERT_THAT(status, IsOk());
  ExpectEachPartitionCompletedOncePerEpoch(*status, job);
  ExpectWorkersExitCleanly(*cluster, {"w0", "w1"});
}

TEST(TrainingTest, WorkerAddedMidEpochGetsPartitions) {
  JobSpec job;
  job.name = "scale-up";
  job.limit = 12000;
  job.partitions = 40;
  job.epochs = 20;  // Far longer than the test needs: it stops the workers.
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  ASSERT_THAT(cluster->StartWorker("first"), IsOk());
  auto before = cluster->WaitFor(
      "an epoch in progress",
      [](const v1::JobStatus& s) {
        return s.partitions_done() >= 2 && s.partitions_queued() > 0;
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(before, IsOk());
  ASSERT_FALSE(before->finished());

  ASSERT_THAT(cluster->StartWorker("late"), IsOk());
  auto leased = cluster->WaitFor(
      "the late worker holding a lease",
      [](const v1::JobStatus& s) {
        const v1::WorkerStatus* w = FindWorker(s, "late");
        return w != nullptr && w->partition() >= 0;
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(leased, IsOk());
  EXPECT_FALSE(leased->finished());
  // Its heartbeats report the examples it trained on.
  auto trained = cluster->WaitFor(
      "samples from the late worker",
      [](const v1::JobStatus& s) {
        const v1::WorkerStatus* w = FindWorker(s, "late");
        return w != nullptr && w->samples() > 0;
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(trained, IsOk());
  ASSERT_NE(FindWorker(*trained, "first"), nullptr);

  cluster->worker("first")->child().Signal(SIGTERM);
  cluster->worker("late")->child().Signal(SIGTERM);
  ExpectWorkersExitCleanly(*cluster, {"first", "late"});
}

TEST(TrainingTest, SigkilledWorkerCostsOnlyItsLease) {
  JobSpec job;
  job.name = "sigkill";
  job.limit = 12000;
  job.partitions = 6;  // 2000 examples, ~32 steps each: a long lease
  job.epochs = 3;
  job.lease_timeout_s = 3;
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  ASSERT_THAT(cluster->StartWorker("survivor"), IsOk());

  // Kill a victim while the coordinator says it holds a lease. A victim
  // caught between completing one partition and leasing the next (the
  // coordinator's record after the kill says so) proves nothing: try again
  // with a new one, a bounded number of times.
  std::string victim;
  int lost_partition = -1, lost_epoch = -1;
  for (int attempt = 0; attempt < 3 && lost_partition < 0; ++attempt) {
    victim = absl::StrCat("victim-", attempt);
    auto started = cluster->StartWorker(victim);
    ASSERT_THAT(started, IsOk());
    auto holding = cluster->WaitFor(
        absl::StrCat(victim, " holding a lease"),
        [&victim](const v1::JobStatus& s) {
          const v1::WorkerStatus* w = FindWorker(s, victim);
          return w != nullptr && w->partition() >= 0;
        },
        kJobTimeout, /*fail_if_no_worker=*/true);
    ASSERT_THAT(holding, IsOk());
    ASSERT_FALSE(holding->finished()) << "the job ended before the kill";
    (*started)->child().Signal(SIGKILL);
    auto code = (*started)->child().Wait(kExitTimeout);
    ASSERT_THAT(code, IsOk());
    EXPECT_EQ(*code, 128 + SIGKILL);
    auto after = cluster->Status();
    ASSERT_THAT(after, IsOk());
    const v1::WorkerStatus* dead = FindWorker(*after, victim);
    if (dead != nullptr && dead->partition() >= 0) {
      lost_partition = dead->partition();
      lost_epoch = after->epoch();
    }
  }
  ASSERT_GE(lost_partition, 0) << "no victim died holding a lease";
  std::cout << "SIGKILL: " << victim << " died holding partition "
            << lost_partition << " of epoch " << lost_epoch << "\n";

  // The silent victim is dropped after the lease timeout and its lease goes
  // back to the queue; the survivor redoes it and the job completes.
  auto dropped = cluster->WaitFor(
      absl::StrCat(victim, " dropped"),
      [&victim](const v1::JobStatus& s) {
        return FindWorker(s, victim) == nullptr;
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(dropped, IsOk());
  auto expirations =
      cluster->shard(0).Metric("tessera_coordinator_lease_expirations_total");
  ASSERT_THAT(expirations, IsOk());
  EXPECT_GE(*expirations, 1);

  auto status = cluster->WaitUntilFinished(kJobTimeout);
  ASSERT_THAT(status, IsOk());
  // The victim never completed `lost_partition` of `lost_epoch` (it died
  // holding it), yet that epoch counts every partition and every example:
  // another worker redid it, and nothing else was lost or counted twice.
  ExpectEachPartitionCompletedOncePerEpoch(*status, job);
  const v1::EpochStats* lost = FindEpoch(*status, lost_epoch);
  ASSERT_NE(lost, nullptr);
  EXPECT_EQ(lost->partitions_done(), job.partitions)
      << "partition " << lost_partition << " of epoch " << lost_epoch;
  ExpectWorkersExitCleanly(*cluster, {"survivor"});
}

TEST(TrainingTest, SigtermHandsTheLeaseBackAtOnce) {
  JobSpec job;
  job.name = "sigterm";
  job.limit = 12000;
  job.partitions = 6;
  job.epochs = 3;
  // Far longer than the test: only the worker's Leave can return the lease.
  job.lease_timeout_s = 600;
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  auto leaver = cluster->StartWorker("leaver");
  ASSERT_THAT(leaver, IsOk());
  auto holding = cluster->WaitFor(
      "the worker holding a lease after completing one",
      [](const v1::JobStatus& s) {
        const v1::WorkerStatus* w = FindWorker(s, "leaver");
        return s.partitions_done() >= 1 && w != nullptr && w->partition() >= 0;
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(holding, IsOk());
  ASSERT_FALSE(holding->finished());

  const absl::Time signalled = absl::Now();
  (*leaver)->child().Signal(SIGTERM);
  auto code = (*leaver)->child().Wait(kExitTimeout);
  ASSERT_THAT(code, IsOk()) << cluster->LogTails();
  EXPECT_EQ(*code, 0);
  std::cout << "SIGTERM: worker exited " << *code << " after "
            << absl::Now() - signalled << "\n";
  EXPECT_THAT((*leaver)->child().Log(), HasSubstr("handing back the lease"));

  // Right after the exit: the worker left, nothing is leased, every
  // partition not done is queued again, and no lease expired.
  auto after = cluster->Status();
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(FindWorker(*after, "leaver"), nullptr);
  EXPECT_EQ(after->partitions_leased(), 0);
  EXPECT_EQ(after->partitions_done() + after->partitions_queued(),
            job.partitions);
  EXPECT_GT(after->partitions_queued(), 0);
  auto& coordinator = cluster->shard(0);
  EXPECT_THAT(coordinator.Metric("tessera_coordinator_lease_expirations_total"),
              IsOkAndHolds(0.0));
  EXPECT_THAT(coordinator.Metric("tessera_coordinator_membership_changes_total",
                                 "event=\"leave\""),
              IsOkAndHolds(1.0));
  EXPECT_THAT(coordinator.Metric("tessera_coordinator_membership_changes_total",
                                 "event=\"expire\""),
              IsOkAndHolds(0.0));

  // A new worker finishes the job; the handed-back partition counts once.
  ASSERT_THAT(cluster->StartWorker("finisher"), IsOk());
  auto status = cluster->WaitUntilFinished(kJobTimeout);
  ASSERT_THAT(status, IsOk());
  ExpectEachPartitionCompletedOncePerEpoch(*status, job);
  ExpectWorkersExitCleanly(*cluster, {"leaver", "finisher"});
}

TEST(TrainingTest, BspNeverLetsClocksDifferByMoreThanOne) {
  JobSpec job;
  job.name = "bsp";
  job.limit = 6000;
  job.partitions = 12;
  job.epochs = 2;
  job.consistency = "BSP";
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  ASSERT_THAT(cluster->StartWorker("w0"), IsOk());
  ASSERT_THAT(cluster->StartWorker("w1"), IsOk());
  // Both workers train together at some point (the second one joins while
  // the first holds a lease), so the bound is exercised, not vacuous.
  auto together = cluster->WaitFor(
      "both workers holding leases",
      [](const v1::JobStatus& s) {
        const v1::WorkerStatus* a = FindWorker(s, "w0");
        const v1::WorkerStatus* b = FindWorker(s, "w1");
        return s.finished() || (a != nullptr && b != nullptr &&
                                a->partition() >= 0 && b->partition() >= 0);
      },
      kJobTimeout, /*fail_if_no_worker=*/true);
  ASSERT_THAT(together, IsOk());
  EXPECT_FALSE(together->finished()) << "one worker did the whole job";
  auto status = cluster->WaitUntilFinished(kJobTimeout);
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(status->consistency().mode(), v1::ConsistencyConfig::BSP);
  EXPECT_LE(status->max_clock_spread(), 1);
  std::cout << "BSP: max clock spread " << status->max_clock_spread()
            << " steps\n";
  auto spread =
      cluster->shard(0).Metric("tessera_coordinator_clock_spread_steps");
  ASSERT_THAT(spread, IsOk());
  EXPECT_LE(*spread, 1);
  ExpectEachPartitionCompletedOncePerEpoch(*status, job);
  ExpectWorkersExitCleanly(*cluster, {"w0", "w1"});
}

// Accuracy in percent of `model` on the 10,000 test images.
absl::StatusOr<double> TestAccuracy(worker::Model& model) {
  auto test = worker::OpenFashionMnist(testing::kFashionMnistDir,
                                       worker::FashionMnistSplit::kTest);
  if (!test.ok()) return test.status();
  auto eval = worker::EvaluateDataset(model, **test);
  if (!eval.ok()) return eval.status();
  if (eval->num_examples != 10000) {
    return absl::DataLossError(
        absl::StrCat("test set of ", eval->num_examples));
  }
  return 100.0 * eval->num_correct / eval->num_examples;
}

TEST(TrainingTest, PulledModelFileGivesTheAccuracyTheWorkerReported) {
  JobSpec job;
  job.name = "model-file";
  job.limit = 6000;
  job.partitions = 12;
  job.epochs = 2;
  auto cluster = StartCluster(job);
  ASSERT_NE(cluster, nullptr);
  ASSERT_THAT(cluster->StartWorker("w0"), IsOk());
  ASSERT_THAT(cluster->StartWorker("w1"), IsOk());
  ASSERT_THAT(cluster->WaitUntilFinished(kJobTimeout), IsOk());
  // The worker that completed the last partition evaluates, reports, then
  // exits: once every worker is gone the report is in.
  ExpectWorkersExitCleanly(*cluster, {"w0", "w1"});
  auto status = cluster->Status();
  ASSERT_THAT(status, IsOk());
  const v1::EpochStats* last = FindEpoch(*status, job.epochs - 1);
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(last->test_samples(), 10000) << status->ShortDebugString();
  const double reported = 100.0 * last->test_correct() / last->test_samples();

  auto pulled = PullModel(cluster->shard_addresses(), absl::Seconds(60));
  ASSERT_THAT(pulled, IsOk());
  const std::string path = testing::TempPath("model.pt");
  ASSERT_THAT(WriteModelFile(path, *pulled), IsOk());
  auto read = ReadModelFile(path);
  ASSERT_THAT(read, IsOk());
  ASSERT_EQ(read->size(), pulled->size());

  worker::ModelOptions options;
  options.name = "mlp";
  options.num_threads = 1;
  auto model = worker::Model::Create(options);
  ASSERT_THAT(model, IsOk());
  ASSERT_EQ(read->size(), (*model)->Parameters().size());
  for (const PulledTensor& t : *read) {
    ASSERT_THAT((*model)->LoadDense(t.name, t.values), IsOk()) << t.name;
  }
  auto accuracy = TestAccuracy(**model);
  ASSERT_THAT(accuracy, IsOk());
  EXPECT_NEAR(*accuracy, reported, 0.05);
  EXPECT_GT(*accuracy, 50.0);  // It learned something: 10 classes.
  std::cout << absl::StrFormat(
      "model file %s: test accuracy %.2f%%, worker reported %.2f%%\n", path,
      *accuracy, reported);
}

// Trains `job` on 1 shard + 1 worker and returns the shard's model.
absl::StatusOr<std::vector<PulledTensor>> TrainOneWorker(const JobSpec& job) {
  auto cluster = StartCluster(job, /*num_shards=*/1);
  if (cluster == nullptr) return absl::InternalError("no cluster");
  TESSERA_RETURN_IF_ERROR(cluster->StartWorker("w0").status());
  TESSERA_RETURN_IF_ERROR(cluster->WaitUntilFinished(kJobTimeout).status());
  auto codes = cluster->WaitForWorkers(kExitTimeout);
  TESSERA_RETURN_IF_ERROR(codes.status());
  if (codes->at("w0") != 0) {
    return absl::InternalError(absl::StrCat("worker exited ", codes->at("w0"),
                                            "\n", cluster->LogTails()));
  }
  return PullModel(cluster->shard_addresses(), absl::Seconds(60));
}

// One worker under ASYNC is deterministic: its pull for step t+1 is ordered
// after its push of step t-1 on every part, so two runs end with the same
// model, bit for bit. Training on extrapolated dense values (the default,
// worker/dense_predictor.h) ends with another model than
// `extrapolate_dense: false`: the setting reaches the worker's steps.
TEST(TrainingTest, OneAsyncWorkerIsDeterministicAndExtrapolationMovesIt) {
  JobSpec job;
  job.limit = 3000;
  job.partitions = 6;
  job.epochs = 1;
  job.name = "extrapolated-1";
  auto first = TrainOneWorker(job);
  ASSERT_THAT(first, IsOk());
  job.name = "extrapolated-2";
  auto second = TrainOneWorker(job);
  ASSERT_THAT(second, IsOk());
  job.name = "as-pulled";
  job.consistency_extra = "extrapolate_dense: false";
  auto plain = TrainOneWorker(job);
  ASSERT_THAT(plain, IsOk());

  ASSERT_EQ(first->size(), second->size());
  ASSERT_EQ(first->size(), plain->size());
  size_t differing = 0;
  for (size_t i = 0; i < first->size(); ++i) {
    ASSERT_EQ((*first)[i].name, (*second)[i].name);
    EXPECT_EQ((*first)[i].values, (*second)[i].values) << (*first)[i].name;
    if ((*first)[i].values != (*plain)[i].values) ++differing;
  }
  EXPECT_EQ(differing, first->size());
}

// Synthetic click-through data (logistic regression on an unbounded
// embedding table): the held-out set is drawn from the same true model as
// the training set, so the trained model's test AUC approaches the true
// model's own AUC on it and test accuracy is close to train accuracy (a
// held-out set from another true model once gave 47% for a binary task).
TEST(TrainingTest, SyntheticCtrTestAucApproachesTheTrueModels) {
  constexpr int64_t kExamples = 200000;
  LocalClusterOptions options;
  options.num_shards = 2;
  options.job_config = absl::StrCat(
      "name: \"ctr-auc\"\n",
      "model { name: \"logreg\" embedding_dim: 1 seed: 1 }\n",
      "dataset { format: SYNTHETIC_CTR num_examples: ", kExamples,
      " vocabulary: 20000 features_per_example: 16 zipf_exponent: 1.1 seed: "
      "7 }\n",
      "batch_size: 256\nepochs: 2\npartitions_per_epoch: 40\n",
      "consistency { mode: ASYNC }\n",
      "optimizer { kind: ADAM learning_rate: 0.01 }\n",
      "tensor_groups { prefix: \"embedding\" optimizer { kind: ADAGRAD "
      "learning_rate: 0.1 } }\n");
  auto cluster = LocalCluster::Start(options);
  ASSERT_THAT(cluster, IsOk());
  ASSERT_THAT((*cluster)->StartWorker("w0"), IsOk());
  ASSERT_THAT((*cluster)->StartWorker("w1"), IsOk());
  ASSERT_THAT((*cluster)->WaitUntilFinished(kJobTimeout), IsOk());
  ASSERT_THAT((*cluster)->WaitForWorkers(kExitTimeout), IsOk());
  auto status = (*cluster)->Status();
  ASSERT_THAT(status, IsOk());
  const v1::EpochStats* last = FindEpoch(*status, 1);
  ASSERT_NE(last, nullptr);
  ASSERT_TRUE(last->has_test_auc()) << status->ShortDebugString();

  // The true model's AUC on the same held-out set (worker/job_datasets.cc).
  worker::SyntheticCtrOptions held_out;
  held_out.num_examples = kExamples / 10;
  held_out.vocab_size = 20000;
  held_out.features_per_example = 16;
  held_out.zipf_exponent = 1.1;
  held_out.seed = 7;
  held_out.example_seed = 1;
  auto data = worker::SyntheticCtrDataset::Create(held_out);
  ASSERT_THAT(data, IsOk());
  std::vector<int64_t> all(held_out.num_examples);
  std::iota(all.begin(), all.end(), 0);
  auto batch = (*data)->Gather(all);
  ASSERT_THAT(batch, IsOk());
  std::vector<float> truth(batch->batch_size);
  for (int i = 0; i < batch->batch_size; ++i) {
    truth[i] = (*data)->TrueProbability(
        absl::MakeConstSpan(batch->feature_ids.data() + batch->row_offsets[i],
                            batch->row_offsets[i + 1] - batch->row_offsets[i]));
  }
  auto best = worker::RocAuc(truth, batch->labels);
  ASSERT_THAT(best, IsOk());
  const double train_accuracy =
      100.0 * last->correct() / std::max<int64_t>(1, last->samples());
  const double test_accuracy =
      100.0 * last->test_correct() / std::max<int64_t>(1, last->test_samples());
  std::cout << absl::StrFormat(
      "test AUC %.4f, true model's %.4f; accuracy train %.2f%%, test %.2f%%\n",
      last->test_auc(), *best, train_accuracy, test_accuracy);
  EXPECT_GE(last->test_auc(), *best - kCtrAucGap);
  EXPECT_LE(last->test_auc(), *best + 0.01);
  EXPECT_NEAR(test_accuracy, train_accuracy, 5.0);
}

}  // namespace
}  // namespace tessera

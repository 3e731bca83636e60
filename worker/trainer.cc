#include "worker/trainer.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <limits>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "ps/client/coordinator_client.h"
#include "ps/client/ps_client.h"
#include "ps/common/job_config.h"
#include "ps/common/status_macros.h"
#include "tessera/v1/coordinator.pb.h"
#include "worker/data/batch_stream.h"
#include "worker/data/dataset.h"
#include "worker/data/task_metrics.h"
#include "worker/evaluation.h"
#include "worker/job_datasets.h"
#include "worker/job_model.h"
#include "worker/model_specs.h"
#include "worker/parameter_exchange.h"

namespace tessera {
namespace worker {
namespace {

// Exponential moving average for loss and accuracy gauges.
class Ema {
 public:
  void Add(double x) {
    value_ = initialized_ ? 0.95 * value_ + 0.05 * x : x;
    initialized_ = true;
  }
  double value() const { return value_; }

 private:
  double value_ = 0;
  bool initialized_ = false;
};

}  // namespace

class Trainer::Impl {
 public:
  explicit Impl(TrainerOptions options) : options_(std::move(options)) {
    metrics::Registry& r = *options_.registry;
    samples_ = &metrics::BuildCounter()
                    .Name("tessera_worker_samples_total")
                    .Help("Training examples processed.")
                    .Register(r)
                    .Add({});
    steps_ = &metrics::BuildCounter()
                  .Name("tessera_worker_steps_total")
                  .Help("Training steps (batches) completed.")
                  .Register(r)
                  .Add({});
    partitions_ = &metrics::BuildCounter()
                       .Name("tessera_worker_partitions_completed_total")
                       .Help("Leased partitions this worker completed.")
                       .Register(r)
                       .Add({});
    push_failures_ = &metrics::BuildCounter()
                          .Name("tessera_worker_push_failures_total")
                          .Help(
                              "Gradient pushes that failed after retries "
                              "(their update is lost).")
                          .Register(r)
                          .Add({});
    extrapolated_ =
        &metrics::BuildCounter()
             .Name("tessera_worker_dense_extrapolated_total")
             .Help(
                 "Dense tensor pulls trained on as extrapolated "
                 "(consistency.extrapolate_dense): pulled a step ahead, after "
                 "a previous step's pull.")
             .Register(r)
             .Add({});
    loss_ = &metrics::BuildGauge()
                 .Name("tessera_worker_loss")
                 .Help("Training loss, moving average over recent steps.")
                 .Register(r)
                 .Add({});
    train_accuracy_ = &metrics::BuildGauge()
                           .Name("tessera_worker_train_accuracy")
                           .Help("Training accuracy (0-1), moving average.")
                           .Register(r)
                           .Add({});
    test_loss_ = &metrics::BuildGauge()
                      .Name("tessera_worker_test_loss")
                      .Help(
                          "Mean loss on the held-out set at the last "
                          "evaluation by this worker (log loss for binary "
                          "tasks).")
                      .Register(r)
                      .Add({});
    test_auc_ = &metrics::BuildGauge()
                     .Name("tessera_worker_test_auc")
                     .Help(
                         "Area under the ROC curve on the held-out set at "
                         "the last evaluation by this worker (binary "
                         "tasks).")
                     .Register(r)
                     .Add({});
    test_accuracy_ = &metrics::BuildGauge()
                          .Name("tessera_worker_test_accuracy")
                          .Help(
                              "Accuracy (0-1) on the test set at the last "
                              "evaluation by this worker.")
                          .Register(r)
                          .Add({});
    epoch_gauge_ = &metrics::BuildGauge()
                        .Name("tessera_worker_epoch")
                        .Help("Epoch of the partition being trained.")
                        .Register(r)
                        .Add({});
    auto& phase = metrics::BuildHistogram()
                      .Name("tessera_worker_step_phase_seconds")
                      .Help(
                          "Time per step spent computing, waiting for "
                          "pulls and waiting for pushes; and per partition "
                          "(partition_switch) from its last step to the next "
                          "partition's first, evaluations left out.")
                      .Register(r);
    compute_ = &phase.Add({{"phase", "compute"}}, metrics::LatencyBuckets());
    pull_wait_ =
        &phase.Add({{"phase", "pull_wait"}}, metrics::LatencyBuckets());
    push_wait_ =
        &phase.Add({{"phase", "push_wait"}}, metrics::LatencyBuckets());
    partition_switch_ =
        &phase.Add({{"phase", "partition_switch"}}, metrics::LatencyBuckets());
    staleness_ = &metrics::BuildHistogram()
                      .Name("tessera_worker_staleness_steps")
                      .Help(
                          "Steps this worker was ahead of the slowest live "
                          "worker when it pulled.")
                      .Register(r)
                      .Add({}, metrics::LinearBuckets(0, 1, 17));
    coordinator_waiting_ =
        &metrics::BuildGauge()
             .Name("tessera_worker_coordinator_waiting_seconds")
             .Help(
                 "How long the current call to the coordinator has been "
                 "retried (unreachable or unavailable); 0 when none.")
             .Register(r)
             .Add({});
    CoordinatorClientOptions coordinator;
    coordinator.address = options_.coordinator;
    coordinator.call_deadline = options_.call_deadline;
    coordinator.waiting = coordinator_waiting_;
    coordinator.stop = &stop_;
    coordinator_ = std::make_unique<CoordinatorClient>(coordinator);
  }

  ~Impl() { StopHeartbeat(); }

  void RequestStop() { stop_ = true; }

  absl::Status Run() {
    absl::Status s = Setup();
    if (!s.ok()) return s;
    StartHeartbeat();
    if (data_.dense) {
      s = Loop(data_.dense);
    } else if (data_.sparse) {
      s = Loop(data_.sparse);
    } else {
      s = Loop(data_.tabular);
    }
    // A completion still on its way (the loop failed) lands before Leave:
    // after it, it would make this worker join again.
    completing_.reset();
    StopHeartbeat();
    Leave();
    if (s.ok() && job_failed_) {
      absl::MutexLock lock(&failure_mu_);
      return absl::FailedPreconditionError(
          absl::StrCat("the job failed: ", failure_));
    }
    return s;
  }

 private:
  absl::Status Setup() {
    v1::JoinRequest join;
    join.set_worker_id(options_.worker_id);
    TESSERA_ASSIGN_OR_RETURN(
        v1::JoinResponse joined,
        coordinator_->Join(join, options_.connect_timeout));
    job_ = joined.job();
    clock_ = joined.initial_clock();
    staleness_bound_ = StalenessBound(job_);
    LOG(INFO) << "worker " << options_.worker_id << " joined job "
              << job_.name() << " at clock " << clock_.load();
    if (joined.finished()) {
      finished_ = true;
      return absl::OkStatus();
    }

    if (!joined.failed().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the job failed: ", joined.failed()));
    }
    std::string model_file;
    if (joined.model_file_bytes() > 0) {
      LOG(INFO) << "fetching the model file (" << joined.model_file_bytes()
                << " bytes) from the coordinator";
      TESSERA_ASSIGN_OR_RETURN(
          model_file, coordinator_->FetchModelFile(joined.model_file_bytes(),
                                                   joined.model_file_crc32(),
                                                   options_.connect_timeout));
    }
    TESSERA_ASSIGN_OR_RETURN(
        model_, CreateJobModel(job_, model_file, options_.threads));
    rows_per_field_.clear();
    for (const TensorInfo& t : model_->Parameters()) {
      if (t.kind == TensorKind::kEmbedding && t.field >= 0) {
        rows_per_field_.resize(
            std::max<size_t>(rows_per_field_.size(), t.field + 1));
        rows_per_field_[t.field] = t.shape[0];
      }
    }

    const std::vector<v1::TensorSpec> specs = ModelSpecs(*model_, job_);
    v1::RegisterModelRequest reg;
    reg.set_worker_id(options_.worker_id);
    for (const auto& spec : specs) *reg.add_specs() = spec;
    // AlreadyExists: another model under this job.
    TESSERA_ASSIGN_OR_RETURN(
        v1::RegisterModelResponse registered,
        coordinator_->RegisterModel(reg, options_.connect_timeout));

    PsClientOptions client_options;
    client_options.shard_addresses = options_.shards;
    client_options.registry = options_.registry;
    client_options.default_deadline = options_.call_deadline;
    client_options.connect_timeout = options_.connect_timeout;
    auto client = PsClient::Connect(client_options);
    if (!client.ok()) return client.status();
    client_ = *std::move(client);
    ParameterExchangeOptions exchange;
    exchange.client = client_.get();
    exchange.model = model_.get();
    exchange.max_pushes_in_flight = options_.max_pushes_in_flight;
    exchange.debug_nan_every_n_steps = options_.debug_nan_every_n_steps;
    exchange.give_up = [this] { return stop_.load() || lease_lost_.load(); };
    exchange.pull_wait = pull_wait_;
    exchange.push_wait = push_wait_;
    exchange.push_failures = push_failures_;
    exchange.extrapolate_dense = ExtrapolatesDense(job_);
    exchange.extrapolated = extrapolated_;
    // Dense gradients go to the shards straight from libtorch's tensors.
    model_->set_dense_gradient_views(true);
    exchange_ = std::make_unique<ParameterExchange>(std::move(exchange));
    TESSERA_RETURN_IF_ERROR(client_->CreateTensors(specs));
    // The model's own initial values (a TorchScript file's), set once: a
    // part already set or trained is left as it is.
    int initialized = 0, with_values = 0;
    for (const TensorInfo& t : model_->Parameters()) {
      if (t.initial_values.empty()) continue;
      ++with_values;
      int applied = 0;
      TESSERA_RETURN_IF_ERROR(
          client_->InitializeDense(t.name, t.initial_values, &applied));
      if (applied > 0) ++initialized;
    }
    LOG(INFO) << "model " << job_.model().name() << ": " << specs.size()
              << " tensors on " << client_->num_shards() << " shards ("
              << (registered.created() ? "registered by this worker"
                                       : "already registered")
              << (with_values > 0
                      ? absl::StrCat("; ", initialized, " of ", with_values,
                                     " set from the model file by this worker")
                      : "")
              << ")";
    TESSERA_ASSIGN_OR_RETURN(data_, OpenJobDatasets(job_.dataset()));
    return absl::OkStatus();
  }

  void Leave() {
    if (client_ == nullptr && model_ == nullptr) return;
    v1::LeaveRequest leave;
    leave.set_worker_id(options_.worker_id);
    absl::Status s = coordinator_->Leave(leave);
    if (!s.ok()) LOG(WARNING) << "leave failed: " << s;
  }

  // --- Heartbeat -----------------------------------------------------------

  void StartHeartbeat() {
    heartbeat_ = std::thread([this] {
      while (!heartbeat_stop_.WaitForNotificationWithTimeout(
          options_.heartbeat_interval)) {
        v1::HeartbeatRequest hb;
        hb.set_worker_id(options_.worker_id);
        hb.set_clock(clock_);
        hb.set_partition(partition_);
        hb.set_epoch(epoch_);
        hb.set_samples(unreported_samples_.exchange(0));
        auto beat = coordinator_->Heartbeat(hb);
        if (!beat.ok()) {
          unreported_samples_ += hb.samples();
          LOG_EVERY_N(WARNING, 5) << "heartbeat failed: " << beat.status();
          continue;
        }
        const v1::HeartbeatResponse& response = *beat;
        if (response.lease_lost() && hb.partition() >= 0 &&
            hb.partition() == partition_) {
          LOG(WARNING) << "lease on partition " << hb.partition()
                       << " lost; dropping it";
          lease_lost_ = true;
        }
        if (response.finished()) finished_ = true;
        if (!response.failed().empty() && !job_failed_.exchange(true)) {
          LOG(ERROR) << "the job failed: " << response.failed();
          absl::MutexLock lock(&failure_mu_);
          failure_ = response.failed();
        }
      }
    });
  }

  void StopHeartbeat() {
    if (!heartbeat_.joinable()) return;
    heartbeat_stop_.Notify();
    heartbeat_.join();
  }

  // --- Parameters ----------------------------------------------------------

  // Under SSP/BSP, blocks while this worker is too far ahead.
  void WaitForClock() {
    if (staleness_bound_ < 0) return;
    const absl::Time start = absl::Now();
    absl::Time last_log = start;
    while (!stop_ && !lease_lost_) {
      v1::WaitForClockRequest request;
      request.set_worker_id(options_.worker_id);
      request.set_clock(clock_);
      request.set_max_wait_ms(2000);
      auto waited = coordinator_->WaitForClock(request, absl::Minutes(10));
      if (!waited.ok()) {
        LOG(WARNING) << "staleness check failed; pulling anyway: "
                     << waited.status();
        return;
      }
      const v1::WaitForClockResponse& response = *waited;
      if (response.min_clock() >= 0) {
        staleness_->Observe(clock_ - response.min_clock());
      }
      if (response.may_proceed()) return;
      if (absl::Now() - last_log > absl::Seconds(5)) {
        LOG(INFO) << "waiting for worker " << response.slowest_worker()
                  << " (clock " << response.min_clock()
                  << ") to catch up: this worker is at clock " << clock_
                  << ", staleness bound " << staleness_bound_ << ", for "
                  << absl::FormatDuration(
                         absl::Trunc(absl::Now() - start, absl::Seconds(1)));
        last_log = absl::Now();
      }
    }
  }

  // --- Training --------------------------------------------------------------

  struct PartitionTotals {
    int64_t samples = 0;
    double loss_sum = 0;
    int64_t correct = 0;
    int64_t bad_lines = 0;
    std::string first_bad_line;
  };

  // Tabular batches address their tables' rows (id % rows).
  absl::Status Prepare(DenseBatch*) { return absl::OkStatus(); }
  absl::Status Prepare(SparseBatch*) { return absl::OkStatus(); }
  absl::Status Prepare(TabularBatch* batch) {
    return AssignTableRows(rows_per_field_, batch);
  }

  // The next batch of `stream`, prepared; false at the end.
  template <typename BatchT>
  absl::StatusOr<bool> NextBatch(BatchStream<BatchT>& stream, BatchT* batch) {
    TESSERA_ASSIGN_OR_RETURN(bool more, stream.Next(batch));
    if (more) TESSERA_RETURN_IF_ERROR(Prepare(batch));
    return more;
  }

  // Trains on one partition. Under ASYNC and SSP the next batch's
  // parameters are pulled while this one computes; under BSP (staleness 0)
  // a step pulls only once the previous step's pushes are applied, so one
  // worker follows plain sequential SGD step for step.
  template <typename BatchT>
  absl::StatusOr<PartitionTotals> TrainPartition(
      const BatchSource<BatchT>& source, int epoch, int partition) {
    BatchOptions batch_options;
    batch_options.batch_size = job_.batch_size();
    batch_options.shuffle = true;
    batch_options.shuffle_seed = job_.model().seed() * 7919 + epoch;
    TESSERA_ASSIGN_OR_RETURN(
        std::unique_ptr<BatchStream<BatchT>> stream,
        source.open_train(partition, job_.partitions_per_epoch(),
                          batch_options));
    PartitionTotals totals;
    const auto finish = [&](PartitionTotals t) {
      t.bad_lines = stream->bad_lines();
      t.first_bad_line = stream->first_bad_line();
      return t;
    };
    const bool prefetch = staleness_bound_ != 0;
    BatchT batch, following;
    TESSERA_ASSIGN_OR_RETURN(bool more, NextBatch(*stream, &batch));
    if (!more) return finish(totals);
    ParameterExchange::Pulled current, next;
    WaitForClock();
    // The dense tensors were prefetched by the last partition's last step.
    exchange_->IssuePull(batch, &current, /*use_prefetch=*/prefetch);
    bool issued = true;
    while (true) {
      absl::Status pulled = exchange_->PullWithRetry(batch, &current, issued);
      if (!pulled.ok()) {
        exchange_->DrainAll();
        return pulled;
      }
      bool have_following = false;
      if (!stop_ && !lease_lost_) {
        TESSERA_ASSIGN_OR_RETURN(have_following,
                                 NextBatch(*stream, &following));
      }
      if (have_following && prefetch) {
        // Prefetch the next batch's parameters while this one computes.
        WaitForClock();
        exchange_->IssuePullAhead(following, &next);
      } else if (!have_following && prefetch) {
        // The last step of the partition waits like every other: its pull
        // was checked one step earlier (prefetch), so ungated it would move
        // this worker's clock two steps past the slowest one's. It
        // prefetches the next partition's first step too, as far as it can
        // without knowing that batch: the dense tensors.
        WaitForClock();
        if (!stop_ && !lease_lost_) exchange_->PrefetchDense();
      }
      const absl::Time start = absl::Now();
      if (last_step_end_ != absl::InfinitePast()) {
        // The first step of this partition: what the switch from the last
        // one cost (its pushes drained, completion, the next lease, the
        // first pull that nothing prefetched).
        partition_switch_->Observe(
            absl::ToDoubleSeconds(start - last_step_end_));
        last_step_end_ = absl::InfinitePast();
      }
      auto step = model_->TrainStep(batch);
      compute_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
      if (!step.ok()) return step.status();
      exchange_->Push(*step, batch);
      ++clock_;
      steps_->Increment();
      samples_->Increment(step->num_examples);
      unreported_samples_ += step->num_examples;
      loss_ema_.Add(step->loss);
      accuracy_ema_.Add(static_cast<double>(step->num_correct) /
                        std::max<int64_t>(1, step->num_examples));
      loss_->Set(loss_ema_.value());
      train_accuracy_->Set(accuracy_ema_.value());
      totals.samples += step->num_examples;
      totals.loss_sum += step->loss * step->num_examples;
      totals.correct += step->num_correct;
      if (!have_following) {
        last_step_end_ = absl::Now();
        break;
      }
      std::swap(batch, following);
      if (prefetch) {
        std::swap(current, next);
        issued = true;
      } else {
        exchange_->DrainAll();  // This step's updates are applied.
        WaitForClock();
        issued = false;
      }
    }
    // Under BSP the next partition's first pull sees every update. Otherwise
    // the last steps' pushes drain with the completion (StartCompletion),
    // while the next partition trains.
    if (!prefetch) exchange_->DrainAll();
    return finish(totals);
  }

  // Completes `request`'s partition in the background: waits for the pushes
  // of its last steps (`pushes`), then sends the completion, whose answer
  // waits for the coordinator's synced write. Meanwhile the loop leases the
  // next partition, naming this one as finishing so that it stays leased.
  void StartCompletion(v1::CompletePartitionRequest request,
                       std::deque<ParameterExchange::StepPushes> pushes) {
    completing_.emplace();
    completing_->epoch = request.epoch();
    completing_->partition = request.partition();
    completing_->response =
        std::async(std::launch::async, [this, request = std::move(request),
                                        pushes = std::move(pushes)]() mutable {
          for (auto& step : pushes) exchange_->AwaitStep(step);
          return coordinator_->CompletePartition(request, absl::Minutes(10));
        });
  }

  // Waits for the completion StartCompletion sent, if any, and acts on its
  // answer: the epoch's evaluation when it ended the epoch, the end of the
  // loop when it ended (or failed) the job.
  template <typename BatchT>
  absl::Status FinishCompletion(const BatchSource<BatchT>& source) {
    if (!completing_) return absl::OkStatus();
    const int epoch = completing_->epoch;
    absl::StatusOr<v1::CompletePartitionResponse> answer =
        completing_->response.get();
    completing_.reset();
    TESSERA_ASSIGN_OR_RETURN(v1::CompletePartitionResponse completed,
                             std::move(answer));
    if (completed.accepted()) partitions_->Increment();
    if (!completed.failed().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the job failed: ", completed.failed()));
    }
    if (completed.epoch_finished()) {
      LOG(INFO) << "epoch " << epoch + 1 << " of " << job_.epochs()
                << " finished";
      if (source.open_test) {
        absl::Status e = Evaluate(source, epoch);
        if (!e.ok()) LOG(WARNING) << "evaluation failed: " << e;
        last_step_end_ = absl::InfinitePast();  // Not a switch's cost.
      }
    }
    if (completed.job_finished()) finished_ = true;
    return absl::OkStatus();
  }

  template <typename BatchT>
  absl::Status Evaluate(const BatchSource<BatchT>& source, int epoch) {
    const absl::Time start = absl::Now();
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<BatchStream<BatchT>> test,
                             source.open_test(1000));
    EvalResult total;
    double loss_sum = 0;
    BatchT batch;
    while (!stop_) {
      TESSERA_ASSIGN_OR_RETURN(bool more, NextBatch(*test, &batch));
      if (!more) break;
      ParameterExchange::Pulled p;
      TESSERA_RETURN_IF_ERROR(exchange_->PullWithRetry(batch, &p, false));
      TESSERA_ASSIGN_OR_RETURN(EvalResult eval, model_->Evaluate(batch));
      total.num_examples += eval.num_examples;
      total.num_correct += eval.num_correct;
      loss_sum += eval.loss * eval.num_examples;
      total.scores.insert(total.scores.end(), eval.scores.begin(),
                          eval.scores.end());
      total.labels.insert(total.labels.end(), eval.labels.begin(),
                          eval.labels.end());
    }
    const int64_t samples = total.num_examples;
    if (samples == 0 || stop_) return absl::OkStatus();
    const int64_t correct = total.num_correct;
    v1::ReportEvaluationRequest report;
    report.set_worker_id(options_.worker_id);
    report.set_epoch(epoch);
    report.set_samples(samples);
    report.set_loss_sum(loss_sum);
    report.set_correct(correct);
    test_accuracy_->Set(static_cast<double>(correct) / samples);
    test_loss_->Set(loss_sum / samples);
    std::string auc_text;
    if (model_->task_kind() == TaskKind::kBinary) {
      absl::StatusOr<double> auc = RocAuc(total.scores, total.labels);
      if (auc.ok()) {
        report.set_auc(*auc);
        test_auc_->Set(*auc);
        auc_text = absl::StrCat(", AUC ", absl::SixDigits(*auc));
      }
    }
    LOG(INFO) << "epoch " << epoch + 1 << " test: "
              << (model_->task_kind() == TaskKind::kRegression
                      ? ""
                      : absl::StrCat("accuracy ",
                                     absl::SixDigits(100.0 * correct / samples),
                                     "%, "))
              << (model_->task_kind() == TaskKind::kBinary ? "log loss "
                  : model_->task_kind() == TaskKind::kRegression
                      ? "mean squared error "
                      : "loss ")
              << loss_sum / samples << auc_text << " on " << samples
              << " examples (" << absl::Now() - start << ")";
    return coordinator_->ReportEvaluation(report, absl::Minutes(1)).status();
  }

  template <typename BatchT>
  absl::Status Loop(const BatchSource<BatchT>& source) {
    while (!stop_ && !finished_ && !job_failed_) {
      v1::AcquirePartitionRequest acquire;
      acquire.set_worker_id(options_.worker_id);
      if (completing_) acquire.set_finishing_partition(completing_->partition);
      TESSERA_ASSIGN_OR_RETURN(
          v1::AcquirePartitionResponse lease,
          coordinator_->AcquirePartition(acquire, absl::Minutes(10)));
      if (lease.result() != v1::AcquirePartitionResponse::LEASED) {
        exchange_->DropPrefetch();  // Not the next step's after a wait.
      }
      if (completing_ &&
          (lease.result() != v1::AcquirePartitionResponse::LEASED ||
           lease.epoch() != completing_->epoch)) {
        // No lease until the completion is answered, or a lease of the next
        // epoch, which that completion ended: its evaluation comes first.
        TESSERA_RETURN_IF_ERROR(FinishCompletion(source));
        if (lease.result() != v1::AcquirePartitionResponse::LEASED) continue;
      }
      if (lease.result() == v1::AcquirePartitionResponse::FINISHED) break;
      if (lease.result() == v1::AcquirePartitionResponse::WAIT) {
        // Every partition is leased: wait for the epoch's stragglers.
        absl::SleepFor(absl::Milliseconds(
            std::clamp<int64_t>(lease.retry_after_ms(), 10, 2000)));
        continue;
      }
      // The coordinator may have moved this worker's clock up (to the slowest
      // lease holder); count from there, or its waits would be checked
      // against a clock it does not report.
      if (lease.clock() > clock_) clock_ = lease.clock();
      epoch_ = lease.epoch();
      partition_ = lease.partition();
      lease_lost_ = false;
      epoch_gauge_->Set(epoch_);
      auto totals = TrainPartition(source, lease.epoch(), lease.partition());
      partition_ = -1;
      // The previous partition's completion, answered while this one trained.
      TESSERA_RETURN_IF_ERROR(FinishCompletion(source));
      if (!totals.ok()) {
        if (IsRetryable(totals.status()) || lease_lost_ || stop_) {
          LOG(WARNING) << "partition " << lease.partition()
                       << " abandoned: " << totals.status();
          continue;
        }
        return totals.status();
      }
      if (stop_ || lease_lost_) continue;  // Handed back by Leave().
      v1::CompletePartitionRequest complete;
      complete.set_worker_id(options_.worker_id);
      complete.set_epoch(lease.epoch());
      complete.set_partition(lease.partition());
      complete.set_samples(totals->samples);
      complete.set_loss_sum(totals->loss_sum);
      complete.set_correct(totals->correct);
      complete.set_bad_lines(totals->bad_lines);
      complete.set_first_bad_line(totals->first_bad_line);
      StartCompletion(std::move(complete), exchange_->TakePending());
      // Under BSP every step follows the previous one's updates: the next
      // partition waits for this one's completion.
      if (staleness_bound_ == 0) {
        TESSERA_RETURN_IF_ERROR(FinishCompletion(source));
      }
    }
    TESSERA_RETURN_IF_ERROR(FinishCompletion(source));
    LOG(INFO) << "worker " << options_.worker_id
              << (stop_ ? ": stopping on request" : ": job finished")
              << " after " << clock_.load() << " steps";
    return absl::OkStatus();
  }

  const TrainerOptions options_;
  std::unique_ptr<CoordinatorClient> coordinator_;
  std::unique_ptr<PsClient> client_;
  std::unique_ptr<Model> model_;
  // After client_ and model_, which it uses: destroyed before them.
  std::unique_ptr<ParameterExchange> exchange_;
  // A partition trained and being completed in the background
  // (StartCompletion); after exchange_ and coordinator_, which its thread
  // uses: destroyed (and so waited for) before them.
  struct Completion {
    int epoch = -1;
    int partition = -1;
    std::future<absl::StatusOr<v1::CompletePartitionResponse>> response;
  };
  std::optional<Completion> completing_;
  v1::JobConfig job_;
  int staleness_bound_ = -1;
  JobDatasets data_;
  std::vector<int64_t> rows_per_field_;  // Tabular: table rows per field.

  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> lease_lost_{false};
  std::atomic<bool> job_failed_{false};
  absl::Mutex failure_mu_;
  std::string failure_ ABSL_GUARDED_BY(failure_mu_);
  std::atomic<int64_t> clock_{0};
  std::atomic<int> partition_{-1};
  std::atomic<int> epoch_{0};
  std::atomic<int64_t> unreported_samples_{0};
  Ema loss_ema_, accuracy_ema_;

  absl::Notification heartbeat_stop_;
  std::thread heartbeat_;

  metrics::Counter* samples_;
  metrics::Counter* steps_;
  metrics::Counter* partitions_;
  metrics::Counter* push_failures_;
  metrics::Counter* extrapolated_;
  metrics::Gauge* loss_;
  metrics::Gauge* train_accuracy_;
  metrics::Gauge* test_accuracy_;
  metrics::Gauge* test_loss_;
  metrics::Gauge* test_auc_;
  metrics::Gauge* epoch_gauge_;
  metrics::Gauge* coordinator_waiting_;
  metrics::Histogram* compute_;
  metrics::Histogram* pull_wait_;
  metrics::Histogram* push_wait_;
  metrics::Histogram* partition_switch_;
  metrics::Histogram* staleness_;
  // When this worker's last partition ended (its last step pushed);
  // InfinitePast once the next one's first step has counted it.
  absl::Time last_step_end_ = absl::InfinitePast();
};

Trainer::Trainer(TrainerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

Trainer::~Trainer() = default;

absl::Status Trainer::Run() { return impl_->Run(); }

void Trainer::RequestStop() { impl_->RequestStop(); }

}  // namespace worker
}  // namespace tessera

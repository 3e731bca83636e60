#include "ps/server/coordinator.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "ps/common/checked_math.h"
#include "ps/common/job_config.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"
#include "zlib.h"

namespace tessera {
namespace {

constexpr char kStateKey[] = "coordinator/state";

// `s` cut to at most `max` bytes, at a UTF-8 character boundary (a proto3
// string must stay valid UTF-8 to parse again).
std::string CutUtf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

bool SameSpecs(const std::vector<v1::TensorSpec>& a,
               const google::protobuf::RepeatedPtrField<v1::TensorSpec>& b) {
  if (a.size() != static_cast<size_t>(b.size())) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a[i], b[i])) {
      return false;
    }
  }
  return true;
}

}  // namespace

Coordinator::Coordinator(v1::JobConfig job, ShardStorage* storage,
                         metrics::Registry* registry, Clock now)
    : job_(std::move(job)),
      storage_(storage),
      now_(std::move(now)),
      staleness_(StalenessBound(job_)),
      lease_timeout_(absl::Seconds(job_.lease_timeout_s())) {
  auto gauge = [registry](const char* name, const char* help) {
    return &metrics::BuildGauge().Name(name).Help(help).Register(*registry).Add(
        {});
  };
  live_workers_ = gauge("tessera_coordinator_live_workers",
                        "Workers heard from within the lease timeout.");
  auto& partitions = metrics::BuildGauge()
                         .Name("tessera_coordinator_partitions")
                         .Help("Partitions of the current epoch by state.")
                         .Register(*registry);
  partitions_done_ = &partitions.Add({{"state", "done"}});
  partitions_leased_ = &partitions.Add({{"state", "leased"}});
  partitions_queued_ = &partitions.Add({{"state", "queued"}});
  epoch_gauge_ = gauge("tessera_coordinator_epoch",
                       "Current epoch (0-based; equals the configured epochs "
                       "when the job is finished).");
  gauge("tessera_coordinator_epochs_total_configured",
        "Epochs the job is configured to train.")
      ->Set(job_.epochs());
  job_finished_ = gauge("tessera_coordinator_job_finished",
                        "1 once every epoch is complete.");
  job_failed_ = gauge("tessera_coordinator_job_failed",
                      "1 once the job has failed (e.g. more bad input lines "
                      "than dataset.max_bad_lines); JobStatus.failed says "
                      "why.");
  test_auc_ = gauge("tessera_coordinator_test_auc",
                    "Area under the ROC curve of the latest evaluation that "
                    "reported one (binary tasks), 0..1.");
  bad_lines_total_ =
      &metrics::BuildCounter()
           .Name("tessera_coordinator_bad_lines_total")
           .Help(
               "Input lines workers skipped as unparseable, in accepted "
               "partition completions.")
           .Register(*registry)
           .Add({});
  clock_spread_ = gauge("tessera_coordinator_clock_spread_steps",
                        "Fastest minus slowest clock of workers holding a "
                        "lease.");
  membership_ = &metrics::BuildCounter()
                     .Name("tessera_coordinator_membership_changes_total")
                     .Help("Workers joining, leaving and expiring.")
                     .Register(*registry);
  for (const char* e : {"join", "leave", "expire"}) {
    membership_->Add({{"event", e}});
  }
  lease_expirations_ =
      &metrics::BuildCounter()
           .Name("tessera_coordinator_lease_expirations_total")
           .Help(
               "Leases returned to the queue because their worker went "
               "silent.")
           .Register(*registry)
           .Add({});
  ssp_wait_ = &metrics::BuildHistogram()
                   .Name("tessera_ps_ssp_wait_seconds")
                   .Help("Time pulls were held by the staleness bound.")
                   .Register(*registry)
                   .Add({}, metrics::LatencyBuckets());
  absl::MutexLock lock(&mu_);
  StartEpochLocked();
  UpdateGaugesLocked();
}

Coordinator::~Coordinator() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (reaper_.joinable()) reaper_.join();
}

absl::Status Coordinator::Load() {
  auto record = storage_->GetRecord(kStateKey);
  if (!record.ok()) return record.status();
  if (!record->has_value()) return Persist();  // A new job.
  v1::CoordinatorState state;
  if (!state.ParseFromString(**record)) {
    return absl::DataLossError("stored coordinator state is corrupt");
  }
  if (state.job_name() != job_.name()) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard 0's data directory holds job \"", state.job_name(),
                     "\", but --job_config names job \"", job_.name(),
                     "\"; use a fresh data directory for a new job"));
  }
  absl::MutexLock lock(&mu_);
  epoch_ = state.epoch();
  finished_ = state.finished();
  specs_.assign(state.specs().begin(), state.specs().end());
  epoch_stats_.assign(state.epoch_stats().begin(), state.epoch_stats().end());
  max_clock_ = state.max_clock();
  max_clock_spread_ = state.max_clock_spread();
  bad_lines_ = std::max<int64_t>(0, state.bad_lines());
  first_bad_line_ = state.first_bad_line();
  failed_ = state.failed();
  bad_lines_total_->Increment(bad_lines_);
  for (auto it = epoch_stats_.rbegin(); it != epoch_stats_.rend(); ++it) {
    if (it->has_test_auc()) {
      test_auc_->Set(it->test_auc());
      break;
    }
  }
  StartEpochLocked();
  for (int p : state.done()) {
    if (p >= 0 && p < static_cast<int>(done_.size()) && !done_[p]) {
      done_[p] = true;
      ++done_count_;
    }
  }
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [this](int p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                return done_[p];
                              }),
               queue_.end());
  LOG(INFO) << "coordinator: resumed job " << job_.name() << " at epoch "
            << epoch_ << " of " << job_.epochs() << " with " << done_count_
            << " of " << done_.size() << " partitions done"
            << (finished_ ? " (finished)" : "")
            << (failed_.empty() ? "" : " (failed: " + failed_ + ")");
  UpdateGaugesLocked();
  return absl::OkStatus();
}

void Coordinator::SetModelFile(std::string contents) {
  // zlib's crc32 takes a uInt length: feed it in pieces.
  uLong crc = crc32(0L, Z_NULL, 0);
  const char* p = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(left, 1 << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(p), n);
    p += n;
    left -= n;
  }
  absl::MutexLock lock(&mu_);
  model_file_crc32_ = static_cast<uint32_t>(crc);
  model_file_ = std::make_shared<const std::string>(std::move(contents));
}

std::shared_ptr<const std::string> Coordinator::model_file() const {
  absl::ReaderMutexLock lock(&mu_);
  return model_file_;
}

void Coordinator::StartReaper(absl::Duration period) {
  reaper_ = std::thread([this, period] {
    absl::MutexLock lock(&mu_);
    auto stopping = [this]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), period)) {
      ExpireStaleLocked();
      UpdateGaugesLocked();
    }
  });
}

void Coordinator::StartEpochLocked() {
  const int n = job_.partitions_per_epoch();
  done_.assign(n, false);
  done_count_ = 0;
  leased_.clear();
  queue_.clear();
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  // A different, reproducible partition order each epoch.
  std::mt19937_64 rng(job_.model().seed() * 1000003 + epoch_);
  std::shuffle(order.begin(), order.end(), rng);
  queue_.assign(order.begin(), order.end());
  for (auto& [id, w] : workers_) w.partition = w.finishing = -1;
}

absl::Status Coordinator::CheckWorkerId(const std::string& id) const {
  if (id.empty() || id.size() > 253) {
    return absl::InvalidArgumentError(
        "worker_id must be 1 to 253 bytes (the pod or host name)");
  }
  return absl::OkStatus();
}

namespace {

// Counts a worker reports: non-negative, correct <= samples, a finite loss.
// They are added up with SaturatingAdd, so no report can wrap a total.
absl::Status CheckCounts(int64_t samples, int64_t correct, double loss_sum) {
  if (samples < 0 || correct < 0 || correct > samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples (", samples, ") and correct (", correct,
                     ") must satisfy 0 <= correct <= samples"));
  }
  if (!std::isfinite(loss_sum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss_sum must be finite, got ", loss_sum));
  }
  return absl::OkStatus();
}

absl::Status CheckClock(int64_t clock) {
  if (clock < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("clock must be >= 0, got ", clock));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Coordinator::Worker*> Coordinator::TouchLocked(
    const std::string& id, bool* joined) {
  // Every new id is a record until its lease times out: bound them, so a
  // client inventing ids cannot grow the coordinator (or its log) at will.
  if (workers_.size() >= static_cast<size_t>(kMaxLiveWorkers) &&
      !workers_.contains(id)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job already has ", workers_.size(), " live workers (at most ",
        kMaxLiveWorkers, "); ", id, " may join once one leaves or expires"));
  }
  auto [it, inserted] = workers_.try_emplace(id);
  if (inserted) {
    std::string unused;
    const int64_t min = MinActiveClockLocked(&unused);
    it->second.clock = min >= 0 ? min : max_clock_;
    ++membership_changes_;
    membership_->Add({{"event", "join"}}).Increment();
    LOG(INFO) << "coordinator: worker " << id << " joined (" << workers_.size()
              << " live)";
  }
  if (joined != nullptr) *joined = inserted;
  it->second.last_seen = now_();
  return &it->second;
}

void Coordinator::RequeueLocked(int partition) {
  leased_.erase(partition);
  if (partition >= 0 && partition < static_cast<int>(done_.size()) &&
      !done_[partition]) {
    queue_.push_front(partition);
  }
}

int Coordinator::RequeueHeldLocked(const Worker& w) {
  int requeued = 0;
  for (int p : {w.partition, w.finishing}) {
    if (p < 0) continue;
    RequeueLocked(p);
    ++requeued;
  }
  return requeued;
}

void Coordinator::ExpireStale() {
  absl::MutexLock lock(&mu_);
  ExpireStaleLocked();
}

void Coordinator::ExpireStaleLocked() {
  const absl::Time cutoff = now_() - lease_timeout_;
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.last_seen >= cutoff) {
      ++it;
      continue;
    }
    LOG(WARNING) << "coordinator: worker " << it->first << " silent for "
                 << lease_timeout_ << "; dropping it"
                 << (it->second.partition >= 0
                         ? absl::StrCat(" and requeueing partition ",
                                        it->second.partition)
                         : "")
                 << (it->second.finishing >= 0
                         ? absl::StrCat(" and partition ", it->second.finishing,
                                        ", whose completion never came")
                         : "");
    lease_expirations_->Increment(RequeueHeldLocked(it->second));
    ++membership_changes_;
    membership_->Add({{"event", "expire"}}).Increment();
    workers_.erase(it++);
  }
}

int64_t Coordinator::MinActiveClockLocked(std::string* slowest) const {
  int64_t min = -1;
  for (const auto& [id, w] : workers_) {
    if (w.partition < 0) continue;
    if (min < 0 || w.clock < min) {
      min = w.clock;
      *slowest = id;
    }
  }
  return min;
}

v1::EpochStats& Coordinator::StatsLocked(int epoch) {
  for (auto& s : epoch_stats_) {
    if (s.epoch() == epoch) return s;
  }
  epoch_stats_.emplace_back();
  epoch_stats_.back().set_epoch(epoch);
  epoch_stats_.back().set_started_unix_ms(absl::ToUnixMillis(now_()));
  return epoch_stats_.back();
}

void Coordinator::NoteClocksLocked() {
  int64_t lo = -1, hi = -1;
  for (const auto& [id, w] : workers_) {
    if (w.partition < 0) continue;
    lo = lo < 0 ? w.clock : std::min(lo, w.clock);
    hi = std::max(hi, w.clock);
  }
  const int64_t spread = lo < 0 ? 0 : hi - lo;
  clock_spread_->Set(spread);
  max_clock_spread_ = std::max(max_clock_spread_, spread);
}

void Coordinator::UpdateGaugesLocked() {
  live_workers_->Set(workers_.size());
  partitions_done_->Set(done_count_);
  partitions_leased_->Set(leased_.size());
  partitions_queued_->Set(queue_.size());
  epoch_gauge_->Set(epoch_);
  job_finished_->Set(finished_ ? 1 : 0);
  job_failed_->Set(failed_.empty() ? 0 : 1);
  NoteClocksLocked();
}

absl::Status Coordinator::Persist() {
  absl::MutexLock persist(&persist_mu_);
  v1::CoordinatorState state;
  {
    absl::ReaderMutexLock lock(&mu_);
    state.set_job_name(job_.name());
    state.set_epoch(epoch_);
    state.set_finished(finished_);
    for (size_t p = 0; p < done_.size(); ++p) {
      if (done_[p]) state.add_done(p);
    }
    for (const auto& s : specs_) *state.add_specs() = s;
    for (const auto& s : epoch_stats_) *state.add_epoch_stats() = s;
    state.set_max_clock(max_clock_);
    state.set_max_clock_spread(max_clock_spread_);
    state.set_bad_lines(bad_lines_);
    state.set_first_bad_line(first_bad_line_);
    state.set_failed(failed_);
  }
  return storage_->PutRecord(kStateKey, state.SerializeAsString());
}

absl::StatusOr<v1::JoinResponse> Coordinator::Join(
    const v1::JoinRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  v1::JoinResponse response;
  absl::MutexLock lock(&mu_);
  ExpireStaleLocked();
  TESSERA_ASSIGN_OR_RETURN(Worker * touched,
                           TouchLocked(request.worker_id(), nullptr));
  Worker& w = *touched;
  *response.mutable_job() = job_;
  for (const auto& s : specs_) *response.add_specs() = s;
  response.set_initial_clock(w.clock);
  response.set_finished(finished_);
  response.set_failed(failed_);
  response.set_model_file_bytes(model_file_ ? model_file_->size() : 0);
  response.set_model_file_crc32(model_file_crc32_);
  UpdateGaugesLocked();
  return response;
}

absl::StatusOr<v1::RegisterModelResponse> Coordinator::RegisterModel(
    const v1::RegisterModelRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  if (request.specs().empty()) {
    return absl::InvalidArgumentError("RegisterModel with no tensor specs");
  }
  // The coordinator keeps and persists the model: it checks it as a shard
  // checks a CreateTensors.
  constexpr int kMaxSpecs = 100000;
  if (request.specs_size() > kMaxSpecs) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterModel with ", request.specs_size(),
                     " tensor specs; at most ", kMaxSpecs));
  }
  for (const v1::TensorSpec& spec : request.specs()) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("RegisterModel: ", valid.message()));
    }
  }
  v1::RegisterModelResponse response;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_RETURN_IF_ERROR(TouchLocked(request.worker_id(), nullptr).status());
    if (!specs_.empty()) {
      if (!SameSpecs(specs_, request.specs())) {
        return absl::AlreadyExistsError(absl::StrCat(
            "job ", job_.name(), " already has a model of ", specs_.size(),
            " tensors registered (first: ", specs_[0].ShortDebugString(),
            "); worker ", request.worker_id(), " offers a different one (",
            request.specs_size(),
            " tensors, first: ", request.specs(0).ShortDebugString(), ")"));
      }
      return response;
    }
    specs_.assign(request.specs().begin(), request.specs().end());
    response.set_created(true);
    LOG(INFO) << "coordinator: worker " << request.worker_id()
              << " registered the model: " << specs_.size() << " tensors";
  }
  absl::Status persisted = Persist();
  if (!persisted.ok()) return persisted;
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  TESSERA_RETURN_IF_ERROR(CheckClock(request.clock()));
  if (request.samples() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples must be >= 0, got ", request.samples()));
  }
  v1::HeartbeatResponse response;
  absl::MutexLock lock(&mu_);
  ExpireStaleLocked();
  TESSERA_ASSIGN_OR_RETURN(Worker * touched,
                           TouchLocked(request.worker_id(), nullptr));
  Worker& w = *touched;
  w.clock = std::max(w.clock, request.clock());
  max_clock_ = std::max(max_clock_, w.clock);
  NoteClocksLocked();
  w.samples = SaturatingAdd(w.samples, request.samples());
  const int p = request.partition();
  if (p >= 0) {
    auto holder = leased_.find(p);
    if (request.epoch() != epoch_ || p >= static_cast<int>(done_.size()) ||
        done_[p] ||
        (holder != leased_.end() && holder->second != request.worker_id())) {
      response.set_lease_lost(true);
      if (w.partition == p) w.partition = -1;
    } else if (holder == leased_.end()) {
      // Re-adopt a lease the coordinator forgot (it restarted).
      leased_[p] = request.worker_id();
      queue_.erase(std::remove(queue_.begin(), queue_.end(), p), queue_.end());
      w.partition = p;
    }
  }
  std::string slowest;
  response.set_min_clock(MinActiveClockLocked(&slowest));
  response.set_finished(finished_);
  response.set_failed(failed_);
  UpdateGaugesLocked();
  return response;
}

absl::Status Coordinator::Leave(const v1::LeaveRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(request.worker_id());
  if (it == workers_.end()) return absl::OkStatus();
  RequeueHeldLocked(it->second);
  workers_.erase(it);
  ++membership_changes_;
  membership_->Add({{"event", "leave"}}).Increment();
  LOG(INFO) << "coordinator: worker " << request.worker_id() << " left ("
            << workers_.size() << " live)";
  UpdateGaugesLocked();
  return absl::OkStatus();
}

absl::StatusOr<v1::AcquirePartitionResponse> Coordinator::AcquirePartition(
    const v1::AcquirePartitionRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  v1::AcquirePartitionResponse response;
  absl::MutexLock lock(&mu_);
  ExpireStaleLocked();
  TESSERA_ASSIGN_OR_RETURN(Worker * touched,
                           TouchLocked(request.worker_id(), nullptr));
  Worker& w = *touched;
  response.set_num_partitions(job_.partitions_per_epoch());
  response.set_epoch(epoch_);
  // A failed job hands out no more work: FINISHED stops the worker, and its
  // heartbeat and Join say why (failed).
  if (finished_ || !failed_.empty()) {
    response.set_result(v1::AcquirePartitionResponse::FINISHED);
    return response;
  }
  if (w.partition >= 0) {
    if (request.has_finishing_partition() &&
        request.finishing_partition() == w.partition) {
      // Trained; its completion is on the way. One at most: an older one
      // whose completion never came is handed back.
      if (w.finishing >= 0) RequeueLocked(w.finishing);
      w.finishing = w.partition;
    } else {
      RequeueLocked(w.partition);  // Abandoned.
    }
  }
  w.partition = -1;
  if (queue_.empty()) {
    response.set_result(v1::AcquirePartitionResponse::WAIT);
    response.set_retry_after_ms(200);
    UpdateGaugesLocked();
    return response;
  }
  // Catch up to the slowest active worker before counting in SSP. With
  // nobody active, catch up to the highest clock reached: otherwise a worker
  // that idled (e.g. at an epoch's end while another finished the last
  // partition) and leases first would start far behind, and the others would
  // wait for it to catch up.
  std::string slowest;
  const int64_t min = MinActiveClockLocked(&slowest);
  w.clock = std::max(w.clock, min >= 0 ? min : max_clock_);
  const int p = queue_.front();
  queue_.pop_front();
  leased_[p] = request.worker_id();
  w.partition = p;
  response.set_result(v1::AcquirePartitionResponse::LEASED);
  response.set_partition(p);
  response.set_lease_expiry_unix_ms(
      absl::ToUnixMillis(now_() + lease_timeout_));
  response.set_clock(w.clock);
  StatsLocked(epoch_);
  UpdateGaugesLocked();
  return response;
}

absl::StatusOr<v1::CompletePartitionResponse> Coordinator::CompletePartition(
    const v1::CompletePartitionRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  TESSERA_RETURN_IF_ERROR(
      CheckCounts(request.samples(), request.correct(), request.loss_sum()));
  if (request.bad_lines() < 0 || request.bad_lines() > kMaxBadLinesPerReport) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad_lines must be in [0, ", kMaxBadLinesPerReport,
                     "], got ", request.bad_lines()));
  }
  v1::CompletePartitionResponse response;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Worker * touched,
                             TouchLocked(request.worker_id(), nullptr));
    Worker& w = *touched;
    const int p = request.partition();
    auto holder = leased_.find(p);
    const bool valid_partition = request.epoch() == epoch_ && p >= 0 &&
                                 p < static_cast<int>(done_.size()) &&
                                 !done_[p] && !finished_ && failed_.empty();
    const bool ours =
        holder == leased_.end() || holder->second == request.worker_id();
    if (w.partition == p) w.partition = -1;
    if (w.finishing == p) w.finishing = -1;
    if (valid_partition && ours) {
      done_[p] = true;
      ++done_count_;
      leased_.erase(p);
      queue_.erase(std::remove(queue_.begin(), queue_.end(), p), queue_.end());
      v1::EpochStats& stats = StatsLocked(epoch_);
      stats.set_samples(SaturatingAdd(stats.samples(), request.samples()));
      stats.set_loss_sum(stats.loss_sum() + request.loss_sum());
      stats.set_correct(SaturatingAdd(stats.correct(), request.correct()));
      stats.set_partitions_done(stats.partitions_done() + 1);
      response.set_accepted(true);
      changed = true;
      NoteBadLinesLocked(request);
      if (done_count_ == static_cast<int>(done_.size())) {
        stats.set_finished_unix_ms(absl::ToUnixMillis(now_()));
        response.set_epoch_finished(true);
        LOG(INFO) << "coordinator: epoch " << epoch_
                  << " complete: " << stats.samples() << " samples, mean loss "
                  << (stats.samples() ? stats.loss_sum() / stats.samples() : 0)
                  << ", training accuracy "
                  << (stats.samples()
                          ? 100.0 * stats.correct() / stats.samples()
                          : 0)
                  << "%";
        ++epoch_;
        if (epoch_ >= job_.epochs()) {
          finished_ = true;
          LOG(INFO) << "coordinator: job " << job_.name() << " finished";
        } else {
          StartEpochLocked();
        }
      }
    }
    response.set_job_finished(finished_);
    response.set_failed(failed_);
    UpdateGaugesLocked();
  }
  if (changed) {
    absl::Status persisted = Persist();
    if (!persisted.ok()) return persisted;
  }
  return response;
}

void Coordinator::NoteBadLinesLocked(
    const v1::CompletePartitionRequest& request) {
  if (request.bad_lines() == 0) return;
  bad_lines_ = SaturatingAdd(bad_lines_, request.bad_lines());
  bad_lines_total_->Increment(request.bad_lines());
  if (first_bad_line_.empty() && !request.first_bad_line().empty()) {
    first_bad_line_ = CutUtf8(request.first_bad_line(), kMaxBadLineBytes);
  }
  const v1::DatasetConfig& dataset = job_.dataset();
  if (failed_.empty() && dataset.has_max_bad_lines() &&
      bad_lines_ > dataset.max_bad_lines()) {
    failed_ = absl::StrCat(
        bad_lines_, " bad input lines, more than max_bad_lines ",
        dataset.max_bad_lines(), "; first: ",
        first_bad_line_.empty() ? "(not reported)" : first_bad_line_);
    LOG(ERROR) << "coordinator: job " << job_.name() << " failed: " << failed_;
  }
}

absl::StatusOr<v1::WaitForClockResponse> Coordinator::WaitForClock(
    const v1::WaitForClockRequest& request, absl::Duration max_wait) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  if (request.max_wait_ms() > 0) {
    max_wait = std::min(max_wait, absl::Milliseconds(request.max_wait_ms()));
  }
  TESSERA_RETURN_IF_ERROR(CheckClock(request.clock()));
  const absl::Time start = now_();
  v1::WaitForClockResponse response;
  absl::MutexLock lock(&mu_);
  TESSERA_ASSIGN_OR_RETURN(Worker * touched,
                           TouchLocked(request.worker_id(), nullptr));
  Worker& w = *touched;
  w.clock = std::max(w.clock, request.clock());
  max_clock_ = std::max(max_clock_, w.clock);
  NoteClocksLocked();  // Before waiting: the caller is held at this clock.
  const int64_t clock = w.clock;
  std::string slowest;
  auto may_proceed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (staleness_ < 0 || finished_ || !failed_.empty()) return true;
    const int64_t min = MinActiveClockLocked(&slowest);
    return min < 0 || clock - min <= staleness_;
  };
  bool ok = may_proceed();
  if (!ok) {
    mu_.AwaitWithTimeout(absl::Condition(&may_proceed), max_wait);
    ok = may_proceed();
    ssp_wait_->Observe(absl::ToDoubleSeconds(now_() - start));
  }
  response.set_may_proceed(ok);
  response.set_min_clock(MinActiveClockLocked(&slowest));
  response.set_slowest_worker(slowest);
  UpdateGaugesLocked();
  return response;
}

absl::Status Coordinator::ReportEvaluation(
    const v1::ReportEvaluationRequest& request) {
  absl::Status id = CheckWorkerId(request.worker_id());
  if (!id.ok()) return id;
  TESSERA_RETURN_IF_ERROR(
      CheckCounts(request.samples(), request.correct(), request.loss_sum()));
  if (request.has_auc() && !(std::isfinite(request.auc()) &&
                             request.auc() >= 0 && request.auc() <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auc must be a finite number in [0, 1], got ", request.auc()));
  }
  {
    absl::MutexLock lock(&mu_);
    // Only epochs of this job: every other value would add a record.
    if (request.epoch() < 0 || request.epoch() > epoch_ ||
        request.epoch() >= job_.epochs()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "evaluation of epoch ", request.epoch(), "; job ", job_.name(),
          " is at epoch ", epoch_, " of ", job_.epochs()));
    }
    TESSERA_RETURN_IF_ERROR(TouchLocked(request.worker_id(), nullptr).status());
    v1::EpochStats& stats = StatsLocked(request.epoch());
    stats.set_test_samples(
        SaturatingAdd(stats.test_samples(), request.samples()));
    stats.set_test_loss_sum(stats.test_loss_sum() + request.loss_sum());
    stats.set_test_correct(
        SaturatingAdd(stats.test_correct(), request.correct()));
    if (request.has_auc()) {
      // An AUC does not add up: the latest report of the epoch stands.
      stats.set_test_auc(request.auc());
      test_auc_->Set(request.auc());
    }
  }
  return Persist();
}

v1::JobStatus Coordinator::Status() const {
  v1::JobStatus status;
  absl::ReaderMutexLock lock(&mu_);
  status.set_job_name(job_.name());
  status.set_epoch(epoch_);
  status.set_epochs(job_.epochs());
  status.set_partitions_done(done_count_);
  status.set_partitions_leased(leased_.size());
  status.set_partitions_queued(queue_.size());
  status.set_finished(finished_);
  status.set_membership_changes(membership_changes_);
  status.set_max_clock_spread(max_clock_spread_);
  status.set_bad_lines(bad_lines_);
  status.set_first_bad_line(first_bad_line_);
  status.set_failed(failed_);
  *status.mutable_consistency() = job_.consistency();
  for (const auto& [id, w] : workers_) {
    v1::WorkerStatus* ws = status.add_workers();
    ws->set_worker_id(id);
    ws->set_clock(w.clock);
    ws->set_partition(w.partition);
    ws->set_last_seen_unix_ms(absl::ToUnixMillis(w.last_seen));
    ws->set_samples(w.samples);
  }
  std::sort(status.mutable_workers()->begin(), status.mutable_workers()->end(),
            [](const v1::WorkerStatus& a, const v1::WorkerStatus& b) {
              return a.worker_id() < b.worker_id();
            });
  for (const auto& s : epoch_stats_) *status.add_epoch_stats() = s;
  return status;
}

}  // namespace tessera

#include "ps/server/shard.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "ps/common/reject_reason.h"

namespace tessera {

// An update in flight. Begin() checks the state and registers the update in
// one critical section with Drain()'s change of state, so once Drain() has
// set kDraining no update begins, and Drain() waits for those that did.
// Apply() runs the update under apply_mu_ shared; the final flush copies the
// state under apply_mu_ exclusive. So an update is either applied before
// that copy (and in it, and acknowledged) or refused before it changes
// anything (Unavailable, for the client to resend to the restarted shard):
// never lost, never applied twice, even when the drain's deadline passed.
class Shard::InFlight {
 public:
  explicit InFlight(Shard* shard) : shard_(shard) {}
  ~InFlight() {
    if (!registered_) return;
    absl::MutexLock lock(&shard_->inflight_mu_);
    --shard_->inflight_;
  }

  // OK and registered while serving; the state's error otherwise.
  absl::Status Begin() {
    absl::MutexLock lock(&shard_->inflight_mu_);
    absl::Status serving = shard_->CheckServing(true);
    if (!serving.ok()) return serving;
    ++shard_->inflight_;
    registered_ = true;
    return absl::OkStatus();
  }

  // Runs `update` unless the final flush has copied the state already.
  template <typename F>
  auto Apply(F update) -> decltype(update()) {
    absl::ReaderMutexLock lock(&shard_->apply_mu_);
    if (shard_->final_flush_started_) {
      return Rejected(absl::StatusCode::kUnavailable, kReasonShuttingDown,
                      absl::StrCat("shard ", shard_->options_.shard_index,
                                   " has written its final flush; resend "
                                   "this update once it is back"));
    }
    return update();
  }

 private:
  Shard* const shard_;
  bool registered_ = false;
};

Shard::Shard(ShardOptions options, metrics::Registry* registry)
    : options_(std::move(options)), registry_(registry) {
  StoreOptions store_options;
  store_options.shard_index = options_.shard_index;
  store_options.placement = options_.placement;
  store_options.block_floats = options_.block_floats;
  store_options.non_finite = options_.non_finite;
  store_options.max_memory_bytes = options_.max_memory_bytes;
  store_ = std::make_unique<TensorStore>(store_options);
  RegisterMetrics();
}

Shard::~Shard() {
  stop_loading_ = true;
  if (loader_.joinable()) loader_.join();
  flusher_.reset();  // Stops its thread before storage_ goes.
}

void Shard::RegisterMetrics() {
  using metrics::BuildCounter;
  using metrics::BuildGauge;
  using metrics::BuildHistogram;
  requests_ = &BuildCounter()
                   .Name("tessera_ps_requests_total")
                   .Help(
                       "Requests answered by this shard, by rpc and status "
                       "code (gRPC and data plane).")
                   .Register(*registry_);
  latency_ = &BuildHistogram()
                  .Name("tessera_ps_request_latency_seconds")
                  .Help("Time from receiving a request to its reply, by rpc.")
                  .Register(*registry_);
  received_bytes_ = &BuildCounter()
                         .Name("tessera_ps_received_bytes_total")
                         .Help(
                             "Request payload bytes received (in frames or "
                             "through shared memory), by rpc.")
                         .Register(*registry_);
  sent_bytes_ = &BuildCounter()
                     .Name("tessera_ps_sent_bytes_total")
                     .Help(
                         "Reply payload bytes sent (in frames or through "
                         "shared memory), by rpc.")
                     .Register(*registry_);
  rejected_ = &BuildCounter()
                   .Name("tessera_ps_rejected_requests_total")
                   .Help(
                       "Requests rejected for bad input or state, by "
                       "reason; a rejected request changes nothing.")
                   .Register(*registry_);
  updates_applied_ = &BuildCounter()
                          .Name("tessera_ps_updates_applied_total")
                          .Help("Gradient pushes applied by the optimizer.")
                          .Register(*registry_)
                          .Add({});
  updates_skipped_ = &BuildCounter()
                          .Name("tessera_ps_updates_skipped_total")
                          .Help(
                              "Gradient pushes dropped for NaN/Inf values "
                              "(--nan_policy=skip).")
                          .Register(*registry_)
                          .Add({});
  flush_duration_ = &BuildHistogram()
                         .Name("tessera_ps_flush_duration_seconds")
                         .Help(
                             "Duration of flushes of changed blocks to "
                             "RocksDB.")
                         .Register(*registry_)
                         .Add({}, metrics::ExponentialBuckets(0.001, 2, 16));
  flush_bytes_ = &BuildCounter()
                      .Name("tessera_ps_flush_bytes_total")
                      .Help("Parameter and optimizer-slot bytes flushed.")
                      .Register(*registry_)
                      .Add({});
  flush_failures_ = &BuildCounter()
                         .Name("tessera_ps_flush_failures_total")
                         .Help(
                             "Flushes that failed to write (the shard keeps "
                             "serving from memory and retries).")
                         .Register(*registry_)
                         .Add({});
  load_duration_ = &BuildGauge()
                        .Name("tessera_ps_load_duration_seconds")
                        .Help("Time the last start-up took to load RocksDB.")
                        .Register(*registry_)
                        .Add({});
  loading_rows_ = &BuildGauge()
                       .Name("tessera_ps_loading_rows")
                       .Help(
                           "1 while embedding rows left on disk at start-up "
                           "load in the background (misses read the disk).")
                       .Register(*registry_)
                       .Add({});
  serving_ = &BuildGauge()
                  .Name("tessera_ps_serving")
                  .Help(
                      "1 while the shard serves, 0 while loading or "
                      "draining.")
                  .Register(*registry_)
                  .Add({});
  auto& parameter_bytes = BuildGauge()
                              .Name("tessera_ps_parameter_bytes")
                              .Help("Bytes of parameters held in memory.")
                              .Register(*registry_)
                              .Add({});
  auto& slot_bytes = BuildGauge()
                         .Name("tessera_ps_optimizer_slot_bytes")
                         .Help("Bytes of optimizer state held in memory.")
                         .Register(*registry_)
                         .Add({});
  auto& table_overhead_bytes =
      BuildGauge()
          .Name("tessera_ps_table_overhead_bytes")
          .Help(
              "Bytes embedding tables hold beyond parameters and optimizer "
              "state: row ids and steps, the id index, unused chunk rows.")
          .Register(*registry_)
          .Add({});
  auto& tensors = BuildGauge()
                      .Name("tessera_ps_tensors")
                      .Help("Tensors with a part on this shard.")
                      .Register(*registry_)
                      .Add({});
  auto& flush_age = BuildGauge()
                        .Name("tessera_ps_last_flush_age_seconds")
                        .Help("Seconds since memory and disk last agreed.")
                        .Register(*registry_)
                        .Add({});
  registry_->AddCollectHook([this, &parameter_bytes, &slot_bytes,
                             &table_overhead_bytes, &tensors, &flush_age] {
    parameter_bytes.Set(store_->parameter_bytes());
    slot_bytes.Set(store_->slot_bytes());
    table_overhead_bytes.Set(store_->table_overhead_bytes());
    tensors.Set(store_->num_tensors());
    if (state_.load() != State::kLoading && flusher_ != nullptr) {
      flush_age.Set(
          absl::ToDoubleSeconds(absl::Now() - flusher_->stats().last_success));
    }
  });
  for (const char* reason : kRejectReasons) {
    rejected_->Add({{"reason", reason}});
  }
  RegisterTableMetrics();
}

void Shard::RegisterTableMetrics() {
  using metrics::BuildCounter;
  using metrics::BuildGauge;
  auto& rows = BuildGauge()
                   .Name("tessera_ps_table_rows")
                   .Help("Rows an embedding table holds in memory, by tensor.")
                   .Register(*registry_);
  auto counter = [this](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Register(*registry_);
  };
  // The store's counters, by field, as exported counters.
  struct Field {
    metrics::Family<metrics::Counter>* family;
    int64_t TablePolicyStats::*value;
  };
  const std::vector<Field> fields = {
      {counter("tessera_ps_table_admissions_total",
               "Embedding rows created by pushes, by tensor."),
       &TablePolicyStats::admissions},
      {counter("tessera_ps_table_admission_drops_total",
               "Pushes of an id dropped because its memory policy had not "
               "admitted it yet, by tensor."),
       &TablePolicyStats::admission_drops},
      {counter("tessera_ps_table_evictions_total",
               "Rows evicted over a memory policy's max_rows (deleted, or to "
               "disk for EVICTION_DISK), by tensor."),
       &TablePolicyStats::evictions},
      {counter("tessera_ps_table_expiries_total",
               "Rows deleted by a memory policy's expiry, by tensor."),
       &TablePolicyStats::expiries},
      {counter("tessera_ps_table_pull_hits_total",
               "Pulled rows held in memory, by tensor."),
       &TablePolicyStats::pull_hits},
      {counter("tessera_ps_table_pull_misses_total",
               "Pulled rows not held in memory (read from disk, or as their "
               "initial values), by tensor."),
       &TablePolicyStats::pull_misses},
      {counter("tessera_ps_table_disk_reads_total",
               "Rows missing from memory looked up on disk by pulls and "
               "pushes, by tensor."),
       &TablePolicyStats::disk_reads},
      {counter("tessera_ps_table_disk_hits_total",
               "Rows looked up on disk and found there, by tensor."),
       &TablePolicyStats::disk_hits},
      {counter("tessera_ps_table_rows_loaded_total",
               "Rows loaded from disk by the background load after start-up, "
               "by tensor."),
       &TablePolicyStats::rows_loaded},
  };
  auto& size_rows =
      BuildGauge()
          .Name("tessera_ps_table_size_rows")
          .Help(
              "Rows an embedding table holds in memory and on disk (exact), by "
              "tensor.")
          .Register(*registry_);
  auto& disk_bytes =
      BuildGauge()
          .Name("tessera_ps_table_disk_bytes")
          .Help(
              "RocksDB's estimate of the bytes an embedding table's rows take "
              "on disk (every flushed row), by tensor.")
          .Register(*registry_);
  registry_->AddCollectHook([this, &rows, &size_rows, &disk_bytes, fields] {
    absl::MutexLock lock(&table_stats_mu_);
    for (const TablePolicyStats& now : store_->PolicyStats()) {
      TablePolicyStats& seen = table_stats_seen_[now.tensor];
      const metrics::Labels labels = {{"tensor", now.tensor}};
      rows.Add(labels).Set(now.rows);
      size_rows.Add(labels).Set(now.total_rows);
      if (state_.load() != State::kLoading && storage_ != nullptr) {
        disk_bytes.Add(labels).Set(storage_->ApproximateRowBytes(now.tensor));
      }
      for (const Field& f : fields) {
        // The store's counters only grow: the difference is what is new.
        f.family->Add(labels).Increment(now.*f.value - seen.*f.value);
      }
      seen = now;
    }
  });
}

absl::Status Shard::Load() {
  const absl::Time start = absl::Now();
  LOG(INFO) << "shard " << options_.shard_index << ": loading "
            << options_.data_dir;
  auto storage = ShardStorage::Open(options_.data_dir, options_.shard_index,
                                    options_.placement);
  if (!storage.ok()) return storage.status();
  storage_ = *std::move(storage);
  if (options_.storage_write_fault) {
    storage_->set_write_fault(options_.storage_write_fault);
  }
  LOG(INFO) << "shard " << options_.shard_index << ": RocksDB opened in "
            << (absl::Now() - start)
            << " (after a crash, that includes replaying its log); reading "
               "specs, dense tensors and versions";
  LoadOptions load_options;
  load_options.rows = false;  // but those of tables whose policy deletes
  auto loaded = storage_->LoadInto(store_.get(), load_options);
  if (!loaded.ok()) return loaded.status();
  store_->AttachDisk(storage_.get(), /*rows_on_disk_only=*/true);
  const absl::Duration took = absl::Now() - start;
  load_duration_->Set(absl::ToDoubleSeconds(took));
  LOG(INFO) << "shard " << options_.shard_index << ": loaded "
            << loaded->tensors << " tensors, " << loaded->blocks << " blocks, "
            << loaded->rows << " embedding rows (" << loaded->bytes
            << " bytes) in " << took << "; about "
            << loaded->rows_skipped_estimate
            << " rows stay on disk until read or loaded in the background";
  flusher_ = std::make_unique<Flusher>(store_.get(), storage_.get(),
                                       options_.flush_interval);
  flusher_->set_observer(
      [this](absl::Duration d, int64_t bytes, const absl::Status& status) {
        flush_duration_->Observe(absl::ToDoubleSeconds(d));
        if (status.ok()) {
          flush_bytes_->Increment(bytes);
        } else {
          flush_failures_->Increment();
        }
      });
  flusher_->Start();
  std::vector<std::string> loading;
  for (const std::string& table : store_->LoadingTables()) {
    // A table with no row on disk (all of a new directory's) has nothing to
    // load and need not read the disk: one seek tells.
    auto first = storage_->ScanStoredRows(table, std::nullopt, 1);
    if (first.ok() && first->rows.empty()) {
      store_->FinishLoading(table);
    } else {
      loading.push_back(table);
    }
  }
  if (loading.empty()) {
    background_load_done_ = true;
  } else {
    loading_rows_->Set(1);
    loader_ = std::thread([this, loading]() mutable {
      LoadRowsInBackground(std::move(loading));
    });
  }
  state_ = State::kServing;
  serving_->Set(1);
  return absl::OkStatus();
}

void Shard::LoadRowsInBackground(std::vector<std::string> tables) {
  const absl::Time start = absl::Now();
  int64_t total = 0;
  bool complete = true;
  for (const std::string& table : tables) {
    LOG(INFO) << "shard " << options_.shard_index << ": loading the rows of "
              << table << " in the background (misses read the disk "
              << "until it is done)";
    int64_t loaded = 0;
    const absl::Status status = storage_->WalkStoredRows(
        table, 4096, [&](const StoredRowBatch& batch) -> absl::Status {
          if (stop_loading_.load()) return absl::CancelledError("stopping");
          auto n = store_->LoadRows(table, batch);
          if (!n.ok()) return n.status();
          loaded += *n;
          return absl::OkStatus();
        });
    total += loaded;
    if (stop_loading_.load()) return;
    if (!status.ok()) {
      complete = false;
      LOG(ERROR) << "shard " << options_.shard_index << ": loading the rows "
                 << "of " << table << " stopped after " << loaded
                 << " rows; its misses keep reading the disk: " << status;
      continue;
    }
    store_->FinishLoading(table);
    LOG(INFO) << "shard " << options_.shard_index << ": " << table << ": "
              << loaded << " rows loaded; it no longer reads the disk";
  }
  LOG(INFO) << "shard " << options_.shard_index << ": background load "
            << (complete ? "done" : "incomplete") << ", " << total
            << " rows in " << (absl::Now() - start);
  loading_rows_->Set(0);
  background_load_done_ = true;
}

absl::StatusOr<RowScanBatch> Shard::ScanRows(const std::string& tensor,
                                             uint64_t cursor,
                                             int64_t max_rows) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  if (cursor == 0 && store_->ReadsDisk(tensor)) {
    absl::Status flushed = flusher_->FlushNow();
    if (!flushed.ok()) {
      return Count(absl::UnavailableError(
          absl::StrCat("flushing before a scan of ", tensor,
                       " (its rows are read from disk): ", flushed.message())));
    }
  }
  auto batch = store_->ScanRows(tensor, cursor, max_rows);
  if (!batch.ok()) return Count(batch.status());
  return batch;
}

absl::Status Shard::Drain(absl::Duration deadline) {
  {
    absl::MutexLock lock(&inflight_mu_);
    if (state_.load() == State::kLoading) return absl::OkStatus();
    // Under inflight_mu_: no update registers after this (InFlight::Begin).
    state_ = State::kDraining;
    serving_->Set(0);
    LOG(INFO) << "shard " << options_.shard_index
              << ": draining; waiting up to " << deadline << " for "
              << inflight_ << " updates in flight";
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inflight_mu_) {
      return inflight_ == 0;
    };
    if (!inflight_mu_.AwaitWithTimeout(absl::Condition(&idle), deadline)) {
      LOG(WARNING) << "shard " << options_.shard_index << ": " << inflight_
                   << " updates still in flight after " << deadline
                   << "; the final flush waits for those being applied and "
                      "refuses the rest";
    }
  }
  // Exclusive: waits for updates being applied, and no update applies after.
  absl::WriterMutexLock apply(&apply_mu_);
  final_flush_started_ = true;
  absl::Status flushed = flusher_->FlushNow();
  state_ = State::kStopped;
  return flushed;
}

absl::Status Shard::CheckServing(bool is_update) const {
  switch (state_.load()) {
    case State::kServing:
      return absl::OkStatus();
    case State::kLoading:
      return Rejected(absl::StatusCode::kUnavailable, kReasonNotServing,
                      absl::StrCat("shard ", options_.shard_index,
                                   " is loading its data directory"));
    default:
      if (!is_update) return absl::OkStatus();  // Reads still work.
      return Rejected(absl::StatusCode::kUnavailable, kReasonShuttingDown,
                      absl::StrCat("shard ", options_.shard_index,
                                   " is shutting down; retry later"));
  }
}

absl::Status Shard::CheckIdCount(size_t ids) const {
  if (ids <= static_cast<size_t>(options_.max_ids_per_request)) {
    return absl::OkStatus();
  }
  return Rejected(absl::StatusCode::kInvalidArgument, kReasonOversize,
                  absl::StrCat("request of ", ids,
                               " row ids exceeds --max_ids_per_request=",
                               options_.max_ids_per_request));
}

absl::Status Shard::Count(absl::Status status) {
  if (!status.ok()) CountRejected(RejectReasonOf(status));
  return status;
}

void Shard::CountRejected(absl::string_view reason) {
  rejected_->Add({{"reason", std::string(reason)}}).Increment();
}

void Shard::RecordRequest(const std::string& rpc, const absl::Status& status,
                          absl::Duration took, int64_t bytes_in,
                          int64_t bytes_out) {
  requests_
      ->Add({{"rpc", rpc}, {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
  latency_->Add({{"rpc", rpc}}, metrics::LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(took));
  if (bytes_in > 0) received_bytes_->Add({{"rpc", rpc}}).Increment(bytes_in);
  if (bytes_out > 0) sent_bytes_->Add({{"rpc", rpc}}).Increment(bytes_out);
}

absl::StatusOr<CreateResult> Shard::CreateTensors(
    absl::Span<const v1::TensorSpec> specs) {
  if (specs.size() > static_cast<size_t>(options_.max_specs_per_request)) {
    return Count(
        Rejected(absl::StatusCode::kInvalidArgument, kReasonOversize,
                 absl::StrCat("CreateTensors with ", specs.size(),
                              " specs exceeds --max_specs_per_request=",
                              options_.max_specs_per_request)));
  }
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  // Persist first, publish after: a tensor visible in memory is on disk, and
  // a create whose save failed leaves nothing behind, so a retry saves it.
  absl::MutexLock create(&create_mu_);
  auto pending = store_->PrepareTensors(specs);
  if (!pending.ok()) return Count(pending.status());
  if (!pending->new_specs().empty()) {
    absl::Status saved = storage_->SaveSpecs(pending->new_specs());
    if (!saved.ok()) {
      return absl::Status(
          saved.code(), absl::StrCat("tensors not created: ", saved.message()));
    }
  }
  auto published = inflight.Apply([&]() -> absl::StatusOr<CreateResult> {
    return store_->Publish(*std::move(pending));
  });
  if (!published.ok()) return Count(published.status());
  if (published->created + published->elsewhere > 0) {
    LOG(INFO) << "shard " << options_.shard_index << ": registered "
              << published->created << " tensors (" << published->elsewhere
              << " live on other shards)";
  }
  return published;
}

absl::StatusOr<PushResult> Shard::PushDense(const std::string& tensor,
                                            int64_t row_begin,
                                            absl::Span<const float> grad) {
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  auto result = inflight.Apply(
      [&] { return store_->PushDense(tensor, row_begin, grad); });
  if (!result.ok()) return Count(result.status());
  (result->skipped ? updates_skipped_ : updates_applied_)->Increment();
  return result;
}

absl::StatusOr<InitializeResult> Shard::InitializeTensor(
    const std::string& tensor, int64_t row_begin,
    absl::Span<const float> values) {
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  // In memory under the part's lock (atomic against pushes), then a synced
  // flush before the reply. The flush runs outside apply_mu_ (Drain takes it
  // exclusive around its own flush) and while still in flight, so Drain
  // waits for it; flushes are serialized, and a failed one re-marks what it
  // took, so once one succeeds after the values were set they are on disk.
  auto result = inflight.Apply(
      [&] { return store_->InitializeDense(tensor, row_begin, values); });
  if (!result.ok()) return Count(result.status());
  if (result->applied) {
    LOG(INFO) << "shard " << options_.shard_index << ": initialized " << tensor
              << " (" << values.size() << " floats) from the caller's values";
  }
  if (result->unpersisted) {
    absl::Status flushed = flusher_->FlushNow();
    if (!flushed.ok()) {
      return absl::UnavailableError(
          absl::StrCat("initial values of ", tensor, " are set on shard ",
                       options_.shard_index,
                       " but not yet on disk; retry: ", flushed.message()));
    }
    result->unpersisted = false;
  }
  return result;
}

absl::StatusOr<PushResult> Shard::PushRows(const std::string& tensor,
                                           absl::Span<const uint64_t> ids,
                                           absl::Span<const float> grad) {
  absl::Status ids_ok = CheckIdCount(ids.size());
  if (!ids_ok.ok()) return Count(ids_ok);
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  auto result =
      inflight.Apply([&] { return store_->PushRows(tensor, ids, grad); });
  if (!result.ok()) return Count(result.status());
  (result->skipped ? updates_skipped_ : updates_applied_)->Increment();
  return result;
}

absl::StatusOr<TablesPushResult> Shard::PushTables(
    absl::Span<const TableRowsUpdate> tables) {
  size_t ids = 0;
  for (const TableRowsUpdate& t : tables) ids += t.ids.size();
  absl::Status ids_ok = CheckIdCount(ids);
  if (!ids_ok.ok()) return Count(ids_ok);
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  auto result = inflight.Apply([&] { return store_->PushTables(tables); });
  if (!result.ok()) return Count(result.status());
  (result->skipped ? updates_skipped_ : updates_applied_)
      ->Increment(static_cast<double>(tables.size()));
  return result;
}

absl::StatusOr<std::vector<int64_t>> Shard::PullTables(
    absl::Span<const TableRowsRead> tables) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  size_t ids = 0;
  for (const TableRowsRead& t : tables) ids += t.ids.size();
  absl::Status ids_ok = CheckIdCount(ids);
  if (!ids_ok.ok()) return Count(ids_ok);
  auto versions = store_->PullTables(tables);
  if (!versions.ok()) return Count(versions.status());
  return versions;
}

absl::StatusOr<TablesPushResult> Shard::PushDenseBatch(
    absl::Span<const DenseRangeUpdate> ranges) {
  InFlight inflight(this);
  absl::Status serving = inflight.Begin();
  if (!serving.ok()) return Count(serving);
  auto result = inflight.Apply([&] { return store_->PushDenseBatch(ranges); });
  if (!result.ok()) return Count(result.status());
  (result->skipped ? updates_skipped_ : updates_applied_)
      ->Increment(static_cast<double>(ranges.size()));
  return result;
}

absl::StatusOr<std::vector<int64_t>> Shard::PullDenseBatch(
    absl::Span<const DenseRangeRead> ranges) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  auto versions = store_->PullDenseBatch(ranges);
  if (!versions.ok()) return Count(versions.status());
  return versions;
}

absl::StatusOr<int64_t> Shard::PullDense(const std::string& tensor,
                                         int64_t row_begin,
                                         absl::Span<float> out) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  auto version = store_->PullDense(tensor, row_begin, out);
  if (!version.ok()) return Count(version.status());
  return version;
}

absl::StatusOr<DenseView> Shard::PullDenseView(const std::string& tensor,
                                               int64_t row_begin,
                                               int64_t floats) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  auto view = store_->PullDenseView(tensor, row_begin, floats);
  if (!view.ok()) return Count(view.status());
  return view;
}

absl::StatusOr<int64_t> Shard::PullRows(const std::string& tensor,
                                        absl::Span<const uint64_t> ids,
                                        absl::Span<float> out) {
  absl::Status serving = CheckServing(false);
  if (!serving.ok()) return Count(serving);
  absl::Status ids_ok = CheckIdCount(ids.size());
  if (!ids_ok.ok()) return Count(ids_ok);
  auto version = store_->PullRows(tensor, ids, out);
  if (!version.ok()) return Count(version.status());
  return version;
}

v1::ShardInfo Shard::Info() const {
  v1::ShardInfo info;
  info.set_shard_index(options_.shard_index);
  *info.mutable_placement() = options_.placement;
  info.set_data_port(options_.data_port);
  info.set_metrics_port(options_.metrics_port);
  info.set_serving(state_.load() == State::kServing);
  info.set_num_tensors(store_->num_tensors());
  info.set_parameter_bytes(store_->parameter_bytes());
  if (flusher_ != nullptr) {
    info.set_last_flush_unix_ms(
        absl::ToUnixMillis(flusher_->stats().last_success));
  }
  info.set_version("0.1.0");
  info.set_max_message_bytes(options_.max_message_bytes);
  return info;
}

}  // namespace tessera

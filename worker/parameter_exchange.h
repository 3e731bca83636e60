#ifndef TESSERA_WORKER_PARAMETER_EXCHANGE_H_
#define TESSERA_WORKER_PARAMETER_EXCHANGE_H_

// A worker's side of the parameter exchange for one model: pulls what a
// batch needs (dense tensors whole, an embedding table only the batch's
// rows) and loads it into the model, and pushes a step's gradients without
// waiting for them, keeping at most `max_pushes_in_flight` steps of pushes
// outstanding. A push that fails for good is counted and logged (the update
// is lost; training goes on), a pull is retried while the shards are
// unavailable. With `extrapolate_dense`, dense tensors pulled a step ahead
// are trained on as DensePredictor extrapolates them.
//
// Thread-compatible: the trainer's loop uses it from one thread (AwaitStep
// excepted).

#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "glog/logging.h"
#include "ps/client/coordinator_client.h"
#include "ps/client/ps_client.h"
#include "ps/common/metrics/metrics.h"
#include "worker/data/batch.h"
#include "worker/data/tabular_batch.h"
#include "worker/dense_predictor.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

struct ParameterExchangeOptions {
  PsClient* client = nullptr;  // Not owned.
  Model* model = nullptr;      // Not owned.
  int max_pushes_in_flight = 2;
  // Trains on dense tensors pulled a step ahead (IssuePullAhead,
  // PrefetchDense) as DensePredictor extrapolates them.
  bool extrapolate_dense = false;
  // Testing only: every n-th step pushes NaN instead of its gradients.
  int debug_nan_every_n_steps = 0;
  // When it returns true, a failing pull stops being retried.
  std::function<bool()> give_up;
  // Metrics (owned by the registry; may be null).
  metrics::Histogram* pull_wait = nullptr;
  metrics::Histogram* push_wait = nullptr;
  metrics::Counter* push_failures = nullptr;
  metrics::Counter* extrapolated = nullptr;  // dense pulls extrapolated
};

class ParameterExchange {
 public:
  // The parameters one batch needs, pulled asynchronously: dense tensors
  // into the model's staging memory (Model::DenseStaging), embedding rows
  // into `values`. Destroying it waits for what is still being pulled, so
  // that nothing writes to that memory afterwards.
  struct Pulled {
    Pulled() = default;
    Pulled(Pulled&&) = default;
    Pulled& operator=(Pulled&& other) {
      Wait();
      values = std::move(other.values);
      with_history = std::move(other.with_history);
      done = std::move(other.done);
      return *this;
    }
    ~Pulled() { Wait(); }
    void Wait() {
      for (auto& f : done) {
        if (f.valid()) f.wait();
      }
    }
    std::vector<std::vector<float>> values;  // per Model::Parameters() entry
    // The Model::Parameters() entries pulled with a DenseHistory
    // (`extrapolate_dense`).
    std::vector<size_t> with_history;
    std::vector<std::future<absl::Status>> done;
  };

  explicit ParameterExchange(ParameterExchangeOptions options)
      : options_(std::move(options)) {}
  ~ParameterExchange() { DrainAll(); }

  // Starts pulling what `batch` needs into `p`. With `use_prefetch`, the
  // dense tensors PrefetchDense started pulling are taken over (only the
  // batch's embedding rows are pulled now); otherwise such a prefetch is
  // dropped first.
  template <typename BatchT>
  void IssuePull(const BatchT& batch, Pulled* p, bool use_prefetch = false) {
    IssuePull(batch, p, use_prefetch, /*ahead=*/false);
  }

  // IssuePull for the next step's batch, while this one computes: its dense
  // tensors miss this step's update, which `extrapolate_dense` makes up for.
  template <typename BatchT>
  void IssuePullAhead(const BatchT& batch, Pulled* p) {
    IssuePull(batch, p, /*use_prefetch=*/false, /*ahead=*/true);
  }

  // Starts pulling the dense tensors for a batch not known yet (they are the
  // same for every batch): a partition's last step prefetches the next
  // partition's first step this way, as every other step prefetches the
  // next one. Kept until an IssuePull takes it over or drops it.
  void PrefetchDense();

  // Drops what PrefetchDense started (waits for it: nothing may write to
  // the model's staging memory after this returns).
  void DropPrefetch() { prefetched_.reset(); }

  // Waits for `p` (issued for `batch` unless `issued` is false, in which
  // case it is issued first) and loads it into the model; retried with
  // backoff while the error is retryable and give_up() is false.
  template <typename BatchT>
  absl::Status PullWithRetry(const BatchT& batch, Pulled* p, bool issued);

  // Pushes `step`'s gradients (for embedding tables, of the batch's rows)
  // without waiting, then waits for the oldest steps beyond
  // max_pushes_in_flight.
  template <typename BatchT>
  void Push(StepResult& step, const BatchT& batch) {
    std::vector<const std::vector<uint64_t>*> rows;
    const auto& params = options_.model->Parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      rows.push_back(&TableRows(batch, params[i]));
    }
    PushRows(step, rows);
  }

  // Waits for every outstanding push.
  void DrainAll();

  // One step's pushes.
  using StepPushes = std::vector<std::future<absl::Status>>;

  // Hands over every outstanding push, oldest step first: the caller waits
  // for them (AwaitStep) while this exchange goes on with the next ones.
  std::deque<StepPushes> TakePending() { return std::exchange(pending_, {}); }

  // Waits for one step's pushes; a failure is counted and logged (the update
  // is lost). Safe to call from another thread than the trainer's loop.
  void AwaitStep(StepPushes& step) const;

  // The rows of embedding table `table` that `batch` uses (none for a dense
  // batch or tensor).
  static const std::vector<uint64_t>& TableRows(const DenseBatch&,
                                                const TensorInfo&) {
    return None();
  }
  static const std::vector<uint64_t>& TableRows(const SparseBatch& b,
                                                const TensorInfo& table) {
    return table.kind == TensorKind::kEmbedding ? b.unique_ids : None();
  }
  static const std::vector<uint64_t>& TableRows(const TabularBatch& b,
                                                const TensorInfo& table) {
    if (table.kind != TensorKind::kEmbedding || table.field < 0 ||
        table.field >= static_cast<int>(b.fields.size())) {
      return None();
    }
    return b.fields[table.field].unique_rows;
  }

 private:
  static const std::vector<uint64_t>& None() {
    static const std::vector<uint64_t> kNone;
    return kNone;
  }
  // rows[i]: the rows of gradient i (an embedding table's).
  void PushRows(StepResult& step,
                const std::vector<const std::vector<uint64_t>*>& rows);
  template <typename BatchT>
  absl::Status WaitAndLoad(const BatchT& batch, Pulled* p);
  void DrainOne();
  template <typename BatchT>
  void IssuePull(const BatchT& batch, Pulled* p, bool use_prefetch, bool ahead);
  // Starts pulling every dense tensor into the model's staging memory
  // (WaitAndLoad commits it); `ahead` as IssuePullAhead.
  void IssueDense(Pulled* p, bool ahead);

  const ParameterExchangeOptions options_;
  // Before prefetched_: a prefetch still in flight writes to its histories
  // until prefetched_'s destructor has waited for it.
  DensePredictor predictor_;
  std::optional<Pulled> prefetched_;  // PrefetchDense's.
  std::deque<StepPushes> pending_;
  int64_t debug_steps_ = 0;
};

template <typename BatchT>
void ParameterExchange::IssuePull(const BatchT& batch, Pulled* p,
                                  bool use_prefetch, bool ahead) {
  const auto& params = options_.model->Parameters();
  if (use_prefetch && prefetched_) {
    *p = std::move(*prefetched_);
    prefetched_.reset();
  } else {
    prefetched_.reset();  // Waits: it writes to the same staging memory.
    p->Wait();            // Likewise (an abandoned pull).
    p->done.clear();
    IssueDense(p, ahead);
  }
  p->values.resize(params.size());
  std::vector<TableRowsPull> tables;
  for (size_t i = 0; i < params.size(); ++i) {
    const TensorInfo& t = params[i];
    if (t.frozen) continue;  // The model holds its (never changing) values.
    if (t.kind != TensorKind::kDense) {
      const std::vector<uint64_t>& ids = TableRows(batch, t);
      p->values[i].resize(ids.size() * t.shape[1]);
      tables.push_back({t.name, ids, absl::MakeSpan(p->values[i])});
    }
  }
  // Every table's rows in one request per shard.
  if (tables.size() == 1) {
    p->done.push_back(options_.client->PullRows(tables[0].tensor, tables[0].ids,
                                                tables[0].out));
  } else if (!tables.empty()) {
    p->done.push_back(options_.client->PullTables(tables));
  }
}

template <typename BatchT>
absl::Status ParameterExchange::WaitAndLoad(const BatchT& batch, Pulled* p) {
  absl::Status status;
  for (auto& f : p->done) {
    absl::Status s = f.get();
    if (status.ok()) status = s;
  }
  p->done.clear();
  if (!status.ok()) return status;
  for (size_t slot : p->with_history) {
    if (predictor_.Completed(slot) && options_.extrapolated != nullptr) {
      options_.extrapolated->Increment();
    }
  }
  p->with_history.clear();
  const auto& params = options_.model->Parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].frozen) continue;
    absl::Status s =
        params[i].kind == TensorKind::kDense
            ? options_.model->CommitDense(params[i].name)
            : options_.model->LoadEmbeddingRows(
                  params[i].name, TableRows(batch, params[i]), p->values[i]);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

template <typename BatchT>
absl::Status ParameterExchange::PullWithRetry(const BatchT& batch, Pulled* p,
                                              bool issued) {
  absl::Duration backoff = absl::Milliseconds(200);
  while (true) {
    if (!issued) IssuePull(batch, p);
    issued = false;
    const absl::Time start = absl::Now();
    absl::Status s = WaitAndLoad(batch, p);
    if (options_.pull_wait != nullptr) {
      options_.pull_wait->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (s.ok() || !IsRetryable(s)) return s;
    if (options_.give_up && options_.give_up()) return s;
    LOG(WARNING) << "pull failed, retrying in " << backoff << ": " << s;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_PARAMETER_EXCHANGE_H_

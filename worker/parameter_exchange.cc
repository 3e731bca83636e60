#include "worker/parameter_exchange.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>

namespace tessera {
namespace worker {

void ParameterExchange::PushRows(
    StepResult& step, const std::vector<const std::vector<uint64_t>*>& rows) {
  if (options_.debug_nan_every_n_steps > 0 &&
      ++debug_steps_ % options_.debug_nan_every_n_steps == 0) {
    for (TensorGradient& g : step.gradients) {
      if (g.owner != nullptr) {  // A view: NaN in a copy of its own.
        g.values.assign(g.view.begin(), g.view.end());
        g.owner.reset();
        g.view = {};
      }
      std::fill(g.values.begin(), g.values.end(),
                std::numeric_limits<float>::quiet_NaN());
    }
    LOG(WARNING) << "debug_nan_every_n_steps: pushing NaN gradients at step "
                 << debug_steps_;
  }
  std::vector<std::future<absl::Status>> pushes;
  std::vector<TableRowsPush> tables;
  // Every dense tensor in one call: one request per shard.
  std::vector<DenseRangePush> dense;
  for (size_t i = 0; i < step.gradients.size(); ++i) {
    TensorGradient& g = step.gradients[i];
    if (options_.model->Parameters()[i].frozen) continue;
    if (g.kind == TensorKind::kDense && g.owner != nullptr) {
      // libtorch's gradient tensor itself: no copy before the send.
      dense.push_back({g.name, 0, std::move(g.owner), g.view});
    } else if (g.kind == TensorKind::kDense) {
      auto values =
          std::make_shared<const std::vector<float>>(std::move(g.values));
      const absl::Span<const float> view(*values);
      dense.push_back({g.name, 0, std::move(values), view});
    } else {
      tables.push_back({g.name, *rows[i], g.values});
    }
  }
  if (!dense.empty()) {
    pushes.push_back(options_.client->PushDenseBatch(std::move(dense)));
  }
  // Every table's rows in one request per shard (the ids and gradients are
  // copied before this returns).
  if (tables.size() == 1) {
    pushes.push_back(options_.client->PushRows(tables[0].tensor, tables[0].ids,
                                               tables[0].grad));
  } else if (!tables.empty()) {
    pushes.push_back(options_.client->PushTables(tables));
  }
  pending_.push_back(std::move(pushes));
  while (static_cast<int>(pending_.size()) > options_.max_pushes_in_flight) {
    DrainOne();
  }
}

void ParameterExchange::IssueDense(Pulled* p, bool ahead) {
  const auto& params = options_.model->Parameters();
  p->values.resize(params.size());
  p->with_history.clear();
  // Every dense tensor in one call: one request per shard.
  std::vector<DenseRangePull> dense;
  for (size_t i = 0; i < params.size(); ++i) {
    const TensorInfo& t = params[i];
    if (t.frozen || t.kind != TensorKind::kDense) continue;
    absl::StatusOr<absl::Span<float>> staging =
        options_.model->DenseStaging(t.name);
    if (!staging.ok()) {
      std::promise<absl::Status> failed;
      failed.set_value(staging.status());
      p->done.push_back(failed.get_future());
      continue;
    }
    DenseRangePull range{t.name, 0, *staging, {}};
    // A module buffer (BatchNorm's running statistics) is state that the
    // step updates, not where a gradient is computed: trained on as pulled.
    if (options_.extrapolate_dense && !t.buffer) {
      p->with_history.push_back(i);
      range.history = predictor_.Next(i, staging->size(), ahead);
    }
    dense.push_back(std::move(range));
  }
  if (!dense.empty()) {
    p->done.push_back(options_.client->PullDenseBatch(std::move(dense)));
  }
}

void ParameterExchange::PrefetchDense() {
  prefetched_.reset();  // Waits for an earlier one.
  prefetched_.emplace();
  IssueDense(&*prefetched_, /*ahead=*/true);
}

void ParameterExchange::AwaitStep(StepPushes& step) const {
  for (auto& f : step) {
    absl::Status s = f.get();
    if (!s.ok()) {
      if (options_.push_failures != nullptr) {
        options_.push_failures->Increment();
      }
      LOG_EVERY_N(WARNING, 20) << "push failed (update lost): " << s;
    }
  }
}

void ParameterExchange::DrainOne() {
  const absl::Time start = absl::Now();
  AwaitStep(pending_.front());
  pending_.pop_front();
  if (options_.push_wait != nullptr) {
    options_.push_wait->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
}

void ParameterExchange::DrainAll() {
  while (!pending_.empty()) DrainOne();
}

}  // namespace worker
}  // namespace tessera

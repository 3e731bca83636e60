#include "ps/server/shm_segments.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "ps/common/reject_reason.h"

namespace tessera {

ShmSegments::ShmSegments(ShmSegmentsOptions options,
                         metrics::Registry* registry)
    : options_(std::move(options)) {
  if (registry == nullptr) return;
  open_ = &metrics::BuildGauge()
               .Name("tessera_ps_shm_segments")
               .Help(
                   "Shared-memory segments open to clients on this "
                   "machine (SHM_ATTACH).")
               .Register(*registry)
               .Add({});
  auto& bytes = metrics::BuildCounter()
                    .Name("tessera_ps_shm_bytes_total")
                    .Help(
                        "Values moved through shared-memory segments: in = "
                        "pushes, out = pulls.")
                    .Register(*registry);
  bytes_in_ = &bytes.Add({{"direction", "in"}});
  bytes_out_ = &bytes.Add({{"direction", "out"}});
}

absl::StatusOr<std::shared_ptr<const ShmSegment>> ShmSegments::Attach(
    absl::string_view host) {
  if (!enabled()) {
    return Rejected(
        absl::StatusCode::kFailedPrecondition, kReasonShmUnavailable,
        "shared memory is off on this shard (--shm_segment_bytes=0)");
  }
  if (host.empty() || host != ShmHostId()) {
    return Rejected(absl::StatusCode::kFailedPrecondition,
                    kReasonShmUnavailable,
                    absl::StrCat("the client is on another machine (boot id \"",
                                 host.substr(0, 64), "\", this one \"",
                                 ShmHostId(), "\")"));
  }
  auto made = ShmSegment::Create(options_.segment_bytes);
  if (!made.ok()) {
    LOG(WARNING) << "shared memory for a client: " << made.status();
    return Rejected(absl::StatusCode::kFailedPrecondition,
                    kReasonShmUnavailable, made.status().message());
  }
  std::shared_ptr<const ShmSegment> segment = *std::move(made);
  absl::MutexLock lock(&mu_);
  while (!lru_.empty() &&
         static_cast<int>(lru_.size()) >= std::max(1, options_.max_segments)) {
    by_token_.erase(lru_.back()->token());
    lru_.pop_back();  // Unmapped once no request still holds it.
  }
  lru_.push_front(segment);
  by_token_[segment->token()] = lru_.begin();
  if (open_ != nullptr) open_->Set(static_cast<double>(lru_.size()));
  return segment;
}

std::shared_ptr<const ShmSegment> ShmSegments::Find(uint64_t token) {
  absl::MutexLock lock(&mu_);
  auto it = by_token_.find(token);
  if (it == by_token_.end()) return nullptr;
  if (it->second != lru_.begin()) {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  return *it->second;
}

void ShmSegments::CountBytes(bool in, int64_t bytes) {
  metrics::Counter* c = in ? bytes_in_ : bytes_out_;
  if (c != nullptr) c->Increment(static_cast<double>(bytes));
}

}  // namespace tessera

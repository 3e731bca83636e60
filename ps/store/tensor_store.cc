#include "ps/store/tensor_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "ps/common/checked_math.h"
#include "ps/common/reject_reason.h"
#include "ps/spec/initializer.h"

namespace tessera {
namespace {

constexpr int64_t kFloat = sizeof(float);

absl::Status NonFiniteError(const std::string& tensor) {
  return Rejected(absl::StatusCode::kInvalidArgument, kReasonNonFinite,
                  absl::StrCat("gradient for ", tensor,
                               " contains NaN or Inf; nothing applied"));
}

std::string SpecText(const v1::TensorSpec& spec) {
  return spec.ShortDebugString();
}

}  // namespace

optim::OptimizerConfig ToOptimizerConfig(const v1::OptimizerConfig& c) {
  optim::OptimizerConfig o;
  switch (c.kind()) {
    case v1::OptimizerConfig::MOMENTUM:
      o.kind = optim::OptimizerConfig::Kind::kMomentum;
      break;
    case v1::OptimizerConfig::ADAGRAD:
      o.kind = optim::OptimizerConfig::Kind::kAdagrad;
      break;
    case v1::OptimizerConfig::ADAM:
      o.kind = optim::OptimizerConfig::Kind::kAdam;
      break;
    default:
      o.kind = optim::OptimizerConfig::Kind::kSgd;
      break;
  }
  o.learning_rate = c.learning_rate() == 0 ? 0.01f : c.learning_rate();
  o.weight_decay = c.weight_decay();
  o.decoupled_weight_decay = c.decoupled_weight_decay();
  o.momentum = c.momentum();
  o.dampening = c.dampening();
  o.nesterov = c.nesterov();
  o.beta1 = c.beta1() == 0 ? 0.9f : c.beta1();
  o.beta2 = c.beta2() == 0 ? 0.999f : c.beta2();
  if (c.epsilon() != 0) {
    o.epsilon = c.epsilon();
  } else {
    o.epsilon = c.kind() == v1::OptimizerConfig::ADAGRAD ? 1e-10f : 1e-8f;
  }
  o.initial_accumulator = c.initial_accumulator();
  o.lr_decay = c.lr_decay();
  return o;
}

// ---------------------------------------------------------------------------

class TensorStore::Part {
 public:
  Part(v1::TensorSpec spec, std::unique_ptr<optim::Optimizer> optimizer,
       int part_index)
      : spec_(std::move(spec)),
        optimizer_(std::move(optimizer)),
        part_index_(part_index) {}
  virtual ~Part() = default;

  const v1::TensorSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name(); }
  int num_slots() const { return optimizer_->num_slots(); }

  virtual void Describe(v1::TensorPartInfo* info) const = 0;
  virtual void TakeDirty(DirtySnapshot* out) = 0;
  virtual void RestoreVersion(int64_t version, int64_t step,
                              bool initialized) = 0;

 protected:
  const v1::TensorSpec spec_;
  const std::unique_ptr<optim::Optimizer> optimizer_;
  const int part_index_;
};

// A contiguous row range [row_begin, row_end) of a dense tensor.
class TensorStore::DensePart : public TensorStore::Part {
 public:
  DensePart(v1::TensorSpec spec, std::unique_ptr<optim::Optimizer> optimizer,
            const PartPlacement& placement, int64_t block_floats)
      : Part(std::move(spec), std::move(optimizer), placement.part),
        row_begin_(placement.row_begin),
        row_end_(placement.row_end),
        row_size_(RowSize(spec_)),
        block_floats_(block_floats),
        values_((row_end_ - row_begin_) * row_size_),
        slots_(optimizer_->num_slots()),
        dirty_((values_.size() + block_floats - 1) / block_floats, false) {
    InitializeRows(spec_, row_begin_, absl::MakeSpan(values_));
    std::vector<float*> slot_ptrs;
    for (auto& s : slots_) {
      s.resize(values_.size());
      slot_ptrs.push_back(s.data());
    }
    optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), values_.size());
  }

  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  int64_t row_size() const { return row_size_; }

  absl::Status CheckRange(int64_t row_begin, size_t floats,
                          const char* what) const {
    if (floats % row_size_ != 0) {
      return Rejected(
          absl::StatusCode::kInvalidArgument, kReasonWrongShape,
          absl::StrCat(what, " for ", name(), " has ", floats,
                       " floats, not a multiple of the row size ", row_size_));
    }
    // `floats` is the size of a buffer in memory, so it fits in int64.
    const int64_t rows = static_cast<int64_t>(floats) / row_size_;
    if (rows == 0 || !RangeWithin(row_begin, rows, row_begin_, row_end_)) {
      return Rejected(
          absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange,
          absl::StrCat(what, " for ", name(), " of ", rows, " rows from row ",
                       row_begin, " is not within this shard's rows [",
                       row_begin_, ", ", row_end_, ")"));
    }
    return absl::OkStatus();
  }

  PushResult Apply(int64_t row_begin, absl::Span<const float> grad) {
    const int64_t offset = (row_begin - row_begin_) * row_size_;
    absl::MutexLock lock(&mu_);
    std::vector<float*> slot_ptrs(slots_.size());
    for (size_t s = 0; s < slots_.size(); ++s) {
      slot_ptrs[s] = slots_[s].data() + offset;
    }
    ++step_;
    optimizer_->Apply(absl::MakeSpan(values_.data() + offset, grad.size()),
                      grad, absl::MakeSpan(slot_ptrs), step_);
    const int64_t first = offset / block_floats_;
    const int64_t last = (offset + grad.size() - 1) / block_floats_;
    for (int64_t b = first; b <= last; ++b) dirty_[b] = true;
    version_dirty_ = true;
    return PushResult{++version_, false};
  }

  int64_t Read(int64_t row_begin, absl::Span<float> out) const {
    const int64_t offset = (row_begin - row_begin_) * row_size_;
    absl::MutexLock lock(&mu_);
    std::copy_n(values_.data() + offset, out.size(), out.data());
    return version_;
  }

  void Describe(v1::TensorPartInfo* info) const override {
    absl::MutexLock lock(&mu_);
    *info->mutable_spec() = spec_;
    info->set_part(part_index_);
    info->set_row_begin(row_begin_);
    info->set_row_end(row_end_);
    info->set_num_rows(row_end_ - row_begin_);
    info->set_version(version_);
  }

  void TakeDirty(DirtySnapshot* out) override {
    absl::MutexLock lock(&mu_);
    if (!version_dirty_) return;
    for (size_t b = 0; b < dirty_.size(); ++b) {
      if (!dirty_[b]) continue;
      dirty_[b] = false;
      const size_t begin = b * block_floats_;
      const size_t end = std::min(values_.size(), begin + block_floats_);
      DirtySnapshot::Block block;
      block.tensor = name();
      block.block = b;
      block.values.assign(values_.begin() + begin, values_.begin() + end);
      for (const auto& s : slots_) {
        block.slots.emplace_back(s.begin() + begin, s.begin() + end);
      }
      out->bytes += (end - begin) * kFloat * (1 + slots_.size());
      out->blocks.push_back(std::move(block));
    }
    out->versions.push_back({name(), version_, step_, initialized_});
    version_dirty_ = false;
  }

  void MarkDirty(int64_t block) {
    absl::MutexLock lock(&mu_);
    if (block >= 0 && block < static_cast<int64_t>(dirty_.size())) {
      dirty_[block] = true;
    }
    version_dirty_ = true;
  }

  absl::Status Restore(int64_t block, absl::Span<const float> values,
                       const std::vector<absl::Span<const float>>& slots) {
    absl::MutexLock lock(&mu_);
    // `block` comes from a key on disk: range-check it before any arithmetic.
    const int64_t num_blocks = static_cast<int64_t>(dirty_.size());
    const int64_t begin =
        block >= 0 && block < num_blocks ? block * block_floats_ : 0;
    const int64_t expected =
        std::min<int64_t>(values_.size() - begin, block_floats_);
    if (block < 0 || block >= num_blocks ||
        static_cast<int64_t>(values.size()) != expected ||
        slots.size() != slots_.size()) {
      return absl::DataLossError(absl::StrCat(
          "stored block ", block, " of ", name(), " has ", values.size(),
          " floats and ", slots.size(), " slots; the spec expects ", expected,
          " floats and ", slots_.size(), " slots"));
    }
    for (const auto& s : slots) {
      if (s.size() != values.size()) {
        return absl::DataLossError(
            absl::StrCat("stored optimizer slot of block ", block, " of ",
                         name(), " has the wrong size"));
      }
    }
    std::copy(values.begin(), values.end(), values_.begin() + begin);
    for (size_t s = 0; s < slots.size(); ++s) {
      std::copy(slots[s].begin(), slots[s].end(), slots_[s].begin() + begin);
    }
    return absl::OkStatus();
  }

  void RestoreVersion(int64_t version, int64_t step,
                      bool initialized) override {
    absl::MutexLock lock(&mu_);
    version_ = version;
    step_ = step;
    initialized_ = initialized;
    init_persisted_ = true;  // Read from disk.
  }

  // `values` is the whole part (checked by the caller).
  InitializeResult Initialize(absl::Span<const float> values) {
    absl::MutexLock lock(&mu_);
    InitializeResult result;
    if (version_ == 0 && !initialized_) {
      std::copy(values.begin(), values.end(), values_.begin());
      std::fill(dirty_.begin(), dirty_.end(), true);
      version_dirty_ = true;
      initialized_ = true;
      init_persisted_ = false;
      version_ = 1;
      result.applied = true;
    }
    result.version = version_;
    result.unpersisted = initialized_ && !init_persisted_;
    return result;
  }

  void MarkInitPersisted() {
    absl::MutexLock lock(&mu_);
    if (initialized_) init_persisted_ = true;
  }

  int64_t part_row_begin() const { return row_begin_; }

 private:
  const int64_t row_begin_;
  const int64_t row_end_;
  const int64_t row_size_;
  const int64_t block_floats_;

  mutable absl::Mutex mu_;
  std::vector<float> values_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<float>> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> dirty_ ABSL_GUARDED_BY(mu_);
  bool version_dirty_ ABSL_GUARDED_BY(mu_) = false;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by Initialize (or restored); never cleared.
  bool initialized_ ABSL_GUARDED_BY(mu_) = false;
  // The initialization has been written by a successful flush.
  bool init_persisted_ ABSL_GUARDED_BY(mu_) = false;
};

// This shard's rows of an embedding table, created on first touch.
class TensorStore::EmbeddingPart : public TensorStore::Part {
 public:
  EmbeddingPart(v1::TensorSpec spec,
                std::unique_ptr<optim::Optimizer> optimizer, int shard,
                int num_shards)
      : Part(std::move(spec), std::move(optimizer), shard),
        dim_(spec_.shape(1)),
        max_rows_(spec_.shape(0)),
        shard_(shard),
        num_shards_(num_shards),
        slots_(optimizer_->num_slots()) {}

  int64_t dim() const { return dim_; }

  absl::Status CheckIds(absl::Span<const uint64_t> ids) const {
    for (uint64_t id : ids) {
      if (max_rows_ > 0 && id >= static_cast<uint64_t>(max_rows_)) {
        return Rejected(absl::StatusCode::kInvalidArgument,
                        kReasonRowsOutOfRange,
                        absl::StrCat("row ", id, " of ", name(),
                                     " is out of range [0, ", max_rows_, ")"));
      }
      const int owner = ShardOfRow(id, num_shards_);
      if (owner != shard_) {
        return Rejected(
            absl::StatusCode::kInvalidArgument, kReasonWrongShard,
            absl::StrCat("row ", id, " of ", name(), " belongs to shard ",
                         owner, ", not shard ", shard_));
      }
    }
    return absl::OkStatus();
  }

  // Copies the rows of `ids` into `out` and returns the table's version. A
  // row never pushed is not created: its values are a pure function of the
  // spec and the id, computed into `out`, so reading costs no memory.
  int64_t Read(absl::Span<const uint64_t> ids, absl::Span<float> out) const {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < ids.size(); ++i) {
      float* dst = out.data() + i * dim_;
      auto it = index_.find(ids[i]);
      if (it != index_.end()) {
        std::copy_n(values_.data() + size_t{it->second} * dim_, dim_, dst);
      } else {
        InitializeRows(spec_, ids[i], absl::MakeSpan(dst, dim_));
      }
    }
    return version_;
  }

  int64_t Apply(absl::Span<const uint64_t> ids, absl::Span<const float> grad,
                PushResult* result) {
    absl::MutexLock lock(&mu_);
    const size_t before = steps_.size();
    // Sum the gradients of repeated ids, then apply row by row in id order.
    absl::flat_hash_map<uint64_t, size_t> first;
    std::vector<uint32_t> rows;
    std::vector<float> summed;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto [it, inserted] = first.try_emplace(ids[i], rows.size());
      const float* g = grad.data() + i * dim_;
      if (inserted) {
        rows.push_back(RowLocked(ids[i]));
        summed.insert(summed.end(), g, g + dim_);
      } else {
        float* s = summed.data() + it->second * dim_;
        for (int64_t j = 0; j < dim_; ++j) s[j] += g[j];
      }
    }
    std::vector<float*> slot_ptrs(slots_.size());
    for (size_t k = 0; k < rows.size(); ++k) {
      const uint32_t r = rows[k];
      for (size_t s = 0; s < slots_.size(); ++s) {
        slot_ptrs[s] = slots_[s].data() + r * dim_;
      }
      const int64_t step = ++steps_[r];
      optimizer_->Apply(absl::MakeSpan(values_.data() + r * dim_, dim_),
                        absl::MakeConstSpan(summed.data() + k * dim_, dim_),
                        absl::MakeSpan(slot_ptrs), step);
      if (!dirty_[r]) {
        dirty_[r] = true;
        dirty_rows_.push_back(r);
      }
    }
    version_dirty_ = true;
    result->version = ++version_;
    return steps_.size() - before;
  }

  std::vector<uint64_t> Ids() const {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> ids(row_ids_);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  void Describe(v1::TensorPartInfo* info) const override {
    absl::MutexLock lock(&mu_);
    *info->mutable_spec() = spec_;
    info->set_part(part_index_);
    info->set_row_begin(0);
    info->set_row_end(max_rows_);
    info->set_num_rows(steps_.size());
    info->set_version(version_);
  }

  void TakeDirty(DirtySnapshot* out) override {
    absl::MutexLock lock(&mu_);
    if (!version_dirty_) return;
    for (uint32_t r : dirty_rows_) {
      dirty_[r] = false;
      DirtySnapshot::Row row;
      row.tensor = name();
      row.id = row_ids_[r];
      row.step = steps_[r];
      row.values.assign(values_.begin() + r * dim_,
                        values_.begin() + (r + 1) * dim_);
      for (const auto& s : slots_) {
        row.values.insert(row.values.end(), s.begin() + r * dim_,
                          s.begin() + (r + 1) * dim_);
      }
      out->bytes += row.values.size() * kFloat;
      out->rows.push_back(std::move(row));
    }
    dirty_rows_.clear();
    out->versions.push_back({name(), version_, 0});
    version_dirty_ = false;
  }

  void MarkDirty(uint64_t id) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(id);
    if (it != index_.end() && !dirty_[it->second]) {
      dirty_[it->second] = true;
      dirty_rows_.push_back(it->second);
    }
    version_dirty_ = true;
  }

  absl::Status Restore(uint64_t id, int64_t step,
                       absl::Span<const float> values, int64_t* created) {
    absl::MutexLock lock(&mu_);
    if (static_cast<int64_t>(values.size()) != dim_ * (1 + slots_.size())) {
      return absl::DataLossError(absl::StrCat(
          "stored row ", id, " of ", name(), " has ", values.size(),
          " floats; the spec expects ", dim_ * (1 + slots_.size())));
    }
    const size_t before = steps_.size();
    const uint32_t r = RowLocked(id);
    *created = steps_.size() - before;
    // A restored row is clean: RowLocked() does not mark new rows dirty.
    std::copy_n(values.data(), dim_, values_.data() + r * dim_);
    for (size_t s = 0; s < slots_.size(); ++s) {
      std::copy_n(values.data() + (s + 1) * dim_, dim_,
                  slots_[s].data() + r * dim_);
    }
    steps_[r] = step;
    return absl::OkStatus();
  }

  void RestoreVersion(int64_t version, int64_t, bool) override {
    absl::MutexLock lock(&mu_);
    version_ = version;
  }

 private:
  // The row index of `id`, created with the initializer if new. A new row is
  // not dirty: its values are a pure function of the spec until updated.
  uint32_t RowLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto [it, inserted] = index_.try_emplace(id, steps_.size());
    if (!inserted) return it->second;
    const uint32_t r = it->second;
    values_.resize((r + 1) * dim_);
    InitializeRows(spec_, id, absl::MakeSpan(values_.data() + r * dim_, dim_));
    std::vector<float*> slot_ptrs;
    for (auto& s : slots_) {
      s.resize((r + 1) * dim_);
      slot_ptrs.push_back(s.data() + r * dim_);
    }
    optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), dim_);
    steps_.push_back(0);
    dirty_.push_back(false);
    row_ids_.push_back(id);
    return r;
  }

  const int64_t dim_;
  const int64_t max_rows_;  // 0 = unbounded
  const int shard_;
  const int num_shards_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, uint32_t> index_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> row_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<float> values_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<float>> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> steps_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> dirty_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> dirty_rows_ ABSL_GUARDED_BY(mu_);
  bool version_dirty_ ABSL_GUARDED_BY(mu_) = false;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---------------------------------------------------------------------------

TensorStore::TensorStore(StoreOptions options) : options_(std::move(options)) {}

TensorStore::~TensorStore() = default;

TensorStore::Pending::Pending() = default;
TensorStore::Pending::Pending(Pending&&) = default;
TensorStore::Pending& TensorStore::Pending::operator=(Pending&&) = default;
TensorStore::Pending::~Pending() = default;

absl::StatusOr<CreateResult> TensorStore::CreateTensors(
    absl::Span<const v1::TensorSpec> specs) {
  auto pending = PrepareTensors(specs);
  if (!pending.ok()) return pending.status();
  return Publish(*std::move(pending));
}

absl::StatusOr<TensorStore::Pending> TensorStore::PrepareTensors(
    absl::Span<const v1::TensorSpec> specs) const {
  // Validate everything before changing anything.
  Pending pending;
  std::vector<std::unique_ptr<Part>>& fresh = pending.parts_;
  std::vector<v1::TensorSpec>& fresh_remote = pending.remote_;
  CreateResult& result = pending.result_;
  int64_t pending_bytes = 0;  // of the dense parts this call creates
  absl::ReaderMutexLock lock(&mu_);
  absl::flat_hash_map<std::string, const v1::TensorSpec*> in_request;
  for (const v1::TensorSpec& spec : specs) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonBadSpec,
                      valid.message());
    }
    auto [dup, first] = in_request.try_emplace(spec.name(), &spec);
    const v1::TensorSpec* existing = first ? nullptr : dup->second;
    if (existing == nullptr) {
      auto it = parts_.find(spec.name());
      if (it != parts_.end()) existing = &it->second->spec();
      auto rt = remote_specs_.find(spec.name());
      if (rt != remote_specs_.end()) existing = &rt->second;
    }
    if (existing != nullptr) {
      if (!google::protobuf::util::MessageDifferencer::Equals(*existing,
                                                              spec)) {
        return Rejected(
            absl::StatusCode::kAlreadyExists, kReasonSpecConflict,
            absl::StrCat("tensor ", spec.name(),
                         " already exists with a different spec: existing {",
                         SpecText(*existing), "}, requested {", SpecText(spec),
                         "}"));
      }
      if (first) ++result.existing;
      continue;
    }
    optim::OptimizerConfig config = ToOptimizerConfig(spec.optimizer());
    absl::Status opt_valid = optim::ValidateOptimizerConfig(config);
    if (!opt_valid.ok()) {
      return Rejected(
          absl::StatusCode::kInvalidArgument, kReasonBadSpec,
          absl::StrCat("tensor ", spec.name(), ": ", opt_valid.message()));
    }
    auto optimizer = optim::NewOptimizer(config);
    if (!optimizer.ok()) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonBadSpec,
                      absl::StrCat("tensor ", spec.name(), ": ",
                                   optimizer.status().message()));
    }
    pending.new_specs_.push_back(spec);
    if (spec.kind() == v1::TensorSpec::EMBEDDING) {
      fresh.push_back(std::make_unique<EmbeddingPart>(
          spec, *std::move(optimizer), options_.shard_index,
          options_.placement.num_shards()));
      ++result.created;
      continue;
    }
    PartPlacement placement;
    if (!PartOnShard(spec, options_.placement, options_.shard_index,
                     &placement)) {
      fresh_remote.push_back(spec);
      ++result.elsewhere;
      continue;
    }
    const int64_t floats =
        (placement.row_end - placement.row_begin) * RowSize(spec);
    pending_bytes += floats * kFloat * (1 + (*optimizer)->num_slots());
    absl::Status fits = CheckMemory(
        pending_bytes, absl::StrCat("tensor ", spec.name(), "'s part"));
    if (!fits.ok()) return fits;
    fresh.push_back(std::make_unique<DensePart>(
        spec, *std::move(optimizer), placement, options_.block_floats));
    ++result.created;
  }
  return pending;
}

CreateResult TensorStore::Publish(Pending pending) {
  absl::MutexLock lock(&mu_);
  for (auto& part : pending.parts_) {
    auto* dense = dynamic_cast<DensePart*>(part.get());
    std::string name = part->name();
    if (!parts_.try_emplace(std::move(name), std::move(part)).second) continue;
    if (dense != nullptr) {
      parameter_bytes_ += dense->size() * kFloat;
      slot_bytes_ += dense->size() * kFloat * dense->num_slots();
    }
  }
  for (auto& spec : pending.remote_) {
    std::string name = spec.name();
    remote_specs_.emplace(std::move(name), std::move(spec));
  }
  return pending.result_;
}

std::vector<v1::TensorPartInfo> TensorStore::List() const {
  std::vector<const Part*> parts;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, part] : parts_) parts.push_back(part.get());
  }
  std::sort(parts.begin(), parts.end(),
            [](const Part* a, const Part* b) { return a->name() < b->name(); });
  std::vector<v1::TensorPartInfo> out(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) parts[i]->Describe(&out[i]);
  return out;
}

int64_t TensorStore::num_tensors() const {
  absl::ReaderMutexLock lock(&mu_);
  return parts_.size();
}

absl::StatusOr<v1::TensorPartInfo> TensorStore::Describe(
    const std::string& tensor) const {
  auto part = FindPart(tensor);
  if (!part.ok()) return part.status();
  v1::TensorPartInfo info;
  (*part)->Describe(&info);
  return info;
}

absl::StatusOr<TensorStore::Part*> TensorStore::FindPart(
    absl::string_view tensor) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = parts_.find(tensor);
  if (it == parts_.end()) {
    const bool remote = remote_specs_.contains(tensor);
    return Rejected(
        absl::StatusCode::kNotFound, kReasonUnknownTensor,
        remote ? absl::StrCat("tensor ", tensor, " has no part on shard ",
                              options_.shard_index)
               : absl::StrCat("unknown tensor ", tensor, " on shard ",
                              options_.shard_index));
  }
  return it->second.get();
}

absl::StatusOr<TensorStore::DensePart*> TensorStore::FindDense(
    absl::string_view tensor) const {
  auto part = FindPart(tensor);
  if (!part.ok()) return part.status();
  auto* dense = dynamic_cast<DensePart*>(*part);
  if (dense == nullptr) {
    return Rejected(
        absl::StatusCode::kInvalidArgument, kReasonWrongKind,
        absl::StrCat(tensor, " is an embedding table: address it by rows"));
  }
  return dense;
}

absl::StatusOr<TensorStore::EmbeddingPart*> TensorStore::FindEmbedding(
    absl::string_view tensor) const {
  auto part = FindPart(tensor);
  if (!part.ok()) return part.status();
  auto* table = dynamic_cast<EmbeddingPart*>(*part);
  if (table == nullptr) {
    return Rejected(
        absl::StatusCode::kInvalidArgument, kReasonWrongKind,
        absl::StrCat(tensor, " is a dense tensor: address it by row range"));
  }
  return table;
}

absl::Status TensorStore::CheckMemory(int64_t more,
                                      const std::string& what) const {
  if (options_.max_memory_bytes <= 0 ||
      memory_bytes() + more <= options_.max_memory_bytes) {
    return absl::OkStatus();
  }
  return Rejected(
      absl::StatusCode::kResourceExhausted, kReasonOutOfMemory,
      absl::StrCat(what, " needs ", more, " bytes; shard ",
                   options_.shard_index, " holds ", memory_bytes(), " of its ",
                   options_.max_memory_bytes, " bytes (--max_memory_bytes)"));
}

absl::StatusOr<PushResult> TensorStore::PushDense(
    const std::string& tensor, int64_t row_begin,
    absl::Span<const float> grad) {
  auto part = FindDense(tensor);
  if (!part.ok()) return part.status();
  absl::Status range = (*part)->CheckRange(row_begin, grad.size(), "gradient");
  if (!range.ok()) return range;
  if (!optim::AllFinite(grad)) {
    if (options_.non_finite == NonFinitePolicy::kReject) {
      return NonFiniteError(tensor);
    }
    PushResult skipped;
    skipped.skipped = true;
    skipped.version = (*part)->Read(row_begin, absl::Span<float>());
    return skipped;
  }
  return (*part)->Apply(row_begin, grad);
}

absl::StatusOr<int64_t> TensorStore::PullDense(const std::string& tensor,
                                               int64_t row_begin,
                                               absl::Span<float> out) const {
  auto part = FindDense(tensor);
  if (!part.ok()) return part.status();
  absl::Status range = (*part)->CheckRange(row_begin, out.size(), "pull");
  if (!range.ok()) return range;
  return (*part)->Read(row_begin, out);
}

absl::StatusOr<InitializeResult> TensorStore::InitializeDense(
    const std::string& tensor, int64_t row_begin,
    absl::Span<const float> values) {
  auto found = FindPart(tensor);
  if (!found.ok()) return found.status();
  auto* part = dynamic_cast<DensePart*>(*found);
  if (part == nullptr) {
    return Rejected(absl::StatusCode::kInvalidArgument, kReasonWrongKind,
                    absl::StrCat(tensor,
                                 " is an embedding table: its rows come from "
                                 "its initializer and cannot be set"));
  }
  // Equalities only: nothing from the request enters arithmetic.
  if (row_begin != part->part_row_begin()) {
    return Rejected(
        absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange,
        absl::StrCat("initial values for ", tensor, " start at row ", row_begin,
                     "; this shard's part starts at row ",
                     part->part_row_begin(), " and must be set whole"));
  }
  if (static_cast<int64_t>(values.size()) != part->size()) {
    return Rejected(
        absl::StatusCode::kInvalidArgument, kReasonWrongShape,
        absl::StrCat("initial values for ", tensor, " have ", values.size(),
                     " floats; this shard's part has ", part->size()));
  }
  if (!optim::AllFinite(values)) {
    return Rejected(absl::StatusCode::kInvalidArgument, kReasonNonFinite,
                    absl::StrCat("initial values for ", tensor,
                                 " contain NaN or Inf; nothing set"));
  }
  return part->Initialize(values);
}

absl::StatusOr<TensorStore::EmbeddingPart*> TensorStore::CheckTableRows(
    absl::string_view tensor, absl::Span<const uint64_t> ids, size_t have,
    const char* what) const {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  EmbeddingPart* t = *table;
  // Sizes of buffers in memory fit in int64; their products may not.
  int64_t floats = 0;
  if (!CheckedMul(static_cast<int64_t>(ids.size()), t->dim(), &floats) ||
      floats != static_cast<int64_t>(have)) {
    return Rejected(
        absl::StatusCode::kInvalidArgument, kReasonWrongShape,
        absl::StrCat(what, " for ", tensor, " has ", have, " floats; ",
                     ids.size(), " rows of dim ", t->dim(), " need ",
                     ids.size(), " x ", t->dim()));
  }
  absl::Status ids_ok = t->CheckIds(ids);
  if (!ids_ok.ok()) return ids_ok;
  return t;
}

absl::StatusOr<PushResult> TensorStore::PushRows(const std::string& tensor,
                                                 absl::Span<const uint64_t> ids,
                                                 absl::Span<const float> grad) {
  TableRowsUpdate update{tensor, ids, grad};
  auto pushed = PushTables(absl::MakeConstSpan(&update, 1));
  if (!pushed.ok()) return pushed.status();
  PushResult result;
  result.version = pushed->versions[0];
  result.skipped = pushed->skipped;
  return result;
}

absl::StatusOr<TablesPushResult> TensorStore::PushTables(
    absl::Span<const TableRowsUpdate> tables) {
  std::vector<EmbeddingPart*> parts;
  parts.reserve(tables.size());
  absl::flat_hash_set<const EmbeddingPart*> named;
  int64_t new_bytes = 0;  // at most: every id a new row
  int64_t ids = 0;
  bool finite = true;
  for (const TableRowsUpdate& u : tables) {
    auto t = CheckTableRows(u.tensor, u.ids, u.grad.size(), "gradient");
    if (!t.ok()) return t.status();
    if (tables.size() > 1 && !named.insert(*t).second) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      absl::StrCat("push names ", u.tensor, " twice"));
    }
    parts.push_back(*t);
    // The gradients are in memory already, so these products fit.
    new_bytes +=
        static_cast<int64_t>(u.grad.size()) * kFloat * (1 + (*t)->num_slots());
    ids += static_cast<int64_t>(u.ids.size());
    finite = finite && optim::AllFinite(u.grad);
  }
  absl::Status fits = CheckMemory(
      new_bytes,
      tables.size() == 1
          ? absl::StrCat("up to ", ids, " new rows of ", tables[0].tensor)
          : absl::StrCat("up to ", ids, " new rows of ", tables.size(),
                         " tables"));
  if (!fits.ok()) return fits;
  TablesPushResult result;
  result.versions.reserve(tables.size());
  if (!finite) {
    if (options_.non_finite == NonFinitePolicy::kReject) {
      for (const TableRowsUpdate& u : tables) {
        if (!optim::AllFinite(u.grad)) {
          return NonFiniteError(std::string(u.tensor));
        }
      }
    }
    result.skipped = true;
    for (EmbeddingPart* t : parts) {
      v1::TensorPartInfo info;
      t->Describe(&info);
      result.versions.push_back(info.version());
    }
    return result;
  }
  for (size_t i = 0; i < tables.size(); ++i) {
    EmbeddingPart* t = parts[i];
    PushResult pushed;
    const int64_t created = t->Apply(tables[i].ids, tables[i].grad, &pushed);
    parameter_bytes_ += created * t->dim() * kFloat;
    slot_bytes_ += created * t->dim() * kFloat * t->num_slots();
    result.versions.push_back(pushed.version);
  }
  return result;
}

absl::StatusOr<int64_t> TensorStore::PullRows(const std::string& tensor,
                                              absl::Span<const uint64_t> ids,
                                              absl::Span<float> out) const {
  TableRowsRead read{tensor, ids, out};
  auto versions = PullTables(absl::MakeConstSpan(&read, 1));
  if (!versions.ok()) return versions.status();
  return (*versions)[0];
}

absl::StatusOr<std::vector<int64_t>> TensorStore::PullTables(
    absl::Span<const TableRowsRead> tables) const {
  std::vector<const EmbeddingPart*> parts;
  parts.reserve(tables.size());
  for (const TableRowsRead& r : tables) {
    auto t = CheckTableRows(r.tensor, r.ids, r.out.size(), "pull buffer");
    if (!t.ok()) return t.status();
    parts.push_back(*t);
  }
  // Rows never pushed are computed, not created: no memory to check.
  std::vector<int64_t> versions;
  versions.reserve(tables.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    versions.push_back(parts[i]->Read(tables[i].ids, tables[i].out));
  }
  return versions;
}

absl::StatusOr<std::vector<uint64_t>> TensorStore::RowIds(
    const std::string& tensor) const {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  return (*table)->Ids();
}

void TensorStore::TakeDirty(DirtySnapshot* out) {
  std::vector<Part*> parts;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, part] : parts_) parts.push_back(part.get());
  }
  for (Part* part : parts) part->TakeDirty(out);
}

void TensorStore::MarkDirty(const DirtySnapshot& snapshot) {
  for (const auto& block : snapshot.blocks) {
    auto part = FindDense(block.tensor);
    if (part.ok()) (*part)->MarkDirty(block.block);
  }
  for (const auto& row : snapshot.rows) {
    auto table = FindEmbedding(row.tensor);
    if (table.ok()) (*table)->MarkDirty(row.id);
  }
  for (const auto& v : snapshot.versions) {
    auto part = FindDense(v.tensor);
    if (part.ok()) (*part)->MarkDirty(-1);
  }
}

void TensorStore::MarkPersisted(const DirtySnapshot& snapshot) {
  for (const auto& v : snapshot.versions) {
    if (!v.initialized) continue;
    auto part = FindDense(v.tensor);
    if (part.ok()) (*part)->MarkInitPersisted();
  }
}

absl::Status TensorStore::RestoreBlock(
    const std::string& tensor, int64_t block, absl::Span<const float> values,
    const std::vector<absl::Span<const float>>& slots) {
  auto part = FindDense(tensor);
  if (!part.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored block of ", tensor,
                     " has no dense tensor: ", part.status().message()));
  }
  return (*part)->Restore(block, values, slots);
}

absl::Status TensorStore::RestoreRow(const std::string& tensor, uint64_t id,
                                     int64_t step,
                                     absl::Span<const float> values) {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored row of ", tensor,
                     " has no embedding table: ", table.status().message()));
  }
  const uint64_t one_id[] = {id};
  absl::Status owned = (*table)->CheckIds(one_id);
  if (!owned.ok()) {
    return absl::DataLossError(absl::StrCat(
        "stored row of ", tensor, " does not belong here: ", owned.message()));
  }
  int64_t created = 0;
  absl::Status status = (*table)->Restore(id, step, values, &created);
  parameter_bytes_ += created * (*table)->dim() * kFloat;
  slot_bytes_ += created * (*table)->dim() * kFloat * (*table)->num_slots();
  return status;
}

absl::Status TensorStore::RestoreVersion(const std::string& tensor,
                                         int64_t version, int64_t step,
                                         bool initialized) {
  auto part = FindPart(tensor);
  if (!part.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored version of ", tensor,
                     " has no tensor: ", part.status().message()));
  }
  (*part)->RestoreVersion(version, step, initialized);
  return absl::OkStatus();
}

}  // namespace tessera

#include "ps/store/tensor_store.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "ps/common/checked_math.h"
#include "ps/common/reject_reason.h"
#include "ps/common/status_macros.h"
#include "ps/spec/initializer.h"
#include "ps/spec/placement.h"

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

constexpr int kDefaultSketchWidth = 4096;
constexpr int kDefaultSketchDepth = 4;

int SketchWidth(const v1::MemoryPolicy& p) {
  return p.sketch_width() > 0 ? p.sketch_width() : kDefaultSketchWidth;
}
int SketchDepth(const v1::MemoryPolicy& p) {
  return p.sketch_depth() > 0 ? p.sketch_depth() : kDefaultSketchDepth;
}
// Bytes of a policy's admission sketch: 32-bit counters.
int64_t SketchBytes(const v1::MemoryPolicy& p) {
  return int64_t{SketchWidth(p)} * SketchDepth(p) * 4;
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
  virtual void RestoreVersion(int64_t version, int64_t step, bool initialized,
                              int64_t rows) = 0;

 protected:
  const v1::TensorSpec spec_;
  const std::unique_ptr<optim::Optimizer> optimizer_;
  const int part_index_;
};

// A contiguous row range [row_begin, row_end) of a dense tensor.
// A row range of a dense tensor. Its values are shared, copy on write: a
// pull without a copy (View) holds a reference to the values as they were,
// and whatever changes them while such a reference is held (a push, an
// initialization, a restore) first gives the part a copy of its own
// (MutableValuesLocked), so a view never changes under its reader. A part
// costs twice its values' memory while a pulled view is held across a push:
// at most one extra copy per pull, where a pull copied its values every time
// before.
class TensorStore::DensePart : public TensorStore::Part {
 public:
  DensePart(v1::TensorSpec spec, std::unique_ptr<optim::Optimizer> optimizer,
            const PartPlacement& placement, int64_t block_floats)
      : Part(std::move(spec), std::move(optimizer), placement.part),
        row_begin_(placement.row_begin),
        row_end_(placement.row_end),
        row_size_(RowSize(spec_)),
        block_floats_(block_floats),
        size_((row_end_ - row_begin_) * row_size_),
        values_(std::make_shared<std::vector<float>>(size_)),
        slots_(optimizer_->num_slots()),
        dirty_((size_ + block_floats - 1) / block_floats, false) {
    InitializeRows(spec_, row_begin_, absl::MakeSpan(*values_));
    std::vector<float*> slot_ptrs;
    for (auto& s : slots_) {
      s.resize(size_);
      slot_ptrs.push_back(s.data());
    }
    optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), size_);
  }

  int64_t size() const { return size_; }
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
    optimizer_->Apply(
        absl::MakeSpan(MutableValuesLocked().data() + offset, grad.size()),
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
    std::copy_n(values_->data() + offset, out.size(), out.data());
    return version_;
  }

  // `floats` values from `row_begin` (checked by the caller), shared.
  DenseView View(int64_t row_begin, size_t floats) const {
    const int64_t offset = (row_begin - row_begin_) * row_size_;
    absl::MutexLock lock(&mu_);
    DenseView view;
    view.values = absl::MakeConstSpan(values_->data() + offset, floats);
    view.owner = values_;
    view.version = version_;
    return view;
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
      const size_t end = std::min<size_t>(size_, begin + block_floats_);
      DirtySnapshot::Block block;
      block.tensor = name();
      block.block = b;
      block.values.assign(values_->begin() + begin, values_->begin() + end);
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
    const int64_t expected = std::min<int64_t>(size_ - begin, block_floats_);
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
    std::copy(values.begin(), values.end(),
              MutableValuesLocked().begin() + begin);
    for (size_t s = 0; s < slots.size(); ++s) {
      std::copy(slots[s].begin(), slots[s].end(), slots_[s].begin() + begin);
    }
    return absl::OkStatus();
  }

  void RestoreVersion(int64_t version, int64_t step, bool initialized,
                      int64_t) override {
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
      std::copy(values.begin(), values.end(), MutableValuesLocked().begin());
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
  const int64_t size_;  // floats of the part

  // The values, for writing: copied first if a view still shares them (no
  // view can start meanwhile: views are taken under mu_).
  std::vector<float>& MutableValuesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (values_.use_count() > 1) {
      values_ = std::make_shared<std::vector<float>>(*values_);
    }
    return *values_;
  }

  mutable absl::Mutex mu_;
  std::shared_ptr<std::vector<float>> values_ ABSL_GUARDED_BY(mu_);
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

// What a table's push or restore added: rows, and the bytes each kind of
// memory grew by.
struct TensorStore::RowGrowth {
  int64_t rows = 0;
  int64_t parameter_bytes = 0;
  int64_t slot_bytes = 0;
  int64_t overhead_bytes = 0;  // may be negative: a chunk's unused rows filled

  void Add(const RowGrowth& g) {
    rows += g.rows;
    parameter_bytes += g.parameter_bytes;
    slot_bytes += g.slot_bytes;
    overhead_bytes += g.overhead_bytes;
  }
};

// This shard's rows of an embedding table, created on first touch.
//
// Rows live in chunks: one allocation each, never moved nor freed before the
// part. Adding rows fills the newest chunk, then allocates the next, so a
// table grows without copying itself (vectors grown by reallocation needed
// twice the table for a moment) and a pointer into a row stays valid for the
// life of the part. Chunks double from row_chunk_bytes / 16 up to
// row_chunk_bytes (64 KiB: below glibc's mmap threshold, so a chunk is carved
// from the heap, not an mmap of its own), so a table wastes at most its
// newest chunk's unused rows and a small table stays small.
//
// A row is one record: its id, its step, then `dim` values and `dim` floats
// per optimizer slot, padded to 8 bytes. Apply touches the step, values and
// slots; TakeDirty and Restore the whole record, whose floats are
// DirtySnapshot::Row::values as they are; so one record keeps a row in
// adjacent cache lines. Per-field arrays would help only a scan of the ids
// (RowIds, rare). Dirty marks are a bit per row at the head of each chunk.
//
// The index (id -> row) is kIndexMaps flat_hash_maps, picked by a mix of the
// id. A rehash copies a map's entries (16 bytes each), never rows, and with
// 64 maps it copies 1/64 of the index: the index's own growth spike is 1/64
// of its size, and a push holding the lock through a rehash waits 1/64 as
// long. No reserve: a spec says how many ids a table may have, not how many
// will be pushed. The index is the largest overhead at small dims (31% of a
// dim 16 SGD table, 4% of a dim 64 Adam one: bench/row_memory_bench); a set
// of 8-byte handles hashed by the id in the row would save about 17 bytes a
// row, but each lookup would then wait for the row before the next step.
class TensorStore::EmbeddingPart : public TensorStore::Part {
 public:
  using Growth = RowGrowth;

  EmbeddingPart(v1::TensorSpec spec,
                std::unique_ptr<optim::Optimizer> optimizer, int shard,
                int num_shards, int64_t row_chunk_bytes, int64_t max_table_rows)
      : Part(std::move(spec), std::move(optimizer), shard),
        dim_(spec_.shape(1)),
        max_rows_(spec_.shape(0)),
        shard_(shard),
        num_shards_(num_shards),
        policy_(spec_.memory_policy()),
        admit_after_(policy_.admit_after_pushes()),
        sketch_width_(SketchWidth(policy_)),
        sketch_depth_(SketchDepth(policy_)),
        expires_(policy_.expire_after_steps() > 0 ||
                 policy_.expire_after_seconds() > 0),
        tracked_(expires_ || policy_.max_rows() > 0),
        tiered_(policy_.eviction() == v1::MemoryPolicy::EVICTION_DISK &&
                policy_.max_rows() > 0),
        bitmaps_(tiered_ ? 2 : 1),
        header_bytes_(tracked_ ? kTrackedHeaderBytes : kHeaderBytes),
        row_floats_(dim_ * (1 + optimizer_->num_slots())),
        row_bytes_(header_bytes_ + (row_floats_ * kFloat + 7) / 8 * 8),
        max_chunk_bytes_(std::max<int64_t>(row_chunk_bytes, 1)),
        max_table_rows_(max_table_rows > 0
                            ? max_table_rows
                            : std::numeric_limits<int64_t>::max()) {
    if (admit_after_ > 1) {
      sketch_.assign(static_cast<size_t>(sketch_width_) * sketch_depth_, 0);
    }
  }

  int64_t dim() const { return dim_; }
  bool expires() const { return expires_; }
  bool tiered() const { return tiered_; }
  // Deletions in memory (expiry, EVICTION_DELETE) must not be undone by a
  // read of the disk: such a table loads its rows before serving.
  bool deletes_rows() const {
    return expires_ || (policy_.max_rows() > 0 && !tiered_);
  }

  // Stored rows read from the disk tier, by id.
  using Fetched = absl::flat_hash_map<uint64_t, StoredRow>;
  // Whether the store has room for `bytes` more (TensorStore::CheckMemory).
  using Fits = std::function<bool(int64_t bytes)>;

  // Attaches the disk tier (TensorStore::AttachDisk); `reads`: rows missing
  // from memory are looked up there (always, for a tiered table).
  void SetDisk(RowSource* source, bool reads) {
    absl::MutexLock lock(&mu_);
    source_ = source;
    const bool was = reads_disk_;
    reads_disk_ = source != nullptr && (reads || tiered_);
    // Rows on disk and not in memory count from here on: the stored count
    // (all of them, as none is in memory yet) plus the rows created since.
    if (reads_disk_ && !was) total_rows_ = std::max<int64_t>(stored_rows_, 0);
  }
  bool ReadsDisk() const {
    absl::MutexLock lock(&mu_);
    return reads_disk_;
  }
  bool Loading() const {
    absl::MutexLock lock(&mu_);
    return reads_disk_ && !tiered_;
  }
  void FinishLoading() {
    absl::MutexLock lock(&mu_);
    if (tiered_) return;
    reads_disk_ = false;  // every row in memory: num_rows_
    absent_.clear();
  }

  // For a table reading the disk: reads the stored rows of the distinct
  // `ids` missing from memory, outside the lock, into `*fetched`, and sets
  // `*epoch` to the eviction epoch they were read at (-1 when the table
  // does not read the disk). A row evicted (and so
  // possibly written anew) after the read may be older on disk than what
  // was read: RefetchIfEvictedLocked reads again under the lock then.
  absl::Status FetchMissing(absl::Span<const uint64_t> ids, Fetched* fetched,
                            int64_t* epoch) ABSL_LOCKS_EXCLUDED(mu_) {
    *epoch = -1;
    std::vector<uint64_t> missing;
    {
      absl::MutexLock lock(&mu_);
      if (!reads_disk_) return absl::OkStatus();
      // Even when nothing is missing now: a row may be evicted before the
      // caller takes the lock again.
      *epoch = evict_epoch_;
      missing = MissingLocked(ids);
      if (missing.empty()) return absl::OkStatus();
    }
    return Fetch(missing, fetched);
  }
  absl::Status RefetchIfEvictedLocked(absl::Span<const uint64_t> ids,
                                      int64_t epoch, Fetched* fetched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (epoch < 0 || epoch == evict_epoch_) return absl::OkStatus();
    fetched->clear();
    return Fetch(MissingLocked(ids), fetched);
  }

  // After a read of the disk that is current (the lock held since
  // RefetchIfEvictedLocked), `id` missing from memory and not found there is
  // known not to be on disk. That stays true until the id is in memory (only
  // a flush of a row in memory writes one to disk), which AddRowLocked
  // forgets it at. So a step's push does not look up again the new ids its
  // pull just missed. At most kMaxAbsent ids are kept.
  void RememberAbsentLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (absent_.size() >= kMaxAbsent) absent_.clear();
    absent_.insert(id);
  }
  // The admission sketch's allocation, made with the part.
  int64_t sketch_bytes() const {
    return admit_after_ > 1 ? SketchBytes(policy_) : 0;
  }

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
  // spec and the id, computed into `out`, so reading costs no memory. A
  // table reading the disk reads the rows it misses there first, and keeps
  // them in memory if `fits` their memory (a tiered table then evicts other
  // rows over its max_rows); `growth` gets what that allocated.
  absl::StatusOr<int64_t> Read(absl::Span<const uint64_t> ids,
                               absl::Span<float> out, const Fits& fits,
                               int64_t now_ms, Growth* growth)
      ABSL_LOCKS_EXCLUDED(mu_) {
    Fetched fetched;
    int64_t epoch;
    TESSERA_RETURN_IF_ERROR(FetchMissing(ids, &fetched, &epoch));
    absl::MutexLock lock(&mu_);
    TESSERA_RETURN_IF_ERROR(RefetchIfEvictedLocked(ids, epoch, &fetched));
    // Every row is found first, with the index entries of the ids ahead
    // prefetched, then copied, so that the cache misses of several ids
    // overlap: random pulls of 4096 ids from 2M rows take as long as they did
    // over per-field vectors (~100 ns a row on the 2-core VM).
    std::vector<uint64_t> rows(ids.size());
    for (size_t i = 0; i < std::min(ids.size(), kPrefetchAhead); ++i) {
      PrefetchLocked(ids[i]);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i + kPrefetchAhead < ids.size()) {
        PrefetchLocked(ids[i + kPrefetchAhead]);
      }
      rows[i] = FindLocked(ids[i]);
    }
    int64_t hits = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (rows[i] != kNoRow) {
        ++hits;
      } else if (epoch >= 0 && !fetched.contains(ids[i])) {
        RememberAbsentLocked(ids[i]);
      }
    }
    stats_.pull_hits += hits;
    stats_.pull_misses += static_cast<int64_t>(ids.size()) - hits;
    if (!fetched.empty()) {
      InstallLocked(ids, &rows, fetched, fits, now_ms, growth);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      float* dst = out.data() + i * dim_;
      if (rows[i] != kNoRow) {
        unsigned char* record = RecordLocked(rows[i]);
        std::copy_n(FloatsOf(record), dim_, dst);
        if (tiered_) *LastVersionOf(record) = version_;  // recently used
      } else if (auto it = fetched.find(ids[i]); it != fetched.end()) {
        std::copy_n(it->second.values.data(), dim_, dst);  // no room to keep
      } else {
        InitializeRows(spec_, ids[i], absl::MakeSpan(dst, dim_));
      }
    }
    // Copied: any clean row may go, those just read back too.
    if (tiered_ && num_rows_ > policy_.max_rows()) {
      const int64_t allocated = AllocatedBytesLocked();
      const int64_t rows_before = num_rows_;
      EvictCleanLocked(num_rows_ - policy_.max_rows(), {});
      growth->Add(GrowthLocked(num_rows_ - rows_before, allocated));
    }
    return version_;
  }

  // The rows of `ids` held in memory get their memory values in `values`
  // (ids.size() rows of dim), the others keep theirs; returns the version.
  int64_t Overlay(absl::Span<const uint64_t> ids, absl::Span<float> values) {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint64_t row = FindLocked(ids[i]);
      if (row != kNoRow) {
        std::copy_n(ValuesLocked(row), dim_, values.data() + i * dim_);
      }
    }
    return version_;
  }

  // Brings the stored rows of `batch` that memory lacks into memory
  // (TensorStore::LoadRows); all or none of them, as `fits`.
  absl::StatusOr<int64_t> Load(const StoredRowBatch& batch, const Fits& fits,
                               Growth* growth) {
    absl::MutexLock lock(&mu_);
    Fetched fetched;
    std::vector<uint64_t> ids;
    ids.reserve(batch.rows.size());
    for (const auto& [id, row] : batch.rows) {
      if (static_cast<int64_t>(row.values.size()) != row_floats_) {
        return absl::DataLossError(absl::StrCat(
            "stored row ", id, " of ", name(), " has ", row.values.size(),
            " floats; the spec expects ", row_floats_));
      }
      if (FindLocked(id) != kNoRow) continue;
      ids.push_back(id);
      fetched.emplace(id, row);
    }
    std::vector<uint64_t> rows(ids.size(), kNoRow);
    const int64_t before = num_rows_;
    if (!InstallLocked(ids, &rows, fetched, fits, 0, growth)) {
      return Rejected(absl::StatusCode::kResourceExhausted, kReasonOutOfMemory,
                      absl::StrCat("loading ", ids.size(), " rows of ", name(),
                                   " would exceed the shard's memory budget"));
    }
    stats_.rows_loaded += num_rows_ - before;
    return num_rows_ - before;
  }

  // A push looked up under the table's lock: its distinct ids, their rows
  // (kNoRow: to be created), their summed gradients, and what the new rows
  // will allocate.
  struct PushPlan {
    std::vector<uint64_t> distinct;
    std::vector<uint64_t> rows;
    std::vector<float> summed;
    int64_t num_new = 0;
    int64_t new_bytes = 0;
    // Ids of new rows not admitted yet (memory policy): their gradients are
    // dropped and the sketch counts the push.
    std::vector<uint64_t> dropped;
    int64_t evict = 0;  // rows to evict first (memory policy's max_rows)
    // Per distinct id: its row as read from the disk tier for a new row
    // (created with those values, not admitted), else nullptr.
    std::vector<const StoredRow*> stored;
    bool read_disk = false;  // its new ids were looked up on disk
  };

  // The table's lock, for TensorStore::PushTables to hold several tables'.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(mu_) { return mu_; }

  // Sums the gradients of repeated ids (in the order of first appearance),
  // looks each distinct id up, and works out what its new rows will
  // allocate: new ids the memory policy does not admit yet are dropped, and
  // rows over its max_rows are to be evicted. Changes nothing;
  // ResourceExhausted if the new rows would exceed the table's row limit, or
  // the policy's max_rows with every other row evicted.
  // `fetched`: rows read from the disk tier (FetchMissing), or nullptr.
  absl::Status PlanLocked(absl::Span<const uint64_t> ids,
                          absl::Span<const float> grad, const Fetched* fetched,
                          PushPlan* plan) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    plan->read_disk = fetched != nullptr;
    absl::flat_hash_map<uint64_t, size_t> first;
    std::array<int64_t, kIndexMaps> new_per_map{};
    for (size_t i = 0; i < std::min(ids.size(), kPrefetchAhead); ++i) {
      PrefetchLocked(ids[i]);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i + kPrefetchAhead < ids.size()) {
        PrefetchLocked(ids[i + kPrefetchAhead]);
      }
      auto [it, inserted] = first.try_emplace(ids[i], plan->rows.size());
      const float* g = grad.data() + i * dim_;
      if (inserted) {
        const uint64_t row = FindLocked(ids[i]);
        const StoredRow* stored = nullptr;
        if (row == kNoRow && fetched != nullptr) {
          auto found = fetched->find(ids[i]);
          if (found != fetched->end()) stored = &found->second;
        }
        if (row == kNoRow && stored == nullptr && !AdmitsLocked(ids[i])) {
          it->second = kDropped;
          plan->dropped.push_back(ids[i]);
          continue;
        }
        plan->distinct.push_back(ids[i]);
        plan->rows.push_back(row);
        plan->stored.push_back(stored);
        if (row == kNoRow) {
          ++plan->num_new;
          ++new_per_map[MapOf(ids[i])];
        }
        plan->summed.insert(plan->summed.end(), g, g + dim_);
      } else if (it->second != kDropped) {
        float* s = plan->summed.data() + it->second * dim_;
        for (int64_t j = 0; j < dim_; ++j) s[j] += g[j];
      }
    }
    const int64_t max_rows = policy_.max_rows();
    // A tiered table evicts to disk after the push (ApplyLocked), as far as
    // flushed rows allow.
    if (!tiered_ && max_rows > 0 && num_rows_ + plan->num_new > max_rows) {
      // Rows this push updates are never evicted by it.
      const int64_t others =
          num_rows_ - (static_cast<int64_t>(plan->rows.size()) - plan->num_new);
      plan->evict = num_rows_ + plan->num_new - max_rows;
      if (plan->evict > others) {
        return Rejected(
            absl::StatusCode::kResourceExhausted, kReasonOutOfMemory,
            absl::StrCat("push of ", plan->distinct.size(), " rows of ", name(),
                         " exceeds its memory policy's max_rows ", max_rows,
                         " on shard ", shard_));
      }
    }
    if (plan->num_new > 0) {
      absl::StatusOr<int64_t> bytes =
          GrowthBytesLocked(plan->num_new, new_per_map, plan->evict);
      if (!bytes.ok()) return bytes.status();
      plan->new_bytes = *bytes;
    }
    return absl::OkStatus();
  }

  // Creates the plan's new rows and applies its gradients, row by row; the
  // lock must have been held since PlanLocked made it.
  // `now_ms`: the wall time of the push (Unix milliseconds), for expiry.
  void ApplyLocked(PushPlan& plan, int64_t now_ms, PushResult* result,
                   Growth* growth) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t allocated = AllocatedBytesLocked();
    const int64_t rows_before = num_rows_;
    for (uint64_t id : plan.dropped) {
      SketchAddLocked(id);
      // Not on disk either (the new rows created now need no such note).
      if (plan.read_disk) RememberAbsentLocked(id);
    }
    stats_.admission_drops += plan.dropped.size();
    if (plan.evict > 0) EvictLocked(plan.evict, plan.rows);
    const int64_t version = version_ + 1;
    std::vector<float*> slot_ptrs(num_slots());
    for (size_t k = 0; k < plan.rows.size(); ++k) {
      if (plan.rows[k] == kNoRow) {
        plan.rows[k] = AddRowLocked(plan.distinct[k], plan.stored[k]);
        if (plan.stored[k] == nullptr) {
          ++stats_.admissions;
          ++total_rows_;  // a new id: neither in memory nor on disk
        }
      }
      unsigned char* record = RecordLocked(plan.rows[k]);
      if (tracked_) {
        *LastVersionOf(record) = version;
        *LastMillisOf(record) = now_ms;
      }
      float* values = FloatsOf(record);
      for (size_t s = 0; s < slot_ptrs.size(); ++s) {
        slot_ptrs[s] = values + (s + 1) * dim_;
      }
      const int64_t step = ++*StepOf(record);
      optimizer_->Apply(
          absl::MakeSpan(values, dim_),
          absl::MakeConstSpan(plan.summed.data() + k * dim_, dim_),
          absl::MakeSpan(slot_ptrs), step);
      MarkRowDirtyLocked(plan.rows[k]);
    }
    version_dirty_ = true;
    version_ = version;
    result->version = version_;
    if (tiered_ && num_rows_ > policy_.max_rows()) {
      EvictCleanLocked(num_rows_ - policy_.max_rows(), plan.rows);
    }
    *growth = GrowthLocked(num_rows_ - rows_before, allocated);
  }

  // A tiered table over its max_rows evicts rows the last flush wrote, in
  // slices that each hold the lock briefly. Returns the rows evicted.
  int64_t EvictFlushed(Growth* total) {
    int64_t evicted = 0;
    for (int slice = 0; slice < kMaxEvictSlices; ++slice) {
      absl::MutexLock lock(&mu_);
      if (!tiered_ || num_rows_ <= policy_.max_rows()) break;
      const int64_t allocated = AllocatedBytesLocked();
      const int64_t rows_before = num_rows_;
      const int64_t n = EvictCleanLocked(
          std::min(num_rows_ - policy_.max_rows(), kEvictSlice), {});
      total->Add(GrowthLocked(num_rows_ - rows_before, allocated));
      evicted += n;
      if (n == 0) break;
    }
    return evicted;
  }

  // A tiered table holding more than twice its max_rows: the excess is dirty
  // (a push evicts what is clean), so only a flush lets it go.
  bool NeedsFlushLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return tiered_ && num_rows_ > 2 * policy_.max_rows();
  }

  // Evictions of a push's (or a pull's read-back) worth of rows a tiered
  // table makes at most to fit the shard's budget: after the first, the
  // index maps may still have to grow (erased rows leave tombstones that
  // count against a map's load until it rehashes).
  static constexpr int kMakeRoomRounds = 8;
  // A tiered table's push over the shard's budget: evicts up to the plan's
  // new rows' worth of clean rows not in it, so that the new rows reuse their
  // slots. Returns whether it evicted any (the caller plans again).
  bool MakeRoomLocked(const PushPlan& plan, Growth* growth)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t allocated = AllocatedBytesLocked();
    const int64_t rows_before = num_rows_;
    const int64_t n = EvictCleanLocked(plan.num_new, plan.rows);
    growth->Add(GrowthLocked(num_rows_ - rows_before, allocated));
    return n > 0;
  }

  // After the write of the last TakeDirty succeeded (flushes are one at a
  // time): every row in flight was in it, so none is any more. A row changed
  // since is dirty again, and the rows of a write that failed are dirty again
  // too (TensorStore::MarkDirty), so both stay unevictable.
  void MarkFlushed() {
    absl::MutexLock lock(&mu_);
    for (uint32_t c : inflight_chunks_) {
      Chunk& chunk = chunks_[c];
      std::fill_n(InflightBitsOf(chunk), (chunk.capacity + 63) / 64, 0);
    }
    inflight_chunks_.clear();
  }

  // Deletes up to `max_slots` slots' worth of expired rows, resuming where
  // the last sweep stopped (one lock hold: callers bound `max_slots`).
  // Returns the slots scanned; `growth` gets what the deletions freed. A row
  // restored from disk gets its lease at its first sweep.
  int64_t SweepLocked(int64_t now_ms, int64_t max_slots, Growth* growth)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t allocated = AllocatedBytesLocked();
    const int64_t rows_before = num_rows_;
    const int64_t steps = policy_.expire_after_steps();
    const int64_t ms = policy_.expire_after_seconds() * 1000;
    const int64_t scan = std::min(max_slots, SlotsLocked());
    for (int64_t i = 0; i < scan; ++i) {
      const uint64_t row = NextSlotLocked(&sweep_hand_);
      unsigned char* record = RecordLocked(row);
      if (*StepOf(record) < 0) continue;  // free
      if (*LastVersionOf(record) < 0) {
        *LastVersionOf(record) = version_;
        *LastMillisOf(record) = now_ms;
        continue;
      }
      if ((steps > 0 && version_ - *LastVersionOf(record) >= steps) ||
          (ms > 0 && now_ms - *LastMillisOf(record) >= ms)) {
        DeleteRowLocked(row);
        ++stats_.expiries;
      }
    }
    *growth = GrowthLocked(num_rows_ - rows_before, allocated);
    return scan;
  }

  // One expiry sweep over at most `max_slots` slots, in slices that each
  // hold the lock briefly.
  void Sweep(int64_t now_ms, int64_t max_slots, Growth* total) {
    if (!expires_) return;
    for (int64_t done = 0; done < max_slots;) {
      absl::MutexLock lock(&mu_);
      Growth g;
      const int64_t scanned =
          SweepLocked(now_ms, std::min(kSweepSlice, max_slots - done), &g);
      total->rows += g.rows;
      total->parameter_bytes += g.parameter_bytes;
      total->slot_bytes += g.slot_bytes;
      total->overhead_bytes += g.overhead_bytes;
      done += scanned;
      if (scanned == 0 || done >= SlotsLocked()) break;
    }
  }

  TablePolicyStats PolicyStats() const {
    absl::MutexLock lock(&mu_);
    TablePolicyStats s = stats_;
    s.tensor = name();
    s.rows = num_rows_;
    s.total_rows = TotalRowsLocked();
    s.disk_reads = disk_reads_;
    s.disk_hits = disk_hits_;
    s.reads_disk = reads_disk_;
    s.tiered = tiered_;
    return s;
  }

  // Up to `max_rows` held rows from handle position `cursor` on, in storage
  // order (chunk by chunk, each chunk's rows in creation order). The cursor
  // is a position, not a pointer into a row: rows never move, so a row held
  // both before and after this call is at the same position, and a scan in
  // batches visits it once whatever was created (or freed) in between.
  void Scan(uint64_t cursor, int64_t max_rows, RowScanBatch* batch) const {
    absl::MutexLock lock(&mu_);
    size_t c = cursor >> 32;
    int64_t r = static_cast<int64_t>(cursor & 0xffffffffu);
    batch->ids.clear();
    batch->values.clear();
    // Past a chunk's last row (or a cursor beyond it): the next chunk.
    auto skip_exhausted = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      while (c < chunks_.size() && r >= chunks_[c].used) {
        ++c;
        r = 0;
      }
    };
    skip_exhausted();
    while (c < chunks_.size() &&
           static_cast<int64_t>(batch->ids.size()) < max_rows) {
      unsigned char* record = RecordLocked(RowOf(c, r));
      if (*StepOf(record) >= 0) {  // not a deleted row's free slot
        batch->ids.push_back(*IdOf(record));
        const float* values = FloatsOf(record);
        batch->values.insert(batch->values.end(), values, values + dim_);
      }
      ++r;
      skip_exhausted();
    }
    batch->version = version_;
    batch->next = RowOf(c, r);
    batch->done = c >= chunks_.size();
  }

  std::vector<uint64_t> Ids() const {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> ids;
    ids.reserve(num_rows_);
    for (size_t c = 0; c < chunks_.size(); ++c) {
      for (int64_t r = 0; r < chunks_[c].used; ++r) {
        const unsigned char* record = RecordLocked(RowOf(c, r));
        if (*StepOf(record) >= 0) ids.push_back(*IdOf(record));
      }
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  void Describe(v1::TensorPartInfo* info) const override {
    absl::MutexLock lock(&mu_);
    *info->mutable_spec() = spec_;
    info->set_part(part_index_);
    info->set_row_begin(0);
    info->set_row_end(max_rows_);
    info->set_num_rows(TotalRowsLocked());
    info->set_version(version_);
  }

  // Rows come out in the order they were created.
  void TakeDirty(DirtySnapshot* out) override {
    absl::MutexLock lock(&mu_);
    if (!version_dirty_) return;
    std::sort(dirty_chunks_.begin(), dirty_chunks_.end());
    // A chunk whose dirty rows were all deleted and then marked again is
    // listed twice.
    dirty_chunks_.erase(std::unique(dirty_chunks_.begin(), dirty_chunks_.end()),
                        dirty_chunks_.end());
    for (uint64_t id : deleted_ids_) out->deleted_rows.push_back({name(), id});
    deleted_ids_.clear();
    for (uint32_t c : dirty_chunks_) {
      Chunk& chunk = chunks_[c];
      uint64_t* bits = DirtyBitsOf(chunk);
      for (int64_t w = 0; w < (chunk.used + 63) / 64; ++w) {
        for (uint64_t word = bits[w]; word != 0; word &= word - 1) {
          const unsigned char* record =
              RecordLocked(RowOf(c, w * 64 + __builtin_ctzll(word)));
          DirtySnapshot::Row row;
          row.tensor = name();
          row.id = *IdOf(record);
          row.step = *StepOf(record);
          row.values.assign(FloatsOf(record), FloatsOf(record) + row_floats_);
          out->bytes += row_floats_ * kFloat;
          out->rows.push_back(std::move(row));
        }
        // A tiered table's rows being written are not evicted until the
        // write succeeded (MarkFlushed).
        if (tiered_) InflightBitsOf(chunk)[w] |= bits[w];
        bits[w] = 0;
      }
      chunk.num_dirty = 0;
      if (tiered_) inflight_chunks_.push_back(c);
    }
    dirty_chunks_.clear();
    out->versions.push_back({name(), version_, 0, false, TotalRowsLocked()});
    version_dirty_ = false;
  }

  void MarkDirty(uint64_t id) {
    absl::MutexLock lock(&mu_);
    const uint64_t row = FindLocked(id);
    if (row != kNoRow) MarkRowDirtyLocked(row);
    version_dirty_ = true;
  }

  // A deletion whose write failed: written again by the next flush (before
  // the rows, so a row created again since wins).
  void MarkDeleted(uint64_t id) {
    absl::MutexLock lock(&mu_);
    deleted_ids_.push_back(id);
    version_dirty_ = true;
  }

  absl::Status Restore(uint64_t id, int64_t step,
                       absl::Span<const float> values, Growth* growth) {
    absl::MutexLock lock(&mu_);
    if (static_cast<int64_t>(values.size()) != row_floats_) {
      return absl::DataLossError(absl::StrCat(
          "stored row ", id, " of ", name(), " has ", values.size(),
          " floats; the spec expects ", row_floats_));
    }
    uint64_t row = FindLocked(id);
    const int64_t allocated = AllocatedBytesLocked();
    if (row == kNoRow) {
      std::array<int64_t, kIndexMaps> new_per_map{};
      new_per_map[MapOf(id)] = 1;
      absl::StatusOr<int64_t> bytes = GrowthBytesLocked(1, new_per_map, 0);
      if (!bytes.ok()) return bytes.status();
      // A restored row is clean: AddRowLocked() does not mark it dirty.
      row = AddRowLocked(id, nullptr);
      *growth = GrowthLocked(1, allocated);
    }
    unsigned char* record = RecordLocked(row);
    std::copy_n(values.data(), row_floats_, FloatsOf(record));
    // A negative step on disk would read as a free slot.
    *StepOf(record) = std::max<int64_t>(step, 0);
    if (tracked_) *LastVersionOf(record) = -1;  // leased at the first sweep
    return absl::OkStatus();
  }

  void RestoreVersion(int64_t version, int64_t, bool, int64_t rows) override {
    absl::MutexLock lock(&mu_);
    version_ = version;
    if (rows >= 0) stored_rows_ = rows;
  }
  void RestoreRowCount(int64_t rows) {
    absl::MutexLock lock(&mu_);
    stored_rows_ = rows;
  }
  // Whether a count of the stored rows was restored (RestoreVersion, or
  // RestoreRowCount after a scan).
  bool knows_stored_rows() const {
    absl::MutexLock lock(&mu_);
    return stored_rows_ >= 0;
  }

  TableFootprint Footprint() const {
    absl::MutexLock lock(&mu_);
    TableFootprint f;
    f.rows = num_rows_;
    f.row_bytes = row_bytes_;
    f.chunks = chunks_.size();
    f.chunk_bytes = chunk_bytes_;
    f.index_bytes = index_bytes_;
    f.free_slots = free_rows_.size();
    f.free_list_bytes = free_rows_.capacity() * sizeof(uint64_t);
    f.sketch_bytes = sketch_bytes();
    return f;
  }

  const void* RowAddress(uint64_t id) const {
    absl::MutexLock lock(&mu_);
    const uint64_t row = FindLocked(id);
    return row == kNoRow ? nullptr : ValuesLocked(row);
  }

 private:
  // One allocation: a dirty bit per row (whole words), then `capacity` rows.
  struct Chunk {
    std::unique_ptr<unsigned char[]> memory;
    int64_t capacity = 0;   // rows
    int64_t used = 0;       // rows created, the first `used`
    int64_t num_dirty = 0;  // rows marked
  };

  // A row's handle: its chunk in the high 32 bits, its row in the chunk in
  // the low 32 bits. A chunk has at most 2^31 rows and a part at most
  // kMaxChunks chunks, so no handle is kNoRow.
  static constexpr uint64_t kNoRow = ~uint64_t{0};
  static constexpr int64_t kMaxChunkRows = int64_t{1} << 31;
  static constexpr int64_t kMaxChunks = (int64_t{1} << 32) - 1;
  static constexpr int64_t kHeaderBytes = 2 * sizeof(uint64_t);  // id, step
  // A table with expiry or max_rows: also the table's version and the wall
  // time (Unix ms) of the row's last update.
  static constexpr int64_t kTrackedHeaderBytes = 4 * sizeof(uint64_t);
  // A free slot's step.
  static constexpr int64_t kFreeStep = -1;
  static constexpr size_t kDropped = ~size_t{0};
  // An eviction takes the least recently updated of this many live rows.
  static constexpr int kEvictSample = 8;
  // A tiered table's eviction scans at most this many slots per row asked.
  static constexpr int64_t kEvictScanPerRow = 64;
  // EvictFlushed: rows per lock hold, and lock holds per call.
  static constexpr int64_t kEvictSlice = 4096;
  static constexpr int kMaxEvictSlices = 1024;
  // Ids RememberAbsentLocked keeps per table (about 1 MiB).
  static constexpr size_t kMaxAbsent = size_t{1} << 16;
  // Slots an expiry sweep scans per lock hold.
  static constexpr int64_t kSweepSlice = 4096;
  static constexpr int kIndexMapBits = 6;
  // Lookups of a batch prefetch the index's entries this many ids ahead.
  static constexpr size_t kPrefetchAhead = 8;
  static constexpr int kIndexMaps = 1 << kIndexMapBits;
  using IndexMap = absl::flat_hash_map<uint64_t, uint64_t>;

  static uint64_t RowOf(size_t chunk, int64_t offset) {
    return (uint64_t{chunk} << 32) | static_cast<uint64_t>(offset);
  }
  // The top bits of a multiplicative (Fibonacci) hash: independent of
  // ShardOfRow's Mix64(id) % num_shards, the same for every id here, and of
  // absl::Hash's bits each map uses. Inline and cheap: it is on every lookup.
  static size_t MapOf(uint64_t id) {
    return (id * 0x9E3779B97F4A7C15ULL) >> (64 - kIndexMapBits);
  }
  static int64_t DirtyBytes(int64_t rows) { return (rows + 63) / 64 * 8; }
  static uint64_t* DirtyBitsOf(const Chunk& chunk) {
    return reinterpret_cast<uint64_t*>(chunk.memory.get());
  }
  // A tiered table's second bitmap: rows a flush is writing.
  static uint64_t* InflightBitsOf(const Chunk& chunk) {
    return DirtyBitsOf(chunk) + (chunk.capacity + 63) / 64;
  }
  // Whether row `row` may be evicted to disk: its newest values are there.
  bool CleanLocked(uint64_t row) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Chunk& chunk = chunks_[row >> 32];
    const uint64_t offset = row & 0xffffffffu;
    const uint64_t bit = uint64_t{1} << (offset % 64);
    return ((DirtyBitsOf(chunk)[offset / 64] |
             InflightBitsOf(chunk)[offset / 64]) &
            bit) == 0;
  }
  static uint64_t* IdOf(unsigned char* record) {
    return reinterpret_cast<uint64_t*>(record);
  }
  static const uint64_t* IdOf(const unsigned char* record) {
    return reinterpret_cast<const uint64_t*>(record);
  }
  static int64_t* StepOf(unsigned char* record) {
    return reinterpret_cast<int64_t*>(record + sizeof(uint64_t));
  }
  static const int64_t* StepOf(const unsigned char* record) {
    return reinterpret_cast<const int64_t*>(record + sizeof(uint64_t));
  }
  static int64_t* LastVersionOf(unsigned char* record) {
    return reinterpret_cast<int64_t*>(record + 2 * sizeof(uint64_t));
  }
  static int64_t* LastMillisOf(unsigned char* record) {
    return reinterpret_cast<int64_t*>(record + 3 * sizeof(uint64_t));
  }
  float* FloatsOf(unsigned char* record) const {
    return reinterpret_cast<float*>(record + header_bytes_);
  }
  const float* FloatsOf(const unsigned char* record) const {
    return reinterpret_cast<const float*>(record + header_bytes_);
  }

  // What absl::flat_hash_map (Abseil 20220623, 16-wide groups) allocates for
  // `capacity` slots: a control byte per slot plus 16, rounded up to 8, then
  // the slots.
  static int64_t IndexBytes(size_t capacity) {
    if (capacity == 0) return 0;
    return (capacity + 16 + 7) / 8 * 8 +
           capacity * sizeof(IndexMap::value_type);
  }
  // The capacity a map of `capacity` grows to for `size` entries, as absl
  // grows it with no erase: 0 -> 1, then c -> 2c + 1 whenever `size` exceeds
  // c - c/8 (its 7/8 load factor). After erases (`erased`) its tombstones
  // may make it grow sooner: absl then grows a map of at most 16 slots, or
  // one more than 25/32 full, so this assumes it does (an upper bound).
  static size_t GrownCapacity(size_t capacity, size_t size, bool erased) {
    if (erased && capacity > 0 && capacity <= 16) capacity = capacity * 2 + 1;
    while (size > capacity - capacity / 8 ||
           (erased && capacity > 16 && size * 32 > capacity * 25)) {
      capacity = capacity * 2 + 1;
    }
    return capacity;
  }

  // Rows of chunk `c`: chunks double from max_chunk_bytes_ / 16 bytes.
  int64_t ChunkRows(int64_t c) const {
    const int64_t bytes = max_chunk_bytes_ >> std::max<int64_t>(0, 4 - c);
    return std::clamp<int64_t>(bytes / row_bytes_, 1, kMaxChunkRows);
  }
  int64_t ChunkBytes(int64_t rows) const {
    return DirtyBytes(rows) * bitmaps_ + rows * row_bytes_;
  }

  unsigned char* RecordLocked(uint64_t row) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Chunk& chunk = chunks_[row >> 32];
    return chunk.memory.get() + DirtyBytes(chunk.capacity) * bitmaps_ +
           (row & 0xffffffffu) * row_bytes_;
  }
  const float* ValuesLocked(uint64_t row) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return FloatsOf(RecordLocked(row));
  }

  void PrefetchLocked(uint64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    index_[MapOf(id)].prefetch(id);
  }

  // Inlined: in a batch's loop, the next ids' misses overlap this one's.
  ABSL_ATTRIBUTE_ALWAYS_INLINE uint64_t FindLocked(uint64_t id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const IndexMap& map = index_[MapOf(id)];
    auto it = map.find(id);
    return it == map.end() ? kNoRow : it->second;
  }

  void MarkRowDirtyLocked(uint64_t row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Chunk& chunk = chunks_[row >> 32];
    const uint64_t offset = row & 0xffffffffu;
    uint64_t& word = DirtyBitsOf(chunk)[offset / 64];
    const uint64_t bit = uint64_t{1} << (offset % 64);
    if (word & bit) return;
    word |= bit;
    if (chunk.num_dirty++ == 0) dirty_chunks_.push_back(row >> 32);
  }

  // Counts the free list too (8 bytes a free slot, as allocated); not the
  // deleted ids awaiting a flush, which TakeDirty empties every interval.
  int64_t AllocatedBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return chunk_bytes_ + index_bytes_ +
           static_cast<int64_t>(free_rows_.capacity() * sizeof(uint64_t));
  }

  // Slots ever used: live rows and free ones.
  int64_t SlotsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return slots_;
  }

  // A position among the slots: a chunk and a row in it.
  struct Hand {
    size_t chunk = 0;
    int64_t offset = 0;
  };
  // The slot at `*hand` (wrapped to the first slot past the last one), then
  // advances it. There is a slot: the caller saw SlotsLocked() > 0.
  uint64_t NextSlotLocked(Hand* hand) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (hand->chunk < chunks_.size() &&
        hand->offset >= chunks_[hand->chunk].used) {
      ++hand->chunk;
      hand->offset = 0;
    }
    if (hand->chunk >= chunks_.size()) *hand = Hand();
    return RowOf(hand->chunk, hand->offset++);
  }

  // Index into sketch_ of the admission sketch's counter `d` of `id`.
  size_t CounterOf(uint64_t id, int d) const {
    const uint64_t h = Mix64(id ^ (0x9E3779B97F4A7C15ULL * (d + 1)));
    return static_cast<size_t>(d) * sketch_width_ + h % sketch_width_;
  }
  uint32_t EstimateLocked(uint64_t id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint32_t estimate = std::numeric_limits<uint32_t>::max();
    for (int d = 0; d < sketch_depth_; ++d) {
      estimate = std::min(estimate, sketch_[CounterOf(id, d)]);
    }
    return estimate;
  }
  bool AdmitsLocked(uint64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // This push would be the id's (estimate + 1)-th.
    return admit_after_ <= 1 ||
           static_cast<int64_t>(EstimateLocked(id)) + 1 >= admit_after_;
  }
  // Counts a dropped push of `id`: conservative update (only the counters at
  // the minimum grow), which keeps count-min's overestimate small.
  void SketchAddLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint32_t estimate = EstimateLocked(id);
    if (estimate == std::numeric_limits<uint32_t>::max()) return;
    for (int d = 0; d < sketch_depth_; ++d) {
      uint32_t& c = sketch_[CounterOf(id, d)];
      if (c == estimate) ++c;
    }
  }

  // Drops row `row` from memory: its slot goes on the free list (reused by
  // the next new row), its id off the index.
  void ForgetRowLocked(uint64_t row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    unsigned char* record = RecordLocked(row);
    const uint64_t id = *IdOf(record);
    index_[MapOf(id)].erase(id);
    erased_ = true;
    Chunk& chunk = chunks_[row >> 32];
    const uint64_t offset = row & 0xffffffffu;
    uint64_t& word = DirtyBitsOf(chunk)[offset / 64];
    const uint64_t bit = uint64_t{1} << (offset % 64);
    if (word & bit) {
      word &= ~bit;
      --chunk.num_dirty;
    }
    if (tiered_) InflightBitsOf(chunk)[offset / 64] &= ~bit;
    *StepOf(record) = kFreeStep;
    free_rows_.push_back(row);
    --num_rows_;
  }

  // Deletes row `row`: forgotten, and its id onto the deletions of the next
  // flush.
  void DeleteRowLocked(uint64_t row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    deleted_ids_.push_back(*IdOf(RecordLocked(row)));
    ForgetRowLocked(row);
    version_dirty_ = true;
  }

  // Evicts up to `n` clean rows of a tiered table not in `keep` (handles;
  // kNoRow ignored) to disk (they are there already: forgotten), each the
  // least recently used of the next kEvictSample clean rows of the CLOCK
  // hand (the next one, when evicting more than 1/kEvictSample of the
  // slots), looking at most at kEvictScanPerRow rows per row asked and at
  // two passes over the slots. Returns the rows evicted; fewer when too few
  // rows are clean (a flush cleans them). Without a disk tier, none.
  int64_t EvictCleanLocked(int64_t n, const std::vector<uint64_t>& keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (source_.load() == nullptr || n <= 0) return 0;
    absl::flat_hash_set<uint64_t> kept;
    for (uint64_t row : keep) {
      if (row != kNoRow) kept.insert(row);
    }
    // Evicting most of the table, the oldest of a sample hardly matters:
    // the first clean row goes.
    const int64_t slots = SlotsLocked();
    const int sample = n * kEvictSample > slots ? 1 : kEvictSample;
    // Rows looked at (free slots do not count: after a large eviction most
    // slots are free, and counting them left rows over max_rows), and slots
    // visited in all, at most two passes.
    const int64_t budget =
        std::min((n + 1) * kEvictScanPerRow, 2 * slots + kEvictScanPerRow);
    const int64_t max_visits = 2 * slots + kEvictScanPerRow;
    int64_t scanned = 0, visited = 0, evicted = 0;
    while (evicted < n && scanned < budget && visited < max_visits) {
      uint64_t best = kNoRow;
      int64_t best_version = std::numeric_limits<int64_t>::max();
      for (int seen = 0;
           seen < sample && scanned < budget && visited < max_visits;
           ++visited) {
        const uint64_t row = NextSlotLocked(&evict_hand_);
        unsigned char* record = RecordLocked(row);
        if (*StepOf(record) < 0) continue;  // free
        ++scanned;
        if (!CleanLocked(row) || kept.contains(row)) continue;
        ++seen;
        if (*LastVersionOf(record) < best_version) {
          best = row;
          best_version = *LastVersionOf(record);
        }
      }
      if (best == kNoRow) break;
      ForgetRowLocked(best);
      ++evicted;
    }
    if (evicted > 0) {
      ++evict_epoch_;
      stats_.evictions += evicted;
    }
    return evicted;
  }

  // Rows of the table in memory and on disk: those in memory, unless rows
  // are left on disk (then counted from the stored count on).
  int64_t TotalRowsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reads_disk_ ? total_rows_ : num_rows_;
  }

  // The distinct ids of `ids` not held in memory.
  std::vector<uint64_t> MissingLocked(absl::Span<const uint64_t> ids) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<uint64_t> missing;
    absl::flat_hash_set<uint64_t> seen;
    for (uint64_t id : ids) {
      if (FindLocked(id) == kNoRow && !absent_.contains(id) &&
          seen.insert(id).second) {
        missing.push_back(id);
      }
    }
    return missing;
  }

  // Reads the stored rows of `ids` (distinct) into `*fetched`, in calls of
  // at most RowSource::kMaxRowsPerCall ids. Counts the lookups.
  absl::Status Fetch(const std::vector<uint64_t>& ids, Fetched* fetched) {
    RowSource* source = source_.load();
    int64_t found = 0;
    for (size_t begin = 0; begin < ids.size();
         begin += RowSource::kMaxRowsPerCall) {
      const size_t n =
          std::min<size_t>(RowSource::kMaxRowsPerCall, ids.size() - begin);
      auto rows =
          source->ReadRows(name(), absl::MakeConstSpan(ids.data() + begin, n));
      if (!rows.ok()) {
        return absl::Status(
            rows.status().code(),
            absl::StrCat("reading rows of ", name(),
                         " from disk: ", rows.status().message()));
      }
      for (size_t i = 0; i < n; ++i) {
        std::optional<StoredRow>& row = (*rows)[i];
        if (!row.has_value()) continue;
        if (static_cast<int64_t>(row->values.size()) != row_floats_) {
          return absl::DataLossError(absl::StrCat(
              "stored row ", ids[begin + i], " of ", name(), " has ",
              row->values.size(), " floats; the spec expects ", row_floats_));
        }
        fetched->emplace(ids[begin + i], *std::move(row));
        ++found;
      }
    }
    disk_reads_ += ids.size();
    disk_hits_ += found;
    return absl::OkStatus();
  }

  // Keeps the fetched rows of `ids` still missing from memory (rows[i] ==
  // kNoRow) in memory, setting their rows[i]: all of them, if `fits` their
  // memory; false (none kept) if not. `growth` gets what they allocated.
  bool InstallLocked(absl::Span<const uint64_t> ids,
                     std::vector<uint64_t>* rows, const Fetched& fetched,
                     const Fits& fits, int64_t now_ms, Growth* growth)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<size_t> install;
    std::array<int64_t, kIndexMaps> new_per_map{};
    absl::flat_hash_set<uint64_t> seen;
    for (size_t i = 0; i < ids.size(); ++i) {
      if ((*rows)[i] != kNoRow || !fetched.contains(ids[i]) ||
          !seen.insert(ids[i]).second) {
        continue;
      }
      install.push_back(i);
      ++new_per_map[MapOf(ids[i])];
    }
    if (install.empty()) return true;
    absl::StatusOr<int64_t> bytes =
        GrowthBytesLocked(install.size(), new_per_map, 0);
    const int64_t allocated = AllocatedBytesLocked();
    const int64_t rows_before = num_rows_;
    // Over the shard's budget: clean rows of this table make room, in
    // rounds as for a push (TensorStore::PushTables).
    for (int round = 0;
         round < kMakeRoomRounds && tiered_ && bytes.ok() && !fits(*bytes);
         ++round) {
      if (EvictCleanLocked(install.size(), *rows) == 0) break;
      bytes = GrowthBytesLocked(install.size(), new_per_map, 0);
    }
    if (!bytes.ok() || !fits(*bytes)) {
      growth->Add(GrowthLocked(num_rows_ - rows_before, allocated));
      return false;
    }
    absl::flat_hash_map<uint64_t, uint64_t> installed;
    for (size_t i : install) {
      const uint64_t row = AddRowLocked(ids[i], &fetched.at(ids[i]));
      if (tracked_) {
        unsigned char* record = RecordLocked(row);
        *LastVersionOf(record) = version_;
        *LastMillisOf(record) = now_ms;
      }
      installed.emplace(ids[i], row);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if ((*rows)[i] != kNoRow) continue;
      auto it = installed.find(ids[i]);
      if (it != installed.end()) (*rows)[i] = it->second;
    }
    growth->Add(GrowthLocked(num_rows_ - rows_before, allocated));
    return true;
  }

  // Evicts `n` rows not in `keep` (handles; kNoRow ignored), approximately
  // the least recently updated: a hand walks the slots (CLOCK-like) and each
  // eviction deletes the oldest (by the table version of its last update) of
  // the next kEvictSample live rows. The caller checked that `n` such rows
  // exist.
  void EvictLocked(int64_t n, const std::vector<uint64_t>& keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::flat_hash_set<uint64_t> kept;
    for (uint64_t row : keep) {
      if (row != kNoRow) kept.insert(row);
    }
    const int64_t slots = SlotsLocked();
    for (int64_t e = 0; e < n; ++e) {
      uint64_t best = kNoRow;
      int64_t best_version = std::numeric_limits<int64_t>::max();
      int seen = 0;
      for (int64_t scanned = 0; seen < kEvictSample && scanned < slots;
           ++scanned) {
        const uint64_t row = NextSlotLocked(&evict_hand_);
        unsigned char* record = RecordLocked(row);
        if (*StepOf(record) < 0 || kept.contains(row)) continue;
        ++seen;
        if (*LastVersionOf(record) < best_version) {
          best = row;
          best_version = *LastVersionOf(record);
        }
      }
      if (best == kNoRow) break;  // PlanLocked checked; never
      DeleteRowLocked(best);
      ++stats_.evictions;
    }
  }

  Growth GrowthLocked(int64_t rows, int64_t allocated_before) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Growth g;
    g.rows = rows;
    g.parameter_bytes = rows * dim_ * kFloat;
    g.slot_bytes = rows * (row_floats_ - dim_) * kFloat;
    g.overhead_bytes = AllocatedBytesLocked() - allocated_before -
                       g.parameter_bytes - g.slot_bytes;
    return g;
  }

  // The bytes `num_new` new rows would allocate, `new_per_map[m]` of them in
  // index map m: the chunks they need, and the index maps' growth (what stays
  // allocated; a map's old array also lives during its rehash, 1/64 of the
  // index at most). ResourceExhausted over the row limit.
  // `evicted` rows are deleted first, their slots reused.
  absl::StatusOr<int64_t> GrowthBytesLocked(
      int64_t num_new, const std::array<int64_t, kIndexMaps>& new_per_map,
      int64_t evicted) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (num_new - evicted > max_table_rows_ - num_rows_) {
      return Rejected(
          absl::StatusCode::kResourceExhausted, kReasonOutOfMemory,
          absl::StrCat(num_new, " new rows of ", name(), " would exceed its ",
                       max_table_rows_, " rows on shard ", shard_, " (holds ",
                       num_rows_, "; max_table_rows)"));
    }
    int64_t bytes = 0;
    int64_t left = num_new - evicted - static_cast<int64_t>(free_rows_.size());
    if (!chunks_.empty()) left -= chunks_.back().capacity - chunks_.back().used;
    for (int64_t c = chunks_.size(); left > 0; ++c) {
      if (c >= kMaxChunks) {
        return Rejected(
            absl::StatusCode::kResourceExhausted, kReasonOutOfMemory,
            absl::StrCat(num_new, " new rows of ", name(), " need more than ",
                         kMaxChunks, " chunks, all a part can address (holds ",
                         num_rows_, " rows)"));
      }
      const int64_t rows = ChunkRows(c);
      bytes += ChunkBytes(rows);
      left -= rows;
    }
    for (int m = 0; m < kIndexMaps; ++m) {
      if (new_per_map[m] == 0) continue;
      const size_t capacity = index_[m].bucket_count();
      bytes += IndexBytes(GrownCapacity(
                   capacity, index_[m].size() + new_per_map[m], erased_)) -
               IndexBytes(capacity);
    }
    return bytes;
  }

  // Creates row `id` with the initializer's values, or `stored`'s (read from
  // disk); the caller checked the limits. A new row is not dirty: its values
  // are a pure function of the spec until updated, or are on disk.
  uint64_t AddRowLocked(uint64_t id, const StoredRow* stored)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t row;
    if (!free_rows_.empty()) {
      row = free_rows_.back();
      free_rows_.pop_back();
    } else {
      row = NewSlotLocked();
    }
    if (!absent_.empty()) absent_.erase(id);  // in memory now
    unsigned char* record = RecordLocked(row);
    *IdOf(record) = id;
    *StepOf(record) = 0;
    float* values = FloatsOf(record);
    if (stored != nullptr) {
      std::copy_n(stored->values.data(), row_floats_, values);
      *StepOf(record) = std::max<int64_t>(stored->step, 0);
    } else {
      InitializeRows(spec_, id, absl::MakeSpan(values, dim_));
      std::vector<float*> slot_ptrs(num_slots());
      for (size_t s = 0; s < slot_ptrs.size(); ++s) {
        slot_ptrs[s] = values + (s + 1) * dim_;
      }
      optimizer_->InitSlots(absl::MakeSpan(slot_ptrs), dim_);
    }
    std::fill(values + row_floats_,
              reinterpret_cast<float*>(record + row_bytes_), 0.0f);  // pad
    IndexMap& map = index_[MapOf(id)];
    const size_t capacity = map.bucket_count();
    map.emplace(id, row);
    index_bytes_ += IndexBytes(map.bucket_count()) - IndexBytes(capacity);
    ++num_rows_;
    return row;
  }

  // A slot never used, from the newest chunk or a new one.
  uint64_t NewSlotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (chunks_.empty() || chunks_.back().used == chunks_.back().capacity) {
      Chunk chunk;
      chunk.capacity = ChunkRows(chunks_.size());
      const int64_t bytes = ChunkBytes(chunk.capacity);
      // Not value-initialized: a row's pages are touched when it is created.
      chunk.memory.reset(new unsigned char[bytes]);
      std::memset(chunk.memory.get(), 0, DirtyBytes(chunk.capacity) * bitmaps_);
      chunk_bytes_ += bytes;
      chunks_.push_back(std::move(chunk));
    }
    Chunk& chunk = chunks_.back();
    ++slots_;
    return RowOf(chunks_.size() - 1, chunk.used++);
  }

  const int64_t dim_;
  const int64_t max_rows_;  // 0 = unbounded
  const int shard_;
  const int num_shards_;
  const v1::MemoryPolicy policy_;
  const int64_t admit_after_;  // > 1: the sketch admits new rows
  const int sketch_width_;
  const int sketch_depth_;
  const bool expires_;  // by steps or seconds
  const bool tracked_;  // rows carry their last update (expiry, LRU)
  // EVICTION_DISK with max_rows: rows over it are evicted to the disk tier.
  const bool tiered_;
  const int bitmaps_;  // per chunk: dirty bits, and a tiered table's in-flight
  const int64_t header_bytes_;
  const int64_t row_floats_;  // values, then each slot
  const int64_t row_bytes_;   // a record: header, floats, pad
  const int64_t max_chunk_bytes_;
  const int64_t max_table_rows_;

  mutable absl::Mutex mu_;
  std::array<IndexMap, kIndexMaps> index_ ABSL_GUARDED_BY(mu_);
  // Moves only the Chunk structs when it grows; the rows stay put.
  std::vector<Chunk> chunks_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> dirty_chunks_ ABSL_GUARDED_BY(mu_);  // num_dirty > 0
  // A tiered table's chunks with rows in flight (taken, not yet written):
  // those of every TakeDirty since the last successful write.
  std::vector<uint32_t> inflight_chunks_ ABSL_GUARDED_BY(mu_);
  int64_t num_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t slots_ ABSL_GUARDED_BY(mu_) = 0;  // sum of the chunks' `used`
  int64_t chunk_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t index_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool version_dirty_ ABSL_GUARDED_BY(mu_) = false;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Deleted rows' slots, reused before new ones; live rows never move.
  std::vector<uint64_t> free_rows_ ABSL_GUARDED_BY(mu_);
  // Ids deleted since the last TakeDirty, for the flush to delete.
  std::vector<uint64_t> deleted_ids_ ABSL_GUARDED_BY(mu_);
  bool erased_ ABSL_GUARDED_BY(mu_) = false;  // the index has had erases
  // Admission counters (count-min): sketch_depth_ rows of sketch_width_.
  std::vector<uint32_t> sketch_ ABSL_GUARDED_BY(mu_);
  Hand sweep_hand_ ABSL_GUARDED_BY(mu_);
  Hand evict_hand_ ABSL_GUARDED_BY(mu_);
  // The disk tier (set once, before serving), and whether rows missing from
  // memory are looked up there.
  // Set before serving (AttachDisk) and read by lookups outside the lock.
  std::atomic<RowSource*> source_{nullptr};
  bool reads_disk_ ABSL_GUARDED_BY(mu_) = false;
  // The count in the stored version record (-1: none), and while reading the
  // disk, the table's rows in memory and on disk: never deleted there, so
  // the stored count plus the new ids pushed since.
  int64_t stored_rows_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t total_rows_ ABSL_GUARDED_BY(mu_) = 0;
  // Counts evictions to disk: a read of the disk that began before one may
  // have read a row older than the one evicted (RefetchIfEvictedLocked).
  int64_t evict_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Ids known not to be on disk, nor in memory (RememberAbsentLocked).
  absl::flat_hash_set<uint64_t> absent_ ABSL_GUARDED_BY(mu_);
  // Disk lookups happen outside the lock: atomics.
  std::atomic<int64_t> disk_reads_{0};
  std::atomic<int64_t> disk_hits_{0};
  // Pull counts change under a reader's call: mutable.
  mutable TablePolicyStats stats_ ABSL_GUARDED_BY(mu_);
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
      // The admission sketch is allocated with the part.
      const v1::MemoryPolicy& policy = spec.memory_policy();
      if (policy.admit_after_pushes() > 1) {
        pending_bytes += SketchBytes(policy);
        absl::Status fits = CheckMemory(
            pending_bytes,
            absl::StrCat("table ", spec.name(), "'s admission sketch"));
        if (!fits.ok()) return fits;
      }
      fresh.push_back(std::make_unique<EmbeddingPart>(
          spec, *std::move(optimizer), options_.shard_index,
          options_.placement.num_shards(), options_.row_chunk_bytes,
          options_.max_table_rows));
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
    const std::string name_copy = name;
    Part* raw = part.get();
    if (!parts_.try_emplace(std::move(name), std::move(part)).second) continue;
    if (RowSource* source = source_.load();
        source != nullptr && dense == nullptr) {
      // A new table has no rows on disk; a tiered one will evict there.
      static_cast<EmbeddingPart*>(raw)->SetDisk(source, false);
    }
    if (dense != nullptr) {
      parameter_bytes_ += dense->size() * kFloat;
      slot_bytes_ += dense->size() * kFloat * dense->num_slots();
    } else {
      table_overhead_bytes_ +=
          static_cast<EmbeddingPart*>(parts_[name_copy].get())->sketch_bytes();
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
  // Nothing more (rows into free slots and index room a table already
  // holds) always fits: memory a table keeps after evictions (its free
  // slots, their list) may leave the store a little over its budget, and
  // refusing what allocates nothing would only evict more.
  if (options_.max_memory_bytes <= 0 || more <= 0 ||
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

absl::StatusOr<DenseView> TensorStore::PullDenseView(const std::string& tensor,
                                                     int64_t row_begin,
                                                     int64_t floats) const {
  auto part = FindDense(tensor);
  if (!part.ok()) return part.status();
  // A negative count would become a huge size_t: refuse it first.
  if (floats <= 0) {
    return Rejected(absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange,
                    absl::StrCat("pull of ", floats, " floats of ", tensor));
  }
  absl::Status range =
      (*part)->CheckRange(row_begin, static_cast<size_t>(floats), "pull");
  if (!range.ok()) return range;
  return (*part)->View(row_begin, static_cast<size_t>(floats));
}

namespace {
size_t FloatsOf(const DenseRangeUpdate& r) { return r.grad.size(); }
size_t FloatsOf(const DenseRangeRead& r) { return r.out.size(); }
}  // namespace

template <typename Range>
absl::StatusOr<std::vector<TensorStore::DensePart*>>
TensorStore::DenseBatchParts(absl::Span<const Range> ranges,
                             const char* what) const {
  std::vector<DensePart*> parts;
  parts.reserve(ranges.size());
  absl::flat_hash_set<const DensePart*> named;
  for (const Range& r : ranges) {
    auto part = FindDense(r.tensor);
    if (!part.ok()) return part.status();
    TESSERA_RETURN_IF_ERROR(
        (*part)->CheckRange(r.row_begin, FloatsOf(r), what));
    if (!named.insert(*part).second) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      absl::StrCat(what, " names ", r.tensor, " twice"));
    }
    parts.push_back(*part);
  }
  return parts;
}

absl::StatusOr<TablesPushResult> TensorStore::PushDenseBatch(
    absl::Span<const DenseRangeUpdate> ranges) {
  auto parts = DenseBatchParts(ranges, "gradient");
  if (!parts.ok()) return parts.status();
  TablesPushResult result;
  result.versions.reserve(ranges.size());
  for (const DenseRangeUpdate& r : ranges) {
    if (optim::AllFinite(r.grad)) continue;
    if (options_.non_finite == NonFinitePolicy::kReject) {
      return NonFiniteError(std::string(r.tensor));
    }
    result.skipped = true;
  }
  for (size_t i = 0; i < ranges.size(); ++i) {
    result.versions.push_back(
        result.skipped
            ? (*parts)[i]->Read(ranges[i].row_begin, absl::Span<float>())
            : (*parts)[i]->Apply(ranges[i].row_begin, ranges[i].grad).version);
  }
  return result;
}

absl::StatusOr<std::vector<int64_t>> TensorStore::PullDenseBatch(
    absl::Span<const DenseRangeRead> ranges) const {
  auto parts = DenseBatchParts(ranges, "pull");
  if (!parts.ok()) return parts.status();
  std::vector<int64_t> versions;
  versions.reserve(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    versions.push_back((*parts)[i]->Read(ranges[i].row_begin, ranges[i].out));
  }
  return versions;
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
    absl::Span<const TableRowsUpdate> tables) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  const size_t n = tables.size();
  std::vector<EmbeddingPart*> parts;
  parts.reserve(n);
  absl::flat_hash_set<const EmbeddingPart*> named;
  bool finite = true;
  for (const TableRowsUpdate& u : tables) {
    auto t = CheckTableRows(u.tensor, u.ids, u.grad.size(), "gradient");
    if (!t.ok()) return t.status();
    if (n > 1 && !named.insert(*t).second) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      absl::StrCat("push names ", u.tensor, " twice"));
    }
    parts.push_back(*t);
    finite = finite && optim::AllFinite(u.grad);
  }
  TablesPushResult result;
  result.versions.reserve(n);
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
  // Every table's lock at once, taken in address order (so two such pushes
  // never wait on each other): every row is looked up and the budget checked
  // for all new rows together before any table changes. Pushes to existing
  // rows are never refused by the budget.
  // Rows the tables reading the disk miss, read outside their locks.
  std::vector<EmbeddingPart::Fetched> fetched(n);
  std::vector<int64_t> epochs(n, -1);
  for (size_t i = 0; i < n; ++i) {
    TESSERA_RETURN_IF_ERROR(
        parts[i]->FetchMissing(tables[i].ids, &fetched[i], &epochs[i]));
  }
  std::vector<EmbeddingPart*> lock_order(parts);
  std::sort(lock_order.begin(), lock_order.end());
  for (EmbeddingPart* t : lock_order) t->mu().Lock();
  struct Unlock {
    std::vector<EmbeddingPart*>* parts;
    ~Unlock() {
      for (EmbeddingPart* t : *parts) t->mu().Unlock();
    }
  } unlock{&lock_order};
  std::vector<EmbeddingPart::PushPlan> plans(n);
  int64_t new_rows = 0, new_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    TESSERA_RETURN_IF_ERROR(parts[i]->RefetchIfEvictedLocked(
        tables[i].ids, epochs[i], &fetched[i]));
    absl::Status planned =
        parts[i]->PlanLocked(tables[i].ids, tables[i].grad,
                             epochs[i] < 0 ? nullptr : &fetched[i], &plans[i]);
    if (!planned.ok()) return planned;
    // Each is at most what the table may still allocate: the sums fit.
    new_rows += plans[i].num_new;
    new_bytes += plans[i].new_bytes;
  }
  std::vector<RowGrowth> growth(n);
  // Over the shard's budget: tiered tables make room by evicting clean rows
  // of their own (their slots take the new rows), then plan again, a push's
  // worth each round, until the plan fits or nothing clean is left.
  for (int round = 0; round < EmbeddingPart::kMakeRoomRounds && new_rows > 0 &&
                      !CheckMemory(new_bytes, "").ok();
       ++round) {
    bool made_room = false;
    for (size_t i = 0; i < n; ++i) {
      if (parts[i]->tiered() && plans[i].num_new > 0) {
        made_room |= parts[i]->MakeRoomLocked(plans[i], &growth[i]);
      }
    }
    if (!made_room) break;
    new_rows = new_bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      plans[i] = EmbeddingPart::PushPlan();
      absl::Status planned = parts[i]->PlanLocked(
          tables[i].ids, tables[i].grad, epochs[i] < 0 ? nullptr : &fetched[i],
          &plans[i]);
      if (!planned.ok()) {
        for (const RowGrowth& g : growth) CountGrowth(g);
        return planned;
      }
      new_rows += plans[i].num_new;
      new_bytes += plans[i].new_bytes;
    }
  }
  if (new_rows > 0) {
    absl::Status fits = CheckMemory(
        new_bytes,
        n == 1 ? absl::StrCat(new_rows, " new rows of ", tables[0].tensor)
               : absl::StrCat(new_rows, " new rows of ", n, " tables"));
    if (!fits.ok()) {
      for (const RowGrowth& g : growth) CountGrowth(g);  // evictions
      // A tiered table whose rows are all dirty can free memory only by a
      // flush: ask for it now instead of at the next interval, so that the
      // retried push finds clean rows to evict.
      for (size_t i = 0; i < n; ++i) {
        if (parts[i]->tiered() && plans[i].num_new > 0) wants_flush_ = true;
      }
      return fits;
    }
  }
  const int64_t now_ms = absl::ToUnixMillis(Now());
  for (size_t i = 0; i < n; ++i) {
    PushResult pushed;
    RowGrowth applied;
    parts[i]->ApplyLocked(plans[i], now_ms, &pushed, &applied);
    growth[i].Add(applied);
    if (parts[i]->NeedsFlushLocked()) wants_flush_ = true;
    result.versions.push_back(pushed.version);
  }
  for (const RowGrowth& g : growth) CountGrowth(g);
  return result;
}

absl::StatusOr<int64_t> TensorStore::PullRows(const std::string& tensor,
                                              absl::Span<const uint64_t> ids,
                                              absl::Span<float> out) {
  TableRowsRead read{tensor, ids, out};
  auto versions = PullTables(absl::MakeConstSpan(&read, 1));
  if (!versions.ok()) return versions.status();
  return (*versions)[0];
}

absl::StatusOr<std::vector<int64_t>> TensorStore::PullTables(
    absl::Span<const TableRowsRead> tables) {
  std::vector<EmbeddingPart*> parts;
  parts.reserve(tables.size());
  for (const TableRowsRead& r : tables) {
    auto t = CheckTableRows(r.tensor, r.ids, r.out.size(), "pull buffer");
    if (!t.ok()) return t.status();
    parts.push_back(*t);
  }
  // Rows never pushed are computed, not created; rows read from disk are
  // kept in memory where the budget has room for them.
  const EmbeddingPart::Fits fits = [this](int64_t bytes) {
    return CheckMemory(bytes, "").ok();
  };
  const int64_t now_ms = absl::ToUnixMillis(Now());
  std::vector<int64_t> versions;
  versions.reserve(tables.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    RowGrowth growth;
    auto version =
        parts[i]->Read(tables[i].ids, tables[i].out, fits, now_ms, &growth);
    CountGrowth(growth);
    if (!version.ok()) return version.status();
    versions.push_back(*version);
  }
  return versions;
}

std::vector<TensorStore::EmbeddingPart*> TensorStore::Tables(
    bool disk_only) const {
  std::vector<EmbeddingPart*> tables;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, part] : parts_) {
    auto* table = dynamic_cast<EmbeddingPart*>(part.get());
    if (table != nullptr && (!disk_only || table->ReadsDisk())) {
      tables.push_back(table);
    }
  }
  return tables;
}

void TensorStore::AttachDisk(RowSource* source, bool rows_on_disk_only) {
  source_ = source;
  for (EmbeddingPart* table : Tables(false)) {
    table->SetDisk(source, rows_on_disk_only && !table->deletes_rows());
  }
}

bool TensorStore::LoadsRowsEagerly(const std::string& tensor) const {
  auto table = FindEmbedding(tensor);
  return table.ok() && (*table)->deletes_rows();
}

std::vector<std::string> TensorStore::LoadingTables() const {
  std::vector<std::string> names;
  for (EmbeddingPart* table : Tables(true)) {
    if (table->Loading()) names.push_back(table->name());
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<int64_t> TensorStore::LoadRows(const std::string& tensor,
                                              const StoredRowBatch& batch) {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  const EmbeddingPart::Fits fits = [this](int64_t bytes) {
    return CheckMemory(bytes, "").ok();
  };
  RowGrowth growth;
  auto loaded = (*table)->Load(batch, fits, &growth);
  CountGrowth(growth);
  return loaded;
}

void TensorStore::FinishLoading(const std::string& tensor) {
  auto table = FindEmbedding(tensor);
  if (table.ok()) (*table)->FinishLoading();
}

bool TensorStore::ReadsDisk(const std::string& tensor) const {
  auto table = FindEmbedding(tensor);
  return table.ok() && (*table)->ReadsDisk();
}

int64_t TensorStore::EvictFlushed() {
  int64_t evicted = 0;
  for (EmbeddingPart* table : Tables(true)) {
    if (!table->tiered()) continue;
    RowGrowth growth;
    evicted += table->EvictFlushed(&growth);
    CountGrowth(growth);
  }
  return evicted;
}

void TensorStore::CountGrowth(const RowGrowth& growth) {
  // What grew first, what shrank last (a deletion turns parameter bytes into
  // overhead): a concurrent budget check may see a little too much memory,
  // never too little.
  std::atomic<int64_t>* sizes[] = {&parameter_bytes_, &slot_bytes_,
                                   &table_overhead_bytes_};
  const int64_t deltas[] = {growth.parameter_bytes, growth.slot_bytes,
                            growth.overhead_bytes};
  for (int i = 0; i < 3; ++i) {
    if (deltas[i] > 0) *sizes[i] += deltas[i];
  }
  for (int i = 0; i < 3; ++i) {
    if (deltas[i] < 0) *sizes[i] += deltas[i];
  }
}

absl::Time TensorStore::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

int64_t TensorStore::ExpireRows(int64_t max_slots_per_table) {
  std::vector<EmbeddingPart*> tables;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, part] : parts_) {
      auto* table = dynamic_cast<EmbeddingPart*>(part.get());
      if (table != nullptr && table->expires()) tables.push_back(table);
    }
  }
  const int64_t now_ms = absl::ToUnixMillis(Now());
  int64_t deleted = 0;
  for (EmbeddingPart* table : tables) {
    RowGrowth growth;
    table->Sweep(now_ms, max_slots_per_table, &growth);
    CountGrowth(growth);
    deleted -= growth.rows;
  }
  return deleted;
}

std::vector<TablePolicyStats> TensorStore::PolicyStats() const {
  std::vector<const EmbeddingPart*> tables;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, part] : parts_) {
      auto* table = dynamic_cast<const EmbeddingPart*>(part.get());
      if (table != nullptr) tables.push_back(table);
    }
  }
  std::vector<TablePolicyStats> out;
  out.reserve(tables.size());
  for (const EmbeddingPart* table : tables) out.push_back(table->PolicyStats());
  std::sort(out.begin(), out.end(),
            [](const TablePolicyStats& a, const TablePolicyStats& b) {
              return a.tensor < b.tensor;
            });
  return out;
}

absl::StatusOr<TableFootprint> TensorStore::Footprint(
    const std::string& tensor) const {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  return (*table)->Footprint();
}

const void* TensorStore::RowAddressForTesting(const std::string& tensor,
                                              uint64_t id) const {
  auto table = FindEmbedding(tensor);
  return table.ok() ? (*table)->RowAddress(id) : nullptr;
}

absl::StatusOr<RowScanBatch> TensorStore::ScanRows(const std::string& tensor,
                                                   uint64_t cursor,
                                                   int64_t max_rows) {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  RowScanBatch batch;
  max_rows = std::max<int64_t>(max_rows, 1);
  RowSource* source = source_.load();
  if (source == nullptr || !(*table)->ReadsDisk()) {
    (*table)->Scan(cursor, max_rows, &batch);
    return batch;
  }
  // On disk in id order; the cursor is the next id (0: the first).
  std::optional<uint64_t> after;
  if (cursor > 0) after = cursor - 1;
  auto stored = source->ScanStoredRows(
      tensor, after, std::min(max_rows, RowSource::kMaxRowsPerCall));
  if (!stored.ok()) {
    return absl::Status(stored.status().code(),
                        absl::StrCat("reading rows of ", tensor, " from disk: ",
                                     stored.status().message()));
  }
  const int64_t dim = (*table)->dim();
  batch.ids.reserve(stored->rows.size());
  batch.values.reserve(stored->rows.size() * dim);
  for (const auto& [id, row] : stored->rows) {
    if (static_cast<int64_t>(row.values.size()) < dim) {
      return absl::DataLossError(absl::StrCat("stored row ", id, " of ", tensor,
                                              " has ", row.values.size(),
                                              " floats, fewer than its dim"));
    }
    batch.ids.push_back(id);
    batch.values.insert(batch.values.end(), row.values.begin(),
                        row.values.begin() + dim);
  }
  batch.version = (*table)->Overlay(batch.ids, absl::MakeSpan(batch.values));
  batch.done = stored->done || batch.ids.empty() ||
               batch.ids.back() == std::numeric_limits<uint64_t>::max();
  batch.next = batch.done ? 0 : batch.ids.back() + 1;
  return batch;
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
  for (const auto& row : snapshot.deleted_rows) {
    auto table = FindEmbedding(row.tensor);
    if (table.ok()) (*table)->MarkDeleted(row.id);
  }
  for (const auto& v : snapshot.versions) {
    auto part = FindDense(v.tensor);
    if (part.ok()) (*part)->MarkDirty(-1);
  }
}

void TensorStore::MarkPersisted(const DirtySnapshot& snapshot) {
  for (const auto& v : snapshot.versions) {
    if (v.initialized) {
      auto part = FindDense(v.tensor);
      if (part.ok()) (*part)->MarkInitPersisted();
    } else if (v.rows >= 0) {  // an embedding table
      auto table = FindEmbedding(v.tensor);
      if (table.ok() && (*table)->tiered()) (*table)->MarkFlushed();
    }
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
  RowGrowth growth;
  absl::Status status = (*table)->Restore(id, step, values, &growth);
  CountGrowth(growth);
  return status;
}

absl::Status TensorStore::RestoreVersion(const std::string& tensor,
                                         int64_t version, int64_t step,
                                         bool initialized, int64_t rows) {
  auto part = FindPart(tensor);
  if (!part.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored version of ", tensor,
                     " has no tensor: ", part.status().message()));
  }
  (*part)->RestoreVersion(version, step, initialized, rows);
  return absl::OkStatus();
}

absl::Status TensorStore::RestoreRowCount(const std::string& tensor,
                                          int64_t rows) {
  auto table = FindEmbedding(tensor);
  if (!table.ok()) return table.status();
  (*table)->RestoreRowCount(rows);
  return absl::OkStatus();
}

bool TensorStore::KnowsStoredRows(const std::string& tensor) const {
  auto table = FindEmbedding(tensor);
  return table.ok() && (*table)->knows_stored_rows();
}

}  // namespace tessera

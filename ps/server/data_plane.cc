#include "ps/server/data_plane.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "ps/common/checked_math.h"
#include "ps/common/reject_reason.h"
#include "ps/spec/placement.h"
#include "ps/wire/data_wire.h"
#include "tessera/v1/data.pb.h"

namespace tessera {
namespace {

// Requests queued at one worker before the socket thread stops reading the
// ROUTER (ZeroMQ and TCP then push back on clients).
constexpr int kMaxQueuedPerWorker = 256;
// Requests read from the ROUTER in a row before replies get a turn.
constexpr int kReadBatch = 64;

std::string WorkerEndpoint(int i) {
  return absl::StrCat("inproc://tessera-data-worker-", i);
}
constexpr char kRepliesEndpoint[] = "inproc://tessera-data-replies";

// A span over a payload frame's values, in place when its data is aligned for
// T, else copied once into `scratch`. ZeroMQ gives large frames their own
// (aligned) allocation but may pack small ones into a shared receive buffer
// at any offset.
template <typename T>
absl::Span<const T> AlignedSpan(const ZmqFrame& frame,
                                std::vector<T>* scratch) {
  const size_t n = frame.size() / sizeof(T);
  if (reinterpret_cast<uintptr_t>(frame.data()) % alignof(T) == 0) {
    return absl::MakeConstSpan(reinterpret_cast<const T*>(frame.data()), n);
  }
  scratch->resize(n);
  std::memcpy(scratch->data(), frame.data(), n * sizeof(T));
  return *scratch;
}

// The payload a request moves: what it carries, or for a pull what it asks
// for (unknown, so large, without a row size).
int64_t PayloadBytes(const v1::DataHeader& h, int64_t bytes_in) {
  switch (h.op()) {
    case v1::DataHeader::PULL_DENSE:
    case v1::DataHeader::PULL_ROWS: {
      int64_t floats = 0, bytes = 0;
      if (h.row_size() <= 0 ||
          !CheckedMul(h.row_count(), h.row_size(), &floats) ||
          !CheckedMul(floats, sizeof(float), &bytes)) {
        return std::numeric_limits<int64_t>::max();
      }
      return bytes;
    }
    case v1::DataHeader::PULL_TABLES: {
      // The layout check (CheckTables) passed: each product and the sum of
      // floats fit in int64; their bytes may not.
      int64_t floats = 0, bytes = 0;
      for (const v1::DataHeader::TableRows& t : h.tables()) {
        floats += t.row_count() * t.row_size();
      }
      if (!CheckedMul(floats, sizeof(float), &bytes)) {
        return std::numeric_limits<int64_t>::max();
      }
      return bytes;
    }
    case v1::DataHeader::PUSH_DENSE_BATCH:
    case v1::DataHeader::PULL_DENSE_BATCH:
      // The layout check passed CheckDenseRanges: the bytes fit in int64.
      return DenseBatchFloats(h) * static_cast<int64_t>(sizeof(float));
    case v1::DataHeader::PUSH_DENSE:
      if (h.shm_segment() != 0) {  // The layout check passed ShmBytes.
        return ShmBytes(h).value_or(std::numeric_limits<int64_t>::max());
      }
      return bytes_in;
    default:
      return bytes_in;
  }
}

// ZeroMQ's release of a dense pull's frame: drops the view's reference.
void ReleaseView(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const std::vector<float>>*>(hint);
}

bool SendPointer(void* socket, void* pointer) {
  while (zmq_send(socket, &pointer, sizeof(pointer), 0) < 0) {
    if (zmq_errno() != EINTR) return false;
  }
  return true;
}

// Receives a pointer; false when none is waiting (ZMQ_DONTWAIT) or the
// context is gone.
bool RecvPointer(void* socket, int flags, void** pointer) {
  while (true) {
    const int n = zmq_recv(socket, pointer, sizeof(*pointer), flags);
    if (n == sizeof(*pointer)) return true;
    if (n < 0 && zmq_errno() == EINTR) continue;
    return false;
  }
}

}  // namespace

// Buffers for pull replies, reused. A fresh large allocation costs a page
// fault per 4 KiB page on first touch, which (on a VM especially) costs more
// than sending the bytes, and glibc's malloc gives large blocks back to the
// kernel whenever several are freed together. Each thread that makes replies
// has its own pool; a buffer comes back to it from ZeroMQ's I/O thread once
// sent, so the lock is shared by two threads at most.
//
// Thread-safe.
class DataPlane::ReplyPool {
 public:
  // Below this, malloc's own free lists do as well.
  static constexpr size_t kMinPooledBytes = 16 << 10;

  explicit ReplyPool(size_t max_pooled_bytes)
      : max_pooled_bytes_(max_pooled_bytes) {}
  ~ReplyPool() {
    for (auto& [bytes, buffers] : free_) {
      for (Block* b : buffers) Delete(b);
    }
  }

  // A buffer for `floats` floats, and the frame that sends it and then
  // returns it here.
  float* Take(size_t floats) {
    const size_t bytes = floats * sizeof(float);
    if (bytes >= kMinPooledBytes) {
      absl::MutexLock lock(&mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        Block* block = it->second.back();
        it->second.pop_back();
        pooled_bytes_ -= bytes;
        return block->data();
      }
    }
    void* raw =
        ::operator new(sizeof(Block) + bytes, std::align_val_t(alignof(Block)));
    Block* block = new (raw) Block{bytes, this};
    return block->data();
  }

  // Returns a buffer from Take that was never sent.
  void Give(float* data) { Release(data, nullptr); }

  // A frame over `floats` floats of a buffer from Take; ZeroMQ returns it.
  ZmqFrame Frame(float* data, size_t floats) {
    return ZmqFrame::WithFree(data, floats * sizeof(float), &Release, nullptr);
  }

 private:
  // Header in front of each buffer: 16 bytes keep the floats 16-aligned.
  struct alignas(16) Block {
    size_t bytes;
    ReplyPool* pool;
    float* data() { return reinterpret_cast<float*>(this + 1); }
  };
  static_assert(sizeof(Block) == 16, "Block keeps its data 16-aligned");

  static void Delete(Block* block) {
    block->~Block();
    ::operator delete(block, std::align_val_t(alignof(Block)));
  }

  static void Release(void* data, void* /*hint*/) {
    Block* block = reinterpret_cast<Block*>(data) - 1;
    ReplyPool* pool = block->pool;
    if (block->bytes >= kMinPooledBytes) {
      absl::MutexLock lock(&pool->mu_);
      if (pool->pooled_bytes_ + block->bytes <= pool->max_pooled_bytes_) {
        pool->pooled_bytes_ += block->bytes;
        pool->free_[block->bytes].push_back(block);
        return;
      }
    }
    Delete(block);
  }

  const size_t max_pooled_bytes_;
  absl::Mutex mu_;
  absl::flat_hash_map<size_t, std::vector<Block*>> free_ ABSL_GUARDED_BY(mu_);
  size_t pooled_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// One request and, once handled, its reply. Owned by exactly one thread at a
// time: the socket thread, then a worker, then the socket thread again.
struct DataPlane::Work {
  ZmqFrame identity;
  std::vector<ZmqFrame> frames;  // header, then payload frames
  int worker = -1;               // the worker it was handed to
  v1::DataHeader request;
  absl::Time received;
  int64_t bytes_in = 0;

  v1::DataHeader reply;
  ZmqFrame reply_values;
  bool has_values = false;
  absl::Status status;
  int64_t bytes_out = 0;
};

// Runs requests against the shard. One per thread (its cache is unlocked).
class DataPlane::Handler {
 public:
  Handler(Shard* shard, ReplyPool* pool, int64_t max_message_bytes,
          ShmSegments* shm)
      : shard_(shard),
        pool_(pool),
        max_message_bytes_(max_message_bytes),
        shm_(shm) {}

  // Fills w->status, w->reply and the reply's values.
  void Run(Work* w) {
    absl::Status status = RunOp(w);
    w->status = status;
    SetHeaderStatus(status, &w->reply);
  }

 private:
  // Errors found here (not by the Shard, which counts its own) are counted.
  absl::Status Own(absl::Status status) {
    if (!status.ok()) shard_->CountRejected(RejectReasonOf(status));
    return status;
  }

  // The floats per row of `tensor`, checked against what the client assumed
  // (`assumed` > 0). Specs never change once created, so a hit in the cache
  // stays right.
  absl::StatusOr<int64_t> RowSizeOf(const std::string& tensor,
                                    int64_t assumed) {
    int64_t row_size = 0;
    auto it = row_sizes_.find(tensor);
    if (it != row_sizes_.end()) {
      row_size = it->second;
    } else {
      auto info = shard_->store()->Describe(tensor);
      if (!info.ok()) return Own(info.status());
      row_size = RowSize(info->spec());
      row_sizes_.emplace(tensor, row_size);
    }
    if (assumed > 0 && assumed != row_size) {
      return Own(Rejected(
          absl::StatusCode::kInvalidArgument, kReasonWrongShape,
          absl::StrCat("the client assumes rows of ", assumed, " floats for ",
                       tensor, "; its rows have ", row_size)));
    }
    return row_size;
  }
  absl::StatusOr<int64_t> RowSizeOf(const v1::DataHeader& h) {
    return RowSizeOf(h.tensor_name(), h.row_size());
  }

  // A buffer for a pull's reply of `rows` rows of `row_size` floats, or
  // ResourceExhausted if the reply would exceed the message limit. `what`
  // names the rows in the error.
  absl::StatusOr<float*> ReplyBuffer(int64_t rows, int64_t row_size,
                                     absl::string_view what) {
    absl::Status fits = CheckReplySize(rows, row_size, what);
    if (!fits.ok()) return fits;
    return pool_->Take(rows * row_size);
  }

  // ResourceExhausted if a pull's reply of `rows` rows of `row_size` floats
  // would exceed the message limit; otherwise rows x row_size x 4 fits in
  // int64.
  absl::Status CheckReplySize(int64_t rows, int64_t row_size,
                              absl::string_view what) {
    int64_t floats = 0, bytes = 0;
    if (row_size <= 0 || !CheckedMul(rows, row_size, &floats) ||
        !CheckedMul(floats, sizeof(float), &bytes) ||
        bytes > max_message_bytes_) {
      return Own(Rejected(
          absl::StatusCode::kResourceExhausted, kReasonOversize,
          absl::StrCat("pull of ", rows, " rows of ", what,
                       " exceeds --max_message_bytes=", max_message_bytes_)));
    }
    return absl::OkStatus();
  }

  // Hands a pull's filled buffer of `floats` to the reply.
  void SetReplyValues(Work* w, float* buffer, int64_t floats) {
    w->reply_values = pool_->Frame(buffer, floats);
    w->has_values = true;
    w->bytes_out = floats * sizeof(float);
  }

  // The values of a dense request in shared memory: `bytes` at the request's
  // offset in the segment it names, which *segment keeps mapped. The layout
  // check passed ShmBytes. A segment this shard does not have is answered
  // with shm_lost; a range outside it, or not float-aligned, is malformed.
  absl::StatusOr<char*> ShmValues(Work* w, int64_t bytes,
                                  std::shared_ptr<const ShmSegment>* segment) {
    const v1::DataHeader& h = w->request;
    *segment = shm_->Find(h.shm_segment());
    if (*segment == nullptr) {
      w->reply.set_shm_lost(true);
      return Own(Rejected(
          absl::StatusCode::kFailedPrecondition, kReasonShmUnavailable,
          absl::StrCat("shared-memory segment ", h.shm_segment(),
                       " is not open on this shard (it restarted, or closed "
                       "it for a newer one); send the values in frames")));
    }
    if (!(*segment)->Contains(h.shm_offset(), bytes) ||
        h.shm_offset() % static_cast<int64_t>(alignof(float)) != 0) {
      return Own(Rejected(
          absl::StatusCode::kInvalidArgument, kReasonMalformed,
          absl::StrCat(DataOpName(h.op()), " of ",
                       IsDenseBatch(h.op())
                           ? absl::StrCat(h.dense_ranges_size(), " ranges")
                           : h.tensor_name(),
                       ": ", bytes, " bytes at offset ", h.shm_offset(),
                       " are not an aligned range of its shared-memory "
                       "segment of ",
                       (*segment)->bytes(), " bytes")));
    }
    return (*segment)->data() + h.shm_offset();
  }

  // A push's values copied out of shared memory once, before anything reads
  // them, so the client changing them meanwhile cannot make the shard check
  // one gradient and apply another.
  absl::Span<const float> CopyPushOut(const char* values, int64_t floats) {
    floats_.resize(floats);
    std::memcpy(floats_.data(), values, floats * sizeof(float));
    return floats_;
  }

  // Values moved through shared memory count as the request's payload (the
  // shard's traffic, whichever way it travels: tessera_ps_received_bytes_total
  // and tessera_ps_sent_bytes_total) and in the segments' own counter.
  void CountShm(Work* w, bool in, int64_t bytes) {
    shm_->CountBytes(in, bytes);
    (in ? w->bytes_in : w->bytes_out) += bytes;
  }

  // PUSH_DENSE / PULL_DENSE with the values in shared memory: a push's are
  // copied out first (CopyPushOut), a pull writes them into the segment.
  absl::Status RunDenseInShm(Work* w, int64_t row_size) {
    const v1::DataHeader& h = w->request;
    const bool push = h.op() == v1::DataHeader::PUSH_DENSE;
    if (!push) {
      absl::Status fits =
          CheckReplySize(h.row_count(), row_size, h.tensor_name());
      if (!fits.ok()) return fits;
    }
    const int64_t floats = h.row_count() * row_size;  // ShmBytes checked.
    const int64_t bytes = floats * static_cast<int64_t>(sizeof(float));
    std::shared_ptr<const ShmSegment> segment;
    auto values = ShmValues(w, bytes, &segment);
    if (!values.ok()) return values.status();
    if (push) {
      auto result = shard_->PushDense(h.tensor_name(), h.row_begin(),
                                      CopyPushOut(*values, floats));
      if (!result.ok()) return result.status();
      w->reply.set_version(result->version);
      w->reply.set_skipped(result->skipped);
      CountShm(w, /*in=*/true, bytes);
      return absl::OkStatus();
    }
    auto version = shard_->PullDense(
        h.tensor_name(), h.row_begin(),
        absl::MakeSpan(reinterpret_cast<float*>(*values), floats));
    if (!version.ok()) return version.status();
    w->reply.set_version(*version);
    CountShm(w, /*in=*/false, bytes);
    return absl::OkStatus();
  }

  // PUSH_DENSE_BATCH / PULL_DENSE_BATCH. The layout check (CheckDenseRanges)
  // made the ranges' floats fit in int64 and, for a push in frames, fill the
  // values frame exactly; in shared memory they lie from shm_offset on, and
  // a push's are copied out first, as for one tensor.
  absl::Status RunDenseBatch(Work* w) {
    const v1::DataHeader& h = w->request;
    const bool push = h.op() == v1::DataHeader::PUSH_DENSE_BATCH;
    for (const v1::DataHeader::DenseRange& r : h.dense_ranges()) {
      auto row_size = RowSizeOf(r.tensor_name(), r.row_size());
      if (!row_size.ok()) return row_size.status();
    }
    const int64_t floats = DenseBatchFloats(h);
    const int64_t bytes = floats * static_cast<int64_t>(sizeof(float));
    const std::string what = absl::StrCat(h.dense_ranges_size(), " ranges");
    if (!push) {
      absl::Status fits = CheckReplySize(floats, 1, what);
      if (!fits.ok()) return fits;
    }
    const bool in_shm = h.shm_segment() != 0;
    std::shared_ptr<const ShmSegment> segment;
    const float* in = nullptr;
    float* out = nullptr;
    if (in_shm) {
      auto values = ShmValues(w, bytes, &segment);
      if (!values.ok()) return values.status();
      if (push) {
        in = CopyPushOut(*values, floats).data();
      } else {
        out = reinterpret_cast<float*>(*values);
      }
    } else if (push) {
      in = AlignedSpan(w->frames[1], &floats_).data();
    } else {
      auto buffer = ReplyBuffer(floats, 1, what);
      if (!buffer.ok()) return buffer.status();
      out = *buffer;
    }
    dense_updates_.clear();
    dense_reads_.clear();
    int64_t at = 0;
    for (const v1::DataHeader::DenseRange& r : h.dense_ranges()) {
      const size_t n = r.row_count() * r.row_size();
      if (push) {
        dense_updates_.push_back(
            {r.tensor_name(), r.row_begin(), absl::MakeConstSpan(in + at, n)});
      } else {
        dense_reads_.push_back(
            {r.tensor_name(), r.row_begin(), absl::MakeSpan(out + at, n)});
      }
      at += n;
    }
    if (push) {
      auto result = shard_->PushDenseBatch(dense_updates_);
      if (!result.ok()) return result.status();
      *w->reply.mutable_versions() = {result->versions.begin(),
                                      result->versions.end()};
      w->reply.set_skipped(result->skipped);
      if (in_shm) CountShm(w, /*in=*/true, bytes);
      return absl::OkStatus();
    }
    auto versions = shard_->PullDenseBatch(dense_reads_);
    if (!versions.ok()) {
      if (!in_shm) pool_->Give(out);
      return versions.status();
    }
    *w->reply.mutable_versions() = {versions->begin(), versions->end()};
    if (in_shm) {
      CountShm(w, /*in=*/false, bytes);
    } else {
      SetReplyValues(w, out, floats);
    }
    return absl::OkStatus();
  }

  // SHM_ATTACH: a segment of the client's own.
  absl::Status RunShmAttach(Work* w) {
    auto segment = shm_->Attach(w->request.shm_host());
    if (!segment.ok()) return Own(segment.status());
    w->reply.set_shm_pid(getpid());
    w->reply.set_shm_fd((*segment)->fd());
    w->reply.set_shm_bytes((*segment)->bytes());
    w->reply.set_shm_segment((*segment)->token());
    return absl::OkStatus();
  }

  // PUSH_TABLES / PULL_TABLES. The layout check (CheckTables) made the runs
  // fill the frames exactly, so the offsets below stay inside them.
  absl::Status RunTables(Work* w) {
    const v1::DataHeader& h = w->request;
    const bool push = h.op() == v1::DataHeader::PUSH_TABLES;
    absl::Span<const uint64_t> ids = AlignedSpan(w->frames[1], &ids_);
    absl::Span<const float> grad;
    if (push) grad = AlignedSpan(w->frames[2], &floats_);
    int64_t floats = 0;
    for (const v1::DataHeader::TableRows& t : h.tables()) {
      auto row_size = RowSizeOf(t.tensor_name(), t.row_size());
      if (!row_size.ok()) return row_size.status();
      floats += t.row_count() * t.row_size();
    }
    float* buffer = nullptr;
    if (!push) {
      auto taken = ReplyBuffer(
          floats, 1, absl::StrCat(h.tables_size(), " tables' floats"));
      if (!taken.ok()) return taken.status();
      buffer = *taken;
    }
    updates_.clear();
    reads_.clear();
    size_t id_at = 0, float_at = 0;
    for (const v1::DataHeader::TableRows& t : h.tables()) {
      const size_t n = t.row_count(), f = n * t.row_size();
      if (push) {
        updates_.push_back({t.tensor_name(), ids.subspan(id_at, n),
                            grad.subspan(float_at, f)});
      } else {
        reads_.push_back({t.tensor_name(), ids.subspan(id_at, n),
                          absl::MakeSpan(buffer + float_at, f)});
      }
      id_at += n;
      float_at += f;
    }
    if (push) {
      auto result = shard_->PushTables(updates_);
      if (!result.ok()) return result.status();
      *w->reply.mutable_versions() = {result->versions.begin(),
                                      result->versions.end()};
      w->reply.set_skipped(result->skipped);
      return absl::OkStatus();
    }
    auto versions = shard_->PullTables(reads_);
    if (!versions.ok()) {
      pool_->Give(buffer);
      return versions.status();
    }
    *w->reply.mutable_versions() = {versions->begin(), versions->end()};
    SetReplyValues(w, buffer, floats);
    return absl::OkStatus();
  }

  absl::Status RunOp(Work* w) {
    const v1::DataHeader& h = w->request;
    switch (h.op()) {
      case v1::DataHeader::PING:
        return shard_->CheckServing(false);
      case v1::DataHeader::SHM_ATTACH:
        return RunShmAttach(w);
      case v1::DataHeader::PUSH_TABLES:
      case v1::DataHeader::PULL_TABLES:
        return RunTables(w);
      case v1::DataHeader::PUSH_DENSE_BATCH:
      case v1::DataHeader::PULL_DENSE_BATCH:
        return RunDenseBatch(w);
      case v1::DataHeader::PUSH_DENSE: {
        // The values must be exactly the header's rows of the tensor's row
        // size: a push that says 2 rows and carries 1 is refused, not
        // applied as 1.
        auto row_size = RowSizeOf(h);
        if (!row_size.ok()) return row_size.status();
        if (h.shm_segment() != 0) return RunDenseInShm(w, *row_size);
        // A frame in memory: its size fits in int64.
        const int64_t floats =
            static_cast<int64_t>(w->frames[1].size() / sizeof(float));
        int64_t want = 0;
        if (!CheckedMul(h.row_count(), *row_size, &want) || want != floats) {
          return Own(
              Rejected(absl::StatusCode::kInvalidArgument, kReasonWrongShape,
                       absl::StrCat("push for ", h.tensor_name(), " says ",
                                    h.row_count(), " rows but carries ", floats,
                                    " floats; its rows have ", *row_size)));
        }
        auto result = shard_->PushDense(h.tensor_name(), h.row_begin(),
                                        AlignedSpan(w->frames[1], &floats_));
        if (!result.ok()) return result.status();
        w->reply.set_version(result->version);
        w->reply.set_skipped(result->skipped);
        return absl::OkStatus();
      }
      case v1::DataHeader::PUSH_ROWS: {
        if (h.row_size() > 0) {
          auto row_size = RowSizeOf(h);
          if (!row_size.ok()) return row_size.status();
        }
        auto result =
            shard_->PushRows(h.tensor_name(), AlignedSpan(w->frames[1], &ids_),
                             AlignedSpan(w->frames[2], &floats_));
        if (!result.ok()) return result.status();
        w->reply.set_version(result->version);
        w->reply.set_skipped(result->skipped);
        return absl::OkStatus();
      }
      case v1::DataHeader::PULL_DENSE: {
        // Sent straight from the part's memory: the view keeps the values
        // it saw alive and unchanged (copy on write, TensorStore::DenseView)
        // until ZeroMQ has sent them and releases the frame.
        auto row_size = RowSizeOf(h);
        if (!row_size.ok()) return row_size.status();
        if (h.shm_segment() != 0) return RunDenseInShm(w, *row_size);
        absl::Status fits =
            CheckReplySize(h.row_count(), *row_size, h.tensor_name());
        if (!fits.ok()) return fits;
        const int64_t floats = h.row_count() * *row_size;
        auto view =
            shard_->PullDenseView(h.tensor_name(), h.row_begin(), floats);
        if (!view.ok()) return view.status();
        w->reply.set_version(view->version);
        auto* owner = new std::shared_ptr<const std::vector<float>>(
            std::move(view->owner));
        w->reply_values =
            ZmqFrame::WithFree(const_cast<float*>(view->values.data()),
                               floats * sizeof(float), &ReleaseView, owner);
        w->has_values = true;
        w->bytes_out = floats * sizeof(float);
        return absl::OkStatus();
      }
      case v1::DataHeader::PULL_ROWS: {
        auto row_size = RowSizeOf(h);
        if (!row_size.ok()) return row_size.status();
        auto ids = AlignedSpan(w->frames[1], &ids_);
        auto buffer = ReplyBuffer(ids.size(), *row_size, h.tensor_name());
        if (!buffer.ok()) return buffer.status();
        const int64_t floats = ids.size() * *row_size;
        auto version = shard_->PullRows(h.tensor_name(), ids,
                                        absl::MakeSpan(*buffer, floats));
        if (!version.ok()) {
          pool_->Give(*buffer);
          return version.status();
        }
        w->reply.set_version(*version);
        SetReplyValues(w, *buffer, floats);
        return absl::OkStatus();
      }
      default:  // CheckRequestLayout let no other op through.
        return Own(Rejected(absl::StatusCode::kInvalidArgument,
                            kReasonMalformed,
                            absl::StrCat("unknown op ", h.op())));
    }
  }

  Shard* const shard_;     // Not owned.
  ReplyPool* const pool_;  // Not owned.
  const int64_t max_message_bytes_;
  ShmSegments* const shm_;  // Not owned; may be off (enabled() false).
  absl::flat_hash_map<std::string, int64_t> row_sizes_;
  std::vector<TableRowsUpdate> updates_;  // Scratch for tables requests.
  std::vector<TableRowsRead> reads_;
  std::vector<DenseRangeUpdate> dense_updates_;  // Scratch for dense batches.
  std::vector<DenseRangeRead> dense_reads_;
  // Scratch for misaligned frames, and a push's copy out of shared memory.
  std::vector<float> floats_;
  std::vector<uint64_t> ids_;  // Scratch for misaligned frames.
};

absl::StatusOr<std::unique_ptr<DataPlane>> DataPlane::Bind(
    DataPlaneOptions options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane threads must be >= 0, not ", options.threads));
  }
  auto context = std::make_unique<ZmqContext>(options.io_threads);
  auto router = ZmqSocket::Open(context->get(), ZMQ_ROUTER);
  if (!router.ok()) return router.status();
  // A frame this large is dropped with its connection, unread; anything
  // smaller but over max_message_bytes gets an error reply.
  const int64_t hard_limit = options.max_message_bytes * 2 + (1 << 20);
  if (zmq_setsockopt(router->get(), ZMQ_MAXMSGSIZE, &hard_limit,
                     sizeof(hard_limit)) != 0) {
    return ZmqError("zmq_setsockopt(ZMQ_MAXMSGSIZE)");
  }
  std::string host = options.host;
  if (host.find(':') != std::string::npos) {
    absl::Status ipv6 = router->SetInt(ZMQ_IPV6, 1);
    if (!ipv6.ok()) return ipv6;
    host = absl::StrCat("[", host, "]");
  }
  const std::string endpoint = absl::StrCat("tcp://", host, ":", options.port);
  absl::Status bound = router->Bind(endpoint);
  if (!bound.ok()) {
    return absl::UnavailableError(
        absl::StrCat("data plane: ", bound.message()));
  }
  auto port = router->BoundPort();
  if (!port.ok()) return port.status();
  return std::unique_ptr<DataPlane>(new DataPlane(
      std::move(options), std::move(context), *std::move(router), *port));
}

DataPlane::DataPlane(DataPlaneOptions options,
                     std::unique_ptr<ZmqContext> context, ZmqSocket router,
                     int port)
    : options_(std::move(options)),
      port_(port),
      context_(std::move(context)),
      router_(std::move(router)) {}

DataPlane::~DataPlane() { Stop(); }

void DataPlane::Start(Shard* shard) {
  CHECK(!started_.exchange(true)) << "DataPlane::Start called twice";
  shard_ = shard;
  shm_ = std::make_unique<ShmSegments>(options_.shm, shard->registry());
  if (shard->registry() != nullptr) {
    auto& run = metrics::BuildCounter()
                    .Name("tessera_ps_data_requests_run_total")
                    .Help(
                        "Data-plane requests by the thread that ran them: "
                        "socket = on the socket thread (small, or dense "
                        "while the data plane is idle; no hand-over), "
                        "worker = handed to a data-plane worker thread.")
                    .Register(*shard->registry());
    run_on_socket_ = &run.Add({{"thread", "socket"}});
    run_on_worker_ = &run.Add({{"thread", "worker"}});
  }
  // Every socket is made here and handed to its thread; starting a thread
  // publishes it (ZeroMQ sockets may move between threads with a barrier).
  // Inproc queues are unbounded (HWM 0): the socket thread bounds them itself
  // (kMaxQueuedPerWorker), and a blocked hand-over could deadlock.
  auto open = [this](int type, const std::string& endpoint, bool bind) {
    auto socket = ZmqSocket::Open(context_->get(), type);
    CHECK(socket.ok()) << socket.status();
    CHECK(socket->SetInt(ZMQ_SNDHWM, 0).ok() &&
          socket->SetInt(ZMQ_RCVHWM, 0).ok());
    CHECK((bind ? socket->Bind(endpoint) : socket->Connect(endpoint)).ok())
        << endpoint;
    return *std::move(socket);
  };
  // Replies from every worker, and Stop's null pointer, arrive on one
  // socket, so the socket thread polls two sockets however many workers.
  auto* replies = new ZmqSocket(open(ZMQ_PULL, kRepliesEndpoint, true));
  stop_sender_ = open(ZMQ_PUSH, kRepliesEndpoint, false);
  const int64_t pooled_bytes =
      std::max<int64_t>(256 << 20, 4 * options_.max_message_bytes) /
      (options_.threads + 1);
  for (int i = 0; i <= options_.threads; ++i) {
    pools_.push_back(std::make_unique<ReplyPool>(pooled_bytes));
  }
  auto* to_workers = new std::vector<ZmqSocket>();
  for (int i = 0; i < options_.threads; ++i) {
    ReplyPool* pool = pools_[i + 1].get();
    to_workers->push_back(open(ZMQ_PUSH, WorkerEndpoint(i), true));
    auto* in = new ZmqSocket(open(ZMQ_PULL, WorkerEndpoint(i), false));
    auto* out = new ZmqSocket(open(ZMQ_PUSH, kRepliesEndpoint, false));
    workers_.emplace_back([this, in, out, pool] {
      std::unique_ptr<ZmqSocket> requests(in), answers(out);
      Handler handler(shard_, pool, options_.max_message_bytes, shm_.get());
      void* pointer = nullptr;
      while (RecvPointer(requests->get(), 0, &pointer) && pointer != nullptr) {
        handler.Run(static_cast<Work*>(pointer));
        if (!SendPointer(answers->get(), pointer)) break;
      }
    });
  }
  socket_thread_ = std::thread([this, replies, to_workers] {
    std::unique_ptr<ZmqSocket> from_workers(replies);
    std::unique_ptr<std::vector<ZmqSocket>> workers(to_workers);
    SocketLoop(from_workers->get(), workers.get());
  });
}

void DataPlane::SocketLoop(void* replies, std::vector<ZmqSocket>* workers) {
  const int n = static_cast<int>(workers->size());
  Handler inline_handler(shard_, pools_[0].get(), options_.max_message_bytes,
                         shm_.get());
  // `replies` only receives: poll its fd and drain it whenever it fires
  // (ZmqSocket::Fd), one zmq socket item less per poll.
  int replies_fd = -1;
  size_t fd_size = sizeof(replies_fd);
  CHECK_EQ(zmq_getsockopt(replies, ZMQ_FD, &replies_fd, &fd_size), 0);
  zmq_pollitem_t items[2] = {{router_.get(), 0, ZMQ_POLLIN, 0},
                             {nullptr, replies_fd, ZMQ_POLLIN, 0}};
  bool drain_replies = true;  // Once at the start, then when the fd fires.
  std::vector<int> queued(n, 0);
  int total_queued = 0;
  std::unique_ptr<Work> held;  // Read, waiting for room at its worker.
  int since_busy = 0;          // RunsInline's count down.
  bool stopping = false;

  auto dispatch = [&](std::unique_ptr<Work> work) {
    const int worker = work->worker;
    ++queued[worker];
    ++total_queued;
    Work* raw = work.release();
    if (!SendPointer((*workers)[worker].get(), raw)) {
      // Only a terminated context fails an inproc send; nothing to answer.
      delete raw;
      --queued[worker];
      --total_queued;
    }
  };

  while (true) {
    if (stopping && total_queued == 0 && held == nullptr) break;
    items[0].events = (!stopping && held == nullptr) ? ZMQ_POLLIN : 0;
    if (zmq_poll(items, 2, -1) < 0) {
      if (zmq_errno() == EINTR) continue;
      LOG(ERROR) << ZmqError("data plane: zmq_poll");
      break;
    }
    if (drain_replies || (items[1].revents & ZMQ_POLLIN)) {
      drain_replies = false;
      void* pointer = nullptr;
      while (RecvPointer(replies, ZMQ_DONTWAIT, &pointer)) {
        if (pointer == nullptr) {  // From Stop().
          stopping = true;
          continue;
        }
        std::unique_ptr<Work> work(static_cast<Work*>(pointer));
        --queued[work->worker];
        --total_queued;
        SendReply(std::move(work));
      }
    }
    if (held != nullptr && queued[held->worker] < kMaxQueuedPerWorker) {
      dispatch(std::move(held));
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    for (int k = 0; k < kReadBatch && held == nullptr; ++k) {
      bool got = false;
      std::unique_ptr<Work> work = ReadRequest(&got);
      if (!got) break;
      if (!work->status.ok()) {
        SendReply(std::move(work));
        continue;
      }
      int worker = -1;
      if (n > 0) {
        // By client alone, so that one client's requests stay in order
        // whichever op names a tensor (a dense batch names many).
        worker = static_cast<int>(
            Mix64(StableHash(std::string_view(work->identity.data(),
                                              work->identity.size()))) %
            n);
      }
      // Without workers, or for a small request whose worker is idle, run it
      // here: handing it over costs two thread wake-ups, more than such a
      // request's work. A larger dense one runs here too when nothing else
      // is queued or waiting to be read: the hand-over would be pure latency.
      // With nothing queued at that worker, nothing sent before it by the
      // same client to the same part is still pending, so order holds.
      if (n == 0 || (queued[worker] == 0 &&
                     RunsInline(*work, total_queued, &since_busy))) {
        if (run_on_socket_ != nullptr) run_on_socket_->Increment();
        inline_handler.Run(work.get());
        SendReply(std::move(work));
        continue;
      }
      work->worker = worker;
      if (run_on_worker_ != nullptr) run_on_worker_->Increment();
      if (queued[worker] >= kMaxQueuedPerWorker) {
        held = std::move(work);
        break;
      }
      dispatch(std::move(work));
    }
  }
  for (ZmqSocket& worker : *workers) SendPointer(worker.get(), nullptr);
  // Replies already queued get `linger` to leave.
  router_
      .SetInt(ZMQ_LINGER,
              static_cast<int>(absl::ToInt64Milliseconds(options_.linger)))
      .IgnoreError();
  router_.Close();
}

bool DataPlane::RunsInline(const Work& work, int total_queued,
                           int* since_busy) {
  const int64_t bytes = PayloadBytes(work.request, work.bytes_in);
  if (bytes <= options_.inline_max_bytes) return true;
  // Only dense values, whose cost is one pass over memory: rows and tables
  // may read a tiered table's rows from disk, for as long as that takes.
  const v1::DataHeader::Op op = work.request.op();
  if ((op != v1::DataHeader::PUSH_DENSE && op != v1::DataHeader::PULL_DENSE &&
       !IsDenseBatch(op)) ||
      bytes > options_.idle_inline_max_bytes) {
    return false;
  }
  // Busy: another request queued at a worker or waiting to be read. Then
  // requests are pipelined (a client with several in flight, or several
  // clients), and the socket thread reading the next while a worker runs this
  // one is worth more than the hand-over; so it stays that way for the next
  // kIdleRequestsToInline requests, idle or not.
  bool busy = total_queued > 0;
  if (!busy) {
    int events = 0;
    size_t size = sizeof(events);
    busy = zmq_getsockopt(router_.get(), ZMQ_EVENTS, &events, &size) != 0 ||
           (events & ZMQ_POLLIN);
  }
  if (busy) {
    *since_busy = kIdleRequestsToInline;
    return false;
  }
  if (*since_busy > 0) {
    --*since_busy;
    return false;
  }
  return true;
}

std::unique_ptr<DataPlane::Work> DataPlane::ReadRequest(bool* got) {
  std::vector<ZmqFrame> frames;
  // Identity, header, payload frames; anything beyond is dropped and refused.
  auto received = ZmqRecvFrames(router_.get(), &frames, ZMQ_DONTWAIT,
                                2 + kMaxPayloadFrames);
  if (!received.ok()) {
    LOG(ERROR) << "data plane: " << received.status();
    *got = false;
    return nullptr;
  }
  *got = received->received;
  if (!*got) return nullptr;
  auto work = std::make_unique<Work>();
  work->identity = std::move(frames[0]);
  frames.erase(frames.begin());
  CheckRequest(shard_, std::move(frames), received->frames - 1,
               received->bytes - work->identity.size(),
               options_.max_message_bytes, work.get());
  return work;
}

void DataPlane::CheckRequest(Shard* shard, std::vector<ZmqFrame> frames,
                             size_t num_frames, int64_t bytes_in,
                             int64_t max_message_bytes, Work* work) {
  work->received = absl::Now();
  work->bytes_in = bytes_in;
  work->reply.set_shard_index(shard->options().shard_index);
  auto check = [&]() -> absl::Status {
    if (num_frames < 1) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      "empty message: no header frame");
    }
    if (bytes_in > max_message_bytes) {
      return Rejected(absl::StatusCode::kResourceExhausted, kReasonOversize,
                      absl::StrCat("message of ", bytes_in,
                                   " bytes exceeds --max_message_bytes=",
                                   max_message_bytes));
    }
    auto header = ParseDataHeader(frames[0].view());
    if (!header.ok()) return header.status();
    work->request = *std::move(header);
    work->reply.set_request_id(work->request.request_id());
    work->reply.set_op(work->request.op());
    if (num_frames > 1 + kMaxPayloadFrames) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      absl::StrCat("message has ", num_frames,
                                   " frames; a request has at most ",
                                   1 + kMaxPayloadFrames));
    }
    std::vector<size_t> sizes;
    for (size_t i = 1; i < frames.size(); ++i) {
      sizes.push_back(frames[i].size());
    }
    return CheckRequestLayout(work->request, sizes);
  };
  absl::Status status = check();
  if (!status.ok()) {
    shard->CountRejected(RejectReasonOf(status));
    work->status = status;
    SetHeaderStatus(status, &work->reply);
    return;
  }
  work->frames = std::move(frames);
}

DataReply DataPlane::RunOne(Shard* shard, absl::Span<const std::string> frames,
                            int64_t max_message_bytes, ShmSegments* shm) {
  ReplyPool pool(0);  // Declared before `work`: its reply frame returns here.
  Work work;
  std::vector<ZmqFrame> copies;
  int64_t bytes = 0;
  for (size_t i = 0; i < frames.size() && i < 1 + kMaxPayloadFrames; ++i) {
    copies.push_back(ZmqFrame::Copy(frames[i]));
  }
  for (const std::string& f : frames) bytes += f.size();
  CheckRequest(shard, std::move(copies), frames.size(), bytes,
               max_message_bytes, &work);
  if (work.status.ok()) {
    ShmSegmentsOptions off_options;
    off_options.segment_bytes = 0;
    ShmSegments off(off_options, nullptr);
    Handler handler(shard, &pool, max_message_bytes,
                    shm != nullptr ? shm : &off);
    handler.Run(&work);
  }
  DataReply reply;
  reply.header = work.reply;
  reply.status = work.status;
  if (work.has_values) {
    const size_t n = work.reply_values.size() / sizeof(float);
    reply.values.resize(n);
    if (n > 0) {
      std::memcpy(reply.values.data(), work.reply_values.data(),
                  n * sizeof(float));
    }
  }
  shard->RecordRequest(DataOpName(work.request.op()), work.status,
                       absl::Now() - work.received, work.bytes_in,
                       work.has_values ? work.reply_values.size() : 0);
  return reply;
}

void DataPlane::SendReply(std::unique_ptr<Work> work) {
  std::string header;
  work->reply.SerializeToString(&header);
  ZmqFrame frames[3] = {std::move(work->identity), ZmqFrame::Copy(header),
                        std::move(work->reply_values)};
  const size_t count = work->has_values ? 3 : 2;
  // A ROUTER drops a reply to a peer that is gone or too far behind; that
  // client times out and retries.
  absl::Status sent =
      ZmqSendFrames(router_.get(), absl::MakeSpan(frames, count), ZMQ_DONTWAIT);
  if (!sent.ok()) VLOG(1) << "data plane: reply not sent: " << sent;
  // Payload frames are released here, on the socket thread; large ones are
  // owned by ZeroMQ now.
  const char* rpc = DataOpName(work->request.op());
  shard_->RecordRequest(rpc, work->status, absl::Now() - work->received,
                        work->bytes_in, work->bytes_out);
}

void DataPlane::Stop() {
  if (stopped_.exchange(true)) return;
  if (started_.load()) {
    SendPointer(stop_sender_.get(), nullptr);
    socket_thread_.join();
    for (auto& worker : workers_) worker.join();
    stop_sender_.Close();
  } else {
    router_.Close();
  }
  context_.reset();  // Waits for the replies' linger.
  LOG(INFO) << "data plane on port " << port_ << " stopped";
}

}  // namespace tessera

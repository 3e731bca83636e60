#ifndef TESSERA_PS_CLIENT_TRANSPORT_H_
#define TESSERA_PS_CLIENT_TRANSPORT_H_

// Private to ps/client (a header in the library's srcs, not its hdrs): the
// pieces of PsClient that its files share. A call (PsClient::Call) is split
// into one piece per shard; the transport (PsClient::Transport) is the I/O
// thread that owns the DEALER sockets, sends pieces, matches replies,
// retries, reconnects, times out and runs callbacks.

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ps/client/ps_client.h"
#include "ps/wire/shm_segment.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"

namespace tessera {
namespace client_internal {

// How often the I/O thread refreshes waiting gauges and wait logs while
// anything is pending.
inline constexpr absl::Duration kTick = absl::Milliseconds(250);

// Ranges of a shared-memory segment handed to requests in flight: first
// fit over the free ranges, whole kAlignment blocks, neighbours merged when
// freed. A handful of requests are in flight at once, so lists stay short.
class ShmArena {
 public:
  // All of [begin, end) free.
  void Reset(int64_t begin, int64_t end) {
    free_.clear();
    if (end > begin) free_[begin] = end - begin;
  }
  void Clear() { free_.clear(); }
  // The offset of `bytes` (rounded up to the alignment), or -1 if no free
  // range holds them.
  int64_t Allocate(int64_t bytes) {
    const int64_t want = Round(bytes);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < want) continue;
      const int64_t offset = it->first, left = it->second - want;
      free_.erase(it);
      if (left > 0) free_[offset + want] = left;
      return offset;
    }
    return -1;
  }
  // Gives back what Allocate(bytes) returned at `offset`.
  void Free(int64_t offset, int64_t bytes) {
    int64_t size = Round(bytes);
    auto next = free_.lower_bound(offset);
    if (next != free_.end() && offset + size == next->first) {
      size += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += size;
        return;
      }
    }
    free_[offset] = size;
  }

 private:
  static int64_t Round(int64_t bytes) {
    const int64_t a = ShmSegment::kAlignment;
    return (bytes + a - 1) / a * a;
  }
  std::map<int64_t, int64_t> free_;  // offset -> bytes
};

inline std::string Pretty(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Milliseconds(100)));
}

inline std::chrono::system_clock::time_point GrpcDeadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// `status` with the shard it came from in front of its message.
inline absl::Status WithShard(int shard, const std::string& address,
                              const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat("shard ", shard, " at ", address, ": ", status.message()));
}

// Where a PullDenseInPlace call's pieces keep their values (slot i for piece
// i), written on the I/O thread as each piece arrives.
struct InPlacePull {
  std::vector<std::shared_ptr<const void>> holds;
  std::vector<absl::Span<const float>> spans;
};

}  // namespace client_internal

// One shard's piece of a call.
struct Piece {
  enum class State { kNew, kQueued, kSent, kBackoff, kDone };

  int shard = 0;
  v1::DataHeader header;  // request_id is set per send
  // Payload frames, shared with ZeroMQ so they can be resent.
  std::shared_ptr<const void> ids_owner;
  const void* ids = nullptr;
  size_t ids_bytes = 0;
  std::shared_ptr<const void> values_owner;
  const void* values = nullptr;
  size_t values_bytes = 0;
  // Pulls: where the reply's values go.
  float* out = nullptr;  // PULL_DENSE: contiguous
  // PULL_DENSE read in place: the reply's values are kept in slot
  // `in_place_slot` of `in_place` instead of copied to `out`.
  std::shared_ptr<client_internal::InPlacePull> in_place;
  size_t in_place_slot = 0;
  // PULL_DENSE with a DenseHistory: its range for this piece.
  float* previous = nullptr;
  bool extrapolate = false;
  // PUSH_DENSE_BATCH / PULL_DENSE_BATCH: each range's memory, in the
  // header's order (a push's values are copied into one frame, `values`, only
  // when the batch goes in frames).
  struct BatchRange {
    const float* grad = nullptr;  // push
    float* out = nullptr;         // pull
    float* previous = nullptr;    // pull with a DenseHistory
    bool extrapolate = false;
    size_t floats = 0;
  };
  std::vector<BatchRange> batch;
  std::shared_ptr<const void> batch_owner;  // a push's ranges' owners
  // PULL_ROWS / PULL_TABLES: the destination of each row of the reply, in
  // reply order, in runs of (rows, floats per row): one run per table.
  std::vector<float*> out_rows;
  std::vector<std::pair<size_t, int64_t>> out_runs;
  size_t expected_bytes = 0;
  // While a send of a dense piece uses shared memory: the segment (kept
  // mapped until the piece is done with it) and its range there.
  std::shared_ptr<ShmSegment> shm;
  int64_t shm_offset = 0;
  int64_t shm_bytes = 0;

  State state = State::kNew;
  uint64_t request_id = 0;
  int sends = 0;
  absl::Status last_error;  // the last UNAVAILABLE answer
};

// A row copied within a caller's buffer (a repeated id of a row pull).
struct RowCopy {
  const float* from;
  float* to;
  int64_t floats;
};

struct PsClient::Call {
  uint64_t id = 0;
  v1::DataHeader::Op op = v1::DataHeader::OP_UNSPECIFIED;
  std::string tensor;
  absl::Time start;
  absl::Duration timeout;
  absl::Time deadline;
  DoneCallback done;
  std::vector<Piece> pieces;
  int pending = 0;
  // PULL_ROWS / PULL_TABLES: row copies for repeated ids, made once every
  // piece has arrived.
  std::vector<RowCopy> duplicates;
};

// The I/O thread: owns the DEALER sockets, sends pieces, matches replies,
// retries, reconnects, times out, and runs callbacks.
//

// Thread-safe: Submit may be called from any thread; everything else runs on
// the I/O thread.
class PsClient::Transport {
 public:
  struct LinkInfo {
    std::string address;   // host:port, for messages
    std::string endpoint;  // tcp://host:port
  };

  static absl::StatusOr<std::unique_ptr<Transport>> Create(
      const PsClientOptions& options, std::vector<LinkInfo> links,
      metrics::Registry* registry);
  ~Transport();

  // Hands `call` to the I/O thread; fails it with CANCELLED after Stop.
  void Submit(std::unique_ptr<Call> call) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether dense values to `shard` go through a shared-memory segment now
  // (attached; it may be dropped at any time, when they go in frames).
  bool SharesMemoryWith(int shard) const {
    return shm_attached_[shard].load(std::memory_order_relaxed);
  }

 private:
  struct Link {
    int index = 0;
    std::string address;
    std::string endpoint;
    ZmqSocket socket;
    ZmqSocket monitor;
    int monitor_fd = -1;  // Polled as a plain fd (ZmqSocket::Fd).
    // Pieces waiting for room in the socket, in send order.
    std::deque<std::pair<uint64_t, int>> backlog;
    absl::Time last_log = absl::InfinitePast();
    metrics::Counter* retries = nullptr;
    metrics::Counter* timeouts = nullptr;
    metrics::Gauge* waiting = nullptr;
    metrics::Counter* shm_bytes = nullptr;
    // Shared memory with the shard: attached (shm set), being attached
    // (shm_attach_request), or neither, to be asked again at
    // shm_retry_at (InfiniteFuture: not until the link reconnects).
    std::shared_ptr<ShmSegment> shm;
    client_internal::ShmArena arena;
    uint64_t shm_attach_request = 0;
    absl::Time shm_retry_at = absl::InfiniteFuture();
    bool shm_logged = false;
  };

  Transport(const PsClientOptions& options, int wake_fd)
      : initial_backoff_(options.initial_backoff),
        max_backoff_(options.max_backoff),
        wait_log_interval_(options.wait_log_interval),
        shared_memory_(options.shared_memory),
        shared_memory_min_bytes_(options.shared_memory_min_bytes),
        context_(options.io_threads),
        wake_fd_(wake_fd) {}

  absl::Status OpenLink(Link* link);
  void CloseLink(Link* link);
  // Shared memory: asks the shard for a segment; takes its answer; puts a
  // piece's values (or room for them) in the segment for one send, or
  // leaves them in frames; gives the range back once the shard has answered;
  // and stops using a segment whose ranges may still be in use by the shard
  // (a request that will not be answered), asking again after `retry`.
  void SendAttach(Link* link);
  void HandleAttach(Link* link, const v1::DataHeader& reply);
  void PlaceInShm(Link* link, Piece* piece);
  void ReleaseShm(Link* link, Piece* piece);
  void RetireShm(Link* link, absl::Duration retry);
  void Loop();
  void Start(std::unique_ptr<Call> call);
  absl::Status Send(Call* call, int piece, bool from_backlog = false);
  void DrainReplies(Link* link);
  void HandleReply(Link* link, std::vector<ZmqFrame>* frames);
  // A PULL_DENSE piece read in place: keeps `frame` (the reply's values
  // frame, moved from; null for values in shared memory) in its slot, or a
  // copy of `values` where the frame cannot be kept.
  void KeepInPlace(Piece* piece, const void* values, ZmqFrame* frame);
  void HandleMonitor(Link* link);
  void FlushBacklog(Link* link);
  void RunRetries(absl::Time now);
  void RunDeadlines(absl::Time now);
  void Tick(absl::Time now);
  void TimeOut(Call* call);
  void Finish(Call* call, absl::Status status);
  Call* FindCall(uint64_t id);
  absl::Duration Backoff(int sends);

  const absl::Duration initial_backoff_;
  const absl::Duration max_backoff_;
  const absl::Duration wait_log_interval_;
  const bool shared_memory_;
  const int64_t shared_memory_min_bytes_;
  ZmqContext context_;
  const int wake_fd_;  // eventfd: Submit -> I/O thread
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Call>> submitted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The I/O thread is (about to be) asleep in zmq_poll and needs the eventfd
  // to wake; once written, later submissions need not write it again.
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;

  // Per link: shm set (written by the I/O thread, read by any).
  std::unique_ptr<std::atomic<bool>[]> shm_attached_;
  // I/O thread only (and the constructor, before it starts).
  std::vector<Link> links_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_;
  absl::flat_hash_map<uint64_t, std::pair<uint64_t, int>> by_request_;
  std::set<std::pair<absl::Time, uint64_t>> deadlines_;
  std::set<std::tuple<absl::Time, uint64_t, int>> retries_;
  uint64_t next_call_id_ = 1;
  uint64_t next_request_id_ = 1;
  uint64_t monitors_ = 0;
  bool waiting_ = false;  // Some waiting gauge is non-zero.
  absl::BitGen random_;
  metrics::Family<metrics::Histogram>* latency_ = nullptr;
};

}  // namespace tessera

#endif  // TESSERA_PS_CLIENT_TRANSPORT_H_

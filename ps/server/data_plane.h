#ifndef TESSERA_PS_SERVER_DATA_PLANE_H_
#define TESSERA_PS_SERVER_DATA_PLANE_H_

// The shard's ZeroMQ data plane: a ROUTER socket on the data port that serves
// workers' PUSH_DENSE / PULL_DENSE / PUSH_DENSE_BATCH / PULL_DENSE_BATCH /
// PUSH_ROWS / PULL_ROWS / PUSH_TABLES / PULL_TABLES / PING requests
// (proto/tessera/v1/data.proto) over a Shard.
//
// Threads. One socket thread owns the ROUTER: it reads each request, checks
// its framing (ps/wire/data_wire.h) and hands it, by pointer over an inproc
// PUSH/PULL queue, to one of `threads` worker threads, which run it against
// the Shard and hand it back, reply filled in, over one shared inproc queue
// for the socket thread to send. There is no lock of our own on this path:
// the Shard's per-part locks are the only serialization. Small requests whose
// worker is idle run on the socket thread itself
// (DataPlaneOptions::inline_max_bytes), and so do larger dense ones when the
// whole data plane is idle (DataPlaneOptions::idle_inline_max_bytes).
//
// Order. Every request goes to worker hash(client identity) % threads: a
// tables request or a dense batch (PUSH_DENSE_BATCH, PULL_DENSE_BATCH) names
// many tensors, and one client's requests must stay in order whichever op
// names a tensor. Each worker runs its requests first come, first served, so
// the requests of one client are applied, and answered, in the order the
// client sent them (a request runs on the socket thread only when its worker
// has nothing queued). Requests from different clients may overtake each
// other, and run in parallel.
//
// Shared memory: a client on this machine may attach a segment (SHM_ATTACH,
// ShmSegments) and move a dense push's or pull's values through it instead
// of a payload frame; a push is copied out of the segment once, then applied
// as a frame would be, a pull is written into it. Order and routing are the
// same as for frames.
//
// Payloads are never copied through protobuf: a push applies the optimizer
// straight from the received frame when its data is 4-byte aligned (copied
// once otherwise). A dense pull is sent straight from the part's memory,
// without a copy: the reply frame holds a view of the values as they were
// (TensorStore::DenseView; a push meanwhile gives the part a copy of its own
// first) until ZeroMQ has sent it. A row pull copies the rows once, under the
// table's lock, into a pooled buffer that ZeroMQ sends without copying and
// then returns.
//
// Bad input (a truncated or garbage header, an unknown op, the wrong frames
// or payload sizes, too many frames, an oversize message) is answered with an
// error reply that says what was wrong, counted with
// Shard::CountRejected(reason), and changes nothing.
//
// Thread-safe: Start and Stop may be called from any one thread.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ps/common/metrics/metrics.h"
#include "ps/server/shard.h"
#include "ps/server/shm_segments.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"

namespace tessera {

struct DataPlaneOptions {
  std::string host = "0.0.0.0";
  int port = 7001;  // 0 picks a free port; see DataPlane::port().
  // Worker threads that run requests; 0 runs them on the socket thread.
  int threads = 2;
  // Requests moving at most this many payload bytes run on the socket thread
  // when their worker has nothing queued (a hand-over costs two thread
  // wake-ups, which is more than such a request's work).
  int64_t inline_max_bytes = 64 << 10;
  // Dense requests (PUSH_DENSE, PULL_DENSE, dense batches) moving at most
  // this many payload bytes also run on the socket thread when the whole data
  // plane is idle: nothing queued at any worker and no other request waiting
  // to be read, nor for the last kIdleRequestsToInline such requests. (Rows
  // and tables may read a tiered table from disk.) At depth 1 (a client
  // waiting on each request) the hand-over is then pure latency; while
  // requests pipeline they go to their worker, so the socket thread reads the
  // next while a worker runs this one, and other clients' requests keep
  // running in parallel. A new request arriving meanwhile waits for this
  // one's work (a 4 MiB push: about 0.3 ms).
  int64_t idle_inline_max_bytes = 4 << 20;
  // Largest request accepted (all frames); larger ones get an error reply.
  // Frames beyond 2x this (plus 1 MiB) make ZeroMQ drop the connection
  // without reading them.
  int64_t max_message_bytes = 64 << 20;
  // ZeroMQ I/O threads.
  int io_threads = 1;
  // On Stop, how long replies already queued may take to leave.
  absl::Duration linger = absl::Seconds(2);
  // Shared-memory segments for clients on this machine (SHM_ATTACH);
  // segment_bytes 0 turns them off.
  ShmSegmentsOptions shm;
};

// The reply to one request run by DataPlane::RunOne.
struct DataReply {
  v1::DataHeader header;      // as sent: request_id, status, version, ...
  absl::Status status;        // the header's status
  std::vector<float> values;  // a pull's values; empty otherwise
};

class DataPlane {
 public:
  // Runs one request exactly as the data plane's threads do (framing and
  // layout checks, then the op against `shard`, counted and recorded in the
  // shard's metrics), without sockets: for tests and fuzzers. `frames` are
  // the request's frames after the client identity: the header, then the
  // payload frames. `shm` (null: shared memory off) serves SHM_ATTACH and
  // the requests that name its segments.
  static DataReply RunOne(Shard* shard, absl::Span<const std::string> frames,
                          int64_t max_message_bytes,
                          ShmSegments* shm = nullptr);

  // Binds the ROUTER socket. ZeroMQ accepts connections and queues their
  // requests from here on; they are read once Start is called. Unavailable if
  // the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<DataPlane>> Bind(
      DataPlaneOptions options);

  // Stops if still running.
  ~DataPlane();

  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  // The bound TCP port.
  int port() const { return port_; }

  // Serves `shard`'s requests until Stop. `shard` is not owned and must
  // outlive Stop(). Call at most once.
  void Start(Shard* shard);

  // Stops reading requests, finishes and answers those already read, lets
  // their replies leave (up to `linger`), and closes the socket; requests
  // still queued in ZeroMQ are dropped unanswered (never applied), so a
  // client may safely resend them. Idempotent.
  void Stop();

 private:
  class Handler;
  class ReplyPool;
  struct Work;

  DataPlane(DataPlaneOptions options, std::unique_ptr<ZmqContext> context,
            ZmqSocket router, int port);

  // The socket thread: `replies` brings back handled requests (and Stop's
  // signal); `workers` hand requests to the worker threads.
  void SocketLoop(void* replies, std::vector<ZmqSocket>* workers);
  // Reads one request from the ROUTER; returns it with its reply already
  // filled in if it is malformed (not to be dispatched).
  std::unique_ptr<Work> ReadRequest(bool* got);
  // Whether a request whose worker has nothing queued runs on the socket
  // thread (DataPlaneOptions::inline_max_bytes, idle_inline_max_bytes).
  // `since_busy` counts down the requests since the data plane was last seen
  // busy; the idle rule applies only once it is 0.
  bool RunsInline(const Work& work, int total_queued, int* since_busy);
  static constexpr int kIdleRequestsToInline = 8;
  // Checks a request's frames (header first; `num_frames` counts dropped
  // ones too) and fills `work`: its request and frames, or its error reply.
  static void CheckRequest(Shard* shard, std::vector<ZmqFrame> frames,
                           size_t num_frames, int64_t bytes_in,
                           int64_t max_message_bytes, Work* work);
  void SendReply(std::unique_ptr<Work> work);

  const DataPlaneOptions options_;
  const int port_;
  // Pull replies' buffers, one pool per thread that makes them (the socket
  // thread's first); they outlive the context, whose threads return them.
  std::vector<std::unique_ptr<ReplyPool>> pools_;
  std::unique_ptr<ZmqContext> context_;
  ZmqSocket router_;        // Used by the socket thread only once started.
  ZmqSocket stop_sender_;   // Used by the thread calling Stop().
  Shard* shard_ = nullptr;  // Not owned; set by Start.
  std::unique_ptr<ShmSegments> shm_;  // Set by Start; off when so configured.
  // tessera_ps_data_requests_run_total{thread}: requests run on the socket
  // thread, and handed to a worker. Set by Start (null without a registry).
  metrics::Counter* run_on_socket_ = nullptr;
  metrics::Counter* run_on_worker_ = nullptr;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  std::thread socket_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_DATA_PLANE_H_

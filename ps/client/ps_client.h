#ifndef TESSERA_PS_CLIENT_PS_CLIENT_H_
#define TESSERA_PS_CLIENT_PS_CLIENT_H_

// The parameter-server client library, used by workers and tools.
//
//   PsClientOptions options;
//   options.shard_addresses = {"ps-0.ps:7000", "ps-1.ps:7000"};
//   options.registry = &registry;  // optional: tessera_client_* metrics
//   TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<PsClient> client,
//                            PsClient::Connect(options));
//   TESSERA_RETURN_IF_ERROR(client->CreateTensors(specs));  // or LoadSpecs()
//   std::future<absl::Status> pulled = client->PullDense("fc1.weight", 0, out);
//   ...
//   TESSERA_RETURN_IF_ERROR(pulled.get());
//   client->PushDense("fc1.weight", 0, std::move(grad));  // zero-copy
//
// Control calls (CreateTensors, ListTensors, GetShardInfo) go over gRPC and
// block. Pushes and pulls go over each shard's ZeroMQ data plane
// (proto/tessera/v1/data.proto) and are asynchronous: a call is split per
// shard by the placement function (placement.h), the pieces are sent to all
// shards at once, and the call completes when every piece has answered.
//
// Failures. Every call has a deadline (CallOptions::deadline, else
// PsClientOptions::default_deadline). A piece answered UNAVAILABLE (the shard
// is loading or draining) is resent with exponential backoff until the
// deadline. When a shard's connection drops (it restarted), the client
// reconnects to the same address and resends the pieces that had no answer:
// a shard that stops on SIGTERM answers every request it read, so a resent
// push is never applied twice (after a SIGKILL it may be). A call that runs
// out of time fails with DEADLINE_EXCEEDED naming the shards that did not
// answer ("shard 2 at 10.0.0.7:7001 did not answer within 5s"); while a wait
// lasts longer than wait_log_interval, a log line says what it waits for.
// Caveat: a push that failed (deadline, or an error from another shard) may
// still have been applied on some shards, as with any RPC.
//
// Order. One client's pushes and pulls to one tensor part are sent, applied
// and answered in the order they were issued, with one exception: a piece
// that is resent (after UNAVAILABLE or a lost connection) goes behind what
// was issued after it.
//
// Metrics (registered into PsClientOptions::registry when given):
//   tessera_client_retries_total{shard}       pieces resent
//   tessera_client_timeouts_total{shard}      calls that timed out on a shard
//   tessera_client_waiting_seconds{shard}     age of the oldest unanswered
//                                             piece on a shard, 0 when none
//   tessera_client_request_latency_seconds{op}  calls, start to completion
//   tessera_client_shm_bytes_total{shard}     values moved through shared
//                                             memory (pushes and pulls)
//
// Thread-safe: every method may be called concurrently. Callbacks run on the
// client's I/O thread (or on the calling thread when a call fails before it
// is sent); they must not block, but may start new calls.

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ps/common/metrics/metrics.h"
#include "ps/spec/placement.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tessera/v1/tensor.pb.h"

namespace tessera {

struct PsClientOptions {
  // The gRPC address (host:port) of every shard, in shard-index order.
  std::vector<std::string> shard_addresses;
  // How long Connect waits for all shards to answer (they may be starting).
  absl::Duration connect_timeout = absl::Seconds(60);
  // The deadline of a call whose CallOptions set none, data plane and
  // control calls alike.
  absl::Duration default_deadline = absl::Seconds(5);
  // Backoff between resends after UNAVAILABLE: initial_backoff, doubling up
  // to max_backoff, each with +-20% jitter.
  absl::Duration initial_backoff = absl::Milliseconds(10);
  absl::Duration max_backoff = absl::Seconds(1);
  // A wait on a shard longer than this is logged, at most once per interval.
  absl::Duration wait_log_interval = absl::Seconds(1);
  // Receives the client's metrics. Optional; not owned; must outlive the
  // client.
  metrics::Registry* registry = nullptr;
  // ZeroMQ I/O threads.
  int io_threads = 1;
  // A dense push larger than this goes to its shard as several requests of
  // whole rows, at most this many bytes each (but at least one row), sent
  // together: the shard applies each as it arrives, while the next ones are
  // still on the wire. They are applied in order (see Order above); another
  // client may see some of them applied and not yet the rest. 0 = never cut.
  int64_t max_push_piece_bytes = 2 << 20;
  // Shared memory with shards on this machine: the client asks each shard
  // for a segment (SHM_ATTACH) when it connects, and dense pushes and pulls
  // of at least shared_memory_min_bytes then move their values through it
  // instead of over the socket (the request and reply are headers only).
  // A shard elsewhere, or one with --shm_segment_bytes=0, refuses, and its
  // requests go over TCP as before; so do requests that find the segment
  // full. Order, retries and failures are as for frames (see above).
  bool shared_memory = true;
  int64_t shared_memory_min_bytes = 16 << 10;
  // PullDenseBatch / PushDenseBatch: the ranges that go to one shard travel
  // together, in requests of at most max_batch_bytes (PUSH_DENSE_BATCH /
  // PULL_DENSE_BATCH). A range joins a batch if it has at most
  // max_batch_range_bytes, or at most max_batch_bytes while the shard shares
  // memory with this client: in frames a batch costs a copy of its values on
  // each side (a lone pull is sent from the part's memory, a lone push from
  // the caller's), in shared memory nothing more. A range that does not, or
  // a batch of one, goes as a PullDense / PushDense of its own would.
  // max_batch_bytes 0 = never batch.
  int64_t max_batch_bytes = 2 << 20;
  int64_t max_batch_range_bytes = 64 << 10;
};

struct CallOptions {
  // Time allowed for the whole call; zero = the client's default_deadline.
  absl::Duration deadline = absl::ZeroDuration();
  // The worker's clock (training step), sent with each request.
  int64_t clock = 0;
};

// One table's rows in PsClient::PullTables / PushTables.
struct TableRowsPull {
  std::string tensor;
  absl::Span<const uint64_t> ids;
  absl::Span<float> out;  // ids.size() rows
};
struct TableRowsPush {
  std::string tensor;
  absl::Span<const uint64_t> ids;
  absl::Span<const float> grad;  // ids.size() rows
};

// A dense pull that keeps its history (worker/dense_predictor.h says what for):
// `previous`, as many floats as the pull's `out`, gets the pulled values, and
// with `extrapolate`, `out` gets pulled + (pulled - previous's old values)
// instead of the pulled values. Both are written on the client's thread as
// each piece arrives, in one pass. On an error `previous` may hold parts of
// this pull and of the one before.
struct DenseHistory {
  absl::Span<float> previous;
  bool extrapolate = false;
};

// One dense tensor's rows in PsClient::PullDenseBatch: as PullDense's
// arguments (`history` optional: previous empty for none).
struct DenseRangePull {
  std::string tensor;
  int64_t row_begin = 0;
  absl::Span<float> out;
  DenseHistory history;
};
// One dense tensor's rows in PsClient::PushDenseBatch: `grad` in memory that
// `owner` keeps alive, as for PushDense without a copy.
struct DenseRangePush {
  std::string tensor;
  int64_t row_begin = 0;
  std::shared_ptr<const void> owner;
  absl::Span<const float> grad;
};

// Called once with the call's result.
using DoneCallback = std::function<void(const absl::Status&)>;

// A dense pull's values read where they arrived (PsClient::PullDenseInPlace),
// without the copy into a buffer of the caller's: it keeps the reply frames
// alive and points into them. Values that came through shared memory are
// copied out of the segment once (its ranges are reused), as are values in a
// frame not aligned for floats. Move-only; the values never change and stay
// valid until it is destroyed, on any thread.
class PulledDense {
 public:
  PulledDense() = default;
  PulledDense(PulledDense&&) = default;
  PulledDense& operator=(PulledDense&&) = default;

  // The values in row order: one span per piece of the pull (one per tensor
  // part the rows cover), which together hold size() floats.
  const std::vector<absl::Span<const float>>& spans() const { return spans_; }
  size_t size() const;
  // Copies the values into `out`; InvalidArgument unless it holds size()
  // floats.
  absl::Status CopyTo(absl::Span<float> out) const;

 private:
  friend class PsClient;
  std::vector<std::shared_ptr<const void>> holds_;
  std::vector<absl::Span<const float>> spans_;
};

using PulledDenseCallback = std::function<void(absl::StatusOr<PulledDense>)>;

class PsClient {
 public:
  // Asks every shard for its ShardInfo over gRPC (retrying UNAVAILABLE until
  // connect_timeout), checks that shard i answers at address i and that all
  // agree on the PlacementConfig (FailedPrecondition otherwise), then opens a
  // ZeroMQ DEALER to each shard's data port. InvalidArgument without
  // addresses; DeadlineExceeded naming the shards that never answered.
  static absl::StatusOr<std::unique_ptr<PsClient>> Connect(
      PsClientOptions options);

  // Fails calls still pending with CANCELLED (their callbacks run), then
  // closes the sockets.
  ~PsClient();

  PsClient(const PsClient&) = delete;
  PsClient& operator=(const PsClient&) = delete;

  int num_shards() const { return static_cast<int>(shards_.size()); }
  const v1::PlacementConfig& placement() const { return placement_; }
  // "host:port" of shard `shard`'s gRPC server and data plane.
  const std::string& grpc_address(int shard) const;
  const std::string& data_address(int shard) const;

  // Tensor specs. The client needs a tensor's spec to place it.
  //
  // Creates `specs` on every shard (idempotent; a different spec under an
  // existing name is ALREADY_EXISTS), then remembers them. The error names
  // the shard that refused.
  absl::Status CreateTensors(absl::Span<const v1::TensorSpec> specs);
  // Remembers `specs` without asking anyone (they must already exist on the
  // shards). InvalidArgument for an invalid spec, AlreadyExists for a name
  // remembered with a different spec.
  absl::Status RegisterSpecs(absl::Span<const v1::TensorSpec> specs);
  // Learns every tensor's spec from ListTensors on all shards.
  absl::Status LoadSpecs();
  // The spec remembered under `tensor`; NotFound if none.
  absl::StatusOr<v1::TensorSpec> GetSpec(const std::string& tensor) const;

  // Sets a dense tensor's initial values (e.g. a TorchScript file's), once
  // per part: `values` is the whole tensor (its number of elements, in row
  // order); it is split per placement and each part goes to its shard over
  // gRPC (ParameterServer.InitializeTensor), one part after another. A part
  // that was already initialized or updated keeps its values (not an error):
  // `applied_parts`, when given, receives how many parts this call set. When
  // this returns OK every part is initialized (by this call or an earlier one)
  // and on its shard's disk. A part is sent whole, never chunked: one larger
  // than its shard's --max_message_bytes fails at once with
  // RESOURCE_EXHAUSTED naming the limit, before anything is sent. UNAVAILABLE
  // (a loading or draining shard, a flush that failed) is retried with
  // backoff until default_deadline per part. Errors name the shard; parts
  // sent before an error stay set. InvalidArgument for an embedding table or
  // a wrong size; NotFound for a tensor this client does not know.
  absl::Status InitializeDense(absl::string_view tensor,
                               absl::Span<const float> values,
                               int* applied_parts = nullptr);

  // Control calls, over gRPC, blocking up to default_deadline.
  absl::StatusOr<v1::ShardInfo> GetShardInfo(int shard);
  absl::StatusOr<std::vector<v1::TensorPartInfo>> ListTensors(int shard);

  // Dense tensors. Rows [row_begin, row_begin + n) where n = out.size() (or
  // grad.size()) / floats per row; the whole tensor is row_begin 0 with
  // out.size() == its number of elements. `out` must stay valid until the
  // call completes; nothing writes to it after that.
  std::future<absl::Status> PullDense(const std::string& tensor,
                                      int64_t row_begin, absl::Span<float> out,
                                      const CallOptions& options = {});
  void PullDenseAsync(const std::string& tensor, int64_t row_begin,
                      absl::Span<float> out, DoneCallback done,
                      const CallOptions& options = {});
  // The same, keeping `history` (DenseHistory): `history.previous` must stay
  // valid until the call completes, like `out`.
  std::future<absl::Status> PullDense(const std::string& tensor,
                                      int64_t row_begin, absl::Span<float> out,
                                      const DenseHistory& history,
                                      const CallOptions& options = {});
  void PullDenseAsync(const std::string& tensor, int64_t row_begin,
                      absl::Span<float> out, const DenseHistory& history,
                      DoneCallback done, const CallOptions& options = {});
  // The same rows (`floats` of them) without a buffer of the caller's: the
  // result points into the replies (PulledDense), so the client makes no
  // pass over the values. For a caller that reads the values where they
  // are (a model server, a checkpoint writer, a tensor built over them)
  // rather than one that needs them in memory of its own.
  std::future<absl::StatusOr<PulledDense>> PullDenseInPlace(
      const std::string& tensor, int64_t row_begin, size_t floats,
      const CallOptions& options = {});
  void PullDenseInPlaceAsync(const std::string& tensor, int64_t row_begin,
                             size_t floats, PulledDenseCallback done,
                             const CallOptions& options = {});
  // Copies `grad` once; the caller may reuse it as soon as this returns.
  std::future<absl::Status> PushDense(const std::string& tensor,
                                      int64_t row_begin,
                                      absl::Span<const float> grad,
                                      const CallOptions& options = {});
  // Sends `grad` without copying: the client keeps a reference until ZeroMQ
  // has sent it (possibly after the call completes). `grad` must not change.
  std::future<absl::Status> PushDense(
      const std::string& tensor, int64_t row_begin,
      std::shared_ptr<const std::vector<float>> grad,
      const CallOptions& options = {});
  void PushDenseAsync(const std::string& tensor, int64_t row_begin,
                      std::shared_ptr<const std::vector<float>> grad,
                      DoneCallback done, const CallOptions& options = {});
  // As above, for `grad` in memory that `owner` keeps alive (e.g. a
  // libtorch tensor's).
  std::future<absl::Status> PushDense(const std::string& tensor,
                                      int64_t row_begin,
                                      std::shared_ptr<const void> owner,
                                      absl::Span<const float> grad,
                                      const CallOptions& options = {});
  void PushDenseAsync(const std::string& tensor, int64_t row_begin,
                      std::shared_ptr<const void> owner,
                      absl::Span<const float> grad, DoneCallback done,
                      const CallOptions& options = {});

  // Several dense tensors in one call, which completes when every range has
  // answered (the first error otherwise): what a training step pulls and
  // pushes. Ranges of at most PsClientOptions::max_batch_bytes that go to
  // one shard are sent together, so a step costs each shard one request and
  // one reply instead of one per tensor. Each range is checked as PullDense /
  // PushDense would before anything is sent, and a tensor may be named only
  // once. On the shard a batch is applied whole or not at all (data.proto),
  // but a call spans several requests when the tensors span shards or
  // max_batch_bytes: as for PushDense, a failed call may have been applied
  // in part. Order, retries and failures as for PullDense / PushDense.
  std::future<absl::Status> PullDenseBatch(std::vector<DenseRangePull> ranges,
                                           const CallOptions& options = {});
  void PullDenseBatchAsync(std::vector<DenseRangePull> ranges,
                           DoneCallback done, const CallOptions& options = {});
  std::future<absl::Status> PushDenseBatch(std::vector<DenseRangePush> ranges,
                                           const CallOptions& options = {});
  void PushDenseBatchAsync(std::vector<DenseRangePush> ranges,
                           DoneCallback done, const CallOptions& options = {});

  // Embedding rows, by id. Repeated ids are sent once: a pull copies the row
  // to every position that asked for it (out holds ids.size() rows, in the
  // caller's order); a push sums their gradients first, as the shard would.
  // `out` must stay valid until the call completes; `ids` and `grad` are
  // copied before these return.
  std::future<absl::Status> PullRows(const std::string& tensor,
                                     absl::Span<const uint64_t> ids,
                                     absl::Span<float> out,
                                     const CallOptions& options = {});
  void PullRowsAsync(const std::string& tensor, absl::Span<const uint64_t> ids,
                     absl::Span<float> out, DoneCallback done,
                     const CallOptions& options = {});
  std::future<absl::Status> PushRows(const std::string& tensor,
                                     absl::Span<const uint64_t> ids,
                                     absl::Span<const float> grad,
                                     const CallOptions& options = {});
  void PushRowsAsync(const std::string& tensor, absl::Span<const uint64_t> ids,
                     absl::Span<const float> grad, DoneCallback done,
                     const CallOptions& options = {});

  // Several embedding tables in one call, e.g. a model's table per
  // categorical feature: one request per shard carrying every table's rows
  // there (PUSH_TABLES / PULL_TABLES), where a PullRows / PushRows per table
  // would send one per table and shard. Each entry behaves as its table's
  // PullRows / PushRows (repeated ids sent once; a push sums them). A shard
  // applies its request to every table or, on error, to none; another shard
  // may have applied its own. Entries with no ids are skipped; a table named
  // twice is InvalidArgument. Ordered with the row calls to the same tables
  // (see Order above). The same lifetimes as PullRows / PushRows: `out` valid
  // until the call completes; `ids` and `grad` copied before these return.
  std::future<absl::Status> PullTables(absl::Span<const TableRowsPull> tables,
                                       const CallOptions& options = {});
  void PullTablesAsync(absl::Span<const TableRowsPull> tables,
                       DoneCallback done, const CallOptions& options = {});
  std::future<absl::Status> PushTables(absl::Span<const TableRowsPush> tables,
                                       const CallOptions& options = {});
  void PushTablesAsync(absl::Span<const TableRowsPush> tables,
                       DoneCallback done, const CallOptions& options = {});

  // A data-plane round trip to one shard: OK once it serves.
  absl::Status Ping(int shard, const CallOptions& options = {});

 private:
  struct ShardEndpoint {
    std::string grpc_address;
    std::string data_address;   // host:port
    std::string data_endpoint;  // tcp://host:port
    // The largest request the shard accepts (ShardInfo); 0 = not reported.
    int64_t max_message_bytes = 0;
    std::unique_ptr<v1::ParameterServer::Stub> stub;
  };
  // What the client needs of a tensor to place it; immutable once made.
  struct TensorInfo {
    v1::TensorSpec spec;
    bool embedding = false;
    int64_t row_size = 0;
    int64_t num_rows = 0;              // dense
    std::vector<PartPlacement> parts;  // dense, in row order
  };
  class Transport;
  struct Call;

  PsClient(PsClientOptions options, v1::PlacementConfig placement,
           std::vector<ShardEndpoint> shards);

  absl::StatusOr<std::shared_ptr<const TensorInfo>> Find(
      const std::string& tensor) const ABSL_LOCKS_EXCLUDED(specs_mu_);
  // Find, for a dense pull of `floats` from `row_begin`: InvalidArgument for
  // an embedding table or rows outside the tensor.
  absl::StatusOr<std::shared_ptr<const TensorInfo>> FindDensePull(
      const std::string& tensor, int64_t row_begin, size_t floats) const
      ABSL_LOCKS_EXCLUDED(specs_mu_);
  std::unique_ptr<Call> NewCall(int op, const std::string& tensor,
                                DoneCallback done, const CallOptions& options);
  void Submit(std::unique_ptr<Call> call);
  // Row calls: PULL_ROWS / PUSH_ROWS (one table) or PULL_TABLES / PUSH_TABLES,
  // over `pulls` or `pushes` (the other one empty).
  void SubmitRows(int op, absl::Span<const TableRowsPull> pulls,
                  absl::Span<const TableRowsPush> pushes, DoneCallback done,
                  const CallOptions& options);
  void SubmitDenseBatch(bool push, absl::Span<const DenseRangePull> pulls,
                        absl::Span<const DenseRangePush> pushes,
                        DoneCallback done, const CallOptions& options);
  absl::Duration DeadlineOf(const CallOptions& options) const;

  const PsClientOptions options_;
  const v1::PlacementConfig placement_;
  const std::vector<ShardEndpoint> shards_;
  std::unique_ptr<metrics::Registry> own_registry_;  // When none was given.
  std::unique_ptr<Transport> transport_;

  mutable absl::Mutex specs_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const TensorInfo>> specs_
      ABSL_GUARDED_BY(specs_mu_);
};

}  // namespace tessera

#endif  // TESSERA_PS_CLIENT_PS_CLIENT_H_

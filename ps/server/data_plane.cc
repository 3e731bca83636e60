#include "ps/server/data_plane.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "ps/client/data_wire.h"
#include "ps/client/placement.h"
#include "ps/common/reject_reason.h"
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
constexpr char kStopEndpoint[] = "inproc://tessera-data-stop";

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

// One request and, once handled, its reply. Owned by exactly one thread at a
// time: the socket thread, then a worker, then the socket thread again.
struct DataPlane::Work {
  ZmqFrame identity;
  std::vector<ZmqFrame> frames;  // header, then payload frames
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
  Handler(Shard* shard, int64_t max_message_bytes)
      : shard_(shard), max_message_bytes_(max_message_bytes) {}

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

  // The floats per row of `tensor`, checked against what the client assumed.
  // Specs never change once created, so a hit in the cache stays right.
  absl::StatusOr<int64_t> RowSizeOf(const v1::DataHeader& h) {
    int64_t row_size = 0;
    auto it = row_sizes_.find(h.tensor_name());
    if (it != row_sizes_.end()) {
      row_size = it->second;
    } else {
      auto info = shard_->store()->Describe(h.tensor_name());
      if (!info.ok()) return Own(info.status());
      row_size = RowSize(info->spec());
      row_sizes_.emplace(h.tensor_name(), row_size);
    }
    if (h.row_size() > 0 && h.row_size() != row_size) {
      return Own(Rejected(
          absl::StatusCode::kInvalidArgument, kReasonWrongShape,
          absl::StrCat("the client assumes rows of ", h.row_size(),
                       " floats for ", h.tensor_name(), "; its rows have ",
                       row_size)));
    }
    return row_size;
  }

  // A buffer for a pull's reply of `rows` rows of `row_size` floats, or
  // ResourceExhausted if the reply would exceed the message limit.
  absl::StatusOr<std::unique_ptr<float[]>> ReplyBuffer(const v1::DataHeader& h,
                                                       int64_t rows,
                                                       int64_t row_size) {
    const int64_t max_floats = max_message_bytes_ / sizeof(float);
    if (row_size <= 0 || rows > max_floats / row_size) {
      return Own(Rejected(
          absl::StatusCode::kResourceExhausted, kReasonOversize,
          absl::StrCat("pull of ", rows, " rows of ", h.tensor_name(),
                       " exceeds --max_message_bytes=", max_message_bytes_)));
    }
    return std::unique_ptr<float[]>(new float[rows * row_size]);
  }

  absl::Status RunOp(Work* w) {
    const v1::DataHeader& h = w->request;
    switch (h.op()) {
      case v1::DataHeader::PING:
        return shard_->CheckServing(false);
      case v1::DataHeader::PUSH_DENSE: {
        if (h.row_size() > 0) {
          auto row_size = RowSizeOf(h);
          if (!row_size.ok()) return row_size.status();
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
        auto result = shard_->PushRows(h.tensor_name(),
                                       AlignedSpan(w->frames[1], &ids_),
                                       AlignedSpan(w->frames[2], &floats_));
        if (!result.ok()) return result.status();
        w->reply.set_version(result->version);
        w->reply.set_skipped(result->skipped);
        return absl::OkStatus();
      }
      case v1::DataHeader::PULL_DENSE: {
        auto row_size = RowSizeOf(h);
        if (!row_size.ok()) return row_size.status();
        auto buffer = ReplyBuffer(h, h.row_count(), *row_size);
        if (!buffer.ok()) return buffer.status();
        const int64_t floats = h.row_count() * *row_size;
        auto version = shard_->PullDense(
            h.tensor_name(), h.row_begin(),
            absl::MakeSpan(buffer->get(), floats));
        if (!version.ok()) return version.status();
        w->reply.set_version(*version);
        w->reply_values = ZmqFrame::Adopt(*std::move(buffer), floats);
        w->has_values = true;
        w->bytes_out = floats * sizeof(float);
        return absl::OkStatus();
      }
      case v1::DataHeader::PULL_ROWS: {
        auto row_size = RowSizeOf(h);
        if (!row_size.ok()) return row_size.status();
        auto ids = AlignedSpan(w->frames[1], &ids_);
        auto buffer = ReplyBuffer(h, ids.size(), *row_size);
        if (!buffer.ok()) return buffer.status();
        const int64_t floats = ids.size() * *row_size;
        auto version = shard_->PullRows(h.tensor_name(), ids,
                                        absl::MakeSpan(buffer->get(), floats));
        if (!version.ok()) return version.status();
        w->reply.set_version(*version);
        w->reply_values = ZmqFrame::Adopt(*std::move(buffer), floats);
        w->has_values = true;
        w->bytes_out = floats * sizeof(float);
        return absl::OkStatus();
      }
      default:  // CheckRequestLayout let no other op through.
        return Own(Rejected(absl::StatusCode::kInvalidArgument,
                            kReasonMalformed,
                            absl::StrCat("unknown op ", h.op())));
    }
  }

  Shard* const shard_;  // Not owned.
  const int64_t max_message_bytes_;
  absl::flat_hash_map<std::string, int64_t> row_sizes_;
  std::vector<float> floats_;   // Scratch for misaligned frames.
  std::vector<uint64_t> ids_;   // Scratch for misaligned frames.
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
  // Every socket is made here and handed to its thread; starting a thread
  // publishes it (ZeroMQ sockets may move between threads with a barrier).
  auto stop_receiver = ZmqSocket::Open(context_->get(), ZMQ_PAIR);
  auto stop_sender = ZmqSocket::Open(context_->get(), ZMQ_PAIR);
  CHECK(stop_receiver.ok() && stop_sender.ok()) << "inproc sockets";
  CHECK(stop_receiver->Bind(kStopEndpoint).ok());
  CHECK(stop_sender->Connect(kStopEndpoint).ok());
  stop_sender_ = *std::move(stop_sender);

  std::vector<ZmqSocket> fronts;
  for (int i = 0; i < options_.threads; ++i) {
    auto front = ZmqSocket::Open(context_->get(), ZMQ_PAIR);
    auto back = ZmqSocket::Open(context_->get(), ZMQ_PAIR);
    CHECK(front.ok() && back.ok()) << "inproc sockets";
    // The socket thread bounds each queue itself (kMaxQueuedPerWorker).
    CHECK(front->SetInt(ZMQ_SNDHWM, 0).ok() &&
          front->SetInt(ZMQ_RCVHWM, 0).ok() &&
          back->SetInt(ZMQ_SNDHWM, 0).ok() && back->SetInt(ZMQ_RCVHWM, 0).ok());
    CHECK(front->Bind(WorkerEndpoint(i)).ok());
    CHECK(back->Connect(WorkerEndpoint(i)).ok());
    fronts.push_back(*std::move(front));
    auto* back_socket = new ZmqSocket(*std::move(back));
    workers_.emplace_back([this, back_socket] {
      std::unique_ptr<ZmqSocket> socket(back_socket);
      Handler handler(shard_, options_.max_message_bytes);
      void* pointer = nullptr;
      while (RecvPointer(socket->get(), 0, &pointer) && pointer != nullptr) {
        handler.Run(static_cast<Work*>(pointer));
        if (!SendPointer(socket->get(), pointer)) break;
      }
    });
  }
  auto* receiver = new ZmqSocket(*std::move(stop_receiver));
  auto* front_sockets = new std::vector<ZmqSocket>(std::move(fronts));
  socket_thread_ = std::thread([this, receiver, front_sockets] {
    std::unique_ptr<ZmqSocket> stop(receiver);
    std::unique_ptr<std::vector<ZmqSocket>> fronts(front_sockets);
    const int n = static_cast<int>(fronts->size());
    Handler inline_handler(shard_, options_.max_message_bytes);
    std::vector<zmq_pollitem_t> items(2 + n);
    items[0] = {router_.get(), 0, ZMQ_POLLIN, 0};
    items[1] = {stop->get(), 0, ZMQ_POLLIN, 0};
    for (int i = 0; i < n; ++i) {
      items[2 + i] = {(*fronts)[i].get(), 0, ZMQ_POLLIN, 0};
    }
    std::vector<int> queued(n, 0);
    int total_queued = 0;
    std::unique_ptr<Work> held;  // Read, waiting for room at its worker.
    int held_worker = 0;
    bool stopping = false;

    auto dispatch = [&](std::unique_ptr<Work> work, int worker) {
      ++queued[worker];
      ++total_queued;
      Work* raw = work.release();
      if (!SendPointer((*fronts)[worker].get(), raw)) {
        // Only a terminated context fails an inproc send; nothing to answer.
        delete raw;
        --queued[worker];
        --total_queued;
      }
    };

    while (true) {
      if (stopping && total_queued == 0 && held == nullptr) break;
      items[0].events = (!stopping && held == nullptr) ? ZMQ_POLLIN : 0;
      if (zmq_poll(items.data(), items.size(), -1) < 0) {
        if (zmq_errno() == EINTR) continue;
        LOG(ERROR) << ZmqError("data plane: zmq_poll");
        break;
      }
      if (items[1].revents & ZMQ_POLLIN) stopping = true;
      for (int i = 0; i < n; ++i) {
        if (!(items[2 + i].revents & ZMQ_POLLIN)) continue;
        void* pointer = nullptr;
        while (RecvPointer((*fronts)[i].get(), ZMQ_DONTWAIT, &pointer)) {
          --queued[i];
          --total_queued;
          SendReply(std::unique_ptr<Work>(static_cast<Work*>(pointer)));
        }
      }
      if (held != nullptr && queued[held_worker] < kMaxQueuedPerWorker) {
        dispatch(std::move(held), held_worker);
      }
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      for (int k = 0; k < kReadBatch && held == nullptr; ++k) {
        bool got = false;
        std::unique_ptr<Work> work = ReadRequest(&got);
        if (!got) break;
        if (work->status.ok() && n == 0) inline_handler.Run(work.get());
        if (!work->status.ok() || n == 0) {
          SendReply(std::move(work));
          continue;
        }
        const uint64_t key =
            Mix64(StableHash(std::string_view(work->identity.data(),
                                              work->identity.size())) ^
                  Mix64(StableHash(work->request.tensor_name())));
        const int worker = static_cast<int>(key % n);
        if (queued[worker] >= kMaxQueuedPerWorker) {
          held = std::move(work);
          held_worker = worker;
          break;
        }
        dispatch(std::move(work), worker);
      }
    }
    for (int i = 0; i < n; ++i) SendPointer((*fronts)[i].get(), nullptr);
    // Replies already queued get `linger` to leave.
    router_.SetInt(ZMQ_LINGER,
                   static_cast<int>(absl::ToInt64Milliseconds(options_.linger)))
        .IgnoreError();
    router_.Close();
  });
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
  work->received = absl::Now();
  work->identity = std::move(frames[0]);
  work->bytes_in = received->bytes - work->identity.size();
  work->reply.set_shard_index(shard_->options().shard_index);

  auto check = [&]() -> absl::Status {
    if (received->frames < 2) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      "empty message: no header frame");
    }
    if (work->bytes_in > options_.max_message_bytes) {
      return Rejected(absl::StatusCode::kResourceExhausted, kReasonOversize,
                      absl::StrCat("message of ", work->bytes_in,
                                   " bytes exceeds --max_message_bytes=",
                                   options_.max_message_bytes));
    }
    auto header = ParseDataHeader(frames[1].view());
    if (!header.ok()) return header.status();
    work->request = *std::move(header);
    work->reply.set_request_id(work->request.request_id());
    work->reply.set_op(work->request.op());
    if (received->frames > 2 + kMaxPayloadFrames) {
      return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                      absl::StrCat("message has ", received->frames - 1,
                                   " frames; a request has at most ",
                                   1 + kMaxPayloadFrames));
    }
    std::vector<size_t> sizes;
    for (size_t i = 2; i < frames.size(); ++i) sizes.push_back(frames[i].size());
    return CheckRequestLayout(work->request, sizes);
  };
  absl::Status status = check();
  if (!status.ok()) {
    shard_->CountRejected(RejectReasonOf(status));
    work->status = status;
    SetHeaderStatus(status, &work->reply);
    return work;
  }
  frames.erase(frames.begin());  // The identity, moved out above.
  work->frames = std::move(frames);
  return work;
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
    const char stop = 1;
    zmq_send(stop_sender_.get(), &stop, 1, 0);
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

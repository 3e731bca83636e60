#include "ps/client/ps_client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ps/wire/data_wire.h"
#include "ps/wire/zmq_frames.h"
#include "ps/common/grpc_status.h"
#include "tessera/v1/data.pb.h"

namespace tessera {
namespace {

// How often the I/O thread refreshes waiting gauges and wait logs while
// anything is pending.
constexpr absl::Duration kTick = absl::Milliseconds(250);
// Longest single GetShardInfo attempt while connecting.
constexpr absl::Duration kConnectAttempt = absl::Seconds(5);

std::string Pretty(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Milliseconds(100)));
}

// The host of a gRPC target "host:port" (or "dns:///host:port").
std::string HostOf(const std::string& target) {
  std::string address = target;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, scheme)) {
      address = address.substr(strlen(scheme));
    }
  }
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::chrono::system_clock::time_point GrpcDeadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

absl::Status WithShard(int shard, const std::string& address,
                       const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat("shard ", shard, " at ", address, ": ", status.message()));
}

v1::DataHeader RequestHeader(v1::DataHeader::Op op, const std::string& tensor,
                             const CallOptions& options) {
  v1::DataHeader header;
  header.set_op(op);
  header.set_tensor_name(tensor);
  header.set_clock(options.clock);
  return header;
}

}  // namespace

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
  float* out = nullptr;           // PULL_DENSE: contiguous
  std::vector<int64_t> out_rows;  // PULL_ROWS: the destination row of each id
  size_t expected_bytes = 0;

  State state = State::kNew;
  uint64_t request_id = 0;
  int sends = 0;
  absl::Status last_error;  // the last UNAVAILABLE answer
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
  // PULL_ROWS: the caller's buffer, and (from, to) row copies for repeated
  // ids, made once every piece has arrived.
  float* out = nullptr;
  int64_t row_size = 0;
  std::vector<std::pair<int64_t, int64_t>> duplicates;
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

 private:
  struct Link {
    int index = 0;
    std::string address;
    std::string endpoint;
    ZmqSocket socket;
    ZmqSocket monitor;
    int monitor_fd = -1;  // Polled as a plain fd (ZmqSocket::Fd).
    int generation = 0;
    // Pieces waiting for room in the socket, in send order.
    std::deque<std::pair<uint64_t, int>> backlog;
    absl::Time last_log = absl::InfinitePast();
    metrics::Counter* retries = nullptr;
    metrics::Counter* timeouts = nullptr;
    metrics::Gauge* waiting = nullptr;
  };

  Transport(const PsClientOptions& options, int wake_fd)
      : initial_backoff_(options.initial_backoff),
        max_backoff_(options.max_backoff),
        wait_log_interval_(options.wait_log_interval),
        context_(options.io_threads),
        wake_fd_(wake_fd) {}

  absl::Status OpenLink(Link* link);
  void CloseLink(Link* link);
  void Loop();
  void Start(std::unique_ptr<Call> call);
  absl::Status Send(Call* call, int piece, bool from_backlog = false);
  void DrainReplies(Link* link);
  void HandleReply(Link* link, std::vector<ZmqFrame>* frames);
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

absl::StatusOr<std::unique_ptr<PsClient::Transport>>
PsClient::Transport::Create(const PsClientOptions& options,
                            std::vector<LinkInfo> infos,
                            metrics::Registry* registry) {
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  std::unique_ptr<Transport> t(new Transport(options, wake_fd));
  auto& retries = metrics::BuildCounter()
                      .Name("tessera_client_retries_total")
                      .Help(
                          "Data-plane requests resent to a shard (after "
                          "UNAVAILABLE or a lost connection).")
                      .Register(*registry);
  auto& timeouts = metrics::BuildCounter()
                       .Name("tessera_client_timeouts_total")
                       .Help(
                           "Data-plane calls that ran out of time waiting "
                           "for a shard.")
                       .Register(*registry);
  auto& waiting = metrics::BuildGauge()
                      .Name("tessera_client_waiting_seconds")
                      .Help(
                          "How long the oldest unanswered data-plane "
                          "request to a shard has waited; 0 when none.")
                      .Register(*registry);
  t->latency_ = &metrics::BuildHistogram()
                     .Name("tessera_client_request_latency_seconds")
                     .Help(
                         "Data-plane calls from start to completion, by "
                         "op.")
                     .Register(*registry);
  for (size_t i = 0; i < infos.size(); ++i) {
    Link link;
    link.index = static_cast<int>(i);
    link.address = infos[i].address;
    link.endpoint = infos[i].endpoint;
    const metrics::Labels labels = {{"shard", absl::StrCat(i)}};
    link.retries = &retries.Add(labels);
    link.timeouts = &timeouts.Add(labels);
    link.waiting = &waiting.Add(labels);
    t->links_.push_back(std::move(link));
  }
  for (Link& link : t->links_) {
    absl::Status opened = t->OpenLink(&link);
    if (!opened.ok()) return opened;
  }
  // Starting the thread publishes the sockets to it.
  t->thread_ = std::thread([raw = t.get()] { raw->Loop(); });
  return t;
}

PsClient::Transport::~Transport() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }  // Always write: the thread may be between its check and its poll.
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  for (Link& link : links_) CloseLink(&link);
  close(wake_fd_);
}

absl::Status PsClient::Transport::OpenLink(Link* link) {
  auto socket = ZmqSocket::Open(context_.get(), ZMQ_DEALER);
  if (!socket.ok()) return socket.status();
  if (link->endpoint.find('[') != std::string::npos) {
    absl::Status ipv6 = socket->SetInt(ZMQ_IPV6, 1);
    if (!ipv6.ok()) return ipv6;
  }
  // The I/O thread queues what does not fit (backlog) instead of blocking.
  absl::Status hwm = socket->SetInt(ZMQ_SNDHWM, 10000);
  if (!hwm.ok()) return hwm;
  const std::string monitor_endpoint = absl::StrCat(
      "inproc://tessera-client-monitor-", link->index, "-", ++monitors_);
  if (zmq_socket_monitor(socket->get(), monitor_endpoint.c_str(),
                         ZMQ_EVENT_DISCONNECTED) != 0) {
    return ZmqError("zmq_socket_monitor");
  }
  auto monitor = ZmqSocket::Open(context_.get(), ZMQ_PAIR);
  if (!monitor.ok()) return monitor.status();
  absl::Status connected = monitor->Connect(monitor_endpoint);
  if (!connected.ok()) return connected;
  connected = socket->Connect(link->endpoint);
  if (!connected.ok()) return connected;
  auto monitor_fd = monitor->Fd();
  if (!monitor_fd.ok()) return monitor_fd.status();
  link->socket = *std::move(socket);
  link->monitor = *std::move(monitor);
  link->monitor_fd = *monitor_fd;
  // A receive that finds nothing arms the fd: only a reader that has come up
  // empty gets signalled when the next event arrives.
  std::vector<ZmqFrame> none;
  while (true) {
    auto received = ZmqRecvFrames(link->monitor.get(), &none, ZMQ_DONTWAIT, 2);
    if (!received.ok() || !received->received) break;
  }
  return absl::OkStatus();
}

void PsClient::Transport::CloseLink(Link* link) {
  if (link->socket.valid()) zmq_socket_monitor(link->socket.get(), nullptr, 0);
  link->monitor.Close();
  link->socket.Close();  // Linger 0: whatever was queued is dropped.
}

void PsClient::Transport::Submit(std::unique_ptr<Call> call) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      submitted_.push_back(std::move(call));
      wake = sleeping_ && !woken_;
      if (wake) woken_ = true;
    }
  }
  if (call != nullptr) {  // Not taken: the client is shutting down.
    call->done(absl::CancelledError("the client is shutting down"));
    return;
  }
  // A system call per request costs more than the rest of a small request
  // on a VM: wake the I/O thread only when it sleeps.
  if (wake) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

void PsClient::Transport::Loop() {
  std::vector<zmq_pollitem_t> items;
  absl::Time next_tick = absl::InfinitePast();
  while (true) {
    items.clear();
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    for (Link& link : links_) {
      if (!link.socket.valid()) {  // Reopened by the next Tick.
        items.push_back({nullptr, -1, 0, 0});
        items.push_back({nullptr, -1, 0, 0});
        continue;
      }
      const short out = link.backlog.empty() ? 0 : ZMQ_POLLOUT;
      items.push_back(
          {link.socket.get(), 0, static_cast<short>(ZMQ_POLLIN | out), 0});
      items.push_back({nullptr, link.monitor_fd, ZMQ_POLLIN, 0});
    }
    absl::Time now = absl::Now();
    absl::Time wake = absl::InfiniteFuture();
    if (!deadlines_.empty()) wake = std::min(wake, deadlines_.begin()->first);
    if (!retries_.empty())
      wake = std::min(wake, std::get<0>(*retries_.begin()));
    if (!calls_.empty() || waiting_) wake = std::min(wake, next_tick);
    long timeout_ms = -1;
    if (wake != absl::InfiniteFuture()) {
      timeout_ms =
          std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(
                                   wake - now, absl::Milliseconds(1))));
    }
    {
      absl::MutexLock lock(&mu_);
      if (!submitted_.empty() || stopping_) {
        timeout_ms = 0;  // Work is waiting: look, don't sleep.
      } else {
        sleeping_ = true;
      }
    }
    if (zmq_poll(items.data(), static_cast<int>(items.size()), timeout_ms) <
            0 &&
        zmq_errno() != EINTR) {
      LOG(ERROR) << ZmqError("client I/O thread: zmq_poll");
    }
    now = absl::Now();
    if (items[0].revents & ZMQ_POLLIN) {
      uint64_t value;
      (void)!read(wake_fd_, &value, sizeof(value));
    }
    std::vector<std::unique_ptr<Call>> fresh;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      sleeping_ = false;
      woken_ = false;
      fresh.swap(submitted_);
      stopping = stopping_;
    }
    if (stopping) {
      const absl::Status cancelled =
          absl::CancelledError("the client is shutting down");
      for (auto& call : fresh) call->done(cancelled);
      std::vector<uint64_t> ids;
      for (const auto& [id, call] : calls_) ids.push_back(id);
      for (uint64_t id : ids) Finish(calls_[id].get(), cancelled);
      return;
    }
    for (auto& call : fresh) Start(std::move(call));
    for (size_t i = 0; i < links_.size(); ++i) {
      Link& link = links_[i];
      const short socket_events = items[1 + 2 * i].revents;
      if (socket_events & ZMQ_POLLIN) DrainReplies(&link);
      if (socket_events & ZMQ_POLLOUT) FlushBacklog(&link);
      if (items[2 + 2 * i].revents & ZMQ_POLLIN) HandleMonitor(&link);
    }
    RunRetries(now);
    RunDeadlines(now);
    if ((!calls_.empty() || waiting_) && now >= next_tick) {
      Tick(now);
      next_tick = now + kTick;
    }
  }
}

PsClient::Call* PsClient::Transport::FindCall(uint64_t id) {
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : it->second.get();
}

absl::Duration PsClient::Transport::Backoff(int sends) {
  absl::Duration d = initial_backoff_;
  for (int i = 1; i < sends && d < max_backoff_; ++i) d *= 2;
  d = std::min(d, max_backoff_);
  return d * absl::Uniform(random_, 0.8, 1.2);
}

void PsClient::Transport::Start(std::unique_ptr<Call> owned) {
  Call* call = owned.get();
  call->id = next_call_id_++;
  call->pending = static_cast<int>(call->pieces.size());
  calls_.emplace(call->id, std::move(owned));
  deadlines_.insert({call->deadline, call->id});
  if (call->pieces.empty()) {
    Finish(call, absl::OkStatus());
    return;
  }
  for (size_t i = 0; i < call->pieces.size(); ++i) {
    absl::Status sent = Send(call, static_cast<int>(i));
    if (!sent.ok()) {
      Finish(call, sent);
      return;
    }
  }
}

absl::Status PsClient::Transport::Send(Call* call, int index,
                                       bool from_backlog) {
  Piece& piece = call->pieces[index];
  Link& link = links_[piece.shard];
  // Behind a backlog, wait in line: requests to a part keep their order.
  // Without a socket (it could not be reopened), wait for the next Tick.
  if (!link.socket.valid() || (!from_backlog && !link.backlog.empty())) {
    if (from_backlog) return absl::OkStatus();  // Still queued.
    piece.state = Piece::State::kQueued;
    link.backlog.emplace_back(call->id, index);
    return absl::OkStatus();
  }
  const uint64_t request_id = next_request_id_++;
  piece.header.set_request_id(request_id);
  ZmqFrame frames[3];
  size_t n = 0;
  frames[n++] = ZmqFrame::Copy(piece.header.SerializeAsString());
  if (piece.ids_bytes > 0) {
    frames[n++] = ZmqFrame::Share(piece.ids, piece.ids_bytes, piece.ids_owner);
  }
  if (piece.values_bytes > 0) {
    frames[n++] =
        ZmqFrame::Share(piece.values, piece.values_bytes, piece.values_owner);
  }
  absl::Status sent =
      ZmqSendFrames(link.socket.get(), absl::MakeSpan(frames, n), ZMQ_DONTWAIT);
  if (absl::IsUnavailable(sent)) {  // High-water mark: wait for room.
    piece.state = Piece::State::kQueued;
    if (!from_backlog) link.backlog.emplace_back(call->id, index);
    return absl::OkStatus();
  }
  if (!sent.ok()) return WithShard(link.index, link.address, sent);
  piece.state = Piece::State::kSent;
  piece.request_id = request_id;
  ++piece.sends;
  by_request_[request_id] = {call->id, index};
  return absl::OkStatus();
}

void PsClient::Transport::FlushBacklog(Link* link) {
  while (!link->backlog.empty()) {
    auto [call_id, index] = link->backlog.front();
    Call* call = FindCall(call_id);
    if (call == nullptr || call->pieces[index].state != Piece::State::kQueued) {
      link->backlog.pop_front();
      continue;
    }
    absl::Status sent = Send(call, index, /*from_backlog=*/true);
    if (!sent.ok()) {
      link->backlog.pop_front();
      Finish(call, sent);
      continue;
    }
    if (call->pieces[index].state == Piece::State::kQueued) return;  // Full.
    link->backlog.pop_front();
  }
}

void PsClient::Transport::DrainReplies(Link* link) {
  std::vector<ZmqFrame> frames;
  while (true) {
    auto received = ZmqRecvFrames(link->socket.get(), &frames, ZMQ_DONTWAIT,
                                  1 + kMaxPayloadFrames);
    if (!received.ok()) {
      LOG(ERROR) << WithShard(link->index, link->address, received.status());
      return;
    }
    if (!received->received) return;
    HandleReply(link, &frames);
  }
}

void PsClient::Transport::HandleReply(Link* link,
                                      std::vector<ZmqFrame>* frames) {
  if (frames->empty()) return;
  auto header = ParseDataHeader((*frames)[0].view());
  if (!header.ok()) {
    LOG(WARNING) << "shard " << link->index << " at " << link->address
                 << " sent an unreadable reply: " << header.status();
    return;
  }
  auto it = by_request_.find(header->request_id());
  if (it == by_request_.end()) {
    VLOG(1) << "shard " << link->index << ": late reply to request "
            << header->request_id() << " ignored";
    return;
  }
  const auto [call_id, index] = it->second;
  by_request_.erase(it);
  Call* call = FindCall(call_id);
  if (call == nullptr) return;
  Piece& piece = call->pieces[index];

  absl::Status status = HeaderStatus(*header);
  if (status.ok()) {
    std::vector<size_t> sizes;
    for (size_t i = 1; i < frames->size(); ++i) {
      sizes.push_back((*frames)[i].size());
    }
    status = CheckReplyLayout(call->op, *header, sizes, piece.expected_bytes);
  }
  if (status.ok()) {
    if (call->op == v1::DataHeader::PULL_DENSE) {
      std::memcpy(piece.out, (*frames)[1].data(), piece.expected_bytes);
    } else if (call->op == v1::DataHeader::PULL_ROWS) {
      const size_t row_bytes = call->row_size * sizeof(float);
      const char* src = (*frames)[1].data();
      for (size_t j = 0; j < piece.out_rows.size(); ++j) {
        std::memcpy(call->out + piece.out_rows[j] * call->row_size,
                    src + j * row_bytes, row_bytes);
      }
    }
    piece.state = Piece::State::kDone;
    if (--call->pending == 0) Finish(call, absl::OkStatus());
    return;
  }
  if (absl::IsUnavailable(status)) {
    // Loading or draining: nothing was applied; try again later.
    piece.last_error = status;
    piece.state = Piece::State::kBackoff;
    link->retries->Increment();
    retries_.insert({absl::Now() + Backoff(piece.sends), call_id, index});
    return;
  }
  Finish(call, WithShard(link->index, link->address, status));
}

void PsClient::Transport::HandleMonitor(Link* link) {
  // Its fd fired: read every event (until EAGAIN, which re-arms the fd).
  bool disconnected = false;
  std::vector<ZmqFrame> frames;
  while (true) {
    auto received =
        ZmqRecvFrames(link->monitor.get(), &frames, ZMQ_DONTWAIT, 2);
    if (!received.ok() || !received->received) break;
    uint16_t event = 0;
    if (!frames.empty() && frames[0].size() >= sizeof(event)) {
      std::memcpy(&event, frames[0].data(), sizeof(event));
    }
    if (event == ZMQ_EVENT_DISCONNECTED) disconnected = true;
  }
  if (!disconnected) return;

  // Replies that arrived before the connection dropped still count.
  DrainReplies(link);
  std::vector<std::pair<uint64_t, std::pair<uint64_t, int>>> unanswered;
  for (const auto& [request_id, where] : by_request_) {
    Call* call = FindCall(where.first);
    if (call != nullptr && call->pieces[where.second].shard == link->index) {
      unanswered.push_back({request_id, where});
    }
  }
  // Resend in the original order.
  std::sort(unanswered.begin(), unanswered.end());
  LOG(WARNING) << "shard " << link->index << " at " << link->address
               << ": connection lost; reconnecting and resending "
               << unanswered.size() << " unanswered requests";
  CloseLink(link);
  ++link->generation;
  absl::Status opened = OpenLink(link);
  if (!opened.ok()) {
    LOG(ERROR) << WithShard(link->index, link->address, opened);
    CloseLink(link);
  }
  for (const auto& [request_id, where] : unanswered) {
    by_request_.erase(request_id);
    Call* call = FindCall(where.first);
    if (call == nullptr) continue;
    call->pieces[where.second].state = Piece::State::kNew;
    link->retries->Increment();
    absl::Status sent = Send(call, where.second);
    if (!sent.ok()) Finish(call, sent);
  }
  // Pieces queued behind the old socket's high-water mark go out on the new
  // one.
  if (opened.ok()) FlushBacklog(link);
}

void PsClient::Transport::RunRetries(absl::Time now) {
  while (!retries_.empty() && std::get<0>(*retries_.begin()) <= now) {
    const auto [when, call_id, index] = *retries_.begin();
    retries_.erase(retries_.begin());
    Call* call = FindCall(call_id);
    if (call == nullptr ||
        call->pieces[index].state != Piece::State::kBackoff) {
      continue;
    }
    absl::Status sent = Send(call, index);
    if (!sent.ok()) Finish(call, sent);
  }
}

void PsClient::Transport::RunDeadlines(absl::Time now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    Call* call = FindCall(deadlines_.begin()->second);
    if (call == nullptr) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    TimeOut(call);  // Erases the entry.
  }
}

void PsClient::Transport::TimeOut(Call* call) {
  std::set<int> shards;
  for (const Piece& piece : call->pieces) {
    if (piece.state != Piece::State::kDone) shards.insert(piece.shard);
  }
  std::string message;
  for (int shard : shards) {
    Link& link = links_[shard];
    link.timeouts->Increment();
    if (!message.empty()) {
      absl::StrAppend(&message, "; also shard ", shard, " at ", link.address);
      continue;
    }
    absl::Status last;
    for (const Piece& piece : call->pieces) {
      if (piece.shard == shard && !piece.last_error.ok()) {
        last = piece.last_error;
      }
    }
    if (last.ok()) {
      message = absl::StrCat("shard ", shard, " at ", link.address,
                             " did not answer within ", Pretty(call->timeout));
    } else {
      message = absl::StrCat("shard ", shard, " at ", link.address,
                             " still unavailable after ", Pretty(call->timeout),
                             ": ", last.message());
    }
  }
  absl::StrAppend(&message, " (", DataOpName(call->op), " ", call->tensor, ")");
  Finish(call, absl::DeadlineExceededError(message));
}

void PsClient::Transport::Finish(Call* call, absl::Status status) {
  for (const Piece& piece : call->pieces) {
    if (piece.state == Piece::State::kSent) by_request_.erase(piece.request_id);
  }
  deadlines_.erase({call->deadline, call->id});
  // Stale retry and backlog entries are skipped when they come up.
  if (status.ok() && call->op == v1::DataHeader::PULL_ROWS) {
    const size_t row_bytes = call->row_size * sizeof(float);
    for (const auto& [from, to] : call->duplicates) {
      std::memcpy(call->out + to * call->row_size,
                  call->out + from * call->row_size, row_bytes);
    }
  }
  latency_->Add({{"op", DataOpName(call->op)}}, metrics::LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(absl::Now() - call->start));
  auto it = calls_.find(call->id);
  std::unique_ptr<Call> owned = std::move(it->second);
  calls_.erase(it);
  owned->done(status);
}

void PsClient::Transport::Tick(absl::Time now) {
  std::vector<int> pending(links_.size(), 0);
  std::vector<absl::Time> oldest(links_.size(), absl::InfiniteFuture());
  std::vector<const Call*> oldest_call(links_.size(), nullptr);
  for (const auto& [id, call] : calls_) {
    for (const Piece& piece : call->pieces) {
      if (piece.state == Piece::State::kDone) continue;
      ++pending[piece.shard];
      if (call->start < oldest[piece.shard]) {
        oldest[piece.shard] = call->start;
        oldest_call[piece.shard] = call.get();
      }
    }
  }
  waiting_ = false;
  for (size_t s = 0; s < links_.size(); ++s) {
    Link& link = links_[s];
    if (!link.socket.valid()) {
      absl::Status opened = OpenLink(&link);
      if (!opened.ok()) {
        LOG(ERROR) << WithShard(link.index, link.address, opened);
        CloseLink(&link);
      } else {
        FlushBacklog(&link);
      }
    }
    if (pending[s] == 0) {
      link.waiting->Set(0);
      continue;
    }
    waiting_ = true;
    const absl::Duration waited = now - oldest[s];
    link.waiting->Set(absl::ToDoubleSeconds(waited));
    if (waited >= wait_log_interval_ &&
        now - link.last_log >= wait_log_interval_) {
      link.last_log = now;
      const Call* call = oldest_call[s];
      LOG(WARNING) << "waiting for shard " << s << " at " << link.address
                   << " for " << Pretty(waited) << ": " << pending[s]
                   << " unanswered requests, the oldest "
                   << DataOpName(call->op) << " " << call->tensor
                   << " (deadline in " << Pretty(call->deadline - now) << ")";
    }
  }
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<PsClient>> PsClient::Connect(
    PsClientOptions options) {
  if (options.shard_addresses.empty()) {
    return absl::InvalidArgumentError("PsClient needs shard addresses");
  }
  const int n = static_cast<int>(options.shard_addresses.size());
  std::vector<ShardEndpoint> shards(n);
  std::vector<v1::ShardInfo> infos(n);
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  for (int i = 0; i < n; ++i) {
    ShardEndpoint& shard = shards[i];
    shard.grpc_address = options.shard_addresses[i];
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    shard.stub = v1::ParameterServer::NewStub(grpc::CreateCustomChannel(
        shard.grpc_address, grpc::InsecureChannelCredentials(), args));
    absl::Duration backoff = options.initial_backoff;
    absl::Status last;
    while (true) {
      grpc::ClientContext context;
      context.set_deadline(GrpcDeadline(
          std::max(absl::Milliseconds(1),
                   std::min(kConnectAttempt, deadline - absl::Now()))));
      last = FromGrpcStatus(shard.stub->GetShardInfo(
          &context, v1::GetShardInfoRequest(), &infos[i]));
      if (last.ok()) break;
      if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) {
        return WithShard(i, shard.grpc_address, last);
      }
      if (absl::Now() + backoff >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "shard ", i, " at ", shard.grpc_address,
            " did not answer GetShardInfo within ",
            Pretty(options.connect_timeout), ": ", last.message()));
      }
      absl::SleepFor(backoff);  // Retry backoff, not a readiness wait.
      backoff = std::min(backoff * 2, options.max_backoff);
    }
    const v1::ShardInfo& info = infos[i];
    if (info.shard_index() != i) {
      return absl::FailedPreconditionError(
          absl::StrCat(shard.grpc_address, " is shard ", info.shard_index(),
                       ", but it is listed as shard ", i));
    }
    if (!google::protobuf::util::MessageDifferencer::Equals(
            info.placement(), infos[0].placement())) {
      return absl::FailedPreconditionError(
          absl::StrCat("shards disagree on the placement: shard 0 has {",
                       infos[0].placement().ShortDebugString(), "}, shard ", i,
                       " has {", info.placement().ShortDebugString(), "}"));
    }
    if (info.placement().num_shards() != n) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", i, " at ", shard.grpc_address,
                       " belongs to a job of ", info.placement().num_shards(),
                       " shards; the client was given ", n, " addresses"));
    }
    if (info.data_port() <= 0 || info.data_port() > 65535) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", i, " at ", shard.grpc_address,
                       " reports no data port (", info.data_port(), ")"));
    }
    std::string host = HostOf(shard.grpc_address);
    shard.data_address = absl::StrCat(host, ":", info.data_port());
    if (host.find(':') != std::string::npos && host[0] != '[') {
      host = absl::StrCat("[", host, "]");
    }
    shard.data_endpoint = absl::StrCat("tcp://", host, ":", info.data_port());
  }
  std::vector<Transport::LinkInfo> links;
  for (const ShardEndpoint& shard : shards) {
    links.push_back({shard.data_address, shard.data_endpoint});
  }
  const v1::PlacementConfig placement = infos[0].placement();
  std::unique_ptr<PsClient> client(
      new PsClient(std::move(options), placement, std::move(shards)));
  metrics::Registry* registry = client->options_.registry;
  if (registry == nullptr) {
    client->own_registry_ = std::make_unique<metrics::Registry>();
    registry = client->own_registry_.get();
  }
  auto transport =
      Transport::Create(client->options_, std::move(links), registry);
  if (!transport.ok()) return transport.status();
  client->transport_ = *std::move(transport);
  return client;
}

PsClient::PsClient(PsClientOptions options, v1::PlacementConfig placement,
                   std::vector<ShardEndpoint> shards)
    : options_(std::move(options)),
      placement_(std::move(placement)),
      shards_(std::move(shards)) {}

PsClient::~PsClient() { transport_.reset(); }

const std::string& PsClient::grpc_address(int shard) const {
  return shards_.at(shard).grpc_address;
}

const std::string& PsClient::data_address(int shard) const {
  return shards_.at(shard).data_address;
}

absl::Duration PsClient::DeadlineOf(const CallOptions& options) const {
  return options.deadline > absl::ZeroDuration() ? options.deadline
                                                 : options_.default_deadline;
}

// --- Specs and control calls ------------------------------------------------

absl::Status PsClient::RegisterSpecs(absl::Span<const v1::TensorSpec> specs) {
  std::vector<std::shared_ptr<const TensorInfo>> infos;
  for (const v1::TensorSpec& spec : specs) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) return valid;
    auto info = std::make_shared<TensorInfo>();
    info->spec = spec;
    info->embedding = spec.kind() == v1::TensorSpec::EMBEDDING;
    info->row_size = RowSize(spec);
    if (!info->embedding) {
      info->num_rows = NumRows(spec);
      info->parts = PlaceDense(spec, placement_);
    }
    infos.push_back(std::move(info));
  }
  absl::MutexLock lock(&specs_mu_);
  for (const auto& info : infos) {
    auto it = specs_.find(info->spec.name());
    if (it != specs_.end() &&
        !google::protobuf::util::MessageDifferencer::Equals(it->second->spec,
                                                            info->spec)) {
      return absl::AlreadyExistsError(
          absl::StrCat("tensor ", info->spec.name(), " is already known as {",
                       it->second->spec.ShortDebugString(), "}, not {",
                       info->spec.ShortDebugString(), "}"));
    }
  }
  for (auto& info : infos) specs_[info->spec.name()] = std::move(info);
  return absl::OkStatus();
}

absl::Status PsClient::CreateTensors(absl::Span<const v1::TensorSpec> specs) {
  for (const v1::TensorSpec& spec : specs) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) return valid;
  }
  v1::CreateTensorsRequest request;
  for (const v1::TensorSpec& spec : specs) *request.add_specs() = spec;
  for (int i = 0; i < num_shards(); ++i) {
    grpc::ClientContext context;
    context.set_deadline(GrpcDeadline(options_.default_deadline));
    v1::CreateTensorsResponse response;
    absl::Status created = FromGrpcStatus(
        shards_[i].stub->CreateTensors(&context, request, &response));
    if (!created.ok()) return WithShard(i, shards_[i].grpc_address, created);
  }
  return RegisterSpecs(specs);
}

absl::StatusOr<std::vector<v1::TensorPartInfo>> PsClient::ListTensors(
    int shard) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  grpc::ClientContext context;
  context.set_deadline(GrpcDeadline(options_.default_deadline));
  v1::ListTensorsResponse response;
  absl::Status listed = FromGrpcStatus(shards_[shard].stub->ListTensors(
      &context, v1::ListTensorsRequest(), &response));
  if (!listed.ok())
    return WithShard(shard, shards_[shard].grpc_address, listed);
  return std::vector<v1::TensorPartInfo>(response.parts().begin(),
                                         response.parts().end());
}

absl::StatusOr<v1::ShardInfo> PsClient::GetShardInfo(int shard) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  grpc::ClientContext context;
  context.set_deadline(GrpcDeadline(options_.default_deadline));
  v1::ShardInfo info;
  absl::Status got = FromGrpcStatus(shards_[shard].stub->GetShardInfo(
      &context, v1::GetShardInfoRequest(), &info));
  if (!got.ok()) return WithShard(shard, shards_[shard].grpc_address, got);
  return info;
}

absl::Status PsClient::LoadSpecs() {
  absl::flat_hash_map<std::string, std::pair<int, v1::TensorSpec>> found;
  for (int i = 0; i < num_shards(); ++i) {
    auto parts = ListTensors(i);
    if (!parts.ok()) return parts.status();
    for (const v1::TensorPartInfo& part : *parts) {
      auto [it, inserted] =
          found.try_emplace(part.spec().name(), i, part.spec());
      if (!inserted && !google::protobuf::util::MessageDifferencer::Equals(
                           it->second.second, part.spec())) {
        return absl::FailedPreconditionError(
            absl::StrCat("shards ", it->second.first, " and ", i,
                         " disagree on the spec of ", part.spec().name()));
      }
    }
  }
  std::vector<v1::TensorSpec> specs;
  for (auto& [name, spec] : found) specs.push_back(std::move(spec.second));
  return RegisterSpecs(specs);
}

absl::StatusOr<v1::TensorSpec> PsClient::GetSpec(
    const std::string& tensor) const {
  auto info = Find(tensor);
  if (!info.ok()) return info.status();
  return (*info)->spec;
}

absl::StatusOr<std::shared_ptr<const PsClient::TensorInfo>> PsClient::Find(
    const std::string& tensor) const {
  absl::ReaderMutexLock lock(&specs_mu_);
  auto it = specs_.find(tensor);
  if (it == specs_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "tensor ", tensor,
        " is unknown to this client: CreateTensors, RegisterSpecs or "
        "LoadSpecs first"));
  }
  return it->second;
}

// --- Data plane -------------------------------------------------------------

std::unique_ptr<PsClient::Call> PsClient::NewCall(int op,
                                                  const std::string& tensor,
                                                  DoneCallback done,
                                                  const CallOptions& options) {
  auto call = std::make_unique<Call>();
  call->op = static_cast<v1::DataHeader::Op>(op);
  call->tensor = tensor;
  call->start = absl::Now();
  call->timeout = DeadlineOf(options);
  call->deadline = call->start + call->timeout;
  call->done = std::move(done);
  return call;
}

void PsClient::Submit(std::unique_ptr<Call> call) {
  transport_->Submit(std::move(call));
}

namespace {

// Wraps a future around a callback-style call.
template <typename Start>
std::future<absl::Status> AsFuture(Start start) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = promise->get_future();
  start([promise](const absl::Status& status) { promise->set_value(status); });
  return future;
}

// The rows [row_begin, row_begin + floats / row_size) of a dense tensor, or
// an error saying why they are not.
absl::Status CheckDenseRange(const std::string& tensor, int64_t row_size,
                             int64_t num_rows, int64_t row_begin, size_t floats,
                             const char* what) {
  if (floats == 0 || floats % row_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of ", floats, " floats for ", tensor,
                     " is not a non-empty run of rows of ", row_size));
  }
  const int64_t rows = floats / row_size;
  if (row_begin < 0 || row_begin + rows > num_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " for ", tensor, " rows [", row_begin, ", ",
                     row_begin + rows, ") is outside its ", num_rows, " rows"));
  }
  return absl::OkStatus();
}

}  // namespace

void PsClient::PullDenseAsync(const std::string& tensor, int64_t row_begin,
                              absl::Span<float> out, DoneCallback done,
                              const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is an embedding table: pull it with PullRows")));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, out.size(), "pull");
  if (!range.ok()) return done(range);
  const int64_t row_end = row_begin + out.size() / t.row_size;
  auto call =
      NewCall(v1::DataHeader::PULL_DENSE, tensor, std::move(done), options);
  for (const PartPlacement& part : t.parts) {
    const int64_t lo = std::max(row_begin, part.row_begin);
    const int64_t hi = std::min(row_end, part.row_end);
    if (lo >= hi) continue;
    Piece piece;
    piece.shard = part.shard;
    piece.header = RequestHeader(v1::DataHeader::PULL_DENSE, tensor, options);
    piece.header.set_row_begin(lo);
    piece.header.set_row_count(hi - lo);
    piece.header.set_row_size(t.row_size);
    piece.out = out.data() + (lo - row_begin) * t.row_size;
    piece.expected_bytes = (hi - lo) * t.row_size * sizeof(float);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PullDense(const std::string& tensor,
                                              int64_t row_begin,
                                              absl::Span<float> out,
                                              const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullDenseAsync(tensor, row_begin, out, std::move(done), options);
  });
}

void PsClient::PushDenseAsync(const std::string& tensor, int64_t row_begin,
                              std::shared_ptr<const std::vector<float>> grad,
                              DoneCallback done, const CallOptions& options) {
  if (grad == nullptr) {
    return done(absl::InvalidArgumentError("null gradient"));
  }
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (t.embedding) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        tensor, " is an embedding table: push to it with PushRows")));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, grad->size(), "gradient");
  if (!range.ok()) return done(range);
  const int64_t row_end = row_begin + grad->size() / t.row_size;
  auto call =
      NewCall(v1::DataHeader::PUSH_DENSE, tensor, std::move(done), options);
  for (const PartPlacement& part : t.parts) {
    const int64_t lo = std::max(row_begin, part.row_begin);
    const int64_t hi = std::min(row_end, part.row_end);
    if (lo >= hi) continue;
    Piece piece;
    piece.shard = part.shard;
    piece.header = RequestHeader(v1::DataHeader::PUSH_DENSE, tensor, options);
    piece.header.set_row_begin(lo);
    piece.header.set_row_count(hi - lo);
    piece.header.set_row_size(t.row_size);
    piece.values_owner = grad;
    piece.values = grad->data() + (lo - row_begin) * t.row_size;
    piece.values_bytes = (hi - lo) * t.row_size * sizeof(float);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PushDense(
    const std::string& tensor, int64_t row_begin,
    std::shared_ptr<const std::vector<float>> grad,
    const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushDenseAsync(tensor, row_begin, std::move(grad), std::move(done),
                   options);
  });
}

std::future<absl::Status> PsClient::PushDense(const std::string& tensor,
                                              int64_t row_begin,
                                              absl::Span<const float> grad,
                                              const CallOptions& options) {
  return PushDense(
      tensor, row_begin,
      std::make_shared<const std::vector<float>>(grad.begin(), grad.end()),
      options);
}

void PsClient::PullRowsAsync(const std::string& tensor,
                             absl::Span<const uint64_t> ids,
                             absl::Span<float> out, DoneCallback done,
                             const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (!t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is a dense tensor: pull it with PullDense")));
  }
  const int64_t dim = t.row_size;
  if (out.size() != ids.size() * dim) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("pull of ", ids.size(), " rows of ", tensor, " needs ",
                     ids.size() * dim, " floats, got ", out.size())));
  }
  const int n = num_shards();
  std::vector<std::vector<uint64_t>> shard_ids(n);
  std::vector<std::vector<int64_t>> shard_rows(n);
  absl::flat_hash_map<uint64_t, int64_t> first;
  auto call =
      NewCall(v1::DataHeader::PULL_ROWS, tensor, std::move(done), options);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto [it, inserted] = first.try_emplace(ids[i], i);
    if (!inserted) {
      call->duplicates.emplace_back(it->second, i);
      continue;
    }
    const int shard = ShardOfRow(ids[i], n);
    shard_ids[shard].push_back(ids[i]);
    shard_rows[shard].push_back(i);
  }
  call->out = out.data();
  call->row_size = dim;
  for (int s = 0; s < n; ++s) {
    if (shard_ids[s].empty()) continue;
    auto owned =
        std::make_shared<const std::vector<uint64_t>>(std::move(shard_ids[s]));
    Piece piece;
    piece.shard = s;
    piece.header = RequestHeader(v1::DataHeader::PULL_ROWS, tensor, options);
    piece.header.set_row_count(owned->size());
    piece.header.set_row_size(dim);
    piece.ids = owned->data();
    piece.ids_bytes = owned->size() * sizeof(uint64_t);
    piece.ids_owner = std::move(owned);
    piece.out_rows = std::move(shard_rows[s]);
    piece.expected_bytes = piece.out_rows.size() * dim * sizeof(float);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PullRows(const std::string& tensor,
                                             absl::Span<const uint64_t> ids,
                                             absl::Span<float> out,
                                             const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullRowsAsync(tensor, ids, out, std::move(done), options);
  });
}

void PsClient::PushRowsAsync(const std::string& tensor,
                             absl::Span<const uint64_t> ids,
                             absl::Span<const float> grad, DoneCallback done,
                             const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (!t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is a dense tensor: push to it with PushDense")));
  }
  const int64_t dim = t.row_size;
  if (grad.size() != ids.size() * dim) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "gradient for ", tensor, " has ", grad.size(), " floats; ", ids.size(),
        " rows of dim ", dim, " need ", ids.size() * dim)));
  }
  const int n = num_shards();
  std::vector<std::vector<uint64_t>> shard_ids(n);
  std::vector<std::vector<float>> shard_values(n);
  // id -> (shard, row within the shard's piece)
  absl::flat_hash_map<uint64_t, std::pair<int, size_t>> where;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* g = grad.data() + i * dim;
    auto it = where.find(ids[i]);
    if (it != where.end()) {
      // Summed in arrival order, as the shard sums repeated ids.
      float* sum =
          shard_values[it->second.first].data() + it->second.second * dim;
      for (int64_t j = 0; j < dim; ++j) sum[j] += g[j];
      continue;
    }
    const int shard = ShardOfRow(ids[i], n);
    where.emplace(ids[i], std::make_pair(shard, shard_ids[shard].size()));
    shard_ids[shard].push_back(ids[i]);
    shard_values[shard].insert(shard_values[shard].end(), g, g + dim);
  }
  auto call =
      NewCall(v1::DataHeader::PUSH_ROWS, tensor, std::move(done), options);
  for (int s = 0; s < n; ++s) {
    if (shard_ids[s].empty()) continue;
    auto owned_ids =
        std::make_shared<const std::vector<uint64_t>>(std::move(shard_ids[s]));
    auto owned_values =
        std::make_shared<const std::vector<float>>(std::move(shard_values[s]));
    Piece piece;
    piece.shard = s;
    piece.header = RequestHeader(v1::DataHeader::PUSH_ROWS, tensor, options);
    piece.header.set_row_count(owned_ids->size());
    piece.header.set_row_size(dim);
    piece.ids = owned_ids->data();
    piece.ids_bytes = owned_ids->size() * sizeof(uint64_t);
    piece.ids_owner = std::move(owned_ids);
    piece.values = owned_values->data();
    piece.values_bytes = owned_values->size() * sizeof(float);
    piece.values_owner = std::move(owned_values);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PushRows(const std::string& tensor,
                                             absl::Span<const uint64_t> ids,
                                             absl::Span<const float> grad,
                                             const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushRowsAsync(tensor, ids, grad, std::move(done), options);
  });
}

absl::Status PsClient::Ping(int shard, const CallOptions& options) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  return AsFuture([&](DoneCallback done) {
           auto call =
               NewCall(v1::DataHeader::PING, "", std::move(done), options);
           Piece piece;
           piece.shard = shard;
           piece.header = RequestHeader(v1::DataHeader::PING, "", options);
           call->pieces.push_back(std::move(piece));
           Submit(std::move(call));
         })
      .get();
}

}  // namespace tessera

#include "ps/client/transport.h"

#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "ps/common/extrapolate.h"
#include "ps/wire/data_wire.h"

namespace tessera {

using client_internal::GrpcDeadline;
using client_internal::kTick;
using client_internal::Pretty;
using client_internal::WithShard;

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
  auto& shm_bytes = metrics::BuildCounter()
                        .Name("tessera_client_shm_bytes_total")
                        .Help(
                            "Values of dense pushes and pulls moved through "
                            "a shared-memory segment with a shard on this "
                            "machine instead of its socket.")
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
    link.shm_bytes = &shm_bytes.Add(labels);
    t->links_.push_back(std::move(link));
  }
  t->shm_attached_ = std::make_unique<std::atomic<bool>[]>(infos.size());
  for (size_t i = 0; i < infos.size(); ++i) t->shm_attached_[i] = false;
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
  if (shared_memory_) SendAttach(link);
  return absl::OkStatus();
}

void PsClient::Transport::SendAttach(Link* link) {
  link->shm_retry_at = absl::InfiniteFuture();
  link->shm_attach_request = 0;
  if (!link->socket.valid() || ShmHostId().empty()) return;
  v1::DataHeader header;
  header.set_op(v1::DataHeader::SHM_ATTACH);
  header.set_request_id(next_request_id_++);
  header.set_shm_host(ShmHostId());
  ZmqFrame frame = ZmqFrame::Copy(header.SerializeAsString());
  if (ZmqSendFrames(link->socket.get(), absl::MakeSpan(&frame, 1), ZMQ_DONTWAIT)
          .ok()) {
    link->shm_attach_request = header.request_id();
  }
}

void PsClient::Transport::HandleAttach(Link* link,
                                       const v1::DataHeader& reply) {
  link->shm_attach_request = 0;
  const absl::Status refused = HeaderStatus(reply);
  absl::StatusOr<std::unique_ptr<ShmSegment>> segment =
      refused.ok() ? ShmSegment::Attach(reply.shm_pid(), reply.shm_fd(),
                                        reply.shm_bytes(), reply.shm_segment())
                   : refused;
  const bool first = !link->shm_logged;
  link->shm_logged = true;
  if (!segment.ok()) {
    // Asked again when the link reconnects (the shard may have restarted
    // with other flags, or elsewhere).
    LOG_IF(INFO, first) << "shard " << link->index << " at " << link->address
                        << ": no shared memory (" << segment.status().message()
                        << "); dense pushes and pulls go over TCP";
    return;
  }
  link->shm = std::shared_ptr<ShmSegment>(*std::move(segment));
  link->arena.Reset(ShmSegment::kHeaderBytes, link->shm->bytes());
  shm_attached_[link->index] = true;
  LOG_IF(INFO, first) << "shard " << link->index << " at " << link->address
                      << ": dense pushes and pulls of "
                      << shared_memory_min_bytes_
                      << " bytes or more go through a shared-memory segment of "
                      << link->shm->bytes() / (1 << 20) << " MiB";
  VLOG_IF(1, !first) << "shard " << link->index
                     << ": shared-memory segment attached again";
}

void PsClient::Transport::PlaceInShm(Link* link, Piece* piece) {
  piece->header.clear_shm_segment();
  piece->header.clear_shm_offset();
  piece->shm.reset();
  const v1::DataHeader::Op op = piece->header.op();
  const bool batch = IsDenseBatch(op);
  const bool dense = batch || op == v1::DataHeader::PUSH_DENSE ||
                     op == v1::DataHeader::PULL_DENSE;
  // (A batch's ranges carry their row sizes; a single piece must set one.)
  if (link->shm == nullptr || !dense ||
      (!batch && piece->header.row_size() <= 0)) {
    return;
  }
  const bool push = op == v1::DataHeader::PUSH_DENSE ||
                    op == v1::DataHeader::PUSH_DENSE_BATCH;
  const int64_t bytes =
      static_cast<int64_t>(push ? piece->values_bytes : piece->expected_bytes);
  if (bytes <= 0 || bytes < shared_memory_min_bytes_) return;
  const int64_t offset = link->arena.Allocate(bytes);
  if (offset < 0) return;  // Full: this one goes in frames.
  if (push && batch) {
    char* to = link->shm->data() + offset;
    for (const Piece::BatchRange& r : piece->batch) {
      std::memcpy(to, r.grad, r.floats * sizeof(float));
      to += r.floats * sizeof(float);
    }
  } else if (push) {
    std::memcpy(link->shm->data() + offset, piece->values, bytes);
  }
  piece->shm = link->shm;
  piece->shm_offset = offset;
  piece->shm_bytes = bytes;
  piece->header.set_shm_segment(link->shm->token());
  piece->header.set_shm_offset(offset);
}

void PsClient::Transport::ReleaseShm(Link* link, Piece* piece) {
  if (piece->shm == nullptr) return;
  if (piece->shm == link->shm) {
    link->arena.Free(piece->shm_offset, piece->shm_bytes);
  }
  piece->shm.reset();
}

void PsClient::Transport::RetireShm(Link* link, absl::Duration retry) {
  // Pieces that still hold the old segment keep it mapped until they are
  // done; nothing is allocated from it again.
  link->shm.reset();
  shm_attached_[link->index] = false;
  link->arena.Clear();
  link->shm_attach_request = 0;
  link->shm_retry_at =
      shared_memory_ ? absl::Now() + retry : absl::InfiniteFuture();
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
  PlaceInShm(&link, &piece);
  ZmqFrame frames[3];
  size_t n = 0;
  frames[n++] = ZmqFrame::Copy(piece.header.SerializeAsString());
  if (piece.ids_bytes > 0) {
    frames[n++] = ZmqFrame::Share(piece.ids, piece.ids_bytes, piece.ids_owner);
  }
  if (piece.values_bytes > 0 && piece.shm == nullptr) {
    if (piece.values == nullptr) {  // A batch push: its ranges in one frame.
      auto joined = std::make_shared<std::vector<float>>();
      joined->reserve(piece.values_bytes / sizeof(float));
      for (const Piece::BatchRange& r : piece.batch) {
        joined->insert(joined->end(), r.grad, r.grad + r.floats);
      }
      piece.values = joined->data();
      piece.values_owner = std::move(joined);
    }
    frames[n++] =
        ZmqFrame::Share(piece.values, piece.values_bytes, piece.values_owner);
  }
  absl::Status sent =
      ZmqSendFrames(link.socket.get(), absl::MakeSpan(frames, n), ZMQ_DONTWAIT);
  if (!sent.ok()) ReleaseShm(&link, &piece);  // The shard never saw it.
  if (absl::IsUnavailable(sent)) {            // High-water mark: wait for room.
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
  if (link->shm_attach_request != 0 &&
      header->request_id() == link->shm_attach_request &&
      header->op() == v1::DataHeader::SHM_ATTACH) {
    HandleAttach(link, *header);
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

  // The shard has answered: a range of shared memory it used is free again.
  const bool in_shm = piece.shm != nullptr;
  const bool current_shm = in_shm && piece.shm == link->shm;
  absl::Status status = HeaderStatus(*header);
  if (status.ok()) {
    std::vector<size_t> sizes;
    for (size_t i = 1; i < frames->size(); ++i) {
      sizes.push_back((*frames)[i].size());
    }
    status = CheckReplyLayout(piece.header.op(), *header, sizes,
                              piece.expected_bytes, in_shm);
  }
  if (in_shm && header->shm_lost()) {
    // The shard does not have the segment (it restarted, or closed it for
    // another client's): nothing was applied. Send it again in frames, and
    // attach a new segment in a while.
    ReleaseShm(link, &piece);
    if (current_shm) RetireShm(link, absl::Seconds(1));
    piece.state = Piece::State::kNew;
    link->retries->Increment();
    absl::Status sent = Send(call, index);
    if (!sent.ok()) Finish(call, sent);
    return;
  }
  if (status.ok()) {
    const v1::DataHeader::Op op = piece.header.op();
    if (op == v1::DataHeader::PULL_DENSE_BATCH) {
      const char* values =
          in_shm ? piece.shm->data() + piece.shm_offset : (*frames)[1].data();
      // The reply's size was checked against the ranges' (expected_bytes).
      for (const Piece::BatchRange& r : piece.batch) {
        if (r.previous != nullptr) {
          CopyWithHistory(values, r.floats, r.out, r.previous, r.extrapolate);
        } else {
          std::memcpy(r.out, values, r.floats * sizeof(float));
        }
        values += r.floats * sizeof(float);
      }
    } else if (op == v1::DataHeader::PULL_DENSE) {
      const void* values =
          in_shm ? piece.shm->data() + piece.shm_offset : (*frames)[1].data();
      if (piece.in_place != nullptr) {
        KeepInPlace(&piece, values, in_shm ? nullptr : &(*frames)[1]);
      } else if (piece.previous != nullptr) {
        CopyWithHistory(values, piece.expected_bytes / sizeof(float), piece.out,
                        piece.previous, piece.extrapolate);
      } else {
        std::memcpy(piece.out, values, piece.expected_bytes);
      }
    } else if (IsPull(op)) {  // PULL_ROWS, PULL_TABLES
      // The reply's size was checked against out_runs (expected_bytes).
      const char* src = (*frames)[1].data();
      size_t row = 0;
      for (const auto& [rows, floats] : piece.out_runs) {
        const size_t row_bytes = floats * sizeof(float);
        for (size_t j = 0; j < rows; ++j, ++row, src += row_bytes) {
          std::memcpy(piece.out_rows[row], src, row_bytes);
        }
      }
    }
    if (in_shm)
      link->shm_bytes->Increment(static_cast<double>(piece.shm_bytes));
    ReleaseShm(link, &piece);
    piece.state = Piece::State::kDone;
    if (--call->pending == 0) Finish(call, absl::OkStatus());
    return;
  }
  ReleaseShm(link, &piece);
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

void PsClient::Transport::KeepInPlace(Piece* piece, const void* values,
                                      ZmqFrame* frame) {
  const size_t floats = piece->expected_bytes / sizeof(float);
  client_internal::InPlacePull& pull = *piece->in_place;
  const size_t slot = piece->in_place_slot;
  if (frame != nullptr &&
      reinterpret_cast<uintptr_t>(values) % alignof(float) == 0) {
    auto held = std::make_shared<ZmqFrame>(std::move(*frame));
    pull.spans[slot] = {reinterpret_cast<const float*>(held->data()), floats};
    pull.holds[slot] = std::move(held);
    return;
  }
  // Shared memory (its range is reused once answered) or a misaligned frame.
  auto copy = std::make_shared<std::vector<float>>(floats);
  std::memcpy(copy->data(), values, floats * sizeof(float));
  pull.spans[slot] = *copy;
  pull.holds[slot] = std::move(copy);
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
  // The shard may still be working on ranges of the segment that will never
  // be answered: stop using it (OpenLink asks for a new one).
  RetireShm(link, absl::ZeroDuration());
  CloseLink(link);
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
  for (Piece& piece : call->pieces) {
    if (piece.state != Piece::State::kSent) continue;
    by_request_.erase(piece.request_id);
    // Unanswered: the shard may still read or write its range, which must
    // not be handed to another request; the segment goes.
    Link& link = links_[piece.shard];
    if (piece.shm != nullptr && piece.shm == link.shm) {
      RetireShm(&link, absl::Seconds(1));
    }
    piece.shm.reset();
  }
  deadlines_.erase({call->deadline, call->id});
  // Stale retry and backlog entries are skipped when they come up.
  if (status.ok()) {
    for (const RowCopy& copy : call->duplicates) {
      std::memcpy(copy.to, copy.from, copy.floats * sizeof(float));
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
    if (link.socket.valid() && link.shm == nullptr &&
        link.shm_attach_request == 0 && now >= link.shm_retry_at) {
      SendAttach(&link);
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

}  // namespace tessera

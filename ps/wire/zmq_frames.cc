#include "ps/wire/zmq_frames.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace tessera {
namespace {

void ReleaseShared(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

void DeleteFloats(void* data, void* /*hint*/) {
  delete[] static_cast<float*>(data);
}

}  // namespace

ZmqFrame::ZmqFrame() { zmq_msg_init(&msg_); }

ZmqFrame::~ZmqFrame() { zmq_msg_close(&msg_); }

ZmqFrame::ZmqFrame(ZmqFrame&& other) noexcept {
  zmq_msg_init(&msg_);
  zmq_msg_move(&msg_, &other.msg_);
}

ZmqFrame& ZmqFrame::operator=(ZmqFrame&& other) noexcept {
  if (this != &other) zmq_msg_move(&msg_, &other.msg_);
  return *this;
}

ZmqFrame ZmqFrame::Copy(absl::string_view bytes) {
  ZmqFrame frame;
  // Only ENOMEM can fail here; libzmq itself aborts on allocation failure
  // elsewhere, so treat it as an invariant.
  CHECK_EQ(zmq_msg_init_size(&frame.msg_, bytes.size()), 0)
      << "out of memory for a " << bytes.size() << "-byte frame";
  if (!bytes.empty()) {
    std::memcpy(zmq_msg_data(&frame.msg_), bytes.data(), bytes.size());
  }
  return frame;
}

ZmqFrame ZmqFrame::Share(const void* data, size_t size,
                         std::shared_ptr<const void> owner) {
  ZmqFrame frame;
  if (size == 0) return frame;
  auto* hint = new std::shared_ptr<const void>(std::move(owner));
  zmq_msg_close(&frame.msg_);
  CHECK_EQ(zmq_msg_init_data(&frame.msg_, const_cast<void*>(data), size,
                             &ReleaseShared, hint),
           0);
  return frame;
}

ZmqFrame ZmqFrame::Adopt(std::unique_ptr<float[]> data, size_t floats) {
  ZmqFrame frame;
  if (floats == 0) return frame;
  zmq_msg_close(&frame.msg_);
  CHECK_EQ(zmq_msg_init_data(&frame.msg_, data.release(),
                             floats * sizeof(float), &DeleteFloats, nullptr),
           0);
  return frame;
}

ZmqFrame ZmqFrame::WithFree(void* data, size_t size, zmq_free_fn* free_fn,
                            void* hint) {
  ZmqFrame frame;
  zmq_msg_close(&frame.msg_);
  CHECK_EQ(zmq_msg_init_data(&frame.msg_, data, size, free_fn, hint), 0);
  return frame;
}

const char* ZmqFrame::data() const {
  return static_cast<const char*>(zmq_msg_data(const_cast<zmq_msg_t*>(&msg_)));
}

size_t ZmqFrame::size() const {
  return zmq_msg_size(const_cast<zmq_msg_t*>(&msg_));
}

ZmqContext::ZmqContext(int io_threads) : context_(zmq_ctx_new()) {
  CHECK(context_ != nullptr) << "zmq_ctx_new: " << zmq_strerror(zmq_errno());
  zmq_ctx_set(context_, ZMQ_IO_THREADS, io_threads);
}

ZmqContext::~ZmqContext() {
  while (zmq_ctx_term(context_) != 0 && zmq_errno() == EINTR) {
  }
}

ZmqSocket& ZmqSocket::operator=(ZmqSocket&& other) noexcept {
  if (this != &other) {
    Close();
    socket_ = other.socket_;
    other.socket_ = nullptr;
  }
  return *this;
}

absl::StatusOr<ZmqSocket> ZmqSocket::Open(void* context, int type) {
  ZmqSocket socket;
  socket.socket_ = zmq_socket(context, type);
  if (socket.socket_ == nullptr) return ZmqError("zmq_socket");
  absl::Status linger = socket.SetInt(ZMQ_LINGER, 0);
  if (!linger.ok()) return linger;
  return socket;
}

absl::Status ZmqSocket::SetInt(int option, int value) {
  if (zmq_setsockopt(socket_, option, &value, sizeof(value)) != 0) {
    return ZmqError(absl::StrCat("zmq_setsockopt(", option, ")"));
  }
  return absl::OkStatus();
}

absl::Status ZmqSocket::Bind(const std::string& endpoint) {
  if (zmq_bind(socket_, endpoint.c_str()) != 0) {
    return ZmqError(absl::StrCat("cannot bind ", endpoint));
  }
  return absl::OkStatus();
}

absl::Status ZmqSocket::Connect(const std::string& endpoint) {
  if (zmq_connect(socket_, endpoint.c_str()) != 0) {
    return ZmqError(absl::StrCat("cannot connect to ", endpoint));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ZmqSocket::Fd() const {
  int fd = -1;
  size_t size = sizeof(fd);
  if (zmq_getsockopt(socket_, ZMQ_FD, &fd, &size) != 0) {
    return ZmqError("zmq_getsockopt(ZMQ_FD)");
  }
  return fd;
}

absl::StatusOr<int> ZmqSocket::BoundPort() const {
  char endpoint[256];
  size_t size = sizeof(endpoint);
  if (zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, endpoint, &size) != 0) {
    return ZmqError("zmq_getsockopt(ZMQ_LAST_ENDPOINT)");
  }
  const absl::string_view text(endpoint);
  const size_t colon = text.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(text.substr(colon + 1), &port)) {
    return absl::InternalError(
        absl::StrCat("no TCP port in the bound endpoint ", text));
  }
  return port;
}

void ZmqSocket::Close() {
  if (socket_ != nullptr) {
    zmq_close(socket_);
    socket_ = nullptr;
  }
}

absl::Status ZmqError(absl::string_view what) {
  const int error = zmq_errno();
  const std::string message = absl::StrCat(what, ": ", zmq_strerror(error));
  switch (error) {
    case ETERM:
      return absl::CancelledError(message);
    case EAGAIN:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status ZmqSendFrames(void* socket, absl::Span<ZmqFrame> frames,
                           int flags) {
  for (size_t i = 0; i < frames.size(); ++i) {
    const int more = i + 1 < frames.size() ? ZMQ_SNDMORE : 0;
    while (zmq_msg_send(frames[i].raw(), socket, flags | more) < 0) {
      if (zmq_errno() == EINTR) continue;
      return ZmqError("zmq_msg_send");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ZmqReceived> ZmqRecvFrames(void* socket,
                                          std::vector<ZmqFrame>* frames,
                                          int flags, size_t max_frames) {
  frames->clear();
  ZmqReceived result;
  int more = 1;
  while (more) {
    ZmqFrame frame;
    // Only the first frame may be missing: the rest of a multipart message
    // arrives with it.
    const int recv_flags = result.frames == 0 ? flags : 0;
    while (zmq_msg_recv(frame.raw(), socket, recv_flags) < 0) {
      if (zmq_errno() == EINTR) continue;
      if (zmq_errno() == EAGAIN && result.frames == 0) return result;
      return ZmqError("zmq_msg_recv");
    }
    more = zmq_msg_more(frame.raw());
    ++result.frames;
    result.bytes += frame.size();
    if (frames->size() < max_frames) frames->push_back(std::move(frame));
  }
  result.received = true;
  return result;
}

}  // namespace tessera

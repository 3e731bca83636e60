#ifndef TESSERA_PS_WIRE_ZMQ_FRAMES_H_
#define TESSERA_PS_WIRE_ZMQ_FRAMES_H_

// Small RAII wrappers over libzmq's C API for the data plane: a message frame,
// a socket, a context, and multipart send/receive that report errors as
// absl::Status. We use the C API rather than cppzmq because cppzmq throws, and
// no exception may cross a module (STYLE.md).
//
// Thread-compatible: a ZeroMQ socket belongs to one thread at a time.

#include <zmq.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tessera {

// One ZeroMQ message frame. Move-only.
class ZmqFrame {
 public:
  ZmqFrame();  // An empty frame.
  ~ZmqFrame();
  ZmqFrame(ZmqFrame&& other) noexcept;
  ZmqFrame& operator=(ZmqFrame&& other) noexcept;
  ZmqFrame(const ZmqFrame&) = delete;
  ZmqFrame& operator=(const ZmqFrame&) = delete;

  // A frame holding a copy of `bytes`.
  static ZmqFrame Copy(absl::string_view bytes);

  // A frame that points at `data` without copying it. `owner` keeps the bytes
  // alive: ZeroMQ releases it (on one of its own threads) when it no longer
  // needs them, which may be after this frame object is gone and after the
  // reply to the request arrived. `data` must not change meanwhile.
  static ZmqFrame Share(const void* data, size_t size,
                        std::shared_ptr<const void> owner);

  // A frame that takes ownership of `data`, `floats` floats allocated with
  // new float[]; ZeroMQ deletes it after sending.
  static ZmqFrame Adopt(std::unique_ptr<float[]> data, size_t floats);

  // A frame over `data` that ZeroMQ releases with free_fn(data, hint) once
  // sent (on one of its own threads).
  static ZmqFrame WithFree(void* data, size_t size, zmq_free_fn* free_fn,
                           void* hint);

  const char* data() const;
  size_t size() const;
  absl::string_view view() const { return {data(), size()}; }
  zmq_msg_t* raw() { return &msg_; }

 private:
  zmq_msg_t msg_;
};

// Owns a ZeroMQ context; terminates it on destruction (which waits for every
// socket of the context to be closed and for their linger periods).
class ZmqContext {
 public:
  // `io_threads`: ZeroMQ's background I/O threads.
  explicit ZmqContext(int io_threads = 1);
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;

  void* get() const { return context_; }

 private:
  void* const context_;
};

// Owns a socket; closes it on destruction. Move-only.
class ZmqSocket {
 public:
  ZmqSocket() = default;
  ~ZmqSocket() { Close(); }
  ZmqSocket(ZmqSocket&& other) noexcept : socket_(other.socket_) {
    other.socket_ = nullptr;
  }
  ZmqSocket& operator=(ZmqSocket&& other) noexcept;
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;

  // A new socket of `type` (ZMQ_ROUTER, ZMQ_DEALER, ...) with linger 0.
  static absl::StatusOr<ZmqSocket> Open(void* context, int type);

  void* get() const { return socket_; }
  bool valid() const { return socket_ != nullptr; }

  absl::Status SetInt(int option, int value);
  absl::Status Bind(const std::string& endpoint);
  absl::Status Connect(const std::string& endpoint);
  // The socket's ZMQ_FD: readable when the socket may have become readable.
  // For a socket that only receives, it is enough to poll this fd and, each
  // time it fires (and once at the start), receive until EAGAIN; that skips
  // the two system calls zmq_poll spends checking each socket item.
  absl::StatusOr<int> Fd() const;
  // The TCP port a socket bound to tcp://host:0 got. Internal error if none.
  absl::StatusOr<int> BoundPort() const;
  void Close();

 private:
  void* socket_ = nullptr;
};

// absl::Status for the last ZeroMQ error (zmq_errno), prefixed with `what`.
// ETERM -> Cancelled, EAGAIN -> Unavailable, the rest -> Internal.
absl::Status ZmqError(absl::string_view what);

// Sends `frames` as one multipart message, in order. Frames are consumed when
// sent. With ZMQ_DONTWAIT in `flags`, returns Unavailable without sending
// anything (frames untouched) if the socket's high-water mark is reached;
// once the first frame is queued the rest always are.
absl::Status ZmqSendFrames(void* socket, absl::Span<ZmqFrame> frames,
                           int flags);

// What ZmqRecvFrames found.
struct ZmqReceived {
  bool received = false;  // false: nothing waiting (ZMQ_DONTWAIT)
  size_t frames = 0;      // frames in the message, including dropped ones
  size_t bytes = 0;       // bytes in all frames, including dropped ones
};

// Receives one whole multipart message into `frames` (cleared first), keeping
// at most `max_frames` frames and dropping the rest (still counted). With
// ZMQ_DONTWAIT returns received = false when no message is waiting.
absl::StatusOr<ZmqReceived> ZmqRecvFrames(void* socket,
                                          std::vector<ZmqFrame>* frames,
                                          int flags, size_t max_frames);

}  // namespace tessera

#endif  // TESSERA_PS_WIRE_ZMQ_FRAMES_H_

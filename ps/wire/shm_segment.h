#ifndef TESSERA_PS_WIRE_SHM_SEGMENT_H_
#define TESSERA_PS_WIRE_SHM_SEGMENT_H_

// A shared-memory segment between a shard and one client on the same
// machine (proto/tessera/v1/data.proto, SHM_ATTACH): dense pushes and pulls
// then move their values through it instead of through two socket copies.
//
// The shard makes it (Create): a memfd sealed against shrinking and growing,
// so that no process holding it can truncate it under the other side's
// mapping (which would make a read fault with SIGBUS); its first
// kHeaderBytes hold a magic and a random token. The client opens it through
// /proc/<pid>/fd/<fd> (Attach), which works only on the same machine, in the
// same PID namespace, with the permission to read the shard's fds, and
// checks its size, its seals and the token: a stale or reused pid, or a
// file that is not the segment, is refused.
//
// Its contents are the other side's to change at any time: read values out
// of it once (copy, then check), never trust them twice.
//
// Thread-compatible; the mapping lives as long as the object.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

class ShmSegment {
 public:
  // The bytes at the start that hold the magic and token; offsets below it
  // are refused.
  static constexpr int64_t kHeaderBytes = 64;
  // Values start on this boundary.
  static constexpr int64_t kAlignment = 64;

  // A new segment of `bytes` (> kHeaderBytes, at most 1 TiB) with a random
  // token. Memory is used only as pages are touched.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Create(int64_t bytes);

  // Maps another process's segment: /proc/<pid>/fd/<fd>, `bytes` long,
  // sealed, and holding `token`. FailedPrecondition (with what failed) when
  // it cannot be opened or is not that segment.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Attach(int64_t pid,
                                                            int64_t fd,
                                                            int64_t bytes,
                                                            uint64_t token);

  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  uint64_t token() const { return token_; }
  int fd() const { return fd_; }

  // Whether [offset, offset + n) lies in the segment, past its header.
  bool Contains(int64_t offset, int64_t n) const;

 private:
  ShmSegment(int fd, char* data, int64_t bytes, uint64_t token)
      : fd_(fd), data_(data), bytes_(bytes), token_(token) {}

  const int fd_;
  char* const data_;
  const int64_t bytes_;
  const uint64_t token_;
};

// This machine's identity for SHM_ATTACH: the kernel's boot id
// (/proc/sys/kernel/random/boot_id), "" when it cannot be read.
const std::string& ShmHostId();

}  // namespace tessera

#endif  // TESSERA_PS_WIRE_SHM_SEGMENT_H_

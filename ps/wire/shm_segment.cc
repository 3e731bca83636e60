#include "ps/wire/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "ps/common/checked_math.h"

namespace tessera {
namespace {

constexpr char kMagic[8] = {'T', 'S', 'R', 'S', 'H', 'M', '0', '1'};
constexpr int64_t kMaxBytes = int64_t{1} << 40;
constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

absl::Status Errno(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", std::strerror(errno)));
}

uint64_t RandomToken() {
  std::random_device device;
  uint64_t token = 0;
  while (token == 0) {
    token = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  return token;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Create(int64_t bytes) {
  if (bytes <= kHeaderBytes || bytes > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared-memory segment of ", bytes, " bytes: it must be ",
                     kHeaderBytes + 1, " to ", kMaxBytes));
  }
  const int fd = memfd_create("tessera-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno("memfd_create");
  if (ftruncate(fd, bytes) != 0 || fcntl(fd, F_ADD_SEALS, kSeals) != 0) {
    absl::Status error = Errno("sizing and sealing a memfd");
    close(fd);
    return error;
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    absl::Status error = Errno("mmap of a memfd");
    close(fd);
    return error;
  }
  const uint64_t token = RandomToken();
  std::memcpy(data, kMagic, sizeof(kMagic));
  std::memcpy(static_cast<char*>(data) + sizeof(kMagic), &token, sizeof(token));
  return std::unique_ptr<ShmSegment>(
      new ShmSegment(fd, static_cast<char*>(data), bytes, token));
}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Attach(int64_t pid,
                                                               int64_t fd,
                                                               int64_t bytes,
                                                               uint64_t token) {
  if (pid <= 0 || fd < 0 || fd > (1 << 30) || bytes <= kHeaderBytes ||
      bytes > kMaxBytes || token == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no such segment: pid ", pid, ", fd ", fd, ", ", bytes, " bytes"));
  }
  const std::string path = absl::StrCat("/proc/", pid, "/fd/", fd);
  const int own = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (own < 0) return Errno(absl::StrCat("open ", path));
  struct stat st;
  const int seals = fcntl(own, F_GET_SEALS);
  if (fstat(own, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != bytes ||
      seals < 0 || (seals & kSeals) != kSeals) {
    close(own);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a sealed segment of ", bytes, " bytes"));
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
  if (data == MAP_FAILED) {
    absl::Status error = Errno(absl::StrCat("mmap ", path));
    close(own);
    return error;
  }
  uint64_t found = 0;
  std::memcpy(&found, static_cast<char*>(data) + sizeof(kMagic), sizeof(found));
  if (std::memcmp(data, kMagic, sizeof(kMagic)) != 0 || found != token) {
    munmap(data, bytes);
    close(own);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " does not hold the segment's token"));
  }
  return std::unique_ptr<ShmSegment>(
      new ShmSegment(own, static_cast<char*>(data), bytes, token));
}

ShmSegment::~ShmSegment() {
  munmap(data_, bytes_);
  close(fd_);
}

bool ShmSegment::Contains(int64_t offset, int64_t n) const {
  return offset >= kHeaderBytes && RangeWithin(offset, n, 0, bytes_);
}

const std::string& ShmHostId() {
  static const std::string* const id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string line;
    std::getline(in, line);
    return new std::string(absl::StripAsciiWhitespace(line));
  }();
  return *id;
}

}  // namespace tessera

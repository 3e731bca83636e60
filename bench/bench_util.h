#ifndef TESSERA_BENCH_BENCH_UTIL_H_
#define TESSERA_BENCH_BENCH_UTIL_H_

// Small helpers the bench binaries share: a fatal status check, the bytes of
// a directory tree, and a process's memory from /proc. Thread-compatible.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

// Dies with the status when `expr` (an absl::Status) is not OK: a bench has
// no way to go on without what it set up.
#define BENCH_CHECK_OK(expr)                    \
  do {                                          \
    const absl::Status bench_status_ = (expr);  \
    CHECK(bench_status_.ok()) << bench_status_; \
  } while (0)

namespace tessera::bench {

// The sizes of the regular files under `dir`, summed (0 if it is gone).
inline int64_t DirectoryBytes(const std::string& dir) {
  int64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec)) bytes += entry.file_size(ec);
  }
  return bytes;
}

// A line "Key:   123 kB" of /proc/<pid>/status (VmRSS, VmHWM, ...), in bytes;
// -1 if the process or the line is not there.
inline int64_t ProcStatusBytes(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::stoll(line.substr(key.size() + 1)) * 1024;
    }
  }
  return -1;
}

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_BENCH_UTIL_H_

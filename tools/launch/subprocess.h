#ifndef TESSERA_TOOLS_LAUNCH_SUBPROCESS_H_
#define TESSERA_TOOLS_LAUNCH_SUBPROCESS_H_

// A child process whose lifetime is bounded by its owner: the destructor
// kills (SIGKILL, after SIGCONT in case it was stopped) and reaps it. Used by
// `tessera demo` and by the multi-process tests.
//
// Thread-compatible.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tessera {

class Subprocess {
 public:
  // Starts argv (argv[0] = the binary's path) with stdout and stderr appended
  // to `log_path`, and every signal unblocked. With `die_with_parent`, the
  // child gets SIGKILL if the process that started it dies.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      std::vector<std::string> argv, const std::string& log_path,
      bool die_with_parent = true);
  ~Subprocess();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // The whole log so far.
  std::string Log() const;

  // Sends `signal` (SIGTERM, SIGKILL, SIGSTOP, SIGCONT) unless reaped.
  void Signal(int signal);
  // Waits up to `timeout` for the exit; the exit code, or 128 + signal.
  // DeadlineExceeded if it is still running.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool running();

 private:
  Subprocess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  const pid_t pid_;
  const std::string log_path_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

}  // namespace tessera

#endif  // TESSERA_TOOLS_LAUNCH_SUBPROCESS_H_

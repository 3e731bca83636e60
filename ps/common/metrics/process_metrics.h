#ifndef TESSERA_PS_COMMON_METRICS_PROCESS_METRICS_H_
#define TESSERA_PS_COMMON_METRICS_PROCESS_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ps/common/metrics/registry.h"

namespace tessera {
namespace metrics {

// The Tessera version reported by tessera_build_info.
inline constexpr char kTesseraVersion[] = "0.1.0";

// Registers the standard process metrics (the names and help of Prometheus'
// own client libraries), read from /proc/self by a collect hook on every
// Serialize:
//   process_cpu_seconds_total       counter  user + system CPU time
//   process_resident_memory_bytes   gauge
//   process_virtual_memory_bytes    gauge
//   process_open_fds                gauge
//   process_max_fds                 gauge    the soft RLIMIT_NOFILE
//   process_start_time_seconds      gauge    since the Unix epoch
// Linux only. If /proc cannot be read the values stay as they were and a
// warning is logged (once). Calling it again on the same registry does
// nothing. Not to be called concurrently with itself on one registry.
void RegisterProcessMetrics(Registry* registry);

// Registers tessera_build_info{component="<component>",version="0.1.0"} 1,
// e.g. component "ps" or "worker". One series per component.
void RegisterBuildInfo(Registry* registry, const std::string& component);

namespace internal {

// The fields of /proc/<pid>/stat that the process metrics use.
struct ProcStat {
  uint64_t utime_ticks = 0;      // Field 14, in clock ticks.
  uint64_t stime_ticks = 0;      // Field 15.
  uint64_t starttime_ticks = 0;  // Field 22, since boot.
  uint64_t vsize_bytes = 0;      // Field 23.
  int64_t rss_pages = 0;         // Field 24.
};

// Parses the contents of /proc/<pid>/stat. The command name (field 2) may
// hold spaces and parentheses; fields are counted after its last ')'.
// InvalidArgument if a field is missing or not a number.
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents);

// The "btime" (boot time, seconds since the epoch) of /proc/stat contents.
// InvalidArgument if absent.
absl::StatusOr<int64_t> ParseBootTime(absl::string_view contents);

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_PROCESS_METRICS_H_

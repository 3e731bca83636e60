#include "ps/common/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "ps/common/metrics/builder.h"

namespace tessera {
namespace metrics {
namespace internal {

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents) {
  const size_t paren = contents.rfind(')');
  if (paren == absl::string_view::npos) {
    return absl::InvalidArgumentError("/proc stat: no ')' after the command");
  }
  // fields[0] is field 3 (state).
  const std::vector<absl::string_view> fields =
      absl::StrSplit(contents.substr(paren + 1), ' ', absl::SkipWhitespace());
  auto field = [&fields](int number, auto* value) -> absl::Status {
    const int index = number - 3;
    if (index >= static_cast<int>(fields.size()) ||
        !absl::SimpleAtoi(fields[index], value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("/proc stat: field ", number, " missing or invalid"));
    }
    return absl::OkStatus();
  };
  ProcStat stat;
  for (const absl::Status& status :
       {field(14, &stat.utime_ticks), field(15, &stat.stime_ticks),
        field(22, &stat.starttime_ticks), field(23, &stat.vsize_bytes),
        field(24, &stat.rss_pages)}) {
    if (!status.ok()) return status;
  }
  return stat;
}

absl::StatusOr<int64_t> ParseBootTime(absl::string_view contents) {
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    int64_t btime;
    if (absl::SimpleAtoi(line, &btime)) return btime;
  }
  return absl::InvalidArgumentError("/proc/stat: no btime line");
}

}  // namespace internal

namespace {

absl::StatusOr<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::StatusOr<int> CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return absl::UnavailableError("cannot open /proc/self/fd");
  }
  int count = 0;
  while (const struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // Not the descriptor of `dir` itself.
}

// The metrics and what reading them needs; shared by the collect hook.
class ProcessCollector {
 public:
  explicit ProcessCollector(Registry* registry)
      : cpu_seconds_(BuildCounter()
                         .Name("process_cpu_seconds_total")
                         .Help("Total user and system CPU time spent in "
                               "seconds.")
                         .Register(registry)
                         .Add({})),
        resident_bytes_(BuildGauge()
                            .Name("process_resident_memory_bytes")
                            .Help("Resident memory size in bytes.")
                            .Register(registry)
                            .Add({})),
        virtual_bytes_(BuildGauge()
                           .Name("process_virtual_memory_bytes")
                           .Help("Virtual memory size in bytes.")
                           .Register(registry)
                           .Add({})),
        open_fds_(BuildGauge()
                      .Name("process_open_fds")
                      .Help("Number of open file descriptors.")
                      .Register(registry)
                      .Add({})),
        max_fds_(BuildGauge()
                     .Name("process_max_fds")
                     .Help("Maximum number of open file descriptors.")
                     .Register(registry)
                     .Add({})),
        start_time_(BuildGauge()
                        .Name("process_start_time_seconds")
                        .Help("Start time of the process since unix epoch in "
                              "seconds.")
                        .Register(registry)
                        .Add({})),
        ticks_per_second_(static_cast<double>(sysconf(_SC_CLK_TCK))),
        page_size_(static_cast<double>(sysconf(_SC_PAGESIZE))) {}

  void Collect() {
    const absl::Status status = TryCollect();
    if (!status.ok()) {
      LOG_FIRST_N(WARNING, 1) << "process metrics: " << status;
    }
  }

 private:
  absl::Status TryCollect() {
    absl::StatusOr<std::string> stat_file = ReadFile("/proc/self/stat");
    if (!stat_file.ok()) return stat_file.status();
    absl::StatusOr<internal::ProcStat> stat =
        internal::ParseProcStat(*stat_file);
    if (!stat.ok()) return stat.status();

    // A counter only goes up: add what accrued since the last scrape.
    // Under the lock, concurrent scrapes add each tick once.
    const double cpu_seconds =
        (stat->utime_ticks + stat->stime_ticks) / ticks_per_second_;
    {
      absl::MutexLock lock(&mu_);
      if (cpu_seconds > cpu_seconds_reported_) {
        cpu_seconds_.Increment(cpu_seconds - cpu_seconds_reported_);
        cpu_seconds_reported_ = cpu_seconds;
      }
    }
    resident_bytes_.Set(stat->rss_pages * page_size_);
    virtual_bytes_.Set(static_cast<double>(stat->vsize_bytes));

    absl::StatusOr<int> open_fds = CountOpenFds();
    if (!open_fds.ok()) return open_fds.status();
    open_fds_.Set(*open_fds);

    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      max_fds_.Set(limit.rlim_cur == RLIM_INFINITY
                       ? HUGE_VAL
                       : static_cast<double>(limit.rlim_cur));
    }

    // Constant, but cheap; computing it here keeps one error path.
    if (start_time_.Value() == 0) {
      absl::StatusOr<std::string> proc_stat = ReadFile("/proc/stat");
      if (!proc_stat.ok()) return proc_stat.status();
      absl::StatusOr<int64_t> boot_time = internal::ParseBootTime(*proc_stat);
      if (!boot_time.ok()) return boot_time.status();
      start_time_.Set(*boot_time + stat->starttime_ticks / ticks_per_second_);
    }
    return absl::OkStatus();
  }

  Counter& cpu_seconds_;
  Gauge& resident_bytes_;
  Gauge& virtual_bytes_;
  Gauge& open_fds_;
  Gauge& max_fds_;
  Gauge& start_time_;
  const double ticks_per_second_;
  const double page_size_;

  absl::Mutex mu_;
  double cpu_seconds_reported_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

void RegisterProcessMetrics(Registry* registry) {
  CHECK(registry != nullptr);
  if (registry->HasFamily("process_cpu_seconds_total")) return;
  auto collector = std::make_shared<ProcessCollector>(registry);
  registry->AddCollectHook([collector] { collector->Collect(); });
}

void RegisterBuildInfo(Registry* registry, const std::string& component) {
  CHECK(registry != nullptr);
  BuildGauge()
      .Name("tessera_build_info")
      .Help(
          "A metric with a constant '1' value labeled by the component "
          "and version of Tessera.")
      .Register(registry)
      .Add({{"component", component}, {"version", kTesseraVersion}})
      .Set(1);
}

}  // namespace metrics
}  // namespace tessera

// tessera-worker: one stateless trainer. Joins the job on the coordinator
// (shard 0), trains leased partitions against the shards, exits 0 when the job
// is finished. SIGTERM/SIGINT: finish the current step, hand back the lease,
// leave, exit 0.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"
#include "ps/common/allocator.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/metrics/metrics_server.h"
#include "ps/common/metrics/process_metrics.h"
#include "ps/common/protobuf_log.h"
#include "ps/common/usage.h"
#include "worker/trainer.h"

ABSL_FLAG(std::string, coordinator, "",
          "gRPC address of the coordinator (shard 0), e.g. "
          "ps-0.ps.tessera.svc:7000.");
ABSL_FLAG(std::string, shards, "",
          "gRPC addresses of every shard in shard order, comma-separated.");
ABSL_FLAG(std::string, worker_id, "",
          "This worker's name; default: the host name (the pod name).");
ABSL_FLAG(std::string, listen_address, "0.0.0.0",
          "Address of the /metrics endpoint.");
ABSL_FLAG(int, metrics_port, 9101, "HTTP /metrics port; 0 picks one.");
ABSL_FLAG(int, threads, 2, "libtorch intra-op threads.");
ABSL_FLAG(double, call_deadline_s, 10, "Deadline of each remote call.");
ABSL_FLAG(int, verbosity, 0, "glog verbosity (VLOG level).");
ABSL_FLAG(int, debug_nan_every_n_steps, 0,
          "Testing only: every n-th step pushes NaN gradients (the shards "
          "must refuse them). 0 = never.");

namespace {

// The SIGTERM/SIGINT handler writes the signal's number here and the watcher
// thread reads it (0: Run() finished). A handler rather than sigwait():
// threads started before main() -- OpenBLAS's pool, loaded with libtorch --
// have every signal unblocked, and a default-action SIGTERM delivered to one
// of them killed the process (exit 143) instead of stopping it cleanly.
int stop_pipe[2] = {-1, -1};

void OnStopSignal(int signal_number) {
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  // write() is async-signal-safe; a full pipe only drops a repeated signal.
  const ssize_t ignored = write(stop_pipe[1], &byte, 1);
  (void)ignored;
}

}  // namespace

int main(int argc, char** argv) {
  tessera::SetUsage("trains a Tessera job's model on leased partitions.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_v = absl::GetFlag(FLAGS_verbosity);
  google::InitGoogleLogging(argv[0]);
  tessera::RateLimitProtobufLogs();

  if (pipe2(stop_pipe, O_CLOEXEC) != 0) {
    LOG(ERROR) << "pipe2: " << strerror(errno);
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  // Keep freed message buffers instead of returning them to the kernel: page
  // faults on fresh receive buffers dominate the data plane's cost otherwise.
  if (!tessera::KeepFreedMessageMemory()) {
    LOG(WARNING) << "malloc tuning refused";
  }

  tessera::worker::TrainerOptions options;
  options.coordinator = absl::GetFlag(FLAGS_coordinator);
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_shards), ',', absl::SkipEmpty())) {
    options.shards.emplace_back(s);
  }
  if (options.coordinator.empty() && !options.shards.empty()) {
    options.coordinator = options.shards[0];
  }
  if (options.coordinator.empty() || options.shards.empty()) {
    LOG(ERROR) << "--coordinator and --shards are required";
    return 2;
  }
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (options.worker_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.worker_id = host;
  }
  options.threads = absl::GetFlag(FLAGS_threads);
  options.call_deadline = absl::Seconds(absl::GetFlag(FLAGS_call_deadline_s));
  options.debug_nan_every_n_steps =
      absl::GetFlag(FLAGS_debug_nan_every_n_steps);

  tessera::metrics::Registry registry;
  tessera::metrics::RegisterProcessMetrics(&registry);
  tessera::metrics::RegisterBuildInfo(&registry, "worker");
  auto metrics_server = tessera::metrics::MetricsServer::Start(
      absl::StrCat(absl::GetFlag(FLAGS_listen_address), ":",
                   absl::GetFlag(FLAGS_metrics_port)),
      &registry);
  if (!metrics_server.ok()) {
    LOG(ERROR) << metrics_server.status();
    return 1;
  }
  options.registry = &registry;
  LOG(INFO) << "worker " << options.worker_id << ": metrics on port "
            << (*metrics_server)->port() << "; joining " << options.coordinator;

  tessera::worker::Trainer trainer(options);
  std::thread watcher([&] {
    unsigned char signal_number = 0;
    while (read(stop_pipe[0], &signal_number, 1) < 0 && errno == EINTR) {
    }
    if (signal_number == 0) return;  // Run() finished.
    LOG(INFO) << "received " << strsignal(signal_number)
              << ": handing back the lease and leaving";
    trainer.RequestStop();
  });
  absl::Status status = trainer.Run();
  const unsigned char finished = 0;
  const ssize_t ignored = write(stop_pipe[1], &finished, 1);
  (void)ignored;
  watcher.join();
  if (!status.ok()) {
    LOG(ERROR) << "worker " << options.worker_id << " failed: " << status;
    return 1;
  }
  return 0;
}

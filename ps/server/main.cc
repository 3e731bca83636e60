// tessera-ps: one parameter-server shard.
//
// Start-up: metrics endpoint, gRPC server (health NOT_SERVING), load RocksDB,
// then SERVING. SIGTERM/SIGINT: NOT_SERVING, refuse new pushes, finish the
// in-flight ones, final flush, exit 0 (1 if the final flush failed).

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "ps/common/allocator.h"
#include "ps/common/job_config.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/metrics/metrics_server.h"
#include "ps/common/metrics/process_metrics.h"
#include "ps/common/protobuf_log.h"
#include "ps/common/usage.h"
#include "ps/server/coordinator.h"
#include "ps/server/coordinator_service.h"
#include "ps/server/data_plane.h"
#include "ps/server/grpc_rejects.h"
#include "ps/server/ps_service.h"
#include "ps/server/server_options.h"
#include "ps/server/shard.h"
#include "ps/wire/port_file.h"

ABSL_FLAG(std::string, shard_index, "0",
          "This shard's index: a number, or a StatefulSet pod name such as "
          "ps-3 whose trailing ordinal is used.");
ABSL_FLAG(int, num_shards, 1, "Number of shards in the job.");
ABSL_FLAG(std::string, listen_address, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, grpc_port, 7000,
          "gRPC port (ParameterServer, Coordinator on shard 0, health, "
          "reflection); 0 picks a free port.");
ABSL_FLAG(int, data_port, 7001, "ZeroMQ data-plane port; 0 picks one.");
ABSL_FLAG(int, data_threads, 2,
          "Data-plane worker threads that run pushes and pulls (0 = on the "
          "socket thread).");
ABSL_FLAG(int64_t, inline_max_bytes, 64 << 10,
          "Requests moving at most this many payload bytes run on the "
          "data plane's socket thread when their worker thread is idle "
          "(saves two thread hand-overs; larger ones delay other clients' "
          "requests while they run).");
ABSL_FLAG(int64_t, idle_inline_max_bytes, 4 << 20,
          "Dense requests moving at most this many payload bytes also run "
          "on the socket thread when the whole data plane is idle (nothing "
          "queued, nothing else to read, nor for the last 8 such requests): "
          "at depth 1 the hand-over is pure latency.");
ABSL_FLAG(int64_t, shm_segment_bytes, 32 << 20,
          "Bytes of the shared-memory segment each client on this machine "
          "may attach, through which its dense pushes and pulls then move "
          "(no socket copies); 0 = off. Pages cost memory once touched.");
ABSL_FLAG(int, shm_max_segments, 8,
          "Shared-memory segments open at once; one more closes the least "
          "recently used (its client goes back to frames, then attaches "
          "again).");
ABSL_FLAG(int, metrics_port, 9100, "HTTP /metrics port; 0 picks one.");
ABSL_FLAG(std::string, data_dir, "/var/lib/tessera",
          "RocksDB directory of this shard.");
ABSL_FLAG(double, flush_interval_s, 5,
          "Seconds between flushes of changed blocks to RocksDB; a SIGKILL "
          "loses at most this much training.");
ABSL_FLAG(int64_t, split_threshold_bytes, 256 << 10,
          "Dense tensors larger than this are split over all shards. Must be "
          "the same on every shard of a job.");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20,
          "Largest request accepted; larger ones get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_memory_bytes, -1,
          "Parameters plus optimizer state this shard may hold; tensors or "
          "embedding rows beyond it are refused with RESOURCE_EXHAUSTED. "
          "-1: 80% of the machine's memory; 0: no limit.");
ABSL_FLAG(int64_t, max_ids_per_request, 1 << 20,
          "Most embedding row ids one push or pull may name (data plane and "
          "gRPC); more is INVALID_ARGUMENT.");
ABSL_FLAG(int64_t, max_specs_per_request, 100000,
          "Most tensor specs one CreateTensors may carry.");
ABSL_FLAG(std::string, nan_policy, "reject",
          "What to do with a gradient holding NaN/Inf: reject (error to the "
          "sender) or skip (drop it, count it, answer OK with skipped=true).");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound ports here once serving (for supervisors "
          "that start shards on port 0).");
ABSL_FLAG(double, drain_timeout_s, 20,
          "On SIGTERM, how long to wait for in-flight updates.");
ABSL_FLAG(std::string, job_config, "",
          "The training job (protobuf text format). Shard 0 reads it and also "
          "serves tessera.v1.Coordinator; other shards ignore it.");
ABSL_FLAG(int, verbosity, 0, "glog verbosity (VLOG level).");

namespace tessera {
namespace {

// The largest model file shard 0 reads and hands to workers.
constexpr int64_t kMaxModelFileBytes = int64_t{1} << 30;

[[noreturn]] void Die(const absl::Status& status) {
  LOG(ERROR) << status;
  google::FlushLogFiles(google::GLOG_INFO);
  std::exit(1);
}

int Run() {
  // Termination signals are handled by sigwait() below: block them before any
  // thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Received data-plane messages are malloc'd: keep freed blocks for reuse
  // rather than page-faulting fresh ones in (see allocator.h).
  if (!KeepFreedMessageMemory()) LOG(WARNING) << "malloc tuning refused";

  auto index = ParseShardIndex(absl::GetFlag(FLAGS_shard_index));
  if (!index.ok()) Die(index.status());
  ShardOptions options;
  options.shard_index = *index;
  options.placement.set_num_shards(absl::GetFlag(FLAGS_num_shards));
  options.placement.set_split_threshold_bytes(
      absl::GetFlag(FLAGS_split_threshold_bytes));
  absl::Status placement_ok = ValidatePlacementConfig(options.placement);
  if (!placement_ok.ok()) Die(placement_ok);
  if (options.shard_index >= options.placement.num_shards()) {
    Die(absl::InvalidArgumentError(absl::StrCat(
        "--shard_index=", options.shard_index,
        " is not below --num_shards=", options.placement.num_shards())));
  }
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.flush_interval = absl::Seconds(absl::GetFlag(FLAGS_flush_interval_s));
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_memory_bytes = absl::GetFlag(FLAGS_max_memory_bytes);
  options.max_ids_per_request = absl::GetFlag(FLAGS_max_ids_per_request);
  options.max_specs_per_request = absl::GetFlag(FLAGS_max_specs_per_request);
  if (options.max_message_bytes <= 0 || options.max_ids_per_request <= 0 ||
      options.max_specs_per_request <= 0) {
    Die(absl::InvalidArgumentError(
        "--max_message_bytes, --max_ids_per_request and "
        "--max_specs_per_request must be positive"));
  }
  if (options.max_memory_bytes < 0) {
    options.max_memory_bytes = static_cast<int64_t>(
        0.8 * sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE));
  }
  const std::string nan_policy = absl::GetFlag(FLAGS_nan_policy);
  if (nan_policy == "skip") {
    options.non_finite = NonFinitePolicy::kSkip;
  } else if (nan_policy != "reject") {
    Die(absl::InvalidArgumentError(
        absl::StrCat("--nan_policy=", nan_policy, " must be reject or skip")));
  }
  const std::string host = absl::GetFlag(FLAGS_listen_address);

  metrics::Registry registry;
  metrics::RegisterProcessMetrics(&registry);
  metrics::RegisterBuildInfo(&registry, "ps");
  auto metrics_server = metrics::MetricsServer::Start(
      absl::StrCat(host, ":", absl::GetFlag(FLAGS_metrics_port)), &registry);
  if (!metrics_server.ok()) Die(metrics_server.status());
  options.metrics_port = (*metrics_server)->port();

  // The job is read before anything listens: a bad config fails fast.
  std::optional<v1::JobConfig> job;
  std::optional<std::string> model_file;
  if (!absl::GetFlag(FLAGS_job_config).empty() && options.shard_index != 0) {
    // Every pod of a StatefulSet gets the same flags; only shard 0 reads it.
    LOG(INFO) << "shard " << options.shard_index
              << ": ignoring --job_config (the coordinator runs on shard 0)";
  } else if (!absl::GetFlag(FLAGS_job_config).empty()) {
    auto loaded_job = LoadJobConfig(absl::GetFlag(FLAGS_job_config));
    if (!loaded_job.ok()) Die(loaded_job.status());
    job = *std::move(loaded_job);
    // The model file travels with the job: read it now, so a missing or
    // unreadable one stops shard 0 before anything listens.
    const std::string model_path =
        ModelFilePath(*job, absl::GetFlag(FLAGS_job_config));
    if (!model_path.empty()) {
      auto contents = ReadFileCapped(model_path, kMaxModelFileBytes);
      if (!contents.ok()) {
        Die(absl::Status(contents.status().code(),
                         absl::StrCat("model.torchscript of job ", job->name(),
                                      ": ", contents.status().message())));
      }
      LOG(INFO) << "shard 0: model file " << model_path << ", "
                << contents->size() << " bytes";
      model_file = *std::move(contents);
    }
  }

  // The data port is bound now, so GetShardInfo reports it even with
  // --data_port=0; requests are read only once the shard has loaded.
  DataPlaneOptions data_options;
  data_options.host = host;
  data_options.port = absl::GetFlag(FLAGS_data_port);
  data_options.threads = absl::GetFlag(FLAGS_data_threads);
  data_options.inline_max_bytes = absl::GetFlag(FLAGS_inline_max_bytes);
  data_options.idle_inline_max_bytes =
      absl::GetFlag(FLAGS_idle_inline_max_bytes);
  data_options.shm.segment_bytes = absl::GetFlag(FLAGS_shm_segment_bytes);
  data_options.shm.max_segments = absl::GetFlag(FLAGS_shm_max_segments);
  if (data_options.shm.segment_bytes < 0 ||
      (data_options.shm.segment_bytes > 0 &&
       data_options.shm.segment_bytes < (1 << 20)) ||
      data_options.shm.max_segments < 1) {
    Die(absl::InvalidArgumentError(absl::StrCat(
        "--shm_segment_bytes must be 0 (off) or at least 1 MiB, and "
        "--shm_max_segments at least 1; got ",
        data_options.shm.segment_bytes, " and ",
        data_options.shm.max_segments)));
  }
  data_options.max_message_bytes = options.max_message_bytes;
  auto data_plane = DataPlane::Bind(data_options);
  if (!data_plane.ok()) Die(data_plane.status());
  options.data_port = (*data_plane)->port();

  Shard shard(options, &registry);
  ParameterServerService ps_service(&shard);
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<CoordinatorService> coordinator_service;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  const std::string grpc_address =
      absl::StrCat(host, ":", absl::GetFlag(FLAGS_grpc_port));
  builder.AddListeningPort(grpc_address, grpc::InsecureServerCredentials(),
                           &grpc_port);
  builder.RegisterService(&ps_service);
  if (job.has_value()) {
    // Registered now, answering UNAVAILABLE until the shard has loaded.
    coordinator_service = std::make_unique<CoordinatorService>(nullptr, &shard);
    builder.RegisterService(coordinator_service.get());
  }
  // Oversize pushes reach the handler, which rejects and counts them.
  const int64_t max_grpc =
      std::min<int64_t>(options.max_message_bytes * 2 + (1 << 20), INT32_MAX);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_grpc));
  builder.SetMaxSendMessageSize(64 << 20);
  // Requests gRPC refuses before a handler runs are counted too.
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(NewRejectCountingInterceptorFactory(&shard));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    Die(absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", grpc_address)));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  LOG(INFO) << "shard " << options.shard_index << " of "
            << options.placement.num_shards() << ": gRPC on port " << grpc_port
            << ", data on port " << options.data_port << ", metrics on port "
            << options.metrics_port << "; NOT_SERVING until "
            << options.data_dir << " is loaded";

  absl::Status loaded = shard.Load();
  if (!loaded.ok()) Die(loaded);
  if (job.has_value()) {
    coordinator =
        std::make_unique<Coordinator>(*job, shard.storage(), &registry);
    absl::Status resumed = coordinator->Load();
    if (!resumed.ok()) Die(resumed);
    if (model_file.has_value()) {
      coordinator->SetModelFile(*std::move(model_file));
    }
    coordinator->StartReaper(absl::Milliseconds(500));
    coordinator_service->set_coordinator(coordinator.get());
    LOG(INFO) << "shard 0: coordinating job " << job->name() << " ("
              << job->epochs() << " epochs of " << job->partitions_per_epoch()
              << " partitions)";
  }
  (*data_plane)->Start(&shard);
  health->SetServingStatus(true);
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    absl::Status written = WritePortFile(
        absl::GetFlag(FLAGS_port_file),
        ServerPorts{grpc_port, options.data_port, options.metrics_port});
    if (!written.ok()) Die(written);
  }
  LOG(INFO) << "shard " << options.shard_index << ": SERVING";

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LOG(INFO) << "shard " << options.shard_index << ": received "
            << strsignal(signal_number)
            << "; NOT_SERVING, refusing new pushes, draining";
  health->Shutdown();
  absl::Status flushed =
      shard.Drain(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)));
  // After the drain: pushes that arrived meanwhile were answered UNAVAILABLE;
  // requests still unread are dropped unanswered, and clients resend them.
  (*data_plane)->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!flushed.ok()) {
    LOG(ERROR) << "final flush failed; updates since the last flush are lost: "
               << flushed;
    return 1;
  }
  LOG(INFO) << "shard " << options.shard_index << ": final flush done; exiting";
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::SetUsage("one shard of the Tessera parameter server.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_v = absl::GetFlag(FLAGS_verbosity);
  google::InitGoogleLogging(argv[0]);
  tessera::RateLimitProtobufLogs();
  return tessera::Run();
}

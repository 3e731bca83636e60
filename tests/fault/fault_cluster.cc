#include "tests/fault/fault_cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ps/client/channel.h"
#include "ps/client/model_pull.h"
#include "ps/store/shard_storage.h"
#include "ps/store/tensor_store.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tools/cli_status.h"
#include "tools/launch/launcher.h"
#include "worker/data/dataset.h"
#include "worker/data/fashion_mnist.h"
#include "worker/evaluation.h"
#include "worker/model/model.h"

namespace tessera::fault {
namespace {

constexpr absl::Duration kPoll = absl::Milliseconds(50);
constexpr char kDatasetDir[] = "/usr/share/datasets/fashion-mnist";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void AppendLine(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
}

std::unique_ptr<v1::ParameterServer::Stub> Stub(const std::string& address) {
  return v1::ParameterServer::NewStub(NewChannel(address));
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

}  // namespace

std::string BinaryPath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return workspace_relative;
  return absl::StrCat(srcdir, "/tessera/", workspace_relative);
}

int64_t ShardSnapshot::total_version() const {
  int64_t sum = 0;
  for (const auto& [name, v] : versions) sum += v;
  return sum;
}

absl::StatusOr<std::unique_ptr<FaultCluster>> FaultCluster::Start(
    ClusterOptions options, const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  std::unique_ptr<FaultCluster> c(new FaultCluster(std::move(options), dir));
  const JobOptions& job = c->options_.job;
  c->job_path_ = dir + "/job.pbtxt";
  {
    std::ofstream out(c->job_path_);
    out << "name: \"" << job.name << "\"\n"
        << "model { name: \"mlp\" seed: " << job.seed;
    for (int h : job.hidden) out << " hidden: " << h;
    out << " }\n"
        << "dataset { format: FASHION_MNIST path: \"" << kDatasetDir
        << "\" limit: " << job.limit << " }\n"
        << "batch_size: " << job.batch_size << "\n"
        << "epochs: " << job.epochs << "\n"
        << "partitions_per_epoch: " << job.partitions << "\n"
        << "consistency { mode: " << job.consistency
        << " staleness: " << job.staleness << " }\n"
        << "optimizer { " << job.optimizer << " }\n"
        << "flush_interval_s: " << c->options_.flush_interval_s << "\n"
        << "lease_timeout_s: " << job.lease_timeout_s << "\n";
  }
  // Unique per cluster: /proc scans find this cluster's workers by it.
  c->worker_prefix_ = absl::StrCat(
      "ft", getpid(), "-", std::filesystem::path(dir).filename().string(), "-");
  for (int i = 0; i < c->options_.num_shards; ++i) {
    ShardSlot slot;
    auto host = c->options_.shard_hosts.find(i);
    slot.host =
        host == c->options_.shard_hosts.end() ? "127.0.0.1" : host->second;
    for (int* port : {&slot.grpc_port, &slot.data_port, &slot.metrics_port}) {
      auto picked = launch::PickFreePort();
      if (!picked.ok()) return picked.status();
      *port = *picked;
    }
    auto data_dir = c->options_.shard_data_dirs.find(i);
    slot.data_dir = data_dir == c->options_.shard_data_dirs.end()
                        ? absl::StrCat(dir, "/ps-", i)
                        : data_dir->second;
    slot.log = absl::StrCat(dir, "/ps-", i, ".log");
    c->shards_.push_back(std::move(slot));
  }
  for (int i = 0; i < c->options_.num_shards; ++i) {
    absl::Status started = c->StartShard(i);
    if (!started.ok()) return started;
  }
  return c;
}

FaultCluster::~FaultCluster() {
  // Workers first, so that they do not log retries against dead shards.
  for (auto& w : workers_) w.child.reset();
  for (auto& s : shards_) s.child.reset();
}

std::string FaultCluster::grpc_address(int shard) const {
  const ShardSlot& s = shards_.at(shard);
  return absl::StrCat(s.host, ":", s.grpc_port);
}

std::string FaultCluster::data_address(int shard) const {
  const ShardSlot& s = shards_.at(shard);
  return absl::StrCat(s.host, ":", s.data_port);
}

std::vector<std::string> FaultCluster::grpc_addresses() const {
  std::vector<std::string> out;
  for (int i = 0; i < num_shards(); ++i) out.push_back(grpc_address(i));
  return out;
}

absl::Status FaultCluster::StartShard(int i, absl::Duration timeout) {
  ShardSlot& s = shards_.at(i);
  if (s.child != nullptr && s.child->running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", i, " is still running"));
  }
  s.child.reset();
  launch::ShardCommand command;
  auto wrapper = options_.shard_wrappers.find(i);
  if (wrapper != options_.shard_wrappers.end())
    command.wrapper = wrapper->second;
  command.binary = BinaryPath("ps/server/tessera-ps");
  command.shard_index = i;
  command.num_shards = num_shards();
  command.host = s.host;
  command.grpc_port = s.grpc_port;
  command.data_port = s.data_port;
  command.metrics_port = s.metrics_port;
  command.data_dir = s.data_dir;
  command.port_file = absl::StrCat(dir_, "/ps-", i, ".ports");
  if (i == 0) command.job_config = job_path_;
  command.extra_flags = {
      absl::StrCat("--flush_interval_s=", options_.flush_interval_s),
      absl::StrCat("--split_threshold_bytes=", options_.split_threshold_bytes)};
  for (const auto& f : options_.shard_flags) command.extra_flags.push_back(f);
  auto extra = options_.shard_extra_flags.find(i);
  if (extra != options_.shard_extra_flags.end()) {
    for (const auto& f : extra->second) command.extra_flags.push_back(f);
  }
  ++s.starts;
  AppendLine(s.log,
             absl::StrCat("==== fault suite: start #", s.starts, " of shard ",
                          i, " at ", absl::FormatTime(absl::Now()), " ===="));
  auto started = launch::StartShard(command, s.log, timeout);
  if (!started.ok()) return started.status();
  s.child = std::move(started->child);
  return absl::OkStatus();
}

void FaultCluster::SignalShard(int i, int signal) {
  if (shards_.at(i).child != nullptr) shards_[i].child->Signal(signal);
}

absl::StatusOr<int> FaultCluster::WaitShard(int i, absl::Duration timeout) {
  if (shards_.at(i).child == nullptr) {
    return absl::FailedPreconditionError("shard never started");
  }
  return shards_[i].child->Wait(timeout);
}

bool FaultCluster::ShardRunning(int i) {
  return shards_.at(i).child != nullptr && shards_[i].child->running();
}

std::string FaultCluster::ShardLog(int i) const {
  return ReadFile(shards_.at(i).log);
}

int FaultCluster::shard_pid(int i) const {
  return shards_.at(i).child == nullptr ? -1 : shards_[i].child->pid();
}

FaultCluster::WorkerSlot* FaultCluster::FindWorker(const std::string& name) {
  for (auto& w : workers_) {
    if (w.id == worker_prefix_ + name) return &w;
  }
  return nullptr;
}

const FaultCluster::WorkerSlot* FaultCluster::FindWorker(
    const std::string& name) const {
  for (const auto& w : workers_) {
    if (w.id == worker_prefix_ + name) return &w;
  }
  return nullptr;
}

absl::Status FaultCluster::StartWorker(const std::string& name,
                                       std::vector<std::string> extra_flags) {
  if (FindWorker(name) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("worker ", name));
  }
  WorkerSlot w;
  w.id = worker_prefix_ + name;
  auto port = launch::PickFreePort();
  if (!port.ok()) return port.status();
  w.metrics_port = *port;
  w.log = absl::StrCat(dir_, "/worker-", name, ".log");
  launch::WorkerCommand command;
  command.binary = BinaryPath("worker/tessera-worker");
  command.worker_id = w.id;
  command.shards = grpc_addresses();
  command.metrics_port = w.metrics_port;
  command.extra_flags = {"--threads=1", absl::StrCat("--call_deadline_s=",
                                                     options_.call_deadline_s)};
  for (auto& f : extra_flags) command.extra_flags.push_back(std::move(f));
  auto child = launch::StartWorker(command, w.log);
  if (!child.ok()) return child.status();
  w.child = *std::move(child);
  workers_.push_back(std::move(w));
  return absl::OkStatus();
}

void FaultCluster::SignalWorker(const std::string& name, int signal) {
  WorkerSlot* w = FindWorker(name);
  if (w != nullptr) w->child->Signal(signal);
}

absl::StatusOr<int> FaultCluster::WaitWorker(const std::string& name,
                                             absl::Duration timeout) {
  WorkerSlot* w = FindWorker(name);
  if (w == nullptr) return absl::NotFoundError(absl::StrCat("worker ", name));
  return w->child->Wait(timeout);
}

bool FaultCluster::WorkerRunning(const std::string& name) {
  WorkerSlot* w = FindWorker(name);
  return w != nullptr && w->child->running();
}

std::vector<std::string> FaultCluster::RunningWorkers() {
  std::vector<std::string> out;
  for (auto& w : workers_) {
    if (w.child->running()) out.push_back(w.id.substr(worker_prefix_.size()));
  }
  return out;
}

std::vector<std::string> FaultCluster::AllWorkers() const {
  std::vector<std::string> out;
  for (const auto& w : workers_) {
    out.push_back(w.id.substr(worker_prefix_.size()));
  }
  return out;
}

std::string FaultCluster::WorkerLog(const std::string& name) const {
  const WorkerSlot* w = FindWorker(name);
  return w == nullptr ? "" : ReadFile(w->log);
}

int FaultCluster::worker_metrics_port(const std::string& name) const {
  const WorkerSlot* w = FindWorker(name);
  return w == nullptr ? 0 : w->metrics_port;
}

absl::StatusOr<v1::JobStatus> FaultCluster::Status(absl::Duration timeout) {
  return FetchJobStatus(grpc_address(0), timeout);
}

double FaultCluster::Progress(const v1::JobStatus& status) {
  if (status.finished()) return 1;
  const int total = status.partitions_done() + status.partitions_leased() +
                    status.partitions_queued();
  if (total == 0 || status.epochs() == 0) return 0;
  return (status.epoch() +
          static_cast<double>(status.partitions_done()) / total) /
         status.epochs();
}

absl::StatusOr<v1::JobStatus> FaultCluster::WaitForStatus(
    const std::function<bool(const v1::JobStatus&)>& done,
    absl::Duration timeout, const std::string& what) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("no answer yet");
  v1::JobStatus status;
  while (true) {
    auto fetched = Status(absl::Seconds(2));
    if (fetched.ok()) {
      status = *fetched;
      if (done(status)) return status;
      if (status.finished()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the job finished before ", what));
      }
      last = absl::OkStatus();
    } else {
      last = fetched.status();
    }
    if (!workers_.empty() && RunningWorkers().empty()) {
      // One more look: the job may have finished as the last worker left.
      auto final_status = Status(absl::Seconds(2));
      if (final_status.ok() && done(*final_status)) return *final_status;
      std::string logs;
      for (const auto& w : workers_) {
        absl::StrAppend(&logs, "\n--- ", w.id, ":\n",
                        launch::Tail(ReadFile(w.log), 1500));
      }
      return absl::AbortedError(absl::StrCat("every worker exited before ",
                                             what, "; worker logs:", logs));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no ", what, " within ", absl::FormatDuration(timeout), " (progress ",
          Progress(status), ", last status error: ", last.ToString(), ")"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::StatusOr<v1::JobStatus> FaultCluster::WaitForProgress(
    double fraction, absl::Duration timeout) {
  return WaitForStatus(
      [fraction](const v1::JobStatus& s) { return Progress(s) >= fraction; },
      timeout, absl::StrCat(static_cast<int>(100 * fraction), "% of the job"));
}

absl::StatusOr<v1::JobStatus> FaultCluster::WaitForJob(absl::Duration timeout) {
  return WaitForStatus([](const v1::JobStatus& s) { return s.finished(); },
                       timeout, "the end of the job");
}

absl::StatusOr<std::map<std::string, int64_t>> FaultCluster::PartVersions(
    int shard) {
  auto stub = Stub(grpc_address(shard));
  v1::ListTensorsResponse response;
  grpc::Status s =
      stub->ListTensors(Context(absl::Seconds(3)).get(), {}, &response);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("ListTensors on shard ", shard, ": ", s.error_message()));
  }
  std::map<std::string, int64_t> out;
  for (const auto& part : response.parts()) {
    out[part.spec().name()] = part.version();
  }
  return out;
}

absl::StatusOr<ShardSnapshot> FaultCluster::PullShard(
    int shard, const std::function<bool(const std::string&)>& only) {
  auto stub = Stub(grpc_address(shard));
  ShardSnapshot snapshot;
  // A table's rows stream in storage order, which a restore may change:
  // they are kept by id (each row's values, then its id).
  std::map<std::string, std::map<uint64_t, std::string>> rows;
  auto read = [&](grpc::ClientReader<v1::TensorChunk>* reader,
                  const std::string& what) -> absl::Status {
    v1::TensorChunk chunk;
    std::string current;
    while (reader->Read(&chunk)) {
      if (chunk.has_spec()) current = chunk.spec().name();
      std::string& bytes = snapshot.bytes[current];
      if (chunk.row_ids_size() == 0) {
        bytes += chunk.values();
      } else {
        const size_t row_bytes = chunk.values().size() / chunk.row_ids_size();
        for (int i = 0; i < chunk.row_ids_size(); ++i) {
          rows[current][chunk.row_ids(i)] =
              chunk.values().substr(i * row_bytes, row_bytes);
        }
      }
      snapshot.versions[current] = chunk.version();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat(what, " on shard ", shard, ": ", s.error_message()));
    }
    return absl::OkStatus();
  };
  if (!only) {
    auto context = Context(absl::Seconds(20));
    auto reader = stub->PullModel(context.get(), v1::PullModelRequest());
    absl::Status s = read(reader.get(), "PullModel");
    if (!s.ok()) return s;
  } else {
    auto parts = PartVersions(shard);
    if (!parts.ok()) return parts.status();
    for (const auto& [name, version] : *parts) {
      if (!only(name)) continue;
      auto context = Context(absl::Seconds(20));
      v1::PullTensorRequest request;
      request.set_tensor_name(name);
      auto reader = stub->PullTensor(context.get(), request);
      absl::Status s = read(reader.get(), "PullTensor " + name);
      if (!s.ok()) return s;
    }
  }
  for (const auto& [name, by_id] : rows) {
    std::string& bytes = snapshot.bytes[name];
    for (const auto& [id, row] : by_id) {
      bytes += row;
      bytes.append(reinterpret_cast<const char*>(&id), sizeof(id));
    }
    snapshot.rows[name] = by_id.size();
  }
  return snapshot;
}

absl::StatusOr<std::map<std::string, int64_t>> FaultCluster::StoredVersions(
    int shard) {
  if (ShardRunning(shard)) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", shard, " is running"));
  }
  // The placement the shards were started with.
  StoreOptions options;
  options.shard_index = shard;
  options.placement.set_num_shards(num_shards());
  options.placement.set_split_threshold_bytes(options_.split_threshold_bytes);
  // Read a copy: opening replays (and may flush) RocksDB's log, which is the
  // restarted shard's job.
  const std::string copy = absl::StrCat(dir_, "/stored-copy-", shard);
  std::error_code ec;
  std::filesystem::remove_all(copy, ec);
  std::filesystem::copy(shards_.at(shard).data_dir, copy,
                        std::filesystem::copy_options::recursive, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("copying ", shards_[shard].data_dir, ": ", ec.message()));
  }
  std::map<std::string, int64_t> out;
  {
    auto storage = ShardStorage::Open(copy, shard, options.placement);
    if (!storage.ok()) return storage.status();
    TensorStore store(options);
    auto loaded = (*storage)->LoadInto(&store);
    if (!loaded.ok()) return loaded.status();
    for (const auto& part : store.List()) {
      out[part.spec().name()] = part.version();
    }
  }
  std::filesystem::remove_all(copy, ec);
  return out;
}

absl::StatusOr<int64_t> FaultCluster::LastFlushMs(int shard) {
  auto stub = Stub(grpc_address(shard));
  v1::ShardInfo info;
  grpc::Status s =
      stub->GetShardInfo(Context(absl::Seconds(3)).get(), {}, &info);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("GetShardInfo on shard ", shard, ": ", s.error_message()));
  }
  return info.last_flush_unix_ms();
}

absl::Status FaultCluster::WaitForFlushAfter(int shard, absl::Time after,
                                             absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  const int64_t after_ms = absl::ToUnixMillis(after);
  while (true) {
    auto last = LastFlushMs(shard);
    if (last.ok() && *last > after_ms) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("shard ", shard, " completed no flush within ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPoll);
  }
}

absl::StatusOr<MetricsText> FaultCluster::ShardMetrics(int shard) {
  const ShardSlot& s = shards_.at(shard);
  auto body = HttpGet(s.host, s.metrics_port, "/metrics");
  if (!body.ok()) return body.status();
  return MetricsText::Parse(*body);
}

absl::StatusOr<MetricsText> FaultCluster::WorkerMetrics(
    const std::string& name) {
  const int port = worker_metrics_port(name);
  if (port == 0) return absl::NotFoundError(absl::StrCat("worker ", name));
  auto body = HttpGet("127.0.0.1", port, "/metrics");
  if (!body.ok()) return body.status();
  return MetricsText::Parse(*body);
}

absl::StatusOr<double> FaultCluster::TestAccuracy() {
  auto tensors = PullModel(grpc_addresses(), absl::Seconds(60));
  if (!tensors.ok()) return tensors.status();
  worker::ModelOptions model_options;
  model_options.name = "mlp";
  model_options.hidden_sizes.assign(options_.job.hidden.begin(),
                                    options_.job.hidden.end());
  model_options.seed = options_.job.seed;
  model_options.num_threads = 2;
  auto model = worker::Model::Create(model_options);
  if (!model.ok()) return model.status();
  std::set<std::string> parameters;
  for (const worker::TensorInfo& p : (*model)->Parameters()) {
    parameters.insert(p.name);
  }
  for (const PulledTensor& t : *tensors) {
    if (parameters.count(t.name) == 0) continue;  // A test's own table.
    absl::Status loaded = (*model)->LoadDense(t.name, t.values);
    if (!loaded.ok()) return loaded;
  }
  auto test =
      worker::OpenFashionMnist(kDatasetDir, worker::FashionMnistSplit::kTest);
  if (!test.ok()) return test.status();
  auto eval = worker::EvaluateDataset(**model, **test);
  if (!eval.ok()) return eval.status();
  if (eval->num_examples == 0) return absl::InternalError("empty test set");
  return 100.0 * eval->num_correct / eval->num_examples;
}

absl::Status FaultCluster::Shutdown(absl::Duration timeout) {
  std::vector<std::string> problems;
  for (auto& w : workers_) {
    if (!w.child->running()) continue;
    w.child->Signal(SIGTERM);
  }
  for (auto& w : workers_) {
    auto code = w.child->Wait(timeout);
    if (!code.ok()) {
      problems.push_back(absl::StrCat("worker ", w.id, " did not exit within ",
                                      absl::FormatDuration(timeout),
                                      " of SIGTERM"));
    }
  }
  for (int i = 0; i < num_shards(); ++i) {
    if (!ShardRunning(i)) continue;
    SignalShard(i, SIGTERM);
  }
  for (int i = 0; i < num_shards(); ++i) {
    if (shards_[i].child == nullptr) continue;
    auto code = shards_[i].child->Wait(timeout);
    if (!code.ok()) {
      problems.push_back(absl::StrCat("shard ", i, " did not exit within ",
                                      absl::FormatDuration(timeout),
                                      " of SIGTERM"));
    } else if (*code != 0) {
      problems.push_back(absl::StrCat("shard ", i, " exited with ", *code,
                                      " after SIGTERM; log:\n",
                                      launch::Tail(ShardLog(i), 1500)));
    }
  }
  // Anything left is killed and reaped by the destructors.
  for (auto& w : workers_) w.child.reset();
  for (auto& s : shards_) s.child.reset();
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(problems, "; "));
}

std::vector<std::string> FaultCluster::ProcessesLeft() const {
  std::vector<std::string> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  const pid_t self = getpid();
  while (dirent* entry = readdir(proc)) {
    const int pid = atoi(entry->d_name);
    if (pid <= 0 || pid == self) continue;
    std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (cmdline.empty()) continue;  // Gone, or a zombie.
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    bool ours = cmdline.find(worker_prefix_) != std::string::npos;
    for (const auto& s : shards_) {
      ours = ours || cmdline.find("--data_dir=" + s.data_dir + " ") !=
                         std::string::npos;
    }
    if (ours) out.push_back(absl::StrCat(pid, " ", cmdline));
  }
  closedir(proc);
  return out;
}

std::vector<std::string> CheckJobInvariants(const v1::JobStatus& status,
                                            const JobOptions& job) {
  std::vector<std::string> problems;
  if (!status.finished()) problems.push_back("the job did not finish");
  if (status.epoch_stats_size() != job.epochs) {
    problems.push_back(absl::StrCat("epoch_stats has ",
                                    status.epoch_stats_size(),
                                    " epochs, the job ", job.epochs));
  }
  for (const auto& e : status.epoch_stats()) {
    if (e.samples() != job.limit) {
      problems.push_back(absl::StrCat("epoch ", e.epoch(), " counted ",
                                      e.samples(), " samples, not ", job.limit,
                                      " (a partition completed twice or "
                                      "never)"));
    }
    if (e.partitions_done() != job.partitions) {
      problems.push_back(absl::StrCat("epoch ", e.epoch(), " counted ",
                                      e.partitions_done(), " completions, not ",
                                      job.partitions));
    }
    if (e.finished_unix_ms() == 0) {
      problems.push_back(absl::StrCat("epoch ", e.epoch(), " not finished"));
    }
  }
  return problems;
}

absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("bad host ", host));
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", host, ":", port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host,
                   "\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("short write");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("no HTTP response from ", host, ":", port));
  }
  return response.substr(body + 4);
}

bool LogHasLine(const std::string& log, const std::vector<std::string>& parts) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    bool all = true;
    for (const auto& p : parts) all = all && absl::StrContains(line, p);
    if (all) return true;
  }
  return false;
}

absl::StatusOr<int> RunCommand(std::vector<std::string> argv,
                               const std::string& log_path,
                               absl::Duration timeout) {
  AppendLine(log_path, "$ " + absl::StrJoin(argv, " "));
  auto child = Subprocess::Start(std::move(argv), log_path);
  if (!child.ok()) return child.status();
  return (*child)->Wait(timeout);  // Killed and reaped on timeout.
}

}  // namespace tessera::fault

// data_plane_bench: how close Tessera's ZeroMQ data plane comes to the wire.
//
//   bazel run -c opt //bench:data_plane_bench            # ~1.5 minutes
//   bazel run -c opt //bench:data_plane_bench -- --quick # ~15 s
//
// Everything runs in this one process on 127.0.0.1 TCP: the shards are real
// Shard + DataPlane + gRPC ParameterServerService objects (each with its own
// ZeroMQ context and RocksDB directory under $TMPDIR), the clients are real
// PsClients (each with its own context and I/O thread). For each message
// size it measures, round-robin over --rounds rounds so that load from
// elsewhere on the machine disturbs all of them alike,
//   - raw ZeroMQ PUSH -> PULL with zero-copy sends, with a short (2) and a
//     long send queue: the better of the two is the ceiling;
//   - Tessera push (SGD applied on the shard) and pull, 1 shard x 1 client
//     and 2 shards x 2 clients (each request split over both shards), with 1
//     and --depth requests in flight per client;
//   - the same transfers over gRPC PushGradient / PullTensor (1 shard);
//   - between two processes (--two_process, the default): raw ZeroMQ to a
//     receiver child (this binary run with --raw_peer), and Tessera push and
//     pull at depths 1 and 4 against a real tessera-ps child (1 shard, 1
//     client). Their "of raw" is against the two-process ceiling of the
//     same round, and the goals of the first goal block are taken on them.
//     Beside them, raw request/reply ("raw rr 2p": one message, wait for an
//     8-byte answer, the next) to the same child: the most a depth-1 cell
//     can reach on this machine, which the depth-1 goal lines also print;
//     ZeroMQ's own per-message cost on each side does not overlap there.
// and prints GB/s, ops/s, p50/p99 latency, GB/s as a ratio of the raw
// ceiling of the same round, and the process's CPU time per MiB moved (the
// figure that bounds throughput once both cores are busy, and the one that
// other load on the machine disturbs least). Payload bytes only (floats).
// Like tessera-ps, it first calls KeepFreedMessageMemory() (allocator.h);
// --tune_malloc=false shows glibc's defaults.

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/marshalling.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "ps/client/ps_client.h"
#include "ps/common/allocator.h"
#include "ps/common/metrics/metrics.h"
#include "ps/server/data_plane.h"
#include "ps/server/ps_service.h"
#include "ps/server/shard.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tests/cluster.h"
#include "tools/launch/subprocess.h"

ABSL_FLAG(bool, quick, false,
          "Short cells (0.25 s) and fewer of them: a smoke run.");
ABSL_FLAG(double, seconds, 0.4, "Measuring time per cell and round.");
ABSL_FLAG(int, rounds, 3,
          "Rounds: every configuration of a size is measured once per round, "
          "round-robin; the table shows medians.");
ABSL_FLAG(bool, tune_malloc, true,
          "Call KeepFreedMessageMemory() first, as tessera-ps does.");
ABSL_FLAG(int, depth, 8,
          "Requests in flight per client in the 'several in flight' cells "
          "(halved at 1 MiB, quartered at 16 MiB).");
ABSL_FLAG(int, data_threads, 2, "Data-plane worker threads per shard.");
ABSL_FLAG(int64_t, inline_max_bytes, 64 << 10,
          "DataPlaneOptions::inline_max_bytes of the shards.");
ABSL_FLAG(int64_t, idle_inline_max_bytes,
          tessera::DataPlaneOptions().idle_inline_max_bytes,
          "DataPlaneOptions::idle_inline_max_bytes of the shards.");
ABSL_FLAG(bool, grpc, true, "Also measure the gRPC path.");
ABSL_FLAG(bool, raw, true,
          "Measure the raw ZeroMQ ceiling (for profiling "
          "the rest alone, --noraw).");
ABSL_FLAG(std::vector<std::string>, sizes, {},
          "Message sizes in KiB (default 4,64,1024,16384).");
ABSL_FLAG(std::vector<std::string>, depths, {},
          "Only these depths of Tessera cells (1 and the size's deep one by "
          "default), e.g. --depths=1 for a profile.");
ABSL_FLAG(std::vector<std::string>, topologies, {},
          "Only these topologies of Tessera cells (1x1, 2x2; default both).");
ABSL_FLAG(bool, two_process, true,
          "Also measure across two processes: raw ZeroMQ to a receiver "
          "child (this binary with --raw_peer), and Tessera against a real "
          "tessera-ps child; the goals are taken against that ceiling.");
ABSL_FLAG(int64_t, push_piece_kib,
          tessera::PsClientOptions().max_push_piece_bytes >> 10,
          "PsClientOptions::max_push_piece_bytes, in KiB (0: a push goes to "
          "its shard as one request).");
ABSL_FLAG(bool, shared_memory, false,
          "PsClientOptions::shared_memory: dense pushes and pulls through a "
          "shared-memory segment with the shard (same machine) instead of "
          "the socket. Off by default: the goals compare the wire with raw "
          "ZeroMQ over TCP.");
ABSL_FLAG(std::vector<std::string>, step_floats,
          std::vector<std::string>({"200704", "256", "32768", "128", "1280",
                                    "10"}),
          "The dense tensors of one training step (floats each; default "
          "training_bench's MLP, 784-256-128-10): the step cells pull and "
          "push them all, one call per tensor against one dense batch "
          "(PullDenseBatch / PushDenseBatch), between two processes. Empty: "
          "no step cells.");
ABSL_FLAG(std::string, raw_peer, "",
          "Internal: run as the receiving side of the two-process raw "
          "ceiling, writing the bound port to this file.");
ABSL_FLAG(bool, raw_peer_reply, false,
          "Internal: with --raw_peer, answer each message (the raw "
          "request/reply cell).");
ABSL_FLAG(std::string, only, "",
          "Run only the cells whose path contains this (raw, push, pull, "
          "grpc).");

namespace tessera {
namespace {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * 1024;
constexpr int64_t kCols = 256;

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

std::string SizeName(int64_t bytes) {
  return bytes >= kMiB ? absl::StrCat(bytes / kMiB, " MiB")
                       : absl::StrCat(bytes / kKiB, " KiB");
}

std::string TensorName(int64_t bytes) { return absl::StrCat("t", bytes); }

v1::TensorSpec Spec(int64_t bytes) {
  v1::TensorSpec spec;
  spec.set_name(TensorName(bytes));
  spec.add_shape(bytes / sizeof(float) / kCols);
  spec.add_shape(kCols);
  spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(1e-6f);
  return spec;
}

struct Cell {
  std::string path;      // raw, push, pull, grpc push, grpc pull
  std::string topology;  // "1x1", "2x2"
  int depth = 1;
  int64_t size = 0;
  int64_t ops = 0;
  double seconds = 0;
  std::vector<double> latencies;  // seconds; empty for raw
  double cpu_seconds = 0;         // of this whole process during the cell

  // CPU time (all threads: clients, shards, ZeroMQ) per MiB moved: what
  // bounds throughput once every core is busy, and what other load on the
  // machine disturbs least.
  double cpu_us_per_mib() const {
    return ops == 0 ? 0 : cpu_seconds * 1e6 / (ops * double(size) / kMiB);
  }
  double gbps() const { return ops * double(size) / seconds / 1e9; }
  double ops_per_s() const { return ops / seconds; }
  double Percentile(double q) {
    if (latencies.empty()) return 0;
    const size_t k = std::min(latencies.size() - 1,
                              static_cast<size_t>(q * latencies.size()));
    std::nth_element(latencies.begin(), latencies.begin() + k, latencies.end());
    return latencies[k];
  }
};

// One shard served in-process: Shard, DataPlane on 127.0.0.1:0, gRPC.
class LocalShard {
 public:
  static std::unique_ptr<LocalShard> Start(int index, int num_shards,
                                           const std::string& dir) {
    auto s = std::unique_ptr<LocalShard>(new LocalShard());
    DataPlaneOptions data;
    data.host = "127.0.0.1";
    data.port = 0;
    data.threads = absl::GetFlag(FLAGS_data_threads);
    data.inline_max_bytes = absl::GetFlag(FLAGS_inline_max_bytes);
    data.idle_inline_max_bytes = absl::GetFlag(FLAGS_idle_inline_max_bytes);
    auto plane = DataPlane::Bind(data);
    CHECK(plane.ok()) << plane.status();
    s->plane_ = *std::move(plane);
    ShardOptions options;
    options.shard_index = index;
    options.placement.set_num_shards(num_shards);
    options.placement.set_split_threshold_bytes(1024);  // Split everything.
    options.data_dir = dir;
    options.flush_interval = absl::Hours(1);  // Keep RocksDB out of it.
    options.data_port = s->plane_->port();
    s->shard_ = std::make_unique<Shard>(options, &s->registry_);
    BENCH_CHECK_OK(s->shard_->Load());
    s->plane_->Start(s->shard_.get());
    s->service_ = std::make_unique<ParameterServerService>(s->shard_.get());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &s->grpc_port_);
    builder.RegisterService(s->service_.get());
    builder.SetMaxReceiveMessageSize(128 << 20);
    builder.SetMaxSendMessageSize(128 << 20);
    s->server_ = builder.BuildAndStart();
    CHECK(s->server_ != nullptr && s->grpc_port_ > 0);
    return s;
  }

  ~LocalShard() {
    server_->Shutdown(std::chrono::system_clock::now());
    plane_->Stop();
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

 private:
  LocalShard() = default;
  metrics::Registry registry_;
  std::unique_ptr<DataPlane> plane_;
  std::unique_ptr<Shard> shard_;
  std::unique_ptr<ParameterServerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
};

struct Cluster {
  std::vector<std::unique_ptr<LocalShard>> shards;
  // Or a real tessera-ps child (the two-process cells).
  std::unique_ptr<testing::ShardProcess> process;
  std::vector<std::unique_ptr<PsClient>> clients;
};

// The bench's client options (the flags' piece size and shared memory) for
// `shards` (gRPC addresses).
PsClientOptions ClientOptions(std::vector<std::string> shards) {
  PsClientOptions options;
  options.shard_addresses = std::move(shards);
  options.default_deadline = absl::Seconds(60);
  options.max_push_piece_bytes = absl::GetFlag(FLAGS_push_piece_kib) << 10;
  options.shared_memory = absl::GetFlag(FLAGS_shared_memory);
  return options;
}

Cluster StartCluster(int num_shards, int num_clients,
                     const std::vector<int64_t>& sizes) {
  Cluster cluster;
  const std::string base =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/tessera-data-plane-bench-", getpid(), "-", num_shards);
  std::filesystem::remove_all(base);
  std::vector<std::string> addresses;
  for (int i = 0; i < num_shards; ++i) {
    cluster.shards.push_back(
        LocalShard::Start(i, num_shards, absl::StrCat(base, "/", i)));
    addresses.push_back(cluster.shards.back()->address());
  }
  const PsClientOptions options = ClientOptions(std::move(addresses));
  std::vector<v1::TensorSpec> specs;
  for (int64_t size : sizes) specs.push_back(Spec(size));
  for (int c = 0; c < num_clients; ++c) {
    auto client = PsClient::Connect(options);
    CHECK(client.ok()) << client.status();
    BENCH_CHECK_OK((*client)->CreateTensors(specs));
    cluster.clients.push_back(*std::move(client));
  }
  return cluster;
}

// One tessera-ps child process (1 shard) and one client in this process.
Cluster StartProcessCluster(const std::vector<int64_t>& sizes) {
  Cluster cluster;
  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/tessera-data-plane-bench-", getpid(), "-process");
  std::filesystem::remove_all(dir);
  auto process = testing::ShardProcess::Start(
      0, 1, dir,
      {absl::StrCat("--data_threads=", absl::GetFlag(FLAGS_data_threads)),
       absl::StrCat("--inline_max_bytes=",
                    absl::GetFlag(FLAGS_inline_max_bytes)),
       absl::StrCat("--idle_inline_max_bytes=",
                    absl::GetFlag(FLAGS_idle_inline_max_bytes)),
       "--split_threshold_bytes=1024", "--flush_interval_s=3600",
       "--max_message_bytes=134217728"},
      absl::Seconds(60), dir + ".log");
  BENCH_CHECK_OK(process.status());
  cluster.process = *std::move(process);
  const PsClientOptions options =
      ClientOptions({cluster.process->ports().grpc_address()});
  std::vector<v1::TensorSpec> specs;
  for (int64_t size : sizes) specs.push_back(Spec(size));
  auto client = PsClient::Connect(options);
  CHECK(client.ok()) << client.status();
  BENCH_CHECK_OK((*client)->CreateTensors(specs));
  cluster.clients.push_back(*std::move(client));
  return cluster;
}

// Sends `buffer` zero-copy on `push` for `duration` (a multiple of 16
// messages), then the 1-byte end marker the receivers stop at.
void SendForThenEnd(void* push, const std::vector<char>& buffer,
                    absl::Duration duration) {
  auto noop = [](void*, void*) {};
  const absl::Time end = absl::Now() + duration;
  int64_t sent = 0;
  while (sent % 16 != 0 || absl::Now() < end) {
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, const_cast<char*>(buffer.data()), buffer.size(),
                      noop, nullptr);
    CHECK_GE(zmq_msg_send(&msg, push, 0), 0);
    ++sent;
  }
  CHECK_GE(zmq_send(push, "e", 1, 0), 0);
}

// Raw ZeroMQ PUSH -> PULL, zero-copy sends of one buffer, separate contexts.
Cell RawZeroMq(int64_t size, int hwm, absl::Duration duration) {
  ZmqContext receive_context(1), send_context(1);
  auto pull = ZmqSocket::Open(receive_context.get(), ZMQ_PULL);
  auto push = ZmqSocket::Open(send_context.get(), ZMQ_PUSH);
  CHECK(pull.ok() && push.ok());
  BENCH_CHECK_OK(pull->SetInt(ZMQ_RCVHWM, hwm));
  BENCH_CHECK_OK(push->SetInt(ZMQ_SNDHWM, hwm));
  BENCH_CHECK_OK(pull->Bind("tcp://127.0.0.1:0"));
  auto port = pull->BoundPort();
  BENCH_CHECK_OK(port.status());
  BENCH_CHECK_OK(push->Connect(absl::StrCat("tcp://127.0.0.1:", *port)));
  std::vector<char> buffer(size, 1);

  Cell cell;
  cell.path = "raw zmq";
  cell.topology = "1x1";
  cell.depth = hwm;
  cell.size = size;
  int64_t received = 0;
  absl::Time first, last;
  std::thread receiver([&] {
    while (true) {
      zmq_msg_t msg;
      zmq_msg_init(&msg);
      CHECK_GE(zmq_msg_recv(&msg, pull->get(), 0), 0);
      const size_t n = zmq_msg_size(&msg);
      zmq_msg_close(&msg);
      if (n != static_cast<size_t>(size)) break;  // The end marker.
      const absl::Time now = absl::Now();
      if (received == 0) first = now;
      last = now;
      ++received;
    }
  });
  const double cpu_start = ProcessCpuSeconds();
  SendForThenEnd(push->get(), buffer, duration);
  receiver.join();
  cell.cpu_seconds = ProcessCpuSeconds() - cpu_start;
  // The first message starts the clock; it is not counted.
  cell.ops = received - 1;
  cell.seconds = absl::ToDoubleSeconds(last - first);
  return cell;
}

// The receiving side of the two-process cells (--raw_peer=PORT_FILE), on
// 127.0.0.1:0 with its port written to PORT_FILE. Streaming (the ceiling): a
// PULL socket that counts messages until a 1-byte end marker and prints
// "messages bytes seconds" (first to last message) on stdout. With
// --raw_peer_reply: a ROUTER that answers each message with 8 bytes, as a
// shard answers a push, until the end marker.
int RawPeer(const std::string& port_file, bool reply) {
  ZmqContext context(1);
  auto socket = ZmqSocket::Open(context.get(), reply ? ZMQ_ROUTER : ZMQ_PULL);
  CHECK(socket.ok());
  BENCH_CHECK_OK(socket->SetInt(ZMQ_RCVHWM, 64));
  BENCH_CHECK_OK(socket->Bind("tcp://127.0.0.1:0"));
  auto port = socket->BoundPort();
  BENCH_CHECK_OK(port.status());
  {
    const std::string tmp = port_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    CHECK(f != nullptr) << tmp;
    std::fprintf(f, "%d\n", *port);
    std::fclose(f);
    CHECK_EQ(std::rename(tmp.c_str(), port_file.c_str()), 0);
  }
  int64_t messages = 0, bytes = 0;
  absl::Time first, last;
  while (true) {
    zmq_msg_t identity;
    zmq_msg_init(&identity);
    if (reply) CHECK_GE(zmq_msg_recv(&identity, socket->get(), 0), 0);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    CHECK_GE(zmq_msg_recv(&msg, socket->get(), 0), 0);
    const size_t n = zmq_msg_size(&msg);
    zmq_msg_close(&msg);
    if (reply) {
      CHECK_GE(zmq_msg_send(&identity, socket->get(), ZMQ_SNDMORE), 0);
      CHECK_GE(zmq_send(socket->get(), "answered", 8, 0), 0);
    }
    zmq_msg_close(&identity);
    if (n == 1) break;  // The end marker.
    const absl::Time now = absl::Now();
    if (messages == 0) first = now;
    last = now;
    ++messages;
    bytes += n;
  }
  std::printf("%lld %lld %.9f\n", static_cast<long long>(messages),
              static_cast<long long>(bytes),
              messages > 1 ? absl::ToDoubleSeconds(last - first) : 0.0);
  std::fflush(stdout);
  return 0;
}

// A RawPeer child (`reply`: answering each message) and its port.
struct RawPeerChild {
  std::unique_ptr<Subprocess> process;
  std::string port;
  std::string port_file, log;
  ~RawPeerChild() {
    std::filesystem::remove(port_file);
    std::filesystem::remove(log);
  }
  // Waits for the child to exit and returns what it printed.
  std::string Finish() {
    auto code = process->Wait(absl::Seconds(60));
    BENCH_CHECK_OK(code.status());
    CHECK_EQ(*code, 0) << process->Log();
    return process->Log();
  }
};

std::unique_ptr<RawPeerChild> StartRawPeer(bool reply) {
  auto peer = std::make_unique<RawPeerChild>();
  const std::string base =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/tessera-data-plane-bench-raw-", getpid());
  peer->port_file = base + ".port";
  peer->log = base + ".log";
  std::filesystem::remove(peer->port_file);
  std::filesystem::remove(peer->log);
  auto child = Subprocess::Start(
      {"/proc/self/exe", absl::StrCat("--raw_peer=", peer->port_file),
       absl::StrCat("--raw_peer_reply=", reply)},
      peer->log);
  BENCH_CHECK_OK(child.status());
  peer->process = *std::move(child);
  absl::StatusOr<std::string> port_text =
      absl::NotFoundError("no port file yet");
  for (int i = 0; i < 1000 && !port_text.ok(); ++i) {
    std::FILE* f = std::fopen(peer->port_file.c_str(), "r");
    if (f != nullptr) {
      char line[32] = {0};
      if (std::fgets(line, sizeof(line), f) != nullptr) port_text = line;
      std::fclose(f);
    }
    if (!port_text.ok()) absl::SleepFor(absl::Milliseconds(10));
  }
  BENCH_CHECK_OK(port_text.status());
  peer->port = std::string(absl::StripAsciiWhitespace(*port_text));
  return peer;
}

// Raw ZeroMQ PUSH -> PULL to a receiver child process: the ceiling of a
// transfer between two processes. The first message starts the clock.
Cell RawZeroMqTwoProcesses(int64_t size, int hwm, absl::Duration duration) {
  std::unique_ptr<RawPeerChild> peer = StartRawPeer(/*reply=*/false);
  ZmqContext context(1);
  auto push = ZmqSocket::Open(context.get(), ZMQ_PUSH);
  CHECK(push.ok());
  BENCH_CHECK_OK(push->SetInt(ZMQ_SNDHWM, hwm));
  BENCH_CHECK_OK(push->Connect(absl::StrCat("tcp://127.0.0.1:", peer->port)));
  std::vector<char> buffer(size, 1);
  SendForThenEnd(push->get(), buffer, duration);
  const std::string result = peer->Finish();
  long long messages = 0, bytes = 0;
  double seconds = 0;
  CHECK_EQ(
      std::sscanf(result.c_str(), "%lld %lld %lf", &messages, &bytes, &seconds),
      3)
      << result;
  Cell cell;
  cell.path = "raw zmq 2p";
  cell.topology = "1x1";
  cell.depth = hwm;
  cell.size = size;
  cell.ops = messages - 1;
  cell.seconds = seconds;
  return cell;
}

// Raw ZeroMQ request/reply to a child process: a DEALER sends one message
// (zero-copy) and waits for the ROUTER's 8-byte answer before the next. What
// any depth-1 transfer between two processes costs before doing anything
// with the bytes; printed beside the depth-1 goals.
Cell RawRequestReplyTwoProcesses(int64_t size, absl::Duration duration) {
  std::unique_ptr<RawPeerChild> peer = StartRawPeer(/*reply=*/true);
  ZmqContext context(1);
  auto dealer = ZmqSocket::Open(context.get(), ZMQ_DEALER);
  CHECK(dealer.ok());
  BENCH_CHECK_OK(dealer->Connect(absl::StrCat("tcp://127.0.0.1:", peer->port)));
  std::vector<char> buffer(size, 1);
  auto noop = [](void*, void*) {};
  auto round_trip = [&](const char* data, size_t n) {
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, const_cast<char*>(data), n, noop, nullptr);
    CHECK_GE(zmq_msg_send(&msg, dealer->get(), 0), 0);
    char answer[8];
    CHECK_EQ(zmq_recv(dealer->get(), answer, sizeof(answer), 0), 8);
  };
  Cell cell;
  cell.path = "raw rr 2p";
  cell.topology = "1x1";
  cell.size = size;
  round_trip(buffer.data(), buffer.size());  // Connects; not counted.
  const double cpu_start = ProcessCpuSeconds();
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  absl::Time now = start;
  while (now < end) {
    round_trip(buffer.data(), buffer.size());
    const absl::Time done = absl::Now();
    cell.latencies.push_back(absl::ToDoubleSeconds(done - now));
    now = done;
  }
  cell.cpu_seconds = ProcessCpuSeconds() - cpu_start;
  cell.ops = static_cast<int64_t>(cell.latencies.size());
  cell.seconds = absl::ToDoubleSeconds(now - start);
  round_trip("e", 1);
  peer->Finish();
  return cell;
}

// One pass over a message's bytes in memory, as a push's check and optimizer
// or a pull's copy into the caller's buffer make: GB/s of memcpy of `size`
// bytes from sources out of cache (64 MiB of them, rotated) into one
// destination, median of 5 runs of 32 copies.
double CopyGbps(int64_t size) {
  const int buffers =
      static_cast<int>(std::clamp<int64_t>((64 * kMiB) / size, 2, 64));
  std::vector<std::vector<char>> from(buffers, std::vector<char>(size, 1));
  std::vector<char> to(size, 2);
  std::vector<double> runs;
  for (int run = 0; run < 5; ++run) {
    const absl::Time start = absl::Now();
    for (int k = 0; k < 32; ++k) {
      std::memcpy(to.data(), from[(run * 32 + k) % buffers].data(), size);
    }
    runs.push_back(32.0 * size / absl::ToDoubleSeconds(absl::Now() - start) /
                   1e9);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// Runs `op` on every client at once, each with `depth` calls in flight, for
// `duration`. op(client, slot, done) starts one call using buffer `slot`.
using Op = std::function<void(int client, int slot, DoneCallback done)>;

Cell Drive(int num_clients, int depth, absl::Duration duration, const Op& op) {
  absl::Mutex mu;
  std::vector<double> latencies;
  int64_t ops = 0;
  absl::Status failure;
  absl::Notification go;
  std::vector<std::thread> threads;
  absl::Time start_all = absl::InfiniteFuture(), end_all = absl::InfinitePast();
  for (int c = 0; c < num_clients; ++c) {
    threads.emplace_back([&, c] {
      absl::Mutex slot_mu;
      std::vector<int> free_slots;
      for (int s = 0; s < depth; ++s) free_slots.push_back(s);
      std::vector<double> mine;
      mine.reserve(1 << 16);
      int64_t done_ops = 0;
      absl::Status error;
      go.WaitForNotification();
      const absl::Time start = absl::Now();
      const absl::Time end = start + duration;
      while (absl::Now() < end) {
        int slot;
        {
          absl::MutexLock lock(&slot_mu);
          slot_mu.Await(absl::Condition(
              +[](std::vector<int>* v) { return !v->empty(); }, &free_slots));
          slot = free_slots.back();
          free_slots.pop_back();
        }
        const absl::Time began = absl::Now();
        op(c, slot, [&, slot, began](const absl::Status& status) {
          const double took = absl::ToDoubleSeconds(absl::Now() - began);
          absl::MutexLock lock(&slot_mu);
          if (!status.ok() && error.ok()) error = status;
          mine.push_back(took);
          ++done_ops;
          free_slots.push_back(slot);
        });
      }
      {
        absl::MutexLock lock(&slot_mu);
        auto all_back = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_mu) {
          return free_slots.size() == static_cast<size_t>(depth);
        };
        slot_mu.Await(absl::Condition(&all_back));
      }
      const absl::Time finished = absl::Now();
      absl::MutexLock lock(&mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      ops += done_ops;
      if (!error.ok() && failure.ok()) failure = error;
      start_all = std::min(start_all, start);
      end_all = std::max(end_all, finished);
    });
  }
  const double cpu_start = ProcessCpuSeconds();
  go.Notify();
  for (auto& t : threads) t.join();
  const double cpu = ProcessCpuSeconds() - cpu_start;
  BENCH_CHECK_OK(failure);
  Cell cell;
  cell.cpu_seconds = cpu;
  cell.depth = depth;
  cell.ops = ops;
  cell.seconds = absl::ToDoubleSeconds(end_all - start_all);
  cell.latencies = std::move(latencies);
  return cell;
}

// A push, a pull into the caller's buffer, or with `in_place` a pull read
// where it arrived (PsClient::PullDenseInPlace; the values are dropped
// unread).
Cell TesseraCell(Cluster& cluster, bool push, int64_t size, int depth,
                 absl::Duration duration, bool in_place = false) {
  const int num_clients = static_cast<int>(cluster.clients.size());
  const std::string name = TensorName(size);
  const size_t floats = size / sizeof(float);
  auto grad = std::make_shared<const std::vector<float>>(floats, 1e-3f);
  std::vector<std::vector<std::vector<float>>> out(num_clients);
  if (!push) {
    for (auto& slots : out) {
      slots.assign(depth, std::vector<float>(floats));
    }
  }
  Op op = [&](int c, int slot, DoneCallback done) {
    if (in_place) {
      cluster.clients[c]->PullDenseInPlaceAsync(
          name, 0, floats,
          [done = std::move(done)](absl::StatusOr<PulledDense> pulled) {
            done(pulled.status());
          });
    } else if (push) {
      cluster.clients[c]->PushDenseAsync(name, 0, grad, std::move(done));
    } else {
      cluster.clients[c]->PullDenseAsync(name, 0, absl::MakeSpan(out[c][slot]),
                                         std::move(done));
    }
  };
  Drive(num_clients, depth, absl::Milliseconds(50), op);  // Warm up.
  Cell cell = Drive(num_clients, depth, duration, op);
  cell.path = push ? "push" : in_place ? "pull in place" : "pull";
  cell.topology = absl::StrCat(cluster.shards.size(), "x", num_clients);
  cell.size = size;
  return cell;
}

Cell GrpcCell(const std::string& address, bool push, int64_t size, int depth,
              absl::Duration duration) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(128 << 20);
  args.SetMaxSendMessageSize(128 << 20);
  // One channel per in-flight call: gRPC multiplexes streams otherwise.
  std::vector<std::unique_ptr<v1::ParameterServer::Stub>> stubs;
  for (int d = 0; d < depth; ++d) {
    args.SetInt("tessera.bench.channel", d);  // Distinct channels.
    stubs.push_back(v1::ParameterServer::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  v1::PushGradientRequest request;
  request.set_tensor_name(TensorName(size));
  request.set_values(std::string(size, '\0'));
  std::vector<std::vector<float>> out(depth, std::vector<float>(size / 4));
  auto run = [&](absl::Duration d) {
    // Drive's callback shape, run synchronously on `depth` threads.
    absl::Mutex mu;
    std::vector<double> latencies;
    int64_t ops = 0;
    std::vector<std::thread> threads;
    const double cpu_start = ProcessCpuSeconds();
    const absl::Time start = absl::Now();
    for (int t = 0; t < depth; ++t) {
      threads.emplace_back([&, t] {
        std::vector<double> mine;
        const absl::Time end = start + d;
        while (absl::Now() < end) {
          const absl::Time began = absl::Now();
          grpc::ClientContext context;
          if (push) {
            v1::PushGradientResponse response;
            grpc::Status s =
                stubs[t]->PushGradient(&context, request, &response);
            CHECK(s.ok()) << s.error_message();
          } else {
            v1::PullTensorRequest pull;
            pull.set_tensor_name(TensorName(size));
            pull.set_max_chunk_floats(size / 4);
            auto reader = stubs[t]->PullTensor(&context, pull);
            v1::TensorChunk chunk;
            while (reader->Read(&chunk)) {
              std::memcpy(out[t].data() + chunk.offset(), chunk.values().data(),
                          chunk.values().size());
            }
            grpc::Status s = reader->Finish();
            CHECK(s.ok()) << s.error_message();
          }
          mine.push_back(absl::ToDoubleSeconds(absl::Now() - began));
        }
        absl::MutexLock lock(&mu);
        latencies.insert(latencies.end(), mine.begin(), mine.end());
        ops += mine.size();
      });
    }
    for (auto& t : threads) t.join();
    Cell cell;
    cell.cpu_seconds = ProcessCpuSeconds() - cpu_start;
    cell.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    cell.ops = ops;
    cell.latencies = std::move(latencies);
    return cell;
  };
  run(absl::Milliseconds(50));
  Cell cell = run(duration);
  cell.path = push ? "grpc push" : "grpc pull";
  cell.topology = "1x1";
  cell.depth = depth;
  cell.size = size;
  return cell;
}

std::string Latency(double seconds) {
  if (seconds <= 0) return "-";
  if (seconds < 1e-3) return absl::StrFormat("%.0f us", seconds * 1e6);
  return absl::StrFormat("%.2f ms", seconds * 1e3);
}

// The median of `values` (not empty).
double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// A training step's dense tensors: names and specs.
std::vector<v1::TensorSpec> StepSpecs(const std::vector<int64_t>& floats) {
  std::vector<v1::TensorSpec> specs;
  for (size_t i = 0; i < floats.size(); ++i) {
    v1::TensorSpec spec;
    spec.set_name(absl::StrCat("step", i));
    spec.add_shape(floats[i]);
    spec.mutable_initializer()->set_kind(v1::Initializer::ZEROS);
    spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
    spec.mutable_optimizer()->set_learning_rate(1e-6f);
    specs.push_back(spec);
  }
  return specs;
}

// One step's pull or push of every tensor in `floats`, as one call per
// tensor (completing when the last has) or as one dense batch.
Cell StepCell(PsClient& client, const std::vector<int64_t>& floats, bool push,
              bool batch, absl::Duration duration) {
  int64_t bytes = 0;
  std::vector<std::shared_ptr<const std::vector<float>>> grads;
  std::vector<std::vector<float>> out;
  for (int64_t n : floats) {
    bytes += n * static_cast<int64_t>(sizeof(float));
    grads.push_back(std::make_shared<const std::vector<float>>(n, 1e-3f));
    out.emplace_back(n);
  }
  Op op = [&](int, int, DoneCallback done) {
    if (batch) {
      if (push) {
        std::vector<DenseRangePush> ranges;
        for (size_t i = 0; i < floats.size(); ++i) {
          ranges.push_back({absl::StrCat("step", i), 0, grads[i], *grads[i]});
        }
        client.PushDenseBatchAsync(std::move(ranges), std::move(done));
      } else {
        std::vector<DenseRangePull> ranges;
        for (size_t i = 0; i < floats.size(); ++i) {
          ranges.push_back(
              {absl::StrCat("step", i), 0, absl::MakeSpan(out[i]), {}});
        }
        client.PullDenseBatchAsync(std::move(ranges), std::move(done));
      }
      return;
    }
    // One call per tensor; the step is done with the last answer.
    struct Pending {
      std::atomic<int> left;
      absl::Mutex mu;
      absl::Status status;
      DoneCallback done;
    };
    auto pending = std::make_shared<Pending>();
    pending->left = static_cast<int>(floats.size());
    pending->done = std::move(done);
    auto one = [pending](const absl::Status& s) {
      if (!s.ok()) {
        absl::MutexLock lock(&pending->mu);
        if (pending->status.ok()) pending->status = s;
      }
      if (pending->left.fetch_sub(1) == 1) {
        absl::Status status;
        {
          absl::MutexLock lock(&pending->mu);
          status = pending->status;
        }
        pending->done(status);
      }
    };
    for (size_t i = 0; i < floats.size(); ++i) {
      const std::string name = absl::StrCat("step", i);
      if (push) {
        client.PushDenseAsync(name, 0, grads[i], one);
      } else {
        client.PullDenseAsync(name, 0, absl::MakeSpan(out[i]), one);
      }
    }
  };
  Drive(1, 1, absl::Milliseconds(50), op);  // Warm up.
  Cell cell = Drive(1, 1, duration, op);
  cell.size = bytes;
  return cell;
}

// The step cells (--step_floats) against a tessera-ps child: steps/s of one
// call per tensor and of one dense batch, round-robin, medians, and the
// batch's speed-up measured in the same rounds.
void RunStepCells(PsClient& client, const std::vector<int64_t>& floats,
                  int rounds, absl::Duration duration) {
  int64_t bytes = 0;
  for (int64_t n : floats) bytes += n * static_cast<int64_t>(sizeof(float));
  BENCH_CHECK_OK(client.CreateTensors(StepSpecs(floats)));
  struct StepRow {
    const char* name;
    bool push, batch;
    std::vector<double> steps, p50, cpu;
  };
  std::vector<StepRow> rows = {{"pull, a call per tensor", false, false},
                               {"pull, one batch", false, true},
                               {"push, a call per tensor", true, false},
                               {"push, one batch", true, true}};
  std::vector<std::vector<double>> speedups(2);
  for (int r = 0; r < rounds; ++r) {
    for (StepRow& row : rows) {
      Cell cell = StepCell(client, floats, row.push, row.batch, duration);
      row.steps.push_back(cell.ops_per_s());
      row.p50.push_back(cell.Percentile(0.5));
      row.cpu.push_back(cell.ops == 0 ? 0 : cell.cpu_seconds * 1e6 / cell.ops);
    }
    for (int k = 0; k < 2; ++k) {
      speedups[k].push_back(rows[2 * k + 1].steps.back() /
                            rows[2 * k].steps.back());
    }
  }
  std::printf(
      "\nA training step's dense tensors (%zu tensors, %.0f KiB in all; 1 "
      "tessera-ps process x 1 client process, depth 1, %s):\n",
      floats.size(), bytes / 1024.0,
      absl::GetFlag(FLAGS_shared_memory) ? "shared memory" : "TCP");
  std::printf("  %-26s %10s %9s %14s\n", "step", "steps/s", "p50",
              "client cpu/step");
  for (StepRow& row : rows) {
    std::printf("  %-26s %10.0f %9s %14s\n", row.name, Median(row.steps),
                Latency(Median(row.p50)).c_str(),
                Latency(Median(row.cpu) * 1e-6).c_str());
  }
  std::printf(
      "  one batch / a call per tensor, median over rounds: pull %.2fx, push "
      "%.2fx\n",
      Median(speedups[0]), Median(speedups[1]));
}

// One row of the table: a configuration measured once per round.
struct Row {
  std::string path, topology;
  int depth = 1;
  int64_t size = 0;
  std::vector<Cell> rounds;
  std::vector<double> ratios;  // to the raw ceiling of the same round

  double gbps() const {
    std::vector<double> v;
    for (const Cell& c : rounds) v.push_back(c.gbps());
    return Median(v);
  }
  double ops_per_s() const {
    std::vector<double> v;
    for (const Cell& c : rounds) v.push_back(c.ops_per_s());
    return Median(v);
  }
  double cpu_us_per_mib() const {
    std::vector<double> v;
    for (const Cell& c : rounds) v.push_back(c.cpu_us_per_mib());
    return Median(v);
  }
  double ratio() const { return ratios.empty() ? 0.0 : Median(ratios); }
  double Percentile(double q) const {
    Cell all;
    for (const Cell& c : rounds) {
      all.latencies.insert(all.latencies.end(), c.latencies.begin(),
                           c.latencies.end());
    }
    return all.Percentile(q);
  }
};

int Run() {
  const bool quick = absl::GetFlag(FLAGS_quick);
  const absl::Duration duration =
      absl::Seconds(quick ? 0.2 : absl::GetFlag(FLAGS_seconds));
  const int rounds = quick ? 1 : absl::GetFlag(FLAGS_rounds);
  const int depth = absl::GetFlag(FLAGS_depth);
  const std::string only = absl::GetFlag(FLAGS_only);
  std::vector<int64_t> sizes = {4 * kKiB, 64 * kKiB, kMiB, 16 * kMiB};
  if (!absl::GetFlag(FLAGS_sizes).empty()) {
    sizes.clear();
    for (const std::string& kib : absl::GetFlag(FLAGS_sizes)) {
      int64_t n = 0;
      CHECK(absl::SimpleAtoi(kib, &n) && n > 0) << "--sizes=" << kib;
      sizes.push_back(n * kKiB);
    }
  }
  auto wanted = [&](const std::string& path) {
    return only.empty() || path.find(only) != std::string::npos;
  };
  const bool tuned =
      absl::GetFlag(FLAGS_tune_malloc) && KeepFreedMessageMemory();

  std::printf(
      "data_plane_bench: 127.0.0.1 TCP, shards and clients in this process, "
      "%d data threads per shard, %d round(s) of %s per cell, malloc %s\n",
      absl::GetFlag(FLAGS_data_threads), rounds,
      absl::FormatDuration(duration).c_str(),
      tuned ? "tuned (KeepFreedMessageMemory)" : "default");
  std::fflush(stdout);
  Cluster one = StartCluster(1, 1, sizes);
  Cluster two = StartCluster(2, 2, sizes);
  const bool two_process = absl::GetFlag(FLAGS_two_process);
  Cluster process;
  if (two_process) process = StartProcessCluster(sizes);

  std::vector<Row> rows;
  for (int64_t size : sizes) {
    const int deep = size >= 16 * kMiB ? std::max(2, depth / 4)
                     : size >= kMiB    ? std::max(2, depth / 2)
                                       : depth;
    // The configurations of this size, measured round-robin so that load
    // from elsewhere on the machine hits the ceiling and the rest alike.
    struct Config {
      std::string path;
      int shards;
      int depth;
      std::function<Cell()> run;
    };
    std::vector<Config> configs;
    // Raw with a short and a long queue; the better of each round is the
    // ceiling.
    const int long_queue =
        static_cast<int>(std::clamp<int64_t>(256 * kMiB / size, 4, 64));
    for (int raw_hwm : {2, long_queue}) {
      if (!absl::GetFlag(FLAGS_raw)) break;
      configs.push_back({"raw zmq", 1, raw_hwm,
                         [=] { return RawZeroMq(size, raw_hwm, duration); }});
    }
    for (int raw_hwm : {2, long_queue}) {
      if (!two_process) break;
      configs.push_back(
          {"raw zmq 2p", 1, raw_hwm,
           [=] { return RawZeroMqTwoProcesses(size, raw_hwm, duration); }});
    }
    // The depth-1 request/reply floor: what a depth-1 cell could reach.
    if (two_process && wanted("raw")) {
      configs.push_back({"raw rr 2p", 1, 1, [=] {
                           return RawRequestReplyTwoProcesses(size, duration);
                         }});
    }
    // Tessera between two processes (a tessera-ps child), at depths 1 and
    // 4: the cells the goals are measured on.
    for (bool push : {true, false}) {
      if (!two_process || !wanted(push ? "push" : "pull")) continue;
      for (int d : {1, 4}) {
        configs.push_back(
            {push ? "push 2p" : "pull 2p", 1, d, [&, push, d, size] {
               return TesseraCell(process, push, size, d, duration);
             }});
      }
    }
    // A pull read in place, without the client's copy into a buffer.
    for (int d : {1, 4}) {
      if (!two_process || !wanted("pull") || size < kMiB) break;
      configs.push_back({"pull in place 2p", 1, d, [&, d, size] {
                           return TesseraCell(process, false, size, d, duration,
                                              /*in_place=*/true);
                         }});
    }
    const auto listed = [](const std::vector<std::string>& list,
                           const std::string& item) {
      return list.empty() ||
             std::find(list.begin(), list.end(), item) != list.end();
    };
    const std::vector<std::string> depths = absl::GetFlag(FLAGS_depths);
    const std::vector<std::string> topologies = absl::GetFlag(FLAGS_topologies);
    for (bool push : {true, false}) {
      if (!wanted(push ? "push" : "pull")) continue;
      for (int d : {1, deep}) {
        if (!listed(depths, absl::StrCat(d))) continue;
        if (listed(topologies, "1x1")) {
          configs.push_back({push ? "push" : "pull", 1, d, [&, push, d, size] {
                               return TesseraCell(one, push, size, d, duration);
                             }});
        }
        if ((quick && d == 1) || !listed(topologies, "2x2")) continue;
        configs.push_back({push ? "push" : "pull", 2, d, [&, push, d, size] {
                             return TesseraCell(two, push, size, d, duration);
                           }});
      }
    }
    if (absl::GetFlag(FLAGS_grpc) && wanted("grpc")) {
      for (bool push : {true, false}) {
        for (int d : quick ? std::vector<int>{1} : std::vector<int>{1, deep}) {
          configs.push_back(
              {push ? "grpc push" : "grpc pull", 1, d, [&, push, d, size] {
                 return GrpcCell(one.shards[0]->address(), push, size, d,
                                 duration);
               }});
        }
      }
    }
    std::vector<Row> size_rows(configs.size());
    const auto is_2p = [](const std::string& path) {
      return absl::EndsWith(path, " 2p");
    };
    for (int r = 0; r < rounds; ++r) {
      double ceiling = 0, ceiling_2p = 0;
      for (size_t k = 0; k < configs.size(); ++k) {
        Cell cell = configs[k].run();
        if (configs[k].path == "raw zmq") {
          ceiling = std::max(ceiling, cell.gbps());
        }
        if (configs[k].path == "raw zmq 2p") {
          ceiling_2p = std::max(ceiling_2p, cell.gbps());
        }
        size_rows[k].rounds.push_back(std::move(cell));
      }
      for (size_t k = 0; k < configs.size(); ++k) {
        const double c = is_2p(configs[k].path) ? ceiling_2p : ceiling;
        if (c > 0) {
          size_rows[k].ratios.push_back(size_rows[k].rounds.back().gbps() / c);
        }
      }
    }
    // Each raw row shows its ceiling: the better queue of each round.
    size_t first = 0;
    for (const char* raw : {"raw zmq", "raw zmq 2p"}) {
      if (first + 1 >= configs.size() || configs[first].path != raw) continue;
      Row ceiling_row;
      ceiling_row.path = raw;
      ceiling_row.topology = "1x1";
      ceiling_row.size = size;
      for (int r = 0; r < rounds; ++r) {
        const Cell& a = size_rows[first].rounds[r];
        const Cell& b = size_rows[first + 1].rounds[r];
        ceiling_row.rounds.push_back(a.gbps() >= b.gbps() ? a : b);
        ceiling_row.ratios.push_back(1.0);
      }
      rows.push_back(std::move(ceiling_row));
      first += 2;
    }
    for (size_t k = first; k < configs.size(); ++k) {
      size_rows[k].path = configs[k].path;
      size_rows[k].topology = absl::StrCat(
          configs[k].shards, "x",
          configs[k].path.rfind("grpc", 0) == 0 ? 1 : configs[k].shards);
      size_rows[k].depth = configs[k].depth;
      size_rows[k].size = size;
      rows.push_back(std::move(size_rows[k]));
    }
    std::fprintf(stderr, "  %s done\n", SizeName(size).c_str());
  }

  std::printf("\n%-8s %-16s %-5s %5s %8s %10s %9s %9s %7s %9s\n", "size",
              "path", "s x c", "depth", "GB/s", "ops/s", "p50", "p99", "of raw",
              "cpu/MiB");
  for (const Row& row : rows) {
    std::printf("%-8s %-16s %-5s %5d %8.2f %10.0f %9s %9s %6.0f%% %9s\n",
                SizeName(row.size).c_str(), row.path.c_str(),
                row.topology.c_str(), row.depth, row.gbps(), row.ops_per_s(),
                Latency(row.Percentile(0.5)).c_str(),
                Latency(row.Percentile(0.99)).c_str(), 100 * row.ratio(),
                Latency(row.cpu_us_per_mib() * 1e-6).c_str());
  }
  std::printf(
      "\nGB/s, ops/s: medians over rounds; p50/p99: over all calls; of raw: "
      "median over rounds of GB/s / the raw ceiling measured in the same "
      "round; cpu/MiB: CPU time of the whole process per MiB moved.\n");

  // The goals, from the 1 shard x 1 client rows.
  auto best = [&](const std::string& path, int64_t size) {
    const Row* found = nullptr;
    for (const Row& row : rows) {
      if (row.path == path && row.size == size && row.topology == "1x1" &&
          (found == nullptr || row.ratio() > found->ratio())) {
        found = &row;
      }
    }
    return found;
  };
  // Between two processes, against the two-process ceiling (issue #15's
  // goals): each depth on its own.
  if (two_process) {
    std::printf(
        "\ngoals (1 tessera-ps process x 1 client process, of the "
        "two-process raw ZeroMQ ceiling):\n");
    // What raw ZeroMQ never does and a push or pull must: a pass over the
    // values in memory (docs/data_plane_profile.md).
    for (int64_t size : {kMiB, 16 * kMiB}) {
      if (std::find(sizes.begin(), sizes.end(), size) == sizes.end()) continue;
      std::printf(
          "  (memory on this machine: a %s copy out of cache runs at "
          "%.1f GB/s)\n",
          SizeName(size).c_str(), CopyGbps(size));
    }
    for (const char* path : {"push 2p", "pull 2p", "pull in place 2p"}) {
      for (int64_t size : {kMiB, 16 * kMiB}) {
        for (auto [d, goal] : {std::pair<int, double>{1, 0.7}, {4, 0.8}}) {
          for (const Row& row : rows) {
            if (row.path != path || row.size != size || row.depth != d) {
              continue;
            }
            std::printf("  %s %s depth %d: %.1f%% of raw (goal %.0f%%) %s",
                        path, SizeName(size).c_str(), d, 100 * row.ratio(),
                        100 * goal, row.ratio() >= goal ? "met" : "NOT MET");
            const Row* rr = d == 1 ? best("raw rr 2p", size) : nullptr;
            if (rr != nullptr && rr->ratio() > 0) {
              std::printf(
                  " (raw request/reply: %.0f%%; this cell %.0f%% of it)",
                  100 * rr->ratio(), 100 * row.ratio() / rr->ratio());
            }
            std::printf("\n");
          }
        }
      }
    }
  }
  std::printf("\ngoals (1 shard x 1 client, the better depth):\n");
  for (const char* path : {"push", "pull"}) {
    for (auto [size, goal] :
         {std::pair<int64_t, double>{kMiB, 0.85}, {16 * kMiB, 0.80}}) {
      const Row* row = best(path, size);
      if (row == nullptr) continue;
      std::printf("  %s %s: %.0f%% of raw (goal %.0f%%) %s\n", path,
                  SizeName(size).c_str(), 100 * row->ratio(), 100 * goal,
                  row->ratio() >= goal ? "met" : "NOT MET");
    }
  }
  for (const char* path : {"push", "pull"}) {
    const Row* row = best(path, 4 * kKiB);
    if (row != nullptr) {
      std::printf("  %s 4 KiB: %.0f ops/s (goal 20000) %s\n", path,
                  row->ops_per_s(),
                  row->ops_per_s() >= 20000 ? "met" : "NOT MET");
    }
    const Row* z = best(path, kMiB);
    const Row* g = best(absl::StrCat("grpc ", path), kMiB);
    if (z != nullptr && g != nullptr && g->gbps() > 0) {
      std::printf("  %s 1 MiB: %.1fx gRPC (goal 2x) %s\n", path,
                  z->gbps() / g->gbps(),
                  z->gbps() >= 2 * g->gbps() ? "met" : "NOT MET");
    }
  }
  const std::vector<std::string> step = absl::GetFlag(FLAGS_step_floats);
  if (two_process && !step.empty() && process.clients.size() == 1 &&
      wanted("step")) {
    std::vector<int64_t> floats;
    for (const std::string& f : step) {
      int64_t n = 0;
      CHECK(absl::SimpleAtoi(f, &n) && n > 0) << "--step_floats=" << f;
      floats.push_back(n);
    }
    RunStepCells(*process.clients[0], floats, rounds, duration);
  }
  std::fflush(stdout);
  process.clients.clear();
  two.clients.clear();
  one.clients.clear();
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "data_plane_bench: Tessera's ZeroMQ data plane against raw ZeroMQ and "
      "gRPC on 127.0.0.1.");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;  // Warnings and up.
  google::InitGoogleLogging(argv[0]);
  if (!absl::GetFlag(FLAGS_raw_peer).empty()) {
    return tessera::RawPeer(absl::GetFlag(FLAGS_raw_peer),
                            absl::GetFlag(FLAGS_raw_peer_reply));
  }
  // Started from bazel-bin: the tessera-ps child is in the runfiles tree.
  tessera::testing::EnterRunfiles(argv[0]);
  return tessera::Run();
}

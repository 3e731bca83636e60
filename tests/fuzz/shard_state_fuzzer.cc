// Drives sequences of real requests into a real in-process shard, through
// both of its front ends, and checks after every request what the shard
// promises about its state, not only that nothing crashed:
//
//   - the ZeroMQ data plane's requests (PUSH_DENSE, PULL_DENSE, PUSH_ROWS,
//     PULL_ROWS, PUSH_TABLES, PULL_TABLES, PUSH_DENSE_BATCH,
//     PULL_DENSE_BATCH, PING and garbage frame lists),
//     run exactly as the data plane's threads run them (DataPlane::RunOne);
//   - the gRPC service (PushGradient, PullTensor, PullModel, CreateTensors,
//     ListTensors) over a real gRPC server on 127.0.0.1, so that the
//     streaming pulls are covered too.
//
// The shard is shard 0 of 2 with split_threshold_bytes = 1024, holding:
// "big" {64, 16} dense, split (this shard holds rows [0, 32)); "w" {8, 4} and
// "b" {5} dense, whole here; "other" {6, 3} dense, whole on shard 1;
// "table" {1000, 4} and "emb" {0, 4} embedding tables, "pol" {0, 4}, a
// table with a memory policy (see PolicySpec), and "tier" {0, 4}, a tiered
// one (TierSpec: rows beyond 4 on disk, read back on demand). Each has its own
// optimizer and a UNIFORM initializer with its own seed. Making a shard costs
// about 0.1 s (RocksDB), so one serves kInputsPerShard inputs (fewer if its
// state grows large) before it is made anew. A failing input usually fails
// on its own too (every check compares a request with the state just before
// it, whatever that state is); a crash file is replayed on a fresh shard.
//
// Checked around every request, from a snapshot of the whole state (every
// part's info, row ids, and every value, read straight from the TensorStore):
//   1. a request that fails changes nothing (byte-identical snapshot) and
//      says why clearly (never OK-looking, UNKNOWN, INTERNAL or a deadline;
//      data-plane rejections carry a reason);
//   2. a push that succeeds changes only the tensor it names, only the rows
//      it names, bumps that part's version by exactly one (unless skipped)
//      and reports that version;
//   3. a pull (or ping, or list) changes nothing and creates no row; what it
//      returns is bit for bit the named tensor's rows from the snapshot (or,
//      for embedding rows never pushed, their initial values, the same on a
//      second read), with the snapshot's version;
//   4. every chunk of a PullTensor / PullModel stream matches the snapshot
//      of the tensor it belongs to, at its offset or row ids, and a complete
//      stream covers the whole part (PullModel: every part, in order);
//   5. a CreateTensors that succeeds only adds parts its specs name, with
//      their specs and initial values, as many as it says it created;
//   6. neither the state nor a pull ever holds NaN or Inf.
//
// Input format. The input is read with FuzzedDataProvider (FDP): integers
// come off the END of the input (the last byte first, most significant
// first), byte strings off the FRONT. Every field is read whatever the
// shard's state, so an input means the same requests in any state;
// make_state_seeds.py writes inputs in this format. In order:
//
//   repeat until the input is used up, at most kMaxOps times:
//     op        u8 in [0, 16] (enum Op), then the op's fields:
//   DP_PUSH_DENSE    tensor rid row_begin=X row_count=X row_size count values
//                    layout
//   DP_PULL_DENSE    tensor rid row_begin=X row_count=X row_size layout
//   DP_PUSH_ROWS     tensor rid ids row_count row_size count values layout
//   DP_PULL_ROWS     tensor rid ids row_count row_size layout
//   DP_PING          rid layout
//   DP_RAW           header_mode u8[0,3]: 0 garbage (len u16[0,256], bytes);
//                    1 any header (op u8, tensor, row_begin=X row_count=X
//                    row_size=X); 2 the same cut to (u8 % size) bytes;
//                    3 none. Then n u8[0,3] frames (len u16[0,512], bytes)
//   GRPC_PUSH_DENSE  tensor row_begin=X rows=X count values trim clock=u8
//   GRPC_PUSH_ROWS   tensor ids count values trim clock=u8
//   GRPC_PULL_TENSOR tensor with_ids u8[0,2] (0: none, else ids) chunk
//   GRPC_PULL_MODEL  chunk
//   GRPC_CREATE      n u8[0,4], n x spec
//   GRPC_LIST        (nothing)
//   GRPC_INITIALIZE  tensor row_begin=X count values trim
//   DP_PUSH_TABLES   rid n u8[0,4], n x (tensor ids row_count row_size count
//                    values), layout
//   DP_PULL_TABLES   rid n u8[0,4], n x (tensor ids row_count row_size),
//                    layout
//   DP_PUSH_DENSE_BATCH  rid n u8[0,4], n x (tensor row_begin=X row_count=X
//                    row_size count values), layout
//   DP_PULL_DENSE_BATCH  rid n u8[0,4], n x (tensor row_begin=X row_count=X
//                    row_size), layout
//
//   tensor    u8[0,9]: kNames[i], or 9: len u8[0,64], that many bytes
//   rid       u8: the request id
//   X         Extreme(): u8[0,23] picks 0, 1, -1, INT64_MAX, INT64_MAX-63,
//             INT64_MIN, ..., or values just inside or outside the part's
//             rows [lo, hi) (the table in Extreme); 18: any i64;
//             19: hi + i8[-4,4]; 20..23: lo + u8[0,63]
//   row_count u8[0,7]: 0..5 the number of ids, 6: X, 7: ids + 1
//   row_size  u8[0,3]: 0 unset, 1..2 the tensor's, 3: X
//   ids       n u8[0,64], owned bool (moves each id to the next one this
//             shard owns), n x (u8[0,15]: 0, UINT64_MAX, UINT64_MAX-1, 2^63,
//             INT64_MAX, rows, rows-1, any u64, 8..10: an existing row
//             (u16 index), 11..15: u16[0,1999])
//   count     u8[0,7]: 0..4 exactly the rows' floats, 5: one row more,
//             6: one float less, 7: u16[0,4096] floats
//   values    u8[0,3]: 0 k u8[1,32] floats, repeated; 1 smooth (scale u8);
//             2 smooth (scale u8) and one float at (u16 % n); 3 zeros
//   float     u8[0,15]: NaN, +Inf, -Inf, signalling NaN, -NaN, any bits
//             (u32), -0, a denormal, 8..15: u16 mapped onto [-1, 1]
//   layout    u8[0,9]: 0..6 as is, 7 one frame more (len u8[0,16], bytes),
//             8 one payload frame less (one more if none), 9 u8[1,3] bytes
//             off the last frame
//   trim      u8[0,7]: 5..7 cut 1..3 bytes off the values
//   chunk     u8[0,9]: 0, -1, INT64_MAX, INT64_MIN, 1, 3, 2^22, 2^22+1,
//             8..9: u16[1,1024]
//   spec      form u8[0,7]: 0 a seeded spec (u8[0,5]), 1 the same with
//             another seed (a conflict), else FuzzedSpec: name=tensor,
//             kind u8[0,7], rank u8[0,9], dims, initializer, optimizer
//
// Caveat: finite gradients beyond 1e6 are scaled down: a gradient near
// FLT_MAX is finite, accepted, and can overflow a parameter to Inf
// (docs/reliability.md). Everything else goes in as the fuzzer makes it:
// extreme initializer parameters (NaN, Inf, +-3e38) and rows larger than a
// message, which the shard must refuse (both were accepted, and the second
// crashed a gRPC pull, until the fuzzer found them).

#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "glog/logging.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/grpcpp.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/reject_reason.h"
#include "ps/server/data_plane.h"
#include "ps/server/ps_service.h"
#include "ps/server/shard.h"
#include "ps/spec/initializer.h"
#include "ps/spec/placement.h"
#include "tessera/v1/data.pb.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace {

namespace v1 = tessera::v1;
using v1::DataHeader;
using v1::TensorSpec;

constexpr int kMaxOps = 16;
constexpr int kNumShards = 2;
constexpr int64_t kMaxMessageBytes = 1 << 20;
// Floats one generated push carries at most.
constexpr int64_t kMaxFloats = 8192;
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
// Inputs one shard serves before it is made anew, and the size of state
// (parts, floats) beyond which it is made anew sooner.
constexpr int kInputsPerShard = 100;
constexpr size_t kMaxParts = 24;
constexpr size_t kMaxStateFloats = 1 << 16;

// What the current operation is, printed when a check fails.
std::string& CurrentOp() {
  static auto* op = new std::string;
  return *op;
}

// Inputs the current shard served before this one: a crash file replays
// on a fresh shard, so with earlier inputs it may not fail on its own.
int& EarlierInputs() {
  static int n = 0;
  return n;
}

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr,                                                      \
              "%s:%d: check failed: %s\n  during: %s\n  after %d earlier " \
              "inputs on this shard\n",                                    \
              __FILE__, __LINE__, #cond, CurrentOp().c_str(),              \
              EarlierInputs());                                            \
      abort();                                                             \
    }                                                                      \
  } while (0)

enum Op : uint8_t {
  kDpPushDense = 0,
  kDpPullDense,
  kDpPushRows,
  kDpPullRows,
  kDpPing,
  kDpRaw,
  kGrpcPushDense,
  kGrpcPushRows,
  kGrpcPullTensor,
  kGrpcPullModel,
  kGrpcCreate,
  kGrpcList,
  kGrpcInitialize,
  kDpPushTables,
  kDpPullTables,
  kDpPushDenseBatch,
  kDpPullDenseBatch,
  kNumOps,
};

// Names the inputs pick by index: the seeded tensors, then names free for
// CreateTensors ("new0" and "new1" would be whole on shard 0, "dense" on
// shard 1).
const char* const kNames[] = {"big", "w",    "b",    "other", "table",
                              "emb", "new0", "new1", "dense"};
constexpr int kNumNames = sizeof(kNames) / sizeof(kNames[0]);

TensorSpec Spec(const std::string& name, std::vector<int64_t> shape,
                v1::OptimizerConfig::Kind optimizer, uint64_t seed,
                bool embedding = false) {
  TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  spec.set_kind(embedding ? TensorSpec::EMBEDDING : TensorSpec::DENSE);
  spec.mutable_initializer()->set_kind(v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-0.5f);
  spec.mutable_initializer()->set_high(0.5f);
  spec.mutable_initializer()->set_seed(seed);
  spec.mutable_optimizer()->set_kind(optimizer);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  if (optimizer == v1::OptimizerConfig::MOMENTUM) {
    spec.mutable_optimizer()->set_momentum(0.9f);
  }
  return spec;
}

// "pol" {0, 4}, a table with a memory policy: a row is admitted by its
// second push and the shard keeps at most 6 rows (evicting by deletion).
// Named only by the tensor field's free form (9, 3, "pol"), so that inputs
// naming the other tensors mean what they meant before it was added.
TensorSpec PolicySpec() {
  TensorSpec spec = Spec("pol", {0, 4}, v1::OptimizerConfig::SGD, 107, true);
  spec.mutable_memory_policy()->set_admit_after_pushes(2);
  spec.mutable_memory_policy()->set_max_rows(6);
  return spec;
}

// "tier" {0, 4}, a tiered table: the shard keeps about 4 of its rows in
// memory, the rest on disk (EVICTION_DISK). With no flusher thread its rows
// become evictable only when a flush runs: a whole-table pull of it flushes
// the shard first (Shard::ScanRows). Named only by the free form too.
TensorSpec TierSpec() {
  TensorSpec spec =
      Spec("tier", {0, 4}, v1::OptimizerConfig::ADAGRAD, 108, true);
  spec.mutable_memory_policy()->set_max_rows(4);
  spec.mutable_memory_policy()->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  return spec;
}

const std::vector<TensorSpec>& Seeded() {
  static const auto* specs = new std::vector<TensorSpec>{
      Spec("big", {64, 16}, v1::OptimizerConfig::ADAM, 101),
      Spec("w", {8, 4}, v1::OptimizerConfig::MOMENTUM, 102),
      Spec("b", {5}, v1::OptimizerConfig::SGD, 103),
      Spec("other", {6, 3}, v1::OptimizerConfig::ADAGRAD, 104),
      Spec("table", {1000, 4}, v1::OptimizerConfig::ADAGRAD, 105, true),
      Spec("emb", {0, 4}, v1::OptimizerConfig::ADAM, 106, true),
      PolicySpec(),
      TierSpec(),
  };
  return *specs;
}

// The current shard's storage (the disk tier of "tier"); set by Reset. The
// fuzzer is single-threaded.
tessera::ShardStorage* g_storage = nullptr;

// Forwards every rpc to the current shard's service: the gRPC server lives
// as long as the process, the shard behind it is made anew now and then.
// No rpc is in flight while the target changes (calls are synchronous).
class Forwarder final : public v1::ParameterServer::Service {
 public:
  void set_target(tessera::ParameterServerService* target) {
    target_.store(target);
  }

  grpc::Status CreateTensors(grpc::ServerContext* context,
                             const v1::CreateTensorsRequest* request,
                             v1::CreateTensorsResponse* response) override {
    return target_.load()->CreateTensors(context, request, response);
  }
  grpc::Status ListTensors(grpc::ServerContext* context,
                           const v1::ListTensorsRequest* request,
                           v1::ListTensorsResponse* response) override {
    return target_.load()->ListTensors(context, request, response);
  }
  grpc::Status PullTensor(
      grpc::ServerContext* context, const v1::PullTensorRequest* request,
      grpc::ServerWriter<v1::TensorChunk>* writer) override {
    return target_.load()->PullTensor(context, request, writer);
  }
  grpc::Status PullModel(grpc::ServerContext* context,
                         const v1::PullModelRequest* request,
                         grpc::ServerWriter<v1::TensorChunk>* writer) override {
    return target_.load()->PullModel(context, request, writer);
  }
  grpc::Status PushGradient(grpc::ServerContext* context,
                            const v1::PushGradientRequest* request,
                            v1::PushGradientResponse* response) override {
    return target_.load()->PushGradient(context, request, response);
  }
  grpc::Status GetShardInfo(grpc::ServerContext* context,
                            const v1::GetShardInfoRequest* request,
                            v1::ShardInfo* response) override {
    return target_.load()->GetShardInfo(context, request, response);
  }
  grpc::Status InitializeTensor(
      grpc::ServerContext* context, const v1::InitializeTensorRequest* request,
      v1::InitializeTensorResponse* response) override {
    return target_.load()->InitializeTensor(context, request, response);
  }

 private:
  std::atomic<tessera::ParameterServerService*> target_{nullptr};
};

class Fixture {
 public:
  static Fixture& Get() {
    static Fixture* f = new Fixture;
    return *f;
  }

  // A fresh shard holding only the seeded tensors, in a fresh data dir.
  // Costs about 0.1 s (RocksDB's open and close), so it is not done for
  // every input.
  void Reset() {
    forwarder_.set_target(nullptr);
    service_.reset();
    shard_.reset();
    registry_.reset();
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
    tessera::ShardOptions options;
    options.shard_index = 0;
    options.placement.set_num_shards(kNumShards);
    options.placement.set_split_threshold_bytes(1024);
    options.data_dir = data_dir_;
    options.flush_interval = absl::ZeroDuration();  // No flusher thread.
    options.max_message_bytes = kMaxMessageBytes;
    options.max_memory_bytes = 1 << 20;
    options.block_floats = 64;
    options.max_ids_per_request = 4096;
    registry_ = std::make_unique<tessera::metrics::Registry>();
    shard_ = std::make_unique<tessera::Shard>(options, registry_.get());
    FUZZ_CHECK(shard_->Load().ok());
    g_storage = shard_->storage();
    FUZZ_CHECK(shard_->CreateTensors(Seeded()).ok());
    service_ = std::make_unique<tessera::ParameterServerService>(shard_.get());
    forwarder_.set_target(service_.get());
    served_ = 0;
  }

  // Whether the shard is due for a Reset() before the next input.
  bool due() const { return shard_ == nullptr || served_ >= kInputsPerShard; }
  // Inputs the shard served since its Reset().
  int served() const { return served_; }
  void CountInput() { ++served_; }

  tessera::Shard* shard() { return shard_.get(); }
  tessera::TensorStore* store() { return shard_->store(); }
  v1::ParameterServer::Stub* stub() { return stub_.get(); }

 private:
  Fixture() {
    const char* base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string templ = std::string(base) + "/tessera-state-fuzzer-XXXXXX";
    FUZZ_CHECK(mkdtemp(templ.data()) != nullptr);
    dir_ = templ;
    data_dir_ = dir_ + "/data";
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Get().dir_, ec);
    });

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&forwarder_);
    server_ = builder.BuildAndStart();
    FUZZ_CHECK(server_ != nullptr && port > 0);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    stub_ = v1::ParameterServer::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials(), args));
  }

  std::string dir_;
  std::string data_dir_;
  Forwarder forwarder_;  // Outlives server_ (never destroyed).
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ParameterServer::Stub> stub_;
  std::unique_ptr<tessera::metrics::Registry> registry_;
  std::unique_ptr<tessera::Shard> shard_;
  std::unique_ptr<tessera::ParameterServerService> service_;
  int served_ = 0;
};

// ---------------------------------------------------------------------------
// The state.

struct PartState {
  v1::TensorPartInfo info;
  std::string info_bytes;     // `info` serialized: compared bit for bit
  std::vector<uint64_t> ids;  // embedding: RowIds(), sorted
  std::vector<float> values;  // dense: rows [row_begin, row_end);
                              // embedding: the rows of `ids`, in order
  bool embedding() const { return info.spec().kind() == TensorSpec::EMBEDDING; }
  int64_t row_size() const {
    return embedding() ? info.spec().shape(1) : tessera::RowSize(info.spec());
  }
};
using State = std::map<std::string, PartState>;

// The ids of every row of `name`: in memory, and for a table that reads the
// disk, on disk too (rows evicted there are part of the state).
std::vector<uint64_t> AllRowIds(tessera::TensorStore* store,
                                const std::string& name) {
  auto ids = store->RowIds(name);
  FUZZ_CHECK(ids.ok());
  if (!store->ReadsDisk(name)) return *std::move(ids);
  std::set<uint64_t> all(ids->begin(), ids->end());
  FUZZ_CHECK(g_storage
                 ->WalkStoredRows(name, tessera::RowSource::kMaxRowsPerCall,
                                  [&](const tessera::StoredRowBatch& batch) {
                                    for (const auto& [id, row] : batch.rows) {
                                      all.insert(id);
                                    }
                                    return absl::OkStatus();
                                  })
                 .ok());
  return std::vector<uint64_t>(all.begin(), all.end());
}

State Snapshot(tessera::TensorStore* store) {
  State state;
  for (const v1::TensorPartInfo& info : store->List()) {
    PartState& p = state[info.spec().name()];
    p.info = info;
    FUZZ_CHECK(info.SerializeToString(&p.info_bytes));
    const std::string& name = info.spec().name();
    if (p.embedding()) {
      // A tiered table's rows in memory and on disk: its num_rows counts
      // both. (Reading them back may move rows between the two; the state
      // is the same.)
      p.ids = AllRowIds(store, name);
      FUZZ_CHECK(static_cast<int64_t>(p.ids.size()) == info.num_rows());
      p.values.resize(p.ids.size() * p.row_size());
      FUZZ_CHECK(store->PullRows(name, p.ids, absl::MakeSpan(p.values)).ok());
    } else {
      FUZZ_CHECK(info.row_begin() < info.row_end());
      p.values.resize((info.row_end() - info.row_begin()) * p.row_size());
      FUZZ_CHECK(
          store->PullDense(name, info.row_begin(), absl::MakeSpan(p.values))
              .ok());
    }
  }
  return state;
}

bool SameBits(absl::Span<const float> a, absl::Span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

bool SamePart(const PartState& a, const PartState& b) {
  return a.info_bytes == b.info_bytes && a.ids == b.ids &&
         SameBits(a.values, b.values);
}

// Every part of `before` other than `except` is in `after`, identical, and
// `after` has no other parts but `except`.
void CheckOthersUnchanged(const State& before, const State& after,
                          const std::set<std::string>& except) {
  for (const auto& [name, part] : before) {
    if (except.count(name)) continue;
    auto it = after.find(name);
    FUZZ_CHECK(it != after.end());
    FUZZ_CHECK(SamePart(part, it->second));
  }
  for (const auto& [name, part] : after) {
    FUZZ_CHECK(except.count(name) || before.count(name) == 1);
  }
}

void CheckOthersUnchanged(const State& before, const State& after,
                          const std::string& except) {
  CheckOthersUnchanged(before, after, std::set<std::string>{except});
}

void CheckUnchanged(const State& before, const State& after) {
  FUZZ_CHECK(before.size() == after.size());
  CheckOthersUnchanged(before, after, "");
}

size_t Floats(const State& state) {
  size_t n = 0;
  for (const auto& [name, part] : state) n += part.values.size();
  return n;
}

void CheckFinite(const State& state) {
  for (const auto& [name, part] : state) {
    for (float v : part.values) FUZZ_CHECK(std::isfinite(v));
  }
}

void CheckClearError(absl::StatusCode code) {
  FUZZ_CHECK(code != absl::StatusCode::kOk);
  FUZZ_CHECK(code != absl::StatusCode::kUnknown);
  FUZZ_CHECK(code != absl::StatusCode::kInternal);
  // A hung request is a finding too (the deadline is seconds).
  FUZZ_CHECK(code != absl::StatusCode::kDeadlineExceeded);
}

// Our own oracle, independent of ps/common/checked_math.h.
bool Within(int64_t begin, int64_t count, int64_t lo, int64_t hi) {
  if (count < 0 || begin < lo || begin > hi) return false;
  return static_cast<uint64_t>(count) <=
         static_cast<uint64_t>(hi) - static_cast<uint64_t>(begin);
}

const PartState* Find(const State& state, const std::string& name) {
  auto it = state.find(name);
  return it == state.end() ? nullptr : &it->second;
}

// Index of `id` in the part's (sorted) ids, or -1.
int64_t RowIndex(const PartState& part, uint64_t id) {
  auto it = std::lower_bound(part.ids.begin(), part.ids.end(), id);
  if (it == part.ids.end() || *it != id) return -1;
  return it - part.ids.begin();
}

void CheckOwnedId(const PartState& part, uint64_t id) {
  const int64_t max_rows = part.info.spec().shape(0);
  FUZZ_CHECK(max_rows == 0 || id < static_cast<uint64_t>(max_rows));
  FUZZ_CHECK(tessera::ShardOfRow(id, kNumShards) == 0);
}

// `values` read for `ids` of `part` (as it was before the read) with
// `version`: each row is the snapshot's, or for a row never pushed its
// initial values, and a second read of the store gives the same.
void CheckRowsRead(tessera::TensorStore* store, const PartState& part,
                   absl::Span<const uint64_t> ids,
                   absl::Span<const float> values, int64_t version) {
  FUZZ_CHECK(part.embedding());
  const int64_t dim = part.row_size();
  FUZZ_CHECK(values.size() == ids.size() * dim);
  FUZZ_CHECK(version == part.info.version());
  std::vector<float> initial;
  for (size_t i = 0; i < ids.size(); ++i) {
    CheckOwnedId(part, ids[i]);
    const float* expected = nullptr;
    const int64_t row = RowIndex(part, ids[i]);
    if (row >= 0) {
      expected = part.values.data() + row * dim;
    } else {
      initial.resize(dim);
      tessera::InitializeRows(part.info.spec(), ids[i],
                              absl::MakeSpan(initial));
      expected = initial.data();
    }
    FUZZ_CHECK(SameBits(values.subspan(i * dim, dim),
                        absl::MakeConstSpan(expected, dim)));
  }
  for (float v : values) FUZZ_CHECK(std::isfinite(v));
  std::vector<float> again(values.size());
  FUZZ_CHECK(
      store->PullRows(part.info.spec().name(), ids, absl::MakeSpan(again))
          .ok());
  FUZZ_CHECK(SameBits(again, values));
}

// `values` read from rows [row_begin, row_begin + rows) of dense `part` with
// `version`: bit-equal to the snapshot's rows.
void CheckDenseRead(const PartState& part, int64_t row_begin, int64_t rows,
                    absl::Span<const float> values, int64_t version) {
  FUZZ_CHECK(!part.embedding());
  const int64_t lo = part.info.row_begin();
  FUZZ_CHECK(Within(row_begin, rows, lo, part.info.row_end()));
  FUZZ_CHECK(rows > 0);
  const int64_t row_size = part.row_size();
  FUZZ_CHECK(static_cast<int64_t>(values.size()) == rows * row_size);
  FUZZ_CHECK(version == part.info.version());
  FUZZ_CHECK(SameBits(
      values, absl::MakeConstSpan(part.values)
                  .subspan((row_begin - lo) * row_size, rows * row_size)));
}

// A push to `name` that succeeded with `version` / `skipped`: only that part
// changed, by one version, and only in the rows pushed.
struct Pushed {
  std::string name;
  bool rows = false;          // embedding rows (ids) or dense rows
  int64_t row_begin = 0;      // dense
  int64_t num_rows = 0;       // dense
  std::vector<uint64_t> ids;  // embedding
  int64_t version = 0;
  bool skipped = false;
};

// A push to a table with a memory policy: a new id may not be admitted yet
// and rows it does not name may be evicted, so it is checked with weaker
// invariants: only pushed ids appear, a pushed row that existed still does
// (a push never evicts the rows it updates), the table stays within
// max_rows (a tiered table: keeps every row, in memory or on disk), and rows
// not pushed that remain kept their values.
void CheckPolicyPushedPart(const PartState& b, const PartState& a,
                           const std::set<uint64_t>& pushed) {
  const v1::MemoryPolicy& policy = b.info.spec().memory_policy();
  const std::set<uint64_t> before(b.ids.begin(), b.ids.end());
  const std::set<uint64_t> after(a.ids.begin(), a.ids.end());
  for (uint64_t id : pushed) {
    CheckOwnedId(b, id);
    if (before.count(id)) FUZZ_CHECK(after.count(id));
    if (policy.admit_after_pushes() <= 1) FUZZ_CHECK(after.count(id));
  }
  for (uint64_t id : after) FUZZ_CHECK(before.count(id) || pushed.count(id));
  if (policy.eviction() == v1::MemoryPolicy::EVICTION_DISK) {
    // A tiered table loses no row (evicted rows are on disk, in the state),
    // and a row read back from disk is updated, not created afresh: its
    // values are checked by the caller's per-row comparison below.
    for (uint64_t id : before) FUZZ_CHECK(after.count(id));
  } else if (policy.max_rows() > 0) {
    FUZZ_CHECK(static_cast<int64_t>(a.ids.size()) <= policy.max_rows());
  }
  FUZZ_CHECK(a.info.num_rows() == static_cast<int64_t>(a.ids.size()));
  const int64_t row_size = b.row_size();
  for (size_t i = 0; i < b.ids.size(); ++i) {
    if (pushed.count(b.ids[i])) continue;
    const int64_t j = RowIndex(a, b.ids[i]);
    if (j < 0) continue;  // evicted
    FUZZ_CHECK(SameBits(
        absl::MakeConstSpan(a.values).subspan(j * row_size, row_size),
        absl::MakeConstSpan(b.values).subspan(i * row_size, row_size)));
  }
}

// What `push` did to its own part; the caller checks the other parts.
void CheckPushedPart(const State& before, const State& after,
                     const Pushed& push) {
  const PartState* b = Find(before, push.name);
  const PartState* a = Find(after, push.name);
  FUZZ_CHECK(b != nullptr && a != nullptr);
  FUZZ_CHECK(b->embedding() == push.rows);
  if (push.skipped) {
    FUZZ_CHECK(SamePart(*a, *b));
    FUZZ_CHECK(push.version == b->info.version());
    return;
  }
  FUZZ_CHECK(a->info.version() == b->info.version() + 1);
  FUZZ_CHECK(push.version == a->info.version());
  v1::TensorPartInfo same = a->info;  // all but version and num_rows
  same.set_version(b->info.version());
  same.set_num_rows(b->info.num_rows());
  FUZZ_CHECK(same.SerializeAsString() == b->info_bytes);
  const int64_t row_size = b->row_size();
  if (!push.rows) {
    const int64_t lo = b->info.row_begin();
    FUZZ_CHECK(push.num_rows > 0);
    FUZZ_CHECK(Within(push.row_begin, push.num_rows, lo, b->info.row_end()));
    FUZZ_CHECK(a->values.size() == b->values.size());
    const size_t first = (push.row_begin - lo) * row_size;
    const size_t end = first + push.num_rows * row_size;
    auto av = absl::MakeConstSpan(a->values);
    auto bv = absl::MakeConstSpan(b->values);
    FUZZ_CHECK(SameBits(av.subspan(0, first), bv.subspan(0, first)));
    FUZZ_CHECK(SameBits(av.subspan(end), bv.subspan(end)));
    return;
  }
  // Embedding: the pushed ids now exist, nothing else appeared, and rows not
  // pushed kept their values.
  std::set<uint64_t> pushed(push.ids.begin(), push.ids.end());
  FUZZ_CHECK(!pushed.empty());
  if (b->info.spec().has_memory_policy()) {
    CheckPolicyPushedPart(*b, *a, pushed);
    return;
  }
  std::set<uint64_t> expected_ids(b->ids.begin(), b->ids.end());
  for (uint64_t id : pushed) {
    CheckOwnedId(*b, id);
    expected_ids.insert(id);
  }
  FUZZ_CHECK(std::vector<uint64_t>(expected_ids.begin(), expected_ids.end()) ==
             a->ids);
  FUZZ_CHECK(a->info.num_rows() == static_cast<int64_t>(a->ids.size()));
  for (size_t i = 0; i < b->ids.size(); ++i) {
    if (pushed.count(b->ids[i])) continue;
    const int64_t j = RowIndex(*a, b->ids[i]);
    FUZZ_CHECK(j >= 0);
    FUZZ_CHECK(SameBits(
        absl::MakeConstSpan(a->values).subspan(j * row_size, row_size),
        absl::MakeConstSpan(b->values).subspan(i * row_size, row_size)));
  }
}

void CheckPush(const State& before, const State& after, const Pushed& push) {
  CheckOthersUnchanged(before, after, push.name);
  CheckPushedPart(before, after, push);
}

// ---------------------------------------------------------------------------
// Reading the input. Every helper consumes the same bytes whatever the state.

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? kI64Max : kI64Min;
}

int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_sub_overflow(a, b, &r)) return r;
  return b < 0 ? kI64Max : kI64Min;
}

// A row offset or count, often extreme, around a part's rows [lo, hi).
int64_t Extreme(FuzzedDataProvider& fdp, int64_t lo, int64_t hi) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 23);
  const int64_t fixed[] = {
      0,
      1,
      -1,
      kI64Max,
      kI64Max - 63,
      kI64Min,
      kI64Min + 1,
      std::numeric_limits<int32_t>::max(),
      int64_t{1} << 32,
      kI64Max / 4 + 1,   // x sizeof(float) overflows
      kI64Max / 16 + 1,  // x a row of 16 floats overflows
      lo,
      SatAdd(lo, -1),
      hi,
      SatAdd(hi, -1),
      SatAdd(hi, 1),
      SatSub(hi, lo),
      kI64Max - 15,
  };
  constexpr int kFixed = sizeof(fixed) / sizeof(fixed[0]);  // 18
  if (sel < kFixed) return fixed[sel];
  if (sel == 18) return fdp.ConsumeIntegral<int64_t>();
  if (sel == 19) return SatAdd(hi, fdp.ConsumeIntegralInRange<int8_t>(-4, 4));
  return SatAdd(lo, fdp.ConsumeIntegralInRange<uint8_t>(0, 63));
}

// What the harness knows of the tensor a request names (nothing if absent).
struct Target {
  std::string name;
  const PartState* part = nullptr;
  int64_t lo = 0, hi = 0;  // dense rows; embedding [0, shape[0])
  int64_t row_size = 1;
};

// `ascii`: a name for gRPC, where a proto3 string that is not UTF-8 fails
// to serialize (INTERNAL from gRPC itself, before the shard sees it).
Target PickTensor(FuzzedDataProvider& fdp, const State& state, bool ascii) {
  Target t;
  const uint8_t pick = fdp.ConsumeIntegralInRange<uint8_t>(0, kNumNames);
  if (pick < kNumNames) {
    t.name = kNames[pick];
  } else {
    const uint8_t len = fdp.ConsumeIntegralInRange<uint8_t>(0, 64);
    t.name = fdp.ConsumeBytesAsString(len);
    if (ascii) {
      for (char& c : t.name) c = static_cast<char>(c & 0x7f);
    }
  }
  t.part = Find(state, t.name);
  if (t.part != nullptr) {
    t.lo = t.part->info.row_begin();
    t.hi = t.part->info.row_end();
    t.row_size = t.part->row_size();
  }
  return t;
}

float FromBits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

float Float(FuzzedDataProvider& fdp) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 15);
  if (sel == 5) {
    float f = FromBits(fdp.ConsumeIntegral<uint32_t>());
    // See the caveat at the top: huge finite gradients are scaled down.
    if (std::isfinite(f) && std::fabs(f) > 1e6f) f = std::fmod(f, 1e6f);
    return f;
  }
  // NaN, +Inf, -Inf, a signalling NaN, -NaN with a payload, (5: any bits),
  // -0, the smallest denormal.
  static constexpr uint32_t kBits[] = {0x7fc00000u, 0x7f800000u, 0xff800000u,
                                       0x7f800001u, 0xffc00001u, 0,
                                       0x80000000u, 0x00000001u};
  if (sel < 8) return FromBits(kBits[sel]);
  return fdp.ConsumeIntegral<uint16_t>() / 32767.5f - 1.0f;
}

std::vector<float> Values(FuzzedDataProvider& fdp, size_t n) {
  std::vector<float> v(n, 0.0f);
  const uint8_t mode = fdp.ConsumeIntegralInRange<uint8_t>(0, 3);
  if (mode == 0) {
    const uint8_t k = fdp.ConsumeIntegralInRange<uint8_t>(1, 32);
    std::vector<float> pattern;
    for (int i = 0; i < k; ++i) pattern.push_back(Float(fdp));
    for (size_t i = 0; i < n; ++i) v[i] = pattern[i % k];
  } else if (mode == 1 || mode == 2) {
    const float scale = (fdp.ConsumeIntegral<uint8_t>() - 128) / 128.0f;
    for (size_t i = 0; i < n; ++i) {
      v[i] =
          scale * static_cast<float>(static_cast<int>(i * 37 % 17) - 8) / 8.0f;
    }
    if (mode == 2) {
      const uint16_t at = fdp.ConsumeIntegral<uint16_t>();
      const float special = Float(fdp);
      if (n > 0) v[at % n] = special;
    }
  }
  return v;
}

// The floats of `rows` rows of `row_size`, or one row if that is no size a
// harness can send.
int64_t ExactFloats(int64_t rows, int64_t row_size) {
  if (row_size <= 0 || row_size > kMaxFloats) return 1;
  if (rows < 0 || rows > kMaxFloats / row_size) return row_size;
  return rows * row_size;
}

size_t Count(FuzzedDataProvider& fdp, int64_t exact, int64_t row_size) {
  const uint8_t mode = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  int64_t n = exact;
  if (mode == 5) n = exact + std::min<int64_t>(row_size, kMaxFloats);
  if (mode == 6) n = exact > 0 ? exact - 1 : 1;
  if (mode == 7) n = fdp.ConsumeIntegralInRange<uint16_t>(0, 4096);
  return static_cast<size_t>(std::clamp<int64_t>(n, 0, 2 * kMaxFloats));
}

std::vector<uint64_t> Ids(FuzzedDataProvider& fdp, const Target& t) {
  const uint8_t n = fdp.ConsumeIntegralInRange<uint8_t>(0, 64);
  const bool owned = fdp.ConsumeBool();
  const int64_t max_rows = t.part != nullptr && t.part->embedding()
                               ? t.part->info.spec().shape(0)
                               : 0;
  std::vector<uint64_t> ids;
  for (int i = 0; i < n; ++i) {
    const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 15);
    const uint64_t fixed[] = {
        0,
        kU64Max,
        kU64Max - 1,
        uint64_t{1} << 63,
        kI64Max,
        static_cast<uint64_t>(max_rows),
        max_rows > 0 ? max_rows - 1 : uint64_t{1} << 40,
    };
    uint64_t id = 0;
    if (sel < 7) {
      id = fixed[sel];
    } else if (sel == 7) {
      id = fdp.ConsumeIntegral<uint64_t>();
    } else if (sel <= 10) {  // an existing row, if any
      const uint16_t k = fdp.ConsumeIntegral<uint16_t>();
      const bool have = t.part != nullptr && !t.part->ids.empty();
      id = have ? t.part->ids[k % t.part->ids.size()] : k;
    } else {
      id = fdp.ConsumeIntegralInRange<uint16_t>(0, 1999);
    }
    if (owned) {
      while (tessera::ShardOfRow(id, kNumShards) != 0) ++id;
    }
    ids.push_back(id);
  }
  return ids;
}

int64_t ChunkFloats(FuzzedDataProvider& fdp) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 9);
  static constexpr int64_t kFixed[] = {
      0, -1, kI64Max, kI64Min, 1, 3, int64_t{1} << 22, (int64_t{1} << 22) + 1};
  if (sel < 8) return kFixed[sel];
  return fdp.ConsumeIntegralInRange<uint16_t>(1, 1024);
}

std::string Bytes(absl::Span<const float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::string Bytes(absl::Span<const uint64_t> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8);
}

std::vector<uint64_t> IdsOf(const std::string& frame) {
  std::vector<uint64_t> ids(frame.size() / 8);
  if (!ids.empty()) memcpy(ids.data(), frame.data(), ids.size() * 8);
  return ids;
}

// ---------------------------------------------------------------------------
// The data plane.

void Layout(FuzzedDataProvider& fdp, std::vector<std::string>* frames) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 9);
  if (sel == 7) {
    const uint8_t len = fdp.ConsumeIntegralInRange<uint8_t>(0, 16);
    frames->push_back(fdp.ConsumeBytesAsString(len));
  } else if (sel == 8) {
    if (frames->size() > 1) {
      frames->pop_back();
    } else {
      frames->push_back(std::string(8, '\0'));
    }
  } else if (sel == 9) {
    const uint8_t trim = fdp.ConsumeIntegralInRange<uint8_t>(1, 3);
    std::string& last = frames->back();
    last.resize(last.size() - std::min<size_t>(trim, last.size()));
  }
}

int64_t RowCountOfIds(FuzzedDataProvider& fdp, const Target& t, size_t ids) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  if (sel == 6) return Extreme(fdp, 0, t.hi - t.lo);
  if (sel == 7) return static_cast<int64_t>(ids) + 1;
  return static_cast<int64_t>(ids);
}

int64_t RowSizeField(FuzzedDataProvider& fdp, const Target& t) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 3);
  if (sel == 0) return 0;
  if (sel == 3) return Extreme(fdp, 0, t.row_size);
  return t.row_size;
}

std::string Serialize(const DataHeader& h) {
  std::string s;
  FUZZ_CHECK(h.SerializeToString(&s));
  return s;
}

// Checks the reply to data-plane request `frames` against the state before
// and after it.
void CheckDataReply(tessera::TensorStore* store, const State& before,
                    const State& after, absl::Span<const std::string> frames,
                    const tessera::DataReply& reply) {
  FUZZ_CHECK(reply.header.status_code() ==
             static_cast<int>(reply.status.code()));
  FUZZ_CHECK(reply.header.shard_index() == 0);
  DataHeader h;
  const bool parsed =
      !frames.empty() && !frames[0].empty() && h.ParseFromString(frames[0]);
  if (!reply.status.ok()) {
    CheckClearError(reply.status.code());
    // Every rejection is counted under a reason.
    FUZZ_CHECK(tessera::RejectReasonOf(reply.status) != tessera::kReasonOther);
    FUZZ_CHECK(reply.values.empty());
    CheckUnchanged(before, after);
    return;
  }
  FUZZ_CHECK(parsed);
  FUZZ_CHECK(reply.header.request_id() == h.request_id());
  FUZZ_CHECK(reply.header.op() == h.op());
  const PartState* part = Find(before, h.tensor_name());
  switch (h.op()) {
    case DataHeader::PING:
      FUZZ_CHECK(frames.size() == 1);
      FUZZ_CHECK(reply.values.empty());
      CheckUnchanged(before, after);
      return;
    case DataHeader::PULL_DENSE:
      FUZZ_CHECK(frames.size() == 1);
      CheckUnchanged(before, after);
      FUZZ_CHECK(part != nullptr);
      CheckDenseRead(*part, h.row_begin(), h.row_count(), reply.values,
                     reply.header.version());
      return;
    case DataHeader::PULL_ROWS: {
      FUZZ_CHECK(frames.size() == 2);
      CheckUnchanged(before, after);
      FUZZ_CHECK(part != nullptr);
      const std::vector<uint64_t> ids = IdsOf(frames[1]);
      FUZZ_CHECK(static_cast<int64_t>(ids.size()) == h.row_count());
      CheckRowsRead(store, *part, ids, reply.values, reply.header.version());
      return;
    }
    case DataHeader::PUSH_DENSE: {
      FUZZ_CHECK(frames.size() == 2);
      FUZZ_CHECK(reply.values.empty());
      FUZZ_CHECK(part != nullptr);
      FUZZ_CHECK(h.row_count() > 0 &&
                 frames[1].size() == static_cast<uint64_t>(h.row_count()) *
                                         part->row_size() * 4);
      Pushed push;
      push.name = h.tensor_name();
      push.row_begin = h.row_begin();
      push.num_rows = h.row_count();
      push.version = reply.header.version();
      push.skipped = reply.header.skipped();
      CheckPush(before, after, push);
      return;
    }
    case DataHeader::PUSH_ROWS: {
      FUZZ_CHECK(frames.size() == 3);
      FUZZ_CHECK(reply.values.empty());
      FUZZ_CHECK(part != nullptr);
      Pushed push;
      push.name = h.tensor_name();
      push.rows = true;
      push.ids = IdsOf(frames[1]);
      FUZZ_CHECK(frames[2].size() == push.ids.size() * part->row_size() * 4);
      push.version = reply.header.version();
      push.skipped = reply.header.skipped();
      CheckPush(before, after, push);
      return;
    }
    case DataHeader::PUSH_TABLES:
    case DataHeader::PULL_TABLES: {
      // Every table, in order: its run of the frames, its version.
      const bool push = h.op() == DataHeader::PUSH_TABLES;
      FUZZ_CHECK(frames.size() == (push ? 3u : 2u));
      FUZZ_CHECK(reply.header.versions_size() == h.tables_size());
      FUZZ_CHECK(push == reply.values.empty());
      const std::vector<uint64_t> all_ids = IdsOf(frames[1]);
      size_t id_at = 0, float_at = 0;
      std::set<std::string> named;
      for (int i = 0; i < h.tables_size(); ++i) {
        const DataHeader::TableRows& run = h.tables(i);
        const PartState* p = Find(before, run.tensor_name());
        FUZZ_CHECK(p != nullptr && p->embedding());
        FUZZ_CHECK(run.row_size() == p->row_size());
        FUZZ_CHECK(named.insert(run.tensor_name()).second);
        FUZZ_CHECK(run.row_count() > 0 &&
                   id_at + run.row_count() <= all_ids.size());
        const std::vector<uint64_t> ids(
            all_ids.begin() + id_at, all_ids.begin() + id_at + run.row_count());
        id_at += ids.size();
        const size_t floats = ids.size() * p->row_size();
        if (push) {
          Pushed pushed;
          pushed.name = run.tensor_name();
          pushed.rows = true;
          pushed.ids = ids;
          pushed.version = reply.header.versions(i);
          pushed.skipped = reply.header.skipped();
          CheckPushedPart(before, after, pushed);
        } else {
          FUZZ_CHECK(float_at + floats <= reply.values.size());
          CheckRowsRead(
              store, *p, ids,
              absl::MakeConstSpan(reply.values).subspan(float_at, floats),
              reply.header.versions(i));
        }
        float_at += floats;
      }
      FUZZ_CHECK(id_at == all_ids.size());
      if (push) {
        FUZZ_CHECK(frames[2].size() == float_at * 4);
        CheckOthersUnchanged(before, after, named);
      } else {
        FUZZ_CHECK(float_at == reply.values.size());
        CheckUnchanged(before, after);
      }
      return;
    }
    case DataHeader::PUSH_DENSE_BATCH:
    case DataHeader::PULL_DENSE_BATCH: {
      // Every range, in order: its run of the values, its version.
      const bool push = h.op() == DataHeader::PUSH_DENSE_BATCH;
      FUZZ_CHECK(frames.size() == (push ? 2u : 1u));
      FUZZ_CHECK(h.tensor_name().empty());
      FUZZ_CHECK(reply.header.versions_size() == h.dense_ranges_size());
      FUZZ_CHECK(push == reply.values.empty());
      size_t float_at = 0;
      std::set<std::string> named;
      for (int i = 0; i < h.dense_ranges_size(); ++i) {
        const DataHeader::DenseRange& r = h.dense_ranges(i);
        const PartState* p = Find(before, r.tensor_name());
        FUZZ_CHECK(p != nullptr && !p->embedding());
        FUZZ_CHECK(r.row_size() == p->row_size());
        FUZZ_CHECK(named.insert(r.tensor_name()).second);
        FUZZ_CHECK(r.row_count() > 0);
        const size_t floats = r.row_count() * p->row_size();
        if (push) {
          Pushed pushed;
          pushed.name = r.tensor_name();
          pushed.row_begin = r.row_begin();
          pushed.num_rows = r.row_count();
          pushed.version = reply.header.versions(i);
          pushed.skipped = reply.header.skipped();
          CheckPushedPart(before, after, pushed);
        } else {
          FUZZ_CHECK(float_at + floats <= reply.values.size());
          CheckDenseRead(
              *p, r.row_begin(), r.row_count(),
              absl::MakeConstSpan(reply.values).subspan(float_at, floats),
              reply.header.versions(i));
        }
        float_at += floats;
      }
      if (push) {
        FUZZ_CHECK(frames[1].size() == float_at * 4);
        CheckOthersUnchanged(before, after, named);
      } else {
        FUZZ_CHECK(float_at == reply.values.size());
        CheckUnchanged(before, after);
      }
      return;
    }
    default:
      FUZZ_CHECK(false && "an unknown op succeeded");
  }
}

std::vector<std::string> DataRequest(FuzzedDataProvider& fdp, uint8_t op,
                                     const State& before) {
  std::vector<std::string> frames;
  DataHeader h;
  if (op == kDpPing) {
    h.set_request_id(fdp.ConsumeIntegral<uint8_t>());
    h.set_op(DataHeader::PING);
    frames.push_back(Serialize(h));
    Layout(fdp, &frames);
    CurrentOp() = absl::StrCat("data plane PING");
    return frames;
  }
  if (op == kDpRaw) {
    const uint8_t header_mode = fdp.ConsumeIntegralInRange<uint8_t>(0, 3);
    if (header_mode == 0) {
      const uint16_t len = fdp.ConsumeIntegralInRange<uint16_t>(0, 256);
      frames.push_back(fdp.ConsumeBytesAsString(len));
    } else if (header_mode <= 2) {
      h.set_request_id(9);
      h.set_op(static_cast<DataHeader::Op>(fdp.ConsumeIntegral<uint8_t>()));
      const Target t = PickTensor(fdp, before, false);
      h.set_tensor_name(t.name);
      h.set_row_begin(Extreme(fdp, t.lo, t.hi));
      h.set_row_count(Extreme(fdp, 0, t.hi - t.lo));
      h.set_row_size(Extreme(fdp, 0, t.row_size));
      std::string header = Serialize(h);
      if (header_mode == 2) {
        const uint8_t cut = fdp.ConsumeIntegral<uint8_t>();
        header.resize(header.empty() ? 0 : cut % header.size());
      }
      frames.push_back(header);
    }
    const uint8_t n = fdp.ConsumeIntegralInRange<uint8_t>(0, 3);
    for (int i = 0; i < n; ++i) {
      const uint16_t len = fdp.ConsumeIntegralInRange<uint16_t>(0, 512);
      frames.push_back(fdp.ConsumeBytesAsString(len));
    }
    CurrentOp() = absl::StrCat("data plane raw request of ", frames.size(),
                               " frames, header ", h.ShortDebugString());
    return frames;
  }
  if (op == kDpPushTables || op == kDpPullTables) {
    const bool push = op == kDpPushTables;
    h.set_request_id(fdp.ConsumeIntegral<uint8_t>());
    h.set_op(push ? DataHeader::PUSH_TABLES : DataHeader::PULL_TABLES);
    const uint8_t n = fdp.ConsumeIntegralInRange<uint8_t>(0, 4);
    std::string ids_frame, values_frame;
    for (int i = 0; i < n; ++i) {
      const Target t = PickTensor(fdp, before, false);
      const std::vector<uint64_t> ids = Ids(fdp, t);
      DataHeader::TableRows* run = h.add_tables();
      run->set_tensor_name(t.name);
      run->set_row_count(RowCountOfIds(fdp, t, ids.size()));
      run->set_row_size(RowSizeField(fdp, t));
      ids_frame += Bytes(ids);
      if (push) {
        const int64_t exact = ExactFloats(ids.size(), t.row_size);
        values_frame += Bytes(Values(fdp, Count(fdp, exact, t.row_size)));
      }
    }
    frames.push_back(Serialize(h));
    frames.push_back(ids_frame);
    if (push) frames.push_back(values_frame);
    Layout(fdp, &frames);
    CurrentOp() = absl::StrCat("data plane ", h.ShortDebugString(), ", ",
                               frames.size(), " frames, ", ids_frame.size() / 8,
                               " ids, ", values_frame.size() / 4, " floats");
    return frames;
  }
  if (op == kDpPushDenseBatch || op == kDpPullDenseBatch) {
    const bool push = op == kDpPushDenseBatch;
    h.set_request_id(fdp.ConsumeIntegral<uint8_t>());
    h.set_op(push ? DataHeader::PUSH_DENSE_BATCH
                  : DataHeader::PULL_DENSE_BATCH);
    const uint8_t n = fdp.ConsumeIntegralInRange<uint8_t>(0, 4);
    std::string values_frame;
    for (int i = 0; i < n; ++i) {
      const Target t = PickTensor(fdp, before, false);
      DataHeader::DenseRange* r = h.add_dense_ranges();
      r->set_tensor_name(t.name);
      r->set_row_begin(Extreme(fdp, t.lo, t.hi));
      r->set_row_count(Extreme(fdp, 0, t.hi - t.lo));
      r->set_row_size(RowSizeField(fdp, t));
      if (push) {
        const int64_t exact = ExactFloats(r->row_count(), t.row_size);
        values_frame += Bytes(Values(fdp, Count(fdp, exact, t.row_size)));
      }
    }
    frames.push_back(Serialize(h));
    if (push) frames.push_back(values_frame);
    Layout(fdp, &frames);
    CurrentOp() =
        absl::StrCat("data plane ", h.ShortDebugString(), ", ", frames.size(),
                     " frames, ", values_frame.size() / 4, " floats");
    return frames;
  }
  const Target t = PickTensor(fdp, before, false);
  h.set_request_id(fdp.ConsumeIntegral<uint8_t>());
  h.set_tensor_name(t.name);
  std::vector<uint64_t> ids;
  std::vector<float> values;
  switch (op) {
    case kDpPushDense:
    case kDpPullDense: {
      h.set_op(op == kDpPushDense ? DataHeader::PUSH_DENSE
                                  : DataHeader::PULL_DENSE);
      h.set_row_begin(Extreme(fdp, t.lo, t.hi));
      h.set_row_count(Extreme(fdp, 0, t.hi - t.lo));
      h.set_row_size(RowSizeField(fdp, t));
      if (op == kDpPushDense) {
        const int64_t exact = ExactFloats(h.row_count(), t.row_size);
        values = Values(fdp, Count(fdp, exact, t.row_size));
      }
      break;
    }
    default: {  // kDpPushRows, kDpPullRows
      h.set_op(op == kDpPushRows ? DataHeader::PUSH_ROWS
                                 : DataHeader::PULL_ROWS);
      ids = Ids(fdp, t);
      h.set_row_count(RowCountOfIds(fdp, t, ids.size()));
      h.set_row_size(RowSizeField(fdp, t));
      if (op == kDpPushRows) {
        const int64_t exact = ExactFloats(ids.size(), t.row_size);
        values = Values(fdp, Count(fdp, exact, t.row_size));
      }
      break;
    }
  }
  frames.push_back(Serialize(h));
  if (op == kDpPushRows || op == kDpPullRows) frames.push_back(Bytes(ids));
  if (op == kDpPushDense || op == kDpPushRows) frames.push_back(Bytes(values));
  Layout(fdp, &frames);
  CurrentOp() =
      absl::StrCat("data plane ", h.ShortDebugString(), ", ", frames.size(),
                   " frames, ", ids.size(), " ids, ", values.size(), " floats");
  return frames;
}

// ---------------------------------------------------------------------------
// gRPC.

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
}

absl::StatusCode CodeOf(const grpc::Status& s) {
  return static_cast<absl::StatusCode>(s.error_code());
}

// Gradient bytes, sometimes not whole floats.
std::string GradientBytes(FuzzedDataProvider& fdp,
                          absl::Span<const float> values) {
  std::string raw = Bytes(values);
  const uint8_t trim = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  if (trim >= 5) {
    raw.resize(raw.size() - std::min<size_t>(trim - 4, raw.size()));
  }
  return raw;
}

void CheckPushReply(const State& before, const State& after,
                    const v1::PushGradientRequest& request,
                    const grpc::Status& status,
                    const v1::PushGradientResponse& response) {
  if (!status.ok()) {
    CheckClearError(CodeOf(status));
    CheckUnchanged(before, after);
    return;
  }
  const PartState* part = Find(before, request.tensor_name());
  FUZZ_CHECK(part != nullptr);
  FUZZ_CHECK(request.values().size() % 4 == 0);
  const int64_t floats = request.values().size() / 4;
  Pushed push;
  push.name = request.tensor_name();
  push.version = response.version();
  push.skipped = response.skipped();
  if (request.row_ids_size() > 0) {
    push.rows = true;
    push.ids.assign(request.row_ids().begin(), request.row_ids().end());
    FUZZ_CHECK(floats ==
               static_cast<int64_t>(push.ids.size()) * part->row_size());
  } else {
    FUZZ_CHECK(floats % part->row_size() == 0);
    push.row_begin = request.row_begin();
    push.num_rows = floats / part->row_size();
  }
  CheckPush(before, after, push);
}

// Checks the chunks of one part's stream, chunks[*next] onwards, against
// `part` as it was, and advances *next past them. Returns whether they form
// the whole stream of the part: `ids`, the rows asked for (null = every row
// of the part), or every float of a dense part, the last chunk marked so.
bool CheckPartChunks(tessera::TensorStore* store, const PartState& part,
                     const std::vector<v1::TensorChunk>& chunks, size_t* next,
                     const std::vector<uint64_t>* ids) {
  const int64_t total = static_cast<int64_t>(part.values.size());
  int64_t offset = 0;
  std::vector<uint64_t> streamed_ids;
  bool last = false;
  const size_t begin = *next;
  for (size_t i = begin; i < chunks.size(); ++i) {
    const v1::TensorChunk& c = chunks[i];
    const bool first = i == begin;
    if (!first && c.has_spec()) break;  // The next part's first chunk.
    FUZZ_CHECK(!last);
    if (first) {
      FUZZ_CHECK(c.has_spec());
      FUZZ_CHECK(c.spec().SerializeAsString() ==
                 part.info.spec().SerializeAsString());
    }
    FUZZ_CHECK(c.part() == part.info.part());
    FUZZ_CHECK(c.version() == part.info.version());
    FUZZ_CHECK(c.values().size() % 4 == 0);
    std::vector<float> values(c.values().size() / 4);
    if (!values.empty()) {
      memcpy(values.data(), c.values().data(), c.values().size());
    }
    last = c.last();
    if (part.embedding()) {
      const std::vector<uint64_t> chunk_ids(c.row_ids().begin(),
                                            c.row_ids().end());
      CheckRowsRead(store, part, chunk_ids, values, c.version());
      streamed_ids.insert(streamed_ids.end(), chunk_ids.begin(),
                          chunk_ids.end());
    } else {
      FUZZ_CHECK(c.row_ids_size() == 0);
      FUZZ_CHECK(c.part_row_begin() == part.info.row_begin());
      FUZZ_CHECK(c.part_row_end() == part.info.row_end());
      FUZZ_CHECK(c.offset() == offset);
      FUZZ_CHECK(!values.empty());
      FUZZ_CHECK(Within(offset, values.size(), 0, total));
      FUZZ_CHECK(SameBits(
          values,
          absl::MakeConstSpan(part.values).subspan(offset, values.size())));
      offset += values.size();
      FUZZ_CHECK(last == (offset == total));
    }
    *next = i + 1;
  }
  if (!last) return false;
  if (part.embedding()) {
    if (ids != nullptr) {
      FUZZ_CHECK(streamed_ids == *ids);  // the rows asked for, in order
    } else {
      // Every row held, in storage order (ScanRows): each exactly once.
      std::sort(streamed_ids.begin(), streamed_ids.end());
      FUZZ_CHECK(streamed_ids == part.ids);
    }
  } else {
    FUZZ_CHECK(offset == total);
  }
  return true;
}

void PullTensorOp(FuzzedDataProvider& fdp, tessera::TensorStore* store,
                  v1::ParameterServer::Stub* stub, const State& before,
                  State* after) {
  const Target t = PickTensor(fdp, before, true);
  v1::PullTensorRequest request;
  request.set_tensor_name(t.name);
  const uint8_t with_ids = fdp.ConsumeIntegralInRange<uint8_t>(0, 2);
  std::vector<uint64_t> ids;
  if (with_ids != 0) ids = Ids(fdp, t);
  for (uint64_t id : ids) request.add_row_ids(id);
  request.set_max_chunk_floats(ChunkFloats(fdp));
  CurrentOp() =
      absl::StrCat("gRPC PullTensor ", t.name, ", ", ids.size(),
                   " ids, max_chunk_floats ", request.max_chunk_floats());
  // See the caveat at the top: rows larger than a message are allocated
  // whole, however large.
  grpc::ClientContext context;
  SetDeadline(&context);
  std::vector<v1::TensorChunk> chunks;
  auto reader = stub->PullTensor(&context, request);
  v1::TensorChunk chunk;
  while (reader->Read(&chunk)) chunks.push_back(chunk);
  const grpc::Status status = reader->Finish();
  *after = Snapshot(store);
  CheckUnchanged(before, *after);
  if (!status.ok()) CheckClearError(CodeOf(status));
  if (chunks.empty()) {
    FUZZ_CHECK(!status.ok());
    return;
  }
  FUZZ_CHECK(t.part != nullptr);
  size_t next = 0;
  const bool whole = CheckPartChunks(store, *t.part, chunks, &next,
                                     ids.empty() ? nullptr : &ids);
  FUZZ_CHECK(next == chunks.size());
  if (status.ok()) FUZZ_CHECK(whole);
}

void PullModelOp(FuzzedDataProvider& fdp, tessera::TensorStore* store,
                 v1::ParameterServer::Stub* stub, const State& before,
                 State* after) {
  v1::PullModelRequest request;
  request.set_max_chunk_floats(ChunkFloats(fdp));
  CurrentOp() = absl::StrCat("gRPC PullModel, max_chunk_floats ",
                             request.max_chunk_floats());
  grpc::ClientContext context;
  SetDeadline(&context);
  std::vector<v1::TensorChunk> chunks;
  auto reader = stub->PullModel(&context, request);
  v1::TensorChunk chunk;
  while (reader->Read(&chunk)) chunks.push_back(chunk);
  const grpc::Status status = reader->Finish();
  *after = Snapshot(store);
  CheckUnchanged(before, *after);
  if (!status.ok()) CheckClearError(CodeOf(status));
  // Every part in name order (List's), each whole but perhaps the last one
  // streamed when the stream failed.
  size_t next = 0;
  size_t parts = 0;
  for (const auto& [name, part] : before) {
    if (next == chunks.size()) break;
    FUZZ_CHECK(chunks[next].spec().name() == name);
    const bool whole = CheckPartChunks(store, part, chunks, &next, nullptr);
    FUZZ_CHECK(whole || (!status.ok() && next == chunks.size()));
    ++parts;
  }
  FUZZ_CHECK(next == chunks.size());
  if (status.ok()) FUZZ_CHECK(parts == before.size());
}

// Specs, seeded or fuzzed, with extreme initializer parameters among them.
float SpecFloat(FuzzedDataProvider& fdp) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  switch (sel) {
    case 0:
      return 0.0f;
    case 6: {
      const uint8_t k = fdp.ConsumeIntegralInRange<uint8_t>(0, 3);
      static constexpr float kExtreme[] = {
          std::numeric_limits<float>::quiet_NaN(),
          std::numeric_limits<float>::infinity(), 3e38f, -3e38f};
      return kExtreme[k];
    }
    case 7:
      return -1e6f;
    default:
      return (fdp.ConsumeIntegral<uint8_t>() - 128) / 64.0f;
  }
}

int64_t Dim(FuzzedDataProvider& fdp) {
  const uint8_t sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 15);
  static constexpr int64_t kFixed[] = {0,
                                       -1,
                                       kI64Max,
                                       kI64Min,
                                       int64_t{1} << 20,
                                       int64_t{1} << 40,
                                       int64_t{1} << 19,
                                       int64_t{1} << 38};
  if (sel < 8) return kFixed[sel];
  return fdp.ConsumeIntegralInRange<uint8_t>(1, 64);
}

TensorSpec FuzzedSpec(FuzzedDataProvider& fdp, const State& before) {
  const uint8_t form = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  if (form <= 1) {
    const uint8_t i = fdp.ConsumeIntegralInRange<uint8_t>(0, 5);
    TensorSpec spec = Seeded()[i];
    // Another seed: the same name with a different spec, a conflict.
    if (form == 1) spec.mutable_initializer()->set_seed(7);
    return spec;
  }
  TensorSpec spec;
  spec.set_name(PickTensor(fdp, before, true).name);
  const uint8_t kind = fdp.ConsumeIntegralInRange<uint8_t>(0, 7);
  if (kind <= 3) {
    spec.set_kind(TensorSpec::DENSE);
  } else if (kind <= 6) {
    spec.set_kind(TensorSpec::EMBEDDING);
  } else {
    spec.set_kind(
        static_cast<TensorSpec::Kind>(fdp.ConsumeIntegral<uint8_t>()));
  }
  const uint8_t rank_sel = fdp.ConsumeIntegralInRange<uint8_t>(0, 9);
  const int rank = rank_sel <= 3 ? rank_sel : rank_sel == 9 ? 9 : 2;
  for (int i = 0; i < rank; ++i) spec.add_shape(Dim(fdp));
  v1::Initializer* init = spec.mutable_initializer();
  const uint8_t init_kind = fdp.ConsumeIntegralInRange<uint8_t>(0, 8);
  init->set_kind(init_kind == 8
                     ? static_cast<v1::Initializer::Kind>(99)
                     : static_cast<v1::Initializer::Kind>(init_kind));
  init->set_value(SpecFloat(fdp));
  init->set_low(SpecFloat(fdp));
  init->set_high(SpecFloat(fdp));
  init->set_mean(SpecFloat(fdp));
  init->set_stddev(SpecFloat(fdp));
  init->set_gain(SpecFloat(fdp));
  init->set_seed(fdp.ConsumeIntegral<uint8_t>());
  v1::OptimizerConfig* opt = spec.mutable_optimizer();
  const uint8_t opt_kind = fdp.ConsumeIntegralInRange<uint8_t>(0, 4);
  opt->set_kind(opt_kind == 4
                    ? static_cast<v1::OptimizerConfig::Kind>(17)
                    : static_cast<v1::OptimizerConfig::Kind>(opt_kind));
  static constexpr float kRates[] = {0.0f,
                                     0.01f,
                                     0.1f,
                                     -1.0f,
                                     std::numeric_limits<float>::quiet_NaN(),
                                     std::numeric_limits<float>::infinity()};
  opt->set_learning_rate(kRates[fdp.ConsumeIntegralInRange<uint8_t>(0, 5)]);
  static constexpr float kMomenta[] = {0.0f, 0.9f, -1.0f};
  opt->set_momentum(kMomenta[fdp.ConsumeIntegralInRange<uint8_t>(0, 2)]);
  return spec;
}

void CreateOp(FuzzedDataProvider& fdp, tessera::TensorStore* store,
              v1::ParameterServer::Stub* stub, const State& before,
              State* after) {
  v1::CreateTensorsRequest request;
  const uint8_t n = fdp.ConsumeIntegralInRange<uint8_t>(0, 4);
  for (int i = 0; i < n; ++i) *request.add_specs() = FuzzedSpec(fdp, before);
  CurrentOp() = absl::StrCat("gRPC CreateTensors ", request.ShortDebugString());
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::CreateTensorsResponse response;
  const grpc::Status status = stub->CreateTensors(&context, request, &response);
  *after = Snapshot(store);
  if (!status.ok()) {
    CheckClearError(CodeOf(status));
    CheckUnchanged(before, *after);
    return;
  }
  // The old parts are untouched; each new one is a spec of the request
  // (its first under that name), at version 0 with its initial values.
  int created = 0;
  for (const auto& [name, part] : *after) {
    auto old = before.find(name);
    if (old != before.end()) {
      FUZZ_CHECK(SamePart(old->second, part));
      continue;
    }
    ++created;
    const TensorSpec* spec = nullptr;
    for (const TensorSpec& s : request.specs()) {
      if (s.name() == name) {
        spec = &s;
        break;
      }
    }
    FUZZ_CHECK(spec != nullptr);
    FUZZ_CHECK(part.info.spec().SerializeAsString() ==
               spec->SerializeAsString());
    FUZZ_CHECK(part.info.version() == 0);
    if (part.embedding()) {
      FUZZ_CHECK(part.ids.empty() && part.info.num_rows() == 0);
    } else {
      std::vector<float> initial(part.values.size());
      tessera::InitializeRows(*spec, part.info.row_begin(),
                              absl::MakeSpan(initial));
      FUZZ_CHECK(SameBits(initial, part.values));
    }
  }
  FUZZ_CHECK(response.created() == created);
}

void ListOp(tessera::TensorStore* store, v1::ParameterServer::Stub* stub,
            const State& before, State* after) {
  CurrentOp() = "gRPC ListTensors";
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListTensorsResponse response;
  const grpc::Status status =
      stub->ListTensors(&context, v1::ListTensorsRequest(), &response);
  *after = Snapshot(store);
  CheckUnchanged(before, *after);
  FUZZ_CHECK(status.ok());
  FUZZ_CHECK(response.parts_size() == static_cast<int>(before.size()));
  auto it = before.begin();
  for (const v1::TensorPartInfo& part : response.parts()) {
    FUZZ_CHECK(part.SerializeAsString() == it->second.info_bytes);
    ++it;
  }
}

void PushGradientOp(FuzzedDataProvider& fdp, uint8_t op,
                    tessera::TensorStore* store,
                    v1::ParameterServer::Stub* stub, const State& before,
                    State* after) {
  const Target t = PickTensor(fdp, before, true);
  v1::PushGradientRequest request;
  request.set_tensor_name(t.name);
  std::vector<float> values;
  if (op == kGrpcPushDense) {
    request.set_row_begin(Extreme(fdp, t.lo, t.hi));
    const int64_t rows = Extreme(fdp, 0, t.hi - t.lo);
    values = Values(fdp, Count(fdp, ExactFloats(rows, t.row_size), t.row_size));
  } else {
    const std::vector<uint64_t> ids = Ids(fdp, t);
    for (uint64_t id : ids) request.add_row_ids(id);
    values = Values(
        fdp, Count(fdp, ExactFloats(ids.size(), t.row_size), t.row_size));
  }
  *request.mutable_values() = GradientBytes(fdp, values);
  request.set_clock(fdp.ConsumeIntegral<uint8_t>());
  request.set_worker_id("fuzzer");
  CurrentOp() = absl::StrCat("gRPC PushGradient ", t.name, " row_begin ",
                             request.row_begin(), ", ", request.row_ids_size(),
                             " ids, ", request.values().size(), " bytes");
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::PushGradientResponse response;
  const grpc::Status status = stub->PushGradient(&context, request, &response);
  *after = Snapshot(store);
  CheckPushReply(before, *after, request, status, response);
}

// InitializeTensor: an applied initialization changes only its own part, to
// exactly the request's values, at version 1, and only a part at version 0;
// anything else changes nothing. Oracle: valid means a dense part of this
// shard, row_begin its first row, exactly its floats, all finite.
void InitializeOp(FuzzedDataProvider& fdp, tessera::TensorStore* store,
                  v1::ParameterServer::Stub* stub, const State& before,
                  State* after) {
  const Target t = PickTensor(fdp, before, true);
  v1::InitializeTensorRequest request;
  request.set_tensor_name(t.name);
  request.set_row_begin(Extreme(fdp, t.lo, t.hi));
  const std::vector<float> values =
      Values(fdp, Count(fdp, ExactFloats(t.hi - t.lo, t.row_size), t.row_size));
  *request.mutable_values() = GradientBytes(fdp, values);
  request.set_worker_id("fuzzer");
  CurrentOp() = absl::StrCat("gRPC InitializeTensor ", t.name, " row_begin ",
                             request.row_begin(), ", ", request.values().size(),
                             " bytes");
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::InitializeTensorResponse response;
  const grpc::Status status =
      stub->InitializeTensor(&context, request, &response);
  *after = Snapshot(store);
  const PartState* part = t.part;
  const std::string& raw = request.values();
  bool finite = raw.size() % 4 == 0;
  std::vector<float> sent(raw.size() / 4);
  if (!sent.empty()) memcpy(sent.data(), raw.data(), sent.size() * 4);
  for (float v : sent) finite = finite && std::isfinite(v);
  const bool valid =
      part != nullptr && !part->embedding() &&
      request.row_begin() == part->info.row_begin() && finite &&
      static_cast<int64_t>(sent.size()) ==
          static_cast<int64_t>(part->values.size()) &&
      static_cast<int64_t>(request.ByteSizeLong()) <= kMaxMessageBytes;
  if (!status.ok()) {
    CheckClearError(CodeOf(status));
    FUZZ_CHECK(!valid);
    CheckUnchanged(before, *after);
    return;
  }
  FUZZ_CHECK(valid);
  if (!response.applied()) {
    FUZZ_CHECK(part->info.version() != 0);
    FUZZ_CHECK(response.version() == part->info.version());
    CheckUnchanged(before, *after);
    return;
  }
  FUZZ_CHECK(part->info.version() == 0);
  FUZZ_CHECK(response.version() == 1);
  CheckOthersUnchanged(before, *after, t.name);
  const PartState* now = Find(*after, t.name);
  FUZZ_CHECK(now != nullptr);
  FUZZ_CHECK(now->info.version() == 1);
  FUZZ_CHECK(SameBits(now->values, sent));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Malformed input is expected: keep protobuf's parse warnings and the
  // shard's per-tensor logs out of the fuzzer's output.
  google::protobuf::SetLogHandler(nullptr);
  FLAGS_minloglevel = 2;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = Fixture::Get();
  if (f.due()) f.Reset();
  State before = Snapshot(f.store());
  if (before.size() > kMaxParts || Floats(before) > kMaxStateFloats) {
    f.Reset();
    before = Snapshot(f.store());
  }
  EarlierInputs() = f.served();
  f.CountInput();
  tessera::TensorStore* store = f.store();
  CheckFinite(before);
  FuzzedDataProvider fdp(data, size);
  for (int i = 0; i < kMaxOps && fdp.remaining_bytes() > 0; ++i) {
    const uint8_t op = fdp.ConsumeIntegralInRange<uint8_t>(0, kNumOps - 1);
    State after;
    switch (op) {
      case kDpPushDense:
      case kDpPullDense:
      case kDpPushRows:
      case kDpPullRows:
      case kDpPing:
      case kDpRaw:
      case kDpPushTables:
      case kDpPullTables:
      case kDpPushDenseBatch:
      case kDpPullDenseBatch: {
        const std::vector<std::string> frames = DataRequest(fdp, op, before);
        const tessera::DataReply reply =
            tessera::DataPlane::RunOne(f.shard(), frames, kMaxMessageBytes);
        after = Snapshot(store);
        CheckDataReply(store, before, after, frames, reply);
        break;
      }
      case kGrpcPushDense:
      case kGrpcPushRows:
        PushGradientOp(fdp, op, store, f.stub(), before, &after);
        break;
      case kGrpcPullTensor:
        PullTensorOp(fdp, store, f.stub(), before, &after);
        break;
      case kGrpcPullModel:
        PullModelOp(fdp, store, f.stub(), before, &after);
        break;
      case kGrpcCreate:
        CreateOp(fdp, store, f.stub(), before, &after);
        break;
      case kGrpcInitialize:
        InitializeOp(fdp, store, f.stub(), before, &after);
        break;
      default:
        ListOp(store, f.stub(), before, &after);
        break;
    }
    CheckFinite(after);
    before = std::move(after);
  }
  return 0;
}

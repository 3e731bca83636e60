// Fuzzes a shard's request validation: arbitrary PushGradientRequest and
// CreateTensorsRequest messages through the gRPC service
// (ps/server/ps_service.h), and arbitrary pushes and pulls straight into
// Shard, over a shard that holds dense tensors (whole and split), embedding
// tables (bounded and unbounded) and several optimizers, with a memory limit.
//
// Input: byte 0 picks the request: 0 PushGradient and 1 CreateTensors (the
// rest is the serialized request), 2 PushDense, 3 PullDense, 4 PushRows,
// 5 PullRows (the rest is read with FuzzedDataProvider).
//
// Checked besides "no crash, no sanitizer report": an error is a clear
// status (never OK-looking, UNKNOWN or INTERNAL) and changes nothing (every
// part's version and row count is as before); a push that succeeds bumps its
// part's version by exactly one; the seeded tensors never hold NaN or Inf.

#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "glog/logging.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/server_context.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/reject_reason.h"
#include "ps/server/ps_service.h"
#include "ps/server/shard.h"

namespace {

using tessera::v1::TensorSpec;

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

TensorSpec Spec(const std::string& name, std::vector<int64_t> shape,
                tessera::v1::OptimizerConfig::Kind optimizer,
                bool embedding = false) {
  TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  spec.set_kind(embedding ? TensorSpec::EMBEDDING : TensorSpec::DENSE);
  spec.mutable_initializer()->set_kind(tessera::v1::Initializer::UNIFORM);
  spec.mutable_initializer()->set_low(-0.5f);
  spec.mutable_initializer()->set_high(0.5f);
  spec.mutable_initializer()->set_seed(11);
  spec.mutable_optimizer()->set_kind(optimizer);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  spec.mutable_optimizer()->set_momentum(0.9f);
  return spec;
}

// The seeded tensors: names the fuzzer's inputs mostly aim at.
const std::vector<TensorSpec>& Seeded() {
  static const auto* specs = new std::vector<TensorSpec>{
      Spec("big", {64, 16}, tessera::v1::OptimizerConfig::ADAM),  // split
      Spec("w", {8, 4}, tessera::v1::OptimizerConfig::SGD),
      Spec("b", {4}, tessera::v1::OptimizerConfig::MOMENTUM),
      Spec("g", {6, 3}, tessera::v1::OptimizerConfig::ADAGRAD),
      Spec("emb", {0, 4}, tessera::v1::OptimizerConfig::ADAM, true),
      Spec("table", {1000, 2}, tessera::v1::OptimizerConfig::SGD, true),
  };
  return *specs;
}

struct Fixture {
  Fixture() {
    const char* base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string templ = std::string(base) + "/tessera-shard-fuzzer-XXXXXX";
    FUZZ_CHECK(mkdtemp(templ.data()) != nullptr);
    dir = templ;
    tessera::ShardOptions options;
    options.shard_index = 0;
    options.placement.set_num_shards(2);
    options.placement.set_split_threshold_bytes(1024);
    options.data_dir = dir + "/data";
    options.flush_interval = absl::ZeroDuration();  // No flusher thread.
    options.max_message_bytes = 1 << 20;
    options.max_memory_bytes = 64 << 20;
    options.block_floats = 64;
    shard = new tessera::Shard(options, &registry);
    FUZZ_CHECK(shard->Load().ok());
    service = new tessera::ParameterServerService(shard);
    FUZZ_CHECK(shard->CreateTensors(Seeded()).ok());
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Get().dir, ec);
    });
  }
  static Fixture& Get() {
    static Fixture* f = new Fixture;
    return *f;
  }

  std::string dir;
  tessera::metrics::Registry registry;
  tessera::Shard* shard = nullptr;
  tessera::ParameterServerService* service = nullptr;
};

// Every part's (version, rows) by name.
std::map<std::string, std::pair<int64_t, int64_t>> State(tessera::Shard& s) {
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  for (const auto& part : s.store()->List()) {
    out[part.spec().name()] = {part.version(), part.num_rows()};
  }
  return out;
}

void CheckClearError(absl::StatusCode code) {
  FUZZ_CHECK(code != absl::StatusCode::kOk);
  FUZZ_CHECK(code != absl::StatusCode::kUnknown);
  FUZZ_CHECK(code != absl::StatusCode::kInternal);
}

std::string PickTensor(FuzzedDataProvider& fdp) {
  const auto& seeded = Seeded();
  const int pick = fdp.ConsumeIntegralInRange<int>(0, seeded.size());
  if (pick < static_cast<int>(seeded.size())) return seeded[pick].name();
  return fdp.ConsumeRandomLengthString(300);
}

std::vector<float> Floats(FuzzedDataProvider& fdp, size_t max) {
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, max);
  std::vector<float> v;
  v.reserve(n);
  for (size_t i = 0; i < n && fdp.remaining_bytes() > 0; ++i) {
    // Mostly ordinary values, sometimes any bit pattern (NaN, Inf, tiny).
    if (fdp.ConsumeBool()) {
      v.push_back(fdp.ConsumeFloatingPointInRange<float>(-10, 10));
    } else {
      const uint32_t bits = fdp.ConsumeIntegral<uint32_t>();
      float f;
      memcpy(&f, &bits, sizeof(f));
      // Caveat: finite gradients near FLT_MAX are accepted and can overflow
      // a parameter or a momentum buffer to Inf (see docs/reliability.md);
      // they are scaled down here so that the finiteness check below tests
      // what the shard promises: NaN and Inf never get in.
      if (std::isfinite(f) && std::fabs(f) > 1e6f) f = std::fmod(f, 1e6f);
      v.push_back(f);
    }
  }
  return v;
}

// See the caveat in Floats(): finite values beyond 1e6 are scaled down.
void ScaleDownHuge(std::string* bytes) {
  for (size_t i = 0; i + sizeof(float) <= bytes->size(); i += sizeof(float)) {
    float f;
    memcpy(&f, bytes->data() + i, sizeof(f));
    if (std::isfinite(f) && std::fabs(f) > 1e6f) {
      f = std::fmod(f, 1e6f);
      memcpy(bytes->data() + i, &f, sizeof(f));
    }
  }
}

std::vector<uint64_t> Ids(FuzzedDataProvider& fdp) {
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, 64);
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n; ++i) {
    ids.push_back(fdp.ConsumeBool()
                      ? fdp.ConsumeIntegralInRange<uint64_t>(0, 2000)
                      : fdp.ConsumeIntegral<uint64_t>());
  }
  return ids;
}

void CheckSeededFinite(tessera::Shard& shard) {
  for (const auto& spec : Seeded()) {
    if (spec.kind() == TensorSpec::EMBEDDING) continue;
    auto info = shard.store()->Describe(spec.name());
    if (!info.ok()) continue;  // Placed on the other shard.
    int64_t row_size = 1;
    for (int i = 1; i < spec.shape_size(); ++i) row_size *= spec.shape(i);
    std::vector<float> values((info->row_end() - info->row_begin()) * row_size);
    FUZZ_CHECK(
        shard.PullDense(spec.name(), info->row_begin(), absl::MakeSpan(values))
            .ok());
    for (float v : values) FUZZ_CHECK(std::isfinite(v));
  }
}

}  // namespace

// Malformed input is expected: keep protobuf's parse warnings out of the
// fuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  FLAGS_minloglevel = 2;  // The shard logs every tensor it registers.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Fixture& f = Fixture::Get();
  tessera::Shard& shard = *f.shard;
  const int op = data[0] % 6;
  const auto before = State(shard);
  bool ok = false;
  std::string pushed;  // the tensor a successful push went to
  switch (op) {
    case 0: {
      tessera::v1::PushGradientRequest request;
      if (!request.ParseFromArray(data + 1, size - 1)) return 0;
      ScaleDownHuge(request.mutable_values());
      tessera::v1::PushGradientResponse response;
      grpc::ServerContext context;
      grpc::Status s = f.service->PushGradient(&context, &request, &response);
      ok = s.ok();
      if (!ok) CheckClearError(static_cast<absl::StatusCode>(s.error_code()));
      if (ok) pushed = request.tensor_name();
      break;
    }
    case 1: {
      tessera::v1::CreateTensorsRequest request;
      if (!request.ParseFromArray(data + 1, size - 1)) return 0;
      tessera::v1::CreateTensorsResponse response;
      grpc::ServerContext context;
      grpc::Status s = f.service->CreateTensors(&context, &request, &response);
      ok = s.ok();
      if (!ok) CheckClearError(static_cast<absl::StatusCode>(s.error_code()));
      break;
    }
    default: {
      FuzzedDataProvider fdp(data + 1, size - 1);
      const std::string tensor = PickTensor(fdp);
      absl::Status status;
      if (op == 2) {
        const int64_t row_begin = fdp.ConsumeIntegral<int64_t>() % 100;
        std::vector<float> grad = Floats(fdp, 2048);
        auto r = shard.PushDense(tensor, row_begin, grad);
        status = r.status();
        if (r.ok()) pushed = tensor;
      } else if (op == 3) {
        const int64_t row_begin = fdp.ConsumeIntegral<int64_t>() % 100;
        std::vector<float> out(fdp.ConsumeIntegralInRange<size_t>(0, 2048));
        status =
            shard.PullDense(tensor, row_begin, absl::MakeSpan(out)).status();
      } else if (op == 4) {
        std::vector<uint64_t> ids = Ids(fdp);
        std::vector<float> grad = Floats(fdp, 512);
        auto r = shard.PushRows(tensor, ids, grad);
        status = r.status();
        if (r.ok()) pushed = tensor;
      } else {
        std::vector<uint64_t> ids = Ids(fdp);
        std::vector<float> out(fdp.ConsumeIntegralInRange<size_t>(0, 512));
        status = shard.PullRows(tensor, ids, absl::MakeSpan(out)).status();
      }
      ok = status.ok();
      if (!ok) {
        CheckClearError(status.code());
        // Rejections carry the reason the shard counts them under.
        FUZZ_CHECK(tessera::RejectReasonOf(status) != "other");
      }
      break;
    }
  }
  const auto after = State(shard);
  if (!ok) {
    FUZZ_CHECK(after == before);
  } else if (!pushed.empty()) {
    auto b = before.find(pushed);
    auto a = after.find(pushed);
    FUZZ_CHECK(b != before.end() && a != after.end());
    FUZZ_CHECK(a->second.first == b->second.first + 1);
    for (const auto& [name, state] : before) {
      if (name == pushed) continue;
      FUZZ_CHECK(after.at(name) == state);
    }
  }
  CheckSeededFinite(shard);
  return 0;
}

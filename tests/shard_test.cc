// Multi-process tests of one real tessera-ps on loopback: persistence across
// SIGTERM and SIGKILL, start-up refusals, and bad input over gRPC.

#include <signal.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "ps/client/coordinator_client.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tests/cluster.h"
#include "zlib.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::ShardProcess;

constexpr int kRows = 64;
constexpr int kCols = 32;

v1::TensorSpec AdamSpec() {
  v1::TensorSpec spec;
  spec.set_name("fc1.weight");
  spec.add_shape(kRows);
  spec.add_shape(kCols);
  spec.mutable_initializer()->set_kind(v1::Initializer::XAVIER_UNIFORM);
  spec.mutable_initializer()->set_seed(7);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  return spec;
}

v1::TensorSpec TableSpec() {
  v1::TensorSpec spec;
  spec.set_name("emb");
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(0);
  spec.add_shape(4);
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(0.1f);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  return spec;
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = testing::TempPath(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(data_dir_);
  }

  void StartShard(std::vector<std::string> flags = {}) {
    shard_.reset();
    auto shard = ShardProcess::Start(0, 1, data_dir_, flags);
    ASSERT_TRUE(shard.ok()) << shard.status();
    shard_ = *std::move(shard);
    stub_ = v1::ParameterServer::NewStub(shard_->channel());
  }

  void Create() {
    v1::CreateTensorsRequest request;
    *request.add_specs() = AdamSpec();
    *request.add_specs() = TableSpec();
    v1::CreateTensorsResponse response;
    grpc::Status s = stub_->CreateTensors(Context().get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  void Push(int step) {
    std::vector<float> grad(kRows * kCols);
    for (size_t i = 0; i < grad.size(); ++i) {
      grad[i] = std::sin(0.1 * step + 0.01 * i);
    }
    v1::PushGradientRequest request;
    request.set_tensor_name("fc1.weight");
    request.set_values(Bytes(grad));
    v1::PushGradientResponse response;
    grpc::Status s = stub_->PushGradient(Context().get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    v1::PushGradientRequest rows;
    rows.set_tensor_name("emb");
    rows.add_row_ids(step % 5);
    rows.add_row_ids(1000 + step);
    rows.set_values(Bytes(std::vector<float>(grad.begin(), grad.begin() + 8)));
    s = stub_->PushGradient(Context().get(), rows, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // Every value of both tensors, and the dense part's version. A table
  // streams its rows in storage order, which a restore may change: its rows
  // are put in id order here.
  std::pair<std::vector<float>, int64_t> PullAll() {
    std::vector<float> values;
    std::map<uint64_t, std::vector<float>> rows;
    int64_t version = -1;
    for (const char* name : {"fc1.weight", "emb"}) {
      v1::PullTensorRequest request;
      request.set_tensor_name(name);
      request.set_max_chunk_floats(100);  // several chunks
      auto context = Context();
      auto reader = stub_->PullTensor(context.get(), request);
      v1::TensorChunk chunk;
      while (reader->Read(&chunk)) {
        if (version < 0) version = chunk.version();
        const size_t n = chunk.values().size() / sizeof(float);
        std::vector<float> got(n);
        std::memcpy(got.data(), chunk.values().data(), chunk.values().size());
        if (chunk.row_ids_size() == 0) {
          values.insert(values.end(), got.begin(), got.end());
          continue;
        }
        const size_t dim = n / chunk.row_ids_size();
        for (int i = 0; i < chunk.row_ids_size(); ++i) {
          rows[chunk.row_ids(i)].assign(got.begin() + i * dim,
                                        got.begin() + (i + 1) * dim);
        }
      }
      grpc::Status s = reader->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    for (const auto& [id, row] : rows) {
      values.insert(values.end(), row.begin(), row.end());
      values.push_back(id);
    }
    return {values, version};
  }

  int64_t LastFlushMs() {
    v1::ShardInfo info;
    grpc::Status s = stub_->GetShardInfo(Context().get(), {}, &info);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return info.last_flush_unix_ms();
  }

  std::string data_dir_;
  std::unique_ptr<ShardProcess> shard_;
  std::unique_ptr<v1::ParameterServer::Stub> stub_;
};

TEST_F(ShardTest, SigtermFlushesEverythingAndRestartIsBitIdentical) {
  StartShard({"--flush_interval_s=3600"});  // Only the final flush persists.
  Create();
  for (int step = 0; step < 20; ++step) Push(step);
  auto before = PullAll();
  EXPECT_EQ(before.second, 20);
  shard_->child().Signal(SIGTERM);
  auto code = shard_->child().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << shard_->child().Log();
  EXPECT_THAT(shard_->child().Log(), HasSubstr("final flush done"));

  StartShard({"--flush_interval_s=3600"});
  auto after = PullAll();
  EXPECT_EQ(after.second, 20);
  EXPECT_EQ(after.first, before.first);  // Bit for bit.
}

TEST_F(ShardTest, SigkillAfterAFlushRestoresTheFlushedState) {
  StartShard({"--flush_interval_s=0.2"});
  Create();
  for (int step = 0; step < 10; ++step) Push(step);
  auto flushed = PullAll();
  const int64_t pulled_ms = absl::ToUnixMillis(absl::Now());
  // Wait (bounded) until a flush started after the pull has completed.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (LastFlushMs() <= pulled_ms && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GT(LastFlushMs(), pulled_ms) << "no flush within 20 s";
  shard_->child().Signal(SIGKILL);
  ASSERT_TRUE(shard_->child().Wait(absl::Seconds(10)).ok());

  StartShard({"--flush_interval_s=0.2"});
  auto restored = PullAll();
  EXPECT_EQ(restored.second, flushed.second);
  EXPECT_EQ(restored.first, flushed.first);
}

TEST_F(ShardTest, ForeignDataDirectoryIsRefusedAtStartUp) {
  std::filesystem::create_directories(data_dir_);
  std::ofstream(data_dir_ + "/precious.txt") << "not ours";
  auto shard = ShardProcess::Start(0, 1, data_dir_, {}, absl::Seconds(20));
  EXPECT_THAT(shard.status().message(),
              HasSubstr("not a Tessera data directory"));
  EXPECT_TRUE(std::filesystem::exists(data_dir_ + "/precious.txt"));
}

TEST_F(ShardTest, DataDirectoryOfAnotherShardIsRefused) {
  StartShard();
  shard_->child().Signal(SIGTERM);
  ASSERT_TRUE(shard_->child().Wait(absl::Seconds(30)).ok());
  auto other = ShardProcess::Start(1, 2, data_dir_, {}, absl::Seconds(20));
  EXPECT_THAT(other.status().message(), HasSubstr("belongs to shard 0"));
}

TEST_F(ShardTest, BadInputGetsAClearErrorIsCountedAndChangesNothing) {
  StartShard({"--max_message_bytes=65536"});
  Create();
  auto before = PullAll();
  struct Case {
    std::string what;
    v1::PushGradientRequest request;
    grpc::StatusCode code;
    std::string message;
    std::string reason;
  };
  std::vector<Case> cases;
  auto dense = [](std::vector<float> values) {
    v1::PushGradientRequest r;
    r.set_tensor_name("fc1.weight");
    r.set_values(Bytes(values));
    return r;
  };
  std::vector<float> good(kRows * kCols, 0.5f);
  {
    v1::PushGradientRequest r = dense(good);
    r.set_tensor_name("fc9.weight");
    cases.push_back({"unknown tensor", r, grpc::StatusCode::NOT_FOUND,
                     "unknown tensor fc9.weight", "unknown_tensor"});
  }
  cases.push_back(
      {"wrong shape", dense(std::vector<float>(kCols * 2 + 1, 1.0f)),
       grpc::StatusCode::INVALID_ARGUMENT, "not a multiple", "wrong_shape"});
  {
    v1::PushGradientRequest r = dense(std::vector<float>(kCols * 2, 1.0f));
    r.set_row_begin(kRows - 1);
    cases.push_back({"rows out of range", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "not within", "rows_out_of_range"});
  }
  {
    std::vector<float> nan = good;
    nan[77] = NAN;
    cases.push_back({"NaN", dense(nan), grpc::StatusCode::INVALID_ARGUMENT,
                     "NaN or Inf", "non_finite"});
    nan[77] = -INFINITY;
    cases.push_back({"Inf", dense(nan), grpc::StatusCode::INVALID_ARGUMENT,
                     "NaN or Inf", "non_finite"});
  }
  cases.push_back({"oversize", dense(std::vector<float>(1 << 15, 1.0f)),
                   grpc::StatusCode::RESOURCE_EXHAUSTED, "max_message_bytes",
                   "oversize"});
  {
    v1::PushGradientRequest r = dense(good);
    r.mutable_values()->pop_back();
    cases.push_back({"ragged bytes", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "whole float32", "malformed"});
  }
  {
    v1::PushGradientRequest r;
    r.set_tensor_name("emb");
    r.add_row_ids(3);
    r.set_values(Bytes({1, 2, 3}));
    cases.push_back({"embedding row size", r,
                     grpc::StatusCode::INVALID_ARGUMENT, "rows of dim 4",
                     "wrong_shape"});
  }
  for (const Case& c : cases) {
    auto counted = shard_->Metric("tessera_ps_rejected_requests_total",
                                  absl::StrCat("reason=\"", c.reason, "\""));
    ASSERT_TRUE(counted.ok()) << counted.status();
    v1::PushGradientResponse response;
    grpc::Status s = stub_->PushGradient(Context().get(), c.request, &response);
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.what;
    auto after = shard_->Metric("tessera_ps_rejected_requests_total",
                                absl::StrCat("reason=\"", c.reason, "\""));
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(*after, *counted + 1) << c.what;
  }
  // A conflicting spec is refused with both specs in the message.
  v1::CreateTensorsRequest conflict;
  *conflict.add_specs() = AdamSpec();
  conflict.mutable_specs(0)->set_shape(1, kCols + 1);
  v1::CreateTensorsResponse created;
  grpc::Status s = stub_->CreateTensors(Context().get(), conflict, &created);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("shape: 33"));
  EXPECT_THAT(s.error_message(), HasSubstr("shape: 32"));

  EXPECT_TRUE(shard_->child().running());
  EXPECT_EQ(PullAll(), before);
}

TEST_F(ShardTest, ExposesPromisedMetrics) {
  StartShard();
  Create();
  Push(0);
  auto text = testing::HttpGet(shard_->ports().metrics, "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  for (const char* name :
       {"tessera_ps_requests_total{code=\"OK\",rpc=\"PushGradient\"}",
        "tessera_ps_request_latency_seconds_bucket",
        "tessera_ps_received_bytes_total", "tessera_ps_updates_applied_total",
        "tessera_ps_parameter_bytes", "tessera_ps_optimizer_slot_bytes",
        "tessera_ps_table_overhead_bytes", "tessera_ps_flush_duration_seconds",
        "tessera_ps_last_flush_age_seconds", "tessera_ps_load_duration_seconds",
        "tessera_ps_serving 1", "process_resident_memory_bytes",
        "tessera_build_info"}) {
    EXPECT_THAT(*text, HasSubstr(name));
  }
}

// The job's model file travels from shard 0 to workers: Join announces its
// size and crc32, FetchModelFile streams it in 1 MiB chunks, and the client
// checks both.
TEST_F(ShardTest, ModelFileIsServedToWorkersAndChecked) {
  const std::string job_dir = testing::TempPath("model-file-job");
  std::filesystem::remove_all(job_dir);
  std::filesystem::create_directories(job_dir);
  std::string model(2 * 1024 * 1024 + 12345, '\0');
  for (size_t i = 0; i < model.size(); ++i) model[i] = (i * 7919) % 251;
  std::ofstream(job_dir + "/model.pt", std::ios::binary) << model;
  std::ofstream(job_dir + "/job.textproto") << R"pb(
    name: "ts"
    model { name: "torchscript" torchscript: "model.pt" }
  )pb";
  auto shard = ShardProcess::Start(
      0, 1, data_dir_, {"--job_config=" + job_dir + "/job.textproto"});
  ASSERT_TRUE(shard.ok()) << shard.status();
  CoordinatorClientOptions options;
  options.address = (*shard)->ports().grpc_address();
  CoordinatorClient client(options);
  v1::JoinRequest join;
  join.set_worker_id("w1");
  auto joined = client.Join(join, absl::Seconds(30));
  ASSERT_TRUE(joined.ok()) << joined.status();
  const uint32_t crc =
      crc32(0L, reinterpret_cast<const Bytef*>(model.data()), model.size());
  EXPECT_EQ(joined->model_file_bytes(), static_cast<int64_t>(model.size()));
  EXPECT_EQ(joined->model_file_crc32(), crc);
  auto fetched = client.FetchModelFile(model.size(), crc, absl::Seconds(30));
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_TRUE(*fetched == model);
  // A client expecting other bytes refuses what it gets.
  EXPECT_EQ(client.FetchModelFile(model.size(), crc + 1, absl::Seconds(30))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  auto shorter = client.FetchModelFile(1000, crc, absl::Seconds(30));
  EXPECT_EQ(shorter.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shorter.status().message(), HasSubstr("more than"));
  EXPECT_EQ(client.FetchModelFile(model.size() + 1, crc, absl::Seconds(30))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(client.FetchModelFile(-1, crc, absl::Seconds(30)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ShardTest, MissingModelFileStopsShardZeroNamingThePath) {
  const std::string job_dir = testing::TempPath("missing-model-job");
  std::filesystem::create_directories(job_dir);
  std::ofstream(job_dir + "/job.textproto") << R"pb(
    name: "ts"
    model { name: "torchscript" torchscript: "nowhere.pt" }
  )pb";
  auto shard = ShardProcess::Start(
      0, 1, data_dir_, {"--job_config=" + job_dir + "/job.textproto"},
      absl::Seconds(20));
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(job_dir + "/nowhere.pt"));
}

TEST_F(ShardTest, JobWithoutAModelFileAnswersNotFound) {
  const std::string job_dir = testing::TempPath("no-model-job");
  std::filesystem::create_directories(job_dir);
  std::ofstream(job_dir + "/job.textproto") << R"pb(
    name: "mlp"
    model { name: "mlp" }
  )pb";
  auto shard = ShardProcess::Start(
      0, 1, data_dir_, {"--job_config=" + job_dir + "/job.textproto"});
  ASSERT_TRUE(shard.ok()) << shard.status();
  CoordinatorClientOptions options;
  options.address = (*shard)->ports().grpc_address();
  CoordinatorClient client(options);
  EXPECT_EQ(client.FetchModelFile(0, 0, absl::Seconds(10)).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera

// Multi-process tests of `tessera pull`'s streaming (tools/pull_to_file.h):
// two real tessera-ps shards on loopback, tables many times larger than the
// chunks they are streamed in, the file read back and compared value for
// value with the in-memory pull (ps/client/model_pull.h).

#include "tools/pull_to_file.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "ps/client/model_pull.h"
#include "ps/spec/placement.h"
#include "tessera/v1/ps.grpc.pb.h"
#include "tests/cluster.h"
#include "tools/model_file.h"

namespace tessera {
namespace {

using testing::ShardProcess;

constexpr int kShards = 2;

v1::TensorSpec Spec(const std::string& name, int64_t rows, int64_t dim,
                    bool table) {
  v1::TensorSpec spec;
  spec.set_name(name);
  if (table) spec.set_kind(v1::TensorSpec::EMBEDDING);
  spec.add_shape(rows);
  spec.add_shape(dim);
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(0.1f);
  spec.mutable_initializer()->set_seed(3);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  return spec;
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  return context;
}

class PullToFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempPath(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    for (int i = 0; i < kShards; ++i) {
      auto shard =
          ShardProcess::Start(i, kShards, absl::StrCat(dir_, "/shard", i), {});
      ASSERT_TRUE(shard.ok()) << shard.status();
      stubs_.push_back(v1::ParameterServer::NewStub((*shard)->channel()));
      addresses_.push_back((*shard)->ports().grpc_address());
      shards_.push_back(*std::move(shard));
    }
    v1::CreateTensorsRequest create;
    *create.add_specs() = Spec("a.weight", 37, 5, false);
    *create.add_specs() = Spec("bounded", 1000, 8, true);
    *create.add_specs() = Spec("unbounded", 0, 16, true);
    for (auto& stub : stubs_) {
      v1::CreateTensorsResponse response;
      ASSERT_TRUE(stub->CreateTensors(Context().get(), create, &response).ok());
    }
  }

  // Pushes a gradient to rows `ids` of `table`, each on its own shard.
  void Push(const std::string& table, int64_t dim,
            const std::vector<uint64_t>& ids) {
    std::vector<v1::PushGradientRequest> requests(kShards);
    std::vector<std::vector<float>> grads(kShards);
    for (uint64_t id : ids) {
      const int s = ShardOfRow(id, kShards);
      requests[s].add_row_ids(id);
      for (int64_t j = 0; j < dim; ++j) {
        grads[s].push_back(0.01f * ((id * 7 + j) % 13) - 0.05f);
      }
    }
    for (int s = 0; s < kShards; ++s) {
      if (requests[s].row_ids_size() == 0) continue;
      requests[s].set_tensor_name(table);
      requests[s].set_values(reinterpret_cast<const char*>(grads[s].data()),
                             grads[s].size() * sizeof(float));
      v1::PushGradientResponse response;
      grpc::Status status =
          stubs_[s]->PushGradient(Context().get(), requests[s], &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }

  std::string dir_;
  std::vector<std::unique_ptr<ShardProcess>> shards_;
  std::vector<std::unique_ptr<v1::ParameterServer::Stub>> stubs_;
  std::vector<std::string> addresses_;
};

std::vector<uint64_t> SomeIds(int n, uint64_t stride, uint64_t bound) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * stride + 11) % bound);
  return ids;
}

TEST_F(PullToFileTest, TablesLargerThanTheChunksAreWrittenCompleteAndExact) {
  // 3000 rows x 16 of the unbounded table (48000 floats) in chunks of 64
  // floats (4 rows): ~750 chunks; the bounded one in rounds of 96 rows.
  Push("unbounded", 16, SomeIds(3000, 7919, uint64_t{1} << 40));
  Push("unbounded", 16, SomeIds(500, 7919, uint64_t{1} << 40));  // updates
  Push("bounded", 8, SomeIds(400, 13, 1000));
  auto reference = PullModel(addresses_, absl::Seconds(60));
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::map<std::string, const PulledTensor*> want;
  for (const auto& t : *reference) want[t.name] = &t;
  ASSERT_EQ(want.at("unbounded.ids")->int_values.size(), 3000u);

  for (ModelFileFormat format :
       {ModelFileFormat::kPt, ModelFileFormat::kSafetensors}) {
    SCOPED_TRACE(ModelFileFormatName(format));
    const std::string path =
        absl::StrCat(dir_, "/model.", ModelFileFormatName(format));
    PullToFileOptions options;
    options.max_chunk_floats = 64;
    options.bounded_batch_rows = 96;
    auto pulled = PullModelToFile(addresses_, path, format, options);
    ASSERT_TRUE(pulled.ok()) << pulled.status();
    ASSERT_EQ(pulled->size(), 4u);
    auto file = ReadModelFile(path);
    ASSERT_TRUE(file.ok()) << file.status();
    ASSERT_EQ(file->size(), 4u);
    std::map<std::string, const PulledTensor*> got;
    for (const auto& t : *file) got[t.name] = &t;
    for (const char* name : {"a.weight", "bounded"}) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(got.count(name));
      EXPECT_EQ(got[name]->shape, want.at(name)->shape);
      EXPECT_TRUE(got[name]->values == want.at(name)->values);
    }
    // The unbounded table: the same rows, each once, in the shards' order.
    const PulledTensor& ids = *got.at("unbounded.ids");
    const PulledTensor& values = *got.at("unbounded");
    ASSERT_EQ(ids.shape, std::vector<int64_t>{3000});
    ASSERT_EQ(values.shape, (std::vector<int64_t>{3000, 16}));
    std::map<int64_t, std::vector<float>> rows;
    for (size_t i = 0; i < ids.int_values.size(); ++i) {
      rows[ids.int_values[i]].assign(values.values.begin() + i * 16,
                                     values.values.begin() + (i + 1) * 16);
    }
    ASSERT_EQ(rows.size(), 3000u);
    const PulledTensor& want_ids = *want.at("unbounded.ids");
    const PulledTensor& want_values = *want.at("unbounded");
    for (size_t i = 0; i < want_ids.int_values.size(); ++i) {
      const std::vector<float> row(want_values.values.begin() + i * 16,
                                   want_values.values.begin() + (i + 1) * 16);
      ASSERT_EQ(rows[want_ids.int_values[i]], row) << i;
    }
  }
}

TEST_F(PullToFileTest, AShardMissingFromTheListIsRefusedAndNoFileWritten) {
  const std::string path = absl::StrCat(dir_, "/partial.pt");
  const std::vector<std::string> one = {addresses_[0]};
  auto pulled = PullModelToFile(one, path, ModelFileFormat::kPt);
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kFailedPrecondition)
      << pulled.status();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace tessera

// Multi-process tests of `tessera pull`'s streaming (tools/pull_to_file.h):
// two real tessera-ps shards on loopback, tables many times larger than the
// chunks they are streamed in, the file read back and compared value for
// value with the in-memory pull (ps/client/model_pull.h).

#include "tools/pull_to_file.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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

// Loads the streamed .pt in Debian's PyTorch (torch.load(weights_only=True))
// and checks it tensor for tensor against the streamed .safetensors, parsed
// by hand: the C++ reader checked the latter against the in-memory pull.
constexpr char kCheckPy[] = R"(
import json, struct, sys
import numpy as np
import torch
pt = torch.load(sys.argv[1], weights_only=True)
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
header.pop("__metadata__")
assert list(pt.keys()) == list(header.keys()), (list(pt), list(header))
for name, h in header.items():
    b, e = h["data_offsets"]
    dtype = {"F32": "<f4", "I64": "<i8"}[h["dtype"]]
    want = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dtype).reshape(h["shape"])
    got = pt[name].numpy()
    assert got.shape == want.shape and np.array_equal(got, want), name
print("torch.load matches the safetensors file:", len(header), "tensors")
)";

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
  const std::string script = absl::StrCat(dir_, "/check.py");
  std::ofstream(script) << kCheckPy;
  const std::string command =
      absl::StrCat("timeout 300 /usr/bin/python3 ", script, " ", dir_,
                   "/model.pt ", dir_, "/model.safetensors");
  EXPECT_EQ(std::system(command.c_str()), 0)
      << command << " (tools/setup.sh installs python3-torch)";
}

// A tiered table (EVICTION_DISK) keeps 50 rows a shard in memory: its pull
// flushes, then streams the rows from disk. Its twin, a plain table with the
// same initial values and the same pushes, says what the file must hold.
TEST_F(PullToFileTest, ATieredTableStreamsItsRowsFromDisk) {
  v1::CreateTensorsRequest create;
  for (const char* name : {"tiered", "twin"}) {
    v1::TensorSpec spec = Spec(name, 0, 8, true);
    spec.mutable_initializer()->set_kind(v1::Initializer::CONSTANT);
    spec.mutable_initializer()->set_value(0.25f);
    if (std::string(name) == "tiered") {
      spec.mutable_memory_policy()->set_max_rows(50);
      spec.mutable_memory_policy()->set_eviction(
          v1::MemoryPolicy::EVICTION_DISK);
    }
    *create.add_specs() = spec;
  }
  for (auto& stub : stubs_) {
    v1::CreateTensorsResponse response;
    ASSERT_TRUE(stub->CreateTensors(Context().get(), create, &response).ok());
  }
  for (const char* name : {"tiered", "twin"}) {
    Push(name, 8, SomeIds(2000, 7919, uint64_t{1} << 40));
    Push(name, 8, SomeIds(300, 7919, uint64_t{1} << 40));  // updates
  }
  const std::string path = absl::StrCat(dir_, "/model.safetensors");
  PullToFileOptions options;
  options.max_chunk_floats = 64;
  // The first pull flushes every shard, after which each evicts to its 50
  // rows; the second one reads nearly every row from disk.
  for (int pull = 0; pull < 2; ++pull) {
    auto pulled = PullModelToFile(addresses_, path,
                                  ModelFileFormat::kSafetensors, options);
    ASSERT_TRUE(pulled.ok()) << pulled.status();
  }
  for (auto& shard : shards_) {
    auto held = shard->Metric("tessera_ps_table_rows", "tensor=\"tiered\"");
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_LE(*held, 50);
    auto read =
        shard->Metric("tessera_ps_table_disk_bytes", "tensor=\"tiered\"");
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_GT(*read, 0);
  }
  auto file = ReadModelFile(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::map<std::string, const PulledTensor*> got;
  for (const auto& t : *file) got[t.name] = &t;
  auto rows_of = [&](const std::string& name) {
    std::map<int64_t, std::vector<float>> rows;
    const PulledTensor& ids = *got.at(name + ".ids");
    const PulledTensor& values = *got.at(name);
    for (size_t i = 0; i < ids.int_values.size(); ++i) {
      rows[ids.int_values[i]].assign(values.values.begin() + i * 8,
                                     values.values.begin() + (i + 1) * 8);
    }
    EXPECT_EQ(rows.size(), ids.int_values.size()) << name << ": repeated ids";
    return rows;
  };
  const auto tiered = rows_of("tiered");
  EXPECT_EQ(tiered.size(), 2000u);
  EXPECT_TRUE(tiered == rows_of("twin"));
}

TEST_F(PullToFileTest, RowsCreatedDuringThePullAreLeftOutOfTheFile) {
  const std::vector<uint64_t> old = SomeIds(2000, 7919, uint64_t{1} << 40);
  Push("unbounded", 16, old);
  // New rows (and updates of old ones) pushed all through the pull.
  std::atomic<bool> done{false};
  std::atomic<int> rounds{0};
  std::thread pusher([&] {
    uint64_t next = uint64_t{1} << 41;
    while (!done.load()) {
      Push("unbounded", 16, {next, next + 1, old[rounds % old.size()]});
      next += 2;
      ++rounds;
    }
  });
  // The pull begins once rows are being created (polled, bounded): on a
  // loaded machine the pusher may not have run yet.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (rounds.load() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GT(rounds.load(), 0) << "the pusher pushed nothing in 30 s";
  const std::string path = absl::StrCat(dir_, "/during.safetensors");
  PullToFileOptions options;
  options.max_chunk_floats = 16;  // a row a chunk: the pull takes a while
  auto pulled =
      PullModelToFile(addresses_, path, ModelFileFormat::kSafetensors, options);
  done = true;
  pusher.join();
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  auto file = ReadModelFile(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<int64_t> ids;
  for (const auto& t : *file) {
    if (t.name == "unbounded.ids") ids = t.int_values;
  }
  // Exactly the rows held when the pull began (its ListTensors): every old
  // row, each once, and perhaps new rows pushed before that, as rows are
  // appended to a table's storage and each shard's announced rows come
  // first. Rows beyond those were left out, or ListTensors' count and the
  // file's shapes would disagree (ReadModelFile checks them).
  std::sort(ids.begin(), ids.end());
  EXPECT_TRUE(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  for (uint64_t id : old) {
    EXPECT_TRUE(
        std::binary_search(ids.begin(), ids.end(), static_cast<int64_t>(id)))
        << id;
  }
  // At most the rows pushed before the pull ended (2 a round).
  const int64_t created = ids.size() - old.size();
  EXPECT_LE(created, 2 * rounds.load());
  for (int64_t id : ids) {
    if (id >= int64_t{1} << 41) continue;  // created during the test
    EXPECT_TRUE(std::find(old.begin(), old.end(), id) != old.end()) << id;
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

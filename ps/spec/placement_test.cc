#include "ps/spec/placement.h"

#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

v1::TensorSpec Dense(const std::string& name, std::vector<int64_t> shape) {
  v1::TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  return spec;
}

v1::PlacementConfig Config(int shards, int64_t threshold) {
  v1::PlacementConfig config;
  config.set_num_shards(shards);
  config.set_split_threshold_bytes(threshold);
  return config;
}

TEST(PlacementTest, HashesNeverChange) {
  // Placement is persisted implicitly (a restarted shard reloads the parts it
  // owned), so these values are a compatibility promise.
  EXPECT_EQ(StableHash(""), Mix64(0xcbf29ce484222325ULL));
  EXPECT_EQ(StableHash("fc1.weight") % 7, StableHash("fc1.weight") % 7);
  EXPECT_EQ(Mix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(Mix64(1), 0x910a2dec89025cc1ULL);
}

TEST(PlacementTest, SmallTensorLivesWholeOnOneShard) {
  auto parts = PlaceDense(Dense("fc1.bias", {128}), Config(4, 1 << 20));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].row_begin, 0);
  EXPECT_EQ(parts[0].row_end, 128);
  EXPECT_EQ(parts[0].shard, StableHash("fc1.bias") % 4);
}

TEST(PlacementTest, LargeTensorIsSplitOverAllShards) {
  auto parts = PlaceDense(Dense("fc1.weight", {1001, 784}), Config(4, 1024));
  ASSERT_EQ(parts.size(), 4u);
  int64_t next = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(parts[i].part, i);
    EXPECT_EQ(parts[i].shard, i);
    EXPECT_EQ(parts[i].row_begin, next);
    const int64_t size = parts[i].row_end - parts[i].row_begin;
    EXPECT_TRUE(size == 250 || size == 251) << size;
    next = parts[i].row_end;
  }
  EXPECT_EQ(next, 1001);
}

TEST(PlacementTest, TensorWithFewerRowsThanShardsGetsOnePartPerRow) {
  auto parts = PlaceDense(Dense("wide", {2, 100000}), Config(8, 1024));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].row_begin, 1);
  EXPECT_EQ(parts[1].row_end, 2);
}

TEST(PlacementTest, ScalarIsOneRow) {
  auto parts = PlaceDense(Dense("scale", {}), Config(3, 0));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].row_end, 1);
}

TEST(PlacementTest, SmallTensorsSpreadEvenly) {
  std::map<int, int> count;
  for (int i = 0; i < 4000; ++i) {
    auto parts = PlaceDense(Dense(absl::StrCat("layer", i, ".bias"), {16}),
                            Config(4, 1 << 20));
    ++count[parts[0].shard];
  }
  for (const auto& [shard, n] : count) {
    EXPECT_NEAR(n, 1000, 100) << "shard " << shard;
  }
}

TEST(PlacementTest, EmbeddingRowsSpreadEvenlyEvenForSequentialIds) {
  std::map<int, int> count;
  for (uint64_t id = 0; id < 80000; ++id) ++count[ShardOfRow(id, 8)];
  for (const auto& [shard, n] : count) EXPECT_NEAR(n, 10000, 400);
}

TEST(PlacementTest, PlacementDependsOnlyOnSpecAndShardCount) {
  auto a = PlaceDense(Dense("w", {999, 3}), Config(5, 64));
  auto b = PlaceDense(Dense("w", {999, 3}), Config(5, 64));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].shard, b[i].shard);
    EXPECT_EQ(a[i].row_begin, b[i].row_begin);
  }
}

TEST(PlacementTest, PartOnShardFindsEachShardsPart) {
  v1::TensorSpec spec = Dense("w", {10, 10});
  PartPlacement p;
  ASSERT_TRUE(PartOnShard(spec, Config(2, 0), 1, &p));
  EXPECT_EQ(p.row_begin, 5);
  EXPECT_FALSE(PartOnShard(Dense("tiny", {1}), Config(2, 1 << 20),
                           1 - StableHash("tiny") % 2, &p));
}

TEST(ValidateTensorSpecTest, RejectsBadSpecsNamingTheProblem) {
  EXPECT_THAT(ValidateTensorSpec(Dense("", {1})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(
      ValidateTensorSpec(Dense("w", {3, 0})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape[1] = 0")));
  v1::TensorSpec emb = Dense("emb", {0, 8});
  emb.set_kind(v1::TensorSpec::EMBEDDING);
  EXPECT_THAT(ValidateTensorSpec(emb), IsOk());
  emb.add_shape(2);
  EXPECT_THAT(ValidateTensorSpec(emb),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
  v1::TensorSpec huge = Dense("huge", {1LL << 30, 1LL << 30});
  EXPECT_THAT(
      ValidateTensorSpec(huge),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  v1::TensorSpec dtype = Dense("d", {1});
  dtype.set_dtype(static_cast<v1::DType>(7));
  EXPECT_THAT(ValidateTensorSpec(dtype),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      ValidatePlacementConfig(Config(0, 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_shards")));
}

TEST(ValidateTensorSpecTest, MemoryPolicyIsChecked) {
  v1::TensorSpec emb = Dense("emb", {0, 8});
  emb.set_kind(v1::TensorSpec::EMBEDDING);
  v1::MemoryPolicy* policy = emb.mutable_memory_policy();
  policy->set_admit_after_pushes(3);
  policy->set_expire_after_steps(100);
  policy->set_expire_after_seconds(60);
  policy->set_max_rows(1000);
  EXPECT_THAT(ValidateTensorSpec(emb), IsOk());
  policy->set_eviction(v1::MemoryPolicy::EVICTION_DISK);
  EXPECT_THAT(ValidateTensorSpec(emb),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expiry with eviction EVICTION_DISK")));
  policy->set_expire_after_steps(0);
  policy->set_expire_after_seconds(0);
  EXPECT_THAT(ValidateTensorSpec(emb), IsOk());
  policy->set_max_rows(0);
  EXPECT_THAT(ValidateTensorSpec(emb),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs max_rows > 0")));
  policy->set_eviction(v1::MemoryPolicy::EVICTION_DELETE);
  policy->set_max_rows(-1);
  EXPECT_THAT(ValidateTensorSpec(emb),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_rows = -1 is negative")));
  policy->set_max_rows(0);
  policy->set_sketch_width(1 << 30);
  EXPECT_THAT(
      ValidateTensorSpec(emb),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sketch")));
  v1::TensorSpec dense = Dense("w", {4});
  dense.mutable_memory_policy()->set_max_rows(1);
  EXPECT_THAT(ValidateTensorSpec(dense),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("embedding tables only")));
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

v1::TensorSpec WithInitializer(v1::Initializer::Kind kind) {
  v1::TensorSpec spec;
  spec.set_name("w");
  spec.add_shape(4);
  spec.mutable_initializer()->set_kind(kind);
  return spec;
}

TEST(ValidateTensorSpecTest, InitializerParametersMustGiveFiniteValues) {
  const float kNan = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  for (float bad : {kNan, kInf, -kInf, 3e38f, -3e38f}) {
    v1::TensorSpec constant = WithInitializer(v1::Initializer::CONSTANT);
    constant.mutable_initializer()->set_value(bad);
    EXPECT_FALSE(ValidateTensorSpec(constant).ok()) << bad;
    v1::TensorSpec uniform = WithInitializer(v1::Initializer::UNIFORM);
    uniform.mutable_initializer()->set_low(-std::fabs(bad));
    uniform.mutable_initializer()->set_high(std::fabs(bad));
    EXPECT_FALSE(ValidateTensorSpec(uniform).ok()) << bad;
    v1::TensorSpec normal = WithInitializer(v1::Initializer::NORMAL);
    normal.mutable_initializer()->set_stddev(std::fabs(bad));
    EXPECT_FALSE(ValidateTensorSpec(normal).ok()) << bad;
  }
  v1::TensorSpec reversed = WithInitializer(v1::Initializer::UNIFORM);
  reversed.mutable_initializer()->set_low(1);
  reversed.mutable_initializer()->set_high(-1);
  EXPECT_FALSE(ValidateTensorSpec(reversed).ok());
  v1::TensorSpec negative = WithInitializer(v1::Initializer::NORMAL);
  negative.mutable_initializer()->set_stddev(-1);
  EXPECT_FALSE(ValidateTensorSpec(negative).ok());
  v1::TensorSpec fine = WithInitializer(v1::Initializer::UNIFORM);
  fine.mutable_initializer()->set_low(-1e30f);
  fine.mutable_initializer()->set_high(1e30f);
  EXPECT_TRUE(ValidateTensorSpec(fine).ok());
}

TEST(ValidateTensorSpecTest, EmbeddingRowsMustFitAMessage) {
  v1::TensorSpec table;
  table.set_name("e");
  table.set_kind(v1::TensorSpec::EMBEDDING);
  table.add_shape(64);
  table.add_shape(kMaxEmbeddingDim + 1);
  EXPECT_FALSE(ValidateTensorSpec(table).ok());
  table.set_shape(1, kMaxEmbeddingDim);
  EXPECT_TRUE(ValidateTensorSpec(table).ok());
}

}  // namespace
}  // namespace tessera

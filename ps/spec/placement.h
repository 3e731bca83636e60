#ifndef TESSERA_PS_SPEC_PLACEMENT_H_
#define TESSERA_PS_SPEC_PLACEMENT_H_

// Where each tensor part lives: a pure function of (spec, placement config),
// computed identically by workers, tools and shards without asking anyone.
//
// - A dense tensor of at most `split_threshold_bytes` lives whole on the shard
//   StableHash(name) % num_shards (one part, index 0).
// - A larger dense tensor is cut into num_shards contiguous row ranges (rows
//   are shape[0]; a rank-0 tensor has one row); part i lives on shard i. Part
//   sizes differ by at most one row. A tensor with fewer rows than shards gets
//   one part per row, on the first shards.
// - An embedding table has one part per shard; row id r lives on shard
//   ShardOfRow(r, num_shards).
//
// Caveat: the hashes are our own (FNV-1a, splitmix64), never std::hash or
// absl::Hash, whose values may change between builds or runs.

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tessera/v1/tensor.pb.h"

namespace tessera {

struct PartPlacement {
  int part = 0;
  int shard = 0;
  int64_t row_begin = 0;  // rows [row_begin, row_end) of the tensor
  int64_t row_end = 0;
};

// Most elements of a dense tensor, or floats of an embedding row: 1 TiB.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 38;
// Most floats in one embedding row (16 MiB): a row is pulled and pushed
// whole, within one message or stream chunk.
inline constexpr int64_t kMaxEmbeddingDim = int64_t{1} << 22;
// Largest initializer parameter (value, low, high, mean, stddev, gain) in
// size: the initial values it yields stay finite float32s.
inline constexpr float kMaxInitializerParameter = 1e30f;
// A memory policy's count-min sketch: counters per hash, and hashes.
inline constexpr int64_t kMaxSketchWidth = int64_t{1} << 24;
inline constexpr int64_t kMaxSketchDepth = 16;

// 64-bit FNV-1a of `s`, finalized with splitmix64. Stable forever.
uint64_t StableHash(std::string_view s);

// splitmix64's finalizer: a bijective mix of a 64-bit value.
uint64_t Mix64(uint64_t x);

// Checks a spec: non-empty name, dtype float32, positive dimensions, sizes
// within kMaxTensorElements (and kMaxEmbeddingDim), an embedding of rank 2
// with dim > 0, a known initializer whose parameters are finite (at most
// kMaxInitializerParameter in size; uniform low <= high, stddev >= 0), a
// known optimizer kind, and a valid memory policy if it has one.
// InvalidArgument naming the tensor and the field otherwise.
absl::Status ValidateTensorSpec(const v1::TensorSpec& spec);

// Checks `spec`'s memory policy: an embedding table's only, no negative
// field, a sketch within kMaxSketchWidth x kMaxSketchDepth, and eviction by
// deletion (EVICTION_DISK is not yet supported).
absl::Status ValidateMemoryPolicy(const v1::TensorSpec& spec);

// Checks num_shards >= 1 and split_threshold_bytes >= 0.
absl::Status ValidatePlacementConfig(const v1::PlacementConfig& config);

// Rows of a dense tensor (shape[0], or 1 for a scalar) and floats per row.
int64_t NumRows(const v1::TensorSpec& spec);
int64_t RowSize(const v1::TensorSpec& spec);
int64_t NumElements(const v1::TensorSpec& spec);

// The parts of a dense tensor, in row order. Requires a valid spec and config.
std::vector<PartPlacement> PlaceDense(const v1::TensorSpec& spec,
                                      const v1::PlacementConfig& config);

// The part of `spec` stored on `shard`, if any.
bool PartOnShard(const v1::TensorSpec& spec, const v1::PlacementConfig& config,
                 int shard, PartPlacement* out);

// The shard that owns embedding row `row_id`.
inline int ShardOfRow(uint64_t row_id, int num_shards) {
  return static_cast<int>(Mix64(row_id) % static_cast<uint64_t>(num_shards));
}

}  // namespace tessera

#endif  // TESSERA_PS_SPEC_PLACEMENT_H_

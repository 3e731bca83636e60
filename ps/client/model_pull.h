#ifndef TESSERA_PS_CLIENT_MODEL_PULL_H_
#define TESSERA_PS_CLIENT_MODEL_PULL_H_

// Pulls a whole model from every shard over gRPC (ParameterServer.PullModel,
// streamed in chunks) and assembles each tensor from its parts. libtorch-free;
// model_file.h writes the result.
//
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tessera {

struct PulledTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;        // row-major, shape's element count
  bool integer = false;             // int64 (ids) instead of float32
  std::vector<int64_t> int_values;  // the values when `integer`
  int64_t version = 0;              // max part version seen
};

// Pulls every tensor from `shards` (gRPC addresses, in shard order). Dense
// tensors must be complete (every row from some shard): DataLoss naming the
// tensor otherwise. Embedding tables with a row bound become a dense
// [rows, dim] tensor (rows never touched hold their deterministic initial
// values); unbounded tables become "<name>" [n, dim] plus "<name>.ids" [n].
// Each shard gets `timeout`; the error names the shard that failed.
absl::StatusOr<std::vector<PulledTensor>> PullModel(
    const std::vector<std::string>& shards, absl::Duration timeout);

}  // namespace tessera

#endif  // TESSERA_PS_CLIENT_MODEL_PULL_H_

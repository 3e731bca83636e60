#ifndef TESSERA_TOOLS_PULL_TO_FILE_H_
#define TESSERA_TOOLS_PULL_TO_FILE_H_

// Pulls a whole model from every shard over gRPC straight into a model file
// (model_file.h), without holding any tensor in memory: what `tessera pull`
// runs. Memory is a few chunks (max_chunk_floats) and one batch of a bounded
// table (bounded_batch_rows x dim), whatever the model's size.
//
// How (docs/design.md, "Pulling a model"):
//  1. ListTensors on every shard gives each tensor's spec and parts, and each
//     embedding table's rows per shard (num_rows); the file's tensors (name
//     order) and their shapes are fixed from it, before any data.
//  2. Dense tensors: each part's PullTensor, in row order.
//  3. Bounded tables ([rows, dim]): rows 0.. in batches, each batch's ids
//     asked of the shards that own them (PullTensor with row_ids); rows never
//     pushed read as their initial values.
//  4. Unbounded tables: "<name>" [n, dim] and "<name>.ids" [n], n the sum of
//     the shards' num_rows at step 1; each shard's whole-table PullTensor in
//     shard order, rows in its storage order (not sorted by id). Each shard
//     contributes exactly the rows it announced: rows created during the
//     pull beyond that count are left out; a shard that streams fewer
//     (rows freed during the pull) fails the pull with Aborted (retry it).
//     The ids are spooled to an unlinked temporary file beside the output
//     and appended after the values.
// The file is written under a temporary name and renamed by a successful
// pull (ModelFileWriter), so `path` is never left half-written.
//
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/model_file.h"

namespace tessera {

struct PullToFileOptions {
  // Deadline of each remote call (a ListTensors, a part's or a batch's
  // PullTensor stream).
  absl::Duration timeout = absl::Seconds(60);
  // Floats per streamed chunk asked of the shards; 0 = the shard's default
  // (1 MiB).
  int64_t max_chunk_floats = 0;
  // Rows of a bounded table asked of the shards per round.
  int64_t bounded_batch_rows = int64_t{1} << 14;
  ModelFileWriterOptions writer;
};

// A tensor written: its name, shape and the largest part version seen.
struct PulledTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t version = 0;
};

// Pulls every tensor from `shards` (gRPC addresses, in shard order, all of
// the job's shards) into `path` in `format`. Errors name the shard and the
// tensor: DataLoss for an incomplete dense tensor (a shard missing from
// `shards`) or a malformed chunk; FailedPrecondition if `shards` is not the
// job's shard count; Aborted as above; a shard's own error code otherwise.
absl::StatusOr<std::vector<PulledTensorInfo>> PullModelToFile(
    const std::vector<std::string>& shards, const std::string& path,
    ModelFileFormat format, const PullToFileOptions& options = {});

}  // namespace tessera

#endif  // TESSERA_TOOLS_PULL_TO_FILE_H_

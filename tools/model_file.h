#ifndef TESSERA_TOOLS_MODEL_FILE_H_
#define TESSERA_TOOLS_MODEL_FILE_H_

// Model files: one dict name -> tensor written with torch::pickle_save, the
// format of torch.save, so libtorch (torch::pickle_load) and PyTorch
// (torch.load) both read it. The header is libtorch-free.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ps/client/model_pull.h"

namespace tessera {

absl::Status WriteModelFile(const std::string& path,
                            const std::vector<PulledTensor>& tensors);

// Reads a file written by WriteModelFile back (for tests and `tessera
// inspect`); float tensors only fill `values`, int64 ones `int_values`.
absl::StatusOr<std::vector<PulledTensor>> ReadModelFile(
    const std::string& path);

}  // namespace tessera

#endif  // TESSERA_TOOLS_MODEL_FILE_H_

// Writes and reads back a model file past 4 GiB, streamed: the zip64 path on
// real sizes. Not part of `make test` (it writes ~4.4 GB and reads it into
// memory); run by hand when the writer changes:
//
//   bazel run //tools:model_file_large -- /tmp/large.pt   (or .safetensors)
//   /usr/bin/python3 -c 'import torch; torch.load("/tmp/large.pt",
//   weights_only=True)'

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "tools/model_file.h"

namespace tessera {
namespace {

constexpr int64_t kHuge = 1100 * 1000 * 1000;  // float32: 4.4 GB
constexpr int64_t kChunk = 1 << 20;

int Run(const std::string& path) {
  std::vector<ModelTensorInfo> infos = {
      {"before", ModelDType::kFloat32, {3}},
      {"huge", ModelDType::kFloat32, {kHuge / 1000, 1000}},
      {"after", ModelDType::kInt64, {5}},  // past 4 GiB into the file
  };
  auto writer = NewModelFileWriter(path, ModelFileFormatForPath(path), infos);
  if (!writer.ok()) {
    std::cerr << writer.status() << "\n";
    return 1;
  }
  auto check = [](const absl::Status& s) {
    if (!s.ok()) std::cerr << s << "\n";
    return s.ok();
  };
  const std::vector<float> before = {1, 2, 3};
  if (!check((*writer)->Append(before))) return 1;
  std::vector<float> chunk(kChunk);
  for (int64_t at = 0; at < kHuge; at += kChunk) {
    const int64_t n = std::min(kChunk, kHuge - at);
    for (int64_t j = 0; j < n; ++j) chunk[j] = (at + j) % 1024;
    if (!check((*writer)->Append(absl::MakeConstSpan(chunk.data(), n)))) {
      return 1;
    }
  }
  const std::vector<int64_t> after = {5, 6, 7, 8, int64_t{1} << 62};
  if (!check((*writer)->Append(after)) || !check((*writer)->Finish())) return 1;
  std::cout << "wrote " << (*writer)->bytes_written() << " bytes\n";

  auto read = ReadModelFile(path);
  if (!read.ok()) {
    std::cerr << read.status() << "\n";
    return 1;
  }
  bool ok = read->size() == 3 && (*read)[0].values == before &&
            (*read)[2].int_values == after &&
            (*read)[1].values.size() == static_cast<size_t>(kHuge);
  for (int64_t j = 0; ok && j < kHuge; j += 999983) {
    ok = (*read)[1].values[j] == j % 1024;
  }
  std::cout << (ok ? "read back: same tensors\n" : "read back: DIFFERENT\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: model_file_large PATH\n";
    return 2;
  }
  return tessera::Run(argv[1]);
}

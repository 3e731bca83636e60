// The C++ half of model_file_python_test: writes model files of a fixed set
// of tensors whose values follow a pattern that check_model_file.py knows, or
// checks that a file (written by PyTorch) holds exactly that set.
//
//   model_file_pattern write DIR   writes DIR/pattern.pt (whole tensors),
//                                  DIR/pattern_chunked.pt (7 values a chunk),
//                                  DIR/pattern_zip64.pt (zip64 records) and
//                                  DIR/pattern.safetensors
//   model_file_pattern check FILE  exits 0 iff FILE holds the pattern

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "tools/model_file.h"

namespace tessera {
namespace {

// Keep in step with PATTERN in check_model_file.py.
struct Spec {
  const char* name;
  bool integer;
  std::vector<int64_t> shape;
};
const std::vector<Spec>& Specs() {
  static const auto* specs = new std::vector<Spec>{
      {"mlp.0.weight", false, {2, 3}},
      {"mlp.0.bias", false, {2}},
      {"bag.weight", false, {5, 4}},
      {"table", false, {3, 4}},
      {"table.ids", true, {3}},
      {"step", false, {}},
      {"count", true, {}},
      {"empty", false, {0, 4}},
      {"empty.ids", true, {0}},
      {"big", false, {2, 3, 4, 5, 6}},
      {"wide.ids", true, {70000}},
  };
  return *specs;
}

// Exact in float32: multiples of 1/8 in [-3, 4.5].
float FloatValue(int64_t t, int64_t j) {
  return ((t * 7 + j) % 61) * 0.125f - 3.0f;
}
int64_t IntValue(int64_t t, int64_t j) {
  return (j % 2 ? -1 : 1) * ((t + 1) * 1000000000007LL + j);
}

std::vector<PulledTensor> Pattern() {
  std::vector<PulledTensor> out;
  for (size_t t = 0; t < Specs().size(); ++t) {
    const Spec& s = Specs()[t];
    PulledTensor p;
    p.name = s.name;
    p.shape = s.shape;
    p.integer = s.integer;
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    for (int64_t j = 0; j < n; ++j) {
      if (s.integer) {
        p.int_values.push_back(IntValue(t, j));
      } else {
        p.values.push_back(FloatValue(t, j));
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

absl::Status WriteChunked(const std::string& path, ModelFileFormat format,
                          const ModelFileWriterOptions& options) {
  std::vector<ModelTensorInfo> infos;
  for (const Spec& s : Specs()) {
    infos.push_back({s.name,
                     s.integer ? ModelDType::kInt64 : ModelDType::kFloat32,
                     s.shape});
  }
  auto writer = NewModelFileWriter(path, format, infos, options);
  if (!writer.ok()) return writer.status();
  for (const PulledTensor& t : Pattern()) {
    const size_t n = t.integer ? t.int_values.size() : t.values.size();
    for (size_t at = 0; at < n; at += 7) {
      const size_t len = std::min<size_t>(7, n - at);
      absl::Status s =
          t.integer ? (*writer)->Append(
                          absl::MakeConstSpan(t.int_values).subspan(at, len))
                    : (*writer)->Append(
                          absl::MakeConstSpan(t.values).subspan(at, len));
      if (!s.ok()) return s;
    }
  }
  return (*writer)->Finish();
}

int Write(const std::string& dir) {
  const std::vector<PulledTensor> pattern = Pattern();
  ModelFileWriterOptions zip64;
  zip64.force_zip64 = true;
  for (absl::Status s : {
           WriteModelFile(dir + "/pattern.pt", pattern),
           WriteModelFile(dir + "/pattern.safetensors", pattern,
                          ModelFileFormat::kSafetensors),
           WriteChunked(dir + "/pattern_chunked.pt", ModelFileFormat::kPt, {}),
           WriteChunked(dir + "/pattern_zip64.pt", ModelFileFormat::kPt, zip64),
       }) {
    if (!s.ok()) {
      std::cerr << "model_file_pattern: " << s << "\n";
      return 1;
    }
  }
  return 0;
}

int Check(const std::string& path) {
  auto read = ReadModelFile(path);
  if (!read.ok()) {
    std::cerr << "model_file_pattern: " << read.status() << "\n";
    return 1;
  }
  const std::vector<PulledTensor> want = Pattern();
  std::vector<std::string> problems;
  if (read->size() != want.size()) {
    problems.push_back(
        absl::StrCat(read->size(), " tensors, not ", want.size()));
  }
  for (size_t i = 0; i < std::min(read->size(), want.size()); ++i) {
    const PulledTensor& got = (*read)[i];
    const PulledTensor& w = want[i];
    if (got.name != w.name || got.shape != w.shape ||
        got.integer != w.integer || got.values != w.values ||
        got.int_values != w.int_values) {
      problems.push_back(absl::StrCat(
          "tensor ", i, ": \"", got.name, "\" [", absl::StrJoin(got.shape, ","),
          "] ", got.integer ? "int64" : "float32", " differs from \"", w.name,
          "\" [", absl::StrJoin(w.shape, ","), "] ",
          w.integer ? "int64" : "float32", " or its values"));
    }
  }
  if (!problems.empty()) {
    std::cerr << "model_file_pattern: " << path << ": "
              << absl::StrJoin(problems, "; ") << "\n";
    return 1;
  }
  std::cout << "model_file_pattern: " << path << " holds the pattern ("
            << read->size() << " tensors)\n";
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  const std::string command = argc == 3 ? argv[1] : "";
  if (command == "write") return tessera::Write(argv[2]);
  if (command == "check") return tessera::Check(argv[2]);
  std::cerr << "usage: model_file_pattern write DIR | check FILE\n";
  return 2;
}

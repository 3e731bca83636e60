// The one file of tools/ that includes libtorch.
#include "tools/model_file.h"

#include <torch/torch.h>

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace tessera {

absl::Status WriteModelFile(const std::string& path,
                            const std::vector<PulledTensor>& tensors) {
  try {
    c10::Dict<std::string, at::Tensor> dict;
    for (const PulledTensor& t : tensors) {
      at::Tensor tensor;
      if (t.integer) {
        tensor = torch::tensor(t.int_values, torch::kInt64).reshape(t.shape);
      } else {
        tensor = torch::from_blob(const_cast<float*>(t.values.data()), t.shape,
                                  torch::kFloat32)
                     .clone();
      }
      dict.insert(t.name, tensor);
    }
    std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
    const std::string tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), bytes.size());
    out.close();
    if (!out.good() || std::rename(tmp.c_str(), path.c_str()) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot write ", path));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("libtorch could not write ", path,
                                            ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PulledTensor>> ReadModelFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good())
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  std::vector<PulledTensor> out;
  try {
    c10::IValue value = torch::pickle_load(bytes);
    for (const auto& entry : value.toGenericDict()) {
      PulledTensor t;
      t.name = entry.key().toStringRef();
      at::Tensor tensor = entry.value().toTensor().contiguous();
      t.shape = tensor.sizes().vec();
      if (tensor.scalar_type() == torch::kInt64) {
        t.integer = true;
        t.int_values.assign(tensor.data_ptr<int64_t>(),
                            tensor.data_ptr<int64_t>() + tensor.numel());
      } else {
        tensor = tensor.to(torch::kFloat32);
        t.values.assign(tensor.data_ptr<float>(),
                        tensor.data_ptr<float>() + tensor.numel());
      }
      out.push_back(std::move(t));
    }
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat(
        path, " is not a model file: ", e.what_without_backtrace()));
  }
  return out;
}

}  // namespace tessera

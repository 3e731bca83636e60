#include "ps/server/server_options.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera {

absl::StatusOr<int> ParseShardIndex(absl::string_view text) {
  absl::string_view digits = text;
  const size_t dash = text.rfind('-');
  if (dash != absl::string_view::npos) digits = text.substr(dash + 1);
  int index = -1;
  if (dash == 0 || digits.empty() || !absl::SimpleAtoi(digits, &index) ||
      index < 0 ||
      digits.find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard_index=\"", text,
        "\" is neither a number nor a pod name ending in -<ordinal>"));
  }
  return index;
}

absl::Status WritePortFile(const std::string& path, int grpc_port,
                           int data_port, int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "grpc=" << grpc_port << "\ndata=" << data_port
        << "\nmetrics=" << metrics_port << "\n";
    if (!out.good()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot write port file ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace tessera

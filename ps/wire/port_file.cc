#include "ps/wire/port_file.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tessera {

absl::Status WritePortFile(const std::string& path, const ServerPorts& ports) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "grpc=" << ports.grpc << "\ndata=" << ports.data
        << "\nmetrics=" << ports.metrics << "\n";
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

absl::StatusOr<ServerPorts> ParsePortFile(absl::string_view text) {
  ServerPorts ports;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    int port = 0;
    if (!absl::SimpleAtoi(kv.second, &port) || port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("port file line \"", line, "\" is not name=port"));
    }
    if (kv.first == "grpc") ports.grpc = port;
    if (kv.first == "data") ports.data = port;
    if (kv.first == "metrics") ports.metrics = port;
  }
  if (ports.grpc <= 0) {
    return absl::InvalidArgumentError("port file names no gRPC port");
  }
  return ports;
}

absl::StatusOr<ServerPorts> ReadPortFile(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) {
    return absl::NotFoundError(absl::StrCat("no port file ", path, " yet"));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto ports = ParsePortFile(text.str());
  if (!ports.ok()) {
    return absl::Status(ports.status().code(),
                        absl::StrCat(path, ": ", ports.status().message()));
  }
  return ports;
}

}  // namespace tessera

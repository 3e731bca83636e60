// tessera: the command line of the Tessera parameter server.
//
//   tessera demo                 train Fashion-MNIST on a local cluster
//   tessera demo --demo_job=job.pbtxt   train a job file on a local cluster
//   tessera pull --shards=a,b --out=model.pt [--format=pt|safetensors]
//   tessera status --coordinator=host:7000 [--shards=a,b]

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ps/client/model_pull.h"
#include "ps/common/protobuf_log.h"
#include "ps/common/usage.h"
#include "tools/cli_status.h"
#include "tools/demo.h"
#include "tools/model_file.h"

ABSL_FLAG(std::string, shards, "",
          "gRPC addresses of every shard, in shard order, comma-separated.");
ABSL_FLAG(std::string, coordinator, "",
          "gRPC address of the coordinator (shard 0); default: the first of "
          "--shards.");
ABSL_FLAG(std::string, out, "model.pt", "pull: the model file to write.");
ABSL_FLAG(std::string, format, "",
          "pull: pt (torch.save's format) or safetensors; default: "
          "safetensors if --out ends in .safetensors, else pt.");
ABSL_FLAG(double, timeout_s, 60, "Deadline of each remote call.");

namespace tessera {
namespace {

constexpr char kUsage[] =
    R"(the Tessera parameter server's command line.

  tessera demo [--demo_* flags]
      Starts 2 shards and 2 workers on this machine, trains the Fashion-MNIST
      MLP, evaluates it, pulls the model to a file and cleans up.
  tessera demo --demo_job=JOB.pbtxt [--demo_shards=N --demo_workers=M
               --demo_out=model.pt]
      The same for your own job file: trains it, prints the status with
      each epoch's test figures and writes the pulled model.
  tessera pull --shards=HOST:PORT,... [--out=model.pt] [--format=pt|safetensors]
      Fetches every tensor over gRPC and writes one file of the tensors by
      state_dict name: torch.save's format, which torch.load(path,
      weights_only=True) reads, or safetensors (the default for a .safetensors
      --out).
  tessera status --coordinator=HOST:PORT [--shards=HOST:PORT,...]
      Job, epoch, partitions, live workers, shards and their health.
)";

std::vector<std::string> ShardList() {
  std::vector<std::string> shards;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_shards), ',', absl::SkipEmpty())) {
    shards.emplace_back(s);
  }
  return shards;
}

int Fail(const absl::Status& status) {
  std::cerr << "tessera: " << status << "\n";
  return 1;
}

int Pull() {
  const std::vector<std::string> shards = ShardList();
  if (shards.empty()) {
    return Fail(absl::InvalidArgumentError("pull needs --shards"));
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  ModelFileFormat format = ModelFileFormatForPath(out);
  if (!absl::GetFlag(FLAGS_format).empty()) {
    auto parsed = ParseModelFileFormat(absl::GetFlag(FLAGS_format));
    if (!parsed.ok()) return Fail(parsed.status());
    format = *parsed;
  }
  const absl::Time start = absl::Now();
  auto tensors =
      PullModel(shards, absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
  if (!tensors.ok()) return Fail(tensors.status());
  absl::Status written = WriteModelFile(out, *tensors, format);
  if (!written.ok()) return Fail(written);
  int64_t values = 0;
  for (const auto& t : *tensors) {
    values += t.values.size() + t.int_values.size();
    std::cout << absl::StrFormat("  %-32s [%s]  version %d\n", t.name,
                                 absl::StrJoin(t.shape, ", "), t.version);
  }
  std::cout << absl::StrFormat(
      "wrote %d tensors (%d values) from %d shards to %s (%s) in %s\n",
      tensors->size(), values, shards.size(), out, ModelFileFormatName(format),
      absl::FormatDuration(
          absl::Trunc(absl::Now() - start, absl::Milliseconds(1))));
  if (format == ModelFileFormat::kPt) {
    std::cout << "load it with torch.load(\"" << out
              << "\", weights_only=True), then model.load_state_dict(...)\n";
  } else {
    std::cout << "load it with safetensors.torch.load_file(\"" << out
              << "\") or any safetensors reader\n";
  }
  return 0;
}

int Status() {
  std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  const std::vector<std::string> shards = ShardList();
  if (coordinator.empty() && !shards.empty()) coordinator = shards[0];
  if (coordinator.empty()) {
    return Fail(
        absl::InvalidArgumentError("status needs --coordinator (or --shards)"));
  }
  auto text = FormatStatus(coordinator, shards,
                           absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
  if (!text.ok()) return Fail(text.status());
  std::cout << *text;
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::SetUsage(tessera::kUsage);
  tessera::RateLimitProtobufLogs();
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << tessera::kUsage;
    return 2;
  }
  const std::string command = args[1];
  if (command == "pull") return tessera::Pull();
  if (command == "status") return tessera::Status();
  if (command == "demo") return tessera::RunDemo(argv[0]);
  std::cerr << "tessera: unknown command \"" << command << "\"\n"
            << tessera::kUsage;
  return 2;
}

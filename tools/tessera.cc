// tessera: the command line of the Tessera parameter server.
//
//   tessera demo                 train Fashion-MNIST on a local cluster
//   tessera demo --demo_job=job.pbtxt   train a job file on a local cluster
//   tessera pull --shards=a,b --out=model.pt [--format=pt|safetensors]
//   tessera status --coordinator=host:7000 [--shards=a,b]
//   tessera gen-criteo --out=DIR [--train_lines=N ...]

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
#include "tools/pull_to_file.h"
#include "worker/data/planted_criteo.h"

ABSL_FLAG(std::string, shards, "",
          "gRPC addresses of every shard, in shard order, comma-separated.");
ABSL_FLAG(std::string, coordinator, "",
          "gRPC address of the coordinator (shard 0); default: the first of "
          "--shards.");
ABSL_FLAG(std::string, out, "",
          "pull: the model file to write (default model.pt); gen-criteo: the "
          "output directory (required).");
ABSL_FLAG(std::string, format, "",
          "pull: pt (torch.save's format) or safetensors; default: "
          "safetensors if --out ends in .safetensors, else pt.");
ABSL_FLAG(double, timeout_s, 60, "Deadline of each remote call.");
ABSL_FLAG(int64_t, train_lines, 1000000, "gen-criteo: training lines.");
ABSL_FLAG(int64_t, test_lines, 100000, "gen-criteo: test lines.");
ABSL_FLAG(int, files, 1,
          "gen-criteo: training files the lines are split into.");
ABSL_FLAG(bool, gzip, false, "gen-criteo: write gzip files (.tsv.gz).");
ABSL_FLAG(uint64_t, seed, 1, "gen-criteo: the seed of the model and the data.");
ABSL_FLAG(int64_t, vocabulary, 1000,
          "gen-criteo: the largest categorical field's vocabulary (fields "
          "range from 10 to this).");
ABSL_FLAG(double, zipf, 1.1,
          "gen-criteo: Zipf exponent of category popularity.");

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
  tessera gen-criteo --out=DIR [--train_lines=1000000] [--test_lines=100000]
                     [--files=1] [--gzip] [--seed=1] [--vocabulary=1000]
                     [--zipf=1.1]
      Writes Criteo-format data drawn from a planted logistic model:
      DIR/train/part-NNNNN.tsv[.gz], DIR/test.tsv[.gz] and DIR/planted.json
      with the best AUC and log loss the model allows (docs/data.md).
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
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = "model.pt";
  ModelFileFormat format = ModelFileFormatForPath(out);
  if (!absl::GetFlag(FLAGS_format).empty()) {
    auto parsed = ParseModelFileFormat(absl::GetFlag(FLAGS_format));
    if (!parsed.ok()) return Fail(parsed.status());
    format = *parsed;
  }
  const absl::Time start = absl::Now();
  PullToFileOptions options;
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  auto tensors = PullModelToFile(shards, out, format, options);
  if (!tensors.ok()) return Fail(tensors.status());
  int64_t values = 0;
  for (const auto& t : *tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    values += n;
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

int GenCriteo() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    return Fail(absl::InvalidArgumentError("gen-criteo needs --out=DIR"));
  }
  worker::PlantedCriteoOptions options;
  options.train_lines = absl::GetFlag(FLAGS_train_lines);
  options.test_lines = absl::GetFlag(FLAGS_test_lines);
  options.files = absl::GetFlag(FLAGS_files);
  options.gzip = absl::GetFlag(FLAGS_gzip);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.vocabulary = absl::GetFlag(FLAGS_vocabulary);
  options.zipf = absl::GetFlag(FLAGS_zipf);
  const absl::Time start = absl::Now();
  auto summary = worker::WritePlantedCriteo(out, options);
  if (!summary.ok()) return Fail(summary.status());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t lines = options.train_lines + options.test_lines;
  std::cout << summary->json;
  std::cout << absl::StrFormat(
      "wrote %d lines (%d train in %d files, %d test) to %s in %.1f s "
      "(%.0f lines/s)\n",
      lines, options.train_lines, options.files, options.test_lines, out,
      seconds, seconds > 0 ? lines / seconds : 0.0);
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
  if (command == "gen-criteo") return tessera::GenCriteo();
  std::cerr << "tessera: unknown command \"" << command << "\"\n"
            << tessera::kUsage;
  return 2;
}

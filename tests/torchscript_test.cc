// Multi-process tests of TorchScript jobs: real tessera-ps and
// tessera-worker processes on loopback training a user's nn.Module, saved by
// tests/python/bsp_reference.py, on CSV files.
//
// - One worker under BSP with SGD on the shards follows a single-process
//   PyTorch run (the same script, torch.optim.SGD) step for step: after two
//   epochs every parameter, buffer and table row agrees to float tolerance.
//   The worker gets the model only from the coordinator, the shards start
//   from the file's own values, BatchNorm's buffers follow PyTorch's, a
//   frozen parameter (requires_grad False) keeps its file value.
// - Bad input lines are counted and reported with their file and line; past
//   the job's max_bad_lines the job fails and says why.

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/client/model_pull.h"
#include "ps/common/status_matchers.h"
#include "tests/cluster.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::LocalCluster;
using testing::LocalClusterOptions;

constexpr absl::Duration kJobTimeout = absl::Seconds(240);

std::string Generated(const std::string& name) {
  return testing::BinaryPath("tests/python/bsp_reference/" + name);
}

// "name n v1 ... vn" per line.
std::map<std::string, std::vector<double>> ReadRecords(
    const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  std::ifstream in(path);
  std::string name;
  size_t n;
  while (in >> name >> n) {
    std::vector<double>& v = out[name];
    v.resize(n);
    for (double& x : v) in >> x;
  }
  return out;
}

std::string JobText(const std::string& name, const std::string& csv,
                    const std::string& extra_dataset = "") {
  return absl::StrCat(
      "name: \"", name, "\"\n",
      "model {\n"
      "  name: \"torchscript\"\n"
      "  torchscript: \"",
      Generated("tiny.pt"),
      "\"\n"
      "  loss: BCE_WITH_LOGITS\n"
      "  embedding_tables { module: \"emb.0\" rows: 40 initializer { kind: "
      "CONSTANT value: 0.01 } }\n"
      "  embedding_tables { module: \"emb.1\" rows: 0 initializer { kind: "
      "CONSTANT value: 0.01 } }\n"
      "}\n"
      "dataset {\n"
      "  format: CSV path: \"",
      csv,
      "\" shuffle_buffer: 1\n"
      "  csv { label: \"label\" dense: \"d0\" dense: \"d1\" dense: \"d2\" "
      "categorical: \"c0\" categorical: \"c1\" }\n",
      extra_dataset,
      "}\n"
      "batch_size: 32\n"
      "epochs: 2\n"
      "partitions_per_epoch: 1\n"
      "consistency { mode: BSP }\n"
      "optimizer { kind: SGD learning_rate: 0.05 }\n"
      "flush_interval_s: 5\n");
}

TEST(TorchScriptTest, OneBspWorkerFollowsPyTorchStepForStep) {
  LocalClusterOptions options;
  options.num_shards = 2;
  options.job_config = JobText("bsp-parity", Generated("train.csv"));
  auto cluster = LocalCluster::Start(options);
  ASSERT_THAT(cluster, IsOk());
  ASSERT_THAT((*cluster)->StartWorker("w0"), IsOk());
  auto status = (*cluster)->WaitUntilFinished(kJobTimeout);
  ASSERT_THAT(status, IsOk()) << (*cluster)->LogTails();
  EXPECT_EQ(status->bad_lines(), 0);

  auto pulled = PullModel((*cluster)->shard_addresses(), absl::Seconds(60));
  ASSERT_THAT(pulled, IsOk());
  std::map<std::string, const PulledTensor*> by_name;
  for (const PulledTensor& t : *pulled) by_name[t.name] = &t;
  const auto expected = ReadRecords(Generated("expected.txt"));
  ASSERT_FALSE(expected.empty());
  const auto near = [](double got, double want) {
    return std::abs(got - want) <= 1e-4 + 1e-3 * std::abs(want);
  };
  int compared = 0;
  // Rows of the unbounded table by id.
  std::map<uint64_t, std::vector<float>> unbounded;
  ASSERT_TRUE(by_name.count("emb.1.weight") &&
              by_name.count("emb.1.weight.ids"));
  {
    const PulledTensor& rows = *by_name["emb.1.weight"];
    const PulledTensor& ids = *by_name["emb.1.weight.ids"];
    for (size_t i = 0; i < ids.int_values.size(); ++i) {
      unbounded[static_cast<uint64_t>(ids.int_values[i])] = std::vector<float>(
          rows.values.begin() + 4 * i, rows.values.begin() + 4 * (i + 1));
    }
  }
  for (const auto& [name, want] : expected) {
    const std::vector<std::string> parts = absl::StrSplit(name, '/');
    std::vector<float> got;
    if (parts.size() == 2) {  // A table row: "emb.K.weight/row".
      const uint64_t row = std::stoull(parts[1]);
      if (parts[0] == "emb.1.weight") {
        ASSERT_TRUE(unbounded.count(row)) << name;
        got = unbounded[row];
      } else {
        ASSERT_TRUE(by_name.count(parts[0])) << name;
        const PulledTensor& t = *by_name[parts[0]];
        ASSERT_EQ(t.shape, (std::vector<int64_t>{40, 4}));
        got.assign(t.values.begin() + 4 * row,
                   t.values.begin() + 4 * (row + 1));
      }
    } else {
      ASSERT_TRUE(by_name.count(name)) << name << " was not pulled";
      got = by_name[name]->values;
    }
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_TRUE(near(got[i], want[i])) << name << "[" << i << "]: Tessera "
                                         << got[i] << ", PyTorch " << want[i];
      ++compared;
    }
  }
  EXPECT_GT(compared, 200);
  // Every row the unbounded table holds was one PyTorch touched too.
  int expected_unbounded = 0;
  for (const auto& [name, want] : expected) {
    if (absl::StartsWith(name, "emb.1.weight/")) ++expected_unbounded;
  }
  EXPECT_EQ(static_cast<int>(unbounded.size()), expected_unbounded);
}

TEST(TorchScriptTest, BadLinesAreReportedAndFailTheJobPastTheLimit) {
  // The reference data with three broken lines (a missing column, a label
  // that is not a number, a dense value that is not a number).
  std::ifstream in(Generated("train.csv"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_GT(lines.size(), 100u);
  lines[10] = "1,0.5,0.25";
  lines[20] = "yes,0.5,0.25,0.125,a1,b1";
  lines[30] = "0,zero,0.25,0.125,a1,b1";
  const std::string csv = testing::TempPath("bad.csv");
  {
    std::ofstream out(csv);
    for (const std::string& line : lines) out << line << "\n";
  }
  {
    LocalClusterOptions options;
    options.num_shards = 1;
    options.job_config = JobText("bad-lines-counted", csv);
    auto cluster = LocalCluster::Start(options);
    ASSERT_THAT(cluster, IsOk());
    ASSERT_THAT((*cluster)->StartWorker("w0"), IsOk());
    auto status = (*cluster)->WaitUntilFinished(kJobTimeout);
    ASSERT_THAT(status, IsOk()) << (*cluster)->LogTails();
    EXPECT_EQ(status->bad_lines(), 6);  // 3 lines x 2 epochs
    EXPECT_THAT(status->first_bad_line(), HasSubstr("bad.csv:11"));
    EXPECT_EQ(status->failed(), "");
  }
  {
    LocalClusterOptions options;
    options.num_shards = 1;
    options.job_config = JobText("bad-lines-fail", csv, "  max_bad_lines: 2\n");
    auto cluster = LocalCluster::Start(options);
    ASSERT_THAT(cluster, IsOk());
    ASSERT_THAT((*cluster)->StartWorker("w0"), IsOk());
    auto status = (*cluster)->WaitFor(
        "the job to fail",
        [](const v1::JobStatus& s) { return !s.failed().empty(); },
        kJobTimeout);
    ASSERT_THAT(status, IsOk()) << (*cluster)->LogTails();
    EXPECT_THAT(status->failed(), HasSubstr("max_bad_lines"));
    EXPECT_THAT(status->failed(), HasSubstr("bad.csv:11"));
    auto codes = (*cluster)->WaitForWorkers(absl::Seconds(60));
    ASSERT_THAT(codes, IsOk());
    EXPECT_NE(codes->at("w0"), 0) << "a failed job's worker exits non-zero";
  }
}

}  // namespace
}  // namespace tessera

#include "worker/data/planted_criteo.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/input_file.h"
#include "worker/data/tabular.h"
#include "worker/data/task_metrics.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

// The number after "key": in a flat JSON object.
double JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  EXPECT_NE(at, std::string::npos) << key;
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + key.size() + 3, nullptr);
}

int64_t CountExamples(const TabularSource& source, int64_t* bad) {
  TabularSource::ReadOptions read;
  read.batch_size = 1000;
  int64_t examples = 0;
  *bad = 0;
  for (int p = 0; p < 3; ++p) {
    auto reader = source.OpenPartition(p, 3, read);
    EXPECT_THAT(reader, IsOk());
    if (!reader.ok()) return -1;
    TabularBatch batch;
    while (true) {
      auto more = (*reader)->Next(&batch);
      EXPECT_THAT(more, IsOk());
      if (!more.ok() || !*more) break;
      EXPECT_THAT(ValidateTabularBatch(batch), IsOk());
    }
    examples += (*reader)->examples();
    *bad += (*reader)->stats().count;
  }
  return examples;
}

class PlantedCriteoTest : public ::testing::TestWithParam<bool> {};

TEST_P(PlantedCriteoTest, ParsesCleanlyAndBestAucRecomputesFromTheFile) {
  const std::string dir = TestTmpPath(GetParam() ? "planted_gz" : "planted");
  PlantedCriteoOptions options;
  options.train_lines = 3000;
  options.test_lines = 20000;
  options.files = 3;
  options.gzip = GetParam();
  options.seed = 42;
  TESSERA_ASSERT_OK_AND_ASSIGN(PlantedCriteoSummary summary,
                               WritePlantedCriteo(dir, options));
  ASSERT_EQ(summary.train_files.size(), 3u);
  const std::string json = ReadTestFile(dir + "/planted.json");
  EXPECT_EQ(json, summary.json);
  EXPECT_EQ(JsonNumber(json, "train_lines"), 3000);
  EXPECT_EQ(JsonNumber(json, "test_lines"), 20000);
  EXPECT_EQ(JsonNumber(json, "seed"), 42);
  const double best_auc = JsonNumber(json, "best_auc");
  const double rate = JsonNumber(json, "positive_rate");
  EXPECT_GT(best_auc, 0.72);
  EXPECT_LT(best_auc, 0.85);
  EXPECT_GT(rate, 0.2);
  EXPECT_LT(rate, 0.3);

  TabularOptions tabular;
  tabular.path = dir + "/train";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto train, TabularSource::Open(tabular));
  int64_t bad = 0;
  EXPECT_EQ(CountExamples(*train, &bad), 3000);
  EXPECT_EQ(bad, 0);
  tabular.path = summary.test_file;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto test, TabularSource::Open(tabular));
  EXPECT_EQ(CountExamples(*test, &bad), 20000);
  EXPECT_EQ(bad, 0);

  // The planted model, rebuilt from the options, scores the test file's text.
  TESSERA_ASSERT_OK_AND_ASSIGN(auto model, PlantedCriteoModel::Create(options));
  TESSERA_ASSERT_OK_AND_ASSIGN(auto file, InputFile::Open(summary.test_file));
  LineReader lines(file.get());
  std::vector<double> probabilities;
  std::vector<float> labels;
  absl::string_view line;
  while (true) {
    TESSERA_ASSERT_OK_AND_ASSIGN(bool more, lines.Next(&line));
    if (!more) break;
    TESSERA_ASSERT_OK_AND_ASSIGN(double p, model->Probability(line));
    probabilities.push_back(p);
    labels.push_back(line[0] == '1' ? 1.0f : 0.0f);
  }
  ASSERT_EQ(probabilities.size(), 20000u);
  TESSERA_ASSERT_OK_AND_ASSIGN(double auc, RocAuc(probabilities, labels));
  EXPECT_EQ(auc, best_auc);
  TESSERA_ASSERT_OK_AND_ASSIGN(double loss, LogLoss(probabilities, labels));
  EXPECT_EQ(loss, JsonNumber(json, "best_log_loss"));
}

INSTANTIATE_TEST_SUITE_P(PlainAndGzip, PlantedCriteoTest,
                         ::testing::Values(false, true));

TEST(PlantedCriteoDeterminismTest, SameSeedSameBytesAnyFileCount) {
  PlantedCriteoOptions options;
  options.train_lines = 1000;
  options.test_lines = 200;
  options.seed = 9;
  options.files = 1;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto one,
                               WritePlantedCriteo(TestTmpPath("d1"), options));
  options.files = 4;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto four,
                               WritePlantedCriteo(TestTmpPath("d4"), options));
  std::string joined;
  for (const std::string& path : four.train_files) joined += ReadTestFile(path);
  EXPECT_EQ(ReadTestFile(one.train_files[0]), joined);
  EXPECT_EQ(ReadTestFile(one.test_file), ReadTestFile(four.test_file));
  options.seed = 10;
  TESSERA_ASSERT_OK_AND_ASSIGN(auto other,
                               WritePlantedCriteo(TestTmpPath("d10"), options));
  EXPECT_NE(ReadTestFile(one.test_file), ReadTestFile(other.test_file));
}

TEST(PlantedCriteoDeterminismTest, BadOptionsAreInvalidArgument) {
  PlantedCriteoOptions options;
  options.vocabulary = 0;
  EXPECT_THAT(PlantedCriteoModel::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.vocabulary = 10;
  options.zipf = 0;
  EXPECT_THAT(WritePlantedCriteo(TestTmpPath("bad"), options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

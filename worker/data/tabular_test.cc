#include "worker/data/tabular.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "ps/spec/placement.h"
#include "worker/data/random.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::HasSubstr;

// A fresh directory under $TEST_TMPDIR.
std::string MakeDir(const std::string& name) {
  const std::string dir = TestTmpPath(name);
  mkdir(dir.c_str(), 0755);
  return dir;
}

// A Criteo line whose label is `label` and whose I1 is `i1`, C1 `c1`.
std::string CriteoLine(int label, int64_t i1, const std::string& c1) {
  std::vector<std::string> fields = {absl::StrCat(label), absl::StrCat(i1)};
  for (int j = 1; j < kCriteoNumDense; ++j) fields.push_back(absl::StrCat(j));
  fields.push_back(c1);
  for (int k = 1; k < kCriteoNumCategorical; ++k) {
    fields.push_back(k % 5 == 0 ? "" : absl::StrCat("c", k));
  }
  return absl::StrJoin(fields, "\t");
}

struct Row {
  float label;
  std::vector<float> dense;
  std::vector<std::vector<uint64_t>> bags;
  bool operator<(const Row& o) const {
    return std::tie(dense, label, bags) < std::tie(o.dense, o.label, o.bags);
  }
  bool operator==(const Row& o) const {
    return label == o.label && dense == o.dense && bags == o.bags;
  }
};

std::vector<Row> Rows(const TabularBatch& batch) {
  std::vector<Row> rows;
  for (int i = 0; i < batch.batch_size; ++i) {
    Row row;
    row.label = batch.labels[i];
    row.dense.assign(batch.dense.begin() + i * batch.num_dense,
                     batch.dense.begin() + (i + 1) * batch.num_dense);
    for (const TabularBatch::Field& field : batch.fields) {
      const int64_t end =
          i + 1 < batch.batch_size ? field.offsets[i + 1] : field.ids.size();
      row.bags.emplace_back(field.ids.begin() + field.offsets[i],
                            field.ids.begin() + end);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// Everything partition p of P returns, batches validated.
std::vector<Row> ReadAll(const TabularSource& source, int p, int num,
                         TabularSource::ReadOptions options = {},
                         BadLines* bad = nullptr) {
  std::vector<Row> rows;
  auto reader = source.OpenPartition(p, num, options);
  EXPECT_THAT(reader, IsOk());
  if (!reader.ok()) return rows;
  TabularBatch batch;
  while (true) {
    auto more = (*reader)->Next(&batch);
    EXPECT_THAT(more, IsOk());
    if (!more.ok() || !*more) break;
    EXPECT_THAT(ValidateTabularBatch(batch), IsOk());
    EXPECT_LE(batch.batch_size, options.batch_size);
    for (Row& row : Rows(batch)) rows.push_back(std::move(row));
  }
  EXPECT_EQ((*reader)->examples(), static_cast<int64_t>(rows.size()));
  if (bad != nullptr) *bad = (*reader)->stats();
  return rows;
}

std::unique_ptr<TabularSource> OpenCriteo(const std::string& path) {
  TabularOptions options;
  options.format = TabularFormat::kCriteo;
  options.path = path;
  auto source = TabularSource::Open(options);
  EXPECT_THAT(source, IsOk());
  return source.ok() ? std::move(*source) : nullptr;
}

TEST(CategoryIdTest, KnownValues) {
  // Fixed forever: Python reimplements this (docs/data.md).
  EXPECT_EQ(CategoryId(0, ""), Mix64(StableHash("") + 0x9e3779b97f4a7c15ULL));
  EXPECT_EQ(CategoryId(25, "68fd1e64"),
            Mix64(StableHash("68fd1e64") + 0x9e3779b97f4a7c15ULL * 26));
  EXPECT_NE(CategoryId(0, "a"), CategoryId(1, "a"));
  // Computed independently (a Python rendering of the header's formula).
  EXPECT_EQ(CategoryId(0, ""), 13580814506428387636ULL);
  EXPECT_EQ(CategoryId(2, "05db9164"), 2481030810890124081ULL);
}

TEST(CriteoTest, ParsesFieldsAndTransforms) {
  const std::string path = TestTmpPath("one.tsv");
  std::string line = CriteoLine(1, 7, "68fd1e64");
  WriteTestFile(path, line + "\n" + CriteoLine(0, -3, "") + "\r\n");
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->num_dense(), 13);
  EXPECT_EQ(source->num_fields(), 26);
  TabularSource::ReadOptions options;
  options.shuffle_buffer = 1;
  std::vector<Row> rows = ReadAll(*source, 0, 1, options);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].label, 1.0f);
  EXPECT_FLOAT_EQ(rows[0].dense[0], std::log1p(7.0));
  EXPECT_FLOAT_EQ(rows[0].dense[12], std::log1p(12.0));
  EXPECT_EQ(rows[0].bags[0], std::vector<uint64_t>{CategoryId(0, "68fd1e64")});
  EXPECT_EQ(rows[0].bags[5], std::vector<uint64_t>{CategoryId(5, "")});
  EXPECT_EQ(rows[1].label, 0.0f);
  EXPECT_EQ(rows[1].dense[0], 0.0f);  // max(-3, 0)
  EXPECT_EQ(rows[1].bags[0], std::vector<uint64_t>{CategoryId(0, "")});
  EXPECT_EQ(rows[1].bags[24], std::vector<uint64_t>{CategoryId(24, "c24")});
}

TEST(CriteoTest, BadLinesAreSkippedCountedAndNamed) {
  const std::string path = TestTmpPath("bad.tsv");
  std::vector<std::string> lines = {
      CriteoLine(1, 1, "a"),
      "1\t2\t3",  // line 2: too few fields
      CriteoLine(0, 1, "b"),
      "2" + CriteoLine(1, 1, "c").substr(1),  // line 4: bad label
      CriteoLine(1, 1, "x\tY"),               // line 5: 41 fields
      "",                                     // line 6: blank, ignored
      CriteoLine(0, 1, "d"),
  };
  std::string bad_int = CriteoLine(0, 1, "e");
  bad_int.replace(bad_int.find("\t1\t") + 1, 1, "1.5");  // I1 = 1.5
  lines.push_back(bad_int);                              // line 8
  lines.push_back(std::string(3000, '\xff'));            // line 9: garbage
  WriteTestFile(path, absl::StrJoin(lines, "\n"));
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  BadLines bad;
  std::vector<Row> rows = ReadAll(*source, 0, 1, {}, &bad);
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_EQ(bad.count, 5);
  EXPECT_EQ(bad.first, path + ":2: 3 fields, not 40");
}

TEST(CriteoTest, HugeLineIsBadAndDoesNotStopReading) {
  const std::string path = TestTmpPath("huge.tsv");
  std::string contents = CriteoLine(1, 1, "a") + "\n";
  contents += std::string(3 * kMaxTabularLineBytes + 17, 'x') + "\n";
  contents += CriteoLine(0, 2, "b") + "\n";
  // Exactly at the cap is fine (and a bad line for its field count).
  contents += std::string(kMaxTabularLineBytes, 'y') + "\r\n";
  contents += std::string(kMaxTabularLineBytes + 1, 'z');  // no newline
  WriteTestFile(path, contents);
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  for (int num : {1, 2, 3, 7}) {
    std::vector<Row> rows;
    int64_t bad_count = 0;
    for (int p = 0; p < num; ++p) {
      BadLines bad;
      for (Row& row : ReadAll(*source, p, num, {}, &bad)) rows.push_back(row);
      bad_count += bad.count;
      if (bad.count > 0 && bad.first.find(":2:") != std::string::npos) {
        EXPECT_THAT(bad.first, HasSubstr("line longer than 1048576 bytes"));
      }
    }
    EXPECT_EQ(rows.size(), 2u) << num;
    EXPECT_EQ(bad_count, 3) << num;
  }
}

// Lines of varied lengths, CRLF and a missing final newline: every
// partitioning returns each line exactly once.
TEST(PartitionTest, EveryLineReadOnceForAnyPartitionCount) {
  const std::string dir = MakeDir("parts");
  SplitMix64 rng(3);
  std::vector<Row> expected;
  int line_id = 0;
  for (int f = 0; f < 4; ++f) {
    std::string contents;
    const int lines = f == 2 ? 0 : 1 + rng.Below(40);
    for (int i = 0; i < lines; ++i) {
      contents +=
          CriteoLine(i % 2, line_id++, std::string(rng.Below(200), 'a' + f));
      contents += rng.Below(3) == 0 ? "\r\n" : "\n";
    }
    if (f == 3) contents.pop_back();  // no final newline ('\n' or "\r\n")
    const std::string name = absl::StrCat(dir, "/part-", f, ".tsv");
    if (f == 1) {
      WriteGzipTestFile(name + ".gz", contents);
    } else {
      WriteTestFile(name, contents);
    }
  }
  WriteTestFile(dir + "/.hidden", "junk\n");
  auto source = OpenCriteo(dir);
  ASSERT_NE(source, nullptr);
  ASSERT_EQ(source->files().size(), 4u);
  EXPECT_EQ(source->files()[0], dir + "/part-0.tsv");
  EXPECT_EQ(source->files()[1], dir + "/part-1.tsv.gz");
  const std::vector<Row> all = ReadAll(*source, 0, 1);
  EXPECT_EQ(static_cast<int>(all.size()), line_id);
  std::vector<Row> sorted_all = all;
  std::sort(sorted_all.begin(), sorted_all.end());
  for (int num : {2, 3, 5, 8, 13, 64, 1000}) {
    std::vector<Row> rows;
    int64_t plain_bytes_min = INT64_MAX, plain_bytes_max = 0;
    for (int p = 0; p < num; ++p) {
      int64_t plain = 0;
      for (const TabularUnit& unit : source->PartitionUnits(p, num)) {
        if (!unit.whole) plain += unit.end - unit.begin;
      }
      plain_bytes_min = std::min(plain_bytes_min, plain);
      plain_bytes_max = std::max(plain_bytes_max, plain);
      TabularSource::ReadOptions options;
      options.batch_size = 7;
      options.seed = p;
      for (Row& row : ReadAll(*source, p, num, options)) rows.push_back(row);
    }
    EXPECT_LE(plain_bytes_max - plain_bytes_min, 1) << num;
    std::sort(rows.begin(), rows.end());
    EXPECT_EQ(rows.size(), sorted_all.size()) << num;
    EXPECT_TRUE(rows == sorted_all) << num << " partitions";
  }
}

TEST(PartitionTest, GzipFilesAreWholeUnitsSpreadBySize) {
  const std::string dir = MakeDir("gz");
  for (int f = 0; f < 5; ++f) {
    std::string contents;
    for (int i = 0; i <= f; ++i) contents += CriteoLine(1, i, "z") + "\n";
    WriteGzipTestFile(absl::StrCat(dir, "/f", f, ".gz"), contents);
  }
  auto source = OpenCriteo(dir);
  ASSERT_NE(source, nullptr);
  std::set<int> seen;
  int total = 0;
  for (int p = 0; p < 3; ++p) {
    for (const TabularUnit& unit : source->PartitionUnits(p, 3)) {
      EXPECT_TRUE(unit.whole);
      EXPECT_TRUE(seen.insert(unit.file).second);
    }
    total += ReadAll(*source, p, 3).size();
  }
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(total, 1 + 2 + 3 + 4 + 5);
  // More partitions than files: the extra ones are empty.
  EXPECT_TRUE(source->PartitionUnits(6, 7).empty());
  EXPECT_TRUE(ReadAll(*source, 6, 7).empty());
}

TEST(PartitionTest, BadLineNumberIsAbsoluteInALaterRange) {
  const std::string path = TestTmpPath("late.tsv");
  std::string contents;
  for (int i = 0; i < 100; ++i) contents += CriteoLine(0, i, "q") + "\n";
  contents += "broken\n";  // line 101
  for (int i = 0; i < 5; ++i) contents += CriteoLine(1, i, "r") + "\n";
  WriteTestFile(path, contents);
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  BadLines bad;
  ReadAll(*source, 1, 2, {}, &bad);
  EXPECT_EQ(bad.count, 1);
  EXPECT_EQ(bad.first, path + ":101: 1 fields, not 40");
}

TEST(ShuffleTest, BufferOneIsFileOrderAndSeedsPermute) {
  const std::string path = TestTmpPath("order.tsv");
  std::string contents;
  for (int i = 0; i < 500; ++i) contents += CriteoLine(i % 2, i, "o") + "\n";
  WriteTestFile(path, contents);
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  TabularSource::ReadOptions options;
  options.batch_size = 64;
  options.shuffle_buffer = 1;
  const std::vector<Row> ordered = ReadAll(*source, 0, 1, options);
  ASSERT_EQ(ordered.size(), 500u);
  for (int i = 0; i < 500; ++i) {
    EXPECT_FLOAT_EQ(ordered[i].dense[0], std::log1p(static_cast<double>(i)));
  }
  options.shuffle_buffer = 100;
  options.seed = 1;
  const std::vector<Row> a = ReadAll(*source, 0, 1, options);
  const std::vector<Row> a_again = ReadAll(*source, 0, 1, options);
  options.seed = 2;
  const std::vector<Row> b = ReadAll(*source, 0, 1, options);
  EXPECT_TRUE(a == a_again);
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(a == ordered);
  std::vector<Row> sorted_a = a, sorted_ordered = ordered;
  std::sort(sorted_a.begin(), sorted_a.end());
  std::sort(sorted_ordered.begin(), sorted_ordered.end());
  EXPECT_TRUE(sorted_a == sorted_ordered);
}

TEST(CsvTest, HeaderQuotesBagsAndBadLines) {
  const std::string dir = MakeDir("csv");
  WriteTestFile(dir + "/a.csv",
                "\xEF\xBB\xBFid,y,price,city,tags,unused\n"
                "1,1,2.5,Paris,a|b,x\n"
                "2,0,,\"New York, NY\",,x\n"
                "3,0.5,-1e3,\"say \"\"hi\"\"\",|c||,x\n"
                "4,1,abc,Rome,a,x\n"    // line 5: bad dense
                "5,1,1,Rome,a\n"        // line 6: 5 cells
                "6,,1,Rome,a,x\n"       // line 7: empty label
                "7,1,1,\"Rome,a,x\n");  // line 8: open quote
  // Another file, its columns in another order, gzip.
  WriteGzipTestFile(dir + "/b.csv.gz", "tags,city,price,y\nz,Oslo,3,1\n");
  TabularOptions options;
  options.format = TabularFormat::kCsv;
  options.path = dir;
  options.csv.label = "y";
  options.csv.dense = {"price"};
  options.csv.categorical = {"city", "tags"};
  options.csv.multi_value_separator = "|";
  TESSERA_ASSERT_OK_AND_ASSIGN(auto source, TabularSource::Open(options));
  EXPECT_EQ(source->num_dense(), 1);
  EXPECT_EQ(source->num_fields(), 2);
  TabularSource::ReadOptions read;
  read.shuffle_buffer = 1;
  BadLines bad;
  std::vector<Row> rows = ReadAll(*source, 0, 1, read, &bad);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(bad.count, 4);
  EXPECT_EQ(bad.first,
            dir + "/a.csv:5: dense price \"abc\" is not a finite number");
  EXPECT_EQ(rows[0].label, 1.0f);
  EXPECT_EQ(rows[0].dense, std::vector<float>{2.5f});
  EXPECT_EQ(rows[0].bags[0], std::vector<uint64_t>{CategoryId(0, "Paris")});
  EXPECT_EQ(rows[0].bags[1],
            (std::vector<uint64_t>{CategoryId(1, "a"), CategoryId(1, "b")}));
  EXPECT_EQ(rows[1].dense, std::vector<float>{0.0f});
  EXPECT_EQ(rows[1].bags[0],
            std::vector<uint64_t>{CategoryId(0, "New York, NY")});
  EXPECT_EQ(rows[1].bags[1], std::vector<uint64_t>{CategoryId(1, "")});
  EXPECT_EQ(rows[2].label, 0.5f);
  EXPECT_EQ(rows[2].dense, std::vector<float>{-1000.0f});
  EXPECT_EQ(rows[2].bags[0],
            std::vector<uint64_t>{CategoryId(0, "say \"hi\"")});
  EXPECT_EQ(rows[2].bags[1], std::vector<uint64_t>{CategoryId(1, "c")});
  EXPECT_EQ(rows[3].bags[0], std::vector<uint64_t>{CategoryId(0, "Oslo")});
  EXPECT_EQ(rows[3].dense, std::vector<float>{3.0f});
}

TEST(CsvTest, HeaderErrorsAtOpen) {
  const std::string path = TestTmpPath("h.csv");
  WriteTestFile(path, "y;a;a\n1;2;3\n");
  TabularOptions options;
  options.format = TabularFormat::kCsv;
  options.path = path;
  options.csv.delimiter = ";";
  options.csv.label = "y";
  options.csv.dense = {"b"};
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"b\"")));
  options.csv.dense = {"a"};
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  options.csv.dense = {"y"};
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.csv.dense = {};
  options.csv.delimiter = ";;";
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.csv.delimiter = ";";
  EXPECT_THAT(TabularSource::Open(options), IsOk());
  const std::string empty = TestTmpPath("empty.csv");
  WriteTestFile(empty, "");
  options.path = empty;
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CsvTest, RangesOfAPlainCsvSkipOnlyTheRealHeader) {
  const std::string path = TestTmpPath("big.csv");
  std::string contents = "y,c\n";
  for (int i = 0; i < 300; ++i)
    absl::StrAppend(&contents, i % 2, ",v", i, "\n");
  WriteTestFile(path, contents);
  TabularOptions options;
  options.format = TabularFormat::kCsv;
  options.path = path;
  options.csv.label = "y";
  options.csv.categorical = {"c"};
  TESSERA_ASSERT_OK_AND_ASSIGN(auto source, TabularSource::Open(options));
  for (int num : {1, 4, 9}) {
    size_t total = 0;
    for (int p = 0; p < num; ++p) {
      BadLines bad;
      total += ReadAll(*source, p, num, {}, &bad).size();
      EXPECT_EQ(bad.count, 0);
    }
    EXPECT_EQ(total, 300u);
  }
}

TEST(TabularSourceTest, ErrorsForMissingPathsAndBadArguments) {
  TabularOptions options;
  options.path = TestTmpPath("nope");
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kNotFound));
  options.path = MakeDir("emptydir");
  EXPECT_THAT(TabularSource::Open(options),
              StatusIs(absl::StatusCode::kNotFound));
  const std::string path = TestTmpPath("ok.tsv");
  WriteTestFile(path, CriteoLine(1, 1, "a") + "\n");
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  TabularSource::ReadOptions read;
  EXPECT_THAT(source->OpenPartition(1, 1, read),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(source->OpenPartition(0, 0, read),
              StatusIs(absl::StatusCode::kInvalidArgument));
  read.batch_size = 0;
  EXPECT_THAT(source->OpenPartition(0, 1, read),
              StatusIs(absl::StatusCode::kInvalidArgument));
  read.batch_size = 1;
  read.shuffle_buffer = 0;
  EXPECT_THAT(source->OpenPartition(0, 1, read),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TabularSourceTest, TruncatedGzipIsDataLoss) {
  const std::string path = TestTmpPath("cut.tsv.gz");
  std::string contents;
  for (int i = 0; i < 2000; ++i) contents += CriteoLine(1, i, "t") + "\n";
  WriteGzipTestFile(path, contents);
  std::string bytes = ReadTestFile(path);
  WriteTestFile(path, bytes.substr(0, bytes.size() / 2));
  auto source = OpenCriteo(path);
  ASSERT_NE(source, nullptr);
  TESSERA_ASSERT_OK_AND_ASSIGN(auto reader, source->OpenPartition(0, 1, {}));
  TabularBatch batch;
  absl::StatusOr<bool> more = true;
  while (more.ok() && *more) more = reader->Next(&batch);
  EXPECT_THAT(more, StatusIs(absl::StatusCode::kDataLoss));
}

TEST(TabularSourceTest, FromDatasetConfig) {
  v1::DatasetConfig config;
  config.set_format(v1::DatasetConfig::CSV);
  config.set_path("/data/train");
  config.set_test_path("/data/test.csv");
  config.mutable_csv()->set_label("y");
  config.mutable_csv()->add_categorical("c");
  TESSERA_ASSERT_OK_AND_ASSIGN(
      TabularOptions test,
      TabularOptionsFromConfig(config, DatasetSplit::kTest));
  EXPECT_EQ(test.format, TabularFormat::kCsv);
  EXPECT_EQ(test.path, "/data/test.csv");
  EXPECT_EQ(test.csv.delimiter, ",");
  EXPECT_EQ(test.csv.categorical, std::vector<std::string>{"c"});
  TESSERA_ASSERT_OK_AND_ASSIGN(TabularSource::ReadOptions read,
                               TabularReadOptionsFromConfig(config, 32));
  EXPECT_EQ(read.shuffle_buffer, 10000);
  EXPECT_EQ(read.batch_size, 32);
  config.set_shuffle_buffer(-1);
  EXPECT_THAT(TabularReadOptionsFromConfig(config, 32),
              StatusIs(absl::StatusCode::kInvalidArgument));
  config.set_format(v1::DatasetConfig::LIBSVM);
  EXPECT_THAT(TabularOptionsFromConfig(config, DatasetSplit::kTrain),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidateTabularBatchTest, RejectsBadOffsetsAndSizes) {
  TabularBatch batch;
  batch.batch_size = 2;
  batch.num_dense = 1;
  batch.dense = {0.5f, 1.0f};
  batch.labels = {0, 1};
  batch.fields.resize(1);
  batch.fields[0].offsets = {0, 1};
  batch.fields[0].ids = {7, 8};
  EXPECT_THAT(ValidateTabularBatch(batch), IsOk());
  batch.fields[0].offsets = {0, 2};  // second bag empty: allowed
  EXPECT_THAT(ValidateTabularBatch(batch), IsOk());
  batch.fields[0].offsets = {0, 3};  // past the ids
  EXPECT_THAT(ValidateTabularBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
  batch.fields[0].offsets = {1, 2};  // not from 0
  EXPECT_THAT(ValidateTabularBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
  batch.fields[0].offsets = {0, 1};
  batch.dense.push_back(2.0f);
  EXPECT_THAT(ValidateTabularBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace worker
}  // namespace tessera

#include "worker/data/input_file.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/test_files.h"

namespace tessera {
namespace worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadEverything(InputFile& file) {
  std::string contents(1 << 16, '\0');
  absl::StatusOr<size_t> got = file.Read(absl::MakeSpan(contents));
  EXPECT_THAT(got, IsOk());
  contents.resize(got.ok() ? *got : 0);
  return contents;
}

std::vector<std::string> Lines(InputFile& file) {
  LineReader reader(&file);
  std::vector<std::string> lines;
  absl::string_view line;
  while (true) {
    absl::StatusOr<bool> more = reader.Next(&line);
    EXPECT_THAT(more, IsOk());
    if (!more.ok() || !*more) break;
    lines.emplace_back(line);
  }
  return lines;
}

TEST(InputFileTest, ReadsAPlainFile) {
  const std::string path = TestTmpPath("plain.txt");
  WriteTestFile(path, "hello, world");
  auto file = InputFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ(ReadEverything(**file), "hello, world");
}

TEST(InputFileTest, DecompressesAGzipFile) {
  const std::string path = TestTmpPath("compressed.gz");
  WriteGzipTestFile(path, "hello, gzip");
  auto file = InputFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ(ReadEverything(**file), "hello, gzip");
}

TEST(InputFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(InputFile::Open(TestTmpPath("no-such-file")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-file")));
}

TEST(InputFileTest, TruncatedGzipIsDataLoss) {
  const std::string whole = TestTmpPath("whole.gz");
  std::string payload;
  for (int i = 0; i < 10000; ++i) payload += std::to_string(i * 7919);
  WriteGzipTestFile(whole, payload);
  const std::string compressed = ReadTestFile(whole);
  const std::string cut = TestTmpPath("cut.gz");
  WriteTestFile(cut, compressed.substr(0, compressed.size() / 2));

  auto file = InputFile::Open(cut);
  ASSERT_THAT(file, IsOk());
  std::string out(payload.size(), '\0');
  EXPECT_THAT((*file)->Read(absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(InputFileTest, ReadFullyNamesWhatIsMissing) {
  const std::string path = TestTmpPath("short.bin");
  WriteTestFile(path, "abc");
  auto file = InputFile::Open(path);
  ASSERT_THAT(file, IsOk());
  std::string out(5, '\0');
  EXPECT_THAT(
      (*file)->ReadFully(absl::MakeSpan(out), "the header"),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("2 bytes short of the 5 bytes of the header")));
}

TEST(LineReaderTest, SplitsLinesAndStripsCarriageReturns) {
  const std::string path = TestTmpPath("lines.txt");
  WriteTestFile(path, "one\r\ntwo\n\nlast without newline");
  auto file = InputFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_THAT(Lines(**file),
              ElementsAre("one", "two", "", "last without newline"));
}

TEST(LineReaderTest, ReadsLinesLongerThanItsChunks) {
  const std::string path = TestTmpPath("long.txt.gz");
  const std::string long_line(3 << 20, 'x');
  WriteGzipTestFile(path, long_line + "\nshort\n");
  auto file = InputFile::Open(path);
  ASSERT_THAT(file, IsOk());
  std::vector<std::string> lines = Lines(**file);
  ASSERT_EQ(lines.size(), 2);
  EXPECT_EQ(lines[0], long_line);
  EXPECT_EQ(lines[1], "short");
}

}  // namespace
}  // namespace worker
}  // namespace tessera

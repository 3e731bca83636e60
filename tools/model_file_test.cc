#include "tools/model_file.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/", name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), bytes.size());
}

PulledTensor Float(std::string name, std::vector<int64_t> shape) {
  PulledTensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  for (int64_t i = 0; i < n; ++i) t.values.push_back(0.5f * i - 1.25f);
  return t;
}

PulledTensor Int(std::string name, std::vector<int64_t> shape) {
  PulledTensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.integer = true;
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  for (int64_t i = 0; i < n; ++i) {
    t.int_values.push_back((i % 2 ? -1 : 1) * (int64_t{1} << 40) + i);
  }
  return t;
}

// A model of every kind of tensor the files hold.
std::vector<PulledTensor> Model() {
  return {Float("fc1.weight", {3, 4}),
          Float("fc1.bias", {3}),
          Float("step", {}),
          Int("count", {}),
          Float("emb", {0, 8}),
          Int("emb.ids", {0}),
          Int("table.ids", {5}),
          Float("deep", {2, 1, 3, 1, 2}),
          Float("ünïcode \"name\"", {2})};
}

void ExpectSameTensors(const std::vector<PulledTensor>& got,
                       const std::vector<PulledTensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(want[i].name);
    EXPECT_EQ(got[i].name, want[i].name);
    EXPECT_EQ(got[i].shape, want[i].shape);
    EXPECT_EQ(got[i].integer, want[i].integer);
    EXPECT_EQ(got[i].values, want[i].values);
    EXPECT_EQ(got[i].int_values, want[i].int_values);
  }
}

class ModelFileTest : public ::testing::TestWithParam<ModelFileFormat> {
 protected:
  std::string Path(const std::string& stem) const {
    return TempPath(absl::StrCat(
        stem, GetParam() == ModelFileFormat::kPt ? ".pt" : ".safetensors"));
  }
};

INSTANTIATE_TEST_SUITE_P(Formats, ModelFileTest,
                         ::testing::Values(ModelFileFormat::kPt,
                                           ModelFileFormat::kSafetensors),
                         [](const auto& info) {
                           return std::string(ModelFileFormatName(info.param));
                         });

TEST_P(ModelFileTest, RoundTripKeepsNamesOrderShapesAndValues) {
  const std::string path = Path("round_trip");
  ASSERT_THAT(WriteModelFile(path, Model(), GetParam()), IsOk());
  auto read = ReadModelFile(path);
  ASSERT_THAT(read, IsOk());
  ExpectSameTensors(*read, Model());
}

TEST_P(ModelFileTest, NoTensorsIsAValidFile) {
  const std::string path = Path("nothing");
  ASSERT_THAT(WriteModelFile(path, {}, GetParam()), IsOk());
  auto read = ReadModelFile(path);
  ASSERT_THAT(read, IsOk());
  EXPECT_TRUE(read->empty());
}

TEST_P(ModelFileTest, ChunksGiveTheSameBytesAsWholeTensors) {
  const std::string whole = Path("whole"), chunked = Path("chunked");
  ASSERT_THAT(WriteModelFile(whole, Model(), GetParam()), IsOk());
  std::vector<ModelTensorInfo> infos;
  for (const PulledTensor& t : Model()) {
    infos.push_back({t.name,
                     t.integer ? ModelDType::kInt64 : ModelDType::kFloat32,
                     t.shape});
  }
  auto writer = NewModelFileWriter(chunked, GetParam(), infos);
  ASSERT_THAT(writer, IsOk());
  for (const PulledTensor& t : Model()) {
    for (size_t i = 0; i < t.values.size(); i += 2) {
      ASSERT_THAT(
          (*writer)->Append(absl::MakeConstSpan(t.values).subspan(i, 2)),
          IsOk());
    }
    for (int64_t v : t.int_values) {
      ASSERT_THAT((*writer)->Append(absl::MakeConstSpan(&v, 1)), IsOk());
    }
  }
  ASSERT_THAT((*writer)->Finish(), IsOk());
  EXPECT_EQ((*writer)->bytes_written(), ReadAll(chunked).size());
  EXPECT_EQ(ReadAll(chunked), ReadAll(whole));  // and no time stamps
}

TEST_P(ModelFileTest, WriterRejectsMisuseAndLeavesTheOldFile) {
  const std::string path = Path("misuse");
  WriteAll(path, "old");
  std::vector<ModelTensorInfo> infos = {{"a", ModelDType::kFloat32, {2}},
                                        {"b", ModelDType::kInt64, {1}}};
  {
    auto writer = NewModelFileWriter(path, GetParam(), infos);
    ASSERT_THAT(writer, IsOk());
    const std::vector<int64_t> ints = {1, 2};
    const std::vector<float> three = {1, 2, 3};
    EXPECT_THAT(
        (*writer)->Append(ints),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\"")));
    EXPECT_THAT(
        (*writer)->Append(three),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("still lacks")));
    ASSERT_THAT((*writer)->Append(absl::MakeConstSpan(three).subspan(0, 2)),
                IsOk());
    EXPECT_THAT((*writer)->Finish(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("\"b\" lacks 1")));
    // Destroyed unfinished: the old file stays, the temporary one goes.
  }
  EXPECT_EQ(ReadAll(path), "old");
  for (const auto& entry :
       std::filesystem::directory_iterator(::testing::TempDir())) {
    EXPECT_THAT(entry.path().string(), ::testing::Not(HasSubstr(".tmp.")))
        << "a temporary file is left";
  }
  auto full =
      NewModelFileWriter(path, GetParam(), {{"x", ModelDType::kInt64, {1}}});
  ASSERT_THAT(full, IsOk());
  const int64_t one[] = {1};
  ASSERT_THAT((*full)->Append(one), IsOk());
  EXPECT_THAT((*full)->Append(one),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("past the last tensor")));
  ASSERT_THAT((*full)->Finish(), IsOk());
  EXPECT_THAT((*full)->Finish(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(ModelFileTest, BadDeclarationsAreRejected) {
  const std::string path = Path("bad");
  EXPECT_THAT(NewModelFileWriter(path, GetParam(),
                                 {{"a", ModelDType::kFloat32, {1}},
                                  {"a", ModelDType::kFloat32, {1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(NewModelFileWriter(path, GetParam(),
                                 {{"a", ModelDType::kFloat32, {2, -1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      NewModelFileWriter(path, GetParam(),
                         {{"a", ModelDType::kInt64, {int64_t{1} << 62, 4}}}),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(NewModelFileWriter(path, GetParam(),
                                 {{"\xff", ModelDType::kFloat32, {1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  PulledTensor short_values = Float("a", {2, 2});
  short_values.values.pop_back();
  EXPECT_THAT(
      WriteModelFile(path, {short_values}, GetParam()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 values")));
}

// Every truncation of a file fails cleanly; no prefix reads as a model.
TEST_P(ModelFileTest, EveryTruncationIsRejected) {
  const std::string path = Path("truncate"), cut = Path("truncated");
  ASSERT_THAT(WriteModelFile(path, Model(), GetParam()), IsOk());
  const std::string bytes = ReadAll(path);
  for (size_t n = 0; n < bytes.size(); ++n) {
    WriteAll(cut, bytes.substr(0, n));
    auto read = ReadModelFile(cut);
    ASSERT_FALSE(read.ok()) << "a prefix of " << n << " bytes was read";
    EXPECT_THAT(read.status().code(),
                ::testing::AnyOf(absl::StatusCode::kDataLoss,
                                 absl::StatusCode::kUnimplemented))
        << read.status();
  }
}

// A flipped byte anywhere never crashes the reader. In a pt file the CRCs
// catch it: the file reads as the same model or not at all.
TEST_P(ModelFileTest, EveryFlippedByteIsHandled) {
  const std::string path = Path("flip"), bad = Path("flipped");
  ASSERT_THAT(WriteModelFile(path, Model(), GetParam()), IsOk());
  const std::string bytes = ReadAll(path);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (char mask : {'\x01', '\x80'}) {
      std::string copy = bytes;
      copy[i] ^= mask;
      WriteAll(bad, copy);
      auto read = ReadModelFile(bad);
      if (read.ok() && GetParam() == ModelFileFormat::kPt) {
        SCOPED_TRACE(absl::StrCat("byte ", i));
        ExpectSameTensors(*read, Model());
      }
    }
  }
}

TEST(ModelFileReadTest, MissingAndForeignFiles) {
  EXPECT_THAT(ReadModelFile(TempPath("no_such_file")),
              StatusIs(absl::StatusCode::kNotFound));
  const std::string path = TempPath("foreign");
  WriteAll(path, "just some text, long enough");
  EXPECT_THAT(ReadModelFile(path),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("neither")));
}

std::string Safetensors(const std::string& header, const std::string& data) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(char(header.size() >> (8 * i)));
  return out + header + data;
}

TEST(ModelFileReadTest, HostileSafetensorsHeadersAreRejected) {
  const std::string path = TempPath("hostile.safetensors");
  const std::string four(4, '\0');
  struct Case {
    std::string header, data, error;
  } cases[] = {
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "",
       "truncated"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four,
       "do not match"},
      {R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})",
       four, "do not match"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four,
       "data_offsets"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       four, "does not start"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       four + four, "twice"},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four,
       "shape"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", four,
       "expected , or }"},
      {"{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", "",
       "deeply"},
      {R"({"a":"\ud800"})", "", "surrogate"},
  };
  for (const Case& c : cases) {
    WriteAll(path, Safetensors(c.header, c.data));
    EXPECT_THAT(ReadModelFile(path),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.error)))
        << c.header;
  }
  WriteAll(
      path,
      Safetensors(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})",
                  four));
  EXPECT_THAT(ReadModelFile(path),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("BF16")));
  // A header length near 2^64 is refused before anything is allocated.
  std::string huge(8, '\xff');
  huge += "{}";
  WriteAll(path, huge);
  EXPECT_THAT(ReadModelFile(path), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ModelFileFormatTest, FormatFollowsTheExtensionUnlessNamed) {
  EXPECT_EQ(ModelFileFormatForPath("m.safetensors"),
            ModelFileFormat::kSafetensors);
  EXPECT_EQ(ModelFileFormatForPath("m.pt"), ModelFileFormat::kPt);
  EXPECT_EQ(ModelFileFormatForPath("model"), ModelFileFormat::kPt);
  EXPECT_THAT(ParseModelFileFormat("safetensors"),
              IsOkAndHolds(ModelFileFormat::kSafetensors));
  EXPECT_THAT(ParseModelFileFormat("pt"), IsOkAndHolds(ModelFileFormat::kPt));
  EXPECT_THAT(ParseModelFileFormat("pickle"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelFileZip64Test, ForcedZip64RoundTrips) {
  const std::string path = TempPath("zip64.pt");
  std::vector<ModelTensorInfo> infos;
  for (const PulledTensor& t : Model()) {
    infos.push_back({t.name,
                     t.integer ? ModelDType::kInt64 : ModelDType::kFloat32,
                     t.shape});
  }
  ModelFileWriterOptions options;
  options.force_zip64 = true;
  auto writer = NewModelFileWriter(path, ModelFileFormat::kPt, infos, options);
  ASSERT_THAT(writer, IsOk());
  for (const PulledTensor& t : Model()) {
    ASSERT_THAT(t.integer ? (*writer)->Append(t.int_values)
                          : (*writer)->Append(t.values),
                IsOk());
  }
  ASSERT_THAT((*writer)->Finish(), IsOk());
  const std::string bytes = ReadAll(path);
  EXPECT_NE(bytes.find("PK\x06\x06"), std::string::npos);
  auto read = ReadModelFile(path);
  ASSERT_THAT(read, IsOk());
  ExpectSameTensors(*read, Model());
}

}  // namespace
}  // namespace tessera

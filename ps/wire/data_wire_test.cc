#include "ps/wire/data_wire.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/reject_reason.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

v1::DataHeader Header(v1::DataHeader::Op op, int64_t rows,
                      int64_t row_size = 0) {
  v1::DataHeader h;
  h.set_request_id(42);
  h.set_op(op);
  h.set_tensor_name("fc1.weight");
  h.set_row_begin(3);
  h.set_row_count(rows);
  h.set_row_size(row_size);
  return h;
}

absl::Status Layout(const v1::DataHeader& h, std::vector<size_t> sizes) {
  return CheckRequestLayout(h, sizes);
}

TEST(DataWireTest, HeaderRoundTripsThroughItsFrame) {
  v1::DataHeader h = Header(v1::DataHeader::PUSH_DENSE, 2, 8);
  h.set_clock(17);
  auto parsed = ParseDataHeader(h.SerializeAsString());
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->request_id(), 42u);
  EXPECT_EQ(parsed->tensor_name(), "fc1.weight");
  EXPECT_EQ(parsed->row_count(), 2);
  EXPECT_EQ(parsed->clock(), 17);
}

TEST(DataWireTest, TruncatedHeaderIsMalformed) {
  const std::string frame =
      Header(v1::DataHeader::PUSH_DENSE, 2).SerializeAsString();
  // Cut inside the tensor name: the length prefix promises more bytes.
  auto parsed = ParseDataHeader(frame.substr(0, 8));
  EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("truncated")));
  EXPECT_EQ(RejectReasonOf(parsed.status()), kReasonMalformed);
}

TEST(DataWireTest, GarbageAndEmptyHeadersAreMalformed) {
  EXPECT_THAT(ParseDataHeader(std::string("\xff\xff\xff\xff\xff", 5)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDataHeader(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("empty message")));
  EXPECT_THAT(
      ParseDataHeader(std::string(kMaxHeaderBytes + 1, 'x')),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
}

TEST(DataWireTest, WellFormedRequestsOfEveryOpPass) {
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_DENSE, 2, 8), {64}), IsOk());
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_DENSE, 2), {64}), IsOk());
  EXPECT_THAT(Layout(Header(v1::DataHeader::PULL_DENSE, 2, 8), {}), IsOk());
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_ROWS, 3, 4), {24, 48}),
              IsOk());
  EXPECT_THAT(Layout(Header(v1::DataHeader::PULL_ROWS, 3, 4), {24}), IsOk());
  v1::DataHeader ping;
  ping.set_op(v1::DataHeader::PING);
  EXPECT_THAT(Layout(ping, {}), IsOk());
}

TEST(DataWireTest, UnknownOpIsRefused) {
  v1::DataHeader h = Header(v1::DataHeader::PUSH_DENSE, 1);
  h.set_op(static_cast<v1::DataHeader::Op>(77));
  EXPECT_THAT(Layout(h, {4}), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("unknown op 77")));
  h.set_op(v1::DataHeader::OP_UNSPECIFIED);
  EXPECT_THAT(Layout(h, {4}), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("unknown op 0")));
}

TEST(DataWireTest, WrongFrameCountIsRefused) {
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_DENSE, 2), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("0 payload frames; expected 1")));
  EXPECT_THAT(
      Layout(Header(v1::DataHeader::PULL_DENSE, 2), {8}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 0")));
  EXPECT_THAT(
      Layout(Header(v1::DataHeader::PUSH_ROWS, 1), {8}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2")));
}

TEST(DataWireTest, WrongPayloadSizesAreRefused) {
  // Not whole floats.
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_DENSE, 1), {6}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("whole float32s")));
  // Not whole rows.
  EXPECT_THAT(
      Layout(Header(v1::DataHeader::PUSH_DENSE, 3), {16}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 whole rows")));
  // Rows of the wrong size.
  EXPECT_THAT(Layout(Header(v1::DataHeader::PUSH_DENSE, 2, 8), {72}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 rows of 8 floats do not fit")));
  // An ids frame that disagrees with row_count.
  EXPECT_THAT(Layout(Header(v1::DataHeader::PULL_ROWS, 3), {16}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not hold 3 uint64 ids")));
  EXPECT_THAT(
      Layout(Header(v1::DataHeader::PUSH_ROWS, 3), {24, 20}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 whole rows")));
}

TEST(DataWireTest, MissingNameOrRowsAreRefused) {
  v1::DataHeader h = Header(v1::DataHeader::PULL_DENSE, 1);
  h.clear_tensor_name();
  EXPECT_THAT(Layout(h, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("names no tensor")));
  EXPECT_THAT(Layout(Header(v1::DataHeader::PULL_DENSE, 0), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be positive")));
  v1::DataHeader negative = Header(v1::DataHeader::PULL_DENSE, 1);
  negative.set_row_begin(-1);
  EXPECT_THAT(Layout(negative, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("negative")));
}

TEST(DataWireTest, HugeRowCountsDoNotOverflowTheSizeChecks) {
  // 2^61 + 1 ids would need 8 * (2^61 + 1) bytes, which wraps to 8.
  v1::DataHeader h = Header(v1::DataHeader::PULL_ROWS, (int64_t{1} << 61) + 1);
  EXPECT_THAT(Layout(h, {8}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DataWireTest, RepliesMustCarryExactlyTheValuesAPullAskedFor) {
  v1::DataHeader ok;
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {64}, 64),
              IsOk());
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {60}, 64),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PUSH_DENSE, ok, {}, 0), IsOk());
  v1::DataHeader error;
  SetHeaderStatus(absl::NotFoundError("gone"), &error);
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, error, {}, 64),
              IsOk());
}

TEST(DataWireTest, StatusRoundTripsThroughTheHeader) {
  v1::DataHeader h;
  SetHeaderStatus(absl::UnavailableError("shard 1 is loading"), &h);
  EXPECT_THAT(HeaderStatus(h),
              StatusIs(absl::StatusCode::kUnavailable, "shard 1 is loading"));
  SetHeaderStatus(absl::OkStatus(), &h);
  EXPECT_THAT(HeaderStatus(h), IsOk());
  h.set_status_code(999);
  EXPECT_THAT(HeaderStatus(h), StatusIs(absl::StatusCode::kUnknown));
}

TEST(DataWireTest, OpsHaveLowCardinalityMetricNames) {
  EXPECT_STREQ(DataOpName(v1::DataHeader::PUSH_DENSE), "push");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PULL_DENSE), "pull");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PUSH_ROWS), "push_rows");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PULL_ROWS), "pull_rows");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PING), "ping");
  EXPECT_STREQ(DataOpName(static_cast<v1::DataHeader::Op>(99)), "invalid");
}

}  // namespace
}  // namespace tessera

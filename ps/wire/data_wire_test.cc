#include "ps/wire/data_wire.h"

#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
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

// A tables request over (name, row_count, row_size) runs.
v1::DataHeader Tables(
    v1::DataHeader::Op op,
    std::vector<std::tuple<std::string, int64_t, int64_t>> t) {
  v1::DataHeader h;
  h.set_op(op);
  for (const auto& [name, rows, row_size] : t) {
    v1::DataHeader::TableRows* run = h.add_tables();
    run->set_tensor_name(name);
    run->set_row_count(rows);
    run->set_row_size(row_size);
  }
  return h;
}

TEST(DataWireTest, TablesRequestsHoldEveryRunInTheirFrames) {
  const auto push =
      Tables(v1::DataHeader::PUSH_TABLES, {{"emb.0", 3, 4}, {"emb.1", 2, 8}});
  // 5 ids; 3 x 4 + 2 x 8 = 28 floats.
  EXPECT_THAT(Layout(push, {40, 112}), IsOk());
  EXPECT_THAT(Layout(push, {40, 108}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not hold the tables' 28 floats")));
  EXPECT_THAT(Layout(push, {32, 112}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Layout(push, {40}), StatusIs(absl::StatusCode::kInvalidArgument));
  const auto pull =
      Tables(v1::DataHeader::PULL_TABLES, {{"emb.0", 3, 4}, {"emb.1", 2, 8}});
  EXPECT_THAT(Layout(pull, {40}), IsOk());
  EXPECT_THAT(Layout(pull, {40, 112}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto totals = CheckTables(pull);
  ASSERT_THAT(totals, IsOk());
  EXPECT_EQ(totals->ids, 5);
  EXPECT_EQ(totals->floats, 28);
}

TEST(DataWireTest, TablesRequestsWithBadRunsAreRefused) {
  using Op = v1::DataHeader;
  EXPECT_THAT(Layout(Tables(Op::PULL_TABLES, {}), {0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lists 0 tables")));
  EXPECT_THAT(
      Layout(Tables(Op::PULL_TABLES, {{"", 1, 4}}), {8}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no name")));
  EXPECT_THAT(
      Layout(Tables(Op::PULL_TABLES, {{"a", 1, 4}, {"a", 1, 4}}), {16}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a twice")));
  EXPECT_THAT(Layout(Tables(Op::PULL_TABLES, {{"a", 0, 4}}), {0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be positive")));
  EXPECT_THAT(Layout(Tables(Op::PULL_TABLES, {{"a", 1, 0}}), {8}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Layout(Tables(Op::PULL_TABLES, {{"a", 1, -4}}), {8}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Sums and products that wrap int64 are refused, not wrapped.
  const int64_t big = int64_t{1} << 62;
  EXPECT_THAT(
      Layout(Tables(Op::PULL_TABLES, {{"a", big, 1}, {"b", big, 1}}), {0}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflow")));
  EXPECT_THAT(
      Layout(Tables(Op::PUSH_TABLES, {{"a", 2, big}}), {16, 8}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflow")));
  // 2^61 floats: their bytes wrap to 0.
  EXPECT_THAT(
      Layout(Tables(Op::PUSH_TABLES, {{"a", 1, int64_t{1} << 61}}), {8, 0}),
      StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<std::tuple<std::string, int64_t, int64_t>> many;
  for (int i = 0; i <= kMaxTablesPerRequest; ++i) {
    many.emplace_back(absl::StrCat("t", i), 1, 1);
  }
  EXPECT_THAT(Layout(Tables(Op::PULL_TABLES, many), {8 * many.size()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("it must list 1 to")));
  // Other ops never list tables.
  v1::DataHeader rows = Header(Op::PULL_ROWS, 1, 4);
  rows.add_tables()->set_tensor_name("a");
  EXPECT_THAT(Layout(rows, {8}), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("lists tables")));
}

// A dense batch over (name, row_begin, row_count, row_size) ranges.
v1::DataHeader Batch(
    v1::DataHeader::Op op,
    std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> ranges) {
  v1::DataHeader h;
  h.set_op(op);
  for (const auto& [name, begin, rows, row_size] : ranges) {
    v1::DataHeader::DenseRange* r = h.add_dense_ranges();
    r->set_tensor_name(name);
    r->set_row_begin(begin);
    r->set_row_count(rows);
    r->set_row_size(row_size);
  }
  return h;
}

TEST(DataWireTest, DenseBatchesHoldEveryRangeInOneFrame) {
  using Op = v1::DataHeader;
  // 3 x 4 + 2 x 8 = 28 floats.
  const auto push = Batch(Op::PUSH_DENSE_BATCH,
                          {{"fc1.weight", 0, 3, 4}, {"fc1.bias", 5, 2, 8}});
  EXPECT_THAT(Layout(push, {112}), IsOk());
  EXPECT_THAT(Layout(push, {108}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not hold the ranges' 28 floats")));
  EXPECT_THAT(Layout(push, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Layout(push, {56, 56}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const auto pull = Batch(Op::PULL_DENSE_BATCH,
                          {{"fc1.weight", 0, 3, 4}, {"fc1.bias", 5, 2, 8}});
  EXPECT_THAT(Layout(pull, {}), IsOk());
  EXPECT_THAT(Layout(pull, {112}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckDenseRanges(pull), IsOkAndHolds(28));
  EXPECT_TRUE(IsPull(Op::PULL_DENSE_BATCH));
  EXPECT_FALSE(IsPull(Op::PUSH_DENSE_BATCH));
  // In shared memory: no frame, the ranges' bytes from shm_offset.
  auto in_shm = push;
  in_shm.set_shm_segment(7);
  in_shm.set_shm_offset(4096);
  EXPECT_THAT(Layout(in_shm, {}), IsOk());
  EXPECT_THAT(ShmBytes(in_shm), IsOkAndHolds(112));
  EXPECT_THAT(Layout(in_shm, {112}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  in_shm.set_shm_offset(-8);
  EXPECT_THAT(Layout(in_shm, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("must not be negative")));
  EXPECT_THAT(
      CheckReplyLayout(Op::PULL_DENSE_BATCH, v1::DataHeader(), {112}, 112),
      IsOk());
  EXPECT_THAT(CheckReplyLayout(Op::PULL_DENSE_BATCH, v1::DataHeader(), {}, 112,
                               /*values_in_shm=*/true),
              IsOk());
  EXPECT_THAT(CheckReplyLayout(Op::PULL_DENSE_BATCH, v1::DataHeader(), {}, 112),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(DataWireTest, DenseBatchesWithBadRangesAreRefused) {
  using Op = v1::DataHeader;
  const auto refused = [](const v1::DataHeader& h, std::vector<size_t> sizes,
                          const std::string& says) {
    absl::Status s = Layout(h, sizes);
    EXPECT_THAT(s,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(says)))
        << h.ShortDebugString();
    EXPECT_EQ(RejectReasonOf(s), kReasonMalformed);
  };
  refused(Batch(Op::PULL_DENSE_BATCH, {}), {}, "lists 0 ranges");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"", 0, 1, 4}}), {}, "no name");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, 1, 4}, {"a", 1, 1, 4}}), {},
          "a twice");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", -1, 1, 4}}), {},
          "must not be negative");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, 0, 4}}), {}, "positive");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, 1, 0}}), {}, "positive");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, -3, -4}}), {}, "positive");
  // Sums, products and ends that wrap int64 are refused, not wrapped.
  const int64_t big = int64_t{1} << 62;
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, big, 1}, {"b", 0, big, 1}}), {},
          "overflow");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", 0, 2, big}}), {}, "overflow");
  refused(Batch(Op::PULL_DENSE_BATCH, {{"a", big, big, 1}}), {}, "overflow");
  // 2^61 floats: their bytes wrap to 0.
  refused(Batch(Op::PUSH_DENSE_BATCH, {{"a", 0, 1, int64_t{1} << 61}}), {0},
          "overflow");
  std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> many;
  for (int i = 0; i <= kMaxDenseRangesPerRequest; ++i) {
    many.emplace_back(absl::StrCat("t", i), 0, 1, 1);
  }
  refused(Batch(Op::PULL_DENSE_BATCH, many), {}, "it must list 1 to");
  // A batch names its tensors in its ranges only.
  auto named = Batch(Op::PULL_DENSE_BATCH, {{"a", 0, 1, 4}});
  named.set_tensor_name("a");
  refused(named, {}, "names a tensor or tables");
  // Other ops never list dense ranges.
  v1::DataHeader one = Header(Op::PULL_DENSE, 1, 4);
  one.add_dense_ranges()->set_tensor_name("a");
  refused(one, {}, "lists dense ranges");
  // Not even the ops without a tensor (found by data_wire_fuzzer).
  v1::DataHeader ping;
  ping.set_op(Op::PING);
  ping.add_dense_ranges()->set_tensor_name("a");
  refused(ping, {}, "lists dense ranges");
  ping.clear_dense_ranges();
  ping.add_tables()->set_tensor_name("a");
  refused(ping, {}, "lists tables");
}

TEST(DataWireTest, RepliesMustCarryExactlyTheValuesAPullAskedFor) {
  v1::DataHeader ok;
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {64}, 64),
              IsOk());
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {60}, 64),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PUSH_DENSE, ok, {}, 0), IsOk());
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_TABLES, ok, {64}, 64),
              IsOk());
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_TABLES, ok, {}, 64),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PUSH_TABLES, ok, {}, 0), IsOk());
  v1::DataHeader error;
  SetHeaderStatus(absl::NotFoundError("gone"), &error);
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, error, {}, 64),
              IsOk());
}

TEST(DataWireTest, SharedMemoryRequestsAreDensePushesAndPullsWithoutFrames) {
  using D = v1::DataHeader;
  v1::DataHeader push = Header(D::PUSH_DENSE, 4, 8);
  push.set_shm_segment(99);
  push.set_shm_offset(4096);
  EXPECT_THAT(Layout(push, {}), IsOk());
  EXPECT_THAT(ShmBytes(push), IsOkAndHolds(4 * 8 * 4));
  EXPECT_THAT(Layout(push, {128}), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("expected 0")));
  v1::DataHeader pull = push;
  pull.set_op(D::PULL_DENSE);
  EXPECT_THAT(Layout(pull, {}), IsOk());
  // Shared memory names no other op.
  for (D::Op op : {D::PUSH_ROWS, D::PULL_ROWS, D::PING, D::SHM_ATTACH}) {
    v1::DataHeader h = push;
    h.set_op(op);
    EXPECT_THAT(Layout(h, {}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("only dense pushes and pulls do")))
        << op;
  }
  // The row size is required, the offset not negative, the bytes in int64.
  v1::DataHeader bad = push;
  bad.set_row_size(0);
  EXPECT_THAT(Layout(bad, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("must be positive")));
  bad = push;
  bad.set_shm_offset(-8);
  EXPECT_THAT(Layout(bad, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  bad = push;
  bad.set_row_count(int64_t{1} << 40);
  bad.set_row_size(int64_t{1} << 21);
  EXPECT_THAT(Layout(bad, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("fit in int64")));
  EXPECT_EQ(RejectReasonOf(Layout(bad, {})), kReasonMalformed);
  // An attach carries nothing.
  v1::DataHeader attach;
  attach.set_op(D::SHM_ATTACH);
  EXPECT_THAT(Layout(attach, {}), IsOk());
  EXPECT_THAT(Layout(attach, {8}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_STREQ(DataOpName(D::SHM_ATTACH), "shm_attach");
}

TEST(DataWireTest, APullInSharedMemoryIsAnsweredWithoutValues) {
  v1::DataHeader ok;
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {}, 64,
                               /*values_in_shm=*/true),
              IsOk());
  EXPECT_THAT(CheckReplyLayout(v1::DataHeader::PULL_DENSE, ok, {64}, 64,
                               /*values_in_shm=*/true),
              StatusIs(absl::StatusCode::kInternal));
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
  EXPECT_STREQ(DataOpName(v1::DataHeader::PUSH_TABLES), "push_tables");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PULL_TABLES), "pull_tables");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PING), "ping");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PUSH_DENSE_BATCH),
               "push_dense_batch");
  EXPECT_STREQ(DataOpName(v1::DataHeader::PULL_DENSE_BATCH),
               "pull_dense_batch");
  EXPECT_STREQ(DataOpName(static_cast<v1::DataHeader::Op>(99)), "invalid");
}

}  // namespace
}  // namespace tessera

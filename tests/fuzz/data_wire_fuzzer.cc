// Fuzzes the data plane's frame decoding, as the shard and the client run it:
// ParseDataHeader, CheckRequestLayout, CheckReplyLayout and the status
// carried in a header (ps/wire/data_wire.h), and the multipart receive of
// ZmqRecvFrames (ps/wire/zmq_frames.h) over an inproc socket pair.
//
// Input: byte 0 = the number of payload frames n (mod 4); then n little-
// endian uint32 payload sizes; then a uint32 "expected reply bytes"; the rest
// is the header frame.
//
// Checked besides "no crash, no sanitizer report": every rejection is
// InvalidArgument with reject reason "malformed" (as the data plane counts
// it); a layout that passes agrees with the op's documented frames and sizes;
// a header's status survives SetHeaderStatus/HeaderStatus; a received message
// keeps its first frames byte for byte and counts the rest.

#include <zmq.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "ps/common/reject_reason.h"
#include "ps/wire/data_wire.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"

namespace {

using tessera::v1::DataHeader;

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

uint32_t ReadU32(const uint8_t*& data, size_t& size) {
  uint32_t v = 0;
  const size_t n = size < 4 ? size : 4;
  memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

void CheckMalformed(const absl::Status& s) {
  FUZZ_CHECK(!s.ok());
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(tessera::RejectReasonOf(s) == "malformed");
  FUZZ_CHECK(!s.message().empty());
}

// A tables request's layout: distinct named tables with positive counts and
// row sizes whose sums (computed here in 128 bits) fill the frames exactly.
void CheckAcceptedTables(const DataHeader& h,
                         const std::vector<size_t>& sizes) {
  const bool push = h.op() == DataHeader::PUSH_TABLES;
  FUZZ_CHECK(sizes.size() == (push ? 2u : 1u));
  FUZZ_CHECK(h.tables_size() >= 1 &&
             h.tables_size() <= tessera::kMaxTablesPerRequest);
  std::set<std::string> names;
  unsigned __int128 ids = 0, floats = 0;
  for (const DataHeader::TableRows& t : h.tables()) {
    FUZZ_CHECK(!t.tensor_name().empty());
    FUZZ_CHECK(names.insert(t.tensor_name()).second);
    FUZZ_CHECK(t.row_count() > 0 && t.row_size() > 0);
    ids += static_cast<unsigned __int128>(t.row_count());
    floats += static_cast<unsigned __int128>(t.row_count()) *
              static_cast<unsigned __int128>(t.row_size());
  }
  FUZZ_CHECK(ids * sizeof(uint64_t) == sizes[0]);
  if (push) FUZZ_CHECK(floats * sizeof(float) == sizes[1]);
  auto totals = tessera::CheckTables(h);
  FUZZ_CHECK(totals.ok());
  FUZZ_CHECK(static_cast<unsigned __int128>(totals->ids) == ids);
  FUZZ_CHECK(static_cast<unsigned __int128>(totals->floats) == floats);
}

// A dense batch's layout: no tensor or tables of its own, distinct named
// ranges with a non-negative begin, positive counts and row sizes, ends and
// sums (computed here in 128 bits) within int64, filling the values frame
// (a push in frames) exactly.
void CheckAcceptedDenseBatch(const DataHeader& h,
                             const std::vector<size_t>& sizes) {
  const bool push = h.op() == DataHeader::PUSH_DENSE_BATCH;
  const bool in_shm = h.shm_segment() != 0;
  FUZZ_CHECK(sizes.size() == (push && !in_shm ? 1u : 0u));
  FUZZ_CHECK(h.tensor_name().empty() && h.tables_size() == 0);
  FUZZ_CHECK(h.dense_ranges_size() >= 1 &&
             h.dense_ranges_size() <= tessera::kMaxDenseRangesPerRequest);
  std::set<std::string> names;
  unsigned __int128 floats = 0;
  for (const DataHeader::DenseRange& r : h.dense_ranges()) {
    FUZZ_CHECK(!r.tensor_name().empty());
    FUZZ_CHECK(names.insert(r.tensor_name()).second);
    FUZZ_CHECK(r.row_begin() >= 0 && r.row_count() > 0 && r.row_size() > 0);
    FUZZ_CHECK(static_cast<unsigned __int128>(r.row_begin()) +
                   static_cast<unsigned __int128>(r.row_count()) <=
               static_cast<unsigned __int128>(INT64_MAX));
    floats += static_cast<unsigned __int128>(r.row_count()) *
              static_cast<unsigned __int128>(r.row_size());
  }
  FUZZ_CHECK(floats * sizeof(float) <=
             static_cast<unsigned __int128>(INT64_MAX));
  auto total = tessera::CheckDenseRanges(h);
  FUZZ_CHECK(total.ok() && static_cast<unsigned __int128>(*total) == floats);
  if (push && !in_shm) FUZZ_CHECK(floats * sizeof(float) == sizes[0]);
  if (in_shm) {
    FUZZ_CHECK(h.shm_offset() >= 0);
    auto bytes = tessera::ShmBytes(h);
    FUZZ_CHECK(bytes.ok() && static_cast<unsigned __int128>(*bytes) ==
                                 floats * sizeof(float));
  }
}

// The request layout of each op (proto/tessera/v1/data.proto).
void CheckAcceptedLayout(const DataHeader& h,
                         const std::vector<size_t>& sizes) {
  if (h.op() != DataHeader::PUSH_TABLES && h.op() != DataHeader::PULL_TABLES) {
    FUZZ_CHECK(h.tables_size() == 0);
  }
  if (tessera::IsDenseBatch(h.op())) {
    CheckAcceptedDenseBatch(h, sizes);
    return;
  }
  FUZZ_CHECK(h.dense_ranges_size() == 0);
  const bool dense =
      h.op() == DataHeader::PUSH_DENSE || h.op() == DataHeader::PULL_DENSE;
  FUZZ_CHECK(h.shm_segment() == 0 || dense);
  if (h.shm_segment() != 0) {
    // Values in shared memory: no frames, both counts positive, their bytes
    // (in 128 bits) within int64, the offset not negative.
    FUZZ_CHECK(sizes.empty());
    FUZZ_CHECK(h.row_count() > 0 && h.row_size() > 0 && h.shm_offset() >= 0);
    FUZZ_CHECK(static_cast<unsigned __int128>(h.row_count()) *
                   static_cast<unsigned __int128>(h.row_size()) *
                   sizeof(float) <=
               static_cast<unsigned __int128>(INT64_MAX));
    auto bytes = tessera::ShmBytes(h);
    FUZZ_CHECK(bytes.ok() && *bytes == h.row_count() * h.row_size() *
                                           static_cast<int64_t>(sizeof(float)));
    FUZZ_CHECK(!h.tensor_name().empty());
    FUZZ_CHECK(h.row_begin() >= 0);
    return;
  }
  switch (h.op()) {
    case DataHeader::SHM_ATTACH:
      FUZZ_CHECK(sizes.empty());
      return;
    case DataHeader::PUSH_TABLES:
    case DataHeader::PULL_TABLES:
      CheckAcceptedTables(h, sizes);
      return;
    case DataHeader::PING:
      FUZZ_CHECK(sizes.empty());
      return;
    case DataHeader::PULL_DENSE:
      FUZZ_CHECK(sizes.empty());
      break;
    case DataHeader::PUSH_DENSE:
      FUZZ_CHECK(sizes.size() == 1);
      FUZZ_CHECK(sizes[0] > 0 && sizes[0] % sizeof(float) == 0);
      FUZZ_CHECK(sizes[0] / sizeof(float) % h.row_count() == 0);
      if (h.row_size() > 0) {
        FUZZ_CHECK(sizes[0] / sizeof(float) ==
                   static_cast<uint64_t>(h.row_count()) * h.row_size());
      }
      break;
    case DataHeader::PUSH_ROWS:
      FUZZ_CHECK(sizes.size() == 2);
      FUZZ_CHECK(sizes[0] ==
                 static_cast<uint64_t>(h.row_count()) * sizeof(uint64_t));
      FUZZ_CHECK(sizes[1] > 0 && sizes[1] % sizeof(float) == 0);
      break;
    case DataHeader::PULL_ROWS:
      FUZZ_CHECK(sizes.size() == 1);
      FUZZ_CHECK(sizes[0] ==
                 static_cast<uint64_t>(h.row_count()) * sizeof(uint64_t));
      break;
    default:
      FUZZ_CHECK(false && "an unknown op passed the layout check");
  }
  FUZZ_CHECK(!h.tensor_name().empty());
  FUZZ_CHECK(h.row_count() > 0);
  FUZZ_CHECK(h.row_begin() >= 0);
  FUZZ_CHECK(h.row_size() >= 0);
}

// One inproc PAIR of sockets, made once.
struct Pipe {
  Pipe() : context(1) {
    auto a = tessera::ZmqSocket::Open(context.get(), ZMQ_PAIR);
    auto b = tessera::ZmqSocket::Open(context.get(), ZMQ_PAIR);
    FUZZ_CHECK(a.ok() && b.ok());
    in = *std::move(a);
    out = *std::move(b);
    FUZZ_CHECK(in.Bind("inproc://data-wire-fuzzer").ok());
    FUZZ_CHECK(out.Connect("inproc://data-wire-fuzzer").ok());
  }
  tessera::ZmqContext context;
  tessera::ZmqSocket in, out;
};

void CheckReceive(const std::string& header, const std::vector<size_t>& sizes) {
  static Pipe* pipe = new Pipe;
  std::vector<std::string> sent = {header};
  for (size_t i = 0; i < sizes.size(); ++i) {
    sent.push_back(std::string(sizes[i] % 512, static_cast<char>('a' + i)));
  }
  std::vector<tessera::ZmqFrame> frames;
  size_t bytes = 0;
  for (const auto& s : sent) {
    frames.push_back(tessera::ZmqFrame::Copy(s));
    bytes += s.size();
  }
  FUZZ_CHECK(
      tessera::ZmqSendFrames(pipe->out.get(), absl::MakeSpan(frames), 0).ok());
  // Keep at most a request's frames, as the client does with replies.
  const size_t keep = 1 + tessera::kMaxPayloadFrames;
  std::vector<tessera::ZmqFrame> got;
  auto received =
      tessera::ZmqRecvFrames(pipe->in.get(), &got, ZMQ_DONTWAIT, keep);
  FUZZ_CHECK(received.ok());
  FUZZ_CHECK(received->received);
  FUZZ_CHECK(received->frames == sent.size());
  FUZZ_CHECK(received->bytes == bytes);
  FUZZ_CHECK(got.size() == std::min(keep, sent.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].view() == sent[i]);
  }
  // Nothing left behind: the next receive finds no message.
  auto again = tessera::ZmqRecvFrames(pipe->in.get(), &got, ZMQ_DONTWAIT, keep);
  FUZZ_CHECK(again.ok() && !again->received);
}

}  // namespace

// Malformed input is expected: keep protobuf's parse warnings out of the
// fuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int n = data[0] % 4;
  ++data;
  --size;
  std::vector<size_t> sizes;
  for (int i = 0; i < n; ++i) sizes.push_back(ReadU32(data, size));
  const size_t expected_reply = ReadU32(data, size);
  const std::string frame(reinterpret_cast<const char*>(data), size);

  auto header = tessera::ParseDataHeader(frame);
  if (!header.ok()) {
    CheckMalformed(header.status());
  } else {
    absl::Status layout = tessera::CheckRequestLayout(*header, sizes);
    if (layout.ok()) {
      CheckAcceptedLayout(*header, sizes);
    } else {
      CheckMalformed(layout);
    }
    // Replies: never crashes; a pull's OK reply needs exactly its bytes.
    absl::Status reply =
        tessera::CheckReplyLayout(header->op(), *header, sizes, expected_reply);
    if (reply.ok() && header->status_code() == 0 &&
        tessera::IsPull(header->op())) {
      FUZZ_CHECK(sizes.size() == 1 && sizes[0] == expected_reply);
    }
    (void)tessera::DataOpName(header->op());
    // The status a header carries round-trips.
    const absl::Status carried = tessera::HeaderStatus(*header);
    DataHeader copy;
    tessera::SetHeaderStatus(carried, &copy);
    const absl::Status again = tessera::HeaderStatus(copy);
    FUZZ_CHECK(again.code() == carried.code());
    FUZZ_CHECK(again.message() == carried.message());
    // And the header itself survives re-serialization.
    auto reparsed = tessera::ParseDataHeader(header->SerializeAsString());
    if (header->ByteSizeLong() <= tessera::kMaxHeaderBytes &&
        header->ByteSizeLong() > 0) {
      FUZZ_CHECK(reparsed.ok());
      FUZZ_CHECK(reparsed->SerializeAsString() == header->SerializeAsString());
    }
  }
  CheckReceive(frame, sizes);
  return 0;
}

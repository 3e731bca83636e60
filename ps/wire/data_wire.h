#ifndef TESSERA_PS_WIRE_DATA_WIRE_H_
#define TESSERA_PS_WIRE_DATA_WIRE_H_

// The data plane's message layout (proto/tessera/v1/data.proto), checked the
// same way by the shard (requests) and the client (replies). Pure functions
// over header fields and frame sizes: no sockets, no payload scans.
//
// Errors are InvalidArgument with reject reason "malformed"
// (ps/common/reject_reason.h) and a message that says what was wrong, for the
// shard to send back and count.
//
// Thread-safe (stateless).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tessera/v1/data.pb.h"

namespace tessera {

// Frames of a request after the header: at most ids + values.
inline constexpr size_t kMaxPayloadFrames = 2;
// Largest header frame accepted: a header is tens of bytes plus the name.
inline constexpr size_t kMaxHeaderBytes = 64 << 10;

// Tables one PUSH_TABLES / PULL_TABLES request may name.
inline constexpr int kMaxTablesPerRequest = 4096;
// Ranges one PUSH_DENSE_BATCH / PULL_DENSE_BATCH request may name.
inline constexpr int kMaxDenseRangesPerRequest = 4096;

// The metric label of an op: "push", "pull", "push_rows", "pull_rows",
// "push_tables", "pull_tables", "ping", "shm_attach", "push_dense_batch",
// "pull_dense_batch", or "invalid" for anything else.
const char* DataOpName(v1::DataHeader::Op op);

// Parses a header frame. Malformed (truncated, garbage, oversize) -> error.
absl::StatusOr<v1::DataHeader> ParseDataHeader(absl::string_view frame);

// Checks that a request with `header` and payload frames of `payload_bytes`
// (in order, header excluded) has the layout of its op: frame count, sizes
// that are whole floats / uint64s, sizes that agree with row_count (and
// row_size when set), a tensor name, non-negative rows. A request whose values
// are in shared memory (shm_segment set: dense pushes and pulls, batched or
// not, only) has no payload frame and must pass ShmBytes.

absl::Status CheckRequestLayout(const v1::DataHeader& header,
                                absl::Span<const size_t> payload_bytes);

// The bytes of a dense request's values in shared memory: row_count x
// row_size floats (both positive, required), or a batch's ranges' floats
// (CheckDenseRanges), at a non-negative shm_offset. Whether they lie in the
// segment is the segment's to say.
absl::StatusOr<int64_t> ShmBytes(const v1::DataHeader& header);

// The totals of a PUSH_TABLES / PULL_TABLES header: ids over its tables, and
// floats (row_count x row_size summed). InvalidArgument ("malformed") for no
// tables, too many, an empty or repeated name, a non-positive row_count or
// row_size, or totals that overflow int64.
struct TablesTotals {
  int64_t ids = 0;
  int64_t floats = 0;
};
absl::StatusOr<TablesTotals> CheckTables(const v1::DataHeader& header);

// The floats of a PUSH_DENSE_BATCH / PULL_DENSE_BATCH header's ranges
// (row_count x row_size summed). InvalidArgument ("malformed") for no ranges,
// too many, an empty or repeated name, a negative row_begin, a non-positive
// row_count or row_size, or a total whose bytes overflow int64.
absl::StatusOr<int64_t> CheckDenseRanges(const v1::DataHeader& header);

// The floats of a dense batch whose layout CheckRequestLayout passed
// (row_count x row_size summed; that check made the sum fit in int64, with
// its bytes). Unchecked: for the shard's hot path after the layout check.
int64_t DenseBatchFloats(const v1::DataHeader& header);

// Whether `op` is PUSH_DENSE_BATCH or PULL_DENSE_BATCH.
bool IsDenseBatch(v1::DataHeader::Op op);

// Whether `op` is answered with a values frame (a pull).
bool IsPull(v1::DataHeader::Op op);

// Checks a reply to a request of `op`: OK pulls carry exactly one values
// frame of `expected_value_bytes`, unless the request asked for them in
// shared memory (`values_in_shm`); everything else carries none.
absl::Status CheckReplyLayout(v1::DataHeader::Op op,
                              const v1::DataHeader& reply,
                              absl::Span<const size_t> payload_bytes,
                              size_t expected_value_bytes,
                              bool values_in_shm = false);

// A status in a reply header, and back.
void SetHeaderStatus(const absl::Status& status, v1::DataHeader* header);
absl::Status HeaderStatus(const v1::DataHeader& header);

}  // namespace tessera

#endif  // TESSERA_PS_WIRE_DATA_WIRE_H_

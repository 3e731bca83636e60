#include "ps/wire/data_wire.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "ps/common/checked_math.h"
#include "ps/common/reject_reason.h"

namespace tessera {
namespace {

absl::Status Malformed(absl::string_view message) {
  return Rejected(absl::StatusCode::kInvalidArgument, kReasonMalformed,
                  message);
}

// The payload frames each op's request carries after the header.
size_t RequestFrames(v1::DataHeader::Op op) {
  switch (op) {
    case v1::DataHeader::PUSH_DENSE:
    case v1::DataHeader::PUSH_DENSE_BATCH:
      return 1;  // values
    case v1::DataHeader::PUSH_ROWS:
    case v1::DataHeader::PUSH_TABLES:
      return 2;  // ids, values
    case v1::DataHeader::PULL_ROWS:
    case v1::DataHeader::PULL_TABLES:
      return 1;  // ids
    default:
      return 0;
  }
}

// Checks a values frame of `bytes` holding `rows` rows (of `row_size` floats
// when row_size > 0).
absl::Status CheckValues(const v1::DataHeader& h, size_t bytes, int64_t rows) {
  if (bytes == 0 || bytes % sizeof(float) != 0) {
    return Malformed(absl::StrCat("values frame of ", bytes,
                                  " bytes is not a non-empty run of whole "
                                  "float32s"));
  }
  const uint64_t floats = bytes / sizeof(float);
  if (floats % static_cast<uint64_t>(rows) != 0) {
    return Malformed(absl::StrCat("values frame of ", floats,
                                  " floats does not hold ", rows,
                                  " whole rows"));
  }
  if (h.row_size() > 0 && floats / static_cast<uint64_t>(rows) !=
                              static_cast<uint64_t>(h.row_size())) {
    return Malformed(absl::StrCat("values frame of ", floats, " floats; ", rows,
                                  " rows of ", h.row_size(),
                                  " floats do not fit it"));
  }
  return absl::OkStatus();
}

absl::Status CheckIds(size_t bytes, int64_t count) {
  if (bytes % sizeof(uint64_t) != 0 ||
      bytes / sizeof(uint64_t) != static_cast<uint64_t>(count)) {
    return Malformed(absl::StrCat(
        "ids frame of ", bytes, " bytes does not hold ", count, " uint64 ids"));
  }
  return absl::OkStatus();
}

// A tables request: the ids frame holds every table's ids, the values frame
// (pushes) every table's rows.
absl::Status CheckTablesLayout(const v1::DataHeader& h,
                               absl::Span<const size_t> payload) {
  auto totals = CheckTables(h);
  if (!totals.ok()) return totals.status();
  absl::Status ids = CheckIds(payload[0], totals->ids);
  if (!ids.ok() || payload.size() < 2) return ids;
  int64_t bytes = 0;
  if (!CheckedMul(totals->floats, sizeof(float), &bytes) ||
      payload[1] != static_cast<uint64_t>(bytes)) {
    return Malformed(absl::StrCat("values frame of ", payload[1],
                                  " bytes does not hold the tables' ",
                                  totals->floats, " floats"));
  }
  return absl::OkStatus();
}

absl::Status CheckBatchShmOffset(const v1::DataHeader& h) {
  if (h.shm_offset() >= 0) return absl::OkStatus();
  return Malformed(absl::StrCat(DataOpName(h.op()),
                                " request in shared memory has offset ",
                                h.shm_offset(), "; it must not be negative"));
}

// A dense batch: its ranges are valid, and a push's values frame holds
// their floats exactly (in shared memory: the offset is not negative).
absl::Status CheckDenseBatchLayout(const v1::DataHeader& h,
                                   absl::Span<const size_t> payload) {
  if (!h.tensor_name().empty() || h.tables_size() > 0) {
    return Malformed(absl::StrCat(DataOpName(h.op()),
                                  " request names a tensor or tables; its "
                                  "ranges are in dense_ranges"));
  }
  auto floats = CheckDenseRanges(h);
  if (!floats.ok()) return floats.status();
  if (h.shm_segment() != 0) return CheckBatchShmOffset(h);
  if (payload.empty()) return absl::OkStatus();
  if (payload[0] != static_cast<uint64_t>(*floats) * sizeof(float)) {
    return Malformed(absl::StrCat("values frame of ", payload[0],
                                  " bytes does not hold the ranges' ", *floats,
                                  " floats"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* DataOpName(v1::DataHeader::Op op) {
  switch (op) {
    case v1::DataHeader::PUSH_DENSE:
      return "push";
    case v1::DataHeader::PULL_DENSE:
      return "pull";
    case v1::DataHeader::PUSH_ROWS:
      return "push_rows";
    case v1::DataHeader::PULL_ROWS:
      return "pull_rows";
    case v1::DataHeader::PUSH_TABLES:
      return "push_tables";
    case v1::DataHeader::PULL_TABLES:
      return "pull_tables";
    case v1::DataHeader::PING:
      return "ping";
    case v1::DataHeader::SHM_ATTACH:
      return "shm_attach";
    case v1::DataHeader::PUSH_DENSE_BATCH:
      return "push_dense_batch";
    case v1::DataHeader::PULL_DENSE_BATCH:
      return "pull_dense_batch";
    default:
      return "invalid";
  }
}

absl::StatusOr<v1::DataHeader> ParseDataHeader(absl::string_view frame) {
  if (frame.size() > kMaxHeaderBytes) {
    return Malformed(absl::StrCat("header frame of ", frame.size(),
                                  " bytes exceeds ", kMaxHeaderBytes));
  }
  if (frame.empty()) {
    return Malformed("empty message: no header frame");
  }
  v1::DataHeader header;
  if (!header.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return Malformed(absl::StrCat("header frame of ", frame.size(),
                                  " bytes is truncated or not a DataHeader"));
  }
  return header;
}

absl::Status CheckRequestLayout(const v1::DataHeader& h,
                                absl::Span<const size_t> payload) {
  const v1::DataHeader::Op op = h.op();
  if (op == v1::DataHeader::OP_UNSPECIFIED || !v1::DataHeader::Op_IsValid(op)) {
    return Malformed(absl::StrCat("unknown op ", static_cast<int>(op)));
  }
  const bool in_shm = h.shm_segment() != 0;
  if (in_shm && op != v1::DataHeader::PUSH_DENSE &&
      op != v1::DataHeader::PULL_DENSE && !IsDenseBatch(op)) {
    return Malformed(absl::StrCat(DataOpName(op),
                                  " request names a shared-memory segment; "
                                  "only dense pushes and pulls do"));
  }
  const size_t want = in_shm ? 0 : RequestFrames(op);
  if (payload.size() != want) {
    return Malformed(absl::StrCat(DataOpName(op), " request has ",
                                  payload.size(), " payload frames; expected ",
                                  want));
  }
  if (IsDenseBatch(op)) return CheckDenseBatchLayout(h, payload);
  if (h.dense_ranges_size() > 0) {
    return Malformed(absl::StrCat(DataOpName(op),
                                  " request lists dense ranges; only "
                                  "push_dense_batch and pull_dense_batch do"));
  }
  if (op == v1::DataHeader::PUSH_TABLES || op == v1::DataHeader::PULL_TABLES) {
    return CheckTablesLayout(h, payload);
  }
  if (h.tables_size() > 0) {
    return Malformed(absl::StrCat(DataOpName(op),
                                  " request lists tables; only "
                                  "push_tables and pull_tables do"));
  }
  if (op == v1::DataHeader::PING || op == v1::DataHeader::SHM_ATTACH) {
    return absl::OkStatus();
  }
  if (h.tensor_name().empty()) {
    return Malformed(absl::StrCat(DataOpName(op), " request names no tensor"));
  }
  if (h.row_count() <= 0) {
    return Malformed(absl::StrCat(DataOpName(op), " request for ",
                                  h.tensor_name(), " has row_count ",
                                  h.row_count(), "; it must be positive"));
  }
  if (h.row_begin() < 0 || h.row_size() < 0) {
    return Malformed(absl::StrCat(DataOpName(op), " request for ",
                                  h.tensor_name(),
                                  " has a negative row_begin or row_size"));
  }
  if (in_shm) return ShmBytes(h).status();
  switch (op) {
    case v1::DataHeader::PUSH_DENSE:
      return CheckValues(h, payload[0], h.row_count());
    case v1::DataHeader::PUSH_ROWS: {
      absl::Status ids = CheckIds(payload[0], h.row_count());
      if (!ids.ok()) return ids;
      return CheckValues(h, payload[1], h.row_count());
    }
    case v1::DataHeader::PULL_ROWS:
      return CheckIds(payload[0], h.row_count());
    default:  // PULL_DENSE
      return absl::OkStatus();
  }
}

absl::StatusOr<int64_t> ShmBytes(const v1::DataHeader& h) {
  int64_t floats = 0, bytes = 0;
  if (IsDenseBatch(h.op())) {
    auto total = CheckDenseRanges(h);
    if (!total.ok()) return total.status();
    absl::Status offset = CheckBatchShmOffset(h);
    if (!offset.ok()) return offset;
    return *total * static_cast<int64_t>(sizeof(float));  // Checked to fit.
  }
  if (h.row_count() <= 0 || h.row_size() <= 0 || h.shm_offset() < 0 ||
      !CheckedMul(h.row_count(), h.row_size(), &floats) ||
      !CheckedMul(floats, sizeof(float), &bytes)) {
    return Malformed(absl::StrCat(
        DataOpName(h.op()), " request in shared memory for ", h.tensor_name(),
        " has row_count ", h.row_count(), ", row_size ", h.row_size(),
        " and offset ", h.shm_offset(),
        ": the counts must be positive, their bytes fit in int64, and the "
        "offset not be negative"));
  }
  return bytes;
}

absl::StatusOr<TablesTotals> CheckTables(const v1::DataHeader& h) {
  const char* op = DataOpName(h.op());
  if (h.tables_size() == 0 || h.tables_size() > kMaxTablesPerRequest) {
    return Malformed(absl::StrCat(op, " request lists ", h.tables_size(),
                                  " tables; it must list 1 to ",
                                  kMaxTablesPerRequest));
  }
  TablesTotals totals;
  absl::flat_hash_set<absl::string_view> names;
  for (const v1::DataHeader::TableRows& t : h.tables()) {
    if (t.tensor_name().empty()) {
      return Malformed(absl::StrCat(op, " request lists a table with no name"));
    }
    if (!names.insert(t.tensor_name()).second) {
      return Malformed(
          absl::StrCat(op, " request lists ", t.tensor_name(), " twice"));
    }
    int64_t floats = 0;
    if (t.row_count() <= 0 || t.row_size() <= 0) {
      return Malformed(absl::StrCat(op, " request for ", t.tensor_name(),
                                    " has row_count ", t.row_count(),
                                    " and row_size ", t.row_size(),
                                    "; both must be positive"));
    }
    if (!CheckedMul(t.row_count(), t.row_size(), &floats) ||
        !CheckedAdd(totals.floats, floats, &totals.floats) ||
        !CheckedAdd(totals.ids, t.row_count(), &totals.ids)) {
      return Malformed(absl::StrCat(op, " request's row counts overflow"));
    }
  }
  return totals;
}

absl::StatusOr<int64_t> CheckDenseRanges(const v1::DataHeader& h) {
  const char* op = DataOpName(h.op());
  if (h.dense_ranges_size() == 0 ||
      h.dense_ranges_size() > kMaxDenseRangesPerRequest) {
    return Malformed(absl::StrCat(op, " request lists ", h.dense_ranges_size(),
                                  " ranges; it must list 1 to ",
                                  kMaxDenseRangesPerRequest));
  }
  int64_t total = 0;
  absl::flat_hash_set<absl::string_view> names;
  for (const v1::DataHeader::DenseRange& r : h.dense_ranges()) {
    if (r.tensor_name().empty()) {
      return Malformed(absl::StrCat(op, " request lists a range with no name"));
    }
    if (!names.insert(r.tensor_name()).second) {
      return Malformed(
          absl::StrCat(op, " request lists ", r.tensor_name(), " twice"));
    }
    if (r.row_begin() < 0 || r.row_count() <= 0 || r.row_size() <= 0) {
      return Malformed(
          absl::StrCat(op, " request for ", r.tensor_name(), " has row_begin ",
                       r.row_begin(), ", row_count ", r.row_count(),
                       " and row_size ", r.row_size(),
                       "; the first must not be negative, the others must be "
                       "positive"));
    }
    int64_t floats = 0, end = 0;
    if (!CheckedMul(r.row_count(), r.row_size(), &floats) ||
        !CheckedAdd(total, floats, &total) ||
        !CheckedAdd(r.row_begin(), r.row_count(), &end)) {
      return Malformed(absl::StrCat(op, " request's row counts overflow"));
    }
  }
  int64_t bytes = 0;
  if (!CheckedMul(total, sizeof(float), &bytes)) {
    return Malformed(absl::StrCat(op, " request's row counts overflow"));
  }
  return total;
}

int64_t DenseBatchFloats(const v1::DataHeader& h) {
  int64_t floats = 0;
  for (const v1::DataHeader::DenseRange& r : h.dense_ranges()) {
    floats += r.row_count() * r.row_size();
  }
  return floats;
}

bool IsDenseBatch(v1::DataHeader::Op op) {
  return op == v1::DataHeader::PUSH_DENSE_BATCH ||
         op == v1::DataHeader::PULL_DENSE_BATCH;
}

bool IsPull(v1::DataHeader::Op op) {
  return op == v1::DataHeader::PULL_DENSE || op == v1::DataHeader::PULL_ROWS ||
         op == v1::DataHeader::PULL_TABLES ||
         op == v1::DataHeader::PULL_DENSE_BATCH;
}

absl::Status CheckReplyLayout(v1::DataHeader::Op op,
                              const v1::DataHeader& reply,
                              absl::Span<const size_t> payload,
                              size_t expected_value_bytes, bool values_in_shm) {
  const size_t want =
      IsPull(op) && reply.status_code() == 0 && !values_in_shm ? 1 : 0;
  if (payload.size() != want) {
    return absl::InternalError(
        absl::StrCat(DataOpName(op), " reply has ", payload.size(),
                     " payload frames; expected ", want));
  }
  if (want == 1 && payload[0] != expected_value_bytes) {
    return absl::InternalError(absl::StrCat(DataOpName(op), " reply carries ",
                                            payload[0], " bytes; expected ",
                                            expected_value_bytes));
  }
  return absl::OkStatus();
}

void SetHeaderStatus(const absl::Status& status, v1::DataHeader* header) {
  header->set_status_code(static_cast<int32_t>(status.code()));
  if (status.ok()) {
    header->clear_status_message();
  } else {
    header->set_status_message(std::string(status.message()));
  }
}

absl::Status HeaderStatus(const v1::DataHeader& header) {
  const int code = header.status_code();
  if (code == 0) return absl::OkStatus();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(
        absl::StrCat("status code ", code, ": ", header.status_message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(code),
                      header.status_message());
}

}  // namespace tessera

#ifndef TESSERA_PS_COMMON_REJECT_REASON_H_
#define TESSERA_PS_COMMON_REJECT_REASON_H_

// Bad input is rejected with a status that also carries a short, low-
// cardinality reason ("unknown_tensor", "wrong_shape", ...) as a payload, so
// the server that answers can count it in
// tessera_ps_rejected_requests_total{reason} without parsing messages.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tessera {

// Reasons, as they appear in the metric's label.
inline constexpr char kReasonUnknownTensor[] = "unknown_tensor";
inline constexpr char kReasonWrongShape[] = "wrong_shape";
inline constexpr char kReasonRowsOutOfRange[] = "rows_out_of_range";
inline constexpr char kReasonWrongShard[] = "wrong_shard";
inline constexpr char kReasonWrongKind[] = "wrong_kind";
inline constexpr char kReasonNonFinite[] = "non_finite";
inline constexpr char kReasonOversize[] = "oversize";
inline constexpr char kReasonBadSpec[] = "bad_spec";
inline constexpr char kReasonSpecConflict[] = "spec_conflict";
inline constexpr char kReasonMalformed[] = "malformed";
inline constexpr char kReasonShuttingDown[] = "shutting_down";
inline constexpr char kReasonNotServing[] = "not_serving";
inline constexpr char kReasonOutOfMemory[] = "out_of_memory";
// A shared-memory request the shard cannot serve: the segment it names is
// not open here (the shard restarted, or closed it), or an attach refused
// (shared memory off, the client on another machine).
inline constexpr char kReasonShmUnavailable[] = "shm_unavailable";
// What RejectReasonOf() says of a non-OK status without a reason.
inline constexpr char kReasonOther[] = "other";

// Every reason, so a server can export each counter at 0 from start-up
// (rate() and alerts then work from the first scrape).
inline constexpr const char* kRejectReasons[] = {
    kReasonUnknownTensor, kReasonWrongShape,     kReasonRowsOutOfRange,
    kReasonWrongShard,    kReasonWrongKind,      kReasonNonFinite,
    kReasonOversize,      kReasonBadSpec,        kReasonSpecConflict,
    kReasonMalformed,     kReasonShuttingDown,   kReasonNotServing,
    kReasonOutOfMemory,   kReasonShmUnavailable, kReasonOther,
};

// A status with `code`, `message` and the reason payload attached.
absl::Status Rejected(absl::StatusCode code, absl::string_view reason,
                      absl::string_view message);

// The reason attached by Rejected(), or "other" for a non-OK status without
// one, or "" for OK.
std::string RejectReasonOf(const absl::Status& status);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_REJECT_REASON_H_

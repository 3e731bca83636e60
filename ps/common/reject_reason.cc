#include "ps/common/reject_reason.h"

#include "absl/strings/cord.h"

namespace tessera {
namespace {
constexpr char kPayloadUrl[] = "type.tessera.dev/reject_reason";
}  // namespace

absl::Status Rejected(absl::StatusCode code, absl::string_view reason,
                      absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kPayloadUrl, absl::Cord(reason));
  return status;
}

std::string RejectReasonOf(const absl::Status& status) {
  if (status.ok()) return "";
  auto payload = status.GetPayload(kPayloadUrl);
  return payload ? std::string(*payload) : std::string(kReasonOther);
}

}  // namespace tessera

#ifndef TESSERA_PS_SERVER_SERVER_OPTIONS_H_
#define TESSERA_PS_SERVER_SERVER_OPTIONS_H_

// Small pieces of tessera-ps's start-up that are worth testing on their own.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera {

// "3" -> 3; a StatefulSet pod name "ps-3" (or "tessera-ps-12") -> its trailing
// ordinal. InvalidArgument for anything else, naming the input.
absl::StatusOr<int> ParseShardIndex(absl::string_view text);

}  // namespace tessera

#endif  // TESSERA_PS_SERVER_SERVER_OPTIONS_H_

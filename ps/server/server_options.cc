#include "ps/server/server_options.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera {

absl::StatusOr<int> ParseShardIndex(absl::string_view text) {
  absl::string_view digits = text;
  const size_t dash = text.rfind('-');
  if (dash != absl::string_view::npos) digits = text.substr(dash + 1);
  int index = -1;
  if (dash == 0 || digits.empty() || !absl::SimpleAtoi(digits, &index) ||
      index < 0 ||
      digits.find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard_index=\"", text,
        "\" is neither a number nor a pod name ending in -<ordinal>"));
  }
  return index;
}

}  // namespace tessera

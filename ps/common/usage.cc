#include "ps/common/usage.h"

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tessera {

bool IsTesseraFlagFile(absl::string_view file) {
  // Bazel compiles sources by their workspace-relative path.
  for (absl::string_view dir :
       {"ps/", "worker/", "tools/", "bench/", "tests/"}) {
    if (absl::StartsWith(file, dir) ||
        absl::StrContains(file, absl::StrCat("/", dir))) {
      return !absl::StrContains(file, "absl/");
    }
  }
  return false;
}

void SetUsage(absl::string_view message) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = &IsTesseraFlagFile;
  config.contains_helpshort_flags = &IsTesseraFlagFile;
  config.normalize_filename = [](absl::string_view f) {
    return std::string(f);
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(message);
}

}  // namespace tessera

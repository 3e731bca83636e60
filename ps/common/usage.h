#ifndef TESSERA_PS_COMMON_USAGE_H_
#define TESSERA_PS_COMMON_USAGE_H_

// `--help` for Tessera's binaries. absl's default lists only flags defined in
// a file named after the binary (tessera-ps.cc, ...), which none of ours is,
// so `--help` printed "No flags matched". SetUsage() makes it list every flag
// defined in Tessera's own sources (not absl's), grouped by file.
//
// Call once in main(), before absl::ParseCommandLine. Not thread-safe.

#include "absl/strings/string_view.h"

namespace tessera {

void SetUsage(absl::string_view message);

// Whether `--help` lists the flags defined in `file` (a source path as the
// compiler saw it). Exposed for tests.
bool IsTesseraFlagFile(absl::string_view file);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_USAGE_H_

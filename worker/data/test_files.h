#ifndef TESSERA_WORKER_DATA_TEST_FILES_H_
#define TESSERA_WORKER_DATA_TEST_FILES_H_

// Fixture files for data tests (testonly).

#include <string>

#include "absl/strings/string_view.h"

namespace tessera {
namespace worker {

// A path named `name` in the test's private temporary directory
// ($TEST_TMPDIR under Bazel).
std::string TestTmpPath(absl::string_view name);

// Writes `contents` to `path`, plain or gzip-compressed; fails the test
// (ADD_FAILURE) on an I/O error.
void WriteTestFile(const std::string& path, absl::string_view contents);
void WriteGzipTestFile(const std::string& path, absl::string_view contents);

// The contents of `path` (empty, with ADD_FAILURE, if it cannot be read).
std::string ReadTestFile(const std::string& path);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_TEST_FILES_H_

#include "worker/data/test_files.h"

#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace tessera {
namespace worker {

std::string TestTmpPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + std::string(name);
}

void WriteTestFile(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), contents.size());
  out.close();
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

void WriteGzipTestFile(const std::string& path, absl::string_view contents) {
  gzFile file = gzopen(path.c_str(), "wb");
  if (file == nullptr) {
    ADD_FAILURE() << "cannot create " << path;
    return;
  }
  if (!contents.empty() && gzwrite(file, contents.data(), contents.size()) !=
                               static_cast<int>(contents.size())) {
    ADD_FAILURE() << "cannot write " << path;
  }
  if (gzclose(file) != Z_OK) ADD_FAILURE() << "cannot close " << path;
}

std::string ReadTestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace worker
}  // namespace tessera

#include "ps/common/protobuf_log.h"

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "google/protobuf/stubs/logging.h"

namespace tessera {
namespace {

absl::Duration g_interval = absl::Seconds(60);

struct Seen {
  absl::Time last;
  int64_t suppressed = 0;
};

absl::Mutex g_mu(absl::kConstInit);
// Keyed by the message's first 80 bytes: protobuf's messages name the field,
// so distinct problems stay distinct; capped so a peer can't grow it.
absl::flat_hash_map<std::string, Seen>* g_seen ABSL_GUARDED_BY(g_mu) = nullptr;
constexpr size_t kMaxKeys = 256;

void Handler(google::protobuf::LogLevel level, const char* file, int line,
             const std::string& message) {
  const std::string key = message.substr(0, 80);
  int64_t suppressed = 0;
  {
    absl::MutexLock lock(&g_mu);
    if (g_seen == nullptr) g_seen = new absl::flat_hash_map<std::string, Seen>;
    const absl::Time now = absl::Now();
    auto it = g_seen->find(key);
    if (it == g_seen->end()) {
      if (g_seen->size() >= kMaxKeys) g_seen->clear();
      it = g_seen->emplace(key, Seen{now - 2 * g_interval, 0}).first;
    }
    if (now - it->second.last < g_interval) {
      ++it->second.suppressed;
      return;
    }
    suppressed = it->second.suppressed;
    it->second = Seen{now, 0};
  }
  const std::string text = suppressed > 0
                               ? message + " (" + std::to_string(suppressed) +
                                     " more like it suppressed)"
                               : message;
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      LOG(INFO) << "protobuf " << file << ":" << line << ": " << text;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      LOG(WARNING) << "protobuf " << file << ":" << line << ": " << text;
      break;
    default:  // ERROR and FATAL: protobuf aborts by itself after FATAL.
      LOG(ERROR) << "protobuf " << file << ":" << line << ": " << text;
      break;
  }
}

}  // namespace

void RateLimitProtobufLogs(absl::Duration interval) {
  g_interval = interval;
  google::protobuf::SetLogHandler(&Handler);
}

}  // namespace tessera

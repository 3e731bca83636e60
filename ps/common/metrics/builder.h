#ifndef TESSERA_PS_COMMON_METRICS_BUILDER_H_
#define TESSERA_PS_COMMON_METRICS_BUILDER_H_

#include <map>
#include <string>

#include "glog/logging.h"
#include "ps/common/metrics/counter.h"
#include "ps/common/metrics/family.h"
#include "ps/common/metrics/gauge.h"
#include "ps/common/metrics/histogram.h"
#include "ps/common/metrics/registry.h"

namespace tessera {
namespace metrics {

// Describes a family and registers it, in prometheus-cpp's shape:
//
//   Family<Counter>& requests = BuildCounter()
//       .Name("tessera_ps_push_requests_total")
//       .Help("Push requests received, by result code.")
//       .Labels({{"shard", "0"}})  // Constant labels: on every series.
//       .Register(registry);
//
// Name is required and must match [a-zA-Z_:][a-zA-Z0-9_:]*; Help should be
// set (promtool flags a family without). See Registry for re-registration.
// Thread-compatible; Register is thread-safe.
template <typename T>
class Builder {
 public:
  Builder& Name(const std::string& name) {
    name_ = name;
    return *this;
  }
  Builder& Help(const std::string& help) {
    help_ = help;
    return *this;
  }
  // Constant labels, added to every series of the family.
  Builder& Labels(const std::map<std::string, std::string>& labels) {
    labels_ = labels;
    return *this;
  }

  // The family, owned by `registry` and valid for its lifetime.
  Family<T>& Register(Registry& registry) const {
    return registry.Register<T>(name_, help_, labels_);
  }
  Family<T>& Register(Registry* registry) const {
    CHECK(registry != nullptr) << "Register(nullptr) for " << name_;
    return Register(*registry);
  }

 private:
  std::string name_;
  std::string help_;
  std::map<std::string, std::string> labels_;
};

inline Builder<Counter> BuildCounter() { return {}; }
inline Builder<Gauge> BuildGauge() { return {}; }
inline Builder<Histogram> BuildHistogram() { return {}; }

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_BUILDER_H_

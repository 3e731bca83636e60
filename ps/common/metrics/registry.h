#ifndef TESSERA_PS_COMMON_METRICS_REGISTRY_H_
#define TESSERA_PS_COMMON_METRICS_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "ps/common/metrics/family.h"
#include "ps/common/metrics/labels.h"

namespace tessera {
namespace metrics {

template <typename T>
class Builder;

// Owns metric families and renders them for Prometheus. A process makes one
// in main() and passes it down (there is no global registry); families are
// added with the builders in builder.h:
//
//   Registry registry;
//   Counter& pushes = BuildCounter()
//                         .Name("tessera_ps_push_requests_total")
//                         .Help("Push requests received.")
//                         .Register(registry)
//                         .Add({{"code", "OK"}});
//   pushes.Increment();
//   std::string text = registry.Serialize();
//
// Registering a name again with the same type, help and constant labels
// returns the existing family; with a different definition it is a
// programming error (CHECK).
//
// Thread-safe. Families, series and hooks live as long as the registry.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry() = default;

  // Runs every collect hook, then renders every family in the Prometheus
  // text exposition format 0.0.4: families in name order, series in label
  // order, each family's HELP and TYPE even when it has no series yet.
  std::string Serialize() const ABSL_LOCKS_EXCLUDED(mu_);

  // Adds `hook`, run at the start of every Serialize (e.g. to set a gauge
  // such as "seconds since the last flush"), in the order added. Hooks run
  // on the serializing thread without any registry lock held, so they may
  // use the registry; two concurrent Serialize calls run them concurrently,
  // so a hook must be thread-safe. Anything a hook captures must outlive the
  // registry.
  void AddCollectHook(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether a family named `name` is registered.
  bool HasFamily(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  template <typename T>
  friend class Builder;

  template <typename T>
  Family<T>& Register(const std::string& name, const std::string& help,
                      const Labels& constant_labels) {
    return static_cast<Family<T>&>(RegisterFamily(std::unique_ptr<Family<T>>(
        new Family<T>(name, help, constant_labels))));
  }

  // Adds `family`, or returns the existing family of that name if it has
  // the same definition (CHECK otherwise).
  internal::FamilyBase& RegisterFamily(
      std::unique_ptr<internal::FamilyBase> family) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<internal::FamilyBase>, std::less<>>
      families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const std::function<void()>>> hooks_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_REGISTRY_H_

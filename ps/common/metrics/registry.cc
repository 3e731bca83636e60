#include "ps/common/metrics/registry.h"

#include <utility>

#include "glog/logging.h"
#include "ps/common/metrics/text_format.h"

namespace tessera {
namespace metrics {

std::string Registry::Serialize() const {
  std::vector<std::shared_ptr<const std::function<void()>>> hooks;
  {
    absl::MutexLock lock(&mu_);
    hooks = hooks_;
  }
  // No lock across callbacks: a hook may add series or even families.
  for (const auto& hook : hooks) (*hook)();

  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) family->AppendText(&out);
  return out;
}

void Registry::AddCollectHook(std::function<void()> hook) {
  CHECK(hook != nullptr) << "Registry::AddCollectHook: empty hook";
  auto shared = std::make_shared<const std::function<void()>>(std::move(hook));
  absl::MutexLock lock(&mu_);
  hooks_.push_back(std::move(shared));
}

bool Registry::HasFamily(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  return families_.find(name) != families_.end();
}

internal::FamilyBase& Registry::RegisterFamily(
    std::unique_ptr<internal::FamilyBase> family) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family->name());
  if (it == families_.end()) {
    const std::string name = family->name();
    return *families_.emplace(name, std::move(family)).first->second;
  }
  const internal::FamilyBase& existing = *it->second;
  CHECK(existing.type() == family->type() &&
        existing.help() == family->help() &&
        existing.constant_labels() == family->constant_labels())
      << "metric family " << family->name()
      << " registered twice with different definitions: first as a "
      << MetricTypeName(existing.type()) << " with help \"" << existing.help()
      << "\" and constant labels {"
      << internal::FormatLabelBlock(existing.constant_labels())
      << "}, now as a " << MetricTypeName(family->type()) << " with help \""
      << family->help() << "\" and constant labels {"
      << internal::FormatLabelBlock(family->constant_labels()) << "}";
  return *it->second;
}

}  // namespace metrics
}  // namespace tessera

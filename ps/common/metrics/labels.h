#ifndef TESSERA_PS_COMMON_METRICS_LABELS_H_
#define TESSERA_PS_COMMON_METRICS_LABELS_H_

#include <map>
#include <string>

namespace tessera {
namespace metrics {

// Label name -> value, e.g. {{"shard", "0"}, {"code", "OK"}}. Names match
// [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; values are any UTF-8.
// Keep cardinality low (see STYLE.md): never a row id or a tensor's index.
using Labels = std::map<std::string, std::string>;

}  // namespace metrics
}  // namespace tessera

#endif  // TESSERA_PS_COMMON_METRICS_LABELS_H_

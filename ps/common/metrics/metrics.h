#ifndef TESSERA_PS_COMMON_METRICS_METRICS_H_
#define TESSERA_PS_COMMON_METRICS_METRICS_H_

// The metrics registry, in one include: Counter, Gauge, Histogram (and its
// bucket helpers), Family, Registry and the builders. Shaped like
// prometheus-cpp, which Debian does not package. The HTTP endpoint is in
// metrics_server.h, process and build-info metrics in process_metrics.h.

#include "ps/common/metrics/builder.h"    // IWYU pragma: export
#include "ps/common/metrics/counter.h"    // IWYU pragma: export
#include "ps/common/metrics/family.h"     // IWYU pragma: export
#include "ps/common/metrics/gauge.h"      // IWYU pragma: export
#include "ps/common/metrics/histogram.h"  // IWYU pragma: export
#include "ps/common/metrics/labels.h"     // IWYU pragma: export
#include "ps/common/metrics/registry.h"   // IWYU pragma: export

#endif  // TESSERA_PS_COMMON_METRICS_METRICS_H_

#include "tests/fault/metrics_text.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tessera::fault {
namespace {

std::string Key(const std::string& name, const std::string& labels) {
  return labels.empty() ? name : absl::StrCat(name, "{", labels, "}");
}

bool ParseValue(absl::string_view text, double* value) {
  if (text == "+Inf") {
    *value = std::numeric_limits<double>::infinity();
    return true;
  }
  if (text == "-Inf") {
    *value = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (text == "NaN") {
    *value = std::nan("");
    return true;
  }
  return absl::SimpleAtod(text, value);
}

}  // namespace

MetricsText MetricsText::Parse(absl::string_view text) {
  MetricsText m;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    // The value follows the last space outside the label block; label values
    // may hold spaces, so split after the closing brace when there is one.
    const size_t brace = line.rfind('}');
    const size_t space =
        line.find(' ', brace == absl::string_view::npos ? 0 : brace);
    if (space == absl::string_view::npos) continue;
    absl::string_view series = line.substr(0, space);
    absl::string_view rest = line.substr(space + 1);
    // An optional timestamp follows the value.
    rest = rest.substr(0, rest.find(' '));
    double value = 0;
    if (!ParseValue(rest, &value)) continue;
    m.series_[std::string(series)] = value;
  }
  return m;
}

double MetricsText::Get(const std::string& name,
                        const std::string& labels) const {
  auto it = series_.find(Key(name, labels));
  return it == series_.end() ? 0 : it->second;
}

bool MetricsText::Has(const std::string& name,
                      const std::string& labels) const {
  return series_.count(Key(name, labels)) > 0;
}

double MetricsText::Sum(const std::string& name,
                        const std::string& label_substring) const {
  double sum = 0;
  for (auto it = series_.lower_bound(name); it != series_.end(); ++it) {
    const std::string& key = it->first;
    if (!absl::StartsWith(key, name)) break;
    if (key.size() != name.size() && key[name.size()] != '{') continue;
    if (!label_substring.empty() &&
        key.find(label_substring) == std::string::npos) {
      continue;
    }
    sum += it->second;
  }
  return sum;
}

Buckets MetricsText::HistogramBuckets(const std::string& name,
                                      const std::string& labels) const {
  const std::string prefix = absl::StrCat(name, "_bucket{", labels,
                                          labels.empty() ? "" : ",", "le=\"");
  Buckets out;
  for (auto it = series_.lower_bound(prefix); it != series_.end(); ++it) {
    if (!absl::StartsWith(it->first, prefix)) break;
    absl::string_view le = absl::string_view(it->first).substr(prefix.size());
    le = le.substr(0, le.find('"'));
    double bound = 0;
    if (!ParseValue(le, &bound)) continue;
    out.push_back({bound, it->second});
  }
  std::sort(out.begin(), out.end());
  return out;
}

Buckets SubtractBuckets(const Buckets& after, const Buckets& before) {
  Buckets out = after;
  for (size_t i = 0; i < out.size() && i < before.size(); ++i) {
    out[i].second -= before[i].second;
  }
  return out;
}

double BucketCount(const Buckets& buckets) {
  return buckets.empty() ? 0 : buckets.back().second;
}

double HistogramQuantile(double q, const Buckets& buckets) {
  const double total = BucketCount(buckets);
  if (total <= 0) return std::nan("");
  const double rank = q * total;
  double lower_bound = 0, lower_count = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto& [bound, count] = buckets[i];
    if (count >= rank) {
      if (std::isinf(bound)) {
        return i == 0 ? 0 : buckets[i - 1].first;
      }
      const double in_bucket = count - lower_count;
      if (in_bucket <= 0) return bound;
      return lower_bound +
             (bound - lower_bound) * (rank - lower_count) / in_bucket;
    }
    lower_bound = bound;
    lower_count = count;
  }
  return lower_bound;
}

}  // namespace tessera::fault

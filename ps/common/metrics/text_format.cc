#include "ps/common/metrics/text_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace metrics {
namespace internal {
namespace {

bool IsAsciiLetter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// name{label_block[,le="..."]} value
void AppendSample(absl::string_view name, absl::string_view suffix,
                  absl::string_view label_block, const std::string* le,
                  double value, std::string* out) {
  absl::StrAppend(out, name, suffix);
  if (!label_block.empty() || le != nullptr) {
    out->push_back('{');
    out->append(label_block.data(), label_block.size());
    if (le != nullptr) {
      if (!label_block.empty()) out->push_back(',');
      absl::StrAppend(out, "le=\"", *le, "\"");
    }
    out->push_back('}');
  }
  out->push_back(' ');
  AppendValue(value, out);
  out->push_back('\n');
}

}  // namespace

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && IsAsciiDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || absl::string_view(name).substr(0, 2) == "__") {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || (i > 0 && IsAsciiDigit(c));
    if (!ok) return false;
  }
  return true;
}

void AppendValue(double v, std::string* out) {
  if (std::isnan(v)) {
    out->append("NaN");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
  } else if (std::fabs(v) < 9007199254740992.0 /* 2^53 */ &&
             v == std::trunc(v)) {
    // Counts and byte totals read as integers, whatever their size.
    absl::StrAppend(out, static_cast<int64_t>(v));
  } else {
    // The shortest digits that round-trip, in fixed notation unless the
    // exponent is below -4 (as Go's client, so bucket bounds read
    // le="0.0001", le="2.5e-05") or 21 and up.
    char buffer[64];
    std::to_chars_result result = std::to_chars(
        buffer, buffer + sizeof(buffer), v, std::chars_format::scientific);
    const char* e = std::find(buffer, result.ptr, 'e');
    int exponent = 0;
    std::from_chars(e + (e[1] == '+' ? 2 : 1), result.ptr, exponent);
    if (exponent >= -4 && exponent < 21) {
      result = std::to_chars(buffer, buffer + sizeof(buffer), v,
                             std::chars_format::fixed);
    }
    out->append(buffer, result.ptr);
  }
}

std::string FormatValue(double v) {
  std::string out;
  AppendValue(v, &out);
  return out;
}

void AppendEscapedHelp(absl::string_view help, std::string* out) {
  for (const char c : help) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendEscapedLabelValue(absl::string_view value, std::string* out) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

std::string FormatLabelBlock(const Labels& labels) {
  std::string block;
  for (const auto& [name, value] : labels) {
    if (!block.empty()) block.push_back(',');
    absl::StrAppend(&block, name, "=\"");
    AppendEscapedLabelValue(value, &block);
    block.push_back('"');
  }
  return block;
}

void AppendFamilyHeader(absl::string_view name, absl::string_view help,
                        MetricType type, std::string* out) {
  if (!help.empty()) {
    absl::StrAppend(out, "# HELP ", name, " ");
    AppendEscapedHelp(help, out);
    out->push_back('\n');
  }
  absl::StrAppend(out, "# TYPE ", name, " ", MetricTypeName(type), "\n");
}

void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Counter& counter, std::string* out) {
  AppendSample(name, "", label_block, nullptr, counter.Value(), out);
}

void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Gauge& gauge, std::string* out) {
  AppendSample(name, "", label_block, nullptr, gauge.Value(), out);
}

void AppendSeries(absl::string_view name, absl::string_view label_block,
                  const Histogram& histogram, std::string* out) {
  const HistogramSnapshot snapshot = histogram.Snapshot();
  std::string le;
  for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
    le.clear();
    AppendValue(i < snapshot.bucket_boundaries.size()
                    ? snapshot.bucket_boundaries[i]
                    : HUGE_VAL,
                &le);
    AppendSample(name, "_bucket", label_block, &le,
                 static_cast<double>(snapshot.cumulative_counts[i]), out);
  }
  AppendSample(name, "_sum", label_block, nullptr, snapshot.sum, out);
  AppendSample(name, "_count", label_block, nullptr,
               static_cast<double>(snapshot.count), out);
}

}  // namespace internal
}  // namespace metrics
}  // namespace tessera

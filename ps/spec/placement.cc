#include "ps/spec/placement.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "ps/common/checked_math.h"

namespace tessera {
namespace {

// An enum value by name, or by number when it has none (a newer or hostile
// peer's value): never an empty string in an error message.
std::string DTypeText(v1::DType value) {
  const std::string text = v1::DType_Name(value);
  if (!text.empty()) return text;
  return absl::StrCat("value ", static_cast<int>(value));
}

}  // namespace

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t StableHash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix64(h);
}

absl::Status ValidateMemoryPolicy(const v1::TensorSpec& spec) {
  const v1::MemoryPolicy& p = spec.memory_policy();
  const std::string what =
      absl::StrCat("tensor ", spec.name(), ": memory policy ");
  if (spec.kind() != v1::TensorSpec::EMBEDDING) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "applies to embedding tables only"));
  }
  if (!v1::MemoryPolicy::Eviction_IsValid(p.eviction())) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "has an unknown eviction ", p.eviction()));
  }
  if (p.eviction() == v1::MemoryPolicy::EVICTION_DISK) {
    if (p.max_rows() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what,
          "eviction EVICTION_DISK needs max_rows > 0 (the rows each shard "
          "keeps in memory)"));
    }
    if (p.expire_after_steps() != 0 || p.expire_after_seconds() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what,
          "expiry with eviction EVICTION_DISK is not supported (rows on disk "
          "would never expire); use EVICTION_DELETE to expire rows"));
    }
  }
  const std::pair<const char*, int64_t> fields[] = {
      {"admit_after_pushes", p.admit_after_pushes()},
      {"sketch_width", p.sketch_width()},
      {"sketch_depth", p.sketch_depth()},
      {"expire_after_steps", p.expire_after_steps()},
      {"expire_after_seconds", p.expire_after_seconds()},
      {"max_rows", p.max_rows()}};
  for (const auto& [field, value] : fields) {
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, field, " = ", value, " is negative"));
    }
  }
  if (p.sketch_width() > kMaxSketchWidth ||
      p.sketch_depth() > kMaxSketchDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "sketch ", p.sketch_width(), " x ", p.sketch_depth(),
                     " exceeds ", kMaxSketchWidth, " x ", kMaxSketchDepth));
  }
  // Seconds are kept in milliseconds.
  if (p.expire_after_seconds() > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "expire_after_seconds = ", p.expire_after_seconds(),
                     " is too large"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTensorSpec(const v1::TensorSpec& spec) {
  if (spec.name().empty()) {
    return absl::InvalidArgumentError("tensor spec has an empty name");
  }
  if (spec.name().size() > 256 || spec.name().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor name must be at most 256 bytes without NUL: \"",
                     spec.name().substr(0, 64), "\""));
  }
  if (spec.dtype() != v1::DTYPE_UNSPECIFIED && spec.dtype() != v1::FLOAT32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", spec.name(), ": dtype ", DTypeText(spec.dtype()),
        " is not supported (float32 only)"));
  }
  if (spec.shape_size() > 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", spec.name(), ": rank ", spec.shape_size(), " exceeds 8"));
  }
  for (int i = 0; i < spec.shape_size(); ++i) {
    const bool unbounded_rows = spec.kind() == v1::TensorSpec::EMBEDDING &&
                                i == 0 && spec.shape(0) == 0;
    if (spec.shape(i) <= 0 && !unbounded_rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", spec.name(), ": shape[", i,
                       "] = ", spec.shape(i), " must be positive"));
    }
  }
  if (spec.kind() == v1::TensorSpec::EMBEDDING) {
    if (spec.shape_size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("embedding table ", spec.name(),
                       ": shape must be [rows (0 = unbounded), dim], got rank ",
                       spec.shape_size()));
    }
  } else if (spec.kind() != v1::TensorSpec::DENSE) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", spec.name(), ": unknown kind ", spec.kind()));
  }
  // Sizes that overflow or cannot be held in memory: a dense tensor's
  // elements, or an embedding row's, times 4 bytes stay within 1 TiB, so
  // every product of them downstream fits in int64.
  int64_t elements = 0;
  const bool sized =
      spec.kind() == v1::TensorSpec::EMBEDDING
          ? CheckedProduct(absl::MakeConstSpan(spec.shape().data() + 1, 1),
                           kMaxTensorElements, &elements)
          : CheckedProduct(
                absl::MakeConstSpan(spec.shape().data(), spec.shape_size()),
                kMaxTensorElements, &elements);
  if (!sized) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", spec.name(), ": more than ", kMaxTensorElements,
                     " elements (1 TiB) is too large"));
  }
  if (spec.kind() == v1::TensorSpec::EMBEDDING &&
      spec.shape(1) > kMaxEmbeddingDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "embedding table ", spec.name(), ": dim ", spec.shape(1), " exceeds ",
        kMaxEmbeddingDim, " (a row must fit in a message)"));
  }
  const v1::Initializer& init = spec.initializer();
  if (!v1::Initializer::Kind_IsValid(init.kind())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", spec.name(), ": unknown initializer kind ", init.kind()));
  }
  // Initial values must be finite: every parameter is finite and at most
  // kMaxInitializerParameter in size, so no product or difference of them
  // (high - low, mean + stddev * z with |z| < 9, gain * sqrt(6 / fan))
  // overflows float.
  const std::pair<const char*, float> params[] = {
      {"value", init.value()},   {"low", init.low()},
      {"high", init.high()},     {"mean", init.mean()},
      {"stddev", init.stddev()}, {"gain", init.gain()}};
  for (const auto& [field, value] : params) {
    if (!std::isfinite(value) || std::fabs(value) > kMaxInitializerParameter) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", spec.name(), ": initializer ", field, " = ",
                       value, " must be finite and at most ",
                       kMaxInitializerParameter, " in size"));
    }
  }
  if (init.kind() == v1::Initializer::UNIFORM && init.low() > init.high()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", spec.name(), ": uniform initializer low ",
                     init.low(), " exceeds high ", init.high()));
  }
  if (init.stddev() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", spec.name(), ": initializer stddev ",
                     init.stddev(), " is negative"));
  }
  if (!v1::OptimizerConfig::Kind_IsValid(spec.optimizer().kind())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", spec.name(),
                                                   ": unknown optimizer kind ",
                                                   spec.optimizer().kind()));
  }
  if (spec.has_memory_policy()) {
    absl::Status policy = ValidateMemoryPolicy(spec);
    if (!policy.ok()) return policy;
  }
  return absl::OkStatus();
}

absl::Status ValidatePlacementConfig(const v1::PlacementConfig& config) {
  if (config.num_shards() < 1 || config.num_shards() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_shards must be in [1, 4096], got ", config.num_shards()));
  }
  if (config.split_threshold_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("split_threshold_bytes must be >= 0, got ",
                     config.split_threshold_bytes()));
  }
  return absl::OkStatus();
}

int64_t NumRows(const v1::TensorSpec& spec) {
  return spec.shape_size() == 0 ? 1 : spec.shape(0);
}

int64_t RowSize(const v1::TensorSpec& spec) {
  int64_t n = 1;
  for (int i = 1; i < spec.shape_size(); ++i) n *= spec.shape(i);
  return n;
}

int64_t NumElements(const v1::TensorSpec& spec) {
  return NumRows(spec) * RowSize(spec);
}

std::vector<PartPlacement> PlaceDense(const v1::TensorSpec& spec,
                                      const v1::PlacementConfig& config) {
  const int shards = config.num_shards();
  const int64_t rows = NumRows(spec);
  const int64_t bytes = NumElements(spec) * static_cast<int64_t>(sizeof(float));
  std::vector<PartPlacement> parts;
  if (bytes <= config.split_threshold_bytes() || shards == 1 || rows == 1) {
    parts.push_back(PartPlacement{
        0, static_cast<int>(StableHash(spec.name()) % shards), 0, rows});
    return parts;
  }
  const int64_t n = std::min<int64_t>(shards, rows);
  for (int64_t i = 0; i < n; ++i) {
    parts.push_back(PartPlacement{static_cast<int>(i), static_cast<int>(i),
                                  rows * i / n, rows * (i + 1) / n});
  }
  return parts;
}

bool PartOnShard(const v1::TensorSpec& spec, const v1::PlacementConfig& config,
                 int shard, PartPlacement* out) {
  if (spec.kind() == v1::TensorSpec::EMBEDDING) {
    *out = PartPlacement{shard, shard, 0, spec.shape(0)};
    return true;
  }
  for (const PartPlacement& p : PlaceDense(spec, config)) {
    if (p.shard == shard) {
      *out = p;
      return true;
    }
  }
  return false;
}

}  // namespace tessera

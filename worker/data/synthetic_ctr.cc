#include "worker/data/synthetic_ctr.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ps/common/status_macros.h"
#include "worker/data/random.h"

namespace tessera {
namespace worker {
namespace {

// Salts that keep the example and weight streams independent.
constexpr uint64_t kExampleSalt = 0x5851f42d4c957f2dull;
constexpr uint64_t kWeightSalt = 0x14057b7ef767814full;

// The rejection-inversion Zipf sampler of W. Hormann and G. Derflinger,
// "Rejection-inversion to generate variates from monotone discrete
// distributions" (1996), as in Apache Commons' ZipfDistribution: O(1)
// expected time per sample and no table, for any vocabulary size.
// h(x) = x^-s; HIntegral is its antiderivative, written so that s = 1 is
// not a special case.

double Helper1(double x) {  // log1p(x) / x
  return std::abs(x) > 1e-8 ? std::log1p(x) / x
                            : 1.0 - x * (0.5 - x * (1.0 / 3.0 - x * 0.25));
}

double Helper2(double x) {  // expm1(x) / x
  return std::abs(x) > 1e-8
             ? std::expm1(x) / x
             : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + x * 0.25));
}

double H(double s, double x) { return std::exp(-s * std::log(x)); }

double HIntegral(double s, double x) {
  const double log_x = std::log(x);
  return Helper2((1.0 - s) * log_x) * log_x;
}

double HIntegralInverse(double s, double x) {
  double t = x * (1.0 - s);
  if (t < -1.0) t = -1.0;
  return std::exp(Helper1(t) * x);
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

absl::StatusOr<std::unique_ptr<SyntheticCtrDataset>>
SyntheticCtrDataset::Create(const SyntheticCtrOptions& options) {
  if (options.num_examples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_examples is ", options.num_examples, ", want >= 0"));
  }
  if (options.vocab_size < 1) {
    return absl::InvalidArgumentError("vocab_size is 0, want >= 1");
  }
  if (options.features_per_example < 1 ||
      static_cast<uint64_t>(options.features_per_example) >
          options.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "features_per_example is ", options.features_per_example,
        ", want it in [1, vocab_size = ", options.vocab_size, "]"));
  }
  if (!(options.zipf_exponent > 0) || !std::isfinite(options.zipf_exponent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("zipf_exponent is ", options.zipf_exponent, ", want > 0"));
  }
  if (!(options.weight_stddev >= 0) || !std::isfinite(options.weight_stddev)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight_stddev is ", options.weight_stddev, ", want >= 0"));
  }
  return std::unique_ptr<SyntheticCtrDataset>(new SyntheticCtrDataset(options));
}

SyntheticCtrDataset::SyntheticCtrDataset(const SyntheticCtrOptions& options)
    : options_(options),
      h_integral_x1_(HIntegral(options.zipf_exponent, 1.5) - 1.0),
      h_integral_n_(HIntegral(options.zipf_exponent,
                              static_cast<double>(options.vocab_size) + 0.5)),
      squeeze_(2.0 - HIntegralInverse(options.zipf_exponent,
                                      HIntegral(options.zipf_exponent, 2.5) -
                                          H(options.zipf_exponent, 2.0))) {}

template <typename Rng>
uint64_t SyntheticCtrDataset::SampleRank(Rng& rng) const {
  const double s = options_.zipf_exponent;
  const uint64_t n = options_.vocab_size;
  while (true) {
    const double u =
        h_integral_n_ + rng.Uniform() * (h_integral_x1_ - h_integral_n_);
    const double x = HIntegralInverse(s, u);
    double rounded = std::floor(x + 0.5);
    if (rounded < 1) rounded = 1;
    if (rounded > static_cast<double>(n)) rounded = static_cast<double>(n);
    const uint64_t k = static_cast<uint64_t>(rounded);
    if (rounded - x <= squeeze_ ||
        u >= HIntegral(s, rounded + 0.5) - H(s, rounded)) {
      return k;
    }
  }
}

double SyntheticCtrDataset::TrueWeight(uint64_t id) const {
  SplitMix64 rng(HashCombine(options_.seed ^ kWeightSalt, id));
  return options_.weight_stddev * rng.Normal();
}

double SyntheticCtrDataset::TrueProbability(
    absl::Span<const uint64_t> ids) const {
  double logit = options_.bias;
  for (uint64_t id : ids) logit += TrueWeight(id);
  return Sigmoid(logit);
}

float SyntheticCtrDataset::Generate(int64_t index,
                                    std::vector<uint64_t>* ids) const {
  constexpr int kRedraws = 32;
  uint64_t stream = options_.seed ^ kExampleSalt;
  if (options_.example_seed != 0) {
    stream = HashCombine(stream, options_.example_seed);
  }
  SplitMix64 rng(HashCombine(stream, static_cast<uint64_t>(index)));
  const uint64_t n = options_.vocab_size;
  ids->clear();
  for (int f = 0; f < options_.features_per_example; ++f) {
    uint64_t id = SampleRank(rng) - 1;
    auto at = std::lower_bound(ids->begin(), ids->end(), id);
    // Ids in an example are distinct: redraw a duplicate, and after
    // kRedraws (a vocabulary nearly exhausted by the hot ids) take the next
    // free id, which always exists because features_per_example <= n.
    for (int redraw = 0; at != ids->end() && *at == id; ++redraw) {
      id = redraw < kRedraws ? SampleRank(rng) - 1 : (id + 1) % n;
      at = std::lower_bound(ids->begin(), ids->end(), id);
    }
    ids->insert(at, id);
  }
  return rng.Uniform() < TrueProbability(*ids) ? 1.0f : 0.0f;
}

absl::StatusOr<SparseBatch> SyntheticCtrDataset::Gather(
    absl::Span<const int64_t> indices) const {
  TESSERA_RETURN_IF_ERROR(CheckIndices(indices));
  const std::vector<float> ones(options_.features_per_example, 1.0f);
  std::vector<uint64_t> ids;
  ids.reserve(options_.features_per_example);
  SparseBatchBuilder builder;
  builder.Reserve(indices.size(), static_cast<int64_t>(indices.size()) *
                                      options_.features_per_example);
  for (int64_t index : indices) {
    const float label = Generate(index, &ids);
    builder.AddExample(label, ids, ones);
  }
  return std::move(builder).Build();
}

}  // namespace worker
}  // namespace tessera

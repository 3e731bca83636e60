#ifndef TESSERA_WORKER_DATA_SYNTHETIC_CTR_H_
#define TESSERA_WORKER_DATA_SYNTHETIC_CTR_H_

// Synthetic click-through-rate data for scale tests: sparse binary features
// with power-law popularity and labels drawn from a known logistic model, so
// a test can check that training recovers that model.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/data/dataset.h"

namespace tessera {
namespace worker {

struct SyntheticCtrOptions {
  int64_t num_examples = 100000;
  // Feature ids are in [0, vocab_size).
  uint64_t vocab_size = 1 << 20;
  // Distinct feature ids per example, each with value 1. At most vocab_size;
  // meant to be small (tens), generation is O(k^2) per example.
  int features_per_example = 16;
  // Popularity: P(id) is proportional to (id + 1)^-zipf_exponent, so id 0 is
  // the most frequent. Must be > 0 (1.0 is classic Zipf).
  double zipf_exponent = 1.1;
  // True model: weight of each id ~ Normal(0, weight_stddev^2), drawn from
  // (seed, id); P(label = 1) = sigmoid(bias + sum of the example's weights).
  double weight_stddev = 0.5;
  double bias = 0.0;
  uint64_t seed = 1;
  // Examples are drawn from (seed, example_seed, index) and the true model
  // from seed alone: a held-out set is the same model with another
  // example_seed.
  uint64_t example_seed = 0;
};

// Generates example i on demand from (seed, example_seed, i): no memory per
// example, the same data on every machine and in every process, and any
// partition is readable without generating the ones before it. Ids within
// an example are ascending. Write it out with WriteLibsvmFile
// (sparse_dataset.h). Thread-safe (immutable).
class SyntheticCtrDataset : public SparseDataset {
 public:
  // InvalidArgument for num_examples < 0, vocab_size < 1,
  // features_per_example outside [1, vocab_size], zipf_exponent <= 0 or
  // weight_stddev < 0.
  static absl::StatusOr<std::unique_ptr<SyntheticCtrDataset>> Create(
      const SyntheticCtrOptions& options);

  int64_t size() const override { return options_.num_examples; }
  absl::StatusOr<SparseBatch> Gather(
      absl::Span<const int64_t> indices) const override;

  const SyntheticCtrOptions& options() const { return options_; }

  // The true model's weight of feature `id` (for any id, also outside the
  // vocabulary) and its bias.
  double TrueWeight(uint64_t id) const;
  double true_bias() const { return options_.bias; }

  // P(label = 1) under the true model for an example with these feature ids
  // (values 1).
  double TrueProbability(absl::Span<const uint64_t> ids) const;

 private:
  explicit SyntheticCtrDataset(const SyntheticCtrOptions& options);

  // Fills `ids` (sorted) and returns the label of example `index`.
  float Generate(int64_t index, std::vector<uint64_t>* ids) const;
  // A Zipf rank in [1, vocab_size] (rejection-inversion).
  template <typename Rng>
  uint64_t SampleRank(Rng& rng) const;

  const SyntheticCtrOptions options_;
  // Constants of the rejection-inversion Zipf sampler.
  const double h_integral_x1_;
  const double h_integral_n_;
  const double squeeze_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_SYNTHETIC_CTR_H_

#include "ps/spec/initializer.h"

#include <cmath>

#include "ps/spec/placement.h"

namespace tessera {
namespace {

// splitmix64 stream: fast, and identical on every platform (unlike
// std::normal_distribution, whose algorithm the standard leaves open).
class RowRandom {
 public:
  explicit RowRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix64(state_++); }
  // Uniform in [0, 1).
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  // Standard normal (Box-Muller; the second value is discarded so that row
  // streams stay independent of the row length's parity).
  double Normal() {
    double u1 = Uniform();
    while (u1 <= 0) u1 = Uniform();
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
};

void Fans(const v1::TensorSpec& spec, double* fan_in, double* fan_out) {
  // As torch.nn.init._calculate_fan_in_and_fan_out: shape [out, in, k...].
  const auto& s = spec.shape();
  if (spec.kind() == v1::TensorSpec::EMBEDDING) {
    *fan_in = *fan_out = s[1];
    return;
  }
  if (s.size() < 2) {
    *fan_in = *fan_out = s.empty() ? 1 : s[0];
    return;
  }
  double receptive = 1;
  for (int i = 2; i < s.size(); ++i) receptive *= s[i];
  *fan_in = s[1] * receptive;
  *fan_out = s[0] * receptive;
}

}  // namespace

void InitializeRows(const v1::TensorSpec& spec, uint64_t row,
                    absl::Span<float> out) {
  const v1::Initializer& init = spec.initializer();
  const int64_t row_size =
      spec.kind() == v1::TensorSpec::EMBEDDING ? spec.shape(1) : RowSize(spec);
  double fan_in, fan_out;
  Fans(spec, &fan_in, &fan_out);
  const double gain = init.gain() == 0 ? 1.0 : init.gain();
  const uint64_t tensor_seed = Mix64(init.seed() ^ StableHash(spec.name()));
  for (size_t begin = 0; begin < out.size(); begin += row_size, ++row) {
    RowRandom rng(Mix64(tensor_seed + row));
    float* v = out.data() + begin;
    for (int64_t i = 0; i < row_size; ++i) {
      double x = 0;
      switch (init.kind()) {
        case v1::Initializer::ZEROS:
          break;
        case v1::Initializer::CONSTANT:
          x = init.value();
          break;
        case v1::Initializer::UNIFORM:
          x = init.low() + (init.high() - init.low()) * rng.Uniform();
          break;
        case v1::Initializer::NORMAL:
          x = init.mean() + init.stddev() * rng.Normal();
          break;
        case v1::Initializer::XAVIER_UNIFORM: {
          const double a = gain * std::sqrt(6.0 / (fan_in + fan_out));
          x = -a + 2 * a * rng.Uniform();
          break;
        }
        case v1::Initializer::XAVIER_NORMAL:
          x = gain * std::sqrt(2.0 / (fan_in + fan_out)) * rng.Normal();
          break;
        case v1::Initializer::KAIMING_UNIFORM: {
          // gain defaults to sqrt(2) (ReLU) as in torch when unset.
          const double g = init.gain() == 0 ? std::sqrt(2.0) : init.gain();
          const double a = g * std::sqrt(3.0 / fan_in);
          x = -a + 2 * a * rng.Uniform();
          break;
        }
        case v1::Initializer::KAIMING_NORMAL: {
          const double g = init.gain() == 0 ? std::sqrt(2.0) : init.gain();
          x = g / std::sqrt(fan_in) * rng.Normal();
          break;
        }
        default:
          break;
      }
      v[i] = static_cast<float>(x);
    }
  }
}

}  // namespace tessera

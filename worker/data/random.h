#ifndef TESSERA_WORKER_DATA_RANDOM_H_
#define TESSERA_WORKER_DATA_RANDOM_H_

// Small deterministic random helpers for datasets: the same numbers from the
// same seed on every platform (the standard distributions are
// implementation-defined, so they are not used).

#include <cmath>
#include <cstdint>

namespace tessera {
namespace worker {

// Mixes a 64-bit value (SplitMix64's finalizer): a good stateless hash.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Hashes two values into one; Mix64(Combine(a, b)) differs from
// Mix64(Combine(b, a)).
inline uint64_t HashCombine(uint64_t a, uint64_t b) {
  return Mix64(a ^ Mix64(b + 0x632be59bd9b4e019ull));
}

// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, passes BigCrush.
// Thread-compatible.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n), unbiased (rejection). n must be > 0.
  uint64_t Below(uint64_t n) {
    const uint64_t limit = -n % n;  // 2^64 mod n.
    uint64_t x;
    do {
      x = Next();
    } while (x < limit);
    return x % n;
  }

  // Uniform in [0, 1), 53 bits.
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }

  // Uniform in (0, 1].
  double UniformPositive() { return ((Next() >> 11) + 1) * 0x1.0p-53; }

  // Standard normal (Box-Muller, one value per call).
  double Normal() {
    const double u1 = UniformPositive();
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_RANDOM_H_

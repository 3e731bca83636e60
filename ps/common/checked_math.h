#ifndef TESSERA_PS_COMMON_CHECKED_MATH_H_
#define TESSERA_PS_COMMON_CHECKED_MATH_H_

// Arithmetic on integers that came from a peer (a request, a reply, a data
// directory): every row range, count, size, offset and shape product is
// computed here, never with a bare `+` or `*`, so that a value near INT64_MAX
// is refused instead of wrapping around (`begin + count > hi` with `begin`
// near INT64_MAX wraps and passes).
//
// Every function is total: no input overflows, none is undefined behaviour.
// Thread-safe (pure functions).

#include <cstdint>
#include <limits>

#include "absl/types/span.h"

namespace tessera {

// True iff [begin, begin + count) lies within [lo, hi), for lo <= hi.
// No overflow for any begin and count.
inline bool RangeWithin(int64_t begin, int64_t count, int64_t lo, int64_t hi) {
  return count >= 0 && begin >= lo && begin <= hi && count <= hi - begin;
}

// *out = a + b; false (and *out untouched) if that overflows int64.
inline bool CheckedAdd(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

// *out = a * b; false (and *out untouched) if that overflows int64.
inline bool CheckedMul(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

// a + b, clamped to [INT64_MIN, INT64_MAX]: for counters a peer adds to.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? std::numeric_limits<int64_t>::max()
               : std::numeric_limits<int64_t>::min();
}

// The product of `dims`, each of which must be >= 0; false if one is
// negative or the product exceeds `max` (itself >= 0). An empty product is 1.
inline bool CheckedProduct(absl::Span<const int64_t> dims, int64_t max,
                           int64_t* out) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0 || !CheckedMul(p, d, &p) || p > max) return false;
  }
  if (p > max) return false;
  *out = p;
  return true;
}

// True iff `n` (unsigned, e.g. a frame's size) fits in int64 and is <= max.
inline bool SizeAtMost(uint64_t n, int64_t max) {
  return max >= 0 && n <= static_cast<uint64_t>(max);
}

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_CHECKED_MATH_H_

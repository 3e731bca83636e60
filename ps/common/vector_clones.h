#ifndef TESSERA_PS_COMMON_VECTOR_CLONES_H_
#define TESSERA_PS_COMMON_VECTOR_CLONES_H_

// TESSERA_VECTOR_CLONES compiles an elementwise loop twice, for AVX2 and for
// the x86-64 baseline (SSE2), and the loader picks the one the CPU runs
// (GCC's target_clones, an ifunc). Both compute the same floats when the loop
// is elementwise IEEE operations with no reduction: "avx2" does not enable
// FMA contraction. Other compilers (clang builds the fuzzers) get one copy.
//
// GCC 12 at -O2 vectorizes only loops without a scalar epilogue: a library
// that uses this builds with -fvect-cost-model=dynamic (and -fno-math-errno
// for loops that call sqrtf), as //ps/optim:optimizer does.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TESSERA_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TESSERA_VECTOR_CLONES
#endif

#endif  // TESSERA_PS_COMMON_VECTOR_CLONES_H_

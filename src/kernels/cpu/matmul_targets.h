// SIMD targets compiled for the MatMul kernels (included before hwy/foreach_target.h).
// AVX3_DL (AVX512-VNNI etc.) is opted into; SSSE3 is dropped (SSE4 covers those CPUs' successors
// and keeps compile time down); SVE is not used (the portable path is written for 128-bit
// vectors, which NEON and EMU128 provide). HWY_SCALAR, when it is the baseline, runs a plain
// dequantize-and-dot fallback.
#pragma once
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS \
  (HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)
#endif

// AVX512-VNNI on the AVX3_DL target: Highway's AVX3_DL implies it (its CPU detection requires it)
// but its target string does not name it. Right after HWY_BEFORE_NAMESPACE(), inside
// `#if HWY_TARGET == HWY_AVX3_DL`, QM_VNNI_ATTRIBUTES replaces Highway's attribute push with one
// that adds avx512vnni (GCC and clang alike); HWY_AFTER_NAMESPACE() pops it as usual.
#define QM_VNNI_ATTRIBUTES HWY_POP_ATTRIBUTES HWY_PUSH_ATTRIBUTES(HWY_TARGET_STR ",avx512vnni")

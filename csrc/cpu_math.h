// Inline float / double math shared by the C++ CPU kernels (gru_blend_cpu.cpp,
// gru_cell_cpu.cpp), and the macro that clones a kernel for AVX-512 / AVX2.
//
// std::exp / std::tanh are opaque libm calls that keep a loop scalar; the float
// functions below are inline and branch-free (Cephes polynomials, within 2 ulp
// of libm), so a loop calling them vectorises (with -fno-trapping-math, see
// gru_blend_cpu.cpp for the build flags). Double keeps libm for gradcheck-grade
// precision.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

// x86-64 Linux + GCC: AVX-512 and AVX2 clones beside the baseline, picked at load
// time. CVG_NO_CPU_CLONES builds the baseline only (the ctest build does, to test it).
#if !defined(CVG_NO_CPU_CLONES) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    defined(__x86_64__) && defined(__linux__)
#define CVG_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CVG_CPU_CLONES
#endif

namespace cvg_fast {
namespace cpu_math {

// exp(x) for float, NaN in -> NaN out. x is clamped so that 2^k stays a
// normal float: exp(-87.3) ~ 1e-38 and exp(88.4) ~ 2e38 are far enough from
// 0 and inf for sigmoid and tanh.
inline float exp_f32(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.37626f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x < kLo ? kLo : x;
  x = x > kHi ? kHi : x;
  const float k = (x * kLog2e + kRound) - kRound;
  const float r = (x - k * kLn2Hi) - k * kLn2Lo;  // |r| <= ln(2) / 2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  const float k_int = k == k ? k : 0.f;  // NaN: p is NaN already; keep the cast defined
  const auto bits = static_cast<uint32_t>(static_cast<int32_t>(k_int) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

inline float sigmoid_f32(float x) { return 1.f / (1.f + exp_f32(-x)); }

// tanh(x) given e = exp(-2|x|) in (0, 1]: sign(x) (1 - e) / (1 + e), except near
// 0 where that cancels and an odd polynomial keeps the relative precision.
inline float tanh_f32(float x, float e) {
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float large = std::copysign((1.f - e) / (1.f + e), x);
  return std::fabs(x) < 0.625f ? small : large;
}

inline float exp_m2abs_f32(float x) { return exp_f32(-2.f * std::fabs(x)); }

inline double sigmoid_f64(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double exp_m2abs_f64(double x) { return std::exp(-2.0 * std::fabs(x)); }

// 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|): accurate where 1 - n * n
// cancels (|n| near 1), and no overflow.
template <typename T>
inline T sech2(T e) {
  const T d = T(1) + e;
  return T(4) * e / (d * d);
}

}  // namespace cpu_math
}  // namespace cvg_fast

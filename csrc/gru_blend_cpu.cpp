// gru_blend on CPU: one fused pass for forward, one for backward.
//
//   forward:  h_new  = h + z * (n - h),  z = sigmoid(z_pre), n = tanh(n_pre)
//   backward: dh     = g * (1 - z)
//             dz_pre = g * (n - h) * z * (1 - z)
//             dn_pre = g * z * (1 - n * n)
// The backward takes 1 - z as sigmoid(-z_pre) and 1 - n * n as 4e / (1 + e)^2,
// e = exp(-2 |n_pre|): the textbook forms cancel when z or |n| is near 1.
//
// std::exp / std::tanh are opaque libm calls, so a loop using them stays scalar
// (~15 ns per element). The float math below is inline and branch-free
// (Cephes polynomials, within 2 ulp of libm), so GCC and Clang vectorise the
// whole loop; on x86-64 Linux with GCC the float kernels are also cloned for
// AVX-512 and AVX2 and picked at load time. Build flags (setup.py, CMakeLists.txt):
//   -fno-trapping-math   else GCC refuses to if-convert the selects and the loop
//                        stays scalar;
//   -ffp-contract=fast   FMA in the polynomials where the clone has it;
//   -fopenmp             at::parallel_for is inline OpenMP in torch builds that use
//                        OpenMP: without it the kernel runs on one thread.
// Half and BFloat16 are converted to float in small chunks and reuse the float
// kernels; double uses libm for gradcheck-grade precision.

#include "ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

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
namespace {

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

// The formulas, once, for both precisions.
template <typename T>
inline T blend(T h, T z, T n) {
  return h + z * (n - h);
}

template <typename T>
inline void blend_grads(T g, T h, T z, T one_minus_z, T n, T sech2_n, T& dh, T& dz, T& dn) {
  dh = g * one_minus_z;
  dz = g * (n - h) * z * one_minus_z;
  dn = g * z * sech2_n;
}

CVG_CPU_CLONES void fwd_f32(const float* __restrict h, const float* __restrict zp,
                            const float* __restrict np, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = blend(h[i], sigmoid_f32(zp[i]), tanh_f32(np[i], exp_m2abs_f32(np[i])));
  }
}

CVG_CPU_CLONES void bwd_f32(const float* __restrict g, const float* __restrict h,
                            const float* __restrict zp, const float* __restrict np,
                            float* __restrict dh, float* __restrict dz, float* __restrict dn,
                            int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = exp_m2abs_f32(np[i]);
    blend_grads(g[i], h[i], sigmoid_f32(zp[i]), sigmoid_f32(-zp[i]), tanh_f32(np[i], e), sech2(e),
                dh[i], dz[i], dn[i]);
  }
}

// Elements per parallel task (ATen's own GRAIN_SIZE): tens of microseconds of work.
constexpr int64_t kGrain = 32768;

// Half / BFloat16 go through float buffers of this many elements (stack, L1-sized).
constexpr int64_t kChunk = 512;

// c10's bit-exact conversions; cloned as well so that they vectorise like the math.
CVG_CPU_CLONES void to_float(const c10::Half* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

CVG_CPU_CLONES void to_float(const c10::BFloat16* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

CVG_CPU_CLONES void from_float(const float* __restrict src, c10::Half* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
}

CVG_CPU_CLONES void from_float(const float* __restrict src, c10::BFloat16* __restrict dst,
                               int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::BFloat16>(src[i]);
}

template <typename scalar_t>
void fwd_range(const scalar_t* h, const scalar_t* zp, const scalar_t* np, scalar_t* out,
               int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    fwd_f32(h + begin, zp + begin, np + begin, out + begin, end - begin);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = blend(h[i], sigmoid_f64(zp[i]), std::tanh(np[i]));
    }
  } else {
    float hb[kChunk], zb[kChunk], nb[kChunk], ob[kChunk];
    for (int64_t i = begin; i < end; i += kChunk) {
      const int64_t m = std::min(kChunk, end - i);
      to_float(h + i, hb, m);
      to_float(zp + i, zb, m);
      to_float(np + i, nb, m);
      fwd_f32(hb, zb, nb, ob, m);
      from_float(ob, out + i, m);
    }
  }
}

template <typename scalar_t>
void bwd_range(const scalar_t* g, const scalar_t* h, const scalar_t* zp, const scalar_t* np,
               scalar_t* dh, scalar_t* dz, scalar_t* dn, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    bwd_f32(g + begin, h + begin, zp + begin, np + begin, dh + begin, dz + begin, dn + begin,
            end - begin);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    for (int64_t i = begin; i < end; ++i) {
      const double e = exp_m2abs_f64(np[i]);
      blend_grads(g[i], h[i], sigmoid_f64(zp[i]), sigmoid_f64(-zp[i]), std::tanh(np[i]), sech2(e),
                  dh[i], dz[i], dn[i]);
    }
  } else {
    float gb[kChunk], hb[kChunk], zb[kChunk], nb[kChunk], dhb[kChunk], dzb[kChunk], dnb[kChunk];
    for (int64_t i = begin; i < end; i += kChunk) {
      const int64_t m = std::min(kChunk, end - i);
      to_float(g + i, gb, m);
      to_float(h + i, hb, m);
      to_float(zp + i, zb, m);
      to_float(np + i, nb, m);
      bwd_f32(gb, hb, zb, nb, dhb, dzb, dnb, m);
      from_float(dhb, dh + i, m);
      from_float(dzb, dz + i, m);
      from_float(dnb, dn + i, m);
    }
  }
}

void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": expected CPU tensors, got ", t.device());
}

}  // namespace

at::Tensor gru_blend_fwd_cpu(const at::Tensor& h_in, const at::Tensor& z_in, const at::Tensor& n_in) {
  check_elementwise_operands<3>("gru_blend_fwd", {h_in, z_in, n_in}, {"h", "z_pre", "n_pre"});
  check_cpu("gru_blend_fwd", h_in);
  const auto ops = with_common_dense_layout<3>({h_in, z_in, n_in});
  const at::Tensor &h = ops[0], &zp = ops[1], &np = ops[2];
  at::Tensor out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_blend_fwd_cpu", [&] {
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    const scalar_t* zpp = zp.const_data_ptr<scalar_t>();
    const scalar_t* npp = np.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, h.numel(), kGrain, [&](int64_t begin, int64_t end) {
      fwd_range(hp, zpp, npp, op, begin, end);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_blend_bwd_cpu(
    const at::Tensor& g_in, const at::Tensor& h_in, const at::Tensor& z_in, const at::Tensor& n_in) {
  check_elementwise_operands<4>("gru_blend_bwd", {g_in, h_in, z_in, n_in},
                                {"grad", "h", "z_pre", "n_pre"});
  check_cpu("gru_blend_bwd", g_in);
  const auto ops = with_common_dense_layout<4>({g_in, h_in, z_in, n_in});
  const at::Tensor &g = ops[0], &h = ops[1], &zp = ops[2], &np = ops[3];
  at::Tensor dh = at::empty_like(h), dz = at::empty_like(h), dn = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_blend_bwd_cpu", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    const scalar_t* zpp = zp.const_data_ptr<scalar_t>();
    const scalar_t* npp = np.const_data_ptr<scalar_t>();
    scalar_t* dhp = dh.mutable_data_ptr<scalar_t>();
    scalar_t* dzp = dz.mutable_data_ptr<scalar_t>();
    scalar_t* dnp = dn.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, h.numel(), kGrain, [&](int64_t begin, int64_t end) {
      bwd_range(gp, hp, zpp, npp, dhp, dzp, dnp, begin, end);
    });
  });
  return {dh, dz, dn};
}

}  // namespace cvg_fast

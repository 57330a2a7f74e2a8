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
// (~15 ns per element). The float math of cpu_math.h is inline and branch-free
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

#include "cpu_math.h"
#include "ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace cvg_fast {
namespace {

using namespace cpu_math;

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

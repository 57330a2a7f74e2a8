// ConvGRU cell stages on CPU (see gru_cell.h for the math and the layout rules).
//
// Each op walks its (N, C, S) index space as rows: the inner index is the one
// with unit stride in the output (c for channels_last, else s), the rows are
// parallelised with at::parallel_for. A row is processed in chunks of kChunk
// elements: operands with unit stride and the math type are used in place,
// others (strided, Half, BFloat16) are gathered into stack buffers. The math
// loops then run over unit-stride arrays, so they vectorise; the float loops are
// cloned for AVX-512 / AVX2 (cpu_math.h) and use its inline exp / tanh. Build
// flags as for gru_blend_cpu.cpp (-fno-trapping-math, -ffp-contract=fast, -fopenmp).
//
// Safe forms: 1 - z = sigmoid(-pre_z), 1 - r = sigmoid(-pre_r) and
// 1 - n^2 = 4e / (1 + e)^2 with e = exp(-2 |pre_n|). Math in fp32 (double for
// float64, with libm), one rounding on store.

#include "cpu_math.h"
#include "gru_cell.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace cvg_fast {
namespace {

using namespace cpu_math;

// Per-element math, once for both precisions (M: F32 or F64 below).
struct F32 {
  static float sigmoid(float x) { return sigmoid_f32(x); }
  static float exp_m2abs(float x) { return exp_m2abs_f32(x); }
  static float tanh(float x, float e) { return tanh_f32(x, e); }
};

struct F64 {
  static double sigmoid(double x) { return sigmoid_f64(x); }
  static double exp_m2abs(double x) { return exp_m2abs_f64(x); }
  static double tanh(double x, double) { return std::tanh(x); }
};

template <typename M, typename T>
inline T update_fwd_elem(T gxz, T ghz, T nx, T nh, T h) {
  const T pre_n = nx + nh;
  const T n = M::tanh(pre_n, M::exp_m2abs(pre_n));
  return h + M::sigmoid(gxz + ghz) * (n - h);
}

template <typename M, typename T>
inline void update_bwd_elem(T d, T gxz, T ghz, T nx, T nh, T h, T& dgz, T& dn, T& dh) {
  const T pre_z = gxz + ghz, pre_n = nx + nh;
  const T z = M::sigmoid(pre_z), one_minus_z = M::sigmoid(-pre_z);
  const T e = M::exp_m2abs(pre_n);
  const T n = M::tanh(pre_n, e);
  dgz = d * (n - h) * z * one_minus_z;
  dn = d * z * sech2(e);
  dh = d * one_minus_z;
}

template <typename M, typename T>
inline void reset_bwd_elem(T d, T gxr, T ghr, T h, T& dgr, T& dh) {
  const T pre_r = gxr + ghr;
  const T r = M::sigmoid(pre_r);
  dgr = d * h * r * M::sigmoid(-pre_r);
  dh += d * r;
}

// The loops over one chunk of unit-stride arrays: float (cloned, vectorised) and double.
CVG_CPU_CLONES void reset_fwd_k(const float* __restrict gx, const float* __restrict gh,
                                const float* __restrict h, float* __restrict rh, int64_t m) {
  for (int64_t i = 0; i < m; ++i) rh[i] = F32::sigmoid(gx[i] + gh[i]) * h[i];
}

void reset_fwd_k(const double* __restrict gx, const double* __restrict gh,
                 const double* __restrict h, double* __restrict rh, int64_t m) {
  for (int64_t i = 0; i < m; ++i) rh[i] = F64::sigmoid(gx[i] + gh[i]) * h[i];
}

CVG_CPU_CLONES void update_fwd_k(const float* __restrict gx, const float* __restrict gh,
                                 const float* __restrict nx, const float* __restrict nh,
                                 const float* __restrict h, float* __restrict out, int64_t m) {
  for (int64_t i = 0; i < m; ++i) out[i] = update_fwd_elem<F32>(gx[i], gh[i], nx[i], nh[i], h[i]);
}

void update_fwd_k(const double* __restrict gx, const double* __restrict gh,
                  const double* __restrict nx, const double* __restrict nh,
                  const double* __restrict h, double* __restrict out, int64_t m) {
  for (int64_t i = 0; i < m; ++i) out[i] = update_fwd_elem<F64>(gx[i], gh[i], nx[i], nh[i], h[i]);
}

CVG_CPU_CLONES void update_bwd_k(const float* __restrict d, const float* __restrict gx,
                                 const float* __restrict gh, const float* __restrict nx,
                                 const float* __restrict nh, const float* __restrict h,
                                 float* __restrict dgz, float* __restrict dn, float* __restrict dh,
                                 int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    update_bwd_elem<F32>(d[i], gx[i], gh[i], nx[i], nh[i], h[i], dgz[i], dn[i], dh[i]);
  }
}

void update_bwd_k(const double* __restrict d, const double* __restrict gx,
                  const double* __restrict gh, const double* __restrict nx,
                  const double* __restrict nh, const double* __restrict h, double* __restrict dgz,
                  double* __restrict dn, double* __restrict dh, int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    update_bwd_elem<F64>(d[i], gx[i], gh[i], nx[i], nh[i], h[i], dgz[i], dn[i], dh[i]);
  }
}

CVG_CPU_CLONES void reset_bwd_k(const float* __restrict d, const float* __restrict gx,
                                const float* __restrict gh, const float* __restrict h,
                                float* __restrict dgr, float* __restrict dh, int64_t m) {
  for (int64_t i = 0; i < m; ++i) reset_bwd_elem<F32>(d[i], gx[i], gh[i], h[i], dgr[i], dh[i]);
}

void reset_bwd_k(const double* __restrict d, const double* __restrict gx,
                 const double* __restrict gh, const double* __restrict h, double* __restrict dgr,
                 double* __restrict dh, int64_t m) {
  for (int64_t i = 0; i < m; ++i) reset_bwd_elem<F64>(d[i], gx[i], gh[i], h[i], dgr[i], dh[i]);
}

// Elements per parallel task (ATen's GRAIN_SIZE) and per chunk (stack buffers, L1-sized).
constexpr int64_t kGrain = 32768;
constexpr int64_t kChunk = 256;

template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Unit-stride Half / BFloat16 conversions, cloned so that they vectorise like the math.
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

// `m` elements at `src` with element stride `st` as math-type values: `src` itself
// when it already is a unit-stride array of the math type, else gathered into `buf`.
template <typename scalar_t>
const acc_t<scalar_t>* load(const scalar_t* src, int64_t st, acc_t<scalar_t>* buf, int64_t m) {
  if constexpr (std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    if (st == 1) return src;
  } else {
    if (st == 1) {
      to_float(src, buf, m);
      return buf;
    }
  }
  for (int64_t i = 0; i < m; ++i) buf[i] = static_cast<acc_t<scalar_t>>(src[i * st]);
  return buf;
}

template <typename scalar_t>
void store(const acc_t<scalar_t>* buf, scalar_t* dst, int64_t st, int64_t m) {
  if constexpr (!std::is_same_v<scalar_t, acc_t<scalar_t>>) {
    if (st == 1) {
      from_float(buf, dst, m);
      return;
    }
  }
  for (int64_t i = 0; i < m; ++i) dst[i * st] = static_cast<scalar_t>(buf[i]);
}

// One operand walked as rows: element j of row (n, a) is at p + n * sn + a * sa + j * sl.
template <typename T>
struct Walk {
  T* p;
  int64_t sn, sa, sl;
};

// `t` (H, W merged) from channel `c0` on, as rows of the geometry's inner index.
template <typename T>
Walk<T> walk(T* base, const at::Tensor& t, const CellGeometry& geo, int64_t c0 = 0) {
  const CellStrides st = cell_strides(t);
  T* p = base + c0 * st.c;
  return geo.c_inner ? Walk<T>{p, st.n, st.s, st.c} : Walk<T>{p, st.n, st.c, st.s};
}

template <typename scalar_t>
Walk<const scalar_t> walk_in(const at::Tensor& t, const CellGeometry& geo, int64_t c0 = 0) {
  return walk(t.const_data_ptr<scalar_t>(), t, geo, c0);
}

template <typename scalar_t>
Walk<scalar_t> walk_out(const at::Tensor& t, const CellGeometry& geo, int64_t c0 = 0) {
  return walk(t.mutable_data_ptr<scalar_t>(), t, geo, c0);
}

// Runs kernel(in_ptrs, out_ptrs, m) over every chunk of every row, rows in parallel.
// With `accumulate_last`, the last output is read before the kernel (kernel does +=).
template <typename scalar_t, std::size_t NI, std::size_t NO, typename Kernel>
void for_each_chunk(const CellGeometry& geo, const std::array<Walk<const scalar_t>, NI>& in,
                    const std::array<Walk<scalar_t>, NO>& out, bool accumulate_last,
                    const Kernel& kernel) {
  using acc = acc_t<scalar_t>;
  const int64_t rows_per_n = geo.c_inner ? geo.S : geo.C;  // outer index a
  const int64_t len = geo.c_inner ? geo.C : geo.S;         // inner index
  const int64_t rows = geo.N * rows_per_n;
  if (rows == 0 || len == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrain / len);
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    acc in_buf[NI][kChunk];
    acc out_buf[NO][kChunk];
    std::array<const acc*, NI> ip;
    std::array<acc*, NO> op;
    std::array<scalar_t*, NO> dst;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / rows_per_n, a = r % rows_per_n;
      for (int64_t j = 0; j < len; j += kChunk) {
        const int64_t m = std::min(kChunk, len - j);
        for (std::size_t k = 0; k < NI; ++k) {
          const Walk<const scalar_t>& w = in[k];
          ip[k] = load(w.p + n * w.sn + a * w.sa + j * w.sl, w.sl, in_buf[k], m);
        }
        for (std::size_t k = 0; k < NO; ++k) {
          const Walk<scalar_t>& w = out[k];
          dst[k] = w.p + n * w.sn + a * w.sa + j * w.sl;
          op[k] = out_buf[k];
          if constexpr (std::is_same_v<scalar_t, acc>) {
            if (w.sl == 1) op[k] = dst[k];  // write in place
          }
          if (accumulate_last && k == NO - 1 && op[k] == out_buf[k]) {
            load<scalar_t>(dst[k], w.sl, out_buf[k], m);
          }
        }
        kernel(ip, op, m);
        for (std::size_t k = 0; k < NO; ++k) {
          if (op[k] == out_buf[k]) store<scalar_t>(out_buf[k], dst[k], out[k].sl, m);
        }
      }
    }
  });
}

void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": expected CPU tensors, got ", t.device());
}

// An in-place output the kernels can walk: `t` itself when H, W merge, else a
// contiguous copy that finish_inplace() copies back.
at::Tensor inplace_work(const at::Tensor& t) { return with_hw_merged(t); }

void finish_inplace(at::Tensor& t, const at::Tensor& work) {
  if (!work.is_same(t)) t.copy_(work);
}

}  // namespace

at::Tensor gru_reset_fwd_cpu(const at::Tensor& g_x_in, const at::Tensor& g_h_in, const at::Tensor& h_in) {
  check_gru_cell_operands("gru_reset_fwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}}, {});
  check_cpu("gru_reset_fwd", h_in);
  const at::Tensor g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in), h = with_hw_merged(h_in);
  at::Tensor rh = cell_empty_like(h_in);
  const CellGeometry geo = cell_geometry(rh);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_reset_fwd_cpu", [&] {
    for_each_chunk<scalar_t, 3, 1>(
        geo, {walk_in<scalar_t>(g_x, geo), walk_in<scalar_t>(g_h, geo), walk_in<scalar_t>(h, geo)},
        {walk_out<scalar_t>(rh, geo)}, false,
        [](const auto& i, const auto& o, int64_t m) { reset_fwd_k(i[0], i[1], i[2], o[0], m); });
  });
  return rh;
}

at::Tensor gru_update_fwd_cpu(const at::Tensor& g_x_in, const at::Tensor& g_h_in, const at::Tensor& n_x_in,
                              const at::Tensor& n_h_in, const at::Tensor& h_in) {
  check_gru_cell_operands("gru_update_fwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}},
                          {{n_x_in, "n_x"}, {n_h_in, "n_h"}});
  check_cpu("gru_update_fwd", h_in);
  const at::Tensor g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor n_x = with_hw_merged(n_x_in), n_h = with_hw_merged(n_h_in), h = with_hw_merged(h_in);
  at::Tensor h_new = cell_empty_like(h_in);
  const CellGeometry geo = cell_geometry(h_new);
  const int64_t C = geo.C;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_update_fwd_cpu", [&] {
    for_each_chunk<scalar_t, 5, 1>(
        geo,
        {walk_in<scalar_t>(g_x, geo, C), walk_in<scalar_t>(g_h, geo, C), walk_in<scalar_t>(n_x, geo),
         walk_in<scalar_t>(n_h, geo), walk_in<scalar_t>(h, geo)},
        {walk_out<scalar_t>(h_new, geo)}, false, [](const auto& i, const auto& o, int64_t m) {
          update_fwd_k(i[0], i[1], i[2], i[3], i[4], o[0], m);
        });
  });
  return h_new;
}

std::tuple<at::Tensor, at::Tensor> gru_update_bwd_cpu(const at::Tensor& d_in, const at::Tensor& g_x_in,
                                                      const at::Tensor& g_h_in, const at::Tensor& n_x_in,
                                                      const at::Tensor& n_h_in, const at::Tensor& h_in,
                                                      at::Tensor& d_g) {
  check_gru_cell_operands("gru_update_bwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}, {d_g, "d_g"}},
                          {{d_in, "d_hnew"}, {n_x_in, "n_x"}, {n_h_in, "n_h"}});
  check_cpu("gru_update_bwd", h_in);
  const at::Tensor d = with_hw_merged(d_in), g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor n_x = with_hw_merged(n_x_in), n_h = with_hw_merged(n_h_in), h = with_hw_merged(h_in);
  at::Tensor d_n = cell_empty_like(h_in), d_h = cell_empty_like(h_in);
  at::Tensor d_g_work = inplace_work(d_g);
  const CellGeometry geo = cell_geometry(d_h);
  const int64_t C = geo.C;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_update_bwd_cpu", [&] {
    for_each_chunk<scalar_t, 6, 3>(
        geo,
        {walk_in<scalar_t>(d, geo), walk_in<scalar_t>(g_x, geo, C), walk_in<scalar_t>(g_h, geo, C),
         walk_in<scalar_t>(n_x, geo), walk_in<scalar_t>(n_h, geo), walk_in<scalar_t>(h, geo)},
        {walk_out<scalar_t>(d_g_work, geo, C), walk_out<scalar_t>(d_n, geo), walk_out<scalar_t>(d_h, geo)},
        false, [](const auto& i, const auto& o, int64_t m) {
          update_bwd_k(i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], m);
        });
  });
  finish_inplace(d_g, d_g_work);
  return {d_n, d_h};
}

void gru_reset_bwd_cpu(const at::Tensor& d_in, const at::Tensor& g_x_in, const at::Tensor& g_h_in,
                       const at::Tensor& h_in, at::Tensor& d_g, at::Tensor& d_h) {
  check_gru_cell_operands("gru_reset_bwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}, {d_g, "d_g"}},
                          {{d_in, "d_rh"}, {d_h, "d_h"}});
  check_cpu("gru_reset_bwd", h_in);
  const at::Tensor d = with_hw_merged(d_in), g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor h = with_hw_merged(h_in);
  at::Tensor d_g_work = inplace_work(d_g), d_h_work = inplace_work(d_h);
  const CellGeometry geo = cell_geometry(d_h_work);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_reset_bwd_cpu", [&] {
    for_each_chunk<scalar_t, 4, 2>(
        geo,
        {walk_in<scalar_t>(d, geo), walk_in<scalar_t>(g_x, geo), walk_in<scalar_t>(g_h, geo),
         walk_in<scalar_t>(h, geo)},
        {walk_out<scalar_t>(d_g_work, geo), walk_out<scalar_t>(d_h_work, geo)}, true,
        [](const auto& i, const auto& o, int64_t m) { reset_bwd_k(i[0], i[1], i[2], i[3], o[0], o[1], m); });
  });
  finish_inplace(d_g, d_g_work);
  finish_inplace(d_h, d_h_work);
}

}  // namespace cvg_fast

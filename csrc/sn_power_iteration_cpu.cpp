// Spectral-norm power iteration on CPU (see sn_power_iteration.h for the math).
//
// One pass over W in one parallel region: W's rows are cut into at most kMaxBlocks
// blocks of at least kBlockElems elements (a split fixed by the shape, not by the
// thread count), and at::parallel_for runs the blocks. Within a block, row o is
// dotted with v (t_o, stored into u) and, while it is still in L1/L2, added into the
// block's partial s_b += t_o W[o, :]. After the region, serially: n_t, u /= n_t, the
// partials summed in block order, s /= n_t, v = s / n_s and sigma = s . v. The serial
// tail is O(blocks * I + O), small next to the O * I pass.
//
// Rows go kRows = 4 at a time (v, then s, loaded once per 4 rows). Each row's dot keeps
// kLanes independent fp32 accumulators (fixed order, reduced by a fixed tree), so it
// vectorises without -ffast-math and gives the same bits at any thread count. Norms and sigma are summed in double. Float loops
// are cloned for AVX-512 / AVX2 (cpu_math.h); build flags as for gru_blend_cpu.cpp.

#include "cpu_math.h"
#include "sn_power_iteration.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

namespace cvg_fast {
namespace {

constexpr int64_t kRows = 4;              // rows per step: v and s are loaded once for 4 rows
constexpr int64_t kLanes = 16;             // fp32 accumulators per row: 4 rows x 16 = 4 zmm / 8 ymm
constexpr int64_t kBlockElems = 1 << 16;   // least elements of W per row block
constexpr int64_t kMaxBlocks = 16;         // most row blocks (partials: kMaxBlocks * I floats)

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// t[r] = w[r] . v for the kRows rows w[0..3] (a block's last rows repeat a row pointer:
// every row's dot has the same lanes and order, wherever it sits).
CVG_CPU_CLONES void dot_rows(const float* __restrict w0, const float* __restrict w1,
                             const float* __restrict w2, const float* __restrict w3,
                             const float* __restrict v, int64_t n, float* __restrict t) {
  float a0[kLanes] = {}, a1[kLanes] = {}, a2[kLanes] = {}, a3[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const float vk = v[j + k];
      a0[k] += w0[j + k] * vk;
      a1[k] += w1[j + k] * vk;
      a2[k] += w2[j + k] * vk;
      a3[k] += w3[j + k] * vk;
    }
  }
  for (int64_t k = 0; j + k < n; ++k) {
    const float vk = v[j + k];
    a0[k] += w0[j + k] * vk;
    a1[k] += w1[j + k] * vk;
    a2[k] += w2[j + k] * vk;
    a3[k] += w3[j + k] * vk;
  }
  for (int64_t h = kLanes / 2; h > 0; h /= 2) {
    for (int64_t k = 0; k < h; ++k) {
      a0[k] += a0[k + h];
      a1[k] += a1[k + h];
      a2[k] += a2[k + h];
      a3[k] += a3[k + h];
    }
  }
  t[0] = a0[0];
  t[1] = a1[0];
  t[2] = a2[0];
  t[3] = a3[0];
}

// y += t0 w0 + t1 w1 + t2 w2 + t3 w3, added one row after the other (the same bits as
// four single-row updates).
CVG_CPU_CLONES void axpy_rows(const float* __restrict t, const float* __restrict w0,
                              const float* __restrict w1, const float* __restrict w2,
                              const float* __restrict w3, float* __restrict y, int64_t n) {
  const float t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3];
  for (int64_t j = 0; j < n; ++j) {
    float x = y[j];
    x += t0 * w0[j];
    x += t1 * w1[j];
    x += t2 * w2[j];
    x += t3 * w3[j];
    y[j] = x;
  }
}

CVG_CPU_CLONES void axpy_f32(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// Rows [r0, r1) of W: t_o = W[o] . v into t[o - r0] (each row's dot from dot_rows), and
// with s: s += sum_o t_o W[o] (s zeroed first).
void rows_pass(const float* W, int64_t ldw, const float* V, int64_t I, int64_t r0, int64_t r1,
               float* t, float* s) {
  if (s != nullptr) std::fill(s, s + I, 0.f);
  for (int64_t o = r0; o < r1; o += kRows) {
    const int64_t m = std::min(kRows, r1 - o);
    const float* rw[kRows];
    for (int64_t k = 0; k < kRows; ++k) rw[k] = W + (o + std::min(k, m - 1)) * ldw;
    float tt[kRows];
    dot_rows(rw[0], rw[1], rw[2], rw[3], V, I, tt);
    std::copy(tt, tt + m, t + (o - r0));
    if (s == nullptr) continue;
    if (m == kRows) {
      axpy_rows(tt, rw[0], rw[1], rw[2], rw[3], s, I);
    } else {
      for (int64_t k = 0; k < m; ++k) axpy_f32(tt[k], rw[k], s, I);
    }
  }
}

CVG_CPU_CLONES void add_f32(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += x[j];
}

double sum_sq(const float* x, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * x[i];
  return acc;
}

}  // namespace

at::Tensor sn_power_iteration_cpu(const at::Tensor& w_in, at::Tensor& u, at::Tensor& v, double eps_d,
                                  bool update) {
  check_sn_power_iteration_args(w_in, u, v, eps_d);
  TORCH_CHECK(w_in.device().is_cpu(), "sn_power_iteration: expected CPU tensors, got ",
              w_in.device());
  const at::Tensor w = sn_rows_unit_stride(w_in);
  const int64_t O = w.size(0), I = w.size(1), ldw = sn_row_stride(w);
  at::Tensor sigma = sn_sigma_empty(w);
  float* sigma_p = sigma.mutable_data_ptr<float>();
  if (O == 0 || I == 0) {  // W v = 0 and W^T u = 0: both normalise to 0, sigma = 0
    if (update) {
      u.zero_();
      v.zero_();
    }
    *sigma_p = 0.f;
    return sigma;
  }
  const float eps = static_cast<float>(eps_d);
  const float* W = w.const_data_ptr<float>();
  float* U = u.mutable_data_ptr<float>();
  float* V = v.mutable_data_ptr<float>();
  const int64_t rows = std::max(cdiv(O, kMaxBlocks), cdiv(kBlockElems, I));
  const int64_t nb = cdiv(O, rows);

  if (!update) {  // sigma = sum_o u_o (W v)_o
    std::unique_ptr<double[]> part(new double[nb]);
    at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
      std::unique_ptr<float[]> t(new float[rows]);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * rows, r1 = std::min(O, r0 + rows);
        rows_pass(W, ldw, V, I, r0, r1, t.get(), nullptr);
        double acc = 0;
        for (int64_t o = r0; o < r1; ++o) acc += static_cast<double>(U[o]) * t[o - r0];
        part[b] = acc;
      }
    });
    double sg = 0;
    for (int64_t b = 0; b < nb; ++b) sg += part[b];
    *sigma_p = static_cast<float>(sg);
    return sigma;
  }

  // t = W v into u, partial s_b = sum over block b's rows of t_o W[o, :]
  std::unique_ptr<float[]> part(new float[nb * I]);
  float* P = part.get();
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * rows, r1 = std::min(O, r0 + rows);
      rows_pass(W, ldw, V, I, r0, r1, U + r0, P + b * I);
    }
  });

  // u = t / n_t; W^T u = s / n_t; v = normalize(W^T u); sigma = (W^T u) . v
  const float n_t = std::max(static_cast<float>(std::sqrt(sum_sq(U, O))), eps);
  for (int64_t o = 0; o < O; ++o) U[o] = U[o] / n_t;
  for (int64_t b = 1; b < nb; ++b) add_f32(P + b * I, P, I);
  for (int64_t j = 0; j < I; ++j) P[j] = P[j] / n_t;
  const float n_s = std::max(static_cast<float>(std::sqrt(sum_sq(P, I))), eps);
  double sg = 0;
  for (int64_t j = 0; j < I; ++j) {
    V[j] = P[j] / n_s;
    sg += static_cast<double>(P[j]) * V[j];
  }
  *sigma_p = static_cast<float>(sg);
  return sigma;
}

}  // namespace cvg_fast

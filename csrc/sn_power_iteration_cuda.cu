// Spectral-norm power iteration on CUDA (see sn_power_iteration.h for the math).
//
// Launches:
//   O * I <= kFusedMaxElems (1M): ONE launch, one block of kThreads threads does it all:
//     rows phase (below) over every row, __syncthreads, then the finalize phase.
//   larger W: TWO launches. sn_rows_kernel on nb <= kMaxBlocks blocks (row ranges fixed
//     by the shape), each writing a partial s_b (or a partial sigma), then
//     sn_finalize_kernel on one block. One block alone would read a 19 MB W (1024 x 4608)
//     at one SM's bandwidth; a cooperative grid sync is avoided (not every launch can be
//     co-resident, and it needs the cooperative launch API).
// Rows phase of a block over rows [r0, r1), in tiles of kWarps rows: warp k dots row
//   r + k with v (lanes stride the columns: coalesced; shuffle-xor sum), lane 0 stores
//   t_o into u (update) or adds u_o t_o to its partial sigma (no update). Then, update
//   only, the block's threads walk the columns (thread owns column j, j += kThreads) and
//   add the tile's rows, just read and still in L1/L2, into the block's partial
//   s_b[j] += sum_k t_k W[r + k, j] in global scratch (first tile writes, no memset).
// Finalize phase (one block): n_t from u, u /= n_t; s_j = (sum_b s_b[j]) / n_t stored
//   into v; n_s; v = s / n_s; sigma = s . v. Norms and sigma in double.
// Every sum has a fixed order (shuffle tree, warp order, block order): deterministic
// for a given shape.
//
// Only light headers here (no torch/extension.h, no pybind11): see NOTES.md.

#include "sn_power_iteration.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace cvg_fast {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kFusedMaxElems = int64_t{1} << 20;
constexpr int64_t kMaxBlocks = 32;  // partials: kMaxBlocks * I floats, summed by one block

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Sum of x over the block, returned to every thread; fixed order. buf: kWarps doubles.
__device__ double block_sum(double x, double* buf) {
  x = warp_sum(x);
  __syncthreads();  // buf may still be read by a previous call
  if ((threadIdx.x & 31) == 0) buf[threadIdx.x >> 5] = x;
  __syncthreads();
  double r = 0;
#pragma unroll
  for (int k = 0; k < kWarps; ++k) r += buf[k];
  return r;
}

struct Args {
  const float* w;
  int64_t ldw;   // row stride (columns have unit stride)
  float* u;      // (O,): read (no update) or t, then u (update)
  float* v;      // (I,)
  float* s_part;    // (nb, I) partial s per block (update)
  double* sig_part;  // (nb,) partial sigma per block (no update)
  float* sigma;
  int64_t O, I, rows;  // rows per block
  int64_t nb;
  float eps;
  bool update;
};

// The rows phase of block b (see the file comment). Returns this block's partial sigma
// (no update; valid in every thread), 0 with update.
__device__ double rows_phase(const Args& a, int64_t b, float* t_tile, double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t r0 = b * a.rows, r1 = r0 + a.rows < a.O ? r0 + a.rows : a.O;
  float* s = a.update ? a.s_part + b * a.I : nullptr;
  double sig = 0;
  for (int64_t r = r0; r < r1; r += kWarps) {
    const int64_t o = r + warp;
    if (o < r1) {
      const float* row = a.w + o * a.ldw;
      float acc = 0.f;
#pragma unroll 4
      for (int64_t j = lane; j < a.I; j += 32) acc += __ldg(row + j) * a.v[j];
      acc = warp_sum(acc);
      if (lane == 0) {
        if (a.update) {
          t_tile[warp] = acc;
          a.u[o] = acc;
        } else {
          sig += static_cast<double>(a.u[o]) * acc;
        }
      }
    }
    if (a.update) {
      __syncthreads();
      const int n = r1 - r < kWarps ? static_cast<int>(r1 - r) : kWarps;
      const float* tile = a.w + r * a.ldw;
      for (int64_t j = threadIdx.x; j < a.I; j += kThreads) {
        float acc = r == r0 ? 0.f : s[j];
        for (int k = 0; k < n; ++k) acc += t_tile[k] * __ldg(tile + k * a.ldw + j);
        s[j] = acc;
      }
      __syncthreads();  // t_tile is rewritten by the next tile
    }
  }
  return a.update ? 0.0 : block_sum(sig, red);
}

// The finalize phase, one block (see the file comment).
__device__ void finalize_update(const Args& a, double* red) {
  double tt = 0;
  for (int64_t o = threadIdx.x; o < a.O; o += kThreads) tt += static_cast<double>(a.u[o]) * a.u[o];
  const float n_t = fmaxf(static_cast<float>(sqrt(block_sum(tt, red))), a.eps);
  for (int64_t o = threadIdx.x; o < a.O; o += kThreads) a.u[o] = a.u[o] / n_t;
  double ss = 0;
  for (int64_t j = threadIdx.x; j < a.I; j += kThreads) {
    float s = 0.f;
    for (int64_t b = 0; b < a.nb; ++b) s += a.s_part[b * a.I + j];
    s = s / n_t;
    a.v[j] = s;
    ss += static_cast<double>(s) * s;
  }
  const float n_s = fmaxf(static_cast<float>(sqrt(block_sum(ss, red))), a.eps);
  double sg = 0;
  for (int64_t j = threadIdx.x; j < a.I; j += kThreads) {  // same j per thread as above
    const float s = a.v[j];
    const float vj = s / n_s;
    a.v[j] = vj;
    sg += static_cast<double>(s) * vj;
  }
  sg = block_sum(sg, red);
  if (threadIdx.x == 0) *a.sigma = static_cast<float>(sg);
}

// One block per row range; with gridDim.x == 1 (fused) it finalizes too.
__global__ void __launch_bounds__(kThreads) sn_rows_kernel(Args a, bool fused) {
  __shared__ float t_tile[kWarps];
  __shared__ double red[kWarps];
  const double sig = rows_phase(a, blockIdx.x, t_tile, red);
  if (!a.update) {
    if (threadIdx.x == 0) {
      if (fused) {
        *a.sigma = static_cast<float>(sig);
      } else {
        a.sig_part[blockIdx.x] = sig;
      }
    }
    return;
  }
  if (fused) {
    __syncthreads();  // u (t) and s_part written by other threads of this block
    finalize_update(a, red);
  }
}

__global__ void __launch_bounds__(kThreads) sn_finalize_kernel(Args a) {
  __shared__ double red[kWarps];
  if (a.update) {
    finalize_update(a, red);
  } else if (threadIdx.x == 0) {
    double sg = 0;
    for (int64_t b = 0; b < a.nb; ++b) sg += a.sig_part[b];
    *a.sigma = static_cast<float>(sg);
  }
}

int64_t cdiv(int64_t x, int64_t y) { return (x + y - 1) / y; }

}  // namespace

at::Tensor sn_power_iteration_cuda(const at::Tensor& w_in, at::Tensor& u, at::Tensor& v, double eps,
                                   bool update) {
  check_sn_power_iteration_args(w_in, u, v, eps);
  TORCH_CHECK(w_in.device().is_cuda(), "sn_power_iteration: expected CUDA tensors, got ",
              w_in.device());
  const c10::cuda::CUDAGuard guard(w_in.device());
  const at::Tensor w = sn_rows_unit_stride(w_in);
  const int64_t O = w.size(0), I = w.size(1);
  at::Tensor sigma = sn_sigma_empty(w);
  if (O == 0 || I == 0) {  // W v = 0 and W^T u = 0: both normalise to 0, sigma = 0
    if (update) {
      u.zero_();
      v.zero_();
    }
    sigma.zero_();
    return sigma;
  }
  const bool fused = O * I <= kFusedMaxElems;
  const int64_t rows = fused ? O : std::max<int64_t>(cdiv(O, kMaxBlocks), kWarps);
  const int64_t nb = cdiv(O, rows);
  // scratch: partial s per block (update) or partial sigma per block (no update)
  at::Tensor scratch = update ? at::empty({nb, I}, w.options())
                              : at::empty({nb}, w.options().dtype(at::kDouble));
  Args a;
  a.w = w.const_data_ptr<float>();
  a.ldw = sn_row_stride(w);
  a.u = u.mutable_data_ptr<float>();
  a.v = v.mutable_data_ptr<float>();
  a.s_part = update ? scratch.mutable_data_ptr<float>() : nullptr;
  a.sig_part = update ? nullptr : scratch.mutable_data_ptr<double>();
  a.sigma = sigma.mutable_data_ptr<float>();
  a.O = O;
  a.I = I;
  a.rows = rows;
  a.nb = nb;
  a.eps = static_cast<float>(eps);
  a.update = update;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  sn_rows_kernel<<<static_cast<unsigned int>(nb), kThreads, 0, stream>>>(a, fused);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (!fused) {
    sn_finalize_kernel<<<1, kThreads, 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return sigma;
}

}  // namespace cvg_fast

// ConvGRU cell stages on CUDA (see gru_cell.h for the math and the layout rules).
//
// One grid-stride loop per op over the (n, c, s) index space; each operand is
// addressed with its own three strides, so channel halves of g and time slices
// need no copies. The linear index runs fastest over the output's unit-stride
// index (c for channels_last, else s) so that the stores and the loads of
// like-laid-out operands coalesce. Math in fp32 (fp64 for double) with the
// accurate expf / tanhf (memory bound: fast intrinsics would buy only error),
// the safe forms 1 - z = sigmoid(-pre), 1 - n^2 = 4e / (1 + e)^2, e = exp(-2|pre|).
//
// Only light headers here (no torch/extension.h, no pybind11): see NOTES.md.

#include "gru_cell.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace cvg_fast {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // beyond this the kernels loop over the grid

__device__ __forceinline__ float sigmoid_acc(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ double sigmoid_acc(double x) { return 1.0 / (1.0 + exp(-x)); }
__device__ __forceinline__ float tanh_acc(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_acc(double x) { return tanh(x); }
__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float abs_acc(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_acc(double x) { return fabs(x); }

// 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|) in (0, 1]: no cancellation.
template <typename T>
__device__ __forceinline__ T sech2(T x) {
  const T e = exp_acc(T(-2) * abs_acc(x));
  const T d = T(1) + e;
  return T(4) * e / (d * d);
}

// A pointer and its (n, c, s) strides.
template <typename T>
struct Operand {
  T* p;
  CellStrides st;
};

template <typename T>
__device__ __forceinline__ T& at3(const Operand<T>& o, int64_t n, int64_t c, int64_t s) {
  return o.p[n * o.st.n + c * o.st.c + s * o.st.s];
}

template <typename T>
__device__ __forceinline__ at::opmath_type<std::remove_const_t<T>> ld(const Operand<T>& o, int64_t n,
                                                                       int64_t c, int64_t s) {
  return static_cast<at::opmath_type<std::remove_const_t<T>>>(at3(o, n, c, s));
}

// Linear index -> (n, c, s), fastest over c when c_inner, else over s.
__device__ __forceinline__ void split(int64_t i, const CellGeometry& g, int64_t& n, int64_t& c,
                                      int64_t& s) {
  if (g.c_inner) {
    c = i % g.C;
    i /= g.C;
    s = i % g.S;
    n = i / g.S;
  } else {
    s = i % g.S;
    i /= g.S;
    c = i % g.C;
    n = i / g.C;
  }
}

#define CVG_GRID_STRIDE_LOOP(i, total)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(gridDim.x) * kThreads)

// g operands point at their r-half (channel 0) or z-half (channel C) already.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    reset_fwd_kernel(Operand<const scalar_t> gxr, Operand<const scalar_t> ghr, Operand<const scalar_t> h,
                     Operand<scalar_t> rh, CellGeometry g) {
  using acc_t = at::opmath_type<scalar_t>;
  CVG_GRID_STRIDE_LOOP(i, g.N * g.C * g.S) {
    int64_t n, c, s;
    split(i, g, n, c, s);
    const acc_t r = sigmoid_acc(ld(gxr, n, c, s) + ld(ghr, n, c, s));
    at3(rh, n, c, s) = static_cast<scalar_t>(r * ld(h, n, c, s));
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    update_fwd_kernel(Operand<const scalar_t> gxz, Operand<const scalar_t> ghz, Operand<const scalar_t> nx,
                      Operand<const scalar_t> nh, Operand<const scalar_t> h, Operand<scalar_t> out,
                      CellGeometry g) {
  using acc_t = at::opmath_type<scalar_t>;
  CVG_GRID_STRIDE_LOOP(i, g.N * g.C * g.S) {
    int64_t n, c, s;
    split(i, g, n, c, s);
    const acc_t z = sigmoid_acc(ld(gxz, n, c, s) + ld(ghz, n, c, s));
    const acc_t nn = tanh_acc(ld(nx, n, c, s) + ld(nh, n, c, s));
    const acc_t hv = ld(h, n, c, s);
    at3(out, n, c, s) = static_cast<scalar_t>(hv + z * (nn - hv));
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    update_bwd_kernel(Operand<const scalar_t> d, Operand<const scalar_t> gxz, Operand<const scalar_t> ghz,
                      Operand<const scalar_t> nx, Operand<const scalar_t> nh, Operand<const scalar_t> h,
                      Operand<scalar_t> dgz, Operand<scalar_t> dn, Operand<scalar_t> dh, CellGeometry g) {
  using acc_t = at::opmath_type<scalar_t>;
  CVG_GRID_STRIDE_LOOP(i, g.N * g.C * g.S) {
    int64_t n, c, s;
    split(i, g, n, c, s);
    const acc_t dv = ld(d, n, c, s), hv = ld(h, n, c, s);
    const acc_t pre_z = ld(gxz, n, c, s) + ld(ghz, n, c, s);
    const acc_t pre_n = ld(nx, n, c, s) + ld(nh, n, c, s);
    const acc_t z = sigmoid_acc(pre_z), one_minus_z = sigmoid_acc(-pre_z);
    const acc_t nn = tanh_acc(pre_n);
    at3(dgz, n, c, s) = static_cast<scalar_t>(dv * (nn - hv) * z * one_minus_z);
    at3(dn, n, c, s) = static_cast<scalar_t>(dv * z * sech2(pre_n));
    at3(dh, n, c, s) = static_cast<scalar_t>(dv * one_minus_z);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    reset_bwd_kernel(Operand<const scalar_t> d, Operand<const scalar_t> gxr, Operand<const scalar_t> ghr,
                     Operand<const scalar_t> h, Operand<scalar_t> dgr, Operand<scalar_t> dh,
                     CellGeometry g) {
  using acc_t = at::opmath_type<scalar_t>;
  CVG_GRID_STRIDE_LOOP(i, g.N * g.C * g.S) {
    int64_t n, c, s;
    split(i, g, n, c, s);
    const acc_t dv = ld(d, n, c, s);
    const acc_t pre_r = ld(gxr, n, c, s) + ld(ghr, n, c, s);
    const acc_t r = sigmoid_acc(pre_r);
    at3(dgr, n, c, s) = static_cast<scalar_t>(dv * ld(h, n, c, s) * r * sigmoid_acc(-pre_r));
    scalar_t& dhv = at3(dh, n, c, s);
    dhv = static_cast<scalar_t>(static_cast<acc_t>(dhv) + dv * r);
  }
}

#undef CVG_GRID_STRIDE_LOOP

// The operand `t` (H, W merged) from channel c0 on.
template <typename scalar_t>
Operand<const scalar_t> in(const at::Tensor& t, int64_t c0 = 0) {
  const CellStrides st = cell_strides(t);
  return {t.const_data_ptr<scalar_t>() + c0 * st.c, st};
}

template <typename scalar_t>
Operand<scalar_t> out(const at::Tensor& t, int64_t c0 = 0) {
  const CellStrides st = cell_strides(t);
  return {t.mutable_data_ptr<scalar_t>() + c0 * st.c, st};
}

unsigned int num_blocks(const CellGeometry& g) {
  const int64_t n = g.N * g.C * g.S;
  return static_cast<unsigned int>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks));
}

void check_cuda(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cuda(), op, ": expected CUDA tensors, got ", t.device());
}

void finish_inplace(at::Tensor& t, const at::Tensor& work) {
  if (!work.is_same(t)) t.copy_(work);
}

}  // namespace

at::Tensor gru_reset_fwd_cuda(const at::Tensor& g_x_in, const at::Tensor& g_h_in, const at::Tensor& h_in) {
  check_gru_cell_operands("gru_reset_fwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}}, {});
  check_cuda("gru_reset_fwd", h_in);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in), h = with_hw_merged(h_in);
  at::Tensor rh = cell_empty_like(h_in);
  const CellGeometry geo = cell_geometry(rh);
  if (rh.numel() == 0) return rh;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_reset_fwd_cuda", [&] {
    reset_fwd_kernel<scalar_t><<<num_blocks(geo), kThreads, 0, stream>>>(
        in<scalar_t>(g_x), in<scalar_t>(g_h), in<scalar_t>(h), out<scalar_t>(rh), geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return rh;
}

at::Tensor gru_update_fwd_cuda(const at::Tensor& g_x_in, const at::Tensor& g_h_in, const at::Tensor& n_x_in,
                               const at::Tensor& n_h_in, const at::Tensor& h_in) {
  check_gru_cell_operands("gru_update_fwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}},
                          {{n_x_in, "n_x"}, {n_h_in, "n_h"}});
  check_cuda("gru_update_fwd", h_in);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor n_x = with_hw_merged(n_x_in), n_h = with_hw_merged(n_h_in), h = with_hw_merged(h_in);
  at::Tensor h_new = cell_empty_like(h_in);
  const CellGeometry geo = cell_geometry(h_new);
  if (h_new.numel() == 0) return h_new;
  const int64_t C = geo.C;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_update_fwd_cuda", [&] {
    update_fwd_kernel<scalar_t><<<num_blocks(geo), kThreads, 0, stream>>>(
        in<scalar_t>(g_x, C), in<scalar_t>(g_h, C), in<scalar_t>(n_x), in<scalar_t>(n_h), in<scalar_t>(h),
        out<scalar_t>(h_new), geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return h_new;
}

std::tuple<at::Tensor, at::Tensor> gru_update_bwd_cuda(const at::Tensor& d_in, const at::Tensor& g_x_in,
                                                       const at::Tensor& g_h_in, const at::Tensor& n_x_in,
                                                       const at::Tensor& n_h_in, const at::Tensor& h_in,
                                                       at::Tensor& d_g) {
  check_gru_cell_operands("gru_update_bwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}, {d_g, "d_g"}},
                          {{d_in, "d_hnew"}, {n_x_in, "n_x"}, {n_h_in, "n_h"}});
  check_cuda("gru_update_bwd", h_in);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor d = with_hw_merged(d_in), g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor n_x = with_hw_merged(n_x_in), n_h = with_hw_merged(n_h_in), h = with_hw_merged(h_in);
  at::Tensor d_n = cell_empty_like(h_in), d_h = cell_empty_like(h_in);
  if (d_h.numel() == 0) return {d_n, d_h};
  at::Tensor d_g_work = with_hw_merged(d_g);  // copied back below when H, W do not merge
  const CellGeometry geo = cell_geometry(d_h);
  const int64_t C = geo.C;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_update_bwd_cuda", [&] {
    update_bwd_kernel<scalar_t><<<num_blocks(geo), kThreads, 0, stream>>>(
        in<scalar_t>(d), in<scalar_t>(g_x, C), in<scalar_t>(g_h, C), in<scalar_t>(n_x), in<scalar_t>(n_h),
        in<scalar_t>(h), out<scalar_t>(d_g_work, C), out<scalar_t>(d_n), out<scalar_t>(d_h), geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  finish_inplace(d_g, d_g_work);
  return {d_n, d_h};
}

void gru_reset_bwd_cuda(const at::Tensor& d_in, const at::Tensor& g_x_in, const at::Tensor& g_h_in,
                        const at::Tensor& h_in, at::Tensor& d_g, at::Tensor& d_h) {
  check_gru_cell_operands("gru_reset_bwd", h_in, {{g_x_in, "g_x"}, {g_h_in, "g_h"}, {d_g, "d_g"}},
                          {{d_in, "d_rh"}, {d_h, "d_h"}});
  check_cuda("gru_reset_bwd", h_in);
  const c10::cuda::CUDAGuard guard(h_in.device());
  if (d_h.numel() == 0) return;
  const at::Tensor d = with_hw_merged(d_in), g_x = with_hw_merged(g_x_in), g_h = with_hw_merged(g_h_in);
  const at::Tensor h = with_hw_merged(h_in);
  at::Tensor d_g_work = with_hw_merged(d_g), d_h_work = with_hw_merged(d_h);  // copied back below
  const CellGeometry geo = cell_geometry(d_h_work);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_reset_bwd_cuda", [&] {
    reset_bwd_kernel<scalar_t><<<num_blocks(geo), kThreads, 0, stream>>>(
        in<scalar_t>(d), in<scalar_t>(g_x), in<scalar_t>(g_h), in<scalar_t>(h), out<scalar_t>(d_g_work),
        out<scalar_t>(d_h_work), geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  finish_inplace(d_g, d_g_work);
  finish_inplace(d_h, d_h_work);
}

}  // namespace cvg_fast

// pyramid_down on CUDA: one launch per level, one thread per output pixel.
//
// A thread of level k computes output (p, i, j) from the <= 4 x 4 window of level k - 1
// around (2i, 2j): each window row filtered horizontally (taps [1, 3, 3, 1] / 8, clipped
// and renormalised at the borders), then the rows combined vertically -- the same order
// and weights as pyramid_cpu.cpp. Level 1 reads x with its strides and applies
// scale / shift; level k + 1 reads level k's unrounded values: the output itself when
// out_dtype is the math type, else an fp32 (fp64) scratch tensor written beside the
// cast output. One launch per level (rather than one fused launch per plane) because
// levels are data-dependent on neighbouring outputs across thread blocks; the extra
// traffic is only the (1/4 + 1/16 + ...) sized intermediate levels, which stay in L2
// for the frame sizes used here. Math in fp32 (fp64 when x and out_dtype are float64).
//
// Only light headers here (no torch/extension.h, no pybind11): see NOTES.md.

#include "pyramid.h"

#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace cvg_fast {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // beyond this the kernel loops over the grid

// Source of a level: element (p = b * C + c, y, x) at b * sB + c * sC + y * sH + x * sW.
template <typename I>
struct Source {
  const I* data;
  int64_t sB, sC, sH, sW;
};

// Input indices [lo, hi) of output i on an axis of n inputs, and their weights (raw taps
// 1, 3, 3, 1 on [2i - 1, 2i + 2] divided by the sum of the valid ones).
template <typename T>
__device__ __forceinline__ int64_t taps(int64_t i, int64_t n, T* w) {
  const int64_t lo = max(2 * i - 1, int64_t{0}), hi = min(2 * i + 3, n);
  T total = 0;
  for (int64_t q = lo; q < hi; ++q) {
    const int64_t k = q - (2 * i - 1);
    total += (k == 0 || k == 3) ? T(1) : T(3);
  }
  for (int64_t q = lo; q < hi; ++q) {
    const int64_t k = q - (2 * i - 1);
    w[q - lo] = ((k == 0 || k == 3) ? T(1) : T(3)) / total;
  }
  return lo;
}

// Level (Hs x Ws planes of `src`) -> out (and keep, when not null): contiguous
// (P, Hs / 2, Ws / 2). value(src) = T(src) * scale + shift (scale 1, shift 0 past level 1,
// where that is exact).
template <typename I, typename T, typename O>
__global__ void __launch_bounds__(kThreads)
    pyramid_level_kernel(Source<I> src, int64_t C, int64_t Hs, int64_t Ws, T scale, T shift,
                         O* __restrict__ out, T* __restrict__ keep, int64_t n_out) {
  const int64_t Ho = Hs / 2, Wo = Ws / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; idx < n_out;
       idx += stride) {
    const int64_t j = idx % Wo, i = (idx / Wo) % Ho, p = idx / (Wo * Ho);
    const I* plane = src.data + (p / C) * src.sB + (p % C) * src.sC;
    T wy[4], wx[4];
    const int64_t y0 = taps<T>(i, Hs, wy), x0 = taps<T>(j, Ws, wx);
    const int ny = static_cast<int>(min(2 * i + 3, Hs) - y0);
    const int nx = static_cast<int>(min(2 * j + 3, Ws) - x0);
    T acc = 0;
    for (int r = 0; r < ny; ++r) {
      const I* row = plane + (y0 + r) * src.sH;
      T h = 0;
      for (int q = 0; q < nx; ++q) {
        h += wx[q] * (static_cast<T>(row[(x0 + q) * src.sW]) * scale + shift);
      }
      acc += wy[r] * h;
    }
    out[idx] = static_cast<O>(acc);
    if (keep != nullptr) keep[idx] = acc;
  }
}

unsigned int num_blocks(int64_t n) {
  return static_cast<unsigned int>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks));
}

template <typename I, typename T, typename O>
void pyramid_down_cuda_impl(const at::Tensor& x, int64_t levels, double scale, double shift,
                            std::vector<at::Tensor>& outs) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t C = x.size(1);
  int64_t Hs = x.size(2), Ws = x.size(3);
  const Source<I> src0{x.const_data_ptr<I>(), x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  at::Tensor prev;  // level k's T values: the output (O == T) or a scratch tensor
  for (int64_t k = 0; k < levels; ++k) {
    at::Tensor& out = outs[k];
    at::Tensor keep;
    if (!std::is_same_v<O, T> && k + 1 < levels) {
      keep = at::empty(out.sizes(), out.options().dtype(c10::CppTypeToScalarType<T>::value));
    }
    T* keep_ptr = keep.defined() ? keep.mutable_data_ptr<T>() : nullptr;
    const int64_t n_out = out.numel();
    if (k == 0) {
      pyramid_level_kernel<I, T, O><<<num_blocks(n_out), kThreads, 0, stream>>>(
          src0, C, Hs, Ws, static_cast<T>(scale), static_cast<T>(shift), out.mutable_data_ptr<O>(),
          keep_ptr, n_out);
    } else {
      const Source<T> src{prev.const_data_ptr<T>(), C * Hs * Ws, Hs * Ws, Ws, 1};
      pyramid_level_kernel<T, T, O><<<num_blocks(n_out), kThreads, 0, stream>>>(
          src, C, Hs, Ws, T(1), T(0), out.mutable_data_ptr<O>(), keep_ptr, n_out);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    prev = std::is_same_v<O, T> ? out : keep;
    Hs /= 2;
    Ws /= 2;
  }
}

}  // namespace

std::vector<at::Tensor> pyramid_down_cuda(const at::Tensor& x, int64_t levels, double scale,
                                          double shift, at::ScalarType out_dtype) {
  check_pyramid_args(x, levels, out_dtype);
  TORCH_CHECK(x.device().is_cuda(), "pyramid_down: expected a CUDA tensor, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  std::vector<at::Tensor> outs = pyramid_empty_outputs(x, levels, out_dtype);
  if (x.numel() == 0) return outs;
  dispatch_pyramid_types(x.scalar_type(), out_dtype, [&](auto in_tag, auto math_tag, auto out_tag) {
    using I = typename decltype(in_tag)::type;
    using T = typename decltype(math_tag)::type;
    using O = typename decltype(out_tag)::type;
    pyramid_down_cuda_impl<I, T, O>(x, levels, scale, shift, outs);
  });
  return outs;
}

}  // namespace cvg_fast

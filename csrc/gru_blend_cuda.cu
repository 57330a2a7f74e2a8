// gru_blend on CUDA: one memory-bound pass for forward (3 loads, 1 store per
// element) and one for backward (4 loads, 3 stores; z and n are recomputed
// rather than saved). Same formulas as gru_blend_cpu.cpp (1 - z and 1 - n * n
// in their cancellation-free forms), math in fp32 (fp64 for double) with the
// accurate expf / tanhf: the kernel is bound by memory, so the fast intrinsics
// would buy precision loss and no speed.
//
// Each thread moves 16 bytes per operand (float4-sized packs) when every
// pointer is 16-byte aligned; otherwise it falls back to one element per thread.
//
// Only light headers here (no torch/extension.h, no pybind11): see NOTES.md.

#include "ops.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace cvg_fast {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // beyond this the kernels loop over the grid
constexpr int kPackBytes = 16;

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

template <typename T>
__device__ __forceinline__ T blend(T h, T z, T n) {
  return h + z * (n - h);
}

// The gradients from g, h and the pre-activations; 1 - z is sigmoid(-z_pre).
template <typename T>
__device__ __forceinline__ void blend_grads(T g, T h, T z_pre, T n_pre, T& dh, T& dz, T& dn) {
  const T z = sigmoid_acc(z_pre), one_minus_z = sigmoid_acc(-z_pre), n = tanh_acc(n_pre);
  dh = g * one_minus_z;
  dz = g * (n - h) * z * one_minus_z;
  dn = g * z * sech2(n_pre);
}

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <int VEC, typename T>
__device__ __forceinline__ Pack<T, VEC> load(const T* p) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}

template <int VEC, typename T>
__device__ __forceinline__ void store(T* p, const Pack<T, VEC>& v) {
  *reinterpret_cast<Pack<T, VEC>*>(p) = v;
}

// Thread t handles elements [VEC * t, VEC * t + VEC) of each grid-sized stride.
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    gru_blend_fwd_kernel(const scalar_t* __restrict__ h, const scalar_t* __restrict__ zp,
                         const scalar_t* __restrict__ np, scalar_t* __restrict__ out, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads * VEC;
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * VEC; base < n;
       base += stride) {
    if (base + VEC <= n) {
      const auto hv = load<VEC>(h + base), zv = load<VEC>(zp + base), nv = load<VEC>(np + base);
      Pack<scalar_t, VEC> ov;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        ov.v[j] = static_cast<scalar_t>(blend<acc_t>(hv.v[j], sigmoid_acc(acc_t(zv.v[j])),
                                                     tanh_acc(acc_t(nv.v[j]))));
      }
      store<VEC>(out + base, ov);
    } else {
      for (int64_t i = base; i < n; ++i) {
        out[i] = static_cast<scalar_t>(
            blend<acc_t>(h[i], sigmoid_acc(acc_t(zp[i])), tanh_acc(acc_t(np[i]))));
      }
    }
  }
}

template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    gru_blend_bwd_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ h,
                         const scalar_t* __restrict__ zp, const scalar_t* __restrict__ np,
                         scalar_t* __restrict__ dh, scalar_t* __restrict__ dz,
                         scalar_t* __restrict__ dn, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads * VEC;
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * VEC; base < n;
       base += stride) {
    if (base + VEC <= n) {
      const auto gv = load<VEC>(g + base), hv = load<VEC>(h + base);
      const auto zv = load<VEC>(zp + base), nv = load<VEC>(np + base);
      Pack<scalar_t, VEC> dhv, dzv, dnv;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        acc_t a, b, c;
        blend_grads<acc_t>(gv.v[j], hv.v[j], zv.v[j], nv.v[j], a, b, c);
        dhv.v[j] = static_cast<scalar_t>(a);
        dzv.v[j] = static_cast<scalar_t>(b);
        dnv.v[j] = static_cast<scalar_t>(c);
      }
      store<VEC>(dh + base, dhv);
      store<VEC>(dz + base, dzv);
      store<VEC>(dn + base, dnv);
    } else {
      for (int64_t i = base; i < n; ++i) {
        acc_t a, b, c;
        blend_grads<acc_t>(g[i], h[i], zp[i], np[i], a, b, c);
        dh[i] = static_cast<scalar_t>(a);
        dz[i] = static_cast<scalar_t>(b);
        dn[i] = static_cast<scalar_t>(c);
      }
    }
  }
}

bool all_aligned(std::initializer_list<const void*> ptrs) {
  return std::all_of(ptrs.begin(), ptrs.end(), [](const void* p) {
    return reinterpret_cast<std::uintptr_t>(p) % kPackBytes == 0;
  });
}

unsigned int num_blocks(int64_t n, int vec) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * vec;
  return static_cast<unsigned int>(std::min((n + per_block - 1) / per_block, kMaxBlocks));
}

void check_cuda(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cuda(), op, ": expected CUDA tensors, got ", t.device());
}

}  // namespace

at::Tensor gru_blend_fwd_cuda(const at::Tensor& h_in, const at::Tensor& z_in, const at::Tensor& n_in) {
  check_elementwise_operands<3>("gru_blend_fwd", {h_in, z_in, n_in}, {"h", "z_pre", "n_pre"});
  check_cuda("gru_blend_fwd", h_in);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const auto ops = with_common_dense_layout<3>({h_in, z_in, n_in});
  const at::Tensor &h = ops[0], &zp = ops[1], &np = ops[2];
  at::Tensor out = at::empty_like(h);
  const int64_t n = h.numel();
  if (n == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_blend_fwd_cuda", [&] {
    constexpr int kVec = kPackBytes / sizeof(scalar_t);
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    const scalar_t* zpp = zp.const_data_ptr<scalar_t>();
    const scalar_t* npp = np.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    if (all_aligned({hp, zpp, npp, op})) {
      gru_blend_fwd_kernel<scalar_t, kVec>
          <<<num_blocks(n, kVec), kThreads, 0, stream>>>(hp, zpp, npp, op, n);
    } else {
      gru_blend_fwd_kernel<scalar_t, 1><<<num_blocks(n, 1), kThreads, 0, stream>>>(hp, zpp, npp, op, n);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_blend_bwd_cuda(
    const at::Tensor& g_in, const at::Tensor& h_in, const at::Tensor& z_in, const at::Tensor& n_in) {
  check_elementwise_operands<4>("gru_blend_bwd", {g_in, h_in, z_in, n_in},
                                {"grad", "h", "z_pre", "n_pre"});
  check_cuda("gru_blend_bwd", g_in);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const auto ops = with_common_dense_layout<4>({g_in, h_in, z_in, n_in});
  const at::Tensor &g = ops[0], &h = ops[1], &zp = ops[2], &np = ops[3];
  at::Tensor dh = at::empty_like(h), dz = at::empty_like(h), dn = at::empty_like(h);
  const int64_t n = h.numel();
  if (n == 0) return {dh, dz, dn};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "gru_blend_bwd_cuda", [&] {
    constexpr int kVec = kPackBytes / sizeof(scalar_t);
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    const scalar_t* zpp = zp.const_data_ptr<scalar_t>();
    const scalar_t* npp = np.const_data_ptr<scalar_t>();
    scalar_t* dhp = dh.mutable_data_ptr<scalar_t>();
    scalar_t* dzp = dz.mutable_data_ptr<scalar_t>();
    scalar_t* dnp = dn.mutable_data_ptr<scalar_t>();
    if (all_aligned({gp, hp, zpp, npp, dhp, dzp, dnp})) {
      gru_blend_bwd_kernel<scalar_t, kVec>
          <<<num_blocks(n, kVec), kThreads, 0, stream>>>(gp, hp, zpp, npp, dhp, dzp, dnp, n);
    } else {
      gru_blend_bwd_kernel<scalar_t, 1>
          <<<num_blocks(n, 1), kThreads, 0, stream>>>(gp, hp, zpp, npp, dhp, dzp, dnp, n);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dh, dz, dn};
}

}  // namespace cvg_fast

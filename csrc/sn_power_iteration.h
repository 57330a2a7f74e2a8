// cvg_fast spectral-norm power iteration: one fused op per layer and training step.
//
//   sn_power_iteration(w, u, v, eps, update) -> sigma
//     w: (O, I) float32, the flattened weight (any strides; a non-unit column stride
//        is copied to contiguous first), u: (O,), v: (I,) contiguous float32 buffers.
//     update: one power iteration in place, as cvg_fast/nn/spectral_norm.py does it:
//        u <- normalize(W v),  v <- normalize(W^T u),  normalize(a) = a / max(||a||, eps)
//     returns sigma = u . (W v) (after the update) as a 0-dim float32 tensor.
//
// Every backend reads W once (from memory) per call:
//   t = W v row by row; right after row o's dot, the row (still in cache) is added
//   into s += t_o W[o, :]. Then u = t / n_t with n_t = max(||t||, eps), and
//   W^T u = s / n_t, so v = normalize(s / n_t). With update, sigma is computed as
//   (W^T u) . v, which equals u . (W v) exactly in real arithmetic and has no
//   cancellation (every term s_j v_j = s_j^2 / n_s >= 0): no third pass over W.
//   Without update, sigma = sum_o u_o (W v)_o, one pass.
// Sums over rows of W (s and the norms) are split into row blocks fixed by the shape
// alone and added in a fixed order: the results do not depend on the thread count.
// Norms and sigma are accumulated in double; dots and s in fp32.
//
// Kept light (ATen/core/Tensor.h) so that nvcc can include it too.
#pragma once

#include "ops.h"

#include <ATen/ops/empty.h>

#include <cstdint>

namespace cvg_fast {

at::Tensor sn_power_iteration_cpu(const at::Tensor& w, at::Tensor& u, at::Tensor& v, double eps,
                                  bool update);

#ifdef WITH_CUDA
at::Tensor sn_power_iteration_cuda(const at::Tensor& w, at::Tensor& u, at::Tensor& v, double eps,
                                   bool update);
#endif

// Checks shared by every backend (and the Meta kernel): w is 2D (O, I), u is (O,), v is
// (I,), all float32 on one device, u and v contiguous, eps >= 0.
inline void check_sn_power_iteration_args(const at::Tensor& w, const at::Tensor& u,
                                          const at::Tensor& v, double eps) {
  constexpr const char* op = "sn_power_iteration";
  TORCH_CHECK(w.dim() == 2, op, ": w must be 2D (O, I) (flatten(1) a conv weight), got shape ",
              w.sizes());
  const auto check_f32 = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ",
                t.scalar_type());
    TORCH_CHECK(t.device() == w.device(), op, ": ", name, " is on ", t.device(), " but w is on ",
                w.device());
  };
  check_f32(w, "w");
  check_f32(u, "u");
  check_f32(v, "v");
  TORCH_CHECK(u.dim() == 1 && u.size(0) == w.size(0), op, ": u has shape ", u.sizes(),
              " but w is (O, I) = ", w.sizes(), ": expected (", w.size(0), ",)");
  TORCH_CHECK(v.dim() == 1 && v.size(0) == w.size(1), op, ": v has shape ", v.sizes(),
              " but w is (O, I) = ", w.sizes(), ": expected (", w.size(1), ",)");
  TORCH_CHECK(u.is_contiguous() && v.is_contiguous(), op, ": u and v must be contiguous");
  TORCH_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
}

// The 0-dim float32 sigma on w's device.
inline at::Tensor sn_sigma_empty(const at::Tensor& w) {
  return at::empty({}, w.options().dtype(at::kFloat));
}

// w itself when its columns have unit stride (rows may have any stride), else a contiguous copy.
inline at::Tensor sn_rows_unit_stride(const at::Tensor& w) {
  return (w.stride(1) == 1 || w.size(1) <= 1) ? w : w.contiguous();
}

// The row stride to walk w with once sn_rows_unit_stride() has been applied.
inline int64_t sn_row_stride(const at::Tensor& w) {
  return w.size(0) <= 1 ? w.size(1) : w.stride(0);
}

}  // namespace cvg_fast

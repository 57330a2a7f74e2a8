// cvg_fast C++/CUDA ops: declarations and the input checks every backend shares.
//
// Kept light (ATen/core/Tensor.h only) so that nvcc can include it too: the
// .cu files never see torch/extension.h or pybind11 (compile time, see NOTES.md).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstddef>
#include <tuple>

namespace cvg_fast {

// gru_blend: h_new = (1 - sigmoid(z_pre)) * h + sigmoid(z_pre) * tanh(n_pre).
// h, z_pre, n_pre: one shape (any rank), one floating dtype, one device.
// Math in fp32 (fp64 for double inputs); the output has the input dtype.
// The output keeps the inputs' layout when they share one dense layout
// (contiguous, channels_last, ...), else it is contiguous.
at::Tensor gru_blend_fwd_cpu(const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre);

// Backward from what forward saved (h, z_pre, n_pre); z and n are recomputed.
// Returns (dh, dz_pre, dn_pre), each in the layout rule of the forward.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_blend_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre);

#ifdef WITH_CUDA
at::Tensor gru_blend_fwd_cuda(const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre);
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_blend_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre);
#endif

// Shape/dtype/device checks shared by every elementwise op; `names` label the
// operands in the error message, the first operand is the one others must match.
template <std::size_t N>
void check_elementwise_operands(
    const char* op, const std::array<at::Tensor, N>& ts, const std::array<const char*, N>& names) {
  const at::Tensor& first = ts[0];
  TORCH_CHECK(at::isFloatingType(first.scalar_type()), op, ": expected a floating dtype, got ",
              first.scalar_type());
  for (std::size_t i = 1; i < N; ++i) {
    TORCH_CHECK(ts[i].sizes() == first.sizes(), op, ": ", names[i], " has shape ", ts[i].sizes(),
                " but ", names[0], " has ", first.sizes());
    TORCH_CHECK(ts[i].scalar_type() == first.scalar_type(), op, ": ", names[i], " is ",
                ts[i].scalar_type(), " but ", names[0], " is ", first.scalar_type());
    TORCH_CHECK(ts[i].device() == first.device(), op, ": ", names[i], " is on ", ts[i].device(),
                " but ", names[0], " is on ", first.device());
  }
}

// Elementwise kernels walk operands as flat arrays. That is exact when all of
// them share one non-overlapping dense layout (same strides): contiguous and
// channels_last tensors alike. Otherwise every operand is made contiguous.
template <std::size_t N>
std::array<at::Tensor, N> with_common_dense_layout(std::array<at::Tensor, N> ts) {
  bool shared = ts[0].is_non_overlapping_and_dense();
  for (std::size_t i = 1; i < N && shared; ++i) {
    shared = ts[i].strides() == ts[0].strides();
  }
  if (!shared) {
    for (auto& t : ts) t = t.contiguous();
  }
  return ts;
}

}  // namespace cvg_fast

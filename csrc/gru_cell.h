// cvg_fast ConvGRU cell ops: the two pointwise stages around the candidate conv.
//
// One time step, C = hidden channels, every tensor 4D:
//   g   = g_x + g_h                     (N, 2C, H, W) gate pre-activations
//   r   = sigmoid(g[:, :C]),  z = sigmoid(g[:, C:])
//   rh  = r * h                         (N, C, H, W)  -> the candidate conv
//   n   = tanh(n_x + n_h)               n_x, n_h: (N, C, H, W)
//   h'  = h + z * (n - h)
// The backward recomputes r, z and n from the same inputs (nothing else saved).
//
// Operands may have any strides as long as H and W merge (stride(2) == W *
// stride(3)): each is walked as (n, c, s), s = y * W + x, with three strides, so
// contiguous, channels_last, channel halves of g and time slices x[:, t] of an
// (N, T, C, H, W) tensor need no copy. Other operands are copied to contiguous.
// Outputs are allocated like h (channels_last if h is, else contiguous).
//
// Kept light (ATen/core/Tensor.h, empty_like) so that nvcc can include it too.
#pragma once

#include "ops.h"

#include <ATen/ops/empty_like.h>

#include <cstdint>
#include <initializer_list>
#include <tuple>

namespace cvg_fast {

// rh = sigmoid(g_x[:, :C] + g_h[:, :C]) * h.
at::Tensor gru_reset_fwd_cpu(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& h);
// h_new = h + z * (tanh(n_x + n_h) - h), z = sigmoid(g_x[:, C:] + g_h[:, C:]).
at::Tensor gru_update_fwd_cpu(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& n_x,
                              const at::Tensor& n_h, const at::Tensor& h);
// Writes d_g[:, C:] = d_hnew * (n - h) * z * (1 - z) in place (d_g[:, :C] untouched);
// returns (d_n, d_h) = (d_hnew * z * (1 - n^2), d_hnew * (1 - z)).
std::tuple<at::Tensor, at::Tensor> gru_update_bwd_cpu(const at::Tensor& d_hnew, const at::Tensor& g_x,
                                                      const at::Tensor& g_h, const at::Tensor& n_x,
                                                      const at::Tensor& n_h, const at::Tensor& h,
                                                      at::Tensor& d_g);
// Writes d_g[:, :C] = d_rh * h * r * (1 - r) in place and accumulates d_h += d_rh * r.
void gru_reset_bwd_cpu(const at::Tensor& d_rh, const at::Tensor& g_x, const at::Tensor& g_h,
                       const at::Tensor& h, at::Tensor& d_g, at::Tensor& d_h);

#ifdef WITH_CUDA
at::Tensor gru_reset_fwd_cuda(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& h);
at::Tensor gru_update_fwd_cuda(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& n_x,
                               const at::Tensor& n_h, const at::Tensor& h);
std::tuple<at::Tensor, at::Tensor> gru_update_bwd_cuda(const at::Tensor& d_hnew, const at::Tensor& g_x,
                                                       const at::Tensor& g_h, const at::Tensor& n_x,
                                                       const at::Tensor& n_h, const at::Tensor& h,
                                                       at::Tensor& d_g);
void gru_reset_bwd_cuda(const at::Tensor& d_rh, const at::Tensor& g_x, const at::Tensor& g_h,
                        const at::Tensor& h, at::Tensor& d_g, at::Tensor& d_h);
#endif

// An operand and its name for error messages.
struct NamedTensor {
  const at::Tensor& t;
  const char* name;
};

// Checks shared by every backend (and the Meta kernels): h is 4D (N, C, H, W) of a
// floating dtype; `gates` are (N, 2C, H, W), `like_h` are h's shape; one dtype, one device.
inline void check_gru_cell_operands(const char* op, const at::Tensor& h,
                                    std::initializer_list<NamedTensor> gates,
                                    std::initializer_list<NamedTensor> like_h) {
  TORCH_CHECK(h.dim() == 4, op, ": expected 4D (N, C, H, W) tensors, h has shape ", h.sizes());
  TORCH_CHECK(at::isFloatingType(h.scalar_type()), op, ": expected a floating dtype, got ",
              h.scalar_type());
  const int64_t gate_shape[4] = {h.size(0), 2 * h.size(1), h.size(2), h.size(3)};
  const auto same_kind = [&](const NamedTensor& o) {
    TORCH_CHECK(o.t.scalar_type() == h.scalar_type(), op, ": ", o.name, " is ", o.t.scalar_type(),
                " but h is ", h.scalar_type());
    TORCH_CHECK(o.t.device() == h.device(), op, ": ", o.name, " is on ", o.t.device(),
                " but h is on ", h.device());
  };
  for (const NamedTensor& o : gates) {
    TORCH_CHECK(o.t.sizes() == at::IntArrayRef(gate_shape), op, ": ", o.name, " has shape ",
                o.t.sizes(), " but expected (N, 2C, H, W) = ", at::IntArrayRef(gate_shape),
                " from h ", h.sizes());
    same_kind(o);
  }
  for (const NamedTensor& o : like_h) {
    TORCH_CHECK(o.t.sizes() == h.sizes(), op, ": ", o.name, " has shape ", o.t.sizes(),
                " but h has ", h.sizes());
    same_kind(o);
  }
}

// True when H and W of a 4D tensor can be walked as one index s = y * W + x.
inline bool hw_merge(const at::Tensor& t) {
  return t.size(2) == 1 || t.size(3) == 1 || t.stride(2) == t.size(3) * t.stride(3);
}

// t itself when H, W merge, else a contiguous copy.
inline at::Tensor with_hw_merged(const at::Tensor& t) { return hw_merge(t) ? t : t.contiguous(); }

// Element strides of a 4D operand walked as (n, c, s); H and W must merge.
struct CellStrides {
  int64_t n, c, s;
};

inline CellStrides cell_strides(const at::Tensor& t) {
  const int64_t s = t.size(3) == 1 ? t.stride(2) : t.stride(3);
  return {t.stride(0), t.stride(1), s};
}

// The (N, C, S) index space of one op, and which of c / s the kernels run innermost:
// c for a channels_last output (unit stride there), else s.
struct CellGeometry {
  int64_t N, C, S;
  bool c_inner;
};

inline CellGeometry cell_geometry(const at::Tensor& like) {
  return {like.size(0), like.size(1), like.size(2) * like.size(3),
          like.suggest_memory_format() == at::MemoryFormat::ChannelsLast};
}

// A new output shaped and laid out like h (channels_last if h is, else contiguous).
inline at::Tensor cell_empty_like(const at::Tensor& h) {
  return at::empty_like(h, h.options(), h.suggest_memory_format());
}

}  // namespace cvg_fast

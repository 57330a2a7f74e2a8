// cvg_fast pyramid_down: declarations, the argument checks and the dtype dispatch
// every backend (CPU, CUDA, Meta) shares.
//
// pyramid_down(x, levels, scale, shift, out_dtype) -> [y_1, ..., y_levels]
//   x:   (B, C, H, W), uint8 / bfloat16 / float16 / float32 / float64, any strides
//        (e.g. a (T, H, W, C) uint8 frame stack permuted to (T, C, H, W), no copy);
//        H and W divisible by 2**levels, levels >= 1.
//   y_k: (B, C, H / 2^k, W / 2^k), contiguous, dtype out_dtype, where
//        y_0 = x * scale + shift and y_k = antialiased bilinear 1/2 of y_{k-1}
//        (F.interpolate(scale_factor=0.5, mode="bilinear", antialias=True)): per axis
//        output i = taps [1, 3, 3, 1] / 8 on inputs [2i - 1, 2i + 2], taps outside the
//        image dropped and the rest renormalised ([3, 3, 1] / 7 at the borders).
//   Math in fp32 (fp64 when x and out_dtype are both float64); level k is computed
//   from level k - 1's unrounded values and only the outputs are cast to out_dtype.
//
// Kept light (ATen/core/Tensor.h only) so that nvcc can include it too.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>
#include <vector>

namespace cvg_fast {

std::vector<at::Tensor> pyramid_down_cpu(const at::Tensor& x, int64_t levels, double scale,
                                         double shift, at::ScalarType out_dtype);

#ifdef WITH_CUDA
std::vector<at::Tensor> pyramid_down_cuda(const at::Tensor& x, int64_t levels, double scale,
                                          double shift, at::ScalarType out_dtype);
#endif

// Rank, levels, divisibility and dtypes; one-line errors naming the offending value.
inline void check_pyramid_args(const at::Tensor& x, int64_t levels, at::ScalarType out_dtype) {
  TORCH_CHECK(x.dim() == 4, "pyramid_down: expected x of shape (B, C, H, W), got ", x.dim(),
              " dims ", x.sizes());
  TORCH_CHECK(levels >= 1, "pyramid_down: levels must be >= 1, got ", levels);
  const auto in = x.scalar_type();
  TORCH_CHECK(in == at::kByte || in == at::kBFloat16 || in == at::kHalf || in == at::kFloat ||
                  in == at::kDouble,
              "pyramid_down: x must be uint8, bfloat16, float16, float32 or float64, got ", in);
  TORCH_CHECK(out_dtype == at::kBFloat16 || out_dtype == at::kHalf || out_dtype == at::kFloat ||
                  out_dtype == at::kDouble,
              "pyramid_down: out_dtype must be bfloat16, float16, float32 or float64, got ",
              out_dtype);
  // levels < 62 keeps the shift defined; larger levels can only fail divisibility anyway.
  const int64_t H = x.size(2), W = x.size(3);
  const bool divisible =
      levels < 62 && H % (int64_t{1} << levels) == 0 && W % (int64_t{1} << levels) == 0;
  TORCH_CHECK(divisible, "pyramid_down: H and W must be divisible by 2**levels = 2**", levels,
              ", got H=", H, " W=", W);
}

// The outputs: `levels` contiguous (B, C, H / 2^k, W / 2^k) tensors of out_dtype.
inline std::vector<at::Tensor> pyramid_empty_outputs(const at::Tensor& x, int64_t levels,
                                                     at::ScalarType out_dtype) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<std::size_t>(levels));
  for (int64_t k = 1; k <= levels; ++k) {
    out.push_back(at::empty({x.size(0), x.size(1), x.size(2) >> k, x.size(3) >> k},
                            x.options().dtype(out_dtype)));
  }
  return out;
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<in_t>, TypeTag<math_t>, TypeTag<out_t>) for the dtypes of x and out;
// math_t is double only when both are float64 (the spec: fp64 math for fp64 data).
template <typename F>
void dispatch_pyramid_types(at::ScalarType in, at::ScalarType out, F&& f) {
  auto with_out = [&](auto in_tag) {
    using in_t = typename decltype(in_tag)::type;
    switch (out) {
      case at::kBFloat16: return f(in_tag, TypeTag<float>{}, TypeTag<c10::BFloat16>{});
      case at::kHalf: return f(in_tag, TypeTag<float>{}, TypeTag<c10::Half>{});
      case at::kFloat: return f(in_tag, TypeTag<float>{}, TypeTag<float>{});
      case at::kDouble:
        if constexpr (std::is_same_v<in_t, double>) {
          return f(in_tag, TypeTag<double>{}, TypeTag<double>{});
        } else {
          return f(in_tag, TypeTag<float>{}, TypeTag<double>{});
        }
      default: TORCH_CHECK(false, "pyramid_down: unsupported out_dtype ", out);
    }
  };
  switch (in) {
    case at::kByte: return with_out(TypeTag<uint8_t>{});
    case at::kBFloat16: return with_out(TypeTag<c10::BFloat16>{});
    case at::kHalf: return with_out(TypeTag<c10::Half>{});
    case at::kFloat: return with_out(TypeTag<float>{});
    case at::kDouble: return with_out(TypeTag<double>{});
    default: TORCH_CHECK(false, "pyramid_down: unsupported x dtype ", in);
  }
}

}  // namespace cvg_fast

// gru_blend CPU kernels (csrc/gru_blend_cpu.cpp) against ATen expressions in
// double precision: every dtype, contiguous / channels_last / mixed layouts,
// odd and multi-chunk sizes, empty tensors, and the input checks.
// Exits non-zero on the first mismatch; registered with ctest (CMakeLists.txt).

#include "ops.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

struct Tol {
  double atol, rtol;
};

Tol tolerance(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return {1e-6, 1e-6};
    case at::kHalf: return {1e-3, 1e-3};      // one fp16 rounding: 2^-11 relative
    case at::kBFloat16: return {8e-3, 8e-3};  // one bf16 rounding: 2^-8 relative
    default: return {1e-12, 1e-12};           // double
  }
}

// |got - want| <= atol + rtol * |want| everywhere; `want` is double.
void expect_close(const at::Tensor& got, const at::Tensor& want, Tol tol, const std::string& what) {
  if (got.sizes() != want.sizes()) {
    expect(false, what + ": shape mismatch");
    return;
  }
  if (got.numel() == 0) return;
  const at::Tensor err = (got.to(at::kDouble) - want).abs();
  const at::Tensor bound = tol.atol + tol.rtol * want.abs();
  const double worst = (err - bound).max().item<double>();
  expect(worst <= 0.0, what + ": error exceeds tolerance by " + std::to_string(worst));
}

struct Inputs {
  at::Tensor g, h, z_pre, n_pre;
};

// h ~ N(0, 1); z_pre, n_pre ~ N(0, 9) so that sigmoid and tanh saturate too.
Inputs make_inputs(at::IntArrayRef shape, at::ScalarType dtype, const std::string& layout) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  Inputs in{at::randn(shape, opts), at::randn(shape, opts), 3 * at::randn(shape, opts),
            3 * at::randn(shape, opts)};
  for (at::Tensor* t : {&in.g, &in.h, &in.z_pre, &in.n_pre}) *t = t->to(dtype);
  if (layout == "channels_last") {
    for (at::Tensor* t : {&in.g, &in.h, &in.z_pre, &in.n_pre}) {
      *t = t->contiguous(at::MemoryFormat::ChannelsLast);
    }
  } else if (layout == "mixed") {  // h channels_last, the rest contiguous
    in.h = in.h.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return in;
}

void check_case(at::IntArrayRef shape, at::ScalarType dtype, const std::string& layout) {
  const std::string name = std::string(c10::toString(dtype)) + " " + layout + " " +
                           c10::str(shape);
  const Inputs in = make_inputs(shape, dtype, layout);
  const Tol tol = tolerance(dtype);

  // The reference, from the dtype-rounded inputs, in double.
  const at::Tensor g = in.g.to(at::kDouble), h = in.h.to(at::kDouble);
  const at::Tensor z = at::sigmoid(in.z_pre.to(at::kDouble));
  const at::Tensor n = at::tanh(in.n_pre.to(at::kDouble));
  const at::Tensor want_out = (1 - z) * h + z * n;
  const at::Tensor want_dh = g * (1 - z);
  const at::Tensor want_dz = g * (n - h) * z * (1 - z);
  const at::Tensor want_dn = g * z * (1 - n * n);

  const at::Tensor out = cvg_fast::gru_blend_fwd_cpu(in.h, in.z_pre, in.n_pre);
  expect(out.scalar_type() == dtype, name + ": output dtype");
  expect_close(out, want_out, tol, name + ": forward");
  const auto [dh, dz, dn] = cvg_fast::gru_blend_bwd_cpu(in.g, in.h, in.z_pre, in.n_pre);
  expect_close(dh, want_dh, tol, name + ": dh");
  expect_close(dz, want_dz, tol, name + ": dz_pre");
  expect_close(dn, want_dn, tol, name + ": dn_pre");

  // Shared dense layouts are kept; anything else comes back contiguous.
  const bool keep = layout != "mixed";
  for (const at::Tensor& t : {out, dh, dz, dn}) {
    expect(keep ? t.strides() == in.h.strides() : t.is_contiguous(), name + ": output layout");
  }
}

template <typename F>
void expect_throws(F&& f, const std::string& what) {
  try {
    f();
  } catch (const c10::Error&) {
    return;
  }
  expect(false, what + ": no error raised");
}

}  // namespace

int main() {
  at::manual_seed(0);
  const std::vector<at::ScalarType> dtypes = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};
  for (at::ScalarType dtype : dtypes) {
    for (const char* layout : {"contiguous", "channels_last", "mixed"}) {
      check_case({3, 5, 7, 11}, dtype, layout);  // odd everything
    }
    check_case({1}, dtype, "contiguous");
    check_case({2, 3, 4, 5, 6}, dtype, "contiguous");    // (N, T, C, H, W)
    check_case({7, 10001}, dtype, "contiguous");         // several parallel tasks + tails
    check_case({0, 4, 3, 3}, dtype, "contiguous");       // empty
  }

  const at::Tensor a = at::randn({2, 3}), b = at::randn({3, 2});
  expect_throws([&] { cvg_fast::gru_blend_fwd_cpu(a, b, a); }, "shape mismatch");
  expect_throws([&] { cvg_fast::gru_blend_fwd_cpu(a, a.to(at::kDouble), a); }, "dtype mismatch");
  expect_throws([&] { cvg_fast::gru_blend_fwd_cpu(a.to(at::kInt), a.to(at::kInt), a.to(at::kInt)); },
                "integer dtype");
  expect_throws([&] { cvg_fast::gru_blend_bwd_cpu(b, a, a, a); }, "grad shape mismatch");

  if (failures) {
    std::fprintf(stderr, "test_gru_blend: %d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("test_gru_blend: all checks passed\n");
  return EXIT_SUCCESS;
}

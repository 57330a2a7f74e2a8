// pyramid_down CPU kernel (csrc/pyramid_cpu.cpp): hand-computed small cases (4x4 ramp,
// impulse, 2x2 mean), then every x / out dtype against a double-precision reference
// written as matrices (y_k = D_H y_{k-1} D_W^T, D's rows the clipped, renormalised
// [1, 3, 3, 1] taps), strided inputs (a permuted uint8 (T, H, W, C) stack), and the checks.
// Exits non-zero on the first mismatch; registered with ctest (CMakeLists.txt).

#include "pyramid.h"

#include <ATen/ATen.h>

#include <cmath>
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

void expect_close(const at::Tensor& got, const at::Tensor& want, double atol, double rtol,
                  const std::string& what) {
  if (got.sizes() != want.sizes()) {
    expect(false, what + ": shape " + c10::str(got.sizes()) + " != " + c10::str(want.sizes()));
    return;
  }
  const at::Tensor err = (got.to(at::kDouble) - want.to(at::kDouble)).abs();
  const double worst = (err - (atol + rtol * want.to(at::kDouble).abs())).max().item<double>();
  expect(worst <= 0.0, what + ": error exceeds tolerance by " + std::to_string(worst));
}

// (n / 2, n) matrix of the 1/2 antialiased bilinear filter along one axis.
at::Tensor down_matrix(int64_t n) {
  at::Tensor d = at::zeros({n / 2, n}, at::kDouble);
  const double raw[4] = {1, 3, 3, 1};
  for (int64_t i = 0; i < n / 2; ++i) {
    double total = 0;
    for (int64_t j = 2 * i - 1; j <= 2 * i + 2; ++j) {
      if (j >= 0 && j < n) total += raw[j - (2 * i - 1)];
    }
    for (int64_t j = 2 * i - 1; j <= 2 * i + 2; ++j) {
      if (j >= 0 && j < n) d[i][j] = raw[j - (2 * i - 1)] / total;
    }
  }
  return d;
}

std::vector<at::Tensor> reference(const at::Tensor& x, int64_t levels, double scale, double shift) {
  at::Tensor y = x.to(at::kDouble) * scale + shift;
  std::vector<at::Tensor> out;
  for (int64_t k = 0; k < levels; ++k) {
    y = at::matmul(at::matmul(down_matrix(y.size(2)), y), down_matrix(y.size(3)).t());
    out.push_back(y);
  }
  return out;
}

template <typename F>
void expect_throws(F&& f, const std::string& needle, const std::string& what) {
  try {
    f();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    expect(msg.find(needle) != std::string::npos, what + ": message '" + msg + "' lacks '" +
                                                      needle + "'");
    return;
  }
  expect(false, what + ": no error raised");
}

void hand_computed() {
  // 4x4 ramp x[i][j] = 4i + j. Rows: [3,3,1]/7 on (a, a+1, a+2) = a + 5/7 and [1,3,3]/7 on
  // (a+1, a+2, a+3) = a + 16/7; columns likewise with steps of 4: 20/7 and 64/7.
  const at::Tensor ramp = at::arange(16, at::kFloat).view({1, 1, 4, 4});
  const auto y = cvg_fast::pyramid_down_cpu(ramp, 2, 1.0, 0.0, at::kFloat);
  const double want1[2][2] = {{25.0 / 7, 36.0 / 7}, {69.0 / 7, 80.0 / 7}};
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      const double got = y[0][0][0][i][j].item<double>();
      expect(std::fabs(got - want1[i][j]) <= 2e-6, "ramp level 1 (" + std::to_string(i) + ", " +
                                                       std::to_string(j) + "): " +
                                                       std::to_string(got));
    }
  }
  // 2x2 -> 1x1: taps [3, 3] / 6 per axis, the mean: (25 + 36 + 69 + 80) / 28 = 7.5.
  expect(std::fabs(y[1][0][0][0][0].item<double>() - 7.5) <= 2e-6, "ramp level 2 (mean)");

  // Interior impulse at (3, 3) of 8x8 spreads as 3/8 to output 1 and 1/8 to output 2.
  at::Tensor imp = at::zeros({1, 1, 8, 8}, at::kDouble);
  imp[0][0][3][3] = 1.0;
  const at::Tensor col = at::tensor({0.0, 3.0 / 8, 1.0 / 8, 0.0}, at::kDouble);
  expect_close(cvg_fast::pyramid_down_cpu(imp, 1, 1.0, 0.0, at::kDouble)[0][0][0],
               at::outer(col, col), 1e-15, 0, "impulse");
  // Corner impulse: (3/7)^2 at (0, 0), nothing elsewhere.
  imp.zero_();
  imp[0][0][0][0] = 1.0;
  const at::Tensor corner = cvg_fast::pyramid_down_cpu(imp, 1, 1.0, 0.0, at::kDouble)[0][0][0];
  expect(std::fabs(corner[0][0].item<double>() - 9.0 / 49) <= 1e-15, "corner impulse value");
  expect(corner.abs().sum().item<double>() - corner[0][0].item<double>() <= 1e-15,
         "corner impulse support");
}

void against_reference() {
  const std::vector<at::ScalarType> in_types = {at::kByte, at::kBFloat16, at::kHalf, at::kFloat,
                                                at::kDouble};
  const std::vector<at::ScalarType> out_types = {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble};
  for (at::ScalarType in : in_types) {
    for (at::ScalarType out : out_types) {
      for (int64_t levels : {1, 3}) {
        // (T, H, W, C) stack viewed as (T, C, H, W): strides (H*W*C, 1, W*C, C).
        at::Tensor x = at::randint(0, 256, {2, 16, 24, 3}, at::kDouble);
        double scale = 2.0 / 255, shift = -1.0;
        if (in != at::kByte) {  // values in [-1, 1] that the dtype holds exactly
          x = (x * scale + shift).to(in).to(at::kDouble);
          scale = 1.0;
          shift = 0.0;
        }
        x = x.to(in).permute({0, 3, 1, 2});
        const auto got = cvg_fast::pyramid_down_cpu(x, levels, scale, shift, out);
        const auto want = reference(x, levels, scale, shift);
        // One rounding to out (fp32 math: a few fp32 ulps of accumulated error on top).
        double tol = out == at::kBFloat16 ? 8e-3 : out == at::kHalf ? 1e-3 : 1e-6;
        if (out == at::kDouble && in == at::kDouble) tol = 1e-14;
        const std::string name = std::string(c10::toString(in)) + " -> " +
                                 c10::toString(out) + " levels " + std::to_string(levels);
        expect(static_cast<int64_t>(got.size()) == levels, name + ": number of levels");
        for (int64_t k = 0; k < levels && k < static_cast<int64_t>(got.size()); ++k) {
          expect(got[k].scalar_type() == out, name + ": dtype");
          expect(got[k].is_contiguous(), name + ": contiguous");
          expect_close(got[k], want[k], tol, tol, name + ": level " + std::to_string(k + 1));
        }
      }
    }
  }
}

void checks() {
  const at::Tensor x = at::rand({1, 2, 8, 8});
  expect_throws([&] { cvg_fast::pyramid_down_cpu(x[0], 1, 1, 0, at::kFloat); },
                "expected x of shape (B, C, H, W)", "rank 3");
  expect_throws([&] { cvg_fast::pyramid_down_cpu(x, 0, 1, 0, at::kFloat); },
                "levels must be >= 1", "levels 0");
  expect_throws([&] { cvg_fast::pyramid_down_cpu(x, 4, 1, 0, at::kFloat); },
                "divisible by 2**levels", "8x8 with 4 levels");
  expect_throws([&] { cvg_fast::pyramid_down_cpu(x.to(at::kInt), 1, 1, 0, at::kFloat); },
                "x must be uint8", "int32 input");
  expect_throws([&] { cvg_fast::pyramid_down_cpu(x, 1, 1, 0, at::kByte); },
                "out_dtype must be", "uint8 output");
}

}  // namespace

int main() {
  at::manual_seed(0);
  hand_computed();
  against_reference();
  checks();
  if (failures) {
    std::fprintf(stderr, "test_pyramid: %d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("test_pyramid: all checks passed\n");
  return EXIT_SUCCESS;
}

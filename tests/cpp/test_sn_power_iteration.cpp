// Spectral-norm power iteration CPU kernel (csrc/sn_power_iteration_cpu.cpp) against a
// scalar double loop of the reference (u = normalize(W v), v = normalize(W^T u),
// sigma = u . W v) on the fp32 inputs: several shapes (one row block and several, dot
// tails), a column-slice view of W, update on / off, zero W (the eps path), and the
// input checks. Exits non-zero on the first mismatch; registered with ctest (CMakeLists.txt).

#include "sn_power_iteration.h"

#include <ATen/ATen.h>

#include <algorithm>
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

struct Ref {
  std::vector<double> u, v;
  double sigma;
  double scale;  // sum_o |u_o (W v)_o|: sigma's rounding scale (no update: terms cancel)
};

// The reference in double from W (any strides), u, v (float32).
Ref reference(const at::Tensor& w, const at::Tensor& u0, const at::Tensor& v0, double eps,
              bool update) {
  const at::Tensor W = w.to(at::kDouble).contiguous();
  const int64_t O = W.size(0), I = W.size(1);
  const double* p = W.const_data_ptr<double>();
  const at::Tensor ud = u0.to(at::kDouble), vd = v0.to(at::kDouble);
  Ref r{std::vector<double>(ud.const_data_ptr<double>(), ud.const_data_ptr<double>() + O),
        std::vector<double>(vd.const_data_ptr<double>(), vd.const_data_ptr<double>() + I), 0.0, 0.0};
  const auto normalize = [eps](std::vector<double>& a) {
    double n = 0;
    for (double x : a) n += x * x;
    n = std::max(std::sqrt(n), eps);
    for (double& x : a) x /= n;
  };
  if (update) {
    for (int64_t o = 0; o < O; ++o) {
      double t = 0;
      for (int64_t j = 0; j < I; ++j) t += p[o * I + j] * r.v[j];
      r.u[o] = t;
    }
    normalize(r.u);
    for (int64_t j = 0; j < I; ++j) {
      double s = 0;
      for (int64_t o = 0; o < O; ++o) s += p[o * I + j] * r.u[o];
      r.v[j] = s;
    }
    normalize(r.v);
  }
  for (int64_t o = 0; o < O; ++o) {
    double t = 0;
    for (int64_t j = 0; j < I; ++j) t += p[o * I + j] * r.v[j];
    r.sigma += r.u[o] * t;
    r.scale += std::fabs(r.u[o] * t);
  }
  return r;
}

void expect_vec(const at::Tensor& got, const std::vector<double>& want, double tol,
                const std::string& what) {
  const float* g = got.const_data_ptr<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(g[i] - want[i]) <= tol * (1e-3 + std::fabs(want[i])))) {
      expect(false, what + ": element " + std::to_string(i) + " is " + std::to_string(g[i]) +
                        ", want " + std::to_string(want[i]));
      return;
    }
  }
}

void check_case(int64_t O, int64_t I, bool update, const std::string& kind) {
  const std::string name = std::to_string(O) + "x" + std::to_string(I) + " " + kind +
                           (update ? " update" : " no-update");
  at::Tensor w;
  if (kind == "slice") {
    w = at::randn({O, I + 3}).narrow(1, 3, I);  // a column slice: row stride I + 3
  } else if (kind == "transposed") {
    w = at::randn({I, O}).t();  // column stride != 1: copied
  } else if (kind == "zero") {
    w = at::zeros({O, I});
  } else {
    w = at::randn({O, I});
  }
  at::Tensor u = at::randn({O}), v = at::randn({I});
  u = u / u.norm();
  v = v / v.norm();
  const double eps = 1e-12;
  const Ref want = reference(w, u, v, eps, update);
  const at::Tensor sigma = cvg_fast::sn_power_iteration_cpu(w, u, v, eps, update);
  expect(sigma.dim() == 0 && sigma.scalar_type() == at::kFloat, name + ": sigma is 0-dim float32");
  const double tol = 2e-5;
  expect_vec(u, want.u, tol, name + ": u");
  expect_vec(v, want.v, tol, name + ": v");
  const double s = sigma.item<float>();
  expect(std::fabs(s - want.sigma) <= tol * (1e-6 + want.scale),
         name + ": sigma " + std::to_string(s) + ", want " + std::to_string(want.sigma));
}

template <typename F>
void expect_throws(F f, const std::string& what) {
  bool threw = false;
  try {
    f();
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, what);
}

}  // namespace

int main() {
  at::manual_seed(0);
  const int64_t shapes[][2] = {{1, 1}, {3, 5}, {64, 27}, {256, 1152}, {100, 70}, {1000, 131}};
  for (const auto& sh : shapes) {
    for (bool update : {true, false}) {
      for (const char* kind : {"contiguous", "slice", "transposed"}) {
        check_case(sh[0], sh[1], update, kind);
      }
    }
  }
  check_case(7, 9, true, "zero");
  {  // zero W: u, v -> 0 and sigma 0 through eps
    at::Tensor w = at::zeros({4, 6}), u = at::ones({4}), v = at::ones({6});
    const at::Tensor sigma = cvg_fast::sn_power_iteration_cpu(w, u, v, 1e-12, true);
    expect(u.abs().max().item<float>() == 0 && v.abs().max().item<float>() == 0 &&
               sigma.item<float>() == 0,
           "zero W gives u = v = 0, sigma = 0");
  }
  at::Tensor w = at::randn({4, 6}), u = at::randn({4}), v = at::randn({6});
  expect_throws([&] { cvg_fast::sn_power_iteration_cpu(w.to(at::kDouble), u, v, 1e-12, true); },
                "double w rejected");
  expect_throws([&] { cvg_fast::sn_power_iteration_cpu(w, v, v, 1e-12, true); }, "u shape checked");
  expect_throws([&] { cvg_fast::sn_power_iteration_cpu(w, u, u, 1e-12, true); }, "v shape checked");
  expect_throws([&] { cvg_fast::sn_power_iteration_cpu(w[0], u, v, 1e-12, true); }, "1D w rejected");
  if (failures) {
    std::fprintf(stderr, "test_sn_power_iteration: %d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("test_sn_power_iteration: all checks passed\n");
  return EXIT_SUCCESS;
}

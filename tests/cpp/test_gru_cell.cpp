// ConvGRU cell CPU kernels (csrc/gru_cell_cpu.cpp) against a scalar double loop of the
// formulas (gru_cell.h) on small cases: contiguous, channels_last, a time slice and a
// channel half as operands, every dtype; forward values, the in-place d_g halves and the
// d_h accumulation of the backward, and one input check.
// Exits non-zero on the first mismatch; registered with ctest (CMakeLists.txt).

#include "gru_cell.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

double tol(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 2e-6;
    case at::kHalf: return 2e-3;       // fp16 roundings
    case at::kBFloat16: return 1.6e-2;  // bf16 roundings (d_h is rounded twice)
    default: return 1e-12;
  }
}

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// got (any dtype / layout) vs want (double, contiguous), element by element.
void expect_close(const at::Tensor& got, const at::Tensor& want, double t, const std::string& what) {
  const at::Tensor g = got.to(at::kDouble).contiguous();
  const double* gp = g.const_data_ptr<double>();
  const double* wp = want.const_data_ptr<double>();
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (!(std::fabs(gp[i] - wp[i]) <= t * (1.0 + std::fabs(wp[i])))) {
      expect(false, what + ": element " + std::to_string(i) + " is " + std::to_string(gp[i]) +
                        ", want " + std::to_string(wp[i]));
      return;
    }
  }
}

void check_case(at::ScalarType dtype, const std::string& layout) {
  const int64_t N = 2, C = 3, H = 2, W = 5, S = H * W, T = 3;
  const std::string name = std::string(c10::toString(dtype)) + " " + layout;
  auto rnd = [&](at::IntArrayRef shape, double scale) {
    return (scale * at::randn(shape, at::TensorOptions().dtype(at::kDouble))).to(dtype);
  };
  at::Tensor g_x = rnd({N, 2 * C, H, W}, 3), g_h = rnd({N, 2 * C, H, W}, 3);
  at::Tensor n_x = rnd({N, C, H, W}, 3), n_h = rnd({N, C, H, W}, 3), h = rnd({N, C, H, W}, 1);
  at::Tensor d_rh = rnd({N, C, H, W}, 1), d_hnew = rnd({N, C, H, W}, 1);
  if (layout == "channels_last") {
    for (at::Tensor* t : {&g_x, &g_h, &n_x, &n_h, &h, &d_rh, &d_hnew}) {
      *t = t->contiguous(at::MemoryFormat::ChannelsLast);
    }
  } else if (layout == "strided") {  // a time slice and channel halves, no copies
    g_x = rnd({N, T, 2 * C, H, W}, 3).select(1, 1);
    n_x = rnd({N, T, C, H, W}, 3).select(1, 2);
    h = rnd({N, 2 * C, H, W}, 1).contiguous(at::MemoryFormat::ChannelsLast).narrow(1, C, C);
  }

  // The formulas, in double, one element at a time, from the dtype-rounded inputs.
  const auto D = [](const at::Tensor& t) { return t.to(at::kDouble).contiguous(); };
  const at::Tensor gx = D(g_x), gh = D(g_h), nx = D(n_x), nh = D(n_h), hh = D(h), dr = D(d_rh),
                   dn_in = D(d_hnew);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor want_rh = at::empty({N, C, H, W}, opts), want_hnew = at::empty({N, C, H, W}, opts);
  at::Tensor want_dg = at::empty({N, 2 * C, H, W}, opts), want_dn = at::empty({N, C, H, W}, opts);
  at::Tensor want_dh_direct = at::empty({N, C, H, W}, opts), want_dh = at::empty({N, C, H, W}, opts);
  const double *pgx = gx.const_data_ptr<double>(), *pgh = gh.const_data_ptr<double>();
  const double *pnx = nx.const_data_ptr<double>(), *pnh = nh.const_data_ptr<double>();
  const double *ph = hh.const_data_ptr<double>(), *pdr = dr.const_data_ptr<double>();
  const double* pd = dn_in.const_data_ptr<double>();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i = (n * C + c) * S + s;
        const int64_t ir = (n * 2 * C + c) * S + s, iz = (n * 2 * C + C + c) * S + s;
        const double r = sig(pgx[ir] + pgh[ir]), z = sig(pgx[iz] + pgh[iz]);
        const double nn = std::tanh(pnx[i] + pnh[i]);
        want_rh.data_ptr<double>()[i] = r * ph[i];
        want_hnew.data_ptr<double>()[i] = (1 - z) * ph[i] + z * nn;
        want_dg.data_ptr<double>()[iz] = pd[i] * (nn - ph[i]) * z * (1 - z);
        want_dg.data_ptr<double>()[ir] = pdr[i] * ph[i] * r * (1 - r);
        want_dn.data_ptr<double>()[i] = pd[i] * z * (1 - nn * nn);
        want_dh_direct.data_ptr<double>()[i] = pd[i] * (1 - z);
        want_dh.data_ptr<double>()[i] = pd[i] * (1 - z) + pdr[i] * r;
      }
    }
  }

  const double t = tol(dtype);
  const at::Tensor rh = cvg_fast::gru_reset_fwd_cpu(g_x, g_h, h);
  const at::Tensor h_new = cvg_fast::gru_update_fwd_cpu(g_x, g_h, n_x, n_h, h);
  expect(rh.scalar_type() == dtype && h_new.scalar_type() == dtype, name + ": output dtype");
  expect(rh.suggest_memory_format() == h.suggest_memory_format(), name + ": rh layout");
  expect_close(rh, want_rh, t, name + ": rh");
  expect_close(h_new, want_hnew, t, name + ": h_new");

  at::Tensor d_g = at::full({N, 2 * C, H, W}, 7.0, at::TensorOptions().dtype(dtype));
  auto [d_n, d_h] = cvg_fast::gru_update_bwd_cpu(d_hnew, g_x, g_h, n_x, n_h, h, d_g);
  expect(d_g.narrow(1, 0, C).eq(7.0).all().item<bool>(), name + ": update_bwd kept d_g[:, :C]");
  expect_close(d_g.narrow(1, C, C), want_dg.narrow(1, C, C).contiguous(), t, name + ": d_g z-half");
  expect_close(d_n, want_dn, t, name + ": d_n");
  expect_close(d_h, want_dh_direct, t, name + ": d_h direct");
  cvg_fast::gru_reset_bwd_cpu(d_rh, g_x, g_h, h, d_g, d_h);
  expect_close(d_g, want_dg, t, name + ": d_g");
  expect_close(d_h, want_dh, t, name + ": d_h accumulated");
}

}  // namespace

int main() {
  at::manual_seed(0);
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    for (const char* layout : {"contiguous", "channels_last", "strided"}) check_case(dtype, layout);
  }
  bool threw = false;
  try {
    const at::Tensor a = at::randn({2, 3, 4, 5});
    cvg_fast::gru_reset_fwd_cpu(a, a, a);  // g must have 2C channels
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "gate shape check");
  if (failures) {
    std::fprintf(stderr, "test_gru_cell: %d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("test_gru_cell: all checks passed\n");
  return EXIT_SUCCESS;
}

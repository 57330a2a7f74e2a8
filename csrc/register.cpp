// The one registration file: the cvg_fast op schemas, their CPU / CUDA / Meta
// kernels, and the Python module stub that makes `import cvg_fast._C` load
// this library (which runs the registrations below).
//
// Ops (see ops.h):
//   cvg_fast::gru_blend_fwd(Tensor h, Tensor z_pre, Tensor n_pre) -> Tensor
//   cvg_fast::gru_blend_bwd(Tensor grad, Tensor h, Tensor z_pre, Tensor n_pre)
//       -> (Tensor, Tensor, Tensor)
//   cvg_fast::gru_reset_fwd(Tensor g_x, Tensor g_h, Tensor h) -> Tensor              (gru_cell.h)
//   cvg_fast::gru_update_fwd(Tensor g_x, Tensor g_h, Tensor n_x, Tensor n_h, Tensor h) -> Tensor
//   cvg_fast::gru_update_bwd(Tensor d_hnew, Tensor g_x, Tensor g_h, Tensor n_x, Tensor n_h,
//       Tensor h, Tensor(a!) d_g) -> (Tensor, Tensor)       writes d_g[:, C:] in place
//   cvg_fast::gru_reset_bwd(Tensor d_rh, Tensor g_x, Tensor g_h, Tensor h, Tensor(a!) d_g,
//       Tensor(b!) d_h) -> ()                                writes d_g[:, :C], d_h += ...
//   cvg_fast::pyramid_down(Tensor x, int levels, float scale=1., float shift=0.,
//       ScalarType out_dtype=float) -> Tensor[]      (see pyramid.h)
//   cvg_fast::sn_power_iteration(Tensor w, Tensor(a!) u, Tensor(b!) v, float eps, bool update)
//       -> Tensor        one power iteration on u, v in place (update), sigma = u . W v
//                        (0-dim float32)                  (see sn_power_iteration.h)
//   cvg_fast::has_cuda() -> bool          true when the CUDA kernels were compiled in
//
// No pybind11: the module exposes nothing but the ops, so setup.py builds it
// against the stable Python ABI (py_limited_api: one binary for every Python).

#include <Python.h>

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "gru_cell.h"
#include "ops.h"
#include "pyramid.h"
#include "sn_power_iteration.h"

namespace cvg_fast {
namespace {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Meta kernels: output shapes, dtypes and layouts without data, so that
// FakeTensor tracing (torch.compile, torch.export) can see through the ops.
at::Tensor gru_blend_fwd_meta(const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre) {
  check_elementwise_operands<3>("gru_blend_fwd", {h, z_pre, n_pre}, {"h", "z_pre", "n_pre"});
  return at::empty_like(with_common_dense_layout<3>({h, z_pre, n_pre})[0]);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_blend_bwd_meta(
    const at::Tensor& grad, const at::Tensor& h, const at::Tensor& z_pre, const at::Tensor& n_pre) {
  check_elementwise_operands<4>("gru_blend_bwd", {grad, h, z_pre, n_pre},
                                {"grad", "h", "z_pre", "n_pre"});
  const at::Tensor like = with_common_dense_layout<4>({grad, h, z_pre, n_pre})[1];
  return {at::empty_like(like), at::empty_like(like), at::empty_like(like)};
}

// Shapes and dtype only; the same argument checks as the kernels.
std::vector<at::Tensor> pyramid_down_meta(const at::Tensor& x, int64_t levels, double /*scale*/,
                                          double /*shift*/, at::ScalarType out_dtype) {
  check_pyramid_args(x, levels, out_dtype);
  return pyramid_empty_outputs(x, levels, out_dtype);
}

at::Tensor gru_reset_fwd_meta(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& h) {
  check_gru_cell_operands("gru_reset_fwd", h, {{g_x, "g_x"}, {g_h, "g_h"}}, {});
  return cell_empty_like(h);
}

at::Tensor gru_update_fwd_meta(const at::Tensor& g_x, const at::Tensor& g_h, const at::Tensor& n_x,
                               const at::Tensor& n_h, const at::Tensor& h) {
  check_gru_cell_operands("gru_update_fwd", h, {{g_x, "g_x"}, {g_h, "g_h"}},
                          {{n_x, "n_x"}, {n_h, "n_h"}});
  return cell_empty_like(h);
}

std::tuple<at::Tensor, at::Tensor> gru_update_bwd_meta(const at::Tensor& d_hnew, const at::Tensor& g_x,
                                                       const at::Tensor& g_h, const at::Tensor& n_x,
                                                       const at::Tensor& n_h, const at::Tensor& h,
                                                       at::Tensor& d_g) {
  check_gru_cell_operands("gru_update_bwd", h, {{g_x, "g_x"}, {g_h, "g_h"}, {d_g, "d_g"}},
                          {{d_hnew, "d_hnew"}, {n_x, "n_x"}, {n_h, "n_h"}});
  return {cell_empty_like(h), cell_empty_like(h)};
}

void gru_reset_bwd_meta(const at::Tensor& d_rh, const at::Tensor& g_x, const at::Tensor& g_h,
                        const at::Tensor& h, at::Tensor& d_g, at::Tensor& d_h) {
  check_gru_cell_operands("gru_reset_bwd", h, {{g_x, "g_x"}, {g_h, "g_h"}, {d_g, "d_g"}},
                          {{d_rh, "d_rh"}, {d_h, "d_h"}});
}

// Checks and the 0-dim sigma; u and v are left alone.
at::Tensor sn_power_iteration_meta(const at::Tensor& w, at::Tensor& u, at::Tensor& v, double eps,
                                   bool /*update*/) {
  check_sn_power_iteration_args(w, u, v, eps);
  return sn_sigma_empty(w);
}

}  // namespace
}  // namespace cvg_fast

TORCH_LIBRARY(cvg_fast, m) {
  m.def("gru_blend_fwd(Tensor h, Tensor z_pre, Tensor n_pre) -> Tensor");
  m.def("gru_blend_bwd(Tensor grad, Tensor h, Tensor z_pre, Tensor n_pre) -> (Tensor, Tensor, Tensor)");
  m.def("pyramid_down(Tensor x, int levels, float scale=1., float shift=0., "
        "ScalarType out_dtype=float) -> Tensor[]");
  m.def("gru_reset_fwd(Tensor g_x, Tensor g_h, Tensor h) -> Tensor");
  m.def("gru_update_fwd(Tensor g_x, Tensor g_h, Tensor n_x, Tensor n_h, Tensor h) -> Tensor");
  m.def("gru_update_bwd(Tensor d_hnew, Tensor g_x, Tensor g_h, Tensor n_x, Tensor n_h, Tensor h, "
        "Tensor(a!) d_g) -> (Tensor, Tensor)");
  m.def("gru_reset_bwd(Tensor d_rh, Tensor g_x, Tensor g_h, Tensor h, Tensor(a!) d_g, "
        "Tensor(b!) d_h) -> ()");
  m.def("sn_power_iteration(Tensor w, Tensor(a!) u, Tensor(b!) v, float eps, bool update) -> Tensor");
  m.def("has_cuda() -> bool", &cvg_fast::has_cuda);
}

TORCH_LIBRARY_IMPL(cvg_fast, CPU, m) {
  m.impl("gru_blend_fwd", &cvg_fast::gru_blend_fwd_cpu);
  m.impl("gru_blend_bwd", &cvg_fast::gru_blend_bwd_cpu);
  m.impl("pyramid_down", &cvg_fast::pyramid_down_cpu);
  m.impl("gru_reset_fwd", &cvg_fast::gru_reset_fwd_cpu);
  m.impl("gru_update_fwd", &cvg_fast::gru_update_fwd_cpu);
  m.impl("gru_update_bwd", &cvg_fast::gru_update_bwd_cpu);
  m.impl("gru_reset_bwd", &cvg_fast::gru_reset_bwd_cpu);
  m.impl("sn_power_iteration", &cvg_fast::sn_power_iteration_cpu);
}

TORCH_LIBRARY_IMPL(cvg_fast, Meta, m) {
  m.impl("gru_blend_fwd", &cvg_fast::gru_blend_fwd_meta);
  m.impl("gru_blend_bwd", &cvg_fast::gru_blend_bwd_meta);
  m.impl("pyramid_down", &cvg_fast::pyramid_down_meta);
  m.impl("gru_reset_fwd", &cvg_fast::gru_reset_fwd_meta);
  m.impl("gru_update_fwd", &cvg_fast::gru_update_fwd_meta);
  m.impl("gru_update_bwd", &cvg_fast::gru_update_bwd_meta);
  m.impl("gru_reset_bwd", &cvg_fast::gru_reset_bwd_meta);
  m.impl("sn_power_iteration", &cvg_fast::sn_power_iteration_meta);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(cvg_fast, CUDA, m) {
  m.impl("gru_blend_fwd", &cvg_fast::gru_blend_fwd_cuda);
  m.impl("gru_blend_bwd", &cvg_fast::gru_blend_bwd_cuda);
  m.impl("pyramid_down", &cvg_fast::pyramid_down_cuda);
  m.impl("gru_reset_fwd", &cvg_fast::gru_reset_fwd_cuda);
  m.impl("gru_update_fwd", &cvg_fast::gru_update_fwd_cuda);
  m.impl("gru_update_bwd", &cvg_fast::gru_update_bwd_cuda);
  m.impl("gru_reset_bwd", &cvg_fast::gru_reset_bwd_cuda);
  m.impl("sn_power_iteration", &cvg_fast::sn_power_iteration_cuda);
}
#endif

// `import cvg_fast._C` loads this shared library, which runs the static
// registrations above; the module itself is empty. (The library needs
// libtorch already loaded: import torch first.)
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",                                        // m_name
      "cvg_fast C++/CUDA ops: see torch.ops.cvg_fast",  // m_doc
      -1,                                          // m_size: no per-interpreter state
      nullptr,                                     // m_methods
  };
  return PyModule_Create(&module_def);
}

// pyramid_down on CPU: every level of the antialiased 1/2 pyramid in one pass over x.
//
// Work is split over the B * C planes (at::parallel_for). Per plane and level:
//   rows:    each source row is read once (level 0: gathered from x with its strides,
//            scale and shift applied, into an fp32 row), filtered horizontally with the
//            taps [1, 3, 3, 1] / 8 into a ring of 4 half-width rows;
//   columns: output row i combines ring rows 2i - 1 .. 2i + 2 (borders: the taps that
//            fall outside dropped, the rest renormalised, as F.interpolate does).
// The ring is enough because output row i needs exactly 4 consecutive filtered rows and
// output row i + 1 reuses the last two, so each source row is filtered once.
// Level k + 1 is computed from level k's unrounded fp32 values: straight from the output
// plane when out_dtype is the math type, else from a per-task fp32 scratch plane (two
// buffers used in turn) while each row is also cast into the out_dtype output.
// Math in fp32 (fp64 when x and out_dtype are float64).
//
// Build flags (setup.py, CMakeLists.txt), as for gru_blend_cpu.cpp: -fno-trapping-math
// and -ffp-contract=fast so that the float loops vectorise and contract to FMA; -fopenmp
// so that at::parallel_for uses threads. On x86-64 Linux with GCC the float loops are
// cloned for AVX-512 / AVX2 and picked at load time.

#include "pyramid.h"

#include "cpu_math.h"  // CVG_CPU_CLONES

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__GNUC__)
#define CVG_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define CVG_ALWAYS_INLINE inline
#endif

namespace cvg_fast {
namespace {

// Planes per parallel task: about this many input elements (ATen's GRAIN_SIZE).
constexpr int64_t kGrainElems = 32768;

// Output index i of an axis of n_in inputs reads inputs [first, first + n) with
// weights w (raw taps 1, 3, 3, 1 on [2i - 1, 2i + 2], clipped, divided by their sum:
// the same correctly rounded quotients as F.interpolate's normalised weights).
template <typename T>
struct Taps {
  int64_t first;
  int n;
  T w[4];
};

template <typename T>
Taps<T> taps_at(int64_t i, int64_t n_in) {
  constexpr T kRaw[4] = {T(1), T(3), T(3), T(1)};
  const int64_t lo = std::max<int64_t>(2 * i - 1, 0), hi = std::min<int64_t>(2 * i + 3, n_in);
  T total = 0;
  for (int64_t j = lo; j < hi; ++j) total += kRaw[j - (2 * i - 1)];
  Taps<T> t{lo, static_cast<int>(hi - lo), {}};
  for (int k = 0; k < t.n; ++k) t.w[k] = kRaw[lo + k - (2 * i - 1)] / total;
  return t;
}

// Horizontal pass of one row: out[i], i < n_out, from in[0 .. 2 * n_out).
template <typename T>
CVG_ALWAYS_INLINE void hfilter_impl(const T* __restrict in, T* __restrict out, int64_t n_out) {
  const int64_t n_in = 2 * n_out;
  for (int64_t i : {int64_t{0}, n_out - 1}) {  // the borders (once when n_out == 1)
    const Taps<T> t = taps_at<T>(i, n_in);
    T s = 0;
    for (int k = 0; k < t.n; ++k) s += t.w[k] * in[t.first + k];
    out[i] = s;
  }
  const T a = T(0.125), b = T(0.375);
  for (int64_t i = 1; i < n_out - 1; ++i) {
    out[i] = a * in[2 * i - 1] + b * in[2 * i] + b * in[2 * i + 1] + a * in[2 * i + 2];
  }
}

// Vertical pass: out[x] = sum_k w[k] * rows[k][x] over the n (2..4) valid rows.
template <typename T>
CVG_ALWAYS_INLINE void vfilter_impl(const T* __restrict r0, const T* __restrict r1,
                                    const T* __restrict r2, const T* __restrict r3, const T* w,
                                    int n, T* __restrict out, int64_t width) {
  const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  if (n == 4) {
    for (int64_t x = 0; x < width; ++x) out[x] = w0 * r0[x] + w1 * r1[x] + w2 * r2[x] + w3 * r3[x];
  } else if (n == 3) {
    for (int64_t x = 0; x < width; ++x) out[x] = w0 * r0[x] + w1 * r1[x] + w2 * r2[x];
  } else if (n == 2) {
    for (int64_t x = 0; x < width; ++x) out[x] = w0 * r0[x] + w1 * r1[x];
  } else {  // n == 1 cannot happen (every axis has >= 2 inputs); kept total for safety
    for (int64_t x = 0; x < width; ++x) out[x] = w0 * r0[x];
  }
}

// Level 0 row: out[x] = T(src[x * stride]) * scale + shift (x.float() * scale + shift).
template <typename I, typename T>
CVG_ALWAYS_INLINE void gather_impl(const I* __restrict src, int64_t stride, T* __restrict out,
                                   int64_t n, T scale, T shift) {
  if (stride == 1) {  // unit stride: the vectorisable case
    for (int64_t x = 0; x < n; ++x) out[x] = static_cast<T>(src[x]) * scale + shift;
  } else {
    for (int64_t x = 0; x < n; ++x) out[x] = static_cast<T>(src[x * stride]) * scale + shift;
  }
}

template <typename T, typename O>
CVG_ALWAYS_INLINE void store_impl(const T* __restrict in, O* __restrict out, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = static_cast<O>(in[x]);
}

// Non-template entry points, so that the float ones can be cloned per ISA.
CVG_CPU_CLONES void hfilter(const float* in, float* out, int64_t n_out) {
  hfilter_impl(in, out, n_out);
}
void hfilter(const double* in, double* out, int64_t n_out) { hfilter_impl(in, out, n_out); }

CVG_CPU_CLONES void vfilter(const float* r0, const float* r1, const float* r2, const float* r3,
                            const float* w, int n, float* out, int64_t width) {
  vfilter_impl(r0, r1, r2, r3, w, n, out, width);
}
void vfilter(const double* r0, const double* r1, const double* r2, const double* r3,
             const double* w, int n, double* out, int64_t width) {
  vfilter_impl(r0, r1, r2, r3, w, n, out, width);
}

#define CVG_GATHER(I, T, CLONES)                                                          \
  CLONES void gather(const I* src, int64_t stride, T* out, int64_t n, T scale, T shift) { \
    gather_impl(src, stride, out, n, scale, shift);                                       \
  }
CVG_GATHER(uint8_t, float, CVG_CPU_CLONES)
CVG_GATHER(c10::BFloat16, float, CVG_CPU_CLONES)
CVG_GATHER(c10::Half, float, CVG_CPU_CLONES)
CVG_GATHER(float, float, CVG_CPU_CLONES)
CVG_GATHER(double, float, CVG_CPU_CLONES)
CVG_GATHER(double, double, )
#undef CVG_GATHER

CVG_CPU_CLONES void store(const float* in, c10::BFloat16* out, int64_t n) { store_impl(in, out, n); }
CVG_CPU_CLONES void store(const float* in, c10::Half* out, int64_t n) { store_impl(in, out, n); }
CVG_CPU_CLONES void store(const float* in, double* out, int64_t n) { store_impl(in, out, n); }

// Per-task scratch, sized for the plane's largest level and reused across planes.
template <typename T>
struct Scratch {
  std::vector<T> row;    // level 0 gathered row: W
  std::vector<T> ring;   // 4 horizontally filtered rows: 4 * W / 2
  std::vector<T> lvl[2];  // level planes (out_dtype != T only): H/2 * W/2 and H/4 * W/4
};

// One plane: x plane `src` (strides sH, sW; H x W) -> outs[k] (contiguous, level k + 1).
template <typename I, typename T, typename O>
void pyramid_plane(const I* src, int64_t sH, int64_t sW, int64_t H, int64_t W, T scale,
                   T shift, int64_t levels, O* const* outs, Scratch<T>& s) {
  const T* cur = nullptr;  // level >= 1 source: contiguous Hs x Ws plane of T
  int64_t Hs = H, Ws = W;
  for (int64_t k = 0; k < levels; ++k) {
    const int64_t Ho = Hs / 2, Wo = Ws / 2;
    T* dst;  // this level's fp32 (fp64) values
    if constexpr (std::is_same_v<O, T>) {
      dst = outs[k];
    } else {
      dst = s.lvl[k % 2].data();
    }
    // Filtered source row r lives in ring slot r % 4; rows are filtered in order.
    int64_t next = 0;
    auto filter_rows_through = [&](int64_t last) {
      for (; next <= last; ++next) {
        T* slot = s.ring.data() + (next & 3) * Wo;
        if (k == 0) {
          gather(src + next * sH, sW, s.row.data(), Ws, scale, shift);
          hfilter(s.row.data(), slot, Wo);
        } else {
          hfilter(cur + next * Ws, slot, Wo);
        }
      }
    };
    for (int64_t i = 0; i < Ho; ++i) {
      const Taps<T> t = taps_at<T>(i, Hs);
      filter_rows_through(t.first + t.n - 1);
      const T* rows[4];
      for (int q = 0; q < 4; ++q) {
        rows[q] = s.ring.data() + ((t.first + std::min(q, t.n - 1)) & 3) * Wo;
      }
      T* out_row = dst + i * Wo;
      vfilter(rows[0], rows[1], rows[2], rows[3], t.w, t.n, out_row, Wo);
      if constexpr (!std::is_same_v<O, T>) {
        store(out_row, outs[k] + i * Wo, Wo);
      }
    }
    cur = dst;
    Hs = Ho;
    Ws = Wo;
  }
}

template <typename I, typename T, typename O>
void pyramid_down_impl(const at::Tensor& x, int64_t levels, double scale, double shift,
                       std::vector<at::Tensor>& outs) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t sB = x.stride(0), sC = x.stride(1), sH = x.stride(2), sW = x.stride(3);
  const I* xp = x.const_data_ptr<I>();
  std::vector<O*> out_ptrs;
  for (auto& o : outs) out_ptrs.push_back(o.mutable_data_ptr<O>());
  const T scale_t = static_cast<T>(scale), shift_t = static_cast<T>(shift);
  const int64_t grain = std::max<int64_t>(1, kGrainElems / (H * W));
  at::parallel_for(0, B * C, grain, [&](int64_t begin, int64_t end) {
    Scratch<T> s;
    s.row.resize(W);
    s.ring.resize(4 * (W / 2));
    if constexpr (!std::is_same_v<O, T>) {
      s.lvl[0].resize((H / 2) * (W / 2));
      if (levels > 1) s.lvl[1].resize((H / 4) * (W / 4));
    }
    std::vector<O*> plane_outs(out_ptrs.size());
    for (int64_t p = begin; p < end; ++p) {
      const int64_t b = p / C, c = p % C;
      for (int64_t k = 0; k < levels; ++k) {
        plane_outs[k] = out_ptrs[k] + p * ((H >> (k + 1)) * (W >> (k + 1)));
      }
      pyramid_plane<I, T, O>(xp + b * sB + c * sC, sH, sW, H, W, scale_t, shift_t, levels,
                             plane_outs.data(), s);
    }
  });
}

}  // namespace

std::vector<at::Tensor> pyramid_down_cpu(const at::Tensor& x, int64_t levels, double scale,
                                         double shift, at::ScalarType out_dtype) {
  check_pyramid_args(x, levels, out_dtype);
  TORCH_CHECK(x.device().is_cpu(), "pyramid_down: expected a CPU tensor, got ", x.device());
  std::vector<at::Tensor> outs = pyramid_empty_outputs(x, levels, out_dtype);
  if (x.numel() == 0) return outs;
  dispatch_pyramid_types(x.scalar_type(), out_dtype, [&](auto in_tag, auto math_tag, auto out_tag) {
    using I = typename decltype(in_tag)::type;
    using T = typename decltype(math_tag)::type;
    using O = typename decltype(out_tag)::type;
    pyramid_down_impl<I, T, O>(x, levels, scale, shift, outs);
  });
  return outs;
}

}  // namespace cvg_fast

// pybind11 binding of pos_embed (csrc/python/binding.h): argument checks, then the launcher.
#include "python/binding.h"

#include <algorithm>
#include <cmath>

#include "common/convert.h"
#include "pos_embed/pos_embed.h"

namespace py = pybind11;

namespace fastradio {
namespace {

PosEmbedParams pos_embed_params(const char* fn, uint64_t table, uint64_t out, int64_t grid, int64_t dim,
                                int64_t h, int64_t w, int out_dtype, bool align_corners) {
  check_pointer(fn, "table", table);
  check_pointer(fn, "out", out);
  check_positive(fn, "grid", grid);
  check_positive(fn, "dim", dim);
  check_positive(fn, "h", h);
  check_positive(fn, "w", w);
  check_product(fn, "table size grid*grid*dim", grid, grid, dim);
  check_product(fn, "output size h*w*dim", h, w, dim);
  PosEmbedParams p;
  p.table = reinterpret_cast<const float*>(table);
  p.out = reinterpret_cast<void*>(out);
  p.grid = grid;
  p.dim = dim;
  p.h = h;
  p.w = w;
  p.out_dtype = check_dtype(fn, "out_dtype", out_dtype);
  p.align_corners = align_corners;
  return p;
}

void pos_embed_fwd_py(uint64_t table, uint64_t out, int64_t grid, int64_t dim, int64_t h, int64_t w,
                      int out_dtype, int tier, uint64_t stream, bool align_corners) {
  const char* fn = "pos_embed_fwd";
  PosEmbedParams p = pos_embed_params(fn, table, out, grid, dim, h, w, out_dtype, align_corners);
  p.tier = check_tier(fn, "pos_embed", tier);
  const int dev = require_device(fn, "pos_embed", p.tier);
  check_device_pointer(fn, "table", table, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, pos_embed_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The kernel's math (scale, taps, blend, conversions) run on host memory: lets GPU-less CI check
// it against torch. Not a backend: slow, single-threaded, for tests only.
void pos_embed_host_py(uint64_t table, uint64_t out, int64_t grid, int64_t dim, int64_t h, int64_t w, int out_dtype,
                       bool align_corners) {
  const PosEmbedParams p = pos_embed_params("_pos_embed_host", table, out, grid, dim, h, w, out_dtype, align_corners);
  const float scale = pos_embed_scale(p.grid, std::max(p.h, p.w), p.align_corners);
  for (int64_t r = 0; r < p.h; ++r) {
    const PosEmbedTap ty = pos_embed_tap(r, scale, p.grid, p.align_corners);
    for (int64_t c = 0; c < p.w; ++c) {
      const PosEmbedTap tx = pos_embed_tap(c, scale, p.grid, p.align_corners);
      const float* t00 = p.table + (ty.i0 * p.grid + tx.i0) * p.dim;
      const float* t01 = p.table + (ty.i0 * p.grid + tx.i1) * p.dim;
      const float* t10 = p.table + (ty.i1 * p.grid + tx.i0) * p.dim;
      const float* t11 = p.table + (ty.i1 * p.grid + tx.i1) * p.dim;
      const int64_t n = r * p.w + c;
      for (int64_t d = 0; d < p.dim; ++d) {
        const float v = pos_embed_blend(t00[d], t01[d], t10[d], t11[d], tx.l1, ty.l1);
        switch (p.out_dtype) {
          case DType::kFloat32: static_cast<float*>(p.out)[n * p.dim + d] = v; break;
          case DType::kFloat16: static_cast<uint16_t*>(p.out)[n * p.dim + d] = float_to_fp16_bits(v); break;
          case DType::kBFloat16: static_cast<uint16_t*>(p.out)[n * p.dim + d] = float_to_bf16_bits(v); break;
        }
      }
    }
  }
}

}  // namespace
}  // namespace fastradio

FASTRADIO_BIND_OP(pos_embed) {
  using namespace fastradio;
  m.def("pos_embed_fwd", &pos_embed_fwd_py, py::arg("table"), py::arg("out"), py::arg("grid"), py::arg("dim"),
        py::arg("h"), py::arg("w"), py::arg("out_dtype"), py::arg("tier"), py::arg("stream"),
        py::arg("align_corners") = true,
        "Enqueue pos_embed on `stream` (a cudaStream_t as int) of the current device.\n"
        "table: device pointer to (grid, grid, dim) fp32, contiguous; out: device pointer to (h*w, dim)\n"
        "of dtype code out_dtype, contiguous. Resize to (m, m), m = max(h, w), bilinear with align_corners,\n"
        "fp32 math, top-left h x w crop. Raises ValueError for bad arguments, RuntimeError without a\n"
        "driver/device, for a device this build has no kernel for, or on a CUDA error.");
  m.def("_pos_embed_host", &pos_embed_host_py, py::arg("table"), py::arg("out"), py::arg("grid"), py::arg("dim"),
        py::arg("h"), py::arg("w"), py::arg("out_dtype"), py::arg("align_corners") = true,
        "Test aid: the pos_embed kernel's math on HOST pointers (same arguments, no tier/stream).");
}

// pybind11 binding of add_layer_norm (csrc/python/binding.h): argument checks, then the launcher.
#include "python/binding.h"

#include <algorithm>
#include <cmath>

#include "add_layer_norm/add_layer_norm.h"
#include "add_layer_norm/add_layer_norm_host.h"

namespace py = pybind11;

namespace fastradio {
namespace {

AddLayerNormParams add_layer_norm_params(const char* fn, uint64_t x, uint64_t delta, uint64_t weight, uint64_t bias,
                                          uint64_t x_new, uint64_t out, int64_t rows, int64_t dim, double eps,
                                          int x_dtype, int w_dtype) {
  check_pointer(fn, "x", x);
  check_pointer(fn, "weight", weight);
  check_pointer(fn, "bias", bias);
  check_pointer(fn, "out", out);
  if (delta != 0 && x_new == 0)
    value_error(cat(fn, ": x_new must be a non-null device pointer when delta is given, got 0"));
  if (delta == 0 && x_new != 0)
    value_error(cat(fn, ": x_new must be 0 when delta is 0 (no add: nothing to write), got 0x", std::hex, x_new));
  check_positive(fn, "rows", rows);
  check_positive(fn, "dim", dim);
  check_product(fn, "size rows*dim", rows, dim, 1);
  if (!(eps >= 0.0) || !std::isfinite(static_cast<float>(eps)))
    value_error(cat(fn, ": eps must be >= 0 and finite in float32, got ", eps));
  AddLayerNormParams p;
  p.x_dtype = check_dtype(fn, "x_dtype", x_dtype);
  p.w_dtype = check_dtype(fn, "w_dtype", w_dtype);
  if (!add_layer_norm_dtypes_supported(p.x_dtype, p.w_dtype))
    value_error(cat(fn, ": (x_dtype, w_dtype) must be (float32, float32), (float16, float16), (bfloat16, bfloat16), "
                    "(float32, float16) or (float32, bfloat16), got (", dtype_name(p.x_dtype), ", ",
                    dtype_name(p.w_dtype), ")"));
  p.x = reinterpret_cast<const void*>(x);
  p.delta = reinterpret_cast<const void*>(delta);
  p.weight = reinterpret_cast<const void*>(weight);
  p.bias = reinterpret_cast<const void*>(bias);
  p.x_new = reinterpret_cast<void*>(x_new);
  p.out = reinterpret_cast<void*>(out);
  p.rows = rows;
  p.dim = dim;
  p.eps = static_cast<float>(eps);
  return p;
}

void add_layer_norm_fwd_py(uint64_t x, uint64_t delta, uint64_t weight, uint64_t bias, uint64_t x_new, uint64_t out,
                           int64_t rows, int64_t dim, double eps, int x_dtype, int w_dtype, int tier,
                           uint64_t stream) {
  const char* fn = "add_layer_norm_fwd";
  AddLayerNormParams p =
      add_layer_norm_params(fn, x, delta, weight, bias, x_new, out, rows, dim, eps, x_dtype, w_dtype);
  p.tier = check_tier(fn, "add_layer_norm", tier);
  const int dev = require_device(fn, "add_layer_norm", p.tier);
  check_device_pointer(fn, "x", x, dev);
  if (delta != 0) {
    check_device_pointer(fn, "delta", delta, dev);
    check_device_pointer(fn, "x_new", x_new, dev);
  }
  check_device_pointer(fn, "weight", weight, dev);
  check_device_pointer(fn, "bias", bias, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, add_layer_norm_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The kernel's math (residual rounding, statistics, conversions) run on host memory: lets GPU-less
// CI check it against torch. Not a backend: slow, single-threaded, for tests only.
void add_layer_norm_host_py(uint64_t x, uint64_t delta, uint64_t weight, uint64_t bias, uint64_t x_new, uint64_t out,
                            int64_t rows, int64_t dim, double eps, int x_dtype, int w_dtype) {
  const char* fn = "_add_layer_norm_host";
  const AddLayerNormParams p =
      add_layer_norm_params(fn, x, delta, weight, bias, x_new, out, rows, dim, eps, x_dtype, w_dtype);
  raise_status(fn, add_layer_norm_host(p));
}

}  // namespace
}  // namespace fastradio

FASTRADIO_BIND_OP(add_layer_norm) {
  using namespace fastradio;
  m.def("add_layer_norm_fwd", &add_layer_norm_fwd_py, py::arg("x"), py::arg("delta"), py::arg("weight"),
        py::arg("bias"), py::arg("x_new"), py::arg("out"), py::arg("rows"), py::arg("dim"), py::arg("eps"),
        py::arg("x_dtype"), py::arg("w_dtype"), py::arg("tier"), py::arg("stream"),
        "Enqueue add_layer_norm on `stream` (a cudaStream_t as int) of the current device.\n"
        "x, x_new: device pointers to (rows, dim) of dtype code x_dtype; delta, out: (rows, dim) and weight,\n"
        "bias: (dim,) of dtype code w_dtype; all contiguous. delta = 0 means no add (then x_new must be 0).\n"
        "x_new = x + delta (fp32 add, rounded to x_dtype); out = LayerNorm(x_new) * weight + bias with fp32\n"
        "statistics. (x_dtype, w_dtype): equal, or float32 with float16/bfloat16. Raises ValueError for bad\n"
        "arguments, RuntimeError without a driver/device, for a device this build has no kernel for, or on a\n"
        "CUDA error.");
  m.def("_add_layer_norm_host", &add_layer_norm_host_py, py::arg("x"), py::arg("delta"), py::arg("weight"),
        py::arg("bias"), py::arg("x_new"), py::arg("out"), py::arg("rows"), py::arg("dim"), py::arg("eps"),
        py::arg("x_dtype"), py::arg("w_dtype"),
        "Test aid: the add_layer_norm kernel's math on HOST pointers (same arguments, no tier/stream).");
}

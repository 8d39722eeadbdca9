// pybind11 binding of linear (csrc/python/binding.h): argument checks, then the launcher.
#include "python/binding.h"

#include <cstdint>
#include <utility>

#include "linear/linear.h"
#include "linear/linear_host.h"
#include "linear/linear_mma_host.h"

namespace py = pybind11;

namespace fastradio {
namespace {

LinearParams linear_params(const char* fn, uint64_t x, uint64_t weight, uint64_t bias, uint64_t residual,
                           uint64_t out, int64_t n, int64_t m, int64_t k, int activation, int dtype) {
  check_pointer(fn, "x", x);
  check_pointer(fn, "weight", weight);
  check_pointer(fn, "out", out);
  // out may be the residual (each element is read before it is written, by the same thread), but
  // never an operand that other blocks still read.
  if (out == x || out == weight || (bias != 0 && out == bias))
    value_error(cat(fn, ": out must not be x, weight or bias (out may only alias residual), got out = 0x", std::hex,
                    out, " equal to ", out == x ? "x" : out == weight ? "weight" : "bias"));
  check_positive(fn, "n", n);
  check_positive(fn, "m", m);
  check_positive(fn, "k", k);
  check_product(fn, "size n*k", n, k, 1);
  check_product(fn, "size m*k", m, k, 1);
  check_product(fn, "size n*m", n, m, 1);
  // Each dimension fits 32 bits (the kernels' in-tile counters); their products need not.
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"n", n}, {"m", m}, {"k", k}})
    if (v > INT32_MAX) value_error(cat(fn, ": ", name, " must be < 2^31, got ", v));
  if (!is_valid_linear_activation(activation))
    value_error(cat(fn, ": activation must be 0 (none) or 1 (gelu), got ", activation));
  LinearParams p;
  p.dtype = check_dtype(fn, "dtype", dtype);
  p.x = reinterpret_cast<const void*>(x);
  p.weight = reinterpret_cast<const void*>(weight);
  p.bias = reinterpret_cast<const void*>(bias);
  p.residual = reinterpret_cast<const void*>(residual);
  p.out = reinterpret_cast<void*>(out);
  p.n = n;
  p.m = m;
  p.k = k;
  p.activation = LinearActivation(activation);
  return p;
}

void linear_fwd_py(uint64_t x, uint64_t weight, uint64_t bias, uint64_t residual, uint64_t out, int64_t n, int64_t m,
                   int64_t k, int activation, int dtype, int tier, uint64_t stream) {
  const char* fn = "linear_fwd";
  LinearParams p = linear_params(fn, x, weight, bias, residual, out, n, m, k, activation, dtype);
  p.tier = check_tier(fn, "linear", tier);
  if (!linear_tier_takes(p.tier, p.dtype))
    value_error(cat(fn, ": tier ", tier, " (", tier_name(p.tier), ") does not take ", dtype_name(p.dtype), ": ",
                    p.tier == Tier::kMmaSm75 ? "it takes float16 only (Turing tensor cores have no bfloat16; "
                                               "float32 runs on cuda_core)"
                                             : "it takes float16 and bfloat16 (float32 runs on cuda_core: no TF32)"));
  const int dev = require_device(fn, "linear", p.tier);
  check_device_pointer(fn, "x", x, dev);
  check_device_pointer(fn, "weight", weight, dev);
  if (bias != 0) check_device_pointer(fn, "bias", bias, dev);
  if (residual != 0) check_device_pointer(fn, "residual", residual, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, linear_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The cuda_core kernel's block walk and math on host memory: lets GPU-less CI check it against
// torch. Not a backend: slow, single-threaded, for tests only.
void linear_host_py(uint64_t x, uint64_t weight, uint64_t bias, uint64_t residual, uint64_t out, int64_t n, int64_t m,
                    int64_t k, int activation, int dtype) {
  const char* fn = "_linear_host";
  const LinearParams p = linear_params(fn, x, weight, bias, residual, out, n, m, k, activation, dtype);
  raise_status(fn, linear_host(p));
}

// The tensor-core tiers' index math (stage layout, ldmatrix addresses, fragments, output mapping)
// with ldmatrix and mma emulated on host memory: GPU-less CI checks that they compose to x·Wᵀ.
void linear_mma_host_py(uint64_t x, uint64_t weight, uint64_t bias, uint64_t residual, uint64_t out, int64_t n,
                        int64_t m, int64_t k, int activation, int dtype, int config) {
  const char* fn = "_linear_mma_host";
  const LinearParams p = linear_params(fn, x, weight, bias, residual, out, n, m, k, activation, dtype);
  if (p.dtype == DType::kFloat32) value_error(cat(fn, ": dtype must be 1 (float16) or 2 (bfloat16), got 0 (float32)"));
  if (config != 0 && config != 1)
    value_error(cat(fn, ": config must be 0 (128 x 128 tiles) or 1 (64 x 128), got ", config));
  raise_status(fn, linear_mma_host(p, config));
}

int linear_mma_conflicts_py(int config) {
  if (config != 0 && config != 1)
    value_error(cat("_linear_mma_conflicts: config must be 0 (128 x 128 tiles) or 1 (64 x 128), got ", config));
  return linear_mma_conflict_ways(config);
}

}  // namespace
}  // namespace fastradio

FASTRADIO_BIND_OP(linear) {
  using namespace fastradio;
  m.def("linear_fwd", &linear_fwd_py, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("residual"),
        py::arg("out"), py::arg("n"), py::arg("m"), py::arg("k"), py::arg("activation"), py::arg("dtype"),
        py::arg("tier"), py::arg("stream"),
        "Enqueue linear on `stream` (a cudaStream_t as int) of the current device.\n"
        "x: (n, k), weight: (m, k) (nn.Linear layout), bias: (m,) or 0, residual: (n, m) or 0, out: (n, m);\n"
        "device pointers, row-major, all of dtype code `dtype`. out = act(x @ weight.T + bias) + residual with\n"
        "activation 0 (none) or 1 (exact erf gelu), fp32 accumulation and epilogue, one rounding. out may be\n"
        "residual. Tiers: cuda_core (every dtype), mma_sm75 (float16), mma_sm80 (float16, bfloat16),\n"
        "wgmma_sm90a (float16, bfloat16; K % 8 != 0 or x / weight not 16-byte aligned run mma_sm80). Raises\n"
        "ValueError for bad arguments, RuntimeError without a driver/device, for a device this build has no\n"
        "kernel for, or on a CUDA error.");
  m.def("_linear_host", &linear_host_py, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("residual"),
        py::arg("out"), py::arg("n"), py::arg("m"), py::arg("k"), py::arg("activation"), py::arg("dtype"),
        "Test aid: the linear cuda_core kernel's block walk and math on HOST pointers (same arguments, no\n"
        "tier/stream).");
  m.def("_linear_mma_host", &linear_mma_host_py, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("residual"), py::arg("out"), py::arg("n"), py::arg("m"), py::arg("k"), py::arg("activation"),
        py::arg("dtype"), py::arg("config"),
        "Test aid: the tensor-core tiers' tiles on HOST pointers, ldmatrix and mma emulated (float16/bfloat16;\n"
        "config 0: 128 x 128 tiles of mma_sm75 and mma_sm80, 1: mma_sm80's 64 x 128).");
  m.def("_linear_mma_conflicts", &linear_mma_conflicts_py, py::arg("config"),
        "Test aid: the most 16-byte shared-memory accesses of one phase (stage stores, ldmatrix rows) that\n"
        "share a bank group in the tensor-core tiers' swizzled layout (1: conflict-free).");
}

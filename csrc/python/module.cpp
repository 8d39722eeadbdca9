// fastradio._C: the pybind11 binding of the torch-free core (DESIGN.md §5).
//
// It only validates, forwards raw device pointers (Python ints), sizes, dtype/tier codes and the
// caller's stream handle, and turns Status codes and CUDA errors into Python exceptions:
// ValueError for bad arguments (naming what was expected and what came), RuntimeError for a
// missing driver/device, a device this build has no kernel for, or a CUDA failure.
// Nothing here touches CUDA at import time, so the module imports on machines without a GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/convert.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"
#include "add_layer_norm/add_layer_norm.h"
#include "add_layer_norm/add_layer_norm_host.h"
#include "pos_embed/pos_embed.h"
#include "python/build_info.h"

namespace py = pybind11;

namespace fastradio {
namespace {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

std::vector<std::string> split(const std::string& s, char sep = ';') {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    if (ch == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string join(const std::vector<std::string>& v, const char* sep, const char* prefix = "") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + std::string(prefix) + v[i];
  return out;
}

std::string cuda_error_text(cudaError_t e) {
  return cat(cudaGetErrorName(e), " (", int(e), "): ", cudaGetErrorString(e));
}

// --- what this build compiled -------------------------------------------------------------------

const KernelBuild* find_kernel(const std::string& op, const std::string& tier) {
  const BuildInfo& bi = build_info();
  for (int i = 0; i < bi.num_kernels; ++i)
    if (op == bi.kernels[i].op && tier == bi.kernels[i].tier) return &bi.kernels[i];
  return nullptr;
}

std::vector<std::string> compiled_tiers(const std::string& op) {
  std::vector<std::string> out;
  const BuildInfo& bi = build_info();
  for (int i = 0; i < bi.num_kernels; ++i)
    if (op == bi.kernels[i].op) out.push_back(bi.kernels[i].tier);
  return out;
}

// Whether code for `arch` ("86", "90a") runs on compute capability cc (= 10*major + minor):
// SASS runs on the same major at an equal or higher minor; PTX is JIT-compiled for any equal or
// later cc; arch-specific ("a") code of either kind runs only on its exact cc.
bool arch_runs_on(const std::string& arch, bool is_ptx, int cc) {
  const int n = std::stoi(arch);
  if (arch.back() == 'a' || arch.back() == 'f') return n == cc;
  if (is_ptx) return n <= cc;
  return n / 10 == cc / 10 && n % 10 <= cc % 10;
}

// Empty if (op, tier) has a kernel image for compute capability major.minor, else why not.
std::string arch_refusal(const std::string& op, const std::string& tier, int major, int minor) {
  const KernelBuild* kb = find_kernel(op, tier);
  if (kb == nullptr) {
    const auto tiers = compiled_tiers(op);
    return tiers.empty() ? cat(op, " is not compiled in this build")
                         : cat(op, "/", tier, " is not compiled in this build (compiled tiers: ", join(tiers, ", "), ")");
  }
  const int cc = 10 * major + minor;
  const auto sass = split(kb->sass);
  for (const auto& a : sass)
    if (arch_runs_on(a, false, cc)) return "";
  if (arch_runs_on(kb->ptx, true, cc)) return "";
  std::string msg = cat("built without sm_", cc, " (compute capability ", major, ".", minor, ") for ", op, "/", tier,
                        ": this build has SASS for ", join(sass, " ", "sm_"), " and PTX for compute_", kb->ptx,
                        "; rebuild with FASTRADIO_CUDA_ARCHS=", cc);
  if (std::string(build_info().toolchain) == "nvcc" && cc < 75)
    msg += cat(" using the clang toolchain (CUDA 13 nvcc cannot target sm_", cc,
               "; FASTRADIO_TOOLCHAIN=clang, see csrc/README.md)");
  return msg;
}

// --- argument checks (no CUDA) ------------------------------------------------------------------

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

void check_pointer(const char* fn, const char* name, uint64_t p) {
  if (p == 0) value_error(cat(fn, ": ", name, " must be a non-null device pointer, got 0"));
}

void check_positive(const char* fn, const char* name, int64_t v) {
  if (v < 1) value_error(cat(fn, ": ", name, " must be >= 1, got ", v));
}

void check_product(const char* fn, const char* what, int64_t a, int64_t b, int64_t c) {
  if (a > INT64_MAX / b || a * b > INT64_MAX / c)
    value_error(cat(fn, ": ", what, " = ", a, " * ", b, " * ", c, " elements overflows int64"));
}

std::string dtype_choices() {
  std::vector<std::string> v;
  for (int i = 0; i < kNumDTypes; ++i) v.push_back(cat(i, " (", dtype_name(DType(i)), ")"));
  return join(v, ", ");
}

DType check_dtype(const char* fn, const char* name, int code) {
  if (!is_valid_dtype(code)) value_error(cat(fn, ": ", name, " must be one of ", dtype_choices(), ", got ", code));
  return DType(code);
}

Tier check_tier(const char* fn, const char* op, int code) {
  if (!is_valid_tier(code)) {
    std::vector<std::string> v;
    for (int i = 0; i < kNumTiers; ++i) v.push_back(cat(i, " (", tier_name(Tier(i)), ")"));
    value_error(cat(fn, ": tier must be one of ", join(v, ", "), ", got ", code));
  }
  const Tier t = Tier(code);
  if (find_kernel(op, tier_name(t)) == nullptr)
    value_error(cat(fn, ": tier ", code, " (", tier_name(t), ") is not compiled for ", op,
                    " in this build; compiled: ", join(compiled_tiers(op), ", ")));
  return t;
}

// --- device checks -------------------------------------------------------------------------------

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    return 0;
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(cat("cudaGetDeviceCount failed: ", cuda_error_text(e)));
  }
  return n;
}

// The current device, after checking there is one and that (op, tier) has code for it.
int require_device(const char* fn, const char* op, Tier tier) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    throw std::runtime_error(cat(fn, ": no CUDA driver/device (cudaGetDeviceCount: ",
                                 e == cudaSuccess ? std::string("0 devices") : cuda_error_text(e),
                                 "); fastradio's CUDA backend needs an NVIDIA GPU and driver"));
  }
  int dev = 0, major = 0, minor = 0;
  cudaError_t e2 = cudaGetDevice(&dev);
  if (e2 == cudaSuccess) e2 = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e2 == cudaSuccess) e2 = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e2 != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(cat(fn, ": cannot query the current device: ", cuda_error_text(e2)));
  }
  const std::string why = arch_refusal(op, tier_name(tier), major, minor);
  if (!why.empty()) throw std::runtime_error(cat(fn, ": cuda:", dev, ": ", why));
  return dev;
}

// Raw pointers cross here: refuse host memory and memory of another device before any launch.
void check_device_pointer(const char* fn, const char* name, uint64_t p, int dev) {
  cudaPointerAttributes a{};
  const cudaError_t e = cudaPointerGetAttributes(&a, reinterpret_cast<const void*>(p));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    value_error(cat(fn, ": ", name, " = 0x", std::hex, p, std::dec, " is not a CUDA pointer (", cuda_error_text(e), ")"));
  }
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    value_error(cat(fn, ": ", name, " = 0x", std::hex, p, std::dec, " must point to device memory on cuda:", dev,
                    ", got ", a.type == cudaMemoryTypeHost ? "pinned host" : "unregistered (host?)", " memory"));
  if (a.type == cudaMemoryTypeDevice && a.device != dev)
    value_error(cat(fn, ": ", name, " is on cuda:", a.device, " but the current device is cuda:", dev));
}

void raise_status(const char* fn, Status s) {
  if (s == Status::kSuccess) return;
  if (s == Status::kCudaError) {
    const cudaError_t e = last_cuda_error();
    last_cuda_error() = cudaSuccess;
    throw std::runtime_error(cat(fn, ": CUDA error: ", cuda_error_text(e)));
  }
  value_error(cat(fn, ": ", status_name(s)));
}

// --- ops -----------------------------------------------------------------------------------------

PosEmbedParams pos_embed_params(const char* fn, uint64_t table, uint64_t out, int64_t grid, int64_t dim,
                                int64_t h, int64_t w, int out_dtype) {
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
  return p;
}

void pos_embed_fwd_py(uint64_t table, uint64_t out, int64_t grid, int64_t dim, int64_t h, int64_t w,
                      int out_dtype, int tier, uint64_t stream) {
  const char* fn = "pos_embed_fwd";
  PosEmbedParams p = pos_embed_params(fn, table, out, grid, dim, h, w, out_dtype);
  p.tier = check_tier(fn, "pos_embed", tier);
  const int dev = require_device(fn, "pos_embed", p.tier);
  check_device_pointer(fn, "table", table, dev);
  check_device_pointer(fn, "out", out, dev);
  raise_status(fn, pos_embed_fwd(p, reinterpret_cast<cudaStream_t>(stream)));
}

// The kernel's math (scale, taps, blend, conversions) run on host memory: lets GPU-less CI check
// it against torch. Not a backend: slow, single-threaded, for tests only.
void pos_embed_host_py(uint64_t table, uint64_t out, int64_t grid, int64_t dim, int64_t h, int64_t w, int out_dtype) {
  const PosEmbedParams p = pos_embed_params("_pos_embed_host", table, out, grid, dim, h, w, out_dtype);
  const float scale = pos_embed_scale(p.grid, std::max(p.h, p.w));
  for (int64_t r = 0; r < p.h; ++r) {
    const PosEmbedTap ty = pos_embed_tap(r, scale, p.grid);
    for (int64_t c = 0; c < p.w; ++c) {
      const PosEmbedTap tx = pos_embed_tap(c, scale, p.grid);
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

py::dict build_info_py() {
  const BuildInfo& bi = build_info();
  py::dict d;
  d["version"] = bi.version;
  d["toolchain"] = bi.toolchain;
  d["compiler"] = bi.compiler;
  d["cuda_version"] = cat(CUDART_VERSION / 1000, ".", (CUDART_VERSION % 1000) / 10);
  d["cuda_toolkit"] = bi.cuda_toolkit;
  d["host_compiler"] = bi.host_compiler;
  d["build_type"] = bi.build_type;
  d["archs_requested_origin"] = bi.archs_origin;
  std::vector<std::string> sass_all, ptx_all;
  auto add_unique = [](std::vector<std::string>& v, const std::string& a) {
    for (const auto& x : v)
      if (x == a) return;
    v.push_back(a);
  };
  py::dict tiers, kernels;
  for (int i = 0; i < bi.num_kernels; ++i) {
    const KernelBuild& k = bi.kernels[i];
    if (!tiers.contains(k.op)) {
      tiers[k.op] = py::list();
      kernels[k.op] = py::dict();
    }
    tiers[k.op].cast<py::list>().append(k.tier);
    py::dict entry;
    py::list sass;
    for (const auto& a : split(k.sass)) {
      sass.append(a);
      add_unique(sass_all, a);
    }
    entry["sass"] = sass;
    py::list ptx;
    ptx.append(k.ptx);
    entry["ptx"] = ptx;
    add_unique(ptx_all, k.ptx);
    kernels[k.op].cast<py::dict>()[k.tier] = entry;
  }
  py::list archs;
  for (const auto& a : split(bi.archs)) archs.append(a);
  d["archs"] = archs;
  d["sass_archs"] = py::cast(sass_all);
  d["ptx_archs"] = py::cast(ptx_all);
  d["tiers"] = tiers;
  d["kernels"] = kernels;
  return d;
}

}  // namespace
}  // namespace fastradio

PYBIND11_MODULE(_C, m) {
  using namespace fastradio;
  m.doc() = "fastradio's C++/CUDA core (torch-free). Use it through fastradio.backends.cuda.";

  m.def("build_info", &build_info_py,
        "What this build compiled: toolchain, compiler, cuda_version (headers), archs (requested and\n"
        "supported), sass_archs, ptx_archs, tiers {op: [tier, ...]}, kernels {op: {tier: {sass, ptx}}},\n"
        "build_type. Generated at configure time.");
  m.def("dtype_codes", [] {
    py::dict d;
    for (int i = 0; i < kNumDTypes; ++i) d[dtype_name(DType(i))] = i;
    return d;
  }, "{dtype name: code} of the element types the binding takes, e.g. {'float32': 0, ...}.");
  m.def("tiers", [] {
    py::dict d;
    for (int i = 0; i < kNumTiers; ++i) d[tier_name(Tier(i))] = i;
    return d;
  }, "{tier name: code} of every known tier (compiled or not; see build_info()['tiers']).");
  m.def("device_count", &device_count,
        "Number of CUDA devices; 0 when there is no driver or no device (never raises for those).");
  m.def("check_arch", &arch_refusal, py::arg("op"), py::arg("tier"), py::arg("major"), py::arg("minor"),
        "'' if this build has a kernel image of op/tier for compute capability major.minor, else why not.");
  m.def("pos_embed_fwd", &pos_embed_fwd_py, py::arg("table"), py::arg("out"), py::arg("grid"), py::arg("dim"),
        py::arg("h"), py::arg("w"), py::arg("out_dtype"), py::arg("tier"), py::arg("stream"),
        "Enqueue pos_embed on `stream` (a cudaStream_t as int) of the current device.\n"
        "table: device pointer to (grid, grid, dim) fp32, contiguous; out: device pointer to (h*w, dim)\n"
        "of dtype code out_dtype, contiguous. Resize to (m, m), m = max(h, w), bilinear, align_corners=True,\n"
        "fp32 math, top-left h x w crop. Raises ValueError for bad arguments, RuntimeError without a\n"
        "driver/device, for a device this build has no kernel for, or on a CUDA error.");
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
  m.def("_pos_embed_host", &pos_embed_host_py, py::arg("table"), py::arg("out"), py::arg("grid"), py::arg("dim"),
        py::arg("h"), py::arg("w"), py::arg("out_dtype"),
        "Test aid: the pos_embed kernel's math on HOST pointers (same arguments, no tier/stream).");
}

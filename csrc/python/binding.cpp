// Shared pieces of the pybind11 binding; see binding.h.
#include "python/binding.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace py = pybind11;

namespace fastradio {

std::vector<std::string> split(const std::string& s, char sep) {
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

std::string join(const std::vector<std::string>& v, const char* sep, const char* prefix) {
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
static bool arch_runs_on(const std::string& arch, bool is_ptx, int cc) {
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

void value_error(const std::string& msg) { throw py::value_error(msg); }

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

static std::string dtype_choices() {
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

// --- registration -------------------------------------------------------------------------------

static std::vector<std::pair<std::string, BindFn>>& registry() {
  static std::vector<std::pair<std::string, BindFn>> r;
  return r;
}

int register_binding(const char* op, BindFn fn) {
  registry().emplace_back(op, fn);
  return 0;
}

void bind_all_ops(py::module_& m) {
  auto r = registry();
  std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [op, fn] : r) fn(m);
}

}  // namespace fastradio

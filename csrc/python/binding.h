// Shared pieces of the pybind11 binding (fastradio._C): argument checks that raise Python
// exceptions naming what was expected and what came, the device/arch checks done before any
// launch, and the per-op registration. Each op binds itself in csrc/<op>/<op>_binding.cpp with
//
//   FASTRADIO_BIND_OP(my_op) { m.def("my_op_fwd", ...); }
//
// and lists that file in its CMakeLists.txt (fastradio_add_binding). Binding code is the only
// Python-specific code: the kernels are torch-free and Python-free (DESIGN.md §5).
#pragma once

#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"
#include "python/build_info.h"

namespace fastradio {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

std::vector<std::string> split(const std::string& s, char sep = ';');
std::string join(const std::vector<std::string>& v, const char* sep, const char* prefix = "");
std::string cuda_error_text(cudaError_t e);

// --- what this build compiled -------------------------------------------------------------------
const KernelBuild* find_kernel(const std::string& op, const std::string& tier);
std::vector<std::string> compiled_tiers(const std::string& op);
// Empty if (op, tier) has a kernel image for compute capability major.minor, else why not.
std::string arch_refusal(const std::string& op, const std::string& tier, int major, int minor);

// --- argument checks (no CUDA) ------------------------------------------------------------------
[[noreturn]] void value_error(const std::string& msg);
void check_pointer(const char* fn, const char* name, uint64_t p);
void check_positive(const char* fn, const char* name, int64_t v);
void check_product(const char* fn, const char* what, int64_t a, int64_t b, int64_t c);
DType check_dtype(const char* fn, const char* name, int code);
// A known tier code that this build compiled for `op`.
Tier check_tier(const char* fn, const char* op, int code);

// --- device checks ------------------------------------------------------------------------------
// Number of CUDA devices; 0 without a driver or device.
int device_count();
// The current device, after checking there is one and that (op, tier) has code for it.
int require_device(const char* fn, const char* op, Tier tier);
// Raw pointers cross the binding: refuse host memory and memory of another device.
void check_device_pointer(const char* fn, const char* name, uint64_t p, int dev);
// Status -> exception (ValueError for argument codes, RuntimeError for CUDA errors).
void raise_status(const char* fn, Status s);

// --- registration -------------------------------------------------------------------------------
using BindFn = void (*)(pybind11::module_&);
// Called from static initialisers (FASTRADIO_BIND_OP); returns a dummy value.
int register_binding(const char* op, BindFn fn);
// Runs every registered binding, in op-name order (deterministic docs and errors).
void bind_all_ops(pybind11::module_& m);

}  // namespace fastradio

#define FASTRADIO_BIND_OP(op)                                                                 \
  static void fastradio_bind_##op(pybind11::module_& m);                                     \
  [[maybe_unused]] static const int fastradio_bind_registered_##op =                         \
      ::fastradio::register_binding(#op, &fastradio_bind_##op);                              \
  static void fastradio_bind_##op(pybind11::module_& m)

// fastradio._C: the pybind11 binding of the torch-free core (DESIGN.md §5).
//
// It only validates, forwards raw device pointers (Python ints), sizes, dtype/tier codes and the
// caller's stream handle, and turns Status codes and CUDA errors into Python exceptions:
// ValueError for bad arguments (naming what was expected and what came), RuntimeError for a
// missing driver/device, a device this build has no kernel for, or a CUDA failure.
// Nothing here touches CUDA at import time, so the module imports on machines without a GPU.
// This file binds what is common to every op; each op binds itself in csrc/<op>/<op>_binding.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "python/binding.h"

namespace py = pybind11;

namespace fastradio {
namespace {

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
  bind_all_ops(m);
}

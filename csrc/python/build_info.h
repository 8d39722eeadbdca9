// What this build compiled; generated at configure time (build_info.cpp.in), read by
// _C.build_info() and by the binding's arch check.
#pragma once

namespace fastradio {

struct KernelBuild {
  const char* op;    // e.g. "pos_embed"
  const char* tier;  // a tier_name(), e.g. "cuda_core"
  const char* sass;  // ";"-separated archs with SASS, e.g. "75;80;90a"
  const char* ptx;   // the arch whose PTX is embedded, e.g. "120"
};

struct BuildInfo {
  const char* version;
  const char* toolchain;         // "nvcc" | "clang"
  const char* compiler;          // e.g. "NVIDIA 13.0.88", "Clang 19.1.7"
  const char* cuda_toolkit;      // toolkit version CMake found, e.g. "13.0.88"
  const char* host_compiler;     // e.g. "GNU 12.2.0"
  const char* build_type;        // e.g. "Release"
  const char* archs;             // ";"-separated archs requested and supported
  const char* archs_origin;      // "default" | "FASTRADIO_CUDA_ARCHS" | "environment FASTRADIO_CUDA_ARCHS"
  const KernelBuild* kernels;
  int num_kernels;
};

const BuildInfo& build_info();

}  // namespace fastradio

// Code tiers (DESIGN.md §5). A tier is a runtime parameter of every launcher, not only an
// `#if __CUDA_ARCH__`, so one modern GPU can run and test every tier it can execute.
// Each tier has the lowest arch it can run on; CMake compiles a tier of an op only for archs
// at or above it (csrc/cmake/FastradioCuda.cmake, fastradio_add_kernel MIN_ARCH).
// New tiers are appended (codes are stable); Python reads them from _C.tiers().
#pragma once

namespace fastradio {

enum class Tier : int {
  kCudaCore = 0,     // plain FMA code, every arch from sm_60
  kMmaSm75 = 1,      // mma.sync fp16 (m16n8k8), ldmatrix: sm_75+
  kMmaSm80 = 2,      // mma.sync fp16/bf16 (m16n8k16), cp.async: sm_80+
  kWgmmaSm90a = 3,   // wgmma + TMA: sm_90a only
  kTcgen05Sm100a = 4 // tcgen05 + TMEM: sm_100a only
};

inline constexpr int kNumTiers = 5;

inline bool is_valid_tier(int code) { return code >= 0 && code < kNumTiers; }

inline const char* tier_name(Tier t) {
  switch (t) {
    case Tier::kCudaCore: return "cuda_core";
    case Tier::kMmaSm75: return "mma_sm75";
    case Tier::kMmaSm80: return "mma_sm80";
    case Tier::kWgmmaSm90a: return "wgmma_sm90a";
    case Tier::kTcgen05Sm100a: return "tcgen05_sm100a";
  }
  return "unknown";
}

}  // namespace fastradio

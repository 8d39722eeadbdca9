// linear, wgmma_sm90a tier (linear_sm90a.cu): its tile sizes, shared-memory budget and the host
// checks that decide whether a call can take it (the launcher in linear.cu falls back otherwise).
#pragma once

#include <cstdint>

#include "linear/linear.h"

namespace fastradio {
namespace linear_sm90a {

inline constexpr int kRows = 128;       // tokens per output tile (two consumer warpgroups of 64)
inline constexpr int kCols = 128;       // features per output tile: wgmma m64n128k16
inline constexpr int kK = 64;           // k-values per stage: one 128-byte swizzle span of fp16/bf16
inline constexpr int kStages = 4;
inline constexpr int kConsumers = 2;    // consumer warpgroups
inline constexpr int kThreads = 128 * (1 + kConsumers);
inline constexpr int kAccRegs = kCols / 2;  // fp32 accumulators per consumer thread
inline constexpr int kXBytes = kRows * kK * 2;
inline constexpr int kWBytes = kCols * kK * 2;
inline constexpr int kStageBytes = kXBytes + kWBytes;  // 32 KiB
inline constexpr int kPipeBytes = kStages * kStageBytes;
inline constexpr int kOutHalfBytes = 16 * 64 * 2;      // a 16 x 64 TMA store box
inline constexpr int kOutWarpBytes = 2 * kOutHalfBytes;  // a consumer warp's 16 x 128 staging tile
inline constexpr int kOutBytes = 4 * kConsumers * kOutWarpBytes;
inline constexpr int kSmemAlloc = kPipeBytes + kOutBytes + 1024;  // + 1 KiB to align the stages to 1024
static_assert(kK * 2 == 128, "a stage row is one 128-byte swizzle span");

}  // namespace linear_sm90a

// Whether the tier can run this call: tensor maps over x and W need 16-byte aligned bases and
// row strides (K % 8 == 0). Otherwise linear.cu runs mma_sm80 (or cuda_core) instead.
inline bool linear_sm90a_takes(const LinearParams& p) {
  const auto al16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  return p.k % 8 == 0 && al16(p.x) && al16(p.weight);
}

// Whether the epilogue may store through a tensor map (else masked global stores).
inline bool linear_sm90a_tma_out(const LinearParams& p) {
  return p.m % 8 == 0 && reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
}

}  // namespace fastradio

// attention, wgmma_sm90a tier (attention_sm90a.cu): tile sizes, the shared-memory plan and the
// host check that decides whether a call can take it (attention.cu falls back to mma_sm80).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "attention/attention.h"

namespace fastradio {
namespace attention_sm90a {

inline constexpr int kBlockM = 128;    // query rows per block: two consumer warpgroups of 64
inline constexpr int kBlockN = 128;    // keys per K/V stage (wgmma N of Q·Kᵀ, 8 k16 steps of P·V)
inline constexpr int kStages = 3;      // K/V stages: tile j's S and tile j-1's P·V read two, the third loads
inline constexpr int kTurnBarrier = 1; // named barriers 1, 2: the consumers' ping-pong turns
inline constexpr int kConsumers = 2;   // consumer warpgroups
inline constexpr int kThreads = 128 * (1 + kConsumers);
inline constexpr int kMain = 64;       // head dims in the 128-byte-swizzled part of a row
inline constexpr int kTailCols = 16;   // head dims 64..79 (Dh 72 / 80): a 32-byte-swizzled part

// Per head dim: a tile of `rows` rows is `rows` x 128 bytes (dims 0..63) and, for Dh > 64, a
// second region of `rows` x 32 bytes (dims 64..79; for Dh 72 the TMA zero-fills 72..79, which is
// the zero K tail of the last k16 step of Q·Kᵀ). Every region starts on a 1024-byte boundary
// (the 128-byte swizzle's repeat).
template <int kHeadDim>
struct Plan {
  static constexpr bool kTail = kHeadDim > kMain;
  static constexpr int kTailN = kHeadDim - kMain;       // P·V's second wgmma: N = 8 or 16
  static constexpr int kMainBytes = kBlockM * 128;      // kBlockM == kBlockN: one size for Q, K, V
  static constexpr int kTailBytes = kTail ? kBlockM * 32 : 0;
  static constexpr int kTileBytes = kMainBytes + kTailBytes;  // one of Q / K / V (multiple of 1024)
  static constexpr int kQ = 0;                                // offsets from the aligned base
  static constexpr int kStage0 = kTileBytes;                  // stage s: K at kStage0 + s * 2 tiles, V after it
  static constexpr int kSmemBytes = kTileBytes * (1 + 2 * kStages);
  static constexpr int kSmemAlloc = kSmemBytes + 1024;        // + 1 KiB to align the base to 1024
  static_assert(kTileBytes % 1024 == 0, "regions on 1024-byte boundaries");
};

}  // namespace attention_sm90a

// TMA coordinates are int32: a row coordinate (tile start + up to 2 * kBlockM) must fit.
inline bool attention_sm90a_takes(const AttentionParams& p) {
  return p.rows <= int64_t(INT32_MAX) - 2 * attention_sm90a::kBlockM && 3 * p.num_heads <= int64_t(INT32_MAX);
}

// The consumers' ping-pong (DESIGN decision 30) is on unless the environment variable
// FASTRADIO_SM90A_ATTENTION_PINGPONG is "0": an A/B switch for the first GPU measurements
// (benchmarks/gpu_check.py times both), read at every launch. Not a tuning knob for users.
inline bool attention_sm90a_pingpong() {
  const char* v = std::getenv("FASTRADIO_SM90A_ATTENTION_PINGPONG");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

Status attention_wgmma_sm90a(const AttentionParams& params, cudaStream_t stream);  // attention_sm90a.cu

}  // namespace fastradio

// The cuda_core tier's tile geometry and per-thread index math, shared by the kernel (linear.cu)
// and its host twin (linear_host.h), so that the twin walks exactly the kernel's mapping.
#pragma once

#include <cstdint>

#include "linear/linear.h"

namespace fastradio {
namespace linear_cc {  // the cuda_core tier

inline constexpr int kThreads = 256;
inline constexpr int kTile = 128;            // output rows (tokens) and columns (features) per block
inline constexpr int kTileK = 8;             // reduction step
inline constexpr int kSmemStride = kTile + 4;  // floats per k-row: keeps float4 alignment, halves store conflicts

// Global loads take 4 consecutive k-values (8 or 16 bytes) when K % 4 == 0 and x and W are
// aligned to that, else one element at a time.
inline bool vector_loads(const LinearParams& p) {
  const int64_t bytes = 4 * dtype_size(p.dtype);
  return p.k % 4 == 0 && reinterpret_cast<uintptr_t>(p.x) % bytes == 0 &&
         reinterpret_cast<uintptr_t>(p.weight) % bytes == 0;
}

// Which chunks of a 128 x kTileK operand tile a thread loads, with kV k-values per chunk:
// consecutive threads take consecutive chunks of a row (coalesced); a thread's kChunks chunks sit
// kRowStep rows apart at the same k.
template <int kV>
struct LoadMap {
  static constexpr int kChunksPerRow = kTileK / kV;
  static constexpr int kChunks = kTile * kChunksPerRow / kThreads;
  static constexpr int kRowStep = kThreads / kChunksPerRow;
  static_assert(kV == 1 || kV == 4, "chunks are one element or four");
  static_assert(kThreads % kChunksPerRow == 0 && kTile * kChunksPerRow % kThreads == 0, "whole chunks");

  static FASTRADIO_HD int row(int thread, int i) { return thread / kChunksPerRow + i * kRowStep; }
  static FASTRADIO_HD int k(int thread) { return (thread % kChunksPerRow) * kV; }
};

// Tile row of register-block row i (0..7) of a thread: 4 consecutive rows at 4·ty and 4 more at
// 64 + 4·ty (ty = thread / 16), so each half is one float4 of the k-major shared tile.
FASTRADIO_HD int block_row(int thread, int i) { return (i < 4 ? 0 : 64) + 4 * (thread / 16) + (i & 3); }

// Tile column of register-block column j (0..7): likewise with tx = thread % 16.
FASTRADIO_HD int block_col(int thread, int j) { return (j < 4 ? 0 : 64) + 4 * (thread % 16) + (j & 3); }

}  // namespace linear_cc
}  // namespace fastradio

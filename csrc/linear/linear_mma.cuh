// What the tensor-core tiers of linear share (linear_sm75.cu, linear_sm80.cu): the block and warp
// tiles, the swizzled shared-memory layout, the global -> shared chunk copies, the ldmatrix
// fragment loads and the epilogue. The tiers differ only in how a stage reaches shared memory
// (registers + double buffer on sm_75, a cp.async pipeline on sm_80) and in the mma shape.
//
// Operands: x (N, K) and W (M, K) are both K-contiguous, which is exactly the "row" A and "col" B
// layout of mma.sync (common/ptx.h): non-transposed ldmatrix gives both fragments, W is never
// transposed. A stage holds kRows x 32 k-values of x and kCols x 32 of W, fp16/bf16, each row 64
// bytes = four 16-byte chunks. Chunk c of row r is stored at chunk c ^ ((r >> 1) & 3): the eight
// rows one ldmatrix matrix reads (r = 8i..8i+7, same c) then fall on eight distinct 16-byte bank
// groups (4r + c' mod 8 takes every value), so fragment loads are conflict-free, and a warp's
// 16-byte stores of 8 rows x 4 chunks fill four whole 128-byte wavefronts.
//
// Warps: kWarpsR x kWarpsC, each owning a 64 x 32 output tile = 4 x 4 mma tiles of 16 x 8 (64 fp32
// accumulators per thread).
#pragma once

#include <atomic>
#include <cstdint>

#include "common/arch.h"
#include "common/ptx.h"
#include "linear/linear.h"

namespace fastradio {
namespace linear_mma {

template <int kWarpsR_, int kWarpsC_, int kStages_>
struct Config {
  static constexpr int kWarpsR = kWarpsR_;
  static constexpr int kWarpsC = kWarpsC_;
  static constexpr int kStages = kStages_;
  static constexpr int kWarpRows = 64;
  static constexpr int kWarpCols = 32;
  static constexpr int kRows = kWarpsR * kWarpRows;  // output rows (tokens) per block
  static constexpr int kCols = kWarpsC * kWarpCols;  // output columns (features) per block
  static constexpr int kK = 32;                      // k-values per stage
  static constexpr int kChunksPerRow = kK / 8;       // 16-byte chunks of 8 fp16/bf16
  static constexpr int kThreads = 32 * kWarpsR * kWarpsC;
  static constexpr int kMi = kWarpRows / 16;  // m16 tiles per warp
  static constexpr int kNi = kWarpCols / 8;   // n8 tiles per warp
  static constexpr int kXElems = kRows * kK;  // per stage
  static constexpr int kWElems = kCols * kK;
  static constexpr int kStageElems = kXElems + kWElems;
  static constexpr int kPipeBytes = kStages * kStageElems * 2;
  // The staged epilogue (mma_sm80): the block's fp32 outputs in shared memory, rows padded by 8
  // floats so that the warps' 8-byte accumulator stores are conflict-free, then read back by
  // threads that each own 4 + 4 columns of a row (one float4 each, 8 consecutive threads per
  // 128-byte phase): coalesced stores and no accumulators live during the GELU.
  static constexpr int kOutStride = kCols + 8;
  static constexpr int kOutBytes = kRows * kOutStride * 4;
  static constexpr int kOutRowsPerPass = kThreads / 16;
  static constexpr int kOutPasses = kRows / kOutRowsPerPass;
  static constexpr int kXChunks = kRows * kChunksPerRow / kThreads;  // 16-byte chunks per thread per stage
  static constexpr int kWChunks = kCols * kChunksPerRow / kThreads;
  static_assert(kRows * kChunksPerRow % kThreads == 0 && kCols * kChunksPerRow % kThreads == 0,
                "whole chunks per thread");
  static_assert(kK == 32, "swizzle() assumes 64-byte rows of four chunks");
  static_assert(kNi % 2 == 0, "B fragments come in pairs of n8 tiles");
  static_assert(kCols == 128 && kRows % kOutRowsPerPass == 0, "staged epilogue: 16 threads x 8 columns per row");
};

// The tile configs of the tiers (the host twin, linear_mma_host.h, walks the same).
using Sm80Big = Config<2, 4, 4>;    // 128 x 128, 8 warps, 4 stages: 64 KiB
using Sm80Small = Config<1, 4, 4>;  // 64 x 128, 4 warps, 4 stages: 48 KiB
using Sm75Tile = Config<2, 4, 2>;   // 128 x 128, 8 warps, 2 stages: 32 KiB (static)

// --- index math shared by the kernels and the host twin --------------------------------------------

// A 16-byte chunk of an operand tile: row r, chunk c (k-values 8c..8c+7 of the stage).
struct Chunk {
  int r;
  int c;
};

// Element offset of chunk (r, c) in an operand tile (see the swizzle above).
FASTRADIO_HD int swizzle(Chunk ch) { return ch.r * 32 + ((ch.c ^ ((ch.r >> 1) & 3)) << 3); }

// Chunk i of thread `thread`'s share of a tile: consecutive threads take the four chunks of a row
// (64 contiguous bytes of global memory), then the next row.
template <class C>
FASTRADIO_HD Chunk chunk_of(int thread, int i) {
  const int id = thread + i * C::kThreads;
  return Chunk{id >> 2, id & 3};
}

// The x-tile chunk whose address `lane` gives to the ldmatrix_x4 of A fragment (m16 tile mi, k16
// step ks): lanes 0-15 rows 0-15 at k 0-7, lanes 16-31 the same rows at k 8-15, i.e. matrices
// (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = registers a[0..3] of ptx.h's picture.
template <class C>
FASTRADIO_HD Chunk a_chunk(int warp_r, int lane, int mi, int ks) {
  return Chunk{warp_r * C::kWarpRows + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)};
}

// The W-tile chunk whose address `lane` gives to the ldmatrix_x4 of the B fragments of n8 tiles
// 2nj and 2nj + 1 (W rows are the output columns n): matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
// (n 8-15, k 0-7), (n 8-15, k 8-15) = b[2nj][0..1], b[2nj + 1][0..1].
template <class C>
FASTRADIO_HD Chunk b_chunk(int warp_c, int lane, int nj, int ks) {
  const int q = lane >> 3;
  return Chunk{warp_c * C::kWarpCols + nj * 16 + (q >> 1) * 8 + (lane & 7), ks * 2 + (q & 1)};
}

// Block-tile (row, column) of accumulator e (0..3) of mma tile (mi, ni) held by `lane` (ptx.h's
// C picture: e = 0, 1 at row g, columns 2t, 2t + 1; e = 2, 3 at row g + 8).
struct Cell {
  int row;
  int col;
};

template <class C>
FASTRADIO_HD Cell acc_cell(int warp_r, int warp_c, int lane, int mi, int ni, int e) {
  return Cell{warp_r * C::kWarpRows + mi * 16 + (lane >> 2) + 8 * (e >> 1),
              warp_c * C::kWarpCols + ni * 8 + 2 * (lane & 3) + (e & 1)};
}

// Staged epilogue: block-tile (row, first of 4 columns) that `thread` finishes in pass `pass`,
// half `half` (columns 4(thread % 16) + {0..3} and 64 + the same).
template <class C>
FASTRADIO_HD Cell out_cell(int thread, int pass, int half) {
  return Cell{pass * C::kOutRowsPerPass + thread / 16, half * 64 + 4 * (thread % 16)};
}

#if defined(FASTRADIO_DEVICE_CODE)

// One 16-byte chunk (k-values k..k+7 of `row`) of a (rows, K) row-major fp16/bf16 matrix, zeros
// outside it. kAligned: K % 8 == 0 and src 16-byte aligned, so a chunk is wholly in or out and
// one vector load; else eight predicated 2-byte loads (any K, any alignment).
template <bool kAligned>
__device__ __forceinline__ uint4 load_chunk(const uint16_t* __restrict__ src, int64_t rows, int64_t K, int64_t row,
                                            int64_t k) {
  if (row >= rows) return make_uint4(0u, 0u, 0u, 0u);
  const uint16_t* p = src + row * K + k;
  if constexpr (kAligned) {
    return k < K ? __ldg(reinterpret_cast<const uint4*>(p)) : make_uint4(0u, 0u, 0u, 0u);
  } else {
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const uint32_t lo = k + 2 * e < K ? __ldg(reinterpret_cast<const unsigned short*>(p + 2 * e)) : 0u;
      const uint32_t hi = k + 2 * e + 1 < K ? __ldg(reinterpret_cast<const unsigned short*>(p + 2 * e + 1)) : 0u;
      w[e] = lo | (hi << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// A fragments of the warp's kMi m16 tiles for k16 step `ks` of the stage (see a_chunk).
template <class C>
__device__ __forceinline__ void load_a(const uint16_t* xs, int warp_r, int lane, int ks, uint32_t (&a)[C::kMi][4]) {
#pragma unroll
  for (int mi = 0; mi < C::kMi; ++mi) ptx::ldmatrix_x4(a[mi], xs + swizzle(a_chunk<C>(warp_r, lane, mi, ks)));
}

// B fragments of the warp's kNi n8 tiles, two per ldmatrix_x4 (see b_chunk).
template <class C>
__device__ __forceinline__ void load_b(const uint16_t* ws, int warp_c, int lane, int ks, uint32_t (&b)[C::kNi][2]) {
#pragma unroll
  for (int nj = 0; nj < C::kNi / 2; ++nj) {
    uint32_t t[4];
    ptx::ldmatrix_x4(t, ws + swizzle(b_chunk<C>(warp_c, lane, nj, ks)));
    b[2 * nj][0] = t[0];
    b[2 * nj][1] = t[1];
    b[2 * nj + 1][0] = t[2];
    b[2 * nj + 1][1] = t[3];
  }
}

// The direct epilogue (mma_sm75) of the warp's accumulators (ptx.h's C picture: c[0..1] at row g, columns 2t, 2t+1;
// c[2..3] at row g + 8): bias, activation, residual, one rounding. Column pairs are one 4-byte
// access when `vec2` (M even, every pointer 4-byte aligned), else two predicated elements.
template <DType kT, class C>
__device__ __forceinline__ void epilogue(const LinearParams& p, const float (&acc)[C::kMi][C::kNi][4], int64_t row0,
                                         int64_t col0, int warp_r, int warp_c, int lane, bool vec2) {
  const uint16_t* __restrict__ bias = static_cast<const uint16_t*>(p.bias);  // (m,) or null
  const uint16_t* residual = static_cast<const uint16_t*>(p.residual);       // (n, m) or null; may be out
  uint16_t* out = static_cast<uint16_t*>(p.out);                             // (n, m)
#pragma unroll
  for (int ni = 0; ni < C::kNi; ++ni) {
    const int64_t col = col0 + acc_cell<C>(warp_r, warp_c, lane, 0, ni, 0).col;
    if (col >= p.m) continue;
    const bool pair = vec2;  // M even: col < M implies col + 1 < M
    const bool second = col + 1 < p.m;
    float b0 = 0.0f, b1 = 0.0f;
    if (bias != nullptr) {
      if (pair) {
        const uint32_t w = __ldg(reinterpret_cast<const unsigned int*>(bias + col));
        b0 = Elem<kT>::to_float(uint16_t(w)), b1 = Elem<kT>::to_float(uint16_t(w >> 16));
      } else {
        b0 = Elem<kT>::to_float(bias[col]);
        if (second) b1 = Elem<kT>::to_float(bias[col + 1]);
      }
    }
#pragma unroll
    for (int mi = 0; mi < C::kMi; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = row0 + acc_cell<C>(warp_r, warp_c, lane, mi, ni, 2 * h).row;
        if (row >= p.n) continue;
        const int64_t at = row * p.m + col;
        float r0 = 0.0f, r1 = 0.0f;
        if (residual != nullptr) {
          if (pair) {
            const uint32_t w = *reinterpret_cast<const unsigned int*>(residual + at);
            r0 = Elem<kT>::to_float(uint16_t(w)), r1 = Elem<kT>::to_float(uint16_t(w >> 16));
          } else {
            r0 = Elem<kT>::to_float(residual[at]);
            if (second) r1 = Elem<kT>::to_float(residual[at + 1]);
          }
        }
        const uint16_t o0 = Elem<kT>::from_float(linear_epilogue(acc[mi][ni][2 * h], b0, p.activation, r0));
        const uint16_t o1 = Elem<kT>::from_float(linear_epilogue(acc[mi][ni][2 * h + 1], b1, p.activation, r1));
        if (pair) {
          *reinterpret_cast<unsigned int*>(out + at) = uint32_t(o0) | (uint32_t(o1) << 16);
        } else {
          out[at] = o0;
          if (second) out[at + 1] = o1;
        }
      }
    }
  }
}

// The staged epilogue (see Config::kOutStride): accumulators -> shared tile (acc_cell), barrier,
// then each thread's 4-column groups (out_cell): bias, activation, residual, one rounding. Four
// columns are one 8-byte access when `vec4` (M % 4 == 0, every pointer 8-byte aligned), else
// predicated elements. `smem` is the pipeline's, free once every warp is past its last stage.
template <DType kT, class C>
__device__ __forceinline__ void epilogue_staged(const LinearParams& p, const float (&acc)[C::kMi][C::kNi][4],
                                                float* smem, int64_t row0, int64_t col0, int warp_r, int warp_c,
                                                int lane, bool vec4) {
  __syncthreads();  // every warp is done with the pipeline's stages
#pragma unroll
  for (int mi = 0; mi < C::kMi; ++mi)
#pragma unroll
    for (int ni = 0; ni < C::kNi; ++ni)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const Cell cell = acc_cell<C>(warp_r, warp_c, lane, mi, ni, 2 * h);
        *reinterpret_cast<float2*>(smem + cell.row * C::kOutStride + cell.col) =
            make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
      }
  __syncthreads();
  const uint16_t* __restrict__ bias = static_cast<const uint16_t*>(p.bias);  // (m,) or null
  const uint16_t* residual = static_cast<const uint16_t*>(p.residual);       // (n, m) or null; may be out
  uint16_t* out = static_cast<uint16_t*>(p.out);                             // (n, m)
  const int thread = int(threadIdx.x);
  float b[2][4];  // this thread's columns are the same in every pass
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t col = col0 + out_cell<C>(thread, 0, half).col;
#pragma unroll
    for (int j = 0; j < 4; ++j) b[half][j] = 0.0f;
    if (bias == nullptr || col >= p.m) continue;
    if (vec4) {
      const uint2 w = __ldg(reinterpret_cast<const uint2*>(bias + col));
      b[half][0] = Elem<kT>::to_float(uint16_t(w.x)), b[half][1] = Elem<kT>::to_float(uint16_t(w.x >> 16));
      b[half][2] = Elem<kT>::to_float(uint16_t(w.y)), b[half][3] = Elem<kT>::to_float(uint16_t(w.y >> 16));
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (col + j < p.m) b[half][j] = Elem<kT>::to_float(bias[col + j]);
    }
  }
#pragma unroll 1
  for (int pass = 0; pass < C::kOutPasses; ++pass) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const Cell cell = out_cell<C>(thread, pass, half);
      const int64_t row = row0 + cell.row, col = col0 + cell.col;
      if (row >= p.n || col >= p.m) continue;
      const float4 a = *reinterpret_cast<const float4*>(smem + cell.row * C::kOutStride + cell.col);
      const float v[4] = {a.x, a.y, a.z, a.w};
      const int64_t at = row * p.m + col;
      float r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (residual != nullptr) {
        if (vec4) {
          const uint2 w = *reinterpret_cast<const uint2*>(residual + at);
          r[0] = Elem<kT>::to_float(uint16_t(w.x)), r[1] = Elem<kT>::to_float(uint16_t(w.x >> 16));
          r[2] = Elem<kT>::to_float(uint16_t(w.y)), r[3] = Elem<kT>::to_float(uint16_t(w.y >> 16));
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if (col + j < p.m) r[j] = Elem<kT>::to_float(residual[at + j]);
        }
      }
      uint16_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) o[j] = Elem<kT>::from_float(linear_epilogue(v[j], b[half][j], p.activation, r[j]));
      if (vec4) {
        *reinterpret_cast<uint2*>(out + at) =
            make_uint2(uint32_t(o[0]) | (uint32_t(o[1]) << 16), uint32_t(o[2]) | (uint32_t(o[3]) << 16));
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col + j < p.m) out[at + j] = o[j];
      }
    }
  }
}

#endif  // FASTRADIO_DEVICE_CODE

// Whether the epilogue may use 4-byte column pairs for these pointers and M.
inline bool pairs_ok(const LinearParams& p) {
  const auto al4 = [](const void* q) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % 4 == 0; };
  return p.m % 2 == 0 && al4(p.out) && al4(p.residual) && al4(p.bias);
}

// Whether the staged epilogue may use 8-byte groups of four columns for these pointers and M.
inline bool quads_ok(const LinearParams& p) {
  const auto al8 = [](const void* q) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % 8 == 0; };
  return p.m % 4 == 0 && al8(p.out) && al8(p.residual) && al8(p.bias);
}

// Whether the operands allow 16-byte chunk loads (else the predicated element path).
inline bool chunks_ok(const LinearParams& p) {
  const auto al16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  return p.k % 8 == 0 && al16(p.x) && al16(p.weight);
}

// SMs of the current device (cached per device; 0 if unknown): mma_sm80 picks its tile by it,
// wgmma_sm90a sizes its persistent grid by it.
inline int sm_count() {
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  if (dev < 0 || dev >= 64) return 0;
  int n = cache[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    cache[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

// Blocks of a launch with kRows x kCols tiles; 0 if they do not fit a 1-D grid.
template <class C>
int64_t grid_blocks(const LinearParams& p) {
  const int64_t b = ((p.n + C::kRows - 1) / C::kRows) * ((p.m + C::kCols - 1) / C::kCols);
  return b > INT32_MAX ? 0 : b;
}

}  // namespace linear_mma
}  // namespace fastradio

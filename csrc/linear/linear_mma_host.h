// Host twin of the tensor-core tiers' index math (test aid, not a backend). With no GPU, nothing
// else can check that the swizzled stage layout, the ldmatrix lane addresses, the fragment
// registers and the accumulator-to-output mapping of linear_mma.cuh fit together into x·Wᵀ. This
// walks the blocks and warps exactly as the kernels do, through the SAME helpers (chunk_of,
// swizzle, a_chunk, b_chunk, acc_cell, out_cell, linear_block_tile, linear_epilogue), with
// mma_sm80's staged epilogue (mma_sm75 stores the acc_cell mapping directly), and emulates the two
// hardware instructions from their PTX ISA definitions (written here independently of the kernel):
//   ldmatrix.x4: lanes 8q..8q+7 give the row addresses of matrix q; lane L receives, in register q,
//                elements 2(L%4) and 2(L%4)+1 of row L/4 of matrix q (the first in the low half);
//   mma.m16n8k16 (row.col): A, B and C/D fragments as pictured in common/ptx.h.
// Unwritten stage slots hold NaN, so a chunk the loaders miss poisons the outputs that read it.
// The fp32 sums run k = 0..15 per mma (the hardware's order inside an mma is unspecified).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "linear/linear_mma.cuh"

namespace fastradio {
namespace detail {

// The 16 bits of element e of a packed pair register.
inline uint16_t half_of(uint32_t reg, int e) { return static_cast<uint16_t>(reg >> (16 * e)); }

template <DType kT, class C>
void linear_mma_host_blocks(const LinearParams& p) {
  using linear_mma::Chunk;
  const auto* x = static_cast<const uint16_t*>(p.x);
  const auto* w = static_cast<const uint16_t*>(p.weight);
  const auto* bias = static_cast<const uint16_t*>(p.bias);
  const auto* residual = static_cast<const uint16_t*>(p.residual);
  auto* out = static_cast<uint16_t*>(p.out);
  const uint16_t nan_bits = Elem<kT>::from_float(NAN);
  const int warps = C::kThreads / 32;
  std::vector<uint16_t> stage(C::kStageElems);
  std::vector<float> acc(size_t(C::kThreads) * C::kMi * C::kNi * 4);
  std::vector<float> ctile(size_t(C::kRows) * C::kOutStride);
  const auto acc_at = [&](int thread, int mi, int ni, int e) -> float& {
    return acc[((size_t(thread) * C::kMi + mi) * C::kNi + ni) * 4 + e];
  };
  // One stage of a (rows, K) matrix through every thread's chunks, zero outside (load_chunk).
  const auto fill = [&](uint16_t* tile, const uint16_t* src, int64_t rows, int64_t row0, int64_t k0, int chunks) {
    for (int t = 0; t < C::kThreads; ++t) {
      for (int i = 0; i < chunks; ++i) {
        const Chunk ch = linear_mma::chunk_of<C>(t, i);
        const int64_t row = row0 + ch.r;
        for (int e = 0; e < 8; ++e) {
          const int64_t k = k0 + 8 * ch.c + e;
          tile[linear_mma::swizzle(ch) + e] = row < rows && k < p.k ? src[row * p.k + k] : uint16_t(0);
        }
      }
    }
  };
  // ldmatrix.x4 of one warp: addr[lane] = element offset of the row that lane addresses.
  const auto ldmatrix_x4 = [&](const uint16_t* tile, const int (&addr)[32], uint32_t (&regs)[32][4]) {
    for (int lane = 0; lane < 32; ++lane)
      for (int q = 0; q < 4; ++q) {
        const uint16_t* row = tile + addr[8 * q + lane / 4];
        regs[lane][q] = uint32_t(row[2 * (lane % 4)]) | (uint32_t(row[2 * (lane % 4) + 1]) << 16);
      }
  };

  const int64_t tiles_r = (p.n + C::kRows - 1) / C::kRows;
  const int64_t tiles_c = (p.m + C::kCols - 1) / C::kCols;
  for (int64_t block = 0; block < tiles_r * tiles_c; ++block) {
    const LinearTile tile = linear_block_tile(block, tiles_r, tiles_c, kLinearGroupRows);
    const int64_t row0 = tile.row_tile * C::kRows;
    const int64_t col0 = tile.col_tile * C::kCols;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < p.k; k0 += C::kK) {
      std::fill(stage.begin(), stage.end(), nan_bits);
      fill(stage.data(), x, p.n, row0, k0, C::kXChunks);
      fill(stage.data() + C::kXElems, w, p.m, col0, k0, C::kWChunks);
      for (int warp = 0; warp < warps; ++warp) {
        const int warp_r = warp / C::kWarpsC;
        const int warp_c = warp % C::kWarpsC;
        for (int ks = 0; ks < C::kK / 16; ++ks) {
          uint32_t a[C::kMi][32][4], b[C::kNi][32][2];
          for (int mi = 0; mi < C::kMi; ++mi) {
            int addr[32];
            for (int lane = 0; lane < 32; ++lane)
              addr[lane] = linear_mma::swizzle(linear_mma::a_chunk<C>(warp_r, lane, mi, ks));
            ldmatrix_x4(stage.data(), addr, a[mi]);
          }
          for (int nj = 0; nj < C::kNi / 2; ++nj) {
            int addr[32];
            uint32_t t4[32][4];
            for (int lane = 0; lane < 32; ++lane)
              addr[lane] = linear_mma::swizzle(linear_mma::b_chunk<C>(warp_c, lane, nj, ks));
            ldmatrix_x4(stage.data() + C::kXElems, addr, t4);
            for (int lane = 0; lane < 32; ++lane) {
              b[2 * nj][lane][0] = t4[lane][0], b[2 * nj][lane][1] = t4[lane][1];
              b[2 * nj + 1][lane][0] = t4[lane][2], b[2 * nj + 1][lane][1] = t4[lane][3];
            }
          }
          // mma.m16n8k16: rebuild the 16 x 16 A and 16 x 8 B tiles from the lanes' registers.
          for (int mi = 0; mi < C::kMi; ++mi) {
            for (int ni = 0; ni < C::kNi; ++ni) {
              float A[16][16], B[16][8];
              for (int lane = 0; lane < 32; ++lane) {
                const int g = lane / 4, t = lane % 4;
                for (int e = 0; e < 2; ++e) {
                  A[g][2 * t + e] = Elem<kT>::to_float(half_of(a[mi][lane][0], e));
                  A[g + 8][2 * t + e] = Elem<kT>::to_float(half_of(a[mi][lane][1], e));
                  A[g][2 * t + 8 + e] = Elem<kT>::to_float(half_of(a[mi][lane][2], e));
                  A[g + 8][2 * t + 8 + e] = Elem<kT>::to_float(half_of(a[mi][lane][3], e));
                  B[2 * t + e][g] = Elem<kT>::to_float(half_of(b[ni][lane][0], e));
                  B[2 * t + 8 + e][g] = Elem<kT>::to_float(half_of(b[ni][lane][1], e));
                }
              }
              for (int lane = 0; lane < 32; ++lane) {
                const int g = lane / 4, t = lane % 4;
                for (int e = 0; e < 4; ++e) {
                  const int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
                  float s = 0.0f;
                  for (int kk = 0; kk < 16; ++kk) s += A[r][kk] * B[kk][c];
                  acc_at(warp * 32 + lane, mi, ni, e) += s;
                }
              }
            }
          }
        }
      }
    }
    // The staged epilogue: accumulators into a NaN-poisoned shared tile (acc_cell), read back by
    // every thread's 4-column groups (out_cell).
    std::fill(ctile.begin(), ctile.end(), NAN);
    for (int thread = 0; thread < C::kThreads; ++thread) {
      const int warp = thread / 32, lane = thread % 32;
      for (int mi = 0; mi < C::kMi; ++mi)
        for (int ni = 0; ni < C::kNi; ++ni)
          for (int e = 0; e < 4; ++e) {
            const linear_mma::Cell cell = linear_mma::acc_cell<C>(warp / C::kWarpsC, warp % C::kWarpsC, lane, mi, ni, e);
            ctile[size_t(cell.row) * C::kOutStride + cell.col] = acc_at(thread, mi, ni, e);
          }
    }
    for (int thread = 0; thread < C::kThreads; ++thread)
      for (int pass = 0; pass < C::kOutPasses; ++pass)
        for (int half = 0; half < 2; ++half) {
          const linear_mma::Cell cell = linear_mma::out_cell<C>(thread, pass, half);
          for (int j = 0; j < 4; ++j) {
            const int64_t row = row0 + cell.row, col = col0 + cell.col + j;
            if (row >= p.n || col >= p.m) continue;
            const float bv = bias ? Elem<kT>::to_float(bias[col]) : 0.0f;
            const float rv = residual ? Elem<kT>::to_float(residual[row * p.m + col]) : 0.0f;
            const float v = ctile[size_t(cell.row) * C::kOutStride + cell.col + j];
            out[row * p.m + col] = Elem<kT>::from_float(linear_epilogue(v, bv, p.activation, rv));
          }
        }
  }
}

template <class C>
Status linear_mma_host_config(const LinearParams& p) {
  switch (p.dtype) {
    case DType::kFloat16: linear_mma_host_blocks<DType::kFloat16, C>(p); return Status::kSuccess;
    case DType::kBFloat16: linear_mma_host_blocks<DType::kBFloat16, C>(p); return Status::kSuccess;
    default: return Status::kUnsupportedDType;
  }
}

// Most accesses of one shared-memory phase that hit the same bank (1 = conflict-free), over every
// access pattern of the kernels: the 16-byte stage stores (8 consecutive threads per phase), every
// ldmatrix matrix (its 8 row addresses), and the staged epilogue's 8-byte accumulator stores
// (16 lanes per phase) and 16-byte reads (8 threads per phase), for every warp and step.
template <class C>
int linear_mma_conflict_ways() {
  int worst = 0;
  // `lanes` accesses of `words` 32-bit words from word offsets start[0..lanes).
  const auto phase = [&](const int* start, int lanes, int words) {
    int count[32] = {};
    for (int i = 0; i < lanes; ++i)
      for (int w = 0; w < words; ++w) worst = std::max(worst, ++count[(start[i] + w) % 32]);
  };
  for (int rows : {C::kRows, C::kCols}) {
    const int chunks = rows * C::kChunksPerRow / C::kThreads;
    for (int i = 0; i < chunks; ++i)
      for (int t0 = 0; t0 < C::kThreads; t0 += 8) {
        int start[8];
        for (int j = 0; j < 8; ++j) start[j] = linear_mma::swizzle(linear_mma::chunk_of<C>(t0 + j, i)) / 2;
        phase(start, 8, 4);
      }
  }
  for (int warp = 0; warp < C::kThreads / 32; ++warp) {
    const int warp_r = warp / C::kWarpsC, warp_c = warp % C::kWarpsC;
    for (int ks = 0; ks < C::kK / 16; ++ks)
      for (int q = 0; q < 4; ++q) {
        for (int mi = 0; mi < C::kMi; ++mi) {
          int start[8];
          for (int j = 0; j < 8; ++j) start[j] = linear_mma::swizzle(linear_mma::a_chunk<C>(warp_r, 8 * q + j, mi, ks)) / 2;
          phase(start, 8, 4);
        }
        for (int nj = 0; nj < C::kNi / 2; ++nj) {
          int start[8];
          for (int j = 0; j < 8; ++j) start[j] = linear_mma::swizzle(linear_mma::b_chunk<C>(warp_c, 8 * q + j, nj, ks)) / 2;
          phase(start, 8, 4);
        }
      }
    for (int mi = 0; mi < C::kMi; ++mi)
      for (int ni = 0; ni < C::kNi; ++ni)
        for (int h = 0; h < 2; ++h)
          for (int l0 = 0; l0 < 32; l0 += 16) {
            int start[16];
            for (int j = 0; j < 16; ++j) {
              const linear_mma::Cell cell = linear_mma::acc_cell<C>(warp_r, warp_c, l0 + j, mi, ni, 2 * h);
              start[j] = cell.row * C::kOutStride + cell.col;
            }
            phase(start, 16, 2);
          }
  }
  for (int pass = 0; pass < C::kOutPasses; ++pass)
    for (int half = 0; half < 2; ++half)
      for (int t0 = 0; t0 < C::kThreads; t0 += 8) {
        int start[8];
        for (int j = 0; j < 8; ++j) {
          const linear_mma::Cell cell = linear_mma::out_cell<C>(t0 + j, pass, half);
          start[j] = cell.row * C::kOutStride + cell.col;
        }
        phase(start, 8, 4);
      }
  return worst;
}

}  // namespace detail

// Bank-conflict degree of the stage layout of config 0 or 1 (see linear_mma_host below).
inline int linear_mma_conflict_ways(int config) {
  return config == 0 ? detail::linear_mma_conflict_ways<linear_mma::Sm80Big>()
                     : detail::linear_mma_conflict_ways<linear_mma::Sm80Small>();
}

// The tensor-core tiles (config 0: 128 x 128 with 2 x 4 warps, the mma_sm75 tile and mma_sm80's
// big one; config 1: mma_sm80's 64 x 128 with 1 x 4 warps) on HOST pointers; fp16/bf16 only.
inline Status linear_mma_host(const LinearParams& p, int config) {
  LinearParams q = p;
  q.tier = Tier::kMmaSm80;
  const Status s = linear_check(q);
  if (s != Status::kSuccess) return s;
  if (config == 0) return detail::linear_mma_host_config<linear_mma::Sm80Big>(q);
  if (config == 1) return detail::linear_mma_host_config<linear_mma::Sm80Small>(q);
  return Status::kInvalidArgument;
}

}  // namespace fastradio

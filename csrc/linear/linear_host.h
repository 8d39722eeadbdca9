// Host twin of the cuda_core kernel (test aid, not a backend): its walk on host memory with its own
// index math (linear_cuda_core.h) and per-element helpers (linear.h). Blocks in linear_block_tile
// order; per k-step, every thread's chunks (LoadMap, the same vector/scalar choice as the launcher)
// widened into a NaN-poisoned k-major shared tile; every thread's 8 x 8 register block
// (block_row, block_col) summed with fmaf over k = 0, 1, ... in the kernel's order (zero-padded
// tail included), so the two agree bit for bit when erff does; then linear_epilogue and one
// rounding via Elem. GPU-less CI checks the kernel's indexing, epilogue and rounding with it.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "linear/linear.h"
#include "linear/linear_cuda_core.h"

namespace fastradio {
namespace detail {

template <DType kT, int kV>
void linear_host_blocks(const LinearParams& p) {
  namespace cc = linear_cc;
  using Bits = typename Elem<kT>::Bits;
  using Map = cc::LoadMap<kV>;
  const auto* x = static_cast<const Bits*>(p.x);
  const auto* w = static_cast<const Bits*>(p.weight);
  const auto* bias = static_cast<const Bits*>(p.bias);
  const auto* residual = static_cast<const Bits*>(p.residual);
  auto* out = static_cast<Bits*>(p.out);
  std::vector<float> xs(cc::kTileK * cc::kSmemStride), ws(cc::kTileK * cc::kSmemStride);
  std::vector<float> acc(size_t(cc::kThreads) * 64);
  // A k-step of a (rows, K) matrix into a k-major shared tile through every thread's chunks.
  const auto fill = [&](std::vector<float>& tile, const Bits* src, int64_t rows, int64_t row0, int64_t k0) {
    std::fill(tile.begin(), tile.end(), NAN);
    for (int t = 0; t < cc::kThreads; ++t)
      for (int i = 0; i < Map::kChunks; ++i)
        for (int e = 0; e < kV; ++e) {
          const int r = Map::row(t, i), kk = Map::k(t) + e;
          const int64_t row = row0 + r, k = k0 + kk;
          tile[size_t(kk) * cc::kSmemStride + r] = row < rows && k < p.k ? Elem<kT>::to_float(src[row * p.k + k]) : 0.0f;
        }
  };
  const int64_t tiles_r = (p.n + cc::kTile - 1) / cc::kTile;
  const int64_t tiles_c = (p.m + cc::kTile - 1) / cc::kTile;
  for (int64_t block = 0; block < tiles_r * tiles_c; ++block) {
    const LinearTile tile = linear_block_tile(block, tiles_r, tiles_c, kLinearGroupRows);
    const int64_t row0 = tile.row_tile * cc::kTile;
    const int64_t col0 = tile.col_tile * cc::kTile;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < p.k; k0 += cc::kTileK) {
      fill(xs, x, p.n, row0, k0);
      fill(ws, w, p.m, col0, k0);
      for (int t = 0; t < cc::kThreads; ++t)
        for (int kk = 0; kk < cc::kTileK; ++kk)
          for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j) {
              float& a = acc[size_t(t) * 64 + i * 8 + j];
              a = linear_fma(xs[size_t(kk) * cc::kSmemStride + cc::block_row(t, i)],
                             ws[size_t(kk) * cc::kSmemStride + cc::block_col(t, j)], a);
            }
    }
    for (int t = 0; t < cc::kThreads; ++t)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) {
          const int64_t row = row0 + cc::block_row(t, i), col = col0 + cc::block_col(t, j);
          if (row >= p.n || col >= p.m) continue;
          const float b = bias ? Elem<kT>::to_float(bias[col]) : 0.0f;
          const float r = residual ? Elem<kT>::to_float(residual[row * p.m + col]) : 0.0f;
          out[row * p.m + col] = Elem<kT>::from_float(linear_epilogue(acc[size_t(t) * 64 + i * 8 + j], b, p.activation, r));
        }
  }
}

template <DType kT>
void linear_host_dtype(const LinearParams& p) {
  if (linear_cc::vector_loads(p)) {
    linear_host_blocks<kT, 4>(p);
  } else {
    linear_host_blocks<kT, 1>(p);
  }
}

}  // namespace detail

// linear_fwd's contract on HOST pointers as the cuda_core tier computes it (the tier argument is
// ignored); the same argument checks.
inline Status linear_host(const LinearParams& p) {
  LinearParams q = p;
  q.tier = Tier::kCudaCore;
  const Status s = linear_check(q);
  if (s != Status::kSuccess) return s;
  switch (q.dtype) {
    case DType::kFloat32: detail::linear_host_dtype<DType::kFloat32>(q); return Status::kSuccess;
    case DType::kFloat16: detail::linear_host_dtype<DType::kFloat16>(q); return Status::kSuccess;
    case DType::kBFloat16: detail::linear_host_dtype<DType::kBFloat16>(q); return Status::kSuccess;
  }
  return Status::kUnsupportedDType;
}

}  // namespace fastradio

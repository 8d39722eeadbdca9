// Host twin of the linear kernels (test aid, not a backend): the cuda_core tier's structure on host
// memory with the same helpers (linear.h): blocks visited through linear_block_tile, 128 x 128
// output tiles, each output an fmaf sum over k = 0..K-1 in order (the cuda_core kernel's order, so
// the two agree bit for bit when erff does), then linear_epilogue and one rounding via Elem.
// GPU-less CI checks the block order, tile bounds, epilogue and rounding against torch with it.
#pragma once

#include "linear/linear.h"

namespace fastradio {
namespace detail {

template <DType kT>
void linear_host_blocks(const LinearParams& p) {
  using Bits = typename Elem<kT>::Bits;
  const auto* x = static_cast<const Bits*>(p.x);
  const auto* w = static_cast<const Bits*>(p.weight);
  const auto* bias = static_cast<const Bits*>(p.bias);
  const auto* residual = static_cast<const Bits*>(p.residual);
  auto* out = static_cast<Bits*>(p.out);
  const int64_t tiles_r = (p.n + kLinearCudaCoreTile - 1) / kLinearCudaCoreTile;
  const int64_t tiles_c = (p.m + kLinearCudaCoreTile - 1) / kLinearCudaCoreTile;
  for (int64_t block = 0; block < tiles_r * tiles_c; ++block) {
    const LinearTile t = linear_block_tile(block, tiles_r, tiles_c, kLinearGroupRows);
    for (int64_t i = 0; i < kLinearCudaCoreTile; ++i) {
      const int64_t row = t.row_tile * kLinearCudaCoreTile + i;
      if (row >= p.n) break;
      for (int64_t j = 0; j < kLinearCudaCoreTile; ++j) {
        const int64_t col = t.col_tile * kLinearCudaCoreTile + j;
        if (col >= p.m) break;
        float acc = 0.0f;
        for (int64_t k = 0; k < p.k; ++k)
          acc = linear_fma(Elem<kT>::to_float(x[row * p.k + k]), Elem<kT>::to_float(w[col * p.k + k]), acc);
        const float b = bias ? Elem<kT>::to_float(bias[col]) : 0.0f;
        const float r = residual ? Elem<kT>::to_float(residual[row * p.m + col]) : 0.0f;
        out[row * p.m + col] = Elem<kT>::from_float(linear_epilogue(acc, b, p.activation, r));
      }
    }
  }
}

}  // namespace detail

// linear_fwd's contract on HOST pointers (the tier is ignored); the same argument checks.
inline Status linear_host(const LinearParams& p) {
  LinearParams q = p;
  q.tier = Tier::kCudaCore;
  const Status s = linear_check(q);
  if (s != Status::kSuccess) return s;
  switch (q.dtype) {
    case DType::kFloat32: detail::linear_host_blocks<DType::kFloat32>(q); return Status::kSuccess;
    case DType::kFloat16: detail::linear_host_blocks<DType::kFloat16>(q); return Status::kSuccess;
    case DType::kBFloat16: detail::linear_host_blocks<DType::kBFloat16>(q); return Status::kSuccess;
  }
  return Status::kUnsupportedDType;
}

}  // namespace fastradio

// Host twin of the patch_embed kernels (test aid, not a backend): the same indexing (patch rows,
// feature offsets, token rows, prefix ownership by M tile; patch_embed.h) and the same epilogue
// (fp32 acc + pos, one rounding) on host memory, so that GPU-less CI checks the im2patch
// addressing and the token placement against torch. The sum runs in ascending k with std::fma,
// exactly like the cuda_core kernel's fmaf chain: for that tier the two agree bit for bit.
#pragma once

#include <cmath>

#include "common/convert.h"  // Elem<>
#include "patch_embed/patch_embed.h"

namespace fastradio {
namespace detail {

template <DType kT>
void patch_embed_host_impl(const PatchEmbedParams& p, int64_t tile_m) {
  using Bits = typename Elem<kT>::Bits;
  const auto* x = static_cast<const Bits*>(p.x);
  const auto* weight = static_cast<const Bits*>(p.weight);
  const auto* pos = static_cast<const Bits*>(p.pos);
  const auto* prefix = static_cast<const Bits*>(p.prefix);
  auto* out = static_cast<Bits*>(p.out);
  const int64_t grid_w = p.width / kPatch;
  const int64_t hw = (p.height / kPatch) * grid_w;
  const int64_t rows = p.batch * hw;
  for (int64_t m0 = 0; m0 < rows; m0 += tile_m) {
    const PrefixImages own = patch_embed_prefix_images(m0, tile_m, hw, p.batch);
    for (int64_t b = own.first; b < own.last; ++b)
      for (int64_t j = 0; j < p.prefix_len; ++j)
        for (int64_t n = 0; n < p.dim; ++n) out[(b * (p.prefix_len + hw) + j) * p.dim + n] = prefix[j * p.dim + n];
  }
  for (int64_t m = 0; m < rows; ++m) {
    const PatchRow r = patch_embed_row(m, grid_w, hw, p.prefix_len, p.height, p.width);
    float a[kPatchK];
    for (int f = 0; f < kPatchK; ++f) a[f] = Elem<kT>::to_float(x[r.x_base + patch_embed_feature_offset(f, p.height, p.width)]);
    for (int64_t n = 0; n < p.dim; ++n) {
      const Bits* wrow = weight + n * kPatchK;
      float acc = 0.0f;
      for (int f = 0; f < kPatchK; ++f) acc = std::fma(a[f], Elem<kT>::to_float(wrow[f]), acc);
      out[r.out_row * p.dim + n] = Elem<kT>::from_float(acc + Elem<kT>::to_float(pos[r.pos_row * p.dim + n]));
    }
  }
}

}  // namespace detail

// patch_embed_fwd's contract on HOST pointers (the tier is ignored beyond the argument checks);
// prefix rows are assigned to M tiles of `tile_m` patches as the kernels do (they use 128).
inline Status patch_embed_host(const PatchEmbedParams& p, int64_t tile_m) {
  const Status s = patch_embed_check(p);
  if (s != Status::kSuccess) return s;
  if (tile_m < 1) return Status::kInvalidArgument;
  switch (p.dtype) {
    case DType::kFloat32: detail::patch_embed_host_impl<DType::kFloat32>(p, tile_m); return Status::kSuccess;
    case DType::kFloat16: detail::patch_embed_host_impl<DType::kFloat16>(p, tile_m); return Status::kSuccess;
    case DType::kBFloat16: detail::patch_embed_host_impl<DType::kBFloat16>(p, tile_m); return Status::kSuccess;
  }
  return Status::kUnsupportedDType;
}

}  // namespace fastradio

// Patch embedding (spec c-radiov2.md §3, DESIGN.md decision 11): the public, torch-free interface,
// and the indexing that the kernels of every tier and their host twin share.
//
// One GEMM, M = batch*h*w patches, K = 768 features, N = dim, with im2patch in the A addressing:
// A[m, f] = x[b, ch, 16r + dy, 16c + dx] for m = (b*h + r)*w + c and f = ch*256 + dy*16 + dx.
// A K-slice of 8 features starting at a multiple of 8 is 8 contiguous pixels of one image row,
// which is what lets the kernels load A in 16-byte pieces straight from NCHW.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "common/arch.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"

namespace fastradio {

inline constexpr int kPatch = 16;                         // pixels per patch side
inline constexpr int kPatchChannels = 3;                  // RGB
inline constexpr int kPatchK = kPatchChannels * kPatch * kPatch;  // 768: GEMM K

struct PatchEmbedParams {
  const void* x = nullptr;       // (batch, 3, height, width) dtype, contiguous: the images
  const void* weight = nullptr;  // (dim, 768) dtype, contiguous: feature f = ch*256 + dy*16 + dx
  const void* pos = nullptr;     // (h*w, dim) dtype, contiguous: the resized position table
  const void* prefix = nullptr;  // (prefix_len, dim) dtype, contiguous; nullptr iff prefix_len == 0
  void* out = nullptr;           // (batch, prefix_len + h*w, dim) dtype, contiguous: the tokens
  int64_t batch = 0;             // B >= 1
  int64_t height = 0;            // H: pixels, a positive multiple of 16 (h = H / 16)
  int64_t width = 0;             // W: pixels, a positive multiple of 16 (w = W / 16)
  int64_t dim = 0;               // D >= 1
  int64_t prefix_len = 0;        // P >= 0 (8 for C-RADIOv2: cls + registers)
  DType dtype = DType::kFloat32;  // of every tensor above
  Tier tier = Tier::kCudaCore;
};

// out[b, P + r*w + c, :] = round(patch(b, r, c) . weight^T + pos[r*w + c]) with fp32 accumulation
// and one rounding to dtype; out[b, j, :] = prefix[j] (j < P), copied bit-exactly. Enqueued on
// `stream`; returns before the kernel runs. Checks arguments (incl. the tier's dtypes), not the
// device arch (the binding does).
Status patch_embed_fwd(const PatchEmbedParams& params, cudaStream_t stream);

// Which dtypes a tier's kernels exist for: cuda_core takes all three; mma_sm80 fp16 and bf16
// (tensor cores have no IEEE fp32 mode, and TF32 would break the fp32 accuracy rule); mma_sm75
// fp16 (Turing has no bf16 MMA).
inline bool patch_embed_tier_takes(Tier tier, DType dtype) {
  switch (tier) {
    case Tier::kCudaCore: return true;
    case Tier::kMmaSm75: return dtype == DType::kFloat16;
    case Tier::kMmaSm80: return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
    default: return false;
  }
}

// The launcher's argument checks (also run by the host twin): kSuccess or what is wrong. Sizes
// are checked so that every element offset below fits int64 (each product stays under 2^61).
inline Status patch_embed_check(const PatchEmbedParams& p) {
  if (p.x == nullptr || p.weight == nullptr || p.pos == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if ((p.prefix == nullptr) != (p.prefix_len == 0)) return Status::kInvalidArgument;
  if (p.batch < 1 || p.dim < 1 || p.prefix_len < 0) return Status::kInvalidArgument;
  if (p.height < kPatch || p.width < kPatch || p.height % kPatch || p.width % kPatch) return Status::kInvalidArgument;
  constexpr int64_t kMax = int64_t(1) << 60;
  const int64_t hw = (p.height / kPatch) * (p.width / kPatch);
  if (p.height > kMax / p.width || p.batch > kMax / (kPatchChannels * p.height * p.width))
    return Status::kInvalidArgument;
  if (p.dim > kMax / kPatchK || hw > kMax / p.dim || p.prefix_len > kMax / p.dim) return Status::kInvalidArgument;
  if (p.batch > kMax / ((p.prefix_len + hw) * p.dim)) return Status::kInvalidArgument;
  if (!is_valid_dtype(static_cast<int>(p.dtype))) return Status::kUnsupportedDType;
  if (!is_valid_tier(static_cast<int>(p.tier))) return Status::kUnknownTier;
  if (!patch_embed_tier_takes(p.tier, p.dtype)) return Status::kUnsupportedDType;
  return Status::kSuccess;
}

// --- indexing shared by the kernels and the host twin --------------------------------------------

// GEMM row m = one patch: where its pixels start in x and where its token goes in out.
struct PatchRow {
  int64_t x_base;   // element offset of pixel (ch 0, dy 0, dx 0) of the patch in x
  int64_t pos_row;  // t = r*w + c: its row of pos
  int64_t out_row;  // b*(P + h*w) + P + t: its row of out
};

FASTRADIO_HD PatchRow patch_embed_row(int64_t m, int64_t grid_w, int64_t hw, int64_t prefix_len, int64_t height,
                                      int64_t width) {
  const int64_t b = m / hw;
  const int64_t t = m - b * hw;
  const int64_t r = t / grid_w;
  const int64_t c = t - r * grid_w;
  return PatchRow{b * kPatchChannels * height * width + r * kPatch * width + c * kPatch, t,
                  b * (prefix_len + hw) + prefix_len + t};
}

// Element offset of feature f inside a patch (add to PatchRow::x_base): channel plane, image row,
// pixel. For f a multiple of 8, features f..f+7 are at offsets o..o+7.
FASTRADIO_HD int64_t patch_embed_feature_offset(int f, int64_t height, int64_t width) {
  return int64_t(f / (kPatch * kPatch)) * height * width + int64_t((f / kPatch) % kPatch) * width + f % kPatch;
}

// Prefix rows are written by the M tile that holds each image's first patch: the tile
// [m0, m0 + tile_m) owns images [first, last), the b with b*hw in that range. Every image has
// exactly one owner for any tile size, and the work is spread over the grid.
struct PrefixImages {
  int64_t first;
  int64_t last;  // exclusive; first >= last: none
};

FASTRADIO_HD PrefixImages patch_embed_prefix_images(int64_t m0, int64_t tile_m, int64_t hw, int64_t batch) {
  const int64_t first = (m0 + hw - 1) / hw;
  int64_t last = (m0 + tile_m + hw - 1) / hw;
  if (last > batch) last = batch;
  return PrefixImages{first, last};
}

// Per-tier launchers behind patch_embed_fwd (arguments already checked), one translation unit each.
namespace detail {
Status patch_embed_cuda_core(const PatchEmbedParams& p, cudaStream_t stream);  // patch_embed.cu
Status patch_embed_mma_sm75(const PatchEmbedParams& p, cudaStream_t stream);   // patch_embed_sm75.cu
Status patch_embed_mma_sm80(const PatchEmbedParams& p, cudaStream_t stream);   // patch_embed_sm80.cu
}  // namespace detail

}  // namespace fastradio

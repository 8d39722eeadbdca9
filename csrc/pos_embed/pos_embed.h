// Position-embedding interpolation (spec c-radiov2.md §3): the public, torch-free interface.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "common/arch.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"

namespace fastradio {

struct PosEmbedParams {
  const float* table = nullptr;  // (grid, grid, dim) fp32, contiguous, device memory
  void* out = nullptr;           // (h * w, dim) out_dtype, contiguous, device memory
  int64_t grid = 0;              // G: side of the square source table
  int64_t dim = 0;               // D: features per position
  int64_t h = 0;                 // output patch rows
  int64_t w = 0;                 // output patch columns
  DType out_dtype = DType::kFloat32;
  bool align_corners = true;     // C-RADIOv2: true; C-RADIOv4 (and newer v3 revisions): false
  Tier tier = Tier::kCudaCore;
};

// Resizes the table to (m, m), m = max(h, w), bilinearly with the given align_corners in fp32,
// keeps the top-left h x w window and writes it row-major, cast to out_dtype. Enqueued on
// `stream`; returns before the kernel runs. Checks arguments, not the device arch (the binding does).
Status pos_embed_fwd(const PosEmbedParams& params, cudaStream_t stream);

// One axis of the resize: output index i reads source rows i0 and i1 with weight l1 on i1.
struct PosEmbedTap {
  int64_t i0;
  int64_t i1;
  float l1;
};

// Source scale of the resize per axis, in fp32 as torch computes it: align_corners=True
// (G-1)/(m-1), 0 when m == 1; align_corners=False G/m.
FASTRADIO_HD float pos_embed_scale(int64_t grid, int64_t m, bool align_corners) {
  if (!align_corners) return static_cast<float>(grid) / static_cast<float>(m);
  return m > 1 ? static_cast<float>(grid - 1) / static_cast<float>(m - 1) : 0.0f;
}

FASTRADIO_HD PosEmbedTap pos_embed_tap(int64_t i, float scale, int64_t grid, bool align_corners) {
  float src;
  if (align_corners) {
    // src must be the fp32-rounded product (spec §3): __fmul_rn keeps the compiler from fusing
    // it into the `src - i0` below as one fma, which would use the unrounded product (~5e-6 off).
#ifdef __CUDA_ARCH__
    src = __fmul_rn(scale, static_cast<float>(i));
#else
    src = scale * static_cast<float>(i);
#endif
  } else {
    // (i + 0.5)·scale − 0.5 with one rounding (radio-family spec §3): exactly torch's CPU weights;
    // two roundings are up to 1.9e-6 off. Clamped at 0 (the first half pixel repeats the edge).
    src = fmaf(static_cast<float>(i) + 0.5f, scale, -0.5f);
    if (src < 0.0f) src = 0.0f;
  }
  int64_t i0 = static_cast<int64_t>(src);  // src >= 0: truncation is floor
  if (i0 > grid - 1) i0 = grid - 1;
  const int64_t i1 = i0 + 1 < grid ? i0 + 1 : grid - 1;
  float l1 = src - static_cast<float>(i0);
  if (l1 > 1.0f) l1 = 1.0f;  // only with align_corners=False past the last source row (m > G)
  return PosEmbedTap{i0, i1, l1};
}

// torch's blend order: (1-ly)*((1-lx)*a + lx*b) + ly*((1-lx)*c + lx*d). A zero weight drops its
// taps (bit-identical for finite inputs), which makes the (G, G) case an exact copy.
FASTRADIO_HD float pos_embed_blend(float a, float b, float c, float d, float lx, float ly) {
  const float top = lx == 0.0f ? a : (1.0f - lx) * a + lx * b;
  if (ly == 0.0f) return top;
  const float bottom = lx == 0.0f ? c : (1.0f - lx) * c + lx * d;
  return (1.0f - ly) * top + ly * bottom;
}

}  // namespace fastradio

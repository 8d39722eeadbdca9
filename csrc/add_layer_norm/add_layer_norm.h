// Residual add fused with the LayerNorm after it (DESIGN.md decision 11): the public, torch-free
// interface, and the per-element and per-row math that the kernel and its host twin share.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <cuda_runtime_api.h>

#include "common/arch.h"
#include "common/convert.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"

namespace fastradio {

struct AddLayerNormParams {
  const void* x = nullptr;       // (rows, dim) x_dtype, contiguous: the residual stream
  const void* delta = nullptr;   // (rows, dim) w_dtype, contiguous, or nullptr: nothing to add
  const void* weight = nullptr;  // (dim,) w_dtype
  const void* bias = nullptr;    // (dim,) w_dtype
  void* x_new = nullptr;         // (rows, dim) x_dtype: x + delta; nullptr iff delta is nullptr
  void* out = nullptr;           // (rows, dim) w_dtype: LayerNorm(x_new), or LayerNorm(x) without delta
  int64_t rows = 0;              // N: tokens
  int64_t dim = 0;               // D: features per token (LayerNorm width)
  float eps = 1e-6f;             // added to the variance; finite, >= 0
  DType x_dtype = DType::kFloat32;  // residual dtype
  DType w_dtype = DType::kFloat32;  // compute dtype: delta, weight, bias and out
  Tier tier = Tier::kCudaCore;
};

// x_new = round_x(x + delta) (fp32 add, one rounding to x_dtype), then
// out = round_w((x_new - mean) / sqrt(var + eps) * weight + bias) with fp32 statistics of the
// rounded x_new (biased variance). Enqueued on `stream`; returns before the kernel runs.
// Checks arguments, not the device arch (the binding does).
Status add_layer_norm_fwd(const AddLayerNormParams& params, cudaStream_t stream);

// The (residual, compute) dtype pairs the op takes: equal dtypes, or an fp32 residual stream under
// fp16/bf16 compute (DESIGN.md decision 12).
inline bool add_layer_norm_dtypes_supported(DType x, DType w) { return x == w || x == DType::kFloat32; }

// The launcher's argument checks (also run by the host twin): kSuccess or what is wrong.
inline Status add_layer_norm_check(const AddLayerNormParams& p) {
  if (p.x == nullptr || p.weight == nullptr || p.bias == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if ((p.delta == nullptr) != (p.x_new == nullptr)) return Status::kInvalidArgument;
  if (p.rows < 1 || p.dim < 1 || p.rows > INT64_MAX / p.dim) return Status::kInvalidArgument;
  if (!std::isfinite(p.eps) || p.eps < 0.0f) return Status::kInvalidArgument;
  if (!is_valid_dtype(static_cast<int>(p.x_dtype)) || !is_valid_dtype(static_cast<int>(p.w_dtype)))
    return Status::kUnsupportedDType;
  if (!add_layer_norm_dtypes_supported(p.x_dtype, p.w_dtype)) return Status::kUnsupportedDType;
  if (!is_valid_tier(static_cast<int>(p.tier))) return Status::kUnknownTier;
  return Status::kSuccess;
}

// --- the math of one row --------------------------------------------------------------------------

// x + delta as the reference computes it (delta cast to x's dtype, one fp32 add, one rounding):
// returns the rounded element's bits; its fp32 value is what the statistics see.
template <DType kX>
FASTRADIO_HD typename Elem<kX>::Bits add_layer_norm_residual(float x, float delta) {
  return Elem<kX>::from_float(x + delta);
}

// Statistics as a shift and a small correction: mean = shift + corr, never rounded to one float.
// With a large mean and a small spread (mean 1e3, std 1e-2) the fp32 mean alone is off by up to
// half an ulp of 1e3 (3e-5, i.e. 3e-3 of a standard deviation); v - shift is exact there
// (Sterbenz) and the correction carries the rest.
struct LayerNormStats {
  float shift;  // sum / dim of the first pass
  float corr;   // mean - shift: sum(v - shift) / dim
  float rstd;   // 1 / sqrt(var + eps)
};

// First pass: the shift from the plain fp32 sum of the row.
FASTRADIO_HD float add_layer_norm_shift(float sum, int64_t dim) { return sum / static_cast<float>(dim); }

// Second pass, "corrected two-pass" (Chan, Golub & LeVeque): s1 = sum(v - shift),
// s2 = sum((v - shift)^2) over the row; var = s2/dim - (s1/dim)^2 >= 0. A NaN stays NaN.
FASTRADIO_HD LayerNormStats add_layer_norm_stats(float shift, float s1, float s2, int64_t dim, float eps) {
  const float n = static_cast<float>(dim);
  const float corr = s1 / n;
  float var = s2 / n - corr * corr;
  if (var < 0.0f) var = 0.0f;
  return LayerNormStats{shift, corr, 1.0f / sqrtf(var + eps)};
}

// One normalised output in fp32 (rounded to the compute dtype by the caller).
FASTRADIO_HD float add_layer_norm_apply(float v, const LayerNormStats& s, float w, float b) {
  return ((v - s.shift) - s.corr) * s.rstd * w + b;
}

}  // namespace fastradio

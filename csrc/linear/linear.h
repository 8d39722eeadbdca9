// linear: out = act(x·Wᵀ + bias) + residual, the block GEMMs with fused epilogues (qkv, proj,
// fc1 + GELU, fc2). The public, torch-free interface, the argument checks and the per-element
// math shared by every tier's kernel and by the host twin (linear_host.h).
// Mirrors fastradio.backends.reference.linear, with the epilogue in fp32 and one rounding.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "common/arch.h"
#include "common/convert.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"

namespace fastradio {

// Codes crossing the binding (Python passes them; keep in sync with backends/cuda/_linear.py).
enum class LinearActivation : int {
  kNone = 0,
  kGelu = 1,  // exact erf GELU: 0.5·y·(1 + erf(y/√2))
};

inline bool is_valid_linear_activation(int code) { return code == 0 || code == 1; }

struct LinearParams {
  const void* x = nullptr;         // (n, k) dtype, row-major
  const void* weight = nullptr;    // (m, k) dtype, row-major (nn.Linear layout, read in place)
  const void* bias = nullptr;      // (m,) dtype, or nullptr: no bias
  const void* residual = nullptr;  // (n, m) dtype, row-major, or nullptr: no residual
  void* out = nullptr;             // (n, m) dtype, row-major; may be `residual` itself, nothing else
  int64_t n = 0;                   // N: token rows              } each in [1, 2^31); their products
  int64_t m = 0;                   // M: output features         } may pass 2^31 (64-bit offsets)
  int64_t k = 0;                   // K: input features (the reduction)
  LinearActivation activation = LinearActivation::kNone;
  DType dtype = DType::kFloat32;   // of every tensor
  Tier tier = Tier::kCudaCore;
};

// Enqueues out = act(x·Wᵀ + bias) + residual on `stream`: fp32 products and accumulation (no TF32
// for fp32), the epilogue in fp32 on the accumulator, one rounding to `dtype`. Returns before the
// kernel runs. Checks arguments, not the device arch (the binding does).
Status linear_fwd(const LinearParams& params, cudaStream_t stream);

// Which dtypes each tier's kernels are instantiated for: cuda_core every dtype (it is also the
// fp32 tier on tensor-core GPUs); mma_sm75 fp16 (Turing's tensor cores have no bf16); mma_sm80
// fp16 and bf16 (fp32 would need TF32, which the fp32 contract forbids); wgmma_sm90a fp16 and bf16.
inline bool linear_tier_takes(Tier tier, DType dtype) {
  switch (tier) {
    case Tier::kCudaCore: return true;
    case Tier::kMmaSm75: return dtype == DType::kFloat16;
    case Tier::kMmaSm80:
    case Tier::kWgmmaSm90a: return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
    default: return false;
  }
}

// The launcher's argument checks (also run by the host twin): kSuccess or what is wrong.
inline Status linear_check(const LinearParams& p) {
  if (p.x == nullptr || p.weight == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if (p.n < 1 || p.m < 1 || p.k < 1) return Status::kInvalidArgument;
  if (p.n > INT32_MAX || p.m > INT32_MAX || p.k > INT32_MAX) return Status::kInvalidArgument;
  if (p.n > INT64_MAX / p.k || p.m > INT64_MAX / p.k || p.n > INT64_MAX / p.m) return Status::kInvalidArgument;
  if (!is_valid_linear_activation(static_cast<int>(p.activation))) return Status::kInvalidArgument;
  if (!is_valid_dtype(static_cast<int>(p.dtype))) return Status::kUnsupportedDType;
  if (!is_valid_tier(static_cast<int>(p.tier))) return Status::kUnknownTier;
  if (!linear_tier_takes(p.tier, p.dtype)) return Status::kUnsupportedDType;
  return Status::kSuccess;
}

// --- block order (every tier) ---------------------------------------------------------------------

// Output tile (row tile, column tile) of the block with linear index `block` among
// tiles_r x tiles_c tiles: all column tiles of `group` row tiles (column-major inside the group),
// then the next group; the last group may have fewer rows. Concurrent blocks then share a few x
// row panels (and all of W, which fits in L2 for every model shape) instead of streaming all of x
// once per column tile. A bijection onto the tiles for any sizes (the host twin walks it too).
struct LinearTile {
  int64_t row_tile;
  int64_t col_tile;
};

FASTRADIO_HD LinearTile linear_block_tile(int64_t block, int64_t tiles_r, int64_t tiles_c, int64_t group) {
  const int64_t per_group = group * tiles_c;
  const int64_t g = block / per_group;
  const int64_t first = g * group;
  const int64_t rows_in_group = tiles_r - first < group ? tiles_r - first : group;
  const int64_t in_group = block - g * per_group;
  return LinearTile{first + in_group % rows_in_group, in_group / rows_in_group};
}

// Row tiles per group of the block order.
inline constexpr int64_t kLinearGroupRows = 8;

// --- the math of one output element (every tier, and the host twin) --------------------------------

// One step of the dot product: fp32 fused multiply-add with a single rounding. The cuda_core tier
// and the host twin both sum k = 0, 1, ..., K-1 in order with this, so they agree bit for bit.
FASTRADIO_HD float linear_fma(float a, float b, float acc) { return fmaf(a, b, acc); }

// Exact GELU in fp32: 0.5·y·(1 + erf(y/√2)), as torch's F.gelu(approximate="none") computes it.
FASTRADIO_HD float linear_gelu(float y) { return 0.5f * y * (1.0f + erff(y * 0.70710678118654752f)); }

// The epilogue on the fp32 accumulator: + bias, activation, + residual (each already widened to
// fp32; pass 0 for an absent bias or residual); the caller rounds the result once.
FASTRADIO_HD float linear_epilogue(float acc, float bias, LinearActivation act, float residual) {
  float y = acc + bias;
  if (act == LinearActivation::kGelu) y = linear_gelu(y);
  return y + residual;
}

// --- tier entry points (linear.cu dispatches; each is defined in its tier's file) ------------------
Status linear_cuda_core(const LinearParams& p, cudaStream_t stream);  // linear.cu
Status linear_mma_sm75(const LinearParams& p, cudaStream_t stream);   // linear_sm75.cu
Status linear_mma_sm80(const LinearParams& p, cudaStream_t stream);   // linear_sm80.cu
Status linear_wgmma_sm90a(const LinearParams& p, cudaStream_t stream);  // linear_sm90a.cu

}  // namespace fastradio

// pos_embed, CUDA-core tier: bilinear resize of a (G, G, D) fp32 position table to (m, m),
// m = max(h, w), align_corners=True (C-RADIOv2) or False (C-RADIOv4), fp32 math, top-left h x w
// crop, cast to fp32/fp16/bf16. Mirrors fastradio.backends.reference.pos_embed (spec
// c-radiov2.md §3, radio-family.md §3).
// Tier: cuda_core, every arch from sm_60 (no tensor-core work: the op is a memory-bound gather).
//
// One row of threads per output row n = r*w + c: its four source rows (taps) are uniform over
// the row, so the loop along D is a pure stream of 16-byte loads and 16/8-byte stores when D
// and the pointers allow (kVec = 4), else scalar. Taps with zero weight are not loaded.
#include "pos_embed/pos_embed.h"

#include <algorithm>

#include "common/convert.h"
#include "common/kernel.h"

namespace fastradio {
namespace {

constexpr int kMaxThreads = 512;
constexpr int kTargetThreads = 256;

template <DType kOut>
struct OutVec;

template <>
struct OutVec<DType::kFloat32> {
  using Scalar = float;
  static __device__ __forceinline__ Scalar cast(float x) { return x; }
  static __device__ __forceinline__ void store4(void* dst, float4 v) {
    *reinterpret_cast<float4*>(dst) = v;
  }
};

template <>
struct OutVec<DType::kFloat16> {
  using Scalar = uint16_t;
  static __device__ __forceinline__ Scalar cast(float x) { return float_to_fp16_bits(x); }
  static __device__ __forceinline__ void store4(void* dst, float4 v) {
    uint2 p;
    p.x = uint32_t(cast(v.x)) | (uint32_t(cast(v.y)) << 16);
    p.y = uint32_t(cast(v.z)) | (uint32_t(cast(v.w)) << 16);
    *reinterpret_cast<uint2*>(dst) = p;
  }
};

template <>
struct OutVec<DType::kBFloat16> {
  using Scalar = uint16_t;
  static __device__ __forceinline__ Scalar cast(float x) { return float_to_bf16_bits(x); }
  static __device__ __forceinline__ void store4(void* dst, float4 v) {
    uint2 p;
    p.x = uint32_t(cast(v.x)) | (uint32_t(cast(v.y)) << 16);
    p.y = uint32_t(cast(v.z)) | (uint32_t(cast(v.w)) << 16);
    *reinterpret_cast<uint2*>(dst) = p;
  }
};

__device__ __forceinline__ float4 blend4(float4 a, float4 b, float4 c, float4 d, float lx, float ly) {
  return make_float4(pos_embed_blend(a.x, b.x, c.x, d.x, lx, ly), pos_embed_blend(a.y, b.y, c.y, d.y, lx, ly),
                     pos_embed_blend(a.z, b.z, c.z, d.z, lx, ly), pos_embed_blend(a.w, b.w, c.w, d.w, lx, ly));
}

// blockDim = (threads along D, rows per block); grid-stride over the h*w output rows.
template <DType kOut, int kVec>
__global__ void __launch_bounds__(kMaxThreads) pos_embed_kernel(PosEmbedParams p, float scale) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using Out = OutVec<kOut>;
  const int64_t rows = p.h * p.w;
  const int64_t dim = p.dim;
  const float* __restrict__ table = p.table;
  for (int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; n < rows;
       n += int64_t(gridDim.x) * blockDim.y) {
    const int64_t r = n / p.w;
    const PosEmbedTap ty = pos_embed_tap(r, scale, p.grid, p.align_corners);
    const PosEmbedTap tx = pos_embed_tap(n - r * p.w, scale, p.grid, p.align_corners);
    const float lx = tx.l1, ly = ty.l1;
    const float* __restrict__ t00 = table + (ty.i0 * p.grid + tx.i0) * dim;  // (dim,)
    const float* __restrict__ t01 = table + (ty.i0 * p.grid + tx.i1) * dim;
    const float* __restrict__ t10 = table + (ty.i1 * p.grid + tx.i0) * dim;
    const float* __restrict__ t11 = table + (ty.i1 * p.grid + tx.i1) * dim;
    auto* __restrict__ out = static_cast<typename Out::Scalar*>(p.out) + n * dim;  // (dim,)
    if constexpr (kVec == 4) {
      const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int64_t d = int64_t(threadIdx.x) * 4; d < dim; d += int64_t(blockDim.x) * 4) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(t00 + d));
        const float4 b = lx != 0.f ? __ldg(reinterpret_cast<const float4*>(t01 + d)) : zero;
        float4 c = zero, e = zero;
        if (ly != 0.f) {
          c = __ldg(reinterpret_cast<const float4*>(t10 + d));
          e = lx != 0.f ? __ldg(reinterpret_cast<const float4*>(t11 + d)) : zero;
        }
        Out::store4(out + d, blend4(a, b, c, e, lx, ly));
      }
    } else {
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
        const float a = __ldg(t00 + d);
        const float b = lx != 0.f ? __ldg(t01 + d) : 0.f;
        const float c = ly != 0.f ? __ldg(t10 + d) : 0.f;
        const float e = (lx != 0.f && ly != 0.f) ? __ldg(t11 + d) : 0.f;
        out[d] = Out::cast(pos_embed_blend(a, b, c, e, lx, ly));
      }
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <DType kOut, int kVec>
Status launch(const PosEmbedParams& p, cudaStream_t stream) {
  const int64_t rows = p.h * p.w;
  const int64_t vecs = (p.dim + kVec - 1) / kVec;
  int tx = 1;
  while (tx < vecs && tx < 32) tx *= 2;  // small D: a power of two up to one warp
  if (vecs > 32) tx = int(std::min<int64_t>((vecs + 31) / 32 * 32, kMaxThreads));
  const int ty = std::max(1, kTargetThreads / tx);
  const int64_t blocks = std::min<int64_t>((rows + ty - 1) / ty, int64_t(1) << 30);
  const float scale = pos_embed_scale(p.grid, std::max(p.h, p.w), p.align_corners);
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(tx, ty), 0, stream, pos_embed_kernel<kOut, kVec>)(p, scale);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kOut>
Status launch_dtype(const PosEmbedParams& p, cudaStream_t stream) {
  const auto table = reinterpret_cast<uintptr_t>(p.table);
  const auto out = reinterpret_cast<uintptr_t>(p.out);
  const bool vec4 = p.dim % 4 == 0 && table % 16 == 0 && out % (4 * dtype_size(kOut)) == 0;
  return vec4 ? launch<kOut, 4>(p, stream) : launch<kOut, 1>(p, stream);
}

Status pos_embed_cuda_core(const PosEmbedParams& p, cudaStream_t stream) {
  switch (p.out_dtype) {
    case DType::kFloat32: return launch_dtype<DType::kFloat32>(p, stream);
    case DType::kFloat16: return launch_dtype<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_dtype<DType::kBFloat16>(p, stream);
  }
  return Status::kUnsupportedDType;
}

}  // namespace

Status pos_embed_fwd(const PosEmbedParams& p, cudaStream_t stream) {
  if (p.table == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if (p.grid < 1 || p.dim < 1 || p.h < 1 || p.w < 1) return Status::kInvalidArgument;
  if (p.h > INT64_MAX / p.w || p.h * p.w > INT64_MAX / p.dim) return Status::kInvalidArgument;
  if (p.grid > INT64_MAX / p.grid || p.grid * p.grid > INT64_MAX / p.dim) return Status::kInvalidArgument;
  if (!is_valid_dtype(static_cast<int>(p.out_dtype))) return Status::kUnsupportedDType;
  if (!is_valid_tier(static_cast<int>(p.tier))) return Status::kUnknownTier;
  // This file is the cuda_core tier, which every build compiles; other tiers live in their own
  // files (e.g. pos_embed_sm80.cu) and are dispatched here under FASTRADIO_HAS_POS_EMBED_<TIER>,
  // which CMake defines for each tier it compiles (csrc/README.md, "Adding a kernel").
  switch (p.tier) {
    case Tier::kCudaCore: return pos_embed_cuda_core(p, stream);
    default: return Status::kTierNotCompiled;
  }
}

}  // namespace fastradio

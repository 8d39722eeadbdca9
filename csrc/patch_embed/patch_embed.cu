// patch_embed, CUDA-core tier, and the launcher of every tier: tokens (B, P + h*w, D) =
// [prefix; im2patch(x) . W^T + pos] in one launch (spec c-radiov2.md §3).
// Mirrors fastradio.backends.reference.patch_embed. Tier: cuda_core, every arch from sm_60,
// fp32/fp16/bf16 inputs with fp32 FMA math (fp32 mode is IEEE: no TF32); the tensor-core tiers
// are patch_embed_mma.cuh (patch_embed_sm80.cu, patch_embed_sm75.cu).
//
// A classic register-blocked SGEMM: 128 x 128 output tiles, K steps of 16, 256 threads with
// 8 x 8 accumulators each, shared-memory tiles stored as fp32 (16-bit inputs are widened once, at
// the store) and double-buffered with a register prefetch of the next K step. im2patch lives in
// the load addressing (patch_embed.h): a thread loads 8 features of one patch row, i.e. 8
// contiguous pixels (16-byte or 32-byte vectors when x is aligned, scalars otherwise), so no
// patch matrix is ever materialised. The epilogue adds pos in fp32, rounds once and writes each
// token at its final row; the block that holds an image's first patch also copies its prefix
// rows. Every product is an explicit fmaf in ascending k, which the host twin
// (patch_embed_host.h) repeats with std::fma: the two agree bit for bit.
#include "patch_embed/patch_embed.h"

#include <algorithm>

#include "common/convert.h"  // Elem<>: fp32 <-> fp16/bf16 bits, host and device
#include "common/kernel.h"

namespace fastradio {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 128;  // patches per tile
constexpr int kBN = 128;  // output features per tile
constexpr int kBK = 16;   // one 16-pixel row of one channel of every patch
constexpr int kKSteps = kPatchK / kBK;
static_assert(kThreads == 2 * kBM && kThreads == 2 * kBN, "a thread loads half a K step of one row");

// What the launcher found about alignment: 8-element vectors of x and W (x's patch runs start at
// multiples of 8 elements, W's rows are 768 long, so only the base pointers matter), and 4-element
// vectors of pos and out (also needs D % 4 == 0).
struct Vectorised {
  bool x;
  bool w;
  bool out;
};

// 8 contiguous elements at p, as raw bits (8 words for fp32, 4 for 16-bit types: the prefetch
// of the next K step stays small, which is what keeps sm_62's 128 registers a thread enough).
// vec: one 16-byte (16-bit types) or two (fp32) loads; else 8 scalar loads.
template <DType kT>
struct Chunk8 {
  static constexpr int kWords = kT == DType::kFloat32 ? 8 : 4;
  uint32_t w[kWords];

  __device__ __forceinline__ void load(const typename Elem<kT>::Bits* p, bool vec) {
    if constexpr (kT == DType::kFloat32) {
      if (vec) {
        const uint4 lo = __ldg(reinterpret_cast<const uint4*>(p));
        const uint4 hi = __ldg(reinterpret_cast<const uint4*>(p) + 1);
        w[0] = lo.x, w[1] = lo.y, w[2] = lo.z, w[3] = lo.w, w[4] = hi.x, w[5] = hi.y, w[6] = hi.z, w[7] = hi.w;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) w[i] = __ldg(p + i);
      }
    } else {
      if (vec) {
        const uint4 r = __ldg(reinterpret_cast<const uint4*>(p));
        w[0] = r.x, w[1] = r.y, w[2] = r.z, w[3] = r.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = uint32_t(__ldg(p + 2 * i)) | (uint32_t(__ldg(p + 2 * i + 1)) << 16);
      }
    }
  }

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = 0u;
  }

  __device__ __forceinline__ float get(int i) const {
    if constexpr (kT == DType::kFloat32) {
      return Elem<kT>::to_float(w[i]);
    } else {
      return Elem<kT>::to_float(static_cast<uint16_t>(w[i / 2] >> (16 * (i % 2))));
    }
  }
};

// Tokens of 4 features n..n+3 of one row: round(acc + pos), stored. vec: one 16/8-byte access of
// pos and of out (all 4 in range); else per element, up to dim.
template <DType kT>
__device__ __forceinline__ void store4(typename Elem<kT>::Bits* out, const typename Elem<kT>::Bits* pos,
                                       const float (&acc)[4], int64_t n, int64_t dim, bool vec) {
  if (vec && n + 4 <= dim) {
    if constexpr (kT == DType::kFloat32) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(pos + n));
      *reinterpret_cast<float4*>(out + n) = make_float4(acc[0] + q.x, acc[1] + q.y, acc[2] + q.z, acc[3] + q.w);
    } else {
      const uint2 q = __ldg(reinterpret_cast<const uint2*>(pos + n));
      const uint32_t qw[2] = {q.x, q.y};
      uint32_t o[2] = {0u, 0u};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float t = acc[j] + Elem<kT>::to_float(static_cast<uint16_t>(qw[j / 2] >> (16 * (j % 2))));
        o[j / 2] |= uint32_t(Elem<kT>::from_float(t)) << (16 * (j % 2));
      }
      *reinterpret_cast<uint2*>(out + n) = make_uint2(o[0], o[1]);
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (n + j < dim) out[n + j] = Elem<kT>::from_float(acc[j] + Elem<kT>::to_float(__ldg(pos + n + j)));
  }
}

template <DType kT>
__global__ void __launch_bounds__(kThreads, 1) patch_embed_cuda_core_kernel(PatchEmbedParams p, Vectorised vec,
                                                                             int64_t n_tiles) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using Bits = typename Elem<kT>::Bits;
  FASTRADIO_SHARED(16, float, a_tile, [2][kBK][kBM]);  // [k][patch]
  FASTRADIO_SHARED(16, float, b_tile, [2][kBK][kBN]);  // [k][feature]
  const Bits* __restrict__ x = static_cast<const Bits*>(p.x);            // (B, 3, H, W)
  const Bits* __restrict__ weight = static_cast<const Bits*>(p.weight);  // (D, 768)
  const Bits* __restrict__ pos = static_cast<const Bits*>(p.pos);        // (h*w, D)
  const Bits* __restrict__ prefix = static_cast<const Bits*>(p.prefix);  // (P, D) or null
  Bits* __restrict__ out = static_cast<Bits*>(p.out);                    // (B, P + h*w, D)

  const int64_t grid_w = p.width / kPatch;
  const int64_t hw = (p.height / kPatch) * grid_w;
  const int64_t rows = p.batch * hw;  // GEMM M
  const int64_t dim = p.dim;
  // N fastest: the blocks in flight share one A tile, so image bytes come from DRAM once.
  const int64_t tile_m = int64_t(blockIdx.x) / n_tiles;
  const int64_t m0 = tile_m * kBM;
  const int64_t n0 = (int64_t(blockIdx.x) - tile_m * n_tiles) * kBN;
  const int tid = threadIdx.x;

  // Loads: thread tid fills row tid % 128 of both tiles, features (tid / 128) * 8 .. +7 of each K
  // step. Consecutive threads take consecutive rows, so the transposed shared stores never
  // conflict.
  const int lrow = tid % kBM;
  const int khalf = tid / kBM;
  const int64_t am = m0 + lrow;
  const bool a_ok = am < rows;
  const int64_t a_base = a_ok ? patch_embed_row(am, grid_w, hw, p.prefix_len, p.height, p.width).x_base : 0;
  const int64_t bn = n0 + lrow;
  const bool b_ok = bn < dim;
  const Bits* b_row = weight + (b_ok ? bn : 0) * kPatchK + khalf * 8;

  Chunk8<kT> a_next, b_next;
  auto load_step = [&](int ks) {
    const int f = ks * kBK + khalf * 8;
    if (a_ok) {
      a_next.load(x + a_base + patch_embed_feature_offset(f, p.height, p.width), vec.x);
    } else {
      a_next.zero();
    }
    if (b_ok) {
      b_next.load(b_row + ks * kBK, vec.w);
    } else {
      b_next.zero();
    }
  };
  auto store_step = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      a_tile[buf][khalf * 8 + i][lrow] = a_next.get(i);
      b_tile[buf][khalf * 8 + i][lrow] = b_next.get(i);
    }
  };

  load_step(0);
  store_step(0);

  // Prefix rows of the images whose first patch is in this M tile, this tile's features.
  const PrefixImages own = patch_embed_prefix_images(m0, kBM, hw, p.batch);
  for (int64_t b = own.first; b < own.last; ++b) {
    for (int64_t i = tid; i < p.prefix_len * kBN; i += kThreads) {
      const int64_t j = i / kBN;
      const int64_t n = n0 + (i - j * kBN);
      if (n < dim) out[(b * (p.prefix_len + hw) + j) * dim + n] = prefix[j * dim + n];
    }
  }
  __syncthreads();

  // Thread (ty, tx) owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} and the same pattern of columns
  // with tx: float4 reads of the shared tiles, broadcast or conflict-free.
  const int ty = tid / 16;
  const int tx = tid % 16;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  for (int ks = 0; ks < kKSteps; ++ks) {
    const int buf = ks % 2;
    if (ks + 1 < kKSteps) load_step(ks + 1);  // in flight during the FMAs below
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[8], b[8];
      *reinterpret_cast<float4*>(a) = *reinterpret_cast<const float4*>(&a_tile[buf][k][4 * ty]);
      *reinterpret_cast<float4*>(a + 4) = *reinterpret_cast<const float4*>(&a_tile[buf][k][64 + 4 * ty]);
      *reinterpret_cast<float4*>(b) = *reinterpret_cast<const float4*>(&b_tile[buf][k][4 * tx]);
      *reinterpret_cast<float4*>(b + 4) = *reinterpret_cast<const float4*>(&b_tile[buf][k][64 + 4 * tx]);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read in step ks - 1, which every thread finished before the
    // barrier that ended it.
    if (ks + 1 < kKSteps) store_step(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? 4 * ty + i : 64 + 4 * ty + i - 4);
    if (m >= rows) continue;
    const PatchRow r = patch_embed_row(m, grid_w, hw, p.prefix_len, p.height, p.width);
#pragma unroll
    for (int jg = 0; jg < 2; ++jg) {
      const float v[4] = {acc[i][4 * jg], acc[i][4 * jg + 1], acc[i][4 * jg + 2], acc[i][4 * jg + 3]};
      store4<kT>(out + r.out_row * dim, pos + r.pos_row * dim, v, n0 + 64 * jg + 4 * tx, dim, vec.out);
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

bool aligned(const void* q, int64_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <DType kT>
Status launch(const PatchEmbedParams& p, cudaStream_t stream) {
  constexpr int64_t kSize = int64_t(sizeof(typename Elem<kT>::Bits));
  const Vectorised vec{aligned(p.x, 16), aligned(p.weight, 16),
                       p.dim % 4 == 0 && aligned(p.pos, 4 * kSize) && aligned(p.out, 4 * kSize)};
  const int64_t rows = p.batch * (p.height / kPatch) * (p.width / kPatch);
  const int64_t m_tiles = (rows + kBM - 1) / kBM;
  const int64_t n_tiles = (p.dim + kBN - 1) / kBN;
  if (m_tiles > (int64_t(1) << 31) / n_tiles - 1) return Status::kInvalidArgument;  // grid.x limit
  FASTRADIO_LAUNCH(dim3(unsigned(m_tiles * n_tiles)), dim3(kThreads), 0, stream, patch_embed_cuda_core_kernel<kT>)(
      p, vec, n_tiles);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace

namespace detail {

Status patch_embed_cuda_core(const PatchEmbedParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat32: return launch<DType::kFloat32>(p, stream);
    case DType::kFloat16: return launch<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch<DType::kBFloat16>(p, stream);
  }
  return Status::kUnsupportedDType;
}

}  // namespace detail

Status patch_embed_fwd(const PatchEmbedParams& p, cudaStream_t stream) {
  const Status s = patch_embed_check(p);
  if (s != Status::kSuccess) return s;
  switch (p.tier) {
    case Tier::kCudaCore: return detail::patch_embed_cuda_core(p, stream);
#if FASTRADIO_HAS_PATCH_EMBED_MMA_SM75
    case Tier::kMmaSm75: return detail::patch_embed_mma_sm75(p, stream);
#endif
#if FASTRADIO_HAS_PATCH_EMBED_MMA_SM80
    case Tier::kMmaSm80: return detail::patch_embed_mma_sm80(p, stream);
#endif
    default: return Status::kTierNotCompiled;
  }
}

}  // namespace fastradio

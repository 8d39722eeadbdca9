// attention, cuda_core tier (every arch from sm_60; fp32, fp16, bf16 in, fp32 math): flash-style
// variable-length attention with plain FMAs, and the launcher dispatching every tier. Mirrors
// fastradio.backends.reference.attention (what it computes: attention.h).
//
// One block = 64 query rows of one (image, head), 128 threads, shared memory in fp32 (43.5 KB at
// Dh 80, under the 48 KB every arch has). Q is staged once, transposed (qt[d][row]); then per
// step of 32 keys: K transposed into kt[d][key] and V as is into vs[key][d] (rows past the image
// zero-filled, never read), S = Q·Kᵀ as a 4 x 4 register tile per thread (rows 4ty.., keys 4tx..:
// two 16-byte shared loads per 16 FMAs), the online softmax of attention.h (row maxima over the 8
// lanes of a row by shuffles), P transposed into the space K used, and O += P·V as a 4 x Dh/8
// tile per thread (rows 4ty.., columns 4tx.. and 32 + 4tx.., plus 64 + 2tx.. at Dh 80 or 64 + tx
// at Dh 72: no padding of 72 to 80 or 96, in memory or in work), summed
// apart and folded in as O = O*alpha + step (attention_fold). The running sum l stays split over
// the 8 lanes of a row until the end. fp32 is the exactness mode (DESIGN.md §7's 1e-5): no TF32,
// no rounding of P. Registers (~130-155) and 128 threads: __launch_bounds__(.., 1) keeps ptxas
// from trading spills for occupancy; shared memory allows 3 blocks per SM on an A100 anyway.
#include "attention/attention.h"
#include "attention/attention_sm90a.h"
#include "common/kernel.h"

#include <algorithm>

namespace fastradio {
namespace {

template <DType kD, int kHeadDim>
struct CoreShape {
  using Bits = typename Elem<kD>::Bits;
  static constexpr DType kDType = kD;
  static constexpr int kBM = kCoreBlockM;                   // 64 queries
  static constexpr int kBN = kCoreBlockN;                   // 32 keys per step
  static constexpr int kElems = 16 / int(sizeof(Bits));     // elements per 16-byte chunk
  static constexpr int kChunks = kHeadDim / kElems;         // chunks per row (9 at Dh 72 in 16-bit)
  static constexpr int kOCols = kHeadDim / 8;               // output columns per thread
  static constexpr int kTailCols = kOCols - 8;              // past column 64: 0, 1 (Dh 72), 2 (Dh 80)
  // Row pitches (floats): multiples of 4 for 16-byte reads, +4 so the transposed writes spread.
  static constexpr int kLdQ = kBM + 4;
  static constexpr int kLdK = kBN + 4;
  static constexpr int kLdP = kBM + 4;
  static constexpr int kQt = kHeadDim * kLdQ;
  static constexpr int kKP = kHeadDim * kLdK > kBN * kLdP ? kHeadDim * kLdK : kBN * kLdP;  // K, then P
  static constexpr int kV = kBN * kHeadDim;
  static_assert(kHeadDim % 8 == 0 && kHeadDim >= 64 && kTailCols <= 2, "head dims 64..80, multiples of 8");
  static_assert((kQt + kKP + kV) * 4 <= kStaticSmemLimit, "static shared memory");
};

// Output column q (0..kOCols) of thread tx: 16-byte pieces at 4tx and 32 + 4tx, then past column
// 64 kTailCols consecutive columns at 64 + kTailCols·tx (Dh 80: an 8-byte piece, Dh 72: one float),
// so the 8 lanes of a row read 8 consecutive pieces of a V row.
template <int kTailCols>
__device__ __forceinline__ int core_out_col(int tx, int q) {
  return q < 8 ? (q / 4) * 32 + tx * 4 + (q % 4) : 64 + tx * kTailCols + (q - 8);
}

// Rows [0, rows_valid) of a kRows x Dh tile (global rows `ld` elements apart) into fp32 shared
// memory, transposed (dst[d * ldd + row]) or not (dst[row * ldd + d]); rows past rows_valid are 0.
// Two neighbouring threads take the two 16-byte halves of one 32-byte sector, 16 rows per warp, so
// the transposed writes of a warp spread over the banks; with an odd number of chunks per row
// (16-bit, Dh 72) one thread per chunk, 32 rows per warp.
template <class Sh, int kRows, bool kTransposed>
__device__ __forceinline__ void core_load_tile(float* dst, int ldd, const typename Sh::Bits* src, int64_t ld,
                                               int rows_valid) {
  constexpr int kTotal = kRows * Sh::kChunks;
  for (int i = threadIdx.x; i < kTotal; i += kCoreThreads) {
    int row, col;
    if constexpr (Sh::kChunks % 2 == 0) {
      const int rest = i >> 1;
      row = rest % kRows;
      col = (2 * (rest / kRows) + (i & 1)) * Sh::kElems;
    } else {
      row = i % kRows;
      col = (i / kRows) * Sh::kElems;
    }
    uint4 w = make_uint4(0, 0, 0, 0);
    if (row < rows_valid) w = __ldg(reinterpret_cast<const uint4*>(src + row * ld + col));
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    float f[Sh::kElems];
#pragma unroll
    for (int e = 0; e < Sh::kElems; ++e) {
      if constexpr (Sh::kElems == 4) {
        f[e] = Elem<Sh::kDType>::to_float(words[e]);
      } else {
        f[e] = Elem<Sh::kDType>::to_float(static_cast<uint16_t>(words[e / 2] >> (16 * (e % 2))));
      }
    }
    if constexpr (kTransposed) {
#pragma unroll
      for (int e = 0; e < Sh::kElems; ++e) dst[(col + e) * ldd + row] = f[e];
    } else {
#pragma unroll
      for (int e = 0; e < Sh::kElems; e += 4)
        *reinterpret_cast<float4*>(dst + row * ldd + col + e) = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
    }
  }
}

template <DType kD, int kHeadDim>
__global__ void __launch_bounds__(kCoreThreads, 1) attention_core_kernel(AttentionParams p, float c,
                                                                      int64_t tiles_per_seq) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using Sh = CoreShape<kD, kHeadDim>;
  using Bits = typename Sh::Bits;
  constexpr int kBN = Sh::kBN;
  constexpr int kOCols = Sh::kOCols;
  FASTRADIO_SHARED(16, float, qt, [Sh::kQt]);  // Q transposed: qt[d * kLdQ + row]
  FASTRADIO_SHARED(16, float, kp, [Sh::kKP]);  // K transposed: kp[d * kLdK + key]; then P: kp[key * kLdP + row]
  FASTRADIO_SHARED(16, float, vs, [Sh::kV]);   // V: vs[key * Dh + d]

  const auto cu = [&](int64_t i) -> int64_t { return __ldg(p.cu_seqlens + i); };
  const AttentionTile tile = attention_tile(cu, p.rows, p.num_seqs, tiles_per_seq, Sh::kBM, blockIdx.x);
  if (tile.m0 >= tile.len) return;  // block-uniform, before any barrier

  const int tx = threadIdx.x & 7;   // key / column group: the 8 lanes of a row
  const int ty = threadIdx.x >> 3;  // row group: rows 4ty..4ty+3
  const int64_t head = blockIdx.y;
  const int64_t ld = 3 * p.num_heads * kHeadDim;
  const int64_t ldo = p.num_heads * kHeadDim;
  const Bits* qkv = static_cast<const Bits*>(p.qkv);
  const Bits* q_src = qkv + (tile.start + tile.m0) * ld + head * kHeadDim;
  const Bits* k_src = qkv + tile.start * ld + (p.num_heads + head) * kHeadDim;
  const Bits* v_src = k_src + p.num_heads * kHeadDim;
  const int64_t q_left = tile.len - tile.m0;
  const int q_rows = q_left < Sh::kBM ? int(q_left) : Sh::kBM;

  core_load_tile<Sh, Sh::kBM, true>(qt, Sh::kLdQ, q_src, ld, q_rows);

  float o[4][kOCols];
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int q = 0; q < kOCols; ++q) o[i][q] = 0.0f;
  }

  for (int64_t n0 = 0; n0 < tile.len; n0 += kBN) {
    const int keys = tile.len - n0 < kBN ? int(tile.len - n0) : kBN;
    __syncthreads();  // the previous step's reads of P (in kp) and vs are done
    core_load_tile<Sh, kBN, true>(kp, Sh::kLdK, k_src + n0 * ld, ld, keys);
    core_load_tile<Sh, kBN, false>(vs, kHeadDim, v_src + n0 * ld, ld, keys);
    __syncthreads();

    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
#pragma unroll 16
    for (int d = 0; d < kHeadDim; ++d) {
      const float4 q4 = *reinterpret_cast<const float4*>(qt + d * Sh::kLdQ + ty * 4);
      const float4 k4 = *reinterpret_cast<const float4*>(kp + d * Sh::kLdK + tx * 4);
      const float qv[4] = {q4.x, q4.y, q4.z, q4.w};
      const float kv[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
    }
    if (keys < kBN) {  // block-uniform: the image's last, partial step
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (tx * 4 + j >= keys) {
#pragma unroll
          for (int i = 0; i < 4; ++i) s[i][j] = attention_masked_score();
        }
    }
    float alpha[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = fmaxf(fmaxf(s[i][0], s[i][1]), fmaxf(s[i][2], s[i][3]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      const float m_new = attention_new_max(m[i], mx);
      alpha[i] = attention_rescale(m[i], m_new, c);
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = attention_prob(s[i][j], c, m_new);
      l[i] = attention_fold(l[i], alpha[i], (s[i][0] + s[i][1]) + (s[i][2] + s[i][3]));
    }
    __syncthreads();  // every thread is done reading K before P takes its place
#pragma unroll
    for (int j = 0; j < 4; ++j)
      *reinterpret_cast<float4*>(kp + (tx * 4 + j) * Sh::kLdP + ty * 4) = make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
    __syncthreads();

    float t[4][kOCols];  // this step's P·V, folded into o afterwards (a two-level sum)
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int q = 0; q < kOCols; ++q) t[i][q] = 0.0f;
#pragma unroll 8
    for (int k = 0; k < kBN; ++k) {
      const float4 p4 = *reinterpret_cast<const float4*>(kp + k * Sh::kLdP + ty * 4);
      const float pv[4] = {p4.x, p4.y, p4.z, p4.w};
      const float* vrow = vs + k * kHeadDim;
      float v[kOCols];
      const float4 v0 = *reinterpret_cast<const float4*>(vrow + tx * 4);
      const float4 v1 = *reinterpret_cast<const float4*>(vrow + 32 + tx * 4);
      v[0] = v0.x, v[1] = v0.y, v[2] = v0.z, v[3] = v0.w;
      v[4] = v1.x, v[5] = v1.y, v[6] = v1.z, v[7] = v1.w;
      if constexpr (Sh::kTailCols == 2) {
        const float2 v2 = *reinterpret_cast<const float2*>(vrow + 64 + tx * 2);
        v[8] = v2.x, v[9] = v2.y;
      } else if constexpr (Sh::kTailCols == 1) {
        v[8] = vrow[64 + tx];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int q = 0; q < kOCols; ++q) t[i][q] = fmaf(pv[i], v[q], t[i][q]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int q = 0; q < kOCols; ++q) o[i][q] = attention_fold(o[i][q], alpha[i], t[i][q]);
  }

  Bits* out = static_cast<Bits*>(p.out) + (tile.start + tile.m0) * ldo + head * kHeadDim;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float li = l[i];
    li += __shfl_xor_sync(0xffffffffu, li, 1);
    li += __shfl_xor_sync(0xffffffffu, li, 2);
    li += __shfl_xor_sync(0xffffffffu, li, 4);
    const float inv = attention_inv_sum(li);
    const int row = ty * 4 + i;
    if (row < q_rows) {
#pragma unroll
      for (int q = 0; q < kOCols; ++q) out[row * ldo + core_out_col<Sh::kTailCols>(tx, q)] = Elem<kD>::from_float(o[i][q] * inv);
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <DType kD, int kHeadDim>
Status launch_core(const AttentionParams& p, cudaStream_t stream) {
  const dim3 grid(unsigned(attention_grid_x(p, kCoreBlockM)), unsigned(p.num_heads));
  FASTRADIO_LAUNCH(grid, kCoreThreads, 0, stream, attention_core_kernel<kD, kHeadDim>)(
      p, attention_exp2_scale(p.head_dim), attention_tiles_per_seq(p, kCoreBlockM));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kD>
Status launch_core_dtype(const AttentionParams& p, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return launch_core<kD, 64>(p, stream);
    case 72: return launch_core<kD, 72>(p, stream);
    default: return launch_core<kD, 80>(p, stream);
  }
}

Status attention_cuda_core(const AttentionParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat32: return launch_core_dtype<DType::kFloat32>(p, stream);
    case DType::kFloat16: return launch_core_dtype<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_core_dtype<DType::kBFloat16>(p, stream);
  }
  return Status::kUnsupportedDType;
}

}  // namespace

Status attention_fwd(const AttentionParams& p, cudaStream_t stream) {
  const Status s = attention_check(p);
  if (s != Status::kSuccess) return s;
  switch (p.tier) {
    case Tier::kCudaCore: return attention_cuda_core(p, stream);
#if FASTRADIO_HAS_ATTENTION_MMA_SM75
    case Tier::kMmaSm75: return attention_mma_sm75(p, stream);
#endif
#if FASTRADIO_HAS_ATTENTION_MMA_SM80
    case Tier::kMmaSm80: return attention_mma_sm80(p, stream);
#endif
#if FASTRADIO_HAS_ATTENTION_WGMMA_SM90A
    case Tier::kWgmmaSm90a:
      if (attention_sm90a_takes(p)) return attention_wgmma_sm90a(p, stream);
      // Row coordinates past int32 (no TMA): the sm_80 kernel, which runs on sm_90a too.
#if FASTRADIO_HAS_ATTENTION_MMA_SM80
      return attention_mma_sm80(p, stream);
#else
      return attention_cuda_core(p, stream);
#endif
#endif
    default: return Status::kTierNotCompiled;
  }
}

}  // namespace fastradio

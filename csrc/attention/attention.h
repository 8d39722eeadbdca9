// Flash-style variable-length attention (DESIGN.md §5): the public, torch-free interface, and the
// pieces every tier's kernel shares with the host twin (attention_host.h): which query tile a
// block owns, the per-row online-softmax steps, and the tiles' shapes.
//
// out[i, h*Dh:(h+1)*Dh] = softmax(q_i · K_sᵀ · Dh^-0.5) · V_s for token i of image s (rows
// [cu[s], cu[s+1]) of qkv) and head h, non-causal, keys of image s only. qkv rows are
// [q | k | v], heads contiguous (Dh wide) inside each third: exactly what the qkv linear writes.
// Mirrors fastradio.backends.reference.attention.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "common/arch.h"
#include "common/convert.h"  // Elem<DType>: storage type + exact fp32 conversions
#include "common/dtype.h"
#include "common/status.h"
#include "common/tier.h"

namespace fastradio {

struct AttentionParams {
  const void* qkv = nullptr;            // (rows, 3*num_heads*head_dim) dtype, contiguous, 16-byte aligned
  const int32_t* cu_seqlens = nullptr;  // (num_seqs + 1,) int32: image s owns rows [cu[s], cu[s+1])
  void* out = nullptr;                  // (rows, num_heads*head_dim) dtype, contiguous, 16-byte aligned
  int64_t rows = 0;                     // N: tokens of all images
  int64_t num_seqs = 0;                 // S: images
  int64_t max_seqlen = 0;               // >= every image's length (picks the schedule, never sizes memory)
  int64_t num_heads = 0;                // H
  int64_t head_dim = 0;                 // Dh: 64, 72 or 80
  DType dtype = DType::kFloat32;        // of qkv and out
  Tier tier = Tier::kCudaCore;
};

// Enqueued on `stream`; returns before the kernel runs, never syncs (graph-capturable). Checks
// its arguments, not the device arch (the binding does). The cu_seqlens VALUES are not checked
// (that needs a sync; Python does it): every bound the kernels read is clamped to [0, rows], so
// a malformed cu_seqlens gives wrong numbers but no access outside qkv and out.
Status attention_fwd(const AttentionParams& params, cudaStream_t stream);

// The tensor-core tiers' launchers (attention_sm75.cu, attention_sm80.cu): arguments already
// checked by attention_fwd, which calls them only when the tier is compiled.
Status attention_mma_sm75(const AttentionParams& params, cudaStream_t stream);
Status attention_mma_sm80(const AttentionParams& params, cudaStream_t stream);

// --- what the op takes ----------------------------------------------------------------------------

// C-RADIOv2/v3 and v4-H: 64 and 80; C-RADIOv4-SO400M: 72 (radio-family spec §1).
inline bool attention_head_dim_supported(int64_t head_dim) {
  return head_dim == 64 || head_dim == 72 || head_dim == 80;
}

// The dtypes each tier's kernels are instantiated for: cuda_core computes in fp32 whatever it
// reads; the tensor-core tiers take 16-bit inputs (mma_sm75: fp16 only, Turing has no bf16 MMA;
// wgmma_sm90a: fp16 and bf16).
inline bool attention_tier_takes(Tier tier, DType dtype) {
  switch (tier) {
    case Tier::kCudaCore: return true;
    case Tier::kMmaSm75: return dtype == DType::kFloat16;
    case Tier::kMmaSm80: return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
    case Tier::kWgmmaSm90a: return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
    default: return false;
  }
}

// Grid limits: blockIdx.y is the head (< 65536); blockIdx.x the query tile, at most
// rows / 64 + num_seqs of them (the packed schedule at the smallest tile), < 2^31.
inline constexpr int64_t kAttentionMaxHeads = 65535;
inline constexpr int64_t kAttentionMinBlockM = 64;

// The launcher's argument checks (also run by the host twin): kSuccess or what is wrong.
inline Status attention_check(const AttentionParams& p) {
  if (p.qkv == nullptr || p.cu_seqlens == nullptr || p.out == nullptr) return Status::kInvalidArgument;
  if (p.rows < 1 || p.num_seqs < 1 || p.max_seqlen < 1) return Status::kInvalidArgument;
  if (p.num_heads < 1 || p.num_heads > kAttentionMaxHeads) return Status::kInvalidArgument;
  if (!attention_head_dim_supported(p.head_dim)) return Status::kInvalidArgument;
  if (p.rows > INT64_MAX / (3 * p.num_heads * p.head_dim)) return Status::kInvalidArgument;
  if (p.rows / kAttentionMinBlockM + p.num_seqs + 1 > INT32_MAX) return Status::kInvalidArgument;
  if (!is_valid_dtype(static_cast<int>(p.dtype))) return Status::kUnsupportedDType;
  if (!is_valid_tier(static_cast<int>(p.tier))) return Status::kUnknownTier;
  if (!attention_tier_takes(p.tier, p.dtype)) return Status::kUnsupportedDType;
  // 16-byte vector accesses: Dh * element size and every row stride are multiples of 16 bytes,
  // so aligned base pointers make every head slice of every row aligned.
  if (reinterpret_cast<uintptr_t>(p.qkv) % 16 != 0 || reinterpret_cast<uintptr_t>(p.out) % 16 != 0)
    return Status::kInvalidArgument;
  return Status::kSuccess;
}

// --- which query tile a block owns ----------------------------------------------------------------
//
// blockIdx.x = t enumerates query tiles of block_m rows, blockIdx.y the head. Two schedules:
// - dense (a uniform batch: rows == num_seqs * max_seqlen, hence every image has max_seqlen
//   tokens): tiles_per_seq = cdiv(max_seqlen, block_m) per image, t -> (t / tiles, t % tiles).
// - packed (anything else): rows / block_m + num_seqs tiles; image s owns the ids
//   [cu[s] / block_m + s, cu[s+1] / block_m + s + 1), which is at least cdiv(len, block_m) of them,
//   and a block finds its image by a binary search over cu_seqlens. At most one idle block per
//   image, however far max_seqlen is above most lengths, and no host sync or extra kernel.
// Every bound read from cu_seqlens is clamped to [0, rows] (memory safety for malformed input).

struct AttentionTile {
  int64_t start;  // first row of the image
  int64_t len;    // its tokens
  int64_t m0;     // first query of this tile inside the image; m0 >= len: nothing to do
};

// Query tiles of one head (the grid's x size): dense when tiles_per_seq > 0, else packed.
inline int64_t attention_tiles_per_seq(const AttentionParams& p, int block_m) {
  const bool uniform = p.rows % p.num_seqs == 0 && p.rows / p.num_seqs == p.max_seqlen;
  return uniform ? (p.max_seqlen + block_m - 1) / block_m : 0;
}

inline int64_t attention_grid_x(const AttentionParams& p, int block_m) {
  const int64_t tiles = attention_tiles_per_seq(p, block_m);
  return tiles > 0 ? p.num_seqs * tiles : p.rows / block_m + p.num_seqs;
}

// `cu(i)` reads cu_seqlens[i] (a __ldg on the device, a plain read on the host).
template <class Cu>
FASTRADIO_HD AttentionTile attention_tile(const Cu& cu, int64_t rows, int64_t num_seqs, int64_t tiles_per_seq,
                                          int block_m, int64_t t) {
  auto clamped = [&](int64_t i) {
    const int64_t v = cu(i);
    return v < 0 ? int64_t(0) : (v > rows ? rows : v);
  };
  int64_t seq, m_tile;
  if (tiles_per_seq > 0) {
    seq = t / tiles_per_seq;
    m_tile = t - seq * tiles_per_seq;
  } else {  // largest s with cu[s] / block_m + s <= t (non-decreasing in s for valid cu_seqlens)
    int64_t lo = 0, hi = num_seqs - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (clamped(mid) / block_m + mid <= t) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    seq = lo;
    m_tile = t - (clamped(seq) / block_m + seq);
  }
  const int64_t end = clamped(seq + 1);
  int64_t start = clamped(seq);
  start = start < end ? start : end;
  AttentionTile tile{start, end - start, m_tile * block_m};
  if (m_tile < 0) tile.m0 = tile.len;  // only for a malformed cu_seqlens: do nothing
  return tile;
}

// --- one query row's online softmax ---------------------------------------------------------------
//
// Over the key tiles of its image a row keeps m (the running max of the raw scores s, -inf before
// the first tile), l (the running sum of 2^((s - m) * c)) and the accumulator acc (sum of
// 2^((s - m) * c) * v), with c = log2(e) / sqrt(Dh): the softmax scale and exp -> exp2 folded into
// one constant. For each tile: m' = max(m, max(s)), alpha = 2^((m - m') * c),
// l = l*alpha + sum(p), acc = acc*alpha + p·V with p = 2^((s - m') * c); at the end out = acc / l.
// The max is kept in raw score units, not pre-multiplied by c: for the row's top key s - m' is
// exactly 0, so its p is exactly 1 (2^(fma(s, c, -fl(s*c))) would be 2^(the rounding error of
// s*c), 1 +- a few ulp), and a row with one key returns v exactly. s - m' is also exact for the
// keys near the max (Sterbenz), where p matters most. A row always sees its own key 0 in its first
// tile, so for finite inputs m' is finite from there on, alpha = 2^(-inf * c) = 0 on the first
// tile, and l >= 1 at the end. (-inf) - (-inf) or inf - inf happen only with infinite scores (a
// first tile whose every score is -inf or NaN, or a score of +inf): they give NaN, as torch's
// softmax does. A NaN score stays a NaN in p, hence in out (fmaxf keeps it out of m). Masked keys
// (past the image, in its last tile) get s = -inf, so p = 2^(-inf) = 0.

// c, computed in double and rounded once (the launcher passes it to the kernels).
inline float attention_exp2_scale(int64_t head_dim) {
  return static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(head_dim)));
}

FASTRADIO_HD float attention_exp2(float x) {
#if defined(__CUDA_ARCH__)
  return exp2f(x);
#else
  return std::exp2(x);
#endif
}

// m' from m and the tile's row max, both raw scores (fmaxf: a NaN score does not become the max).
FASTRADIO_HD float attention_new_max(float m, float tile_max) { return fmaxf(m, tile_max); }

// alpha = 2^((m - m') * c): 0 on the first tile (m = -inf).
FASTRADIO_HD float attention_rescale(float m, float m_new, float c) { return attention_exp2((m - m_new) * c); }

// p = 2^((s - m') * c): exactly 1 for the row's max (s - m' = 0), 0 for a masked key (s = -inf).
FASTRADIO_HD float attention_prob(float s, float c, float m_new) { return attention_exp2((s - m_new) * c); }

// acc * alpha + the tile's own sum: a two-level sum instead of one running sum over up to 16k
// keys, so the accumulation adds no error that grows with the image (measured on the host twin,
// 4104 tokens with outlier channels: 1.6e-6 relative L2 in fp32, as torch's fp32 SDPA; the rest
// is the rounding of large scores, which every fp32 kernel shares).
FASTRADIO_HD float attention_fold(float acc, float alpha, float tile_sum) { return fmaf(acc, alpha, tile_sum); }

// The final normalisation factor.
FASTRADIO_HD float attention_inv_sum(float l) { return 1.0f / l; }

// A score past the image: weight 0.
FASTRADIO_HD float attention_masked_score() { return -INFINITY; }

// --- tile shapes ----------------------------------------------------------------------------------

// cuda_core: 64 queries x 32 keys per step, 128 threads, fp32 in shared memory (attention.cu).
inline constexpr int kCoreBlockM = 64;
inline constexpr int kCoreBlockN = 32;
inline constexpr int kCoreThreads = 128;

// Tensor-core tiers: 16 query rows per warp, 64 keys per step (attention_mma.cuh).
inline constexpr int kMmaBlockN = 64;

}  // namespace fastradio

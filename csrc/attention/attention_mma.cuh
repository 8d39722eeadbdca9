// The tensor-core attention block (FlashAttention-2 forward, written from the algorithm): one block
// = BLOCK_M = 16 * kWarps query rows of one (image, head); warp w owns rows 16w..16w+15 and keeps
// their Q fragments in registers for the whole image. K/V stream through shared memory in tiles of
// 64 keys, double-buffered. Per tile and warp:
//   S = Q·Kᵀ        mma.sync, fp32 accumulators, B fragments of K by ldmatrix (non-transposed)
//   online softmax  on the accumulators (attention.h), row maxima over the 4 lanes of a row
//   P = round(S)    to fp16/bf16 in registers: the S accumulators of key tiles 2j, 2j+1 ARE the
//                   A fragment of k16 step j of P·V (no shared-memory round trip)
//   O = O*alpha + P·V   B fragments of V by ldmatrix.trans
// and at the end O / l, rounded once, stored. Only the image's last tile, if partial, is masked;
// its K/V rows past the image are zero-filled (never read), so no other image's data is touched.
//
// Two tiers share this body (kCpAsync):
//   mma_sm80: cp.async copies (global -> shared without registers), issued one tile ahead;
//             m16n8k16 (fp16 or bf16).
//   mma_sm75: the next tile's global loads are issued into registers before the current tile's
//             math and stored to the other stage after it; m16n8k16 as two m16n8k8 (fp16 only).
// Included by attention_sm80.cu / attention_sm75.cu, whose __global__ wrappers hold the arch guard.
#pragma once

#include "attention/attention_mma.h"
#include "common/ptx.h"

namespace fastradio {
namespace attn {

template <DType kD>
struct PackPair {
  __device__ __forceinline__ uint32_t operator()(float lo, float hi) const {
    if constexpr (kD == DType::kBFloat16) {
      return ptx::pack_bf16x2(lo, hi);
    } else {
      return ptx::pack_f16x2(lo, hi);
    }
  }
};

// c += A (16x16) · B (16x8); b0, b1 = the B registers for k 0-7 and 8-15.
template <DType kD, bool kSm80>
__device__ __forceinline__ void mma_k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kSm80) {
    const uint32_t b[2] = {b0, b1};
    if constexpr (kD == DType::kBFloat16) {
      ptx::mma_m16n8k16_bf16(c, a, b);
    } else {
      ptx::mma_m16n8k16_f16(c, a, b);
    }
  } else {
    static_assert(kD == DType::kFloat16, "mma_sm75 is fp16 only");
    const uint32_t lo[2] = {a[0], a[1]};
    const uint32_t hi[2] = {a[2], a[3]};
    ptx::mma_m16n8k8_f16(c, lo, b0);
    ptx::mma_m16n8k8_f16(c, hi, b1);
  }
}

// c += A (16x8: registers a[0], a[1]) · B (8x8: b0): a k8 tail step (Dh 72). sm_75 issues one
// m16n8k8; sm_80 an m16n8k16 whose upper k half is zero in registers (one shape for fp16 and bf16;
// one MMA in 9 of a tile's Q·Kᵀ does half work).
template <DType kD, bool kSm80>
__device__ __forceinline__ void mma_k8(float (&c)[4], const uint32_t (&a)[4], uint32_t b0) {
  if constexpr (kSm80) {
    mma_k16<kD, true>(c, a, b0, 0u);
  } else {
    const uint32_t lo[2] = {a[0], a[1]};
    ptx::mma_m16n8k8_f16(c, lo, b0);
  }
}

// Rows [0, rows_valid) of a kRows x Dh tile (global rows `ld` elements apart) into shared memory
// by cp.async; rows past rows_valid are zero-filled and their global rows never read.
template <class S, int kRows>
__device__ __forceinline__ void cp_async_tile(uint16_t* dst, const uint16_t* src, int64_t ld, int rows_valid) {
  constexpr int kTotal = kRows * S::kChunks;
  FASTRADIO_ATTN_UNROLL
  for (int j = 0; j < (kTotal + S::kThreads - 1) / S::kThreads; ++j) {
    const int i = threadIdx.x + j * S::kThreads;
    if (kTotal % S::kThreads == 0 || i < kTotal) {
      const Chunk ch = copy_chunk<S>(i);
      const bool ok = ch.row < rows_valid;
      const uint16_t* g = ok ? src + ch.row * ld + ch.col : src;  // src: any valid address when !ok
      ptx::cp_async_16(dst + smem_offset<S>(ch.row, ch.col), g, ok);
    }
  }
}

// The same copy through registers (sm_75): load() issues the global reads, store() writes them.
template <class S, int kRows>
struct RegTile {
  static constexpr int kPerThread = (kRows * S::kChunks + S::kThreads - 1) / S::kThreads;
  uint4 v[kPerThread];

  __device__ __forceinline__ void load(const uint16_t* src, int64_t ld, int rows_valid) {
    FASTRADIO_ATTN_UNROLL
    for (int j = 0; j < kPerThread; ++j) {
      const int i = threadIdx.x + j * S::kThreads;
      const Chunk ch = copy_chunk<S>(i);
      v[j] = make_uint4(0, 0, 0, 0);
      if ((kRows * S::kChunks % S::kThreads == 0 || i < kRows * S::kChunks) && ch.row < rows_valid)
        v[j] = __ldg(reinterpret_cast<const uint4*>(src + ch.row * ld + ch.col));
    }
  }

  __device__ __forceinline__ void store(uint16_t* dst) const {
    FASTRADIO_ATTN_UNROLL
    for (int j = 0; j < kPerThread; ++j) {
      const int i = threadIdx.x + j * S::kThreads;
      const Chunk ch = copy_chunk<S>(i);
      if (kRows * S::kChunks % S::kThreads == 0 || i < kRows * S::kChunks)
        *reinterpret_cast<uint4*>(dst + smem_offset<S>(ch.row, ch.col)) = v[j];
    }
  }
};

// One warp, one key tile: the steps of the file comment on this warp's 16 rows.
template <class S, DType kD, bool kSm80>
__device__ __forceinline__ void attend_tile(const uint16_t* ks, const uint16_t* vs, const uint32_t (&qf)[S::kKSteps][4],
                                            float (&o)[S::kDimTiles][4], float (&m)[2], float (&l)[2], float c,
                                            int keys_valid, int lane) {
  float s[S::kKeyTiles][4];
  FASTRADIO_ATTN_UNROLL
  for (int nt = 0; nt < S::kKeyTiles; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
  const LanePos kp = ldsm_k(lane);
  FASTRADIO_ATTN_UNROLL
  for (int kk = 0; kk < S::kKFull; ++kk) {
    FASTRADIO_ATTN_UNROLL
    for (int np = 0; np < S::kKeyTiles / 2; ++np) {
      uint32_t b[4];
      ptx::ldmatrix_x4(b, ks + smem_offset<S>(np * 16 + kp.row, kk * 16 + kp.col));
      mma_k16<kD, kSm80>(s[2 * np], qf[kk], b[0], b[1]);
      mma_k16<kD, kSm80>(s[2 * np + 1], qf[kk], b[2], b[3]);
    }
  }
  if constexpr (S::kKTail) {  // head dims 64..71 of 72: k 0-7 of a last step
    const LanePos kt = ldsm_k_tail(lane);
    FASTRADIO_ATTN_UNROLL
    for (int np = 0; np < S::kKeyTiles / 2; ++np) {
      uint32_t b[2];
      ptx::ldmatrix_x2(b, ks + smem_offset<S>(np * 16 + kt.row, S::kKFull * 16 + kt.col));
      mma_k8<kD, kSm80>(s[2 * np], qf[S::kKFull], b[0]);
      mma_k8<kD, kSm80>(s[2 * np + 1], qf[S::kKFull], b[1]);
    }
  }
  if (keys_valid < S::kBlockN) mask_scores(s, lane, keys_valid);  // warp-uniform: the last tile only

  float mx[2], alpha[2];
  lane_row_max(s, mx);
  FASTRADIO_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {  // the 4 lanes of a row are lanes 4g..4g+3
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
  }
  lane_softmax(s, m, l, mx, c, alpha);
  FASTRADIO_ATTN_UNROLL
  for (int dt = 0; dt < S::kDimTiles; ++dt)
    FASTRADIO_ATTN_UNROLL
    for (int e = 0; e < 4; ++e) o[dt][e] *= alpha[e >> 1];

  const LanePos vp = ldsm_v(lane);
  FASTRADIO_ATTN_UNROLL
  for (int j = 0; j < S::kKeyTiles / 2; ++j) {
    uint32_t a[4];
    probs_to_a(s[2 * j], s[2 * j + 1], a, PackPair<kD>{});
    FASTRADIO_ATTN_UNROLL
    for (int dp = 0; dp < S::kDimTiles / 2; ++dp) {
      uint32_t b[4];
      ptx::ldmatrix_x4_trans(b, vs + smem_offset<S>(j * 16 + vp.row, dp * 16 + vp.col));
      mma_k16<kD, kSm80>(o[2 * dp], a, b[0], b[1]);
      mma_k16<kD, kSm80>(o[2 * dp + 1], a, b[2], b[3]);
    }
    if constexpr (S::kDimTiles % 2 != 0) {  // the last dim tile alone (Dh 72: dims 64-71)
      uint32_t b[2];
      ptx::ldmatrix_x2_trans(b, vs + smem_offset<S>(j * 16 + vp.row, (S::kDimTiles - 1) * 8 + vp.col));
      mma_k16<kD, kSm80>(o[S::kDimTiles - 1], a, b[0], b[1]);
    }
  }
}

// The whole block. `smem` holds S::kSmemElems 16-bit elements, 16-byte aligned.
template <class S, DType kD, bool kSm80>
__device__ __forceinline__ void attention_mma_block(const AttentionParams& p, float c, int64_t tiles_per_seq,
                                                    uint16_t* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const auto cu = [&](int64_t i) -> int64_t { return __ldg(p.cu_seqlens + i); };
  const AttentionTile tile = attention_tile(cu, p.rows, p.num_seqs, tiles_per_seq, S::kBlockM, blockIdx.x);
  if (tile.m0 >= tile.len) return;  // block-uniform, before any barrier

  const int64_t head = blockIdx.y;
  const int64_t ld = 3 * p.num_heads * S::kHeadDim;  // qkv row stride, elements
  const int64_t ldo = p.num_heads * S::kHeadDim;     // out row stride
  const uint16_t* qkv = static_cast<const uint16_t*>(p.qkv);
  const uint16_t* q_src = qkv + (tile.start + tile.m0) * ld + head * S::kHeadDim;
  const uint16_t* k_src = qkv + tile.start * ld + (p.num_heads + head) * S::kHeadDim;
  const uint16_t* v_src = k_src + p.num_heads * S::kHeadDim;
  const int64_t q_left = tile.len - tile.m0;
  const int q_rows = q_left < S::kBlockM ? int(q_left) : S::kBlockM;
  const int64_t n_tiles = (tile.len + S::kBlockN - 1) / S::kBlockN;
  auto keys_in = [&](int64_t j) {  // keys of tile j inside the image
    const int64_t left = tile.len - j * S::kBlockN;
    return left < S::kBlockN ? int(left) : S::kBlockN;
  };
  auto stage = [&](int64_t k) { return smem + (k & 1) * S::kStageElems; };  // arithmetic: no local array
  constexpr int kV = S::kBlockN * S::kPitch;  // V's offset inside a stage

  // Prologue: Q into stage 1, K/V tile 0 into stage 0, Q fragments into registers.
  if constexpr (kSm80) {
    cp_async_tile<S, S::kBlockM>(stage(1), q_src, ld, q_rows);
    ptx::cp_async_commit();
    cp_async_tile<S, S::kBlockN>(stage(0), k_src, ld, keys_in(0));
    cp_async_tile<S, S::kBlockN>(stage(0) + kV, v_src, ld, keys_in(0));
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // the Q group
  } else {
    {
      RegTile<S, S::kBlockM> q;
      q.load(q_src, ld, q_rows);
      q.store(stage(1));
    }
    RegTile<S, S::kBlockN> k0, v0;
    k0.load(k_src, ld, keys_in(0));
    v0.load(v_src, ld, keys_in(0));
    k0.store(stage(0));
    v0.store(stage(0) + kV);
  }
  __syncthreads();
  uint32_t qf[S::kKSteps][4];
  const LanePos qp = ldsm_q(lane);
  FASTRADIO_ATTN_UNROLL
  for (int kk = 0; kk < S::kKFull; ++kk)
    ptx::ldmatrix_x4(qf[kk], stage(1) + smem_offset<S>(warp * 16 + qp.row, kk * 16 + qp.col));
  if constexpr (S::kKTail) {  // k 0-7 of the last step; its k 8-15 are zero
    uint32_t t[2];
    ptx::ldmatrix_x2(t, stage(1) + smem_offset<S>(warp * 16 + qp.row, S::kKFull * 16 + qp.col));
    qf[S::kKFull][0] = t[0];
    qf[S::kKFull][1] = t[1];
    qf[S::kKFull][2] = qf[S::kKFull][3] = 0u;
  }
  __syncthreads();  // every warp has its Q before stage 1 takes K/V tile 1

  float o[S::kDimTiles][4];
  FASTRADIO_ATTN_UNROLL
  for (int dt = 0; dt < S::kDimTiles; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};

  for (int64_t j = 0; j < n_tiles; ++j) {
    const uint16_t* cur = stage(j);
    uint16_t* next = stage(j + 1);  // last read in iteration j - 1, which ended with a barrier
    const bool more = j + 1 < n_tiles;
    const int64_t next_row = (j + 1) * S::kBlockN;
    if constexpr (kSm80) {
      if (more) {
        cp_async_tile<S, S::kBlockN>(next, k_src + next_row * ld, ld, keys_in(j + 1));
        cp_async_tile<S, S::kBlockN>(next + kV, v_src + next_row * ld, ld, keys_in(j + 1));
      }
      ptx::cp_async_commit();   // possibly empty: keeps "all but the newest group" = tile j
      ptx::cp_async_wait<1>();
      __syncthreads();          // tile j, copied by every thread, is visible
      attend_tile<S, kD, kSm80>(cur, cur + kV, qf, o, m, l, c, keys_in(j), lane);
      __syncthreads();          // every warp is done with `cur` before it takes tile j + 2
    } else {
      RegTile<S, S::kBlockN> kn, vn;
      if (more) {
        kn.load(k_src + next_row * ld, ld, keys_in(j + 1));
        vn.load(v_src + next_row * ld, ld, keys_in(j + 1));
      }
      attend_tile<S, kD, kSm80>(cur, cur + kV, qf, o, m, l, c, keys_in(j), lane);
      if (more) {
        kn.store(next);
        vn.store(next + kV);
      }
      __syncthreads();  // tile j + 1 visible, and every warp is done with `cur`
    }
  }

  // out = O / l, rounded once; lane holds rows g and g+8, columns 2t, 2t+1 of every dim tile.
  float inv[2];
  FASTRADIO_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = attention_inv_sum(l[r]);
  }
  uint16_t* out = static_cast<uint16_t*>(p.out) + (tile.start + tile.m0) * ldo + head * S::kHeadDim;
  const PackPair<kD> pack;
  FASTRADIO_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    const LanePos pos = acc_pos(lane, 2 * r);
    const int row = warp * 16 + pos.row;
    if (row < q_rows) {
      FASTRADIO_ATTN_UNROLL
      for (int dt = 0; dt < S::kDimTiles; ++dt)
        *reinterpret_cast<uint32_t*>(out + row * ldo + dt * 8 + pos.col) =
            pack(o[dt][2 * r] * inv[r], o[dt][2 * r + 1] * inv[r]);
    }
  }
}

}  // namespace attn
}  // namespace fastradio

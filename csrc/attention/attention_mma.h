// The tensor-core tiers' tile shapes, shared-memory layout, per-lane fragment positions and
// per-lane softmax steps: everything of attention_mma.cuh that is not an instruction, written once
// for the device kernels and for the host twin's warp emulation (attention_host.h), so that
// GPU-less CI runs the kernels' index math and fragment bookkeeping.
//
// Fragment layouts are those of common/ptx.h (g = lane / 4, t = lane % 4). One warp owns 16 query
// rows; a lane holds rows g and g + 8 of every m16n8 accumulator.
#pragma once

#include <cstdint>

#include "attention/attention.h"

// Full unrolling keeps the fragment arrays in registers on the device; host compilers do not
// know the pragma.
#if defined(__CUDA_ARCH__)
#define FASTRADIO_ATTN_UNROLL _Pragma("unroll")
#else
#define FASTRADIO_ATTN_UNROLL
#endif

namespace fastradio {
namespace attn {

// kHeadDim 64, 72 or 80, kWarps 4 or 8 (BLOCK_M = 16 * kWarps).
template <int kHeadDim_, int kWarps_>
struct MmaShape {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;
  static constexpr int kBlockN = kMmaBlockN;      // keys per step
  static constexpr int kChunks = kHeadDim / 8;    // 16-byte chunks per row (8, 9 or 10)
  // Shared-memory rows are a whole odd number of 16-byte chunks (9, 9 or 11: 64 and 80 padded by
  // one chunk, 72 as it is): the 8 rows an ldmatrix phase reads (8 consecutive rows, same column)
  // then fall into 8 distinct 16-byte bank groups. An XOR swizzle needs a power-of-two number of
  // chunks per row, which 72 and 80 are not.
  static constexpr int kPitch = kChunks % 2 == 0 ? kHeadDim + 8 : kHeadDim;
  // Q·Kᵀ runs over the head dim in k16 steps; 72 = 4·16 + 8 ends with a k8 step, made a k16 one
  // with the upper k half zero in registers (nothing past the head is read or padded in memory).
  static constexpr int kKFull = kHeadDim / 16;         // whole k16 steps (4, 4 or 5)
  static constexpr bool kKTail = kHeadDim % 16 != 0;   // a last k8 step (Dh 72)
  static constexpr int kKSteps = kKFull + (kKTail ? 1 : 0);
  static constexpr int kDimTiles = kHeadDim / 8;  // n8 tiles of P·V (8, 9 or 10): no padding
  static constexpr int kKeyTiles = kBlockN / 8;   // n8 tiles of Q·Kᵀ (8)
  // Two stages of (K tile, V tile); the Q tile is staged in stage 1 before the loop reuses it.
  static constexpr int kStageElems = 2 * kBlockN * kPitch;
  static constexpr int kSmemElems = 2 * kStageElems;
  static constexpr int kSmemBytes = kSmemElems * 2;
  static_assert(kHeadDim % 8 == 0, "head dim must be a multiple of 8");
  static_assert((kPitch / 8) % 2 == 1, "rows of an odd number of chunks (conflict-free ldmatrix)");
  static_assert(kBlockM * kPitch <= kStageElems, "the Q tile must fit in one stage");
  static_assert(kSmemBytes <= kStaticSmemLimit, "static shared memory");
};

// Warps per block (BLOCK_M = 16 * warps): 8 shares each K/V tile among 128 queries (half the L2
// traffic of 64), unless that leaves fewer than two blocks per SM; then 4, to fill the GPU.
inline int mma_warps(const AttentionParams& p, int sm_count) {
  return attention_grid_x(p, 128) * p.num_heads >= 2 * int64_t(sm_count) ? 8 : 4;
}

// Element offset of (row, col) in a staged tile.
template <class S>
FASTRADIO_HD int smem_offset(int row, int col) {
  return row * S::kPitch + col;
}

// The 16-byte chunk copied in step i of a tile copy: consecutive threads take consecutive chunks
// of a row (coalesced global reads of 128/160 contiguous bytes per row).
struct Chunk {
  int row;
  int col;  // element column, multiple of 8
};
template <class S>
FASTRADIO_HD Chunk copy_chunk(int i) {
  return Chunk{i / S::kChunks, (i % S::kChunks) * 8};
}

// Row (relative to the 16-row / 16-key block) and column a lane gives to ldmatrix.x4.
struct LanePos {
  int row;
  int col;
};

// Q as the A operand of one k16 step: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
// (rows 0-7, k 8-15), (rows 8-15, k 8-15) = registers a[0..3]. A k8 tail step loads the first two
// with ldmatrix.x2 (lanes 0-15 give the addresses) and zeroes a[2], a[3].
FASTRADIO_HD LanePos ldsm_q(int lane) { return LanePos{(lane & 7) + 8 * ((lane >> 3) & 1), 8 * (lane >> 4)}; }

// K rows as the B operand (Kᵀ, "col") of two n8 key tiles for one k16 step: matrices (keys 0-7,
// k 0-7), (keys 0-7, k 8-15), (keys 8-15, k 0-7), (keys 8-15, k 8-15) = {b[0], b[1]} of key tile
// 0, then of key tile 1. Non-transposed: lane receives K[key g][k 2t..2t+1] = Kᵀ[2t..2t+1][g].
FASTRADIO_HD LanePos ldsm_k(int lane) { return LanePos{(lane & 7) + 8 * (lane >> 4), 8 * ((lane >> 3) & 1)}; }

// K rows for a k8 tail step (ldmatrix.x2, lanes 0-15): matrices (keys 0-7, k 0-7) and
// (keys 8-15, k 0-7) = b[0] of key tile 0 and of key tile 1 (their b[1], k 8-15, is zero).
FASTRADIO_HD LanePos ldsm_k_tail(int lane) { return LanePos{(lane & 7) + 8 * ((lane >> 3) & 1), 0}; }

// V rows as the B operand of two n8 dim tiles for one k16 step of keys, with .trans: matrices
// (keys 0-7, dims 0-7), (keys 8-15, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15) =
// {b[0], b[1]} of dim tile 0, then of dim tile 1; lane receives V[keys 2t..2t+1][dim g]. An odd
// last dim tile (Dh 72) takes the first two with ldmatrix.x2.trans (lanes 0-15).
FASTRADIO_HD LanePos ldsm_v(int lane) { return LanePos{(lane & 7) + 8 * ((lane >> 3) & 1), 8 * (lane >> 4)}; }

// Row (0..15) and column (0..7) of accumulator element e (0..3) of an m16n8 fragment.
FASTRADIO_HD LanePos acc_pos(int lane, int e) { return LanePos{(lane >> 2) + 8 * (e >> 1), 2 * (lane & 3) + (e & 1)}; }

// --- per-lane softmax steps over one key tile (s[key tile][e], rows g = e/2 == 0, g+8 = e/2 == 1) --

// Scores of keys at or past `keys_valid` (the image's end inside its last tile) get weight 0.
template <int kKeyTiles>
FASTRADIO_HD void mask_scores(float (&s)[kKeyTiles][4], int lane, int keys_valid) {
  FASTRADIO_ATTN_UNROLL
  for (int nt = 0; nt < kKeyTiles; ++nt)
    FASTRADIO_ATTN_UNROLL
    for (int e = 0; e < 4; ++e)
      if (nt * 8 + acc_pos(lane, e).col >= keys_valid) s[nt][e] = attention_masked_score();
}

// This lane's part of the two row maxima (the caller reduces over the 4 lanes of a row).
template <int kKeyTiles>
FASTRADIO_HD void lane_row_max(const float (&s)[kKeyTiles][4], float (&mx)[2]) {
  mx[0] = mx[1] = -INFINITY;
  FASTRADIO_ATTN_UNROLL
  for (int nt = 0; nt < kKeyTiles; ++nt)
    FASTRADIO_ATTN_UNROLL
    for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
}

// Given the full row maxima: new running max, alpha (returned for the accumulator), scores
// replaced by probabilities, and this lane's part of l (the caller sums over the 4 lanes at the end).
template <int kKeyTiles>
FASTRADIO_HD void lane_softmax(float (&s)[kKeyTiles][4], float (&m)[2], float (&l)[2], const float (&mx)[2], float c,
                               float (&alpha)[2]) {
  FASTRADIO_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    const float m_new = attention_new_max(m[r], mx[r]);
    alpha[r] = attention_rescale(m[r], m_new, c);
    m[r] = m_new;
    l[r] *= alpha[r];
  }
  FASTRADIO_ATTN_UNROLL
  for (int nt = 0; nt < kKeyTiles; ++nt)
    FASTRADIO_ATTN_UNROLL
    for (int e = 0; e < 4; ++e) {
      s[nt][e] = attention_prob(s[nt][e], c, m[e >> 1]);
      l[e >> 1] += s[nt][e];
    }
}

// The accumulator of key tiles 2j and 2j+1 is, element for element, the A operand of k16 step j
// of P·V: a[0] = rows g, keys 2t..; a[1] = rows g+8; a[2], a[3] the same 8 keys further.
// `pack(lo, hi)` rounds two probabilities to the 16-bit dtype (lo in the low half).
template <class Pack>
FASTRADIO_HD void probs_to_a(const float (&s0)[4], const float (&s1)[4], uint32_t (&a)[4], const Pack& pack) {
  a[0] = pack(s0[0], s0[1]);
  a[1] = pack(s0[2], s0[3]);
  a[2] = pack(s1[0], s1[1]);
  a[3] = pack(s1[2], s1[3]);
}

}  // namespace attn
}  // namespace fastradio

// attention, wgmma_sm90a tier (sm_90a only: ONLY_ARCHS 90a), fp16 / bf16: FlashAttention-3's
// layout, written from the algorithm and the PTX ISA. Mirrors fastradio.backends.reference.attention
// with the online softmax of attention.h (raw-score max, exp2 with c = log2(e) / sqrt(Dh), -inf
// masking, fp32 statistics and accumulators, one rounding of the output).
//
// A block = 128 query rows of one (image, head), 384 threads: warpgroup 0 is the producer (one
// elected lane issues every TMA load), warpgroups 1 and 2 the consumers (rows 64c..64c+63 each).
// Q arrives once; K/V tiles of 128 keys stream through 3 stages, each with a full barrier (count 1:
// the producer's arrive.expect_tx, completed by the TMA bytes) and an empty barrier (count 2: one
// arrival per consumer warpgroup once its wgmmas on the stage retired). Three, because a consumer
// reads two at once (tile j's K, tile j-1's V) while the third loads.
//
// TMA reads qkv through a 3D view (Dh, 3H, N): element (d, third * H + head, token). A box never
// crosses into the next head, and dims past Dh read as zero. A row's dims 0..63 go to a 128-byte-
// swizzled region (box 64 x 1 x 128), dims 64..79 (Dh 72, 80) to a 32-byte-swizzled one (box
// 16 x 1 x 128; for Dh 72 dims 72..79 are the zero fill). So nothing is padded in memory and
// Q·Kᵀ's last k16 step (dims 64..79) sees zeros past Dh in both operands.
//
// The consumer's steps, per key tile j:
//   S = Q·Kᵀ      wgmma SS m64n128k16, Q and K K-major (4 steps over the 128-byte region, 1 over
//                 the 32-byte one for Dh > 64), fp32
//   mask          keys past the image in its last tile: s = -inf (their K rows are the next
//                 image's tokens or TMA's zeros, never weighted); their V rows are zeroed by the
//                 producer warp before P·V (0 * a non-finite token would still be NaN)
//   softmax       attention.h's steps on the accumulator fragment; row max over the 4 lanes of a row
//   P             rounded to fp16/bf16 in registers: S's fragment of keys 16kk..16kk+15 IS the
//                 register A fragment of P·V's k16 step kk (common/hopper.h's fragment layouts)
//   O = O·alpha + P·V   wgmma RS with B = V MN-major (transpose-B: V is keys x Dh, Dh contiguous):
//                 N = 64 over the 128-byte region, N = Dh - 64 over the 32-byte one
// FlashAttention-3's two overlaps, from its paper's algorithm:
//   - within a warpgroup: S_j and P_{j-1}·V_{j-1} are issued together (two commit groups);
//     wait_group 1 retires S_j, whose softmax then runs while P·V is in flight; wait_group 0, the
//     stage's release, O *= alpha_j, and P_j is packed for the next turn.
//   - between the two consumers (ping-pong): named barriers hand the "issue" turn back and forth, so
//     one warpgroup's GEMMs run while the other does its softmax.
// At the end O / l, rounded once, stored by the threads (query rows past the image skipped).
//
// Not yet: a persistent grid, TMA stores of O, 64-row blocks when the grid is under two waves.
// Expected speed: not measured (no GPU has run this); benchmarks/README.md "Predicted".
#include "attention/attention_sm90a.h"

#include "common/hopper.h"
#include "common/kernel.h"

namespace fastradio {
namespace {

using namespace attention_sm90a;

template <DType kD>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (kD == DType::kBFloat16) {
    return ptx::pack_bf16x2(lo, hi);
  } else {
    return ptx::pack_f16x2(lo, hi);
  }
}

template <DType kD, int kR>
__device__ __forceinline__ void mma_ss(float (&d)[kR], uint64_t da, uint64_t db, bool acc) {
  if constexpr (kD == DType::kBFloat16) {
    ptx::wgmma_ss_bf16(d, da, db, acc);
  } else {
    ptx::wgmma_ss_f16(d, da, db, acc);
  }
}

// B MN-major (the transpose-B flag).
template <DType kD, int kR>
__device__ __forceinline__ void mma_rs_tb(float (&d)[kR], const uint32_t (&a)[4], uint64_t db) {
  if constexpr (kD == DType::kBFloat16) {
    ptx::wgmma_rs_bf16<kR, true>(d, a, db, true);
  } else {
    ptx::wgmma_rs_f16<kR, true>(d, a, db, true);
  }
}

template <int kHeadDim, DType kD, bool kPingPong>
__global__ void __launch_bounds__(kThreads, 1)
    attention_sm90a_kernel(const __grid_constant__ CUtensorMap map_main, const __grid_constant__ CUtensorMap map_tail,
                           AttentionParams p, float c, int64_t tiles_per_seq) {
#if FASTRADIO_HOPPER_WGMMA
  using P = Plan<kHeadDim>;
  static_assert(P::kSmemAlloc <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10), "shared memory over the arch's limit");
  constexpr int kTailR = P::kTail ? P::kTailN / 2 : 4;  // (a dummy size when there is no tail)
  FASTRADIO_DYNAMIC_SHARED(128, uint8_t, smem_raw);     // P::kSmemAlloc; realigned to 1024 below
  FASTRADIO_SHARED(8, uint64_t, full, [kStages]);
  FASTRADIO_SHARED(8, uint64_t, empty, [kStages]);
  FASTRADIO_SHARED(8, uint64_t, q_full, [1]);
  FASTRADIO_SHARED(8, uint64_t, v_clean, [1]);  // the last tile's V rows past the image are zero

  const auto cu = [&](int64_t i) -> int64_t { return __ldg(p.cu_seqlens + i); };
  const AttentionTile tile = attention_tile(cu, p.rows, p.num_seqs, tiles_per_seq, kBlockM, blockIdx.x);
  if (tile.m0 >= tile.len) return;  // block-uniform, before any barrier

  uint8_t* smem = smem_raw + ((1024u - (ptx::smem_addr(smem_raw) & 1023u)) & 1023u);
  const int head = int(blockIdx.y);
  const int heads = int(p.num_heads);
  const int64_t n_tiles = (tile.len + kBlockN - 1) / kBlockN;
  const int last_keys = int(tile.len - (n_tiles - 1) * kBlockN);  // keys of the image in its last tile
  const int wg = int(threadIdx.x) / 128;
  // Stage s: K main, K tail, V main, V tail (each region's rows x span bytes, contiguous).
  auto k_tile = [&](int s) { return smem + P::kStage0 + s * 2 * P::kTileBytes; };
  auto v_tile = [&](int s) { return k_tile(s) + P::kTileBytes; };
  uint8_t* q_tile = smem + P::kQ;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], kConsumers);
    }
    ptx::mbarrier_init(&q_full[0], 1);
    ptx::mbarrier_init(&v_clean[0], 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();  // the last block-wide barrier: the producer's idle warps exit below

  if (wg == 0) {  // producer
    ptx::setmaxnreg_dec<40>();
    if (threadIdx.x < 32 && ptx::elect_one_sync()) {
      // One tile = its 128-byte region, then (Dh > 64) its 32-byte region.
      auto load = [&](uint8_t* dst, int third, int64_t row, uint64_t* bar) {
        ptx::tma_load_3d(dst, &map_main, 0, third * heads + head, int(row), bar);
        if constexpr (P::kTail) ptx::tma_load_3d(dst + P::kMainBytes, &map_tail, kMain, third * heads + head, int(row), bar);
      };
      ptx::mbarrier_arrive_expect_tx(&q_full[0], uint32_t(P::kTileBytes));
      load(q_tile, 0, tile.start + tile.m0, &q_full[0]);
      for (int64_t j = 0; j < n_tiles; ++j) {
        const int s = int(j % kStages);
        // Both consumers released the stage's previous tile (a fresh barrier's phase before the
        // first counts as complete: the first pass does not block).
        ptx::mbarrier_wait(&empty[s], (uint32_t(j / kStages) & 1u) ^ 1u);
        ptx::mbarrier_arrive_expect_tx(&full[s], uint32_t(2 * P::kTileBytes));
        load(k_tile(s), 1, tile.start + j * kBlockN, &full[s]);
        load(v_tile(s), 2, tile.start + j * kBlockN, &full[s]);
      }
    }
    // The last tile's V rows past the image are the next image's tokens: their P is exactly 0, but
    // 0 * NaN (or Inf) is NaN, so one non-finite token would leak into the previous image. Warp 0
    // waits for the tile, zeroes those rows (whole rows: the swizzle permutes chunks only within a
    // row), publishes them to the async proxy, and releases v_clean, which the consumers wait on
    // before that tile's P·V. K's extra rows need nothing: their scores are replaced by -inf.
    if (threadIdx.x < 32 && last_keys < kBlockN) {
      __syncwarp();  // the elected lane has issued the last tile: its phase is the one waited for below
      const int64_t j = n_tiles - 1;
      const int s = int(j % kStages);
      ptx::mbarrier_wait(&full[s], uint32_t(j / kStages) & 1u);
      uint8_t* vt = v_tile(s);
      for (int i = int(threadIdx.x); i < (kBlockN - last_keys) * 8; i += 32)  // 16-byte chunks, dims 0..63
        *reinterpret_cast<uint4*>(vt + last_keys * 128 + 16 * i) = make_uint4(0, 0, 0, 0);
      if constexpr (P::kTail)
        for (int i = int(threadIdx.x); i < (kBlockN - last_keys) * 2; i += 32)  // dims 64..79
          *reinterpret_cast<uint4*>(vt + P::kMainBytes + last_keys * 32 + 16 * i) = make_uint4(0, 0, 0, 0);
      ptx::fence_proxy_async();  // the zeros (generic stores) -> P·V's wgmma (async proxy)
      __syncwarp();
      if (threadIdx.x == 0) ptx::mbarrier_arrive(&v_clean[0]);
    }
    return;
  }

  ptx::setmaxnreg_inc<232>();
  const int cw = wg - 1;                 // consumer: query rows 64cw..64cw+63 of the tile
  const int t = int(threadIdx.x) % 128;  // thread of the warpgroup
  const int w = t / 32, g = t % 32 / 4, q = t % 4;
  // Q descriptors: this consumer's 64 rows (8-row groups 1024 B / 256 B apart).
  const uint8_t* q_main = q_tile + cw * 64 * 128;
  const uint8_t* q_tail = q_tile + P::kMainBytes + cw * 64 * 32;

  float o[32];        // O[.][0..63]:  o[4i + 2h + e] = O[16w + g + 8h][8i + 2q + e]
  float ot[kTailR];   // O[.][64..]:   the same fragment, 8 or 16 columns
#pragma unroll
  for (int e = 0; e < 32; ++e) o[e] = 0.0f;
#pragma unroll
  for (int e = 0; e < kTailR; ++e) ot[e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};   // this thread's part of the row sums (the 4 lanes of a row add up at the end)
  float sc[2 * kBlockN / 4];   // S, then P in fp32: sc[4i + 2h + e] = S[16w + g + 8h][8i + 2q + e], i < 16
  uint32_t pa[kBlockN / 16][4];  // the previous tile's P: A fragment of P·V's k16 step kk

  // Ping-pong: the consumers take turns issuing their wgmmas, so that one's GEMMs keep the tensor
  // cores busy while the other runs its softmax. Consumer cw's turn starts at bar.sync on barrier
  // kTurnBarrier + cw (256 threads: its own 128 + the other's 128 bar.arrive) and ends, right after
  // the issue, with bar.arrive on the other's. Consumer 1 gives consumer 0 the first turn and does
  // not pass its last one, so that every round completes. Turns: Q·K₀ᵀ; (Q·Kⱼᵀ, P·Vⱼ₋₁) for j >= 1;
  // the last P·V: n_tiles + 1 of them.
  // Without kPingPong (FASTRADIO_SM90A_ATTENTION_PINGPONG=0: the A/B switch for a GPU measurement)
  // the consumers issue independently.
  const int turns = int(n_tiles) + 1;
  auto take_turn = [&] {
    if constexpr (kPingPong) ptx::named_barrier_sync(kTurnBarrier + cw, 2 * 128);
  };
  auto pass_turn = [&](int turn) {
    if constexpr (kPingPong)
      if (cw == 0 || turn + 1 < turns) ptx::named_barrier_arrive(kTurnBarrier + (cw ^ 1), 2 * 128);
  };
  if constexpr (kPingPong)
    if (cw == 1) ptx::named_barrier_arrive(kTurnBarrier, 2 * 128);

  // S = Q·Kᵀ of the K tile in stage s (one commit group). k16 step ks starts 32 bytes into each
  // 128-byte row. sc was zeroed before the wgmma.fence (defined inputs; scale-d = 0 ignores them).
  auto issue_s = [&](int s) {
    const uint8_t* kt = k_tile(s);
#pragma unroll
    for (int ks = 0; ks < kMain / 16; ++ks)
      mma_ss<kD>(sc, ptx::smem_desc(q_main + 32 * ks, 16, 1024, 128), ptx::smem_desc(kt + 32 * ks, 16, 1024, 128),
                 ks > 0);
    if constexpr (P::kTail)
      mma_ss<kD>(sc, ptx::smem_desc(q_tail, 16, 256, 32), ptx::smem_desc(kt + P::kMainBytes, 16, 256, 32), true);
    ptx::wgmma_commit_group();
  };
  // O += P·V of the V tile in stage s (one commit group); V's k16 step kk starts 16 key rows further.
  auto issue_pv = [&](int s) {
    const uint8_t* vt = v_tile(s);
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      mma_rs_tb<kD>(o, pa[kk], ptx::smem_desc(vt + kk * 16 * 128, P::kMainBytes, 1024, 128));
      if constexpr (P::kTail)
        mma_rs_tb<kD>(ot, pa[kk], ptx::smem_desc(vt + P::kMainBytes + kk * 16 * 32, P::kTailBytes, 256, 32));
    }
    ptx::wgmma_commit_group();
  };
  auto zero_s = [&] {
#pragma unroll
    for (int e = 0; e < 2 * kBlockN / 4; ++e) sc[e] = 0.0f;
  };
  // The softmax of key tile j's S (attention.h's steps): keys past the image masked, the tile folded
  // into m and l, P (fp32) left in sc; alpha = the factor O must be rescaled by.
  auto softmax = [&](int64_t j, float (&alpha)[2]) {
    const int64_t left = tile.len - j * kBlockN;
    if (left < kBlockN) {  // the image's last, partial tile
#pragma unroll
      for (int e = 0; e < 2 * kBlockN / 4; ++e)
        if (8 * (e / 4) + 2 * q + e % 2 >= int(left)) sc[e] = attention_masked_score();
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int e = 0; e < 2 * kBlockN / 4; ++e) mx[e / 2 % 2] = fmaxf(mx[e / 2 % 2], sc[e]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the 4 lanes of a row are lanes 4g..4g+3
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float m_new = attention_new_max(m[h], mx[h]);
      alpha[h] = attention_rescale(m[h], m_new, c);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int e = 0; e < 2 * kBlockN / 4; ++e) {
      sc[e] = attention_prob(sc[e], c, m[e / 2 % 2]);
      l[e / 2 % 2] += sc[e];
    }
  };
  // P rounded to fp16/bf16 in registers: S's n8 tiles 2kk, 2kk + 1 are the A fragment of P·V's k16 step kk.
  auto pack_p = [&] {
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) pa[kk][jj] = pack2<kD>(sc[8 * kk + 2 * jj], sc[8 * kk + 2 * jj + 1]);
  };
  auto wait_kv = [&](int64_t j) {  // the stage's K and V landed
    ptx::mbarrier_wait(&full[j % kStages], uint32_t(j / kStages) & 1u);
  };

  ptx::mbarrier_wait(&q_full[0], 0);
  float alpha[2];
  // Tile 0: S alone (O is zero: its alpha has nothing to rescale).
  wait_kv(0);
  zero_s();
  take_turn();
  ptx::wgmma_fence();  // sc was written by the threads
  issue_s(0);
  pass_turn(0);
  ptx::wgmma_wait_group<0>();
  softmax(0, alpha);
  pack_p();
  // Tile j >= 1 (FA3's intra-warpgroup overlap): S of tile j and P·V of tile j - 1 go out together;
  // the softmax of S_j runs while P·V_{j-1} is in flight. O stays in the scale of m_{j-1} until
  // P·V_{j-1} retires, then takes alpha_j.
  for (int64_t j = 1; j < n_tiles; ++j) {
    const int sp = int((j - 1) % kStages);
    wait_kv(j);
    zero_s();
    take_turn();
    ptx::wgmma_fence();  // sc, o, ot and pa were written by the threads
    issue_s(int(j % kStages));  // group: S_j
    issue_pv(sp);               // group: O += P_{j-1}·V_{j-1}
    pass_turn(int(j));
    ptx::wgmma_wait_group<1>();  // S_j retired; P·V_{j-1} may still run
    softmax(j, alpha);
    ptx::wgmma_wait_group<0>();  // P·V_{j-1} retired: its stage and pa are free, O is final in scale m_{j-1}
    if (t == 0) ptx::mbarrier_arrive(&empty[sp]);  // this warpgroup's reads of the stage retired
#pragma unroll
    for (int e = 0; e < 32; ++e) o[e] *= alpha[e / 2 % 2];
#pragma unroll
    for (int e = 0; e < kTailR; ++e) ot[e] *= alpha[e / 2 % 2];
    pack_p();
  }
  // The last tile's P·V.
  const int sl = int((n_tiles - 1) % kStages);
  if (last_keys < kBlockN) ptx::mbarrier_wait(&v_clean[0], 0);  // V past the image zeroed
  take_turn();
  ptx::wgmma_fence();  // o, ot and pa were written by the threads
  issue_pv(sl);
  pass_turn(turns - 1);
  ptx::wgmma_wait_group<0>();  // (no release: the producer has issued its last load)

  // out = O / l, rounded once.
  uint16_t* out = static_cast<uint16_t*>(p.out);
  const int64_t ldo = p.num_heads * kHeadDim;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    const float inv = attention_inv_sum(l[h]);
    const int64_t r = tile.m0 + 64 * cw + 16 * w + g + 8 * h;  // query row inside the image
    if (r < tile.len) {
      uint16_t* row = out + (tile.start + r) * ldo + int64_t(head) * kHeadDim + 2 * q;
#pragma unroll
      for (int i = 0; i < 8; ++i)
        *reinterpret_cast<uint32_t*>(row + 8 * i) = pack2<kD>(o[4 * i + 2 * h] * inv, o[4 * i + 2 * h + 1] * inv);
      if constexpr (P::kTail) {
#pragma unroll
        for (int i = 0; i < P::kTailN / 8; ++i)
          *reinterpret_cast<uint32_t*>(row + kMain + 8 * i) =
              pack2<kD>(ot[4 * i + 2 * h] * inv, ot[4 * i + 2 * h + 1] * inv);
      }
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// The (Dh, 3H, N) view of qkv with boxes of `cols` head dims x 1 head x kBlockM tokens.
bool encode(CUtensorMap* map, const AttentionParams& p, uint32_t cols, int swizzle) {
  const uint64_t dims[3] = {uint64_t(p.head_dim), uint64_t(3 * p.num_heads), uint64_t(p.rows)};
  const uint64_t strides[3] = {1, uint64_t(p.head_dim), uint64_t(3 * p.num_heads * p.head_dim)};
  const uint32_t box[3] = {cols, 1, uint32_t(kBlockM)};
  const CUtensorMapDataType type =
      p.dtype == DType::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode_tensor_map(map, type, 2, 3, const_cast<void*>(p.qkv), dims, strides, box, swizzle) == CUDA_SUCCESS;
}

template <int kHeadDim, DType kD, bool kPingPong>
Status launch(const AttentionParams& p, cudaStream_t stream) {
  using P = Plan<kHeadDim>;
  CUtensorMap main_map{}, tail_map{};
  if (!encode(&main_map, p, kMain, 128)) return Status::kInvalidArgument;
  if (P::kTail && !encode(&tail_map, p, kTailCols, 32)) return Status::kInvalidArgument;
  auto kernel = attention_sm90a_kernel<kHeadDim, kD, kPingPong>;
  FASTRADIO_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, P::kSmemAlloc));
  const dim3 grid(unsigned(attention_grid_x(p, kBlockM)), unsigned(p.num_heads));
  FASTRADIO_LAUNCH(grid, dim3(kThreads), P::kSmemAlloc, stream, kernel)(
      main_map, tail_map, p, attention_exp2_scale(p.head_dim), attention_tiles_per_seq(p, kBlockM));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kD, bool kPingPong>
Status launch_head_dim(const AttentionParams& p, cudaStream_t stream) {
  if (p.head_dim == 64) return launch<64, kD, kPingPong>(p, stream);
  if (p.head_dim == 72) return launch<72, kD, kPingPong>(p, stream);
  return launch<80, kD, kPingPong>(p, stream);
}

template <DType kD>
Status launch_dtype(const AttentionParams& p, cudaStream_t stream) {
  return attention_sm90a_pingpong() ? launch_head_dim<kD, true>(p, stream) : launch_head_dim<kD, false>(p, stream);
}

}  // namespace

Status attention_wgmma_sm90a(const AttentionParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat16: return launch_dtype<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_dtype<DType::kBFloat16>(p, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace fastradio

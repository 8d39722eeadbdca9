// Host twin of the attention kernels (test aid, not a backend): their arithmetic on host memory,
// block by block over the same schedule (attention_tile), so that GPU-less CI checks it against a
// float64 oracle.
//
// - cuda_core: per query row, the kernel's operations in the kernel's order (fmaf dot products
//   over d, 32-key steps, the online-softmax helpers of attention.h, l split over the 8 lanes of a
//   row and summed by the same butterfly, each step's P·V summed by fmaf and folded into the
//   accumulator, one rounding at the end). Only exp2 differs (std::exp2 here, exp2f there).
// - mma_sm75 / mma_sm80: a warp emulation. Shared memory is a host array with the kernel's layout
//   (attention_mma.h: pitch, copy chunks, zero-filled rows past the image) whose unwritten
//   elements are NaN, so a read of padding or of a row never copied poisons the output. ldmatrix
//   and mma.sync are emulated from their PTX definitions (register layouts of common/ptx.h) on the
//   lane addresses of attention_mma.h, and the per-lane softmax steps, the P fragment packing and
//   the output positions are the kernel's own functions. Both tiers compute the same sums (sm_75
//   splits each k16 MMA into two k8 ones); the emulation adds the 16 products of an MMA in order in
//   fp32, the hardware in its own order.
#pragma once

#include <algorithm>
#include <vector>

#include "attention/attention.h"
#include "attention/attention_mma.h"

namespace fastradio {
namespace detail {

template <DType kD>
using AttnBits = typename Elem<kD>::Bits;

// --- cuda_core ------------------------------------------------------------------------------------

template <DType kD, int kHeadDim>
void attention_host_core_block(const AttentionParams& p, float c, const AttentionTile& tile, int64_t head) {
  using Bits = AttnBits<kD>;
  constexpr int kBN = kCoreBlockN;
  constexpr int kLanes = 8;  // lanes of a row; lane tx holds keys 4tx..4tx+3 of a step
  const Bits* qkv = static_cast<const Bits*>(p.qkv);
  Bits* out = static_cast<Bits*>(p.out);
  const int64_t ld = 3 * p.num_heads * kHeadDim;
  const int64_t ldo = p.num_heads * kHeadDim;
  const int64_t rows = std::min<int64_t>(tile.len - tile.m0, kCoreBlockM);
  auto key = [&](int64_t n, int d, int64_t third) {  // K (third 1) or V (third 2) of image key n, 0 past the image
    if (n >= tile.len) return 0.0f;
    return Elem<kD>::to_float(qkv[(tile.start + n) * ld + (third * p.num_heads + head) * kHeadDim + d]);
  };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = tile.start + tile.m0 + r;
    float q[kHeadDim], o[kHeadDim];
    for (int d = 0; d < kHeadDim; ++d) {
      q[d] = Elem<kD>::to_float(qkv[row * ld + head * kHeadDim + d]);
      o[d] = 0.0f;
    }
    float m = -INFINITY;
    float l[kLanes] = {};
    for (int64_t n0 = 0; n0 < tile.len; n0 += kBN) {
      const int64_t keys = std::min<int64_t>(tile.len - n0, kBN);
      float s[kBN];
      float mx = -INFINITY;
      for (int j = 0; j < kBN; ++j) {
        s[j] = 0.0f;
        for (int d = 0; d < kHeadDim; ++d) s[j] = fmaf(q[d], key(n0 + j, d, 1), s[j]);
        if (j >= keys) s[j] = attention_masked_score();
        mx = fmaxf(mx, s[j]);
      }
      const float m_new = attention_new_max(m, mx);
      const float alpha = attention_rescale(m, m_new, c);
      m = m_new;
      for (int j = 0; j < kBN; ++j) s[j] = attention_prob(s[j], c, m_new);
      for (int tx = 0; tx < kLanes; ++tx) {
        const float* q4 = s + 4 * tx;
        l[tx] = attention_fold(l[tx], alpha, (q4[0] + q4[1]) + (q4[2] + q4[3]));
      }
      for (int d = 0; d < kHeadDim; ++d) {
        float t = 0.0f;
        for (int j = 0; j < kBN; ++j) t = fmaf(s[j], key(n0 + j, d, 2), t);
        o[d] = attention_fold(o[d], alpha, t);
      }
    }
    for (int step = 1; step < kLanes; step *= 2) {  // the shuffle butterfly (every lane ends equal)
      float next[kLanes];
      for (int tx = 0; tx < kLanes; ++tx) next[tx] = l[tx] + l[tx ^ step];
      for (int tx = 0; tx < kLanes; ++tx) l[tx] = next[tx];
    }
    const float inv = attention_inv_sum(l[0]);
    for (int d = 0; d < kHeadDim; ++d) out[row * ldo + head * kHeadDim + d] = Elem<kD>::from_float(o[d] * inv);
  }
}

// --- tensor-core tiers: warp emulation ------------------------------------------------------------

// ldmatrix.x{num}[.trans]: lane l < 8·num gives the address (element offset) of row l % 8 of matrix
// l / 8; lane l receives in register i < num the elements (l / 4, 2(l % 4)) and (l / 4, 2(l % 4) + 1)
// of matrix i, or of its transpose with .trans (low half = the first). Registers >= num: 0.
inline void host_ldmatrix(const uint16_t* smem, const int (&addr)[32], bool trans, int num, uint32_t (&r)[32][4]) {
  for (int i = 0; i < 4; ++i)
    for (int lane = 0; lane < 32; ++lane) r[lane][i] = 0u;
  for (int i = 0; i < num; ++i)
    for (int lane = 0; lane < 32; ++lane) {
      const int a = lane / 4, b = 2 * (lane % 4);
      uint32_t lo, hi;
      if (trans) {  // transposed (a, b) = original (b, a)
        lo = smem[addr[8 * i + b] + a];
        hi = smem[addr[8 * i + b + 1] + a];
      } else {
        lo = smem[addr[8 * i + a] + b];
        hi = smem[addr[8 * i + a] + b + 1];
      }
      r[lane][i] = lo | (hi << 16);
    }
}

template <DType kD>
float host_lo(uint32_t r) {
  return Elem<kD>::to_float(static_cast<uint16_t>(r & 0xffffu));
}
template <DType kD>
float host_hi(uint32_t r) {
  return Elem<kD>::to_float(static_cast<uint16_t>(r >> 16));
}

// mma.sync m16n8k16 (row.col, fp32 accumulate) on the warp's registers: the A, B and C/D layouts
// of common/ptx.h, with b[lane] = {b[0], b[1]}.
template <DType kD>
void host_mma_k16(float (&c)[32][4], const uint32_t (&a)[32][4], const uint32_t (&b)[32][2]) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int half = 0; half < 2; ++half) {  // a[0..1]: k 0-7, a[2..3]: k 8-15
      A[g][2 * t + 8 * half] = host_lo<kD>(a[lane][2 * half]);
      A[g][2 * t + 1 + 8 * half] = host_hi<kD>(a[lane][2 * half]);
      A[g + 8][2 * t + 8 * half] = host_lo<kD>(a[lane][2 * half + 1]);
      A[g + 8][2 * t + 1 + 8 * half] = host_hi<kD>(a[lane][2 * half + 1]);
      B[2 * t + 8 * half][g] = host_lo<kD>(b[lane][half]);
      B[2 * t + 1 + 8 * half][g] = host_hi<kD>(b[lane][half]);
    }
    for (int e = 0; e < 4; ++e) C[g + 8 * (e / 2)][2 * t + e % 2] = c[lane][e];
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 16; ++k) C[i][j] = fmaf(A[i][k], B[k][j], C[i][j]);  // products of 16-bit values are exact
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < 4; ++e) c[lane][e] = C[lane / 4 + 8 * (e / 2)][2 * (lane % 4) + e % 2];
}

template <DType kD>
struct HostPack {
  uint32_t operator()(float lo, float hi) const {
    return uint32_t(Elem<kD>::from_float(lo)) | (uint32_t(Elem<kD>::from_float(hi)) << 16);
  }
};

// cp.async / register-staged tile copy: the kernel's chunks, rows past rows_valid zero-filled.
template <class S>
void host_copy_tile(uint16_t* dst, const uint16_t* src, int64_t ld, int rows, int rows_valid) {
  for (int i = 0; i < rows * S::kChunks; ++i) {
    const attn::Chunk ch = attn::copy_chunk<S>(i);
    for (int e = 0; e < 8; ++e)
      dst[attn::smem_offset<S>(ch.row, ch.col + e)] = ch.row < rows_valid ? src[ch.row * ld + ch.col + e] : 0;
  }
}

template <DType kD, class S>
void attention_host_mma_block(const AttentionParams& p, float c, const AttentionTile& tile, int64_t head) {
  constexpr uint16_t kNaN = kD == DType::kBFloat16 ? 0x7fc0u : 0x7e00u;  // what unwritten smem reads as
  const int64_t ld = 3 * p.num_heads * S::kHeadDim;
  const int64_t ldo = p.num_heads * S::kHeadDim;
  const uint16_t* qkv = static_cast<const uint16_t*>(p.qkv);
  const uint16_t* q_src = qkv + (tile.start + tile.m0) * ld + head * S::kHeadDim;
  const uint16_t* k_src = qkv + tile.start * ld + (p.num_heads + head) * S::kHeadDim;
  const uint16_t* v_src = k_src + p.num_heads * S::kHeadDim;
  const int q_rows = int(std::min<int64_t>(tile.len - tile.m0, S::kBlockM));
  const int64_t n_tiles = (tile.len + S::kBlockN - 1) / S::kBlockN;
  auto keys_in = [&](int64_t j) { return int(std::min<int64_t>(tile.len - j * S::kBlockN, S::kBlockN)); };
  std::vector<uint16_t> smem(S::kSmemElems, kNaN);
  auto stage = [&](int64_t k) { return smem.data() + (k & 1) * S::kStageElems; };
  constexpr int kV = S::kBlockN * S::kPitch;

  // Per warp and lane: Q fragments, accumulators, running max and sum.
  struct Warp {
    uint32_t qf[S::kKSteps][32][4];
    float o[32][S::kDimTiles][4];
    float m[32][2], l[32][2];
  };
  std::vector<Warp> warps(S::kWarps);

  host_copy_tile<S>(stage(1), q_src, ld, S::kBlockM, q_rows);
  host_copy_tile<S>(stage(0), k_src, ld, S::kBlockN, keys_in(0));
  host_copy_tile<S>(stage(0) + kV, v_src, ld, S::kBlockN, keys_in(0));
  int addr[32];
  for (int w = 0; w < S::kWarps; ++w) {
    Warp& W = warps[w];
    for (int kk = 0; kk < S::kKSteps; ++kk) {
      for (int lane = 0; lane < 32; ++lane) {
        const attn::LanePos qp = attn::ldsm_q(lane);
        addr[lane] = attn::smem_offset<S>(w * 16 + qp.row, kk * 16 + qp.col);
      }
      // The k8 tail step (Dh 72) loads two matrices; its a[2], a[3] (k 8-15) stay zero.
      host_ldmatrix(stage(1), addr, false, kk < S::kKFull ? 4 : 2, W.qf[kk]);
    }
    for (int lane = 0; lane < 32; ++lane) {
      for (int dt = 0; dt < S::kDimTiles; ++dt)
        for (int e = 0; e < 4; ++e) W.o[lane][dt][e] = 0.0f;
      W.m[lane][0] = W.m[lane][1] = -INFINITY;
      W.l[lane][0] = W.l[lane][1] = 0.0f;
    }
  }
  std::fill(stage(1), stage(1) + S::kStageElems, kNaN);  // Q is in registers now

  for (int64_t j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {  // the next tile goes to the other stage, as in the kernel
      host_copy_tile<S>(stage(j + 1), k_src + (j + 1) * S::kBlockN * ld, ld, S::kBlockN, keys_in(j + 1));
      host_copy_tile<S>(stage(j + 1) + kV, v_src + (j + 1) * S::kBlockN * ld, ld, S::kBlockN, keys_in(j + 1));
    }
    const uint16_t* ks = stage(j);
    const uint16_t* vs = ks + kV;
    const int keys_valid = keys_in(j);
    for (int w = 0; w < S::kWarps; ++w) {
      Warp& W = warps[w];
      float s[32][S::kKeyTiles][4];
      for (int lane = 0; lane < 32; ++lane)
        for (int nt = 0; nt < S::kKeyTiles; ++nt)
          for (int e = 0; e < 4; ++e) s[lane][nt][e] = 0.0f;
      uint32_t b[32][4], b01[32][2], b23[32][2];
      float acc[32][4];
      auto mma_into = [&](auto get, auto put, const uint32_t (&a)[32][4], const uint32_t (&bb)[32][2]) {
        for (int lane = 0; lane < 32; ++lane)
          for (int e = 0; e < 4; ++e) acc[lane][e] = get(lane, e);
        host_mma_k16<kD>(acc, a, bb);
        for (int lane = 0; lane < 32; ++lane)
          for (int e = 0; e < 4; ++e) put(lane, e, acc[lane][e]);
      };
      auto split = [&]() {
        for (int lane = 0; lane < 32; ++lane) {
          b01[lane][0] = b[lane][0], b01[lane][1] = b[lane][1];
          b23[lane][0] = b[lane][2], b23[lane][1] = b[lane][3];
        }
      };
      // S = Q·Kᵀ; the k8 tail step (Dh 72) loads (keys 0-7, k 0-7), (keys 8-15, k 0-7) as b[0] of
      // the two key tiles, whose b[1] (k 8-15) is zero.
      for (int kk = 0; kk < S::kKSteps; ++kk)
        for (int np = 0; np < S::kKeyTiles / 2; ++np) {
          const bool tail = kk == S::kKFull;
          for (int lane = 0; lane < 32; ++lane) {
            const attn::LanePos kp = tail ? attn::ldsm_k_tail(lane) : attn::ldsm_k(lane);
            addr[lane] = attn::smem_offset<S>(np * 16 + kp.row, kk * 16 + kp.col);
          }
          host_ldmatrix(ks, addr, false, tail ? 2 : 4, b);
          if (tail)
            for (int lane = 0; lane < 32; ++lane) b[lane][2] = b[lane][1], b[lane][1] = 0u;
          split();
          for (int half = 0; half < 2; ++half) {
            const int nt = 2 * np + half;
            mma_into([&](int lane, int e) { return s[lane][nt][e]; },
                     [&](int lane, int e, float v) { s[lane][nt][e] = v; }, W.qf[kk], half ? b23 : b01);
          }
        }
      // online softmax, per lane, with the row maxima reduced over lanes 4g..4g+3 as the shuffles do
      float mx[32][2], full[32][2], alpha[32][2];
      for (int lane = 0; lane < 32; ++lane) {
        if (keys_valid < S::kBlockN) attn::mask_scores(s[lane], lane, keys_valid);
        attn::lane_row_max(s[lane], mx[lane]);
      }
      for (int lane = 0; lane < 32; ++lane)
        for (int r = 0; r < 2; ++r) full[lane][r] = fmaxf(mx[lane][r], mx[lane ^ 1][r]);
      for (int lane = 0; lane < 32; ++lane)
        for (int r = 0; r < 2; ++r) mx[lane][r] = fmaxf(full[lane][r], full[lane ^ 2][r]);
      for (int lane = 0; lane < 32; ++lane) {
        attn::lane_softmax(s[lane], W.m[lane], W.l[lane], mx[lane], c, alpha[lane]);
        for (int dt = 0; dt < S::kDimTiles; ++dt)
          for (int e = 0; e < 4; ++e) W.o[lane][dt][e] *= alpha[lane][e >> 1];
      }
      // O += P·V
      for (int jj = 0; jj < S::kKeyTiles / 2; ++jj) {
        uint32_t a[32][4];
        for (int lane = 0; lane < 32; ++lane) attn::probs_to_a(s[lane][2 * jj], s[lane][2 * jj + 1], a[lane], HostPack<kD>{});
        for (int dp = 0; dp < S::kDimTiles / 2; ++dp) {
          for (int lane = 0; lane < 32; ++lane) {
            const attn::LanePos vp = attn::ldsm_v(lane);
            addr[lane] = attn::smem_offset<S>(jj * 16 + vp.row, dp * 16 + vp.col);
          }
          host_ldmatrix(vs, addr, true, 4, b);
          split();
          for (int half = 0; half < 2; ++half) {
            const int dt = 2 * dp + half;
            mma_into([&](int lane, int e) { return W.o[lane][dt][e]; },
                     [&](int lane, int e, float v) { W.o[lane][dt][e] = v; }, a, half ? b23 : b01);
          }
        }
        if (S::kDimTiles % 2 != 0) {  // the last dim tile alone (Dh 72): ldmatrix.x2.trans
          const int dt = S::kDimTiles - 1;
          for (int lane = 0; lane < 32; ++lane) {
            const attn::LanePos vp = attn::ldsm_v(lane);
            addr[lane] = attn::smem_offset<S>(jj * 16 + vp.row, dt * 8 + vp.col);
          }
          host_ldmatrix(vs, addr, true, 2, b);
          split();
          mma_into([&](int lane, int e) { return W.o[lane][dt][e]; },
                   [&](int lane, int e, float v) { W.o[lane][dt][e] = v; }, a, b01);
        }
      }
    }
    std::fill(stage(j), stage(j) + S::kStageElems, kNaN);  // consumed: the kernel overwrites it next
  }

  uint16_t* out = static_cast<uint16_t*>(p.out) + (tile.start + tile.m0) * ldo + head * S::kHeadDim;
  const HostPack<kD> pack;
  for (int w = 0; w < S::kWarps; ++w) {
    Warp& W = warps[w];
    float l1[32][2];
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 2; ++r) l1[lane][r] = W.l[lane][r] + W.l[lane ^ 1][r];
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 2; ++r) {
        const float inv = attention_inv_sum(l1[lane][r] + l1[lane ^ 2][r]);
        const attn::LanePos pos = attn::acc_pos(lane, 2 * r);
        const int row = w * 16 + pos.row;
        if (row >= q_rows) continue;
        for (int dt = 0; dt < S::kDimTiles; ++dt) {
          const uint32_t v = pack(W.o[lane][dt][2 * r] * inv, W.o[lane][dt][2 * r + 1] * inv);
          out[row * ldo + dt * 8 + pos.col] = static_cast<uint16_t>(v & 0xffffu);
          out[row * ldo + dt * 8 + pos.col + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
  }
}

template <DType kD, int kHeadDim>
void attention_host_block(const AttentionParams& p, int warps, float c, const AttentionTile& tile, int64_t head) {
  if (p.tier == Tier::kCudaCore) {
    attention_host_core_block<kD, kHeadDim>(p, c, tile, head);
  } else if constexpr (kD != DType::kFloat32) {
    if (warps == 8) {
      attention_host_mma_block<kD, attn::MmaShape<kHeadDim, 8>>(p, c, tile, head);
    } else {
      attention_host_mma_block<kD, attn::MmaShape<kHeadDim, 4>>(p, c, tile, head);
    }
  }
}

template <DType kD>
void attention_host_run(const AttentionParams& p, int warps) {
  const int block_m = p.tier == Tier::kCudaCore ? kCoreBlockM : 16 * warps;
  const int64_t tiles = attention_tiles_per_seq(p, block_m);
  const int64_t grid_x = attention_grid_x(p, block_m);
  const float c = attention_exp2_scale(p.head_dim);
  const auto cu = [&](int64_t i) -> int64_t { return p.cu_seqlens[i]; };
  for (int64_t head = 0; head < p.num_heads; ++head)
    for (int64_t t = 0; t < grid_x; ++t) {
      const AttentionTile tile = attention_tile(cu, p.rows, p.num_seqs, tiles, block_m, t);
      if (tile.m0 >= tile.len) continue;
      if (p.head_dim == 64) {
        attention_host_block<kD, 64>(p, warps, c, tile, head);
      } else if (p.head_dim == 72) {
        attention_host_block<kD, 72>(p, warps, c, tile, head);
      } else {
        attention_host_block<kD, 80>(p, warps, c, tile, head);
      }
    }
}

}  // namespace detail

// attention_fwd's contract on HOST pointers, for p.tier's kernel; `warps` (4 or 8) picks the
// tensor-core tiers' block size (ignored by cuda_core). Same argument checks.
inline Status attention_host(const AttentionParams& p, int warps) {
  const Status s = attention_check(p);
  if (s != Status::kSuccess) return s;
  if (p.tier != Tier::kCudaCore && p.tier != Tier::kMmaSm75 && p.tier != Tier::kMmaSm80) return Status::kTierNotCompiled;
  if (warps != 4 && warps != 8) return Status::kInvalidArgument;
  switch (p.dtype) {
    case DType::kFloat32: detail::attention_host_run<DType::kFloat32>(p, warps); break;
    case DType::kFloat16: detail::attention_host_run<DType::kFloat16>(p, warps); break;
    case DType::kBFloat16: detail::attention_host_run<DType::kBFloat16>(p, warps); break;
  }
  return Status::kSuccess;
}

}  // namespace fastradio

// patch_embed on tensor cores: the kernel template behind the mma_sm80 and mma_sm75 tiers
// (patch_embed_sm80.cu, patch_embed_sm75.cu instantiate it, one translation unit each). Same
// contract and indexing (patch_embed.h) as the cuda_core tier; mirrors
// fastradio.backends.reference.patch_embed.
//
// 128 x 128 output tiles, K steps of 32 (two 16-pixel image rows of one channel per patch: a
// K step never leaves a channel because 32 divides 256), 8 warps of 64 x 32 with fp32
// accumulators, fragments by ldmatrix. The A tile is gathered from NCHW directly: each patch
// row-segment is 16 contiguous pixels = 32 bytes = two 16-byte copies. Shared rows are padded to
// 80 bytes so that the 8 rows an ldmatrix reads hit 8 distinct bank groups. The epilogue stages
// the fp32 accumulators through shared memory so that pos is read and the tokens are written in
// 16-byte pieces along D, adds pos in fp32 and rounds once; the block holding an image's first
// patch copies that image's prefix rows while its first loads are in flight.
//
//   mma_sm80 (sm_80+, fp16/bf16): mma.sync m16n8k16, a 4-stage cp.async pipeline (81920 bytes of
//            dynamic shared memory); x or weight not 16-byte aligned: the same pipeline filled
//            by scalar loads.
//   mma_sm75 (sm_75+, fp16): mma.sync m16n8k8 (two per k16), two stages filled from registers
//            loaded during the previous step's MMAs (Turing has no cp.async), the epilogue staged
//            in two halves: 40960 bytes, within Turing's 64 KiB.
#pragma once

#include "common/convert.h"  // Elem<>: fp32 <-> fp16/bf16 bits, host and device
#include "common/kernel.h"
#include "common/ptx.h"
#include "patch_embed/patch_embed.h"

namespace fastradio {
namespace patch_embed_mma {

constexpr int kThreads = 256;
constexpr int kBM = 128;       // patches per tile
constexpr int kBN = 128;       // output features per tile
constexpr int kBK = 32;        // features per K step: two image rows of 16 pixels
constexpr int kLds = kBK + 8;  // shared row of a K step, in elements: 80 bytes
constexpr int kKSteps = kPatchK / kBK;
constexpr int kWarpM = 64;     // rows per warp (4 m16 tiles)
constexpr int kWarpN = 32;     // columns per warp (4 n8 tiles)
constexpr int kLdc = kBN + 8;  // fp32 staging row of the epilogue: float2 writes in 2 wavefronts
constexpr int kStageElems = (kBM + kBN) * kLds;
static_assert(kPatch * kPatch % kBK == 0 && kBK % kPatch == 0, "a K step stays in one channel");
static_assert((kBM / kWarpM) * (kBN / kWarpN) * 32 == kThreads, "warp grid covers the tile");
static_assert(kBM * kBK / 8 == 2 * kThreads && kBN * kBK / 8 == 2 * kThreads, "two 16-byte chunks per thread");

// What distinguishes the tiers.
struct Sm80 {
  static constexpr bool kAsync = true;     // cp.async into a multi-stage ring
  static constexpr int kStages = 4;
  static constexpr bool kK16 = true;       // mma m16n8k16 (else two m16n8k8)
  static constexpr int kStagingRows = 128; // epilogue rows staged at once
};
struct Sm75 {
  static constexpr bool kAsync = false;
  static constexpr int kStages = 2;
  static constexpr bool kK16 = false;
  static constexpr int kStagingRows = 64;
};

// Dynamic shared memory of a tier: the pipeline's stages, reused by the epilogue's staging rows.
template <class Cfg>
inline constexpr int kSmemBytes = Cfg::kStages * kStageElems * 2 > Cfg::kStagingRows * kLdc * 4
                                      ? Cfg::kStages * kStageElems * 2
                                      : Cfg::kStagingRows * kLdc * 4;

struct Vectorised {
  bool x;    // x 16-byte aligned (patch runs start at multiples of 16 elements)
  bool w;    // weight 16-byte aligned (rows of 768 elements)
  bool out;  // D % 8 == 0, pos and out 16-byte aligned: 16-byte epilogue accesses
};

// 8 contiguous 16-bit elements: one 16-byte load, or 8 scalar loads when not 16-byte aligned;
// zeros when !ok.
__device__ __forceinline__ uint4 load_chunk(const uint16_t* src, bool ok, bool vec) {
  if (!ok) return make_uint4(0u, 0u, 0u, 0u);
  if (vec) return __ldg(reinterpret_cast<const uint4*>(src));
  uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int i = 0; i < 8; ++i) w[i / 2] |= uint32_t(__ldg(src + i)) << (16 * (i % 2));
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <DType kT, bool kK16>
__device__ __forceinline__ void mma_k16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kK16) {
    if constexpr (kT == DType::kFloat16) {
      ptx::mma_m16n8k16_f16(c, a, b);
    } else {
      ptx::mma_m16n8k16_bf16(c, a, b);
    }
  } else {
    static_assert(kT == DType::kFloat16, "m16n8k8 with fp32 accumulation exists for fp16 only");
    // k 0..7 are A registers 0-1 and B register 0; k 8..15 are A registers 2-3 and B register 1.
    const uint32_t lo[2] = {a[0], a[1]};
    const uint32_t hi[2] = {a[2], a[3]};
    ptx::mma_m16n8k8_f16(c, lo, b[0]);
    ptx::mma_m16n8k8_f16(c, hi, b[1]);
  }
}

template <DType kT, class Cfg>
__global__ void __launch_bounds__(kThreads, 1) patch_embed_mma_kernel(PatchEmbedParams p, Vectorised vec,
                                                                       int64_t n_tiles) {
#if FASTRADIO_DEVICE_ARCH >= 750
  constexpr int kStages = Cfg::kStages;
  static_assert(kSmemBytes<Cfg> <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10),
                "shared memory over this arch's limit");
  FASTRADIO_DYNAMIC_SHARED(16, unsigned char, smem);
  uint16_t* const pipe = reinterpret_cast<uint16_t*>(smem);  // [stage][A rows | B rows][kLds]
  const uint16_t* __restrict__ x = static_cast<const uint16_t*>(p.x);            // (B, 3, H, W)
  const uint16_t* __restrict__ weight = static_cast<const uint16_t*>(p.weight);  // (D, 768)
  const uint16_t* __restrict__ pos = static_cast<const uint16_t*>(p.pos);        // (h*w, D)
  const uint16_t* __restrict__ prefix = static_cast<const uint16_t*>(p.prefix);  // (P, D) or null
  uint16_t* __restrict__ out = static_cast<uint16_t*>(p.out);                    // (B, P + h*w, D)

  const int64_t grid_w = p.width / kPatch;
  const int64_t hw = (p.height / kPatch) * grid_w;
  const int64_t rows = p.batch * hw;  // GEMM M
  const int64_t dim = p.dim;
  // N fastest: the blocks in flight share one A tile, so image bytes come from DRAM once.
  const int64_t tile_m = int64_t(blockIdx.x) / n_tiles;
  const int64_t m0 = tile_m * kBM;
  const int64_t n0 = (int64_t(blockIdx.x) - tile_m * n_tiles) * kBN;
  const int tid = threadIdx.x;

  // Loads: thread tid copies chunk tid % 4 (features 8c..8c+7 of the step) of rows tid / 4 and
  // tid / 4 + 64 of both tiles. Four neighbouring threads read one patch's two 32-byte runs.
  const int chunk = tid % 4;
  int64_t a_base[2];
  bool a_ok[2], b_ok[2];
  const uint16_t* b_src[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = tid / 4 + 64 * i;
    a_ok[i] = m0 + r < rows;
    a_base[i] = a_ok[i] ? patch_embed_row(m0 + r, grid_w, hw, p.prefix_len, p.height, p.width).x_base : 0;
    b_ok[i] = n0 + r < dim;
    b_src[i] = weight + (b_ok[i] ? n0 + r : 0) * kPatchK + chunk * 8;
  }
  auto a_src = [&](int i, int ks) {
    return a_ok[i] ? x + a_base[i] + patch_embed_feature_offset(ks * kBK + chunk * 8, p.height, p.width) : x;
  };
  auto dst = [&](int stage, int i, bool b_tile) {
    return pipe + stage * kStageElems + (b_tile ? kBM * kLds : 0) + (tid / 4 + 64 * i) * kLds + chunk * 8;
  };
  // Async tier: a step's copies go straight into its stage (cp.async, zero-filled out of range;
  // scalar loads and shared stores when a source is unaligned). Register tier: loaded into
  // `staged` during the previous step's MMAs, stored after them.
  uint4 staged[2][2];  // [A, B][row i]
  auto load_step = [&](int stage, int ks) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      if constexpr (Cfg::kAsync) {
        if (vec.x) {
          ptx::cp_async_16(dst(stage, i, false), a_src(i, ks), a_ok[i]);
        } else {
          *reinterpret_cast<uint4*>(dst(stage, i, false)) = load_chunk(a_src(i, ks), a_ok[i], false);
        }
        if (vec.w) {
          ptx::cp_async_16(dst(stage, i, true), b_src[i] + ks * kBK, b_ok[i]);
        } else {
          *reinterpret_cast<uint4*>(dst(stage, i, true)) = load_chunk(b_src[i] + ks * kBK, b_ok[i], false);
        }
      } else {
        staged[0][i] = load_chunk(a_src(i, ks), a_ok[i], vec.x);
        staged[1][i] = load_chunk(b_src[i] + ks * kBK, b_ok[i], vec.w);
      }
    }
  };
  auto store_staged = [&](int stage) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      *reinterpret_cast<uint4*>(dst(stage, i, false)) = staged[0][i];
      *reinterpret_cast<uint4*>(dst(stage, i, true)) = staged[1][i];
    }
  };

  if constexpr (Cfg::kAsync) {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      load_step(s, s);
      ptx::cp_async_commit();
    }
  } else {
    load_step(0, 0);
  }

  // Prefix rows of the images whose first patch is in this M tile, this tile's features.
  const PrefixImages own = patch_embed_prefix_images(m0, kBM, hw, p.batch);
  for (int64_t b = own.first; b < own.last; ++b) {
    for (int64_t i = tid; i < p.prefix_len * kBN; i += kThreads) {
      const int64_t j = i / kBN;
      const int64_t n = n0 + (i - j * kBN);
      if (n < dim) out[(b * (p.prefix_len + hw) + j) * dim + n] = prefix[j * dim + n];
    }
  }
  if constexpr (!Cfg::kAsync) store_staged(0);

  const int lane = tid % 32;
  const int warp = tid / 32;
  const int wm = warp % (kBM / kWarpM);
  const int wn = warp / (kBM / kWarpM);
  float acc[4][4][4];
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;

  // ldmatrix row addresses (ptx.h fragment layouts): A x4 = rows lane % 16, k half lane / 16;
  // B x4 = two n8 tiles (lane / 16) x two k halves ((lane / 8) % 2).
  const int a_row = wm * kWarpM + lane % 16;
  const int a_col = (lane / 16) * 8;
  const int b_row = wn * kWarpN + lane % 8 + (lane / 16) * 8;
  const int b_col = ((lane / 8) % 2) * 8;

  for (int ks = 0; ks < kKSteps; ++ks) {
    if constexpr (Cfg::kAsync) {
      // Step ks has landed for this thread; the barrier makes it so for all threads, and frees
      // the stage read in step ks - 1 for the load below.
      ptx::cp_async_wait<kStages - 2>();
      __syncthreads();
      if (ks + kStages - 1 < kKSteps) load_step((ks + kStages - 1) % kStages, ks + kStages - 1);
      ptx::cp_async_commit();  // possibly empty: keeps the group count of the wait above exact
    } else {
      // Step ks is in shared memory (stored before the barrier); the next step's loads fly
      // during the MMAs below.
      __syncthreads();
      if (ks + 1 < kKSteps) load_step(0, ks + 1);
    }

    const uint16_t* a_tile = pipe + (ks % kStages) * kStageElems;
    const uint16_t* b_tile = a_tile + kBM * kLds;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) ptx::ldmatrix_x4(a[mi], a_tile + (a_row + mi * 16) * kLds + kk + a_col);
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        uint32_t r[4];
        ptx::ldmatrix_x4(r, b_tile + (b_row + nj * 16) * kLds + kk + b_col);
        b[2 * nj][0] = r[0], b[2 * nj][1] = r[1], b[2 * nj + 1][0] = r[2], b[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma_k16<kT, Cfg::kK16>(acc[mi][ni], a[mi], b[ni]);
    }
    if constexpr (!Cfg::kAsync) {
      // The other stage was last read in step ks - 1, finished by every thread before the
      // barrier at the top of this step.
      if (ks + 1 < kKSteps) store_staged((ks + 1) % kStages);
    }
  }

  // Epilogue: accumulators -> fp32 staging rows (reusing the pipeline's memory once every copy
  // has landed and every warp is done reading) -> + pos, one rounding, 16-byte stores along D.
  if constexpr (Cfg::kAsync) ptx::cp_async_wait<0>();
  __syncthreads();
  float* const staging = reinterpret_cast<float*>(smem);  // [kStagingRows][kLdc]
  const int g = lane / 4;
  const int t4 = lane % 4;
  using E = Elem<kT>;
#pragma unroll
  for (int part = 0; part < kBM / Cfg::kStagingRows; ++part) {
    const int row0 = part * Cfg::kStagingRows;
    if (wm * kWarpM >= row0 && wm * kWarpM < row0 + Cfg::kStagingRows) {  // this warp's rows
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = wm * kWarpM + mi * 16 + g + 8 * h - row0;
            const int c = wn * kWarpN + ni * 8 + 2 * t4;
            *reinterpret_cast<float2*>(staging + r * kLdc + c) =
                make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
          }
    }
    __syncthreads();
#pragma unroll 2
    for (int i = 0; i < Cfg::kStagingRows * kBN / 8 / kThreads; ++i) {
      const int id = tid + i * kThreads;
      const int r = id / (kBN / 8);
      const int c = (id % (kBN / 8)) * 8;
      const int64_t m = m0 + row0 + r;
      const int64_t n = n0 + c;
      if (m >= rows || n >= dim) continue;
      const PatchRow pr = patch_embed_row(m, grid_w, hw, p.prefix_len, p.height, p.width);
      const float* v = staging + r * kLdc + c;
      const uint16_t* q = pos + pr.pos_row * dim + n;
      uint16_t* o = out + pr.out_row * dim + n;
      if (vec.out && n + 8 <= dim) {
        const uint4 qv = __ldg(reinterpret_cast<const uint4*>(q));
        const uint32_t qw[4] = {qv.x, qv.y, qv.z, qv.w};
        uint32_t ow[4] = {0u, 0u, 0u, 0u};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float s = v[j] + E::to_float(static_cast<uint16_t>(qw[j / 2] >> (16 * (j % 2))));
          ow[j / 2] |= uint32_t(E::from_float(s)) << (16 * (j % 2));
        }
        *reinterpret_cast<uint4*>(o) = make_uint4(ow[0], ow[1], ow[2], ow[3]);
      } else {
        for (int j = 0; j < 8 && n + j < dim; ++j) o[j] = E::from_float(v[j] + E::to_float(__ldg(q + j)));
      }
    }
    if (part + 1 < kBM / Cfg::kStagingRows) __syncthreads();  // staging is rewritten next part
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

inline bool aligned(const void* q, int64_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <DType kT, class Cfg>
Status launch(const PatchEmbedParams& p, cudaStream_t stream) {
  const Vectorised vec{aligned(p.x, 16), aligned(p.weight, 16),
                       p.dim % 8 == 0 && aligned(p.pos, 16) && aligned(p.out, 16)};
  const int64_t rows = p.batch * (p.height / kPatch) * (p.width / kPatch);
  const int64_t m_tiles = (rows + kBM - 1) / kBM;
  const int64_t n_tiles = (p.dim + kBN - 1) / kBN;
  if (m_tiles > (int64_t(1) << 31) / n_tiles - 1) return Status::kInvalidArgument;  // grid.x limit
  constexpr int kSmem = kSmemBytes<Cfg>;
  if constexpr (kSmem > 48 * 1024) {
    FASTRADIO_CUDA_TRY(cudaFuncSetAttribute(reinterpret_cast<const void*>(&patch_embed_mma_kernel<kT, Cfg>),
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  }
  FASTRADIO_LAUNCH(dim3(unsigned(m_tiles * n_tiles)), dim3(kThreads), kSmem, stream, patch_embed_mma_kernel<kT, Cfg>)(
      p, vec, n_tiles);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace patch_embed_mma
}  // namespace fastradio

// patch_embed, tensor-core tier mma_sm80 (sm_80+, fp16/bf16): tokens (B, P + h*w, D) =
// [prefix; im2patch(x) . W^T + pos] with fp32 accumulation and one rounding. Mirrors
// fastradio.backends.reference.patch_embed; same contract and indexing (patch_embed.h) as the
// cuda_core tier in patch_embed.cu.
//
// 128 x 128 output tiles, K steps of 32 (two 16-pixel image rows of one channel per patch: a
// K step never leaves a channel because 32 divides 256), 8 warps of 64 x 32, mma.sync m16n8k16
// with fp32 accumulators, fragments by ldmatrix, and a 4-stage cp.async pipeline. The A tile is
// gathered from NCHW directly: each patch row-segment is 16 contiguous pixels = 32 bytes = two
// 16-byte cp.async (x must be 16-byte aligned; else the same pipeline is filled by scalar loads).
// Shared rows are padded to 80 bytes so that the 8 rows an ldmatrix reads hit 8 distinct bank
// groups. The epilogue stages the fp32 accumulators through shared memory so that pos is read
// and the tokens are written in 16-byte pieces along D, adds pos in fp32 and rounds once; the
// block holding an image's first patch copies that image's prefix rows, overlapping the
// pipeline's first loads.
#include "patch_embed/patch_embed.h"

#include "add_layer_norm/add_layer_norm.h"  // Elem<>: fp32 <-> fp16/bf16 bits, host and device
#include "common/ptx.h"

namespace fastradio {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 128;       // patches per tile
constexpr int kBN = 128;       // output features per tile
constexpr int kBK = 32;        // features per K step: two image rows of 16 pixels
constexpr int kStages = 4;     // cp.async pipeline depth
constexpr int kLds = kBK + 8;  // shared row of a K step, in elements: 80 bytes
constexpr int kKSteps = kPatchK / kBK;
constexpr int kWarpM = 64;  // rows per warp (4 m16 tiles)
constexpr int kWarpN = 32;  // columns per warp (4 n8 tiles)
constexpr int kLdc = kBN + 8;  // fp32 staging row of the epilogue: float2 writes in 2 wavefronts
constexpr int kStageElems = (kBM + kBN) * kLds;
constexpr int kPipeBytes = kStages * kStageElems * 2;
constexpr int kStagingBytes = kBM * kLdc * 4;
constexpr int kSmemBytes = kPipeBytes > kStagingBytes ? kPipeBytes : kStagingBytes;
static_assert(kPatch * kPatch % kBK == 0 && kBK % kPatch == 0, "a K step stays in one channel");
static_assert((kBM / kWarpM) * (kBN / kWarpN) * 32 == kThreads, "warp grid covers the tile");
static_assert(kBM * kBK / 8 == 2 * kThreads && kBN * kBK / 8 == 2 * kThreads, "two 16-byte chunks per thread");

struct Vectorised {
  bool x;    // x 16-byte aligned: cp.async for A (patch runs start at multiples of 16 elements)
  bool w;    // weight 16-byte aligned: cp.async for B (rows of 768 elements)
  bool out;  // D % 8 == 0, pos and out 16-byte aligned: 16-byte epilogue accesses
};

// 8 contiguous 16-bit elements into shared memory: one cp.async (zero-filled when !ok), or 8
// scalar loads when the source is not 16-byte aligned.
__device__ __forceinline__ void load_chunk(uint16_t* dst, const uint16_t* src, bool ok, bool vec) {
  if (vec) {
    ptx::cp_async_16(dst, src, ok);
    return;
  }
  uint32_t w[4] = {0u, 0u, 0u, 0u};
  if (ok) {
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i / 2] |= uint32_t(__ldg(src + i)) << (16 * (i % 2));
  }
  *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

template <DType kT>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kT == DType::kFloat16) {
    ptx::mma_m16n8k16_f16(c, a, b);
  } else {
    ptx::mma_m16n8k16_bf16(c, a, b);
  }
}

template <DType kT>
__global__ void __launch_bounds__(kThreads, 1) patch_embed_mma_sm80_kernel(PatchEmbedParams p, Vectorised vec,
                                                                            int64_t n_tiles) {
#if FASTRADIO_DEVICE_ARCH >= 800
  static_assert(kSmemBytes <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10), "shared memory over this arch's limit");
  extern __shared__ __align__(16) unsigned char smem[];
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
  auto load_step = [&](int stage, int ks) {
    uint16_t* a_dst = pipe + stage * kStageElems;
    uint16_t* b_dst = a_dst + kBM * kLds;
    const int64_t f_off = patch_embed_feature_offset(ks * kBK + chunk * 8, p.height, p.width);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = tid / 4 + 64 * i;
      load_chunk(a_dst + r * kLds + chunk * 8, a_ok[i] ? x + a_base[i] + f_off : x, a_ok[i], vec.x);
      load_chunk(b_dst + r * kLds + chunk * 8, b_src[i] + ks * kBK, b_ok[i], vec.w);
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    load_step(s, s);
    ptx::cp_async_commit();
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
    // Step ks has landed for this thread; the barrier makes it so for all threads, and frees
    // the stage read in step ks - 1 for the load below.
    ptx::cp_async_wait<kStages - 2>();
    __syncthreads();
    if (ks + kStages - 1 < kKSteps) load_step((ks + kStages - 1) % kStages, ks + kStages - 1);
    ptx::cp_async_commit();  // possibly empty: keeps the group count of the wait above exact

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
        for (int ni = 0; ni < 4; ++ni) mma<kT>(acc[mi][ni], a[mi], b[ni]);
    }
  }

  // Epilogue: accumulators -> fp32 staging tile (reusing the pipeline's memory once every copy
  // has landed and every warp is done reading) -> + pos, one rounding, 16-byte stores along D.
  ptx::cp_async_wait<0>();
  __syncthreads();
  float* const staging = reinterpret_cast<float*>(smem);  // [kBM][kLdc]
  const int g = lane / 4;
  const int t4 = lane % 4;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * kWarpM + mi * 16 + g + 8 * h;
        const int c = wn * kWarpN + ni * 8 + 2 * t4;
        *reinterpret_cast<float2*>(staging + r * kLdc + c) = make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
      }
  __syncthreads();

  using E = Elem<kT>;
#pragma unroll 2
  for (int i = 0; i < kBM * kBN / 8 / kThreads; ++i) {
    const int id = tid + i * kThreads;
    const int r = id / (kBN / 8);
    const int c = (id % (kBN / 8)) * 8;
    const int64_t m = m0 + r;
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
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

bool aligned(const void* q, int64_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <DType kT>
Status launch(const PatchEmbedParams& p, cudaStream_t stream) {
  const Vectorised vec{aligned(p.x, 16), aligned(p.weight, 16),
                       p.dim % 8 == 0 && aligned(p.pos, 16) && aligned(p.out, 16)};
  const int64_t rows = p.batch * (p.height / kPatch) * (p.width / kPatch);
  const int64_t m_tiles = (rows + kBM - 1) / kBM;
  const int64_t n_tiles = (p.dim + kBN - 1) / kBN;
  if (m_tiles > (int64_t(1) << 31) / n_tiles - 1) return Status::kInvalidArgument;  // grid.x limit
  FASTRADIO_CUDA_TRY(cudaFuncSetAttribute(reinterpret_cast<const void*>(&patch_embed_mma_sm80_kernel<kT>),
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  patch_embed_mma_sm80_kernel<kT>
      <<<dim3(unsigned(m_tiles * n_tiles)), dim3(kThreads), kSmemBytes, stream>>>(p, vec, n_tiles);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace

namespace detail {

Status patch_embed_mma_sm80(const PatchEmbedParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat16: return launch<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch<DType::kBFloat16>(p, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace detail
}  // namespace fastradio

// linear, mma_sm80 tier: out = act(x·Wᵀ + bias) + residual on tensor cores, fp16 or bf16 inputs,
// fp32 accumulation (mma.sync m16n8k16), the epilogue in fp32 and one rounding.
// Mirrors fastradio.backends.reference.linear. Tier: mma_sm80, sm_80 and newer.
//
// Tiles (linear_mma.cuh): 128 x 128 outputs per block, 8 warps of 64 x 32, k-step 32, a 4-stage
// cp.async pipeline (16 KiB per stage, 64 KiB of dynamic shared memory), swizzled conflict-free
// ldmatrix, grouped block order for L2 reuse of the x row panels. Grids of fewer 128 x 128 tiles
// than the GPU has SMs (one image: 1032 tokens x 1024 features = 72 tiles on 132 SMs) take
// 64 x 128 tiles with 4 warps instead (48 KiB), which doubles the blocks. K % 8 != 0 or unaligned
// x/W: the same pipeline with predicated 2-byte loads stored synchronously (correct, slower).
// The epilogue goes through shared memory (linear_mma.cuh, epilogue_staged): the accumulators die
// before the GELU (whose erff, interleaved with 64 live accumulators, spilled on sm_100/sm_120) and
// the stores become 8-byte groups of 16 threads per 128-byte row segment.
//
// Expected speed (reasoned, not yet measured on a GPU): each stage brings 16 KiB for
// 2·128·128·32 = 1 MFLOP (64 FLOP per byte of L2 traffic; a group's x panels and all of W stay in
// L2 for the model's shapes: W is at most 1536 x 6144 x 2 B = 18 MiB). Per warp and k16: 6
// ldmatrix.x4 (conflict-free, checked by tests/test_cuda_linear.py) feed 16 mma. ptxas keeps the
// kernels at <= 128 registers without spills (__launch_bounds__(256, 2); 117-125 depending on arch
// and toolchain), so two 128 x 128 blocks share an SM (2 x 68 KiB shared memory with the staged
// epilogue's tile, 16 warps) on sm_80/sm_90 (one on the 99 KiB sm_86/89/120). On A100 that is the classic CUTLASS sm80 shape:
// ~75-85 % of the 312 TFLOP/s fp16/bf16 peak at large N. On H100 mma.sync issues at roughly half
// the rate of wgmma and, without TMA, the loads take issue slots: expect ~40-55 % of the measured
// ~790 TFLOP/s (about 330-430), i.e. behind torch.addmm (cuBLAS, wgmma) on big batches; closing
// that gap is a wgmma_sm90a tier's job. Batch 1 (one wave of 64 x 128 tiles) is latency-bound
// and shorter K loops amortise the pipeline fill less: ~25-35 %.
#include "linear/linear_mma.cuh"
#include "common/kernel.h"

namespace fastradio {
namespace {

using Big = linear_mma::Sm80Big;
using Small = linear_mma::Sm80Small;

// Blocks per SM the register budget must allow (<= 128 registers per thread either way): the
// pipeline's latency is hidden by other blocks' warps, 16 per SM.
template <class C>
constexpr int kMinBlocks = C::kThreads == 256 ? 2 : 4;

// Dynamic shared memory: the pipeline's stages, reused by the staged epilogue.
template <class C>
constexpr int kSmemBytes = C::kPipeBytes > C::kOutBytes ? C::kPipeBytes : C::kOutBytes;

template <DType kT>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kT == DType::kBFloat16) {
    ptx::mma_m16n8k16_bf16(c, a, b);
  } else {
    ptx::mma_m16n8k16_f16(c, a, b);
  }
}

// Stage `stage` <- rows [row0, row0 + tile_rows) x k [k0, k0 + 32) of src (zeros outside): cp.async
// (zero-filling chunks outside) when kAligned, else synchronous predicated loads and 16-byte stores.
template <class C, int kTileRows, bool kAligned>
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* __restrict__ src, int64_t rows, int64_t K,
                                          int64_t row0, int64_t k0) {
  constexpr int kChunks = kTileRows * C::kChunksPerRow / C::kThreads;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const linear_mma::Chunk ch = linear_mma::chunk_of<C>(int(threadIdx.x), i);
    const int64_t row = row0 + ch.r;
    const int64_t k = k0 + 8 * ch.c;
    uint16_t* dst = tile + linear_mma::swizzle(ch);
    if constexpr (kAligned) {
      const bool live = row < rows && k < K;
      ptx::cp_async_16(dst, live ? src + row * K + k : src, live);
    } else {
      *reinterpret_cast<uint4*>(dst) = linear_mma::load_chunk<false>(src, rows, K, row, k);
    }
  }
}

template <DType kT, class C, bool kAligned>
__global__ void __launch_bounds__(C::kThreads, kMinBlocks<C>) linear_sm80_kernel(LinearParams p, bool vec4) {
#if FASTRADIO_DEVICE_ARCH >= 800
  static_assert(kSmemBytes<C> <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10), "shared memory over the arch's limit");
  FASTRADIO_DYNAMIC_SHARED(128, uint16_t, smem);  // kSmemBytes<C>
  const uint16_t* __restrict__ x = static_cast<const uint16_t*>(p.x);       // (n, k)
  const uint16_t* __restrict__ w = static_cast<const uint16_t*>(p.weight);  // (m, k)
  const int64_t tiles_r = (p.n + C::kRows - 1) / C::kRows;
  const int64_t tiles_c = (p.m + C::kCols - 1) / C::kCols;
  const LinearTile tile = linear_block_tile(blockIdx.x, tiles_r, tiles_c, kLinearGroupRows);
  const int64_t row0 = tile.row_tile * C::kRows;
  const int64_t col0 = tile.col_tile * C::kCols;
  const int lane = int(threadIdx.x) & 31;
  const int warp = int(threadIdx.x) >> 5;
  const int warp_r = warp / C::kWarpsC;
  const int warp_c = warp % C::kWarpsC;

  float acc[C::kMi][C::kNi][4];
#pragma unroll
  for (int mi = 0; mi < C::kMi; ++mi)
#pragma unroll
    for (int ni = 0; ni < C::kNi; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;

  const int64_t steps = (p.k + C::kK - 1) / C::kK;
  auto load_stage = [&](int stage, int64_t step) {
    uint16_t* xs = smem + stage * C::kStageElems;
    load_tile<C, C::kRows, kAligned>(xs, x, p.n, p.k, row0, step * C::kK);
    load_tile<C, C::kCols, kAligned>(xs + C::kXElems, w, p.m, p.k, col0, step * C::kK);
  };
  // Prologue: kStages - 1 stages in flight. One commit per stage slot, even when empty, so that
  // "wait until at most kStages - 2 groups are pending" always means "step s has landed".
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < steps) load_stage(s, s);
    ptx::cp_async_commit();
  }
  int stage = 0;
  for (int64_t s = 0; s < steps; ++s) {
    ptx::cp_async_wait<C::kStages - 2>();
    __syncthreads();  // step s visible to every warp; every warp is done with step s - 1's stage
    const int64_t next = s + C::kStages - 1;
    if (next < steps) load_stage(stage == 0 ? C::kStages - 1 : stage - 1, next);
    ptx::cp_async_commit();
    const uint16_t* xs = smem + stage * C::kStageElems;
    const uint16_t* ws = xs + C::kXElems;
#pragma unroll 1  // unrolled, ptxas keeps both steps' fragments live: 128 registers, spills on sm_100+
    for (int ks = 0; ks < C::kK / 16; ++ks) {
      uint32_t a[C::kMi][4], b[C::kNi][2];
      linear_mma::load_a<C>(xs, warp_r, lane, ks, a);
      linear_mma::load_b<C>(ws, warp_c, lane, ks, b);
#pragma unroll
      for (int mi = 0; mi < C::kMi; ++mi)
#pragma unroll
        for (int ni = 0; ni < C::kNi; ++ni) mma<kT>(acc[mi][ni], a[mi], b[ni]);
    }
    stage = stage + 1 == C::kStages ? 0 : stage + 1;
  }
  ptx::cp_async_wait<0>();  // only empty groups remain: the stages may be reused

  linear_mma::epilogue_staged<kT, C>(p, acc, reinterpret_cast<float*>(smem), row0, col0, warp_r, warp_c, lane, vec4);
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <DType kT, class C, bool kAligned>
Status launch(const LinearParams& p, cudaStream_t stream) {
  const int64_t blocks = linear_mma::grid_blocks<C>(p);
  if (blocks == 0) return Status::kInvalidArgument;
  auto kernel = linear_sm80_kernel<kT, C, kAligned>;
  // Over 48 KiB needs the opt-in, per device; setting it again is harmless (and capture-safe).
  if (kSmemBytes<C> > 48 * 1024)
    FASTRADIO_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes<C>));
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(C::kThreads), kSmemBytes<C>, stream, kernel)(p, linear_mma::quads_ok(p));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kT>
Status launch_dtype(const LinearParams& p, cudaStream_t stream) {
  if (!linear_mma::chunks_ok(p)) return launch<kT, Big, false>(p, stream);
  const int sms = linear_mma::sm_count();
  if (sms > 0 && linear_mma::grid_blocks<Big>(p) < sms) return launch<kT, Small, true>(p, stream);
  return launch<kT, Big, true>(p, stream);
}

}  // namespace

Status linear_mma_sm80(const LinearParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat16: return launch_dtype<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_dtype<DType::kBFloat16>(p, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace fastradio

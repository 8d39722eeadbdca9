// linear, mma_sm75 tier: out = act(x·Wᵀ + bias) + residual on Turing's tensor cores, fp16 inputs
// (Turing has no bf16 mma), fp32 accumulation with mma.sync m16n8k8, epilogue in fp32, one rounding.
// Mirrors fastradio.backends.reference.linear. Tier: mma_sm75, sm_75 and newer.
//
// The tiles, swizzled layout, fragments and epilogue of linear_mma.cuh (128 x 128 per block,
// 8 warps of 64 x 32, k-step 32); each ldmatrix'd 16 x 16 A fragment and 16 x 8 B fragment feed two
// m16n8k8 mma (k 0-7 from registers 0-1 / 0, k 8-15 from 2-3 / 1). No cp.async before sm_80: the
// next stage is loaded into registers (4 x 16 bytes per thread) while the current one is multiplied,
// then stored to the other of two shared buffers (2 x 16 KiB static), one barrier per step.
// K % 8 != 0 or unaligned x/W: predicated 2-byte loads into the same registers. The staged chunks
// (16 registers) on top of the 64 accumulators put the kernel at ~160-180 registers, so one block
// (8 warps) runs per SM; capping it at 128 for two blocks spilled on every arch.
#include "linear/linear_mma.cuh"
#include "common/kernel.h"

namespace fastradio {
namespace {

using C = linear_mma::Sm75Tile;

// This thread's chunks of one stage, between their global loads and their shared-memory stores.
template <bool kAligned>
struct StageRegs {
  uint4 x[C::kXChunks];
  uint4 w[C::kWChunks];

  __device__ __forceinline__ void load(const LinearParams& p, int64_t row0, int64_t col0, int64_t k0) {
    const uint16_t* __restrict__ xp = static_cast<const uint16_t*>(p.x);       // (n, k)
    const uint16_t* __restrict__ wp = static_cast<const uint16_t*>(p.weight);  // (m, k)
#pragma unroll
    for (int i = 0; i < C::kXChunks; ++i) {
      const linear_mma::Chunk ch = linear_mma::chunk_of<C>(int(threadIdx.x), i);
      x[i] = linear_mma::load_chunk<kAligned>(xp, p.n, p.k, row0 + ch.r, k0 + 8 * ch.c);
    }
#pragma unroll
    for (int i = 0; i < C::kWChunks; ++i) {
      const linear_mma::Chunk ch = linear_mma::chunk_of<C>(int(threadIdx.x), i);
      w[i] = linear_mma::load_chunk<kAligned>(wp, p.m, p.k, col0 + ch.r, k0 + 8 * ch.c);
    }
  }

  __device__ __forceinline__ void store(uint16_t* stage) const {
#pragma unroll
    for (int i = 0; i < C::kXChunks; ++i) {
      *reinterpret_cast<uint4*>(stage + linear_mma::swizzle(linear_mma::chunk_of<C>(int(threadIdx.x), i))) = x[i];
    }
#pragma unroll
    for (int i = 0; i < C::kWChunks; ++i) {
      *reinterpret_cast<uint4*>(stage + C::kXElems + linear_mma::swizzle(linear_mma::chunk_of<C>(int(threadIdx.x), i))) =
          w[i];
    }
  }
};

template <bool kAligned>
__global__ void __launch_bounds__(C::kThreads, 1) linear_sm75_kernel(LinearParams p, bool vec2) {
#if FASTRADIO_DEVICE_ARCH >= 750
  static_assert(C::kPipeBytes <= 48 * 1024, "static shared memory is capped at 48 KiB");
  FASTRADIO_SHARED(128, uint16_t, smem, [C::kStages * C::kStageElems]);
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

  StageRegs<kAligned> regs;
  regs.load(p, row0, col0, 0);
  regs.store(smem);
  __syncthreads();
  const int64_t steps = (p.k + C::kK - 1) / C::kK;
  for (int64_t s = 0; s < steps; ++s) {
    const int buf = int(s & 1);
    const bool more = s + 1 < steps;
    if (more) regs.load(p, row0, col0, (s + 1) * C::kK);  // in flight during this step's mma
    const uint16_t* xs = smem + buf * C::kStageElems;
    const uint16_t* ws = xs + C::kXElems;
#pragma unroll
    for (int ks = 0; ks < C::kK / 16; ++ks) {
      uint32_t a[C::kMi][4], b[C::kNi][2];
      linear_mma::load_a<C>(xs, warp_r, lane, ks, a);
      linear_mma::load_b<C>(ws, warp_c, lane, ks, b);
#pragma unroll
      for (int mi = 0; mi < C::kMi; ++mi) {
#pragma unroll
        for (int ni = 0; ni < C::kNi; ++ni) {
          const uint32_t lo[2] = {a[mi][0], a[mi][1]};
          const uint32_t hi[2] = {a[mi][2], a[mi][3]};
          ptx::mma_m16n8k8_f16(acc[mi][ni], lo, b[ni][0]);
          ptx::mma_m16n8k8_f16(acc[mi][ni], hi, b[ni][1]);
        }
      }
    }
    if (more) regs.store(smem + (buf ^ 1) * C::kStageElems);  // last read before the previous barrier
    __syncthreads();
  }

  linear_mma::epilogue<DType::kFloat16, C>(p, acc, row0, col0, warp_r, warp_c, lane, vec2);
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <bool kAligned>
Status launch(const LinearParams& p, cudaStream_t stream) {
  const int64_t blocks = linear_mma::grid_blocks<C>(p);
  if (blocks == 0) return Status::kInvalidArgument;
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(C::kThreads), 0, stream, linear_sm75_kernel<kAligned>)(
      p, linear_mma::pairs_ok(p));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace

Status linear_mma_sm75(const LinearParams& p, cudaStream_t stream) {
  if (p.dtype != DType::kFloat16) return Status::kUnsupportedDType;
  return linear_mma::chunks_ok(p) ? launch<true>(p, stream) : launch<false>(p, stream);
}

}  // namespace fastradio

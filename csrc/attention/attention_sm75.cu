// attention, mma_sm75 tier (sm_75+, fp16 only: Turing has no bf16 MMA): the block of
// attention_mma.cuh with register-staged copies (no cp.async before sm_80: the next K/V tile is
// loaded into registers before the current tile's math and stored to the other stage after it)
// and each m16n8k16 as two m16n8k8. Mirrors fastradio.backends.reference.attention; head dims 64,
// 72 and 80, 8 warps of 16 query rows, 64 keys per step. Same shared-memory roofline as the sm_80
// tier (see attention_sm80.cu). Always 8 warps: Turing's 64 KB of shared memory per SM hold one
// block (36-45 KB of K/V stages), so a 4-warp block would leave the SM at 4 warps; and the
// register staging of a 4-warp block (10 x 16 bytes per thread) takes clang to 252 registers.
#include "attention/attention_mma.cuh"
#include "common/kernel.h"

namespace fastradio {
namespace {

template <class S>
__global__ void __launch_bounds__(S::kThreads, 1) attention_sm75_kernel(AttentionParams p, float c,
                                                                     int64_t tiles_per_seq) {
#if FASTRADIO_DEVICE_ARCH >= 750
  FASTRADIO_SHARED(16, uint16_t, smem, [S::kSmemElems]);
  attn::attention_mma_block<S, DType::kFloat16, false>(p, c, tiles_per_seq, smem);
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <int kHeadDim, int kWarps>
Status launch(const AttentionParams& p, cudaStream_t stream) {
  using S = attn::MmaShape<kHeadDim, kWarps>;
  const dim3 grid(unsigned(attention_grid_x(p, S::kBlockM)), unsigned(p.num_heads));
  FASTRADIO_LAUNCH(grid, S::kThreads, 0, stream, attention_sm75_kernel<S>)(p, attention_exp2_scale(p.head_dim), attention_tiles_per_seq(p, S::kBlockM));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace

Status attention_mma_sm75(const AttentionParams& p, cudaStream_t stream) {
  if (p.dtype != DType::kFloat16) return Status::kUnsupportedDType;
  switch (p.head_dim) {
    case 64: return launch<64, 8>(p, stream);
    case 72: return launch<72, 8>(p, stream);
    default: return launch<80, 8>(p, stream);
  }
}

}  // namespace fastradio

// attention, mma_sm80 tier (sm_80+, fp16 and bf16): the FlashAttention-2-style block of
// attention_mma.cuh with cp.async double buffering and mma.sync m16n8k16. Mirrors
// fastradio.backends.reference.attention. Head dims 64, 72 and 80 (72: 4 k16 steps and a k8 one of
// Q·Kᵀ, 9 n8 tiles of P·V; 80: 5 and 10: nothing padded), 4 or 8 warps of 16 query rows, 64 keys
// per step.
//
// Expected speed (reasoned, not yet measured). Per warp and 64-key step the tensor cores do
// 2 * 16 * 64 * Dh * 2 flops (Q·Kᵀ and P·V) while ldmatrix reads the whole K and V tile from
// shared memory, 2 * 64 * Dh * 2 bytes: 16 flops per byte. An A100 SM does 2048 dense fp16
// flops and reads 128 bytes of shared memory per clock: also 16 flops per byte, so with 16 rows
// per warp the kernel sits on the shared-memory roofline at best, and the softmax (one exp2 per
// score on 16 SFU lanes, ~5 FP32 instructions per score, the alpha rescale of O) competes for
// issue slots. Expect about 40-50 % of the A100's 312 TFLOP/s (FlashAttention-2, with 32+ rows
// per warp, reaches ~70 %). On an H100, mma.sync (not wgmma) peaks near two thirds of the
// tensor-core rate, so expect 25-35 % of 790 TFLOP/s, below SDPA's FlashAttention-3/cuDNN
// backends there; a wgmma_sm90a tier is what would close that gap.
#include "attention/attention_mma.cuh"
#include "common/kernel.h"

namespace fastradio {
namespace {

template <class S, DType kD>
__global__ void __launch_bounds__(S::kThreads, 1) attention_sm80_kernel(AttentionParams p, float c,
                                                                     int64_t tiles_per_seq) {
#if FASTRADIO_DEVICE_ARCH >= 800
  FASTRADIO_SHARED(16, uint16_t, smem, [S::kSmemElems]);
  attn::attention_mma_block<S, kD, true>(p, c, tiles_per_seq, smem);
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

template <int kHeadDim, int kWarps, DType kD>
Status launch(const AttentionParams& p, cudaStream_t stream) {
  using S = attn::MmaShape<kHeadDim, kWarps>;
  const dim3 grid(unsigned(attention_grid_x(p, S::kBlockM)), unsigned(p.num_heads));
  FASTRADIO_LAUNCH(grid, S::kThreads, 0, stream, attention_sm80_kernel<S, kD>)(p, attention_exp2_scale(p.head_dim), attention_tiles_per_seq(p, S::kBlockM));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kD>
Status launch_dtype(const AttentionParams& p, int warps, cudaStream_t stream) {
  if (p.head_dim == 64) return warps == 8 ? launch<64, 8, kD>(p, stream) : launch<64, 4, kD>(p, stream);
  if (p.head_dim == 72) return warps == 8 ? launch<72, 8, kD>(p, stream) : launch<72, 4, kD>(p, stream);
  return warps == 8 ? launch<80, 8, kD>(p, stream) : launch<80, 4, kD>(p, stream);
}

}  // namespace

Status attention_mma_sm80(const AttentionParams& p, cudaStream_t stream) {
  int dev = 0, sms = 0;
  FASTRADIO_CUDA_TRY(cudaGetDevice(&dev));
  FASTRADIO_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int warps = attn::mma_warps(p, sms);
  switch (p.dtype) {
    case DType::kFloat16: return launch_dtype<DType::kFloat16>(p, warps, stream);
    case DType::kBFloat16: return launch_dtype<DType::kBFloat16>(p, warps, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace fastradio

// patch_embed, tier mma_sm80 (sm_80+, fp16/bf16): the tensor-core kernel of patch_embed_mma.cuh
// with mma.sync m16n8k16 and a 4-stage cp.async pipeline. Mirrors
// fastradio.backends.reference.patch_embed.
#include "patch_embed/patch_embed_mma.cuh"

namespace fastradio {
namespace detail {

Status patch_embed_mma_sm80(const PatchEmbedParams& p, cudaStream_t stream) {
  using patch_embed_mma::launch;
  using patch_embed_mma::Sm80;
  switch (p.dtype) {
    case DType::kFloat16: return launch<DType::kFloat16, Sm80>(p, stream);
    case DType::kBFloat16: return launch<DType::kBFloat16, Sm80>(p, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace detail
}  // namespace fastradio

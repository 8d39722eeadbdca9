// patch_embed, tier mma_sm75 (sm_75+, fp16 only: Turing's tensor cores have no bf16): the
// tensor-core kernel of patch_embed_mma.cuh with mma.sync m16n8k8 and a register-staged
// two-stage pipeline. Mirrors fastradio.backends.reference.patch_embed.
#include "patch_embed/patch_embed_mma.cuh"

namespace fastradio {
namespace detail {

Status patch_embed_mma_sm75(const PatchEmbedParams& p, cudaStream_t stream) {
  if (p.dtype != DType::kFloat16) return Status::kUnsupportedDType;
  return patch_embed_mma::launch<DType::kFloat16, patch_embed_mma::Sm75>(p, stream);
}

}  // namespace detail
}  // namespace fastradio

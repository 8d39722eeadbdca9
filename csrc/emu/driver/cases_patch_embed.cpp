// patch_embed cases: prefix_len 0, 1 and 8, batch > 1, non-square images, D not a multiple of 128
// (a ragged N tile) nor of 8 or 4 (per-element epilogues), x one element off 16-byte alignment
// (scalar / synchronous loads), 240 patches over two M tiles with an image starting in the second
// (prefix rows written by the tile holding each image's first patch), two N tiles. The tensor-core
// tiers cost ~24 k-steps of 8 warps per 128 x 128 tile on the emulator, so they get the two
// shapes that cover their paths between them.
#include <cstdint>
#include <string>

#include "emu/driver/case.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"
#include "patch_embed/patch_embed.h"
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "patch_embed/patch_embed_host.h"
#endif

namespace fastradio::driver {
namespace {

constexpr int64_t kTileM = 128;  // the kernels' M tile, which decides who writes prefix rows

struct Spec {
  PatchEmbedShape shape;
  int64_t x_offset = 0;  // elements
};

class PatchEmbedInstance : public Instance {
 public:
  PatchEmbedInstance(const Spec& s, Tier tier, DType dtype, uint64_t seed) {
    const PatchEmbedShape& sh = s.shape;
    const int64_t hw = (sh.height / kPatch) * (sh.width / kPatch);
    Rng rng(seed);
    Buffer& x = make(dtype, sh.batch * kPatchChannels * sh.height * sh.width, s.x_offset);
    Buffer& weight = make(dtype, sh.dim * kPatchK);
    Buffer& pos = make(dtype, hw * sh.dim);
    fill_activations(x, rng);
    fill_weights(weight, rng, kPatchK);
    fill_normal(pos, rng, 0.0, 0.5);
    inputs = {&x, &weight, &pos};
    Buffer* prefix = nullptr;
    if (sh.prefix_len > 0) {
      prefix = &make(dtype, sh.prefix_len * sh.dim);
      fill_activations(*prefix, rng);
      inputs.push_back(prefix);
    }
    Buffer& out = make(dtype, sh.batch * (sh.prefix_len + hw) * sh.dim);
    Expected e = patch_embed_expected(x.values(), weight.values(), pos.values(),
                                      prefix ? prefix->values() : std::vector<double>{}, sh, dtype);
    Output& o = add_output("out", out);
    o.ref = std::move(e.ref);
    o.floor = std::move(e.floor);
    o.exact = std::move(e.exact);

    p_.x = x.data();
    p_.weight = weight.data();
    p_.pos = pos.data();
    p_.prefix = prefix ? prefix->data() : nullptr;
    p_.out = out.data();
    p_.batch = sh.batch;
    p_.height = sh.height;
    p_.width = sh.width;
    p_.dim = sh.dim;
    p_.prefix_len = sh.prefix_len;
    p_.dtype = dtype;
    p_.tier = tier;
  }

  Status run() override {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
    return patch_embed_host(p_, kTileM);
#else
    return patch_embed_fwd(p_, nullptr);
#endif
  }

 private:
  PatchEmbedParams p_;
};

void add(std::vector<Case>& cases, Tier tier, DType dtype, const Spec& s) {
  const PatchEmbedShape& sh = s.shape;
  std::string shape = "b" + std::to_string(sh.batch) + "_h" + std::to_string(sh.height) + "_w" +
                      std::to_string(sh.width) + "_d" + std::to_string(sh.dim);
  if (s.x_offset != 0) shape += "_xoff" + std::to_string(s.x_offset);
  Case c;
  c.name = case_name("patch_embed", tier, short_name(dtype), "p" + std::to_string(sh.prefix_len), shape);
  c.op = "patch_embed";
  c.tier = tier;
  c.dtypes = {dtype};
  c.make = [s, tier, dtype](uint64_t seed) { return std::make_unique<PatchEmbedInstance>(s, tier, dtype, seed); };
  cases.push_back(std::move(c));
}

// One M tile: 2 images of 3 x 2 patches, D 38 (not a multiple of 4 or 8), x misaligned.
const Spec kSmallUnaligned{{2, 48, 32, 38, 0}, 1};
const Spec kSmallUnalignedPrefix{{2, 48, 32, 38, 8}, 1};
// Two M tiles: 3 images of 8 x 10 patches (image 2 starts in tile 1), D 72, 8 prefix rows.
const Spec kTwoTiles{{3, 128, 160, 72, 8}};

}  // namespace

void add_patch_embed_cases(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    add(cases, Tier::kCudaCore, t, Spec{{2, 48, 32, 40, 8}});
    add(cases, Tier::kCudaCore, t, kTwoTiles);
    add(cases, Tier::kCudaCore, t, kSmallUnaligned);
    add(cases, Tier::kCudaCore, t, Spec{{2, 32, 48, 136, 8}});  // two N tiles, the second ragged
    add(cases, Tier::kCudaCore, t, Spec{{1, 16, 16, 5, 1}});    // one patch, D 5
  }
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_PATCH_EMBED_MMA_SM80
  add(cases, Tier::kMmaSm80, DType::kFloat16, kSmallUnaligned);
  add(cases, Tier::kMmaSm80, DType::kFloat16, kTwoTiles);
  add(cases, Tier::kMmaSm80, DType::kBFloat16, kSmallUnalignedPrefix);
  add(cases, Tier::kMmaSm80, DType::kBFloat16, kTwoTiles);
#endif
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_PATCH_EMBED_MMA_SM75
  add(cases, Tier::kMmaSm75, DType::kFloat16, kSmallUnaligned);
  add(cases, Tier::kMmaSm75, DType::kFloat16, kTwoTiles);
#endif
}

}  // namespace fastradio::driver

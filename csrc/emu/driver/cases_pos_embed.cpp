// pos_embed cases: fp32/fp16/bf16 outputs, the 16-byte path (D % 4 == 0, aligned pointers) and the
// scalar one (D % 4 != 0, or out one element off), downsampling (h, w < G) and upsampling
// (h, w > G), non-square grids either way round, m = 1 (scale 0), D wide enough for 64 threads
// along it, and (G, G), which the kernel must copy bit for bit; each with align_corners=True
// (C-RADIOv2) and some with False (C-RADIOv4: m = 1 samples the centre, m > G clamps the edge).
#include <algorithm>
#include <cstdint>
#include <string>

#include "emu/driver/case.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"
#include "pos_embed/pos_embed.h"
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "common/convert.h"
#endif

namespace fastradio::driver {
namespace {

struct Spec {
  int64_t grid, dim, h, w;
  int64_t out_offset = 0;  // elements: 1 misaligns out (the scalar path)
  bool align_corners = true;
};

#if defined(FASTRADIO_DRIVER_HOST_TWINS)
// pos_embed has no host twin in csrc/; this one runs the kernel's per-element helpers
// (pos_embed_scale, pos_embed_tap, pos_embed_blend: pos_embed.h) over every output, so that
// host-twin builds check the fp64 reference's fp32 coordinates against the header's.
template <DType kOut>
Status pos_embed_helpers_twin(const PosEmbedParams& p) {
  const float scale = pos_embed_scale(p.grid, std::max(p.h, p.w), p.align_corners);
  auto* out = static_cast<typename Elem<kOut>::Bits*>(p.out);
  for (int64_t r = 0; r < p.h; ++r) {
    const PosEmbedTap ty = pos_embed_tap(r, scale, p.grid, p.align_corners);
    for (int64_t c = 0; c < p.w; ++c) {
      const PosEmbedTap tx = pos_embed_tap(c, scale, p.grid, p.align_corners);
      const auto at = [&](int64_t i, int64_t j, int64_t d) { return p.table[(i * p.grid + j) * p.dim + d]; };
      for (int64_t d = 0; d < p.dim; ++d) {
        const float v = pos_embed_blend(at(ty.i0, tx.i0, d), at(ty.i0, tx.i1, d), at(ty.i1, tx.i0, d),
                                        at(ty.i1, tx.i1, d), tx.l1, ty.l1);
        out[(r * p.w + c) * p.dim + d] = Elem<kOut>::from_float(v);
      }
    }
  }
  return Status::kSuccess;
}
#endif

class PosEmbedInstance : public Instance {
 public:
  PosEmbedInstance(const Spec& s, DType dtype, uint64_t seed) {
    Rng rng(seed);
    Buffer& table = make(DType::kFloat32, s.grid * s.grid * s.dim);
    fill_activations(table, rng);
    inputs = {&table};
    Buffer& out = make(dtype, s.h * s.w * s.dim, s.out_offset);
    Expected e = pos_embed_expected(table.values(), s.grid, s.dim, s.h, s.w, dtype, s.align_corners);
    Output& o = add_output("out", out);
    o.ref = std::move(e.ref);
    o.floor = std::move(e.floor);
    o.all_exact = s.h == s.grid && s.w == s.grid;  // the identity resize is a copy (then one rounding)

    p_.table = static_cast<const float*>(table.data());
    p_.out = out.data();
    p_.grid = s.grid;
    p_.dim = s.dim;
    p_.h = s.h;
    p_.w = s.w;
    p_.out_dtype = dtype;
    p_.align_corners = s.align_corners;
    p_.tier = Tier::kCudaCore;
  }

  Status run() override {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
    switch (p_.out_dtype) {
      case DType::kFloat32: return pos_embed_helpers_twin<DType::kFloat32>(p_);
      case DType::kFloat16: return pos_embed_helpers_twin<DType::kFloat16>(p_);
      case DType::kBFloat16: return pos_embed_helpers_twin<DType::kBFloat16>(p_);
    }
    return Status::kUnsupportedDType;
#else
    return pos_embed_fwd(p_, nullptr);
#endif
  }

 private:
  PosEmbedParams p_;
};

}  // namespace

void add_pos_embed_cases(std::vector<Case>& cases) {
  const Spec specs[] = {
      {16, 64, 10, 7},     // down, non-square, 16-byte path
      {8, 36, 12, 20},     // up, w > h
      {8, 30, 9, 5},       // D % 4 != 0: scalar
      {8, 32, 5, 6, 1},    // out misaligned: scalar
      {12, 200, 3, 14},    // 50 vectors per row: 64 threads along D
      {8, 32, 8, 8},       // (G, G): identity
      {8, 16, 1, 1},       // m = 1: scale 0
      {8, 8, 1, 6},
      {16, 64, 10, 7, 0, false},   // align_corners=False: down, non-square
      {8, 36, 12, 20, 0, false},   // up past the edge (m > G): clamped
      {8, 30, 9, 5, 0, false},     // scalar path
      {8, 32, 8, 8, 0, false},     // (G, G): identity
      {8, 16, 1, 1, 0, false},     // m = 1: the centre (rows 3 and 4 blended)
  };
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (const Spec& s : specs) {
      std::string shape = "g" + std::to_string(s.grid) + "_d" + std::to_string(s.dim) + "_h" + std::to_string(s.h) +
                          "_w" + std::to_string(s.w);
      if (s.out_offset != 0) shape += "_outoff" + std::to_string(s.out_offset);
      const bool vec4 = s.dim % 4 == 0 && s.out_offset == 0;
      const std::string variant = std::string(vec4 ? "vec4" : "scalar") + (s.align_corners ? "" : "_ac_false");
      Case c;
      c.name = case_name("pos_embed", Tier::kCudaCore, short_name(t), variant, shape);
      c.op = "pos_embed";
      c.tier = Tier::kCudaCore;
      c.dtypes = {t};
      c.make = [s, t](uint64_t seed) { return std::make_unique<PosEmbedInstance>(s, t, seed); };
      cases.push_back(std::move(c));
    }
  }
}

}  // namespace fastradio::driver

// linear cases: every epilogue on every tier and dtype, plus the shapes that take the other code
// paths: multi-tile ragged N and M, N = 1, M odd (scalar epilogues), K % 8 != 0 and a misaligned x
// (predicated loads), K from fewer k-steps than pipeline stages up to 7 steps (stage reuse), an
// in-place residual, and mma_sm80's 64 x 128 and 128 x 128 configs (device 0: 132 SMs, device 1: 2).
#include <cstdint>

#include "emu/driver/case.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"
#include "linear/linear.h"
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "linear/linear_host.h"
#include "linear/linear_mma_host.h"
#endif

namespace fastradio::driver {
namespace {

struct Epilogue {
  const char* name;
  bool bias, gelu, residual;
};
constexpr Epilogue kNone{"none", false, false, false};
constexpr Epilogue kBias{"bias", true, false, false};
constexpr Epilogue kGelu{"gelu", false, true, false};
constexpr Epilogue kResidual{"residual", false, false, true};
constexpr Epilogue kBiasGelu{"bias_gelu", true, true, false};
constexpr Epilogue kBiasResidual{"bias_residual", true, false, true};
constexpr Epilogue kGeluResidual{"gelu_residual", false, true, true};
constexpr Epilogue kBiasGeluResidual{"bias_gelu_residual", true, true, true};

struct Spec {
  Epilogue epi;
  int64_t n, m, k;
  bool in_place = false;  // out is the residual buffer itself
  int64_t x_offset = 0;   // elements: 1 misaligns x (the predicated load path)
  int device = 0;
};

class LinearInstance : public Instance {
 public:
  LinearInstance(const Spec& s, Tier tier, DType dtype, uint64_t seed) : sms_(kDeviceSms[s.device]) {
    Rng rng(seed);
    Buffer& x = make(dtype, s.n * s.k, s.x_offset);
    Buffer& w = make(dtype, s.m * s.k);
    fill_activations(x, rng);
    fill_weights(w, rng, s.k);
    inputs = {&x, &w};
    Buffer* bias = nullptr;
    Buffer* residual = nullptr;
    if (s.epi.bias) {
      bias = &make(dtype, s.m);
      fill_normal(*bias, rng, 0.0, 0.5);
      inputs.push_back(bias);
    }
    if (s.epi.residual) {
      residual = &make(dtype, s.n * s.m);
      fill_activations(*residual, rng);
      if (s.in_place) {
        in_place.push_back(residual);
      } else {
        inputs.push_back(residual);
      }
    }
    Buffer& out = s.in_place ? *residual : make(dtype, s.n * s.m);
    Expected e = linear_expected(x.values(), w.values(), bias ? bias->values() : std::vector<double>{},
                                 residual ? residual->values() : std::vector<double>{},
                                 LinearShape{s.n, s.m, s.k, s.epi.bias, s.epi.gelu, s.epi.residual}, dtype);
    Output& o = add_output("out", out);
    o.ref = std::move(e.ref);
    o.floor = std::move(e.floor);

    p_.x = x.data();
    p_.weight = w.data();
    p_.bias = bias ? bias->data() : nullptr;
    p_.residual = residual ? residual->data() : nullptr;
    p_.out = out.data();
    p_.n = s.n;
    p_.m = s.m;
    p_.k = s.k;
    p_.activation = s.epi.gelu ? LinearActivation::kGelu : LinearActivation::kNone;
    p_.dtype = dtype;
    p_.tier = tier;
  }

  Status run() override {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
    if (p_.tier == Tier::kCudaCore) return linear_host(p_);
    return linear_mma_host(p_, twin_config());
#else
    return linear_fwd(p_, nullptr);
#endif
  }

 private:
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
  // The tile config the launcher would pick (linear_sm80.cu), for linear_mma_host: 0 = 128 x 128
  // (mma_sm75's tile too), 1 = 64 x 128. mma_sm80 takes 64 x 128 only for 16-byte chunk loads
  // (K % 8 == 0, x and W 16-byte aligned) and a 128 x 128 grid smaller than the SM count.
  int twin_config() const {
    if (p_.tier != Tier::kMmaSm80) return 0;
    const auto al16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
    if (p_.k % 8 != 0 || !al16(p_.x) || !al16(p_.weight)) return 0;
    const int64_t big_blocks = ((p_.n + 127) / 128) * ((p_.m + 127) / 128);
    return big_blocks < sms_ ? 1 : 0;
  }
#endif

  int sms_;
  LinearParams p_;
};

void add(std::vector<Case>& cases, Tier tier, DType dtype, const Spec& s) {
  std::string shape = "n" + std::to_string(s.n) + "_m" + std::to_string(s.m) + "_k" + std::to_string(s.k);
  if (s.x_offset != 0) shape += "_xoff" + std::to_string(s.x_offset);
  if (tier == Tier::kMmaSm80 || tier == Tier::kWgmmaSm90a) shape += "_sms" + std::to_string(kDeviceSms[s.device]);
  Case c;
  c.name = case_name("linear", tier, short_name(dtype), std::string(s.epi.name) + (s.in_place ? "_inplace" : ""), shape);
  c.op = "linear";
  c.tier = tier;
  c.dtypes = {dtype};
  c.device = s.device;
  c.make = [s, tier, dtype](uint64_t seed) { return std::make_unique<LinearInstance>(s, tier, dtype, seed); };
  cases.push_back(std::move(c));
}

void add_cuda_core(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    // One 128 x 128 tile, ragged in both N and M; K = 5 steps of 8.
    for (const Epilogue& e : {kBiasGelu, kNone, kBias, kGelu, kResidual, kBiasResidual, kGeluResidual, kBiasGeluResidual})
      add(cases, Tier::kCudaCore, t, Spec{e, 45, 72, 40});
    add(cases, Tier::kCudaCore, t, Spec{kBiasResidual, 197, 200, 264});   // 2 x 2 tiles
    add(cases, Tier::kCudaCore, t, Spec{kBiasGelu, 33, 67, 43});          // K % 4, M % 4: scalar loads and epilogue
    add(cases, Tier::kCudaCore, t, Spec{kBias, 1, 72, 40});               // one token
    add(cases, Tier::kCudaCore, t, Spec{kBiasGeluResidual, 45, 72, 40, true});
    add(cases, Tier::kCudaCore, t, Spec{kBias, 45, 72, 40, false, 1});    // misaligned x: scalar loads
  }
  // C-RADIOv4-SO400M's MLP (hidden 4304 = 33·128 + 80): fc1's ragged N, fc2's ragged K.
  add(cases, Tier::kCudaCore, DType::kFloat32, Spec{kBiasGelu, 21, 4304, 40});
  add(cases, Tier::kCudaCore, DType::kBFloat16, Spec{kBias, 21, 72, 4304});
}

void add_mma_sm80(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat16, DType::kBFloat16}) {
    // Device 0: one 64 x 128 tile (4 warps); K from 2 steps (fewer than the 4 stages) to 7.
    add(cases, Tier::kMmaSm80, t, Spec{kBiasGelu, 45, 100, 160});
    add(cases, Tier::kMmaSm80, t, Spec{kNone, 45, 100, 64});
    add(cases, Tier::kMmaSm80, t, Spec{kBias, 45, 100, 96});
    add(cases, Tier::kMmaSm80, t, Spec{kGelu, 45, 100, 200});             // K % 32 != 0: zero-filled chunks
    add(cases, Tier::kMmaSm80, t, Spec{kResidual, 45, 70, 160});          // M % 4 != 0: scalar epilogue
    add(cases, Tier::kMmaSm80, t, Spec{kBiasResidual, 45, 100, 128});
    add(cases, Tier::kMmaSm80, t, Spec{kGeluResidual, 45, 70, 224});
    add(cases, Tier::kMmaSm80, t, Spec{kBiasGeluResidual, 45, 100, 160});
    add(cases, Tier::kMmaSm80, t, Spec{kBiasGelu, 197, 72, 168, false, 0, 1});  // device 1: 2 tiles of 128 x 128
    add(cases, Tier::kMmaSm80, t, Spec{kBiasGelu, 45, 100, 163});         // K % 8: predicated, 128 x 128
    add(cases, Tier::kMmaSm80, t, Spec{kBiasResidual, 1, 67, 160});       // one token, M odd
    add(cases, Tier::kMmaSm80, t, Spec{kBiasGeluResidual, 45, 100, 160, true});
  }
  add(cases, Tier::kMmaSm80, DType::kFloat16, Spec{kBias, 45, 100, 160, false, 1});  // misaligned x: predicated
  add(cases, Tier::kMmaSm80, DType::kBFloat16, Spec{kBias, 150, 136, 160});         // 3 x 2 tiles of 64 x 128
  // C-RADIOv4-SO400M's MLP (hidden 4304 = 33·128 + 80 = 134·32 + 16): fc1's ragged N (34 tiles),
  // fc2's ragged K (a half-filled last stage).
  add(cases, Tier::kMmaSm80, DType::kBFloat16, Spec{kBiasGelu, 21, 4304, 64});
  add(cases, Tier::kMmaSm80, DType::kFloat16, Spec{kBias, 21, 72, 4304});
}

void add_mma_sm75(std::vector<Case>& cases) {
  const DType t = DType::kFloat16;
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGelu, 45, 100, 96});
  add(cases, Tier::kMmaSm75, t, Spec{kNone, 45, 100, 64});
  add(cases, Tier::kMmaSm75, t, Spec{kBias, 45, 100, 96});
  add(cases, Tier::kMmaSm75, t, Spec{kGelu, 45, 100, 64});
  add(cases, Tier::kMmaSm75, t, Spec{kResidual, 45, 70, 96});
  add(cases, Tier::kMmaSm75, t, Spec{kBiasResidual, 45, 100, 64});
  add(cases, Tier::kMmaSm75, t, Spec{kGeluResidual, 45, 70, 64});
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGeluResidual, 45, 100, 96});
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGelu, 197, 72, 168});           // 2 tiles, 6 steps through 2 buffers
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGelu, 45, 100, 163});           // K % 8: predicated
  add(cases, Tier::kMmaSm75, t, Spec{kBiasResidual, 1, 67, 64});          // one token, M odd: no column pairs
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGeluResidual, 45, 100, 96, true});
  add(cases, Tier::kMmaSm75, t, Spec{kBiasGelu, 21, 4304, 64});           // C-RADIOv4-SO400M fc1: ragged N
  add(cases, Tier::kMmaSm75, t, Spec{kBias, 21, 72, 4304});               // and fc2: ragged K
}

#if !defined(FASTRADIO_DRIVER_HOST_TWINS) && FASTRADIO_HAS_LINEAR_WGMMA_SM90A
// wgmma_sm90a (no host twin: emulated device only). 128 x 128 tiles, 64 k-values per stage, 4
// stages, a persistent grid of min(tiles, SMs) blocks: device 1 (2 SMs) walks several tiles per
// block, so the stage/phase counters run across tiles. M % 8 == 0 stores through TMA, other M
// through masked stores; K % 8 != 0 and a misaligned x fall back to mma_sm80 (linear.cu).
void add_wgmma_sm90a(std::vector<Case>& cases) {
  for (DType t : {DType::kFloat16, DType::kBFloat16}) {
    // Two column tiles, ragged in N (45 of 128) and M (136 = 128 + 8); K = 5 steps (> 4 stages).
    for (const Epilogue& e : {kBiasGelu, kNone, kBias, kGelu, kResidual, kBiasResidual, kGeluResidual, kBiasGeluResidual})
      add(cases, Tier::kWgmmaSm90a, t, Spec{e, 45, 136, 320});
    add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasResidual, 45, 100, 96});     // M % 8 != 0: masked stores; K: 2 steps, ragged
    add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasGeluResidual, 45, 67, 64});  // M odd: no column pairs; one step
    add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasGeluResidual, 45, 136, 320, true});  // in place
    add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasGelu, 197, 136, 200, false, 0, 1});  // 4 tiles on 2 SMs
    for (int64_t n = 1; n <= 7; n += 3) add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasResidual, n, 72, 128});  // 1, 4, 7 tokens
    add(cases, Tier::kWgmmaSm90a, t, Spec{kBiasGelu, 45, 100, 163});        // K % 8: mma_sm80 fallback
  }
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, Spec{kBias, 45, 136, 160, false, 1});  // misaligned x: fallback
  // qkv at D = 768 (M = 2304: 18 column tiles) for 7 tokens on 2 SMs: 9 tiles per block.
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, Spec{kBias, 7, 2304, 768, false, 0, 1});
  // C-RADIOv4-SO400M's MLP (hidden 4304 = 33·128 + 80 = 67·64 + 16): fc1's ragged N (34 tiles),
  // fc2's ragged K (a quarter-filled last stage, 68 steps through 4 stages).
  add(cases, Tier::kWgmmaSm90a, DType::kBFloat16, Spec{kBiasGelu, 21, 4304, 64});
  add(cases, Tier::kWgmmaSm90a, DType::kFloat16, Spec{kBiasResidual, 21, 72, 4304});
}
#endif

}  // namespace

void add_linear_cases(std::vector<Case>& cases) {
  add_cuda_core(cases);
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_LINEAR_MMA_SM80
  add_mma_sm80(cases);
#endif
#if defined(FASTRADIO_DRIVER_HOST_TWINS) || FASTRADIO_HAS_LINEAR_MMA_SM75
  add_mma_sm75(cases);
#endif
#if !defined(FASTRADIO_DRIVER_HOST_TWINS) && FASTRADIO_HAS_LINEAR_WGMMA_SM90A
  add_wgmma_sm90a(cases);
#endif
}

}  // namespace fastradio::driver

// add_layer_norm cases: every (x, w) dtype pair with and without delta, over widths that take each
// kernel path: 16-byte vectors with a row group under one warp (D 64) and over one (D 768: the
// cross-warp shared-memory sum), scalar with a small group (D 37, odd) and with 3 warps (D 301),
// the streaming kernel for wide rows (D 4104 vectorisable, D 1031 scalar), and a misaligned x
// (scalar path at an even width). Row counts are not multiples of the rows per block. Row 0 of
// every case has mean 1e3 and std 1e-2 (x and delta), where a plain fp32 mean loses the spread (in
// fp16/bf16 x it rounds to a constant row: variance 0, out = bias); row 1 has mean 0 and std 1e-2,
// where eps (1e-6) moves the output by ~1 %, visible in every dtype.
#include <cstdint>
#include <string>

#include "add_layer_norm/add_layer_norm.h"
#include "emu/driver/case.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
#include "add_layer_norm/add_layer_norm_host.h"
#endif

namespace fastradio::driver {
namespace {

constexpr float kEps = 1e-6f;

struct Spec {
  int64_t rows, dim;
  bool delta;
  int64_t x_offset = 0;  // elements: 1 misaligns x (the scalar path)
};

class AddLayerNormInstance : public Instance {
 public:
  AddLayerNormInstance(const Spec& s, DType xt, DType wt, uint64_t seed) {
    Rng rng(seed);
    const int64_t n = s.rows * s.dim;
    Buffer& x = make(xt, n, s.x_offset);
    Buffer& weight = make(wt, s.dim);
    Buffer& bias = make(wt, s.dim);
    fill_activations(x, rng);
    fill_normal(weight, rng, 1.0, 0.2);
    fill_normal(bias, rng, 0.0, 0.2);
    for (int64_t d = 0; d < s.dim; ++d) {
      x.set(d, 1e3 + 1e-2 * rng.normal());
      x.set(s.dim + d, 1e-2 * rng.normal());
    }
    inputs = {&x, &weight, &bias};
    std::vector<double> v = x.values();
    Buffer* delta = nullptr;
    Buffer* x_new = nullptr;
    if (s.delta) {
      delta = &make(wt, n);
      fill_activations(*delta, rng);
      for (int64_t d = 0; d < 2 * s.dim; ++d) delta->set(d, 1e-2 * rng.normal());
      inputs.push_back(delta);
      x_new = &make(xt, n);
      v = add_residual(v, delta->values(), xt);
      Output& o = add_output("x_new", *x_new);
      o.ref = v;
      o.all_exact = true;
    }
    Buffer& out = make(wt, n);
    Expected e = layer_norm_expected(v, weight.values(), bias.values(), s.rows, s.dim, kEps, wt);
    Output& o = add_output("out", out);
    o.ref = std::move(e.ref);
    o.floor = std::move(e.floor);

    p_.x = x.data();
    p_.delta = delta ? delta->data() : nullptr;
    p_.weight = weight.data();
    p_.bias = bias.data();
    p_.x_new = x_new ? x_new->data() : nullptr;
    p_.out = out.data();
    p_.rows = s.rows;
    p_.dim = s.dim;
    p_.eps = kEps;
    p_.x_dtype = xt;
    p_.w_dtype = wt;
    p_.tier = Tier::kCudaCore;
  }

  Status run() override {
#if defined(FASTRADIO_DRIVER_HOST_TWINS)
    return add_layer_norm_host(p_);
#else
    return add_layer_norm_fwd(p_, nullptr);
#endif
  }

 private:
  AddLayerNormParams p_;
};

}  // namespace

void add_add_layer_norm_cases(std::vector<Case>& cases) {
  const Spec specs[] = {
      {70, 64, true},     // vectorised, group of 2-4 threads, 64-128 rows per block
      {9, 768, true},     // vectorised, 2 warps per row
      {5, 768, false},
      {21, 37, true},     // scalar, 16 threads
      {5, 301, false},    // scalar, 3 warps per row
      {3, 4104, true},    // wide (streaming) kernel
      {3, 1031, false},   // wide, scalar width
      {6, 256, true, 1},  // misaligned x: scalar path, 2 warps per row
  };
  const DType pairs[][2] = {{DType::kFloat32, DType::kFloat32},  {DType::kFloat16, DType::kFloat16},
                            {DType::kBFloat16, DType::kBFloat16}, {DType::kFloat32, DType::kFloat16},
                            {DType::kFloat32, DType::kBFloat16}};
  for (const auto& pair : pairs) {
    const DType xt = pair[0], wt = pair[1];
    for (const Spec& s : specs) {
      std::string shape = "r" + std::to_string(s.rows) + "_d" + std::to_string(s.dim);
      if (s.x_offset != 0) shape += "_xoff" + std::to_string(s.x_offset);
      Case c;
      c.name = case_name("add_layer_norm", Tier::kCudaCore, std::string("x") + short_name(xt) + "_w" + short_name(wt),
                         s.delta ? "delta" : "no_delta", shape);
      c.op = "add_layer_norm";
      c.tier = Tier::kCudaCore;
      c.dtypes = {xt, wt};
      c.make = [s, xt, wt](uint64_t seed) { return std::make_unique<AddLayerNormInstance>(s, xt, wt, seed); };
      cases.push_back(std::move(c));
    }
  }
}

}  // namespace fastradio::driver

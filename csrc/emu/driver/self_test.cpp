#include "emu/driver/self_test.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "emu/driver/check.h"
#include "emu/driver/random.h"
#include "emu/driver/reference.h"

namespace fastradio::driver {
namespace {

int checks = 0;
int wrong = 0;

// Stores `got` as the output of a kernel and checks it against `e`; the verdict must be `expect`.
void expect(const char* name, bool expect_pass, DType dtype, const std::vector<double>& got, const Expected& e,
            bool all_exact = false) {
  Buffer out(dtype, int64_t(got.size()));
  for (size_t i = 0; i < got.size(); ++i) out.set(int64_t(i), got[i]);
  Output o;
  o.name = "out";
  o.buf = &out;
  o.ref = e.ref;
  o.floor = e.floor;
  o.all_exact = all_exact;
  const Verdict v = check({o});
  const bool ok = v.pass == expect_pass;
  ++checks;
  if (!ok) ++wrong;
  std::printf("SELFTEST\t%s\t%s\texpected %s, got %s: %s\n", name, ok ? "PASS" : "FAIL", expect_pass ? "PASS" : "FAIL",
              v.pass ? "PASS" : "FAIL", v.detail.c_str());
}

std::vector<double> drawn(DType t, int64_t n, Rng& rng, double std) {
  Buffer b(t, n);
  fill_normal(b, rng, 0.0, std);
  return b.values();
}

// linear fp32 with bias and GELU: the tanh approximation instead of erf (off by up to ~1e-3).
void gelu_tanh() {
  Rng rng(1);
  const LinearShape s{16, 24, 40, true, false, false};
  const auto x = drawn(DType::kFloat32, s.n * s.k, rng, 1.0);
  const auto w = drawn(DType::kFloat32, s.m * s.k, rng, 1.0 / std::sqrt(double(s.k)));
  const auto b = drawn(DType::kFloat32, s.m, rng, 0.5);
  const Expected pre = linear_expected(x, w, b, {}, s, DType::kFloat32);
  LinearShape sg = s;
  sg.gelu = true;
  const Expected e = linear_expected(x, w, b, {}, sg, DType::kFloat32);
  std::vector<double> bug(pre.ref.size());
  for (size_t i = 0; i < bug.size(); ++i) {
    const double y = pre.ref[i];
    bug[i] = 0.5 * y * (1.0 + std::tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)));
  }
  expect("linear_f32_erf_gelu", true, DType::kFloat32, e.ref, e);
  expect("linear_f32_tanh_gelu", false, DType::kFloat32, bug, e);
}

// linear bf16 whose K % 8 tail is never loaded (a predicated-path bug): K = 203, last 3 dropped.
void k_tail_dropped() {
  Rng rng(2);
  const LinearShape s{16, 24, 203, true, true, false};
  auto x = drawn(DType::kBFloat16, s.n * s.k, rng, 1.0);
  const auto w = drawn(DType::kBFloat16, s.m * s.k, rng, 1.0 / std::sqrt(double(s.k)));
  const auto b = drawn(DType::kBFloat16, s.m, rng, 0.5);
  const Expected e = linear_expected(x, w, b, {}, s, DType::kBFloat16);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t k = s.k - 3; k < s.k; ++k) x[size_t(i * s.k + k)] = 0.0;
  const Expected bug = linear_expected(x, w, b, {}, s, DType::kBFloat16);
  expect("linear_bf16_floor", true, DType::kBFloat16, e.floor, e);
  expect("linear_bf16_k_tail_dropped", false, DType::kBFloat16, bug.floor, e);
}

// pos_embed fp32 resized with align_corners=False (what newer RADIO versions and vLLM use).
void align_corners_false() {
  Rng rng(3);
  const int64_t g = 16, d = 8, h = 10, w = 7;
  const auto table = drawn(DType::kFloat32, g * g * d, rng, 1.0);
  const Expected e = pos_embed_expected(table, g, d, h, w, DType::kFloat32, /*align_corners=*/true);
  expect("pos_embed_f32_align_corners_true", true, DType::kFloat32, e.ref, e);
  expect("pos_embed_f32_align_corners_false", false, DType::kFloat32,
         pos_embed_reference(table, g, d, h, w, /*align_corners=*/false), e);
}

// attention bf16 with one output element never written (it keeps the NaN poison).
void element_skipped() {
  Rng rng(4);
  const std::vector<int32_t> cu = {0, 37, 50};
  const int64_t heads = 2, dh = 64;
  const auto qkv = drawn(DType::kBFloat16, cu.back() * 3 * heads * dh, rng, 1.0);
  const Expected e = attention_expected(qkv, cu, heads, dh, DType::kBFloat16);
  std::vector<double> bug = e.floor;
  bug[bug.size() / 2] = NAN;
  expect("attention_bf16_floor", true, DType::kBFloat16, e.floor, e);
  expect("attention_bf16_one_element_unwritten", false, DType::kBFloat16, bug, e);
}

// add_layer_norm's x_new off by one ulp in one element (e.g. rounded twice): must be bit-exact.
void x_new_one_ulp() {
  Rng rng(5);
  const auto x = drawn(DType::kFloat16, 64, rng, 1.0);
  const auto delta = drawn(DType::kFloat16, 64, rng, 1.0);
  Expected e;
  e.ref = add_residual(x, delta, DType::kFloat16);
  std::vector<double> bug = e.ref;
  bug[7] = decode(DType::kFloat16, encode(DType::kFloat16, bug[7]) + 1);
  expect("add_layer_norm_x_new_exact", true, DType::kFloat16, e.ref, e, true);
  expect("add_layer_norm_x_new_one_ulp", false, DType::kFloat16, bug, e, true);
}

}  // namespace

int run_self_test() {
  gelu_tanh();
  k_tail_dropped();
  align_corners_false();
  element_skipped();
  x_new_one_ulp();
  std::printf("SUMMARY\t%d\t%d\n", checks - wrong, wrong);
  return wrong;
}

}  // namespace fastradio::driver

// The Hopper half of fastradio_emu_selftest (emulated sm_90): TMA boxes, swizzles and out-of-bounds
// fill, the tensor-map encoder's refusals, wgmma against a host matmul, stmatrix, elect.sync, an
// mbarrier pipeline, and the broken kernels the emulator must catch. Expected values are computed
// here from the PTX ISA's definitions, independently of emu/hopper.cpp.
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "emu/control.h"
#include "emu/selftest/hopper_selftest.h"

namespace fastradio {
namespace emu {
namespace selftest {
namespace {

using Outcome = std::pair<bool, std::string>;

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof(buf), f, ap);
  va_end(ap);
  return buf;
}

std::string pending_errors() {
  std::string s;
  for (const std::string& e : take_errors()) s += "unexpected error: " + e + "; ";
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) s += fmt("cudaGetLastError() = %s; ", cudaGetErrorName(e));
  return s;
}

// The one error a broken kernel must cause, naming `says`.
std::string one_error(const std::vector<std::string>& says) {
  const std::vector<std::string> errors = take_errors();
  const cudaError_t e = cudaGetLastError();
  std::string why;
  if (errors.size() != 1) why += fmt("%zu errors recorded (want 1); ", errors.size());
  for (const std::string& s : says)
    if (errors.empty() || errors[0].find(s) == std::string::npos) why += "the error does not say '" + s + "'; ";
  if (e != cudaErrorLaunchFailure) why += fmt("cudaGetLastError() = %s; ", cudaGetErrorName(e));
  return why;
}

// Swizzled position of byte offset `o` of a box whose base is 1024-byte aligned (PTX ISA "tensor
// swizzling modes"): in each 128-byte line, the 16-byte chunk c moves to c XOR (line index modulo
// span / 16), i.e. 128 B: 8 chunks permuted by the row of the 8-row (1 KiB) repeat; 64 B and 32 B:
// 4 and 2 chunks by the line within a 512 / 256-byte repeat.
size_t swizzled(size_t o, int span) {
  if (span == 0) return o;
  const size_t line = o / 128, chunk = o % 128 / 16;
  return line * 128 + (chunk ^ (line % size_t(span / 16))) * 16 + o % 16;
}

std::vector<uint16_t> random_words(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = uint16_t(rng() % 0xfff0u);  // never 0xFFFF (the poison)
  return v;
}

// The expected raw box: element e of the dense box (dim 0 fastest) at swizzled(2e), zero out of bounds.
std::vector<uint16_t> expected_box(int rank, const std::vector<uint16_t>& data, const uint64_t* dims,
                                   const uint64_t* strides, const uint32_t* box, const int* coords, int swizzle) {
  size_t count = 1;
  for (int d = 0; d < rank; ++d) count *= box[d];
  std::vector<uint16_t> out(count, 0);
  for (size_t e = 0; e < count; ++e) {
    size_t rest = e, src = 0;
    bool inside = true;
    for (int d = 0; d < rank; ++d) {
      const long long g = coords[d] + (long long)(rest % box[d]);
      rest /= box[d];
      inside = inside && g >= 0 && (unsigned long long)g < dims[d];
      src += size_t(g) * strides[d];
    }
    out[swizzled(2 * e, swizzle) / 2] = inside ? data[src] : 0;
  }
  return out;
}

Outcome compare_words(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, const std::string& what) {
  if (got.size() != want.size()) return {false, fmt("%zu words, want %zu", got.size(), want.size())};
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  if (bad == 0) return {true, what};
  return {false, fmt("%zu of %zu words differ; first at %zu: 0x%04x, want 0x%04x", bad, got.size(), first, got[first],
                     want[first])};
}

Outcome tma_case(int rank, int swizzle, const uint64_t* dims, const uint64_t* strides, const uint32_t* box,
                 const int* coords, uint32_t seed) {
  const size_t total = size_t(strides[rank - 1] * dims[rank - 1]);
  const std::vector<uint16_t> data = random_words(total, seed);
  const std::vector<uint16_t> got = run_tma_load(rank, data.data(), dims, strides, box, coords, swizzle, 0);
  std::string why = pending_errors();
  if (!why.empty() || got.empty()) return {false, why + tensor_map_error()};
  size_t oob = 0;
  const std::vector<uint16_t> want = expected_box(rank, data, dims, strides, box, coords, swizzle);
  for (uint16_t w : want) oob += w == 0;
  return compare_words(got, want, fmt("box of %zu words (%zu zero-filled out of bounds) matches", want.size(), oob));
}

// --- 16-bit floats on the host ---------------------------------------------------------------------------------
float f16_to_float(uint16_t h) {
  const int e = h >> 10 & 31, m = h & 1023;
  const float v = e == 0 ? std::ldexp(float(m), -24) : std::ldexp(1.0f + float(m) / 1024.0f, e - 15);
  return h & 0x8000 ? -v : v;
}
float bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Random operands that are exact in the format: small multiples of a power of two.
std::vector<uint16_t> random_operand(size_t n, bool bf16, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> v(n);
  for (auto& x : v) {
    const float f = float(int(rng() % 255) - 127) / 64.0f;  // |f| < 2, 8 significant bits at most
    if (bf16) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      x = uint16_t(u >> 16);
    } else {
      // fp16 bits by search over the format (exact values only).
      uint16_t h = 0;
      for (uint32_t c = 0; c < 0x7c00; ++c)
        if (f16_to_float(uint16_t(c)) == std::fabs(f)) {
          h = uint16_t(c);
          break;
        }
      x = uint16_t(h | (f < 0 ? 0x8000 : 0));
    }
  }
  return v;
}

Outcome wgmma_case(const WgmmaSpec& s, uint32_t seed, bool expect_mismatch = false) {
  const int k = s.swizzle ? s.swizzle / 2 : 16;
  const std::vector<uint16_t> a = random_operand(size_t(64 * k), s.bf16, seed);
  const std::vector<uint16_t> b = random_operand(size_t(s.n * k), s.bf16, seed + 1);
  const std::vector<float> got = run_wgmma(s, a, b);
  std::string why = pending_errors();
  if (!why.empty() || got.empty()) return {false, why + tensor_map_error()};
  auto val = [&](uint16_t x) { return s.bf16 ? bf16_to_float(x) : f16_to_float(x); };
  const int regs = s.n / 2;
  size_t bad = 0;
  std::string first;
  for (int t = 0; t < 128; ++t)
    for (int e = 0; e < regs; ++e) {
      const int w = t / 32, g = t % 32 / 4, q = t % 4;
      const int row = 16 * w + g + 8 * (e % 4 / 2), col = 8 * (e / 4) + 2 * q + e % 2;
      double want = 0;
      for (int kk = 0; kk < k; ++kk) want += double(val(a[size_t(row * k + kk)])) * double(val(b[size_t(col * k + kk)]));
      const float g_ = got[size_t(t * regs + e)];
      if (!(std::fabs(double(g_) - want) <= 1e-6 * (1 + std::fabs(want))) && bad++ == 0)
        first = fmt("D[%d][%d] (thread %d reg %d) = %g, want %g", row, col, t, e, double(g_), want);
    }
  if (expect_mismatch)
    return {bad > 0, bad > 0 ? fmt("the mismatch shows: %zu of %d elements differ (%s)", bad, 64 * s.n, first.c_str())
                             : std::string("a wrong descriptor swizzle went unnoticed")};
  return {bad == 0, bad == 0 ? fmt("64x%dx%d %s %s swizzle %d matches the host matmul", s.n, k, s.rs ? "RS" : "SS",
                                   s.bf16 ? "bf16" : "f16", s.swizzle)
                             : fmt("%zu of %d elements differ; %s", bad, 64 * s.n, first.c_str())};
}

Outcome bug_case(HopperBug b, const std::vector<std::string>& says) {
  std::vector<float> out;
  launch_hopper_bug(b, &out);
  const std::string why = one_error(says);
  return {why.empty(), why.empty() ? "caught: " + says[0] : why};
}

}  // namespace

void hopper_tests(const HopperRun& run) {
  // --- TMA loads: ragged boxes (negative and past-the-end coordinates), each swizzle -----------------
  for (int sw : {0, 32, 64, 128}) {
    const uint64_t dims[2] = {100, 37}, strides[2] = {1, 104};
    const uint32_t box[2] = {uint32_t(sw ? sw / 2 : 24), 20};
    const int right_top[2] = {int(100 - box[0] / 2), -5}, bottom[2] = {8, 30};
    run(fmt("tma_2d_swizzle_%d_right_top", sw), [=] { return tma_case(2, sw, dims, strides, box, right_top, 11 + sw); });
    run(fmt("tma_2d_swizzle_%d_bottom", sw), [=] { return tma_case(2, sw, dims, strides, box, bottom, 12 + sw); });
  }
  run("tma_3d_swizzle_128", [] {
    const uint64_t dims[3] = {64, 10, 3}, strides[3] = {1, 72, 792};
    const uint32_t box[3] = {64, 8, 2};
    const int at[3] = {0, 5, 2};
    return tma_case(3, 128, dims, strides, box, at, 5);
  });
  run("tma_read_before_wait_sees_poison", [] {
    const uint64_t dims[2] = {64, 16}, strides[2] = {1, 64};
    const uint32_t box[2] = {64, 16};
    const int at[2] = {0, 0};
    const std::vector<uint16_t> got = run_tma_load(2, random_words(1024, 3).data(), dims, strides, box, at, 128, 1);
    const std::string why = pending_errors();
    size_t poisoned = 0;
    for (uint16_t w : got) poisoned += w == 0xffff;
    return Outcome{why.empty() && poisoned == got.size() && !got.empty(),
                   why + fmt("%zu of %zu words read before the mbarrier wait were 0xFFFF (NaN)", poisoned, got.size())};
  });
  run("err_tma_never_waited", [] {
    const uint64_t dims[2] = {64, 16}, strides[2] = {1, 64};
    const uint32_t box[2] = {64, 16};
    const int at[2] = {0, 0};
    run_tma_load(2, random_words(1024, 4).data(), dims, strides, box, at, 128, 2);
    const std::string why = one_error({"tensor copies into shared memory never completed", "no thread waited"});
    return Outcome{why.empty(), why.empty() ? "caught: a TMA load whose mbarrier nobody waited on" : why};
  });
  run("err_mbarrier_expect_tx_too_many", [] {
    const uint64_t dims[2] = {64, 16}, strides[2] = {1, 64};
    const uint32_t box[2] = {64, 16};
    const int at[2] = {0, 0};
    run_tma_load(2, random_words(1024, 4).data(), dims, strides, box, at, 128, 3);
    const std::string why = one_error({"deadlock", "waiting on an mbarrier phase"});
    return Outcome{why.empty(), why.empty() ? "caught: expect_tx 2 bytes over the copies (the phase never completes)" : why};
  });
  run("tma_encode_refusals", [] {
    struct Bad {
      const char* says;
      uint64_t stride1;
      uint32_t box0, box1;
      int swizzle;
      size_t offset;  // of the base address, in 16-bit words
    };
    const Bad bads[] = {{"globalStrides[0] = 200 bytes", 100, 64, 8, 0, 0},
                        {"boxDim[1] = 257", 128, 64, 257, 0, 0},
                        {"exceeds the 64-byte swizzle span", 128, 64, 8, 64, 0},
                        {"multiple of 16", 128, 12, 8, 0, 0},
                        {"16-byte aligned", 128, 64, 8, 0, 1}};
    std::vector<uint16_t> data(128 * 300, 1);
    std::string why;
    for (const Bad& b : bads) {
      const uint64_t dims[2] = {64, 256}, strides[2] = {1, b.stride1};
      const uint32_t box[2] = {b.box0, b.box1};
      const int at[2] = {0, 0};
      const std::vector<uint16_t> got = run_tma_load(2, data.data() + b.offset, dims, strides, box, at, b.swizzle, 0);
      if (!got.empty()) why += fmt("accepted (want '%s'); ", b.says);
      if (tensor_map_error().find(b.says) == std::string::npos)
        why += fmt("refusal '%s' does not say '%s'; ", tensor_map_error().c_str(), b.says);
    }
    why += pending_errors();
    return Outcome{why.empty(), why.empty() ? "5 bad tensor maps refused, each naming what was expected" : why};
  });
  run("tma_store_missing_proxy_fence_detected", [] {
    const uint64_t dims[2] = {64, 16}, strides[2] = {1, 64};
    const uint32_t box[2] = {64, 16};
    const int at[2] = {0, 0};
    const std::vector<uint16_t> smem = random_words(64 * 16, 10);
    const std::vector<uint16_t> got = run_tma_store(smem, dims, strides, box, at, 128, false);
    size_t stale = 0;
    for (uint16_t w : got) stale += w == 0xffff;
    const std::string why = pending_errors();
    return Outcome{why.empty() && stale == got.size() && !got.empty(),
                   why + fmt("%zu of %zu words stored without fence.proxy.async were the async proxy's stale 0xFFFF",
                             stale, got.size())};
  });
  run("tma_store_2d_swizzle_128_ragged", [] {
    const uint64_t dims[2] = {90, 30}, strides[2] = {1, 96};
    const uint32_t box[2] = {64, 16};
    const int at[2] = {40, 20};  // 26 columns and 6 rows past the edges
    const std::vector<uint16_t> dense = random_words(64 * 16, 9);
    std::vector<uint16_t> smem(dense.size());
    for (size_t e = 0; e < dense.size(); ++e) smem[swizzled(2 * e, 128) / 2] = dense[e];
    const std::vector<uint16_t> got = run_tma_store(smem, dims, strides, box, at, 128);
    std::vector<uint16_t> want(size_t(dims[1] * strides[1]), 0x5a5a);
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 64; ++c)
        if (at[0] + c < 90 && at[1] + r < 30) want[size_t((at[1] + r) * 96 + at[0] + c)] = dense[size_t(r * 64 + c)];
    const std::string why = pending_errors();
    if (!why.empty()) return Outcome{false, why};
    return compare_words(got, want, "in-bounds part stored through the inverse swizzle, the rest untouched");
  });

  // --- wgmma against a host matmul -------------------------------------------------------------------
  struct W {
    int n, swizzle;
    bool bf16, rs;
  };
  const W cases[] = {{8, 128, false, false},  {72, 128, false, false}, {80, 128, false, false}, {256, 128, false, false},
                     {16, 64, false, false},  {24, 32, false, false},  {40, 0, false, false},   {80, 64, true, false},
                     {72, 128, false, true},  {24, 32, false, true},   {40, 0, true, true},     {256, 128, true, true}};
  uint32_t seed = 100;
  for (const W& c : cases) {
    WgmmaSpec s;
    s.n = c.n;
    s.swizzle = s.desc_swizzle_b = c.swizzle;
    s.bf16 = c.bf16;
    s.rs = c.rs;
    run(fmt("wgmma_%s_%s_n%d_swizzle_%d", c.rs ? "rs" : "ss", c.bf16 ? "bf16" : "f16", c.n, c.swizzle),
        [s, sd = seed] { return wgmma_case(s, sd); });
    seed += 7;
  }
  // MN-major B (the transpose-B flag; what attention's P·V reads V as): several N, both dtypes, SS
  // and RS, each swizzle; N past one atom (N > swizzle / 2) uses lbo, every case two 8-k-row groups.
  const W mn_cases[] = {{64, 128, false, true}, {80, 128, true, true},  {16, 32, false, true}, {8, 32, true, true},
                        {80, 32, false, true},  {72, 32, true, false},  {40, 64, false, true}, {256, 128, false, false},
                        {24, 64, true, false},  {72, 128, false, true}};
  for (const W& c : mn_cases) {
    WgmmaSpec s;
    s.n = c.n;
    s.swizzle = s.desc_swizzle_b = c.swizzle;
    s.bf16 = c.bf16;
    s.rs = c.rs;
    s.mn_b = true;
    run(fmt("wgmma_mn_b_%s_%s_n%d_swizzle_%d", c.rs ? "rs" : "ss", c.bf16 ? "bf16" : "f16", c.n, c.swizzle),
        [s, sd = seed] { return wgmma_case(s, sd); });
    seed += 7;
  }
  run("wgmma_mn_b_wrong_swizzle_detected", [] {
    WgmmaSpec s;
    s.n = 24;  // inside one 64-byte atom, so the wrong reading stays inside shared memory
    s.swizzle = s.desc_swizzle_b = 128;
    s.mn_b = true;
    s.desc_swizzle_b = 64;  // TMA wrote 128-byte swizzle; the descriptor claims 64
    return wgmma_case(s, 9, true);
  });
  run("wgmma_wrong_swizzle_on_b_detected", [] {
    WgmmaSpec s;
    s.n = 72;
    s.swizzle = 128;
    s.desc_swizzle_b = 64;  // TMA wrote 128-byte swizzle; B's descriptor claims 64
    return wgmma_case(s, 7, true);
  });
  run("wgmma_missing_proxy_fence_detected", [] {
    WgmmaSpec s;
    s.n = 40;
    s.swizzle = s.desc_swizzle_b = 0;  // operands stored by the threads, no fence.proxy.async before the wgmma
    s.fence = false;
    return wgmma_case(s, 8, true);
  });
  run("err_wgmma_wait_group_off_by_one", [] {
    std::vector<float> out;
    launch_hopper_bug(HopperBug::kWgmmaWaitOffByOne, &out);
    std::string why = one_error({"wgmma results never waited for"});
    // The first thread to exit aborts the launch; the threads that got that far wrote both accumulators.
    int wrote = 0;
    for (int t = 0; t < 128; ++t) {
      if (out[size_t(8 * t)] == -1.0f) continue;
      ++wrote;
      if (!std::isnan(out[size_t(8 * t + 4)]) && why.find("not NaN") == std::string::npos)
        why += fmt("thread %d read %g before the wait_group, not NaN; ", t, double(out[size_t(8 * t + 4)]));
      if (out[size_t(8 * t)] != 16.0f && why.find("want 16") == std::string::npos)
        why += fmt("thread %d's waited-for accumulator is %g, want 16; ", t, double(out[size_t(8 * t)]));
    }
    if (wrote == 0) why += "no thread wrote its accumulators; ";
    return Outcome{why.empty(), why.empty() ? "caught: the early read saw NaN and the thread exit the pending group" : why};
  });
  run("err_wgmma_without_fence", [] { return bug_case(HopperBug::kWgmmaNoFence, {"without a wgmma.fence"}); });
  run("err_wgmma_accumulator_touched_in_flight", [] {
    return bug_case(HopperBug::kAccumulatorTouched,
                    {"accumulator register 0", "written by the thread while the wgmma was in flight"});
  });
  run("wgmma_two_groups_one_accumulator", [] {
    std::vector<float> out;
    launch_hopper_bug(HopperBug::kChainedGroups, &out);
    std::string why = pending_errors();
    for (int t = 0; t < 128 && why.empty(); ++t)
      for (int e = 0; e < 4; ++e)
        if (out[size_t(8 * t + e)] != 32.0f) {
          why = fmt("thread %d register %d = %g, want 32 (16 + 16)", t, e, double(out[size_t(8 * t + e)]));
          break;
        }
    return Outcome{why.empty(), why.empty() ? "group 1 accumulates on group 0's pending result; d is written once, at "
                                              "wait_group<0>" : why};
  });
  run("err_wgmma_partial_warpgroup",
      [] { return bug_case(HopperBug::kWgmmaPartialGroup, {"no complete warpgroup", "96 threads"}); });
  run("err_setmaxnreg_illegal_count",
      [] { return bug_case(HopperBug::kSetmaxnregIllegal, {"setmaxnreg.inc to 100", "multiple of 8 in 24..256"}); });
  run("err_setmaxnreg_warps_disagree",
      [] { return bug_case(HopperBug::kSetmaxnregDisagree, {"warp 1 of the warpgroup asks for 232", "warp 0 for 240"}); });
  run("err_mbarrier_not_initialised", [] { return bug_case(HopperBug::kMbarrierNotInit, {"no thread has initialised"}); });

  // --- stmatrix, elect.sync -----------------------------------------------------------------------------
  for (int num : {1, 2, 4})
    for (bool trans : {false, true})
      run(fmt("stmatrix_x%d%s", num, trans ? "_trans" : ""), [=] {
        std::mt19937 rng(uint32_t(num * 10 + trans));
        std::vector<uint32_t> regs(128);
        for (auto& r : regs) r = rng();
        const std::vector<uint16_t> got = run_stmatrix(num, trans, regs);
        // Fragment element (row, col) of matrix i is half col % 2 of register i of lane 4 row + col / 2.
        auto frag = [&](int i, int row, int col) {
          const uint32_t r = regs[size_t(4 * (4 * row + col / 2) + i)];
          return uint16_t(col % 2 ? r >> 16 : r & 0xffff);
        };
        std::vector<uint16_t> want(32 * 8, 0x7777);
        for (int i = 0; i < num; ++i)
          for (int r = 0; r < 8; ++r)
            for (int j = 0; j < 8; ++j) want[size_t((8 * i + r) * 8 + j)] = trans ? frag(i, j, r) : frag(i, r, j);
        const std::string why = pending_errors();
        if (!why.empty()) return Outcome{false, why};
        return compare_words(got, want, fmt("%d matrices stored%s", num, trans ? " transposed" : ""));
      });
  run("elect_sync_one_lane", [] {
    const std::vector<int> got = run_elect();
    int n = 0;
    for (int v : got) n += v == 1;
    const std::string why = pending_errors();
    return Outcome{why.empty() && n == 1 && got[0] == 1, why + fmt("%d lanes elected, lane 0: %d", n, got[0])};
  });

  // --- an mbarrier pipeline under every schedule ----------------------------------------------------------
  run("mbarrier_pipeline_2_stages", [] {
    const int tiles = 7;
    const std::vector<uint16_t> data = random_words(size_t(8 * 64 * tiles), 21);
    std::vector<uint64_t> want(tiles, 0);
    for (int t = 0; t < tiles; ++t)
      for (int i = 0; i < 512; ++i) want[size_t(t)] += data[size_t(t * 512 + i)];
    std::string why;
    const Schedule schedules[] = {Schedule{}, Schedule{Order::kReverse, Order::kReverse, 0},
                                  Schedule{Order::kShuffle, Order::kShuffle, 5}, Schedule{Order::kForward, Order::kForward, 0, true},
                                  Schedule{Order::kReverse, Order::kReverse, 0, true}};
    for (const Schedule& s : schedules) {
      set_schedule(s);
      if (run_pipeline(data, tiles) != want) why += fmt("wrong sums under schedule (%d, greedy %d); ", int(s.threads), int(s.greedy));
      why += pending_errors();
    }
    set_schedule(Schedule{});
    return Outcome{why.empty(), why.empty() ? "7 tiles through 2 stages (full/empty parities) under 5 schedules" : why};
  });

  // --- a wgmma's shared-memory operands are held until the wait_group that retires it ----------------------
  // Correct orderings pass with the right values; each write into an operand in flight is caught,
  // naming the wgmma's line and the write (or the wait_group where an ordinary store shows).
  auto hold_passes = [](OperandHold how, float second, const char* what) {
    std::vector<float> out;
    int lines[2];
    launch_operand_hold(how, &out, lines);
    std::string why = pending_errors();
    for (int t = 0; t < 128 && why.empty(); ++t)
      for (int e = 0; e < 4; ++e)
        if (out[size_t(8 * t + e)] != 16.0f || out[size_t(8 * t + 4 + e)] != second) {
          why += fmt("thread %d: D = %g and %g, want 16 and %g; ", t, double(out[size_t(8 * t + e)]),
                     double(out[size_t(8 * t + 4 + e)]), double(second));
          break;
        }
    return Outcome{why.empty(), why.empty() ? std::string(what) : why};
  };
  auto hold_caught = [](OperandHold how, int group, const char* writer) {
    std::vector<float> out;
    int lines[2];
    launch_operand_hold(how, &out, lines);
    const std::string why =
        one_error({"changed before wait_group retired it", fmt("hopper_kernels.cu:%d changed", lines[group]), writer});
    return Outcome{why.empty(), why.empty() ? fmt("caught: %s", writer) : why};
  };
  run("wgmma_operand_reloaded_after_wait", [=] {
    return hold_passes(OperandHold::kReloadAfterWait, 64.0f, "wait_group<0>, then a TMA reload and a wgmma on it");
  });
  run("wgmma_operand_of_retired_group_stored", [=] {
    return hold_passes(OperandHold::kOlderAfterWaitOne, 16.0f, "wait_group<1>, then stores into the older group's tile");
  });
  run("err_wgmma_operand_stored_before_wait",
      [=] { return hold_caught(OperandHold::kStoreBeforeWait, 0, "at this wgmma.wait_group"); });
  run("err_wgmma_operand_of_newer_group_stored",
      [=] { return hold_caught(OperandHold::kNewerAfterWaitOne, 1, "at this wgmma.wait_group"); });
  run("err_wgmma_operand_tma_load_before_wait",
      [=] { return hold_caught(OperandHold::kTmaBeforeWait, 1, "this cp.async.bulk.tensor writes"); });
  run("err_wgmma_operand_tma_landed_before_wait",
      [=] { return hold_caught(OperandHold::kLandBeforeWait, 1, "lands at this mbarrier wait"); });
  run("err_wgmma_operand_stmatrix_before_wait",
      [=] { return hold_caught(OperandHold::kStmatrixBeforeWait, 0, "this stmatrix writes"); });
}

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

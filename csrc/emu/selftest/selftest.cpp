// fastradio_emu_selftest: proves the emulated device's claims (DESIGN.md "The emulated device").
// Every check it makes must fire on a kernel that breaks the rule, naming what went wrong, abort
// (or refuse) that launch, and leave the device usable; every emulated instruction must compute
// what the CUDA C++ Programming Guide / PTX ISA define. The expected values are computed here from
// those definitions, written independently of csrc/emu/runtime.cpp and csrc/emu/ptx.h.
//
// stdout: per sub-test  TEST <name> <PASS|FAIL> <detail>  (tab-separated), then
// SUMMARY <passed> <failed>; exit status 0 iff all passed. stderr: "[emu-case-begin] selftest/<name>"
// and "[emu-case-end] selftest/<name>" around each, so that emulate.py pins sanitizer reports on it
// (the "[emu] error:" lines the buggy kernels cause are expected there).
//
//   fastradio_emu_selftest [--filter SUBSTRING]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common/arch.h"
#include "emu/control.h"
#include "emu/selftest/hopper_selftest.h"
#include "emu/selftest/selftest.h"

namespace fastradio {
namespace emu {
namespace selftest {
namespace {

struct Result {
  bool ok;
  std::string detail;
};

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

int g_passed = 0, g_failed = 0;
const char* g_filter = nullptr;

// One sub-test, with the device in a known state: no pending error, forward schedule.
void run(const std::string& name, const std::function<Result()>& body) {
  if (g_filter != nullptr && name.find(g_filter) == std::string::npos) return;
  take_errors();
  (void)cudaGetLastError();
  set_schedule(Schedule{});
  std::fprintf(stderr, "[emu-case-begin] selftest/%s\n", name.c_str());
  std::fflush(stderr);
  Result r = body();
  set_schedule(Schedule{});
  std::fprintf(stderr, "[emu-case-end] selftest/%s\n", name.c_str());
  std::fflush(stderr);
  for (char& c : r.detail)
    if (c == '\t' || c == '\n') c = ' ';
  if (r.detail.size() > 600) r.detail = r.detail.substr(0, 600) + "...";
  std::printf("TEST\t%s\t%s\t%s\n", name.c_str(), r.ok ? "PASS" : "FAIL", r.detail.c_str());
  std::fflush(stdout);
  ++(r.ok ? g_passed : g_failed);
}

// Errors or a pending cudaGetLastError() after work that must be clean ("" if none).
std::string unexpected_errors() {
  std::string s;
  for (const std::string& e : take_errors()) s += "unexpected error: " + e + "; ";
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) s += format("cudaGetLastError() = %s; ", cudaGetErrorName(e));
  return s;
}

// After an aborted launch the emulator must run a correct kernel again (fresh fibers).
std::string recovery() {
  const std::vector<uint32_t> got = run_healthy();
  std::string s = unexpected_errors();
  if (got != healthy_expected()) s += "a correct launch after it computed wrong sums; ";
  return s;
}

// --- errors that must be reported ---------------------------------------------------------------------

struct Expect {
  cudaError_t code;                // what cudaGetLastError() must return, once
  std::vector<std::string> says;   // substrings of the one recorded error
  int block0_started;              // 1: block 0 faulted and block 1 never started; 0: refused
};

Result expect_error(const std::function<void(int*)>& launch, const Expect& want) {
  int run_flags[2] = {0, 0};
  launch(run_flags);
  const std::vector<std::string> errors = take_errors();
  const cudaError_t peek = cudaPeekAtLastError();
  const cudaError_t got = cudaGetLastError();
  const cudaError_t after = cudaGetLastError();
  std::string why;
  if (errors.size() != 1) why += format("%zu errors recorded (want 1); ", errors.size());
  for (const std::string& s : want.says)
    if (errors.empty() || errors[0].find(s) == std::string::npos) why += "the error does not say '" + s + "'; ";
  if (got != want.code) why += format("cudaGetLastError() = %s (want %s); ", cudaGetErrorName(got), cudaGetErrorName(want.code));
  if (peek != got) why += "cudaPeekAtLastError() disagrees; ";
  if (after != cudaSuccess) why += "cudaGetLastError() not cleared by reading it; ";
  if (run_flags[0] != want.block0_started || run_flags[1] != 0)
    why += format("blocks started {%d,%d} (want {%d,0}); ", run_flags[0], run_flags[1], want.block0_started);
  const std::string rec = recovery();
  if (!rec.empty()) why += "then: " + rec;
  const std::string msg = errors.empty() ? std::string("no error") : errors[0];
  return {why.empty(), why.empty() ? msg : why + "| " + msg};
}

Result bug(Bug b, std::vector<std::string> says) {
  return expect_error([b](int* run_flags) { launch_bug(b, run_flags); }, {cudaErrorLaunchFailure, std::move(says), 1});
}

Result refused(dim3 grid, dim3 block, std::vector<std::string> says) {
  return expect_error([=](int* run_flags) { launch_config(grid, block, run_flags); },
                      {cudaErrorInvalidConfiguration, std::move(says), 0});
}

void error_tests(int arch) {
  const bool sm80 = arch >= 80;
  run("err_syncthreads_divergent", [] { return bug(Bug::kSyncthreadsDivergent, {"divergent __syncthreads"}); });
  run("err_exit_while_barrier_waits",
      [] { return bug(Bug::kExitWhileBarrierWaits, {"exits while 63 threads", "wait at __syncthreads"}); });
  run("err_syncthreads_after_exit",
      [] { return bug(Bug::kSyncthreadsAfterExit, {"__syncthreads reached after 1 threads", "exited"}); });
  run("err_deadlock", [] { return bug(Bug::kDeadlock, {"deadlock", "__shfl_sync", "at __syncthreads"}); });
  run("err_shfl_partial_mask", [] { return bug(Bug::kShflPartialMask, {"__shfl_xor_sync with mask 0x0000ffff"}); });
  run("err_named_barrier_unbalanced",
      [] { return bug(Bug::kNamedBarrierUnbalanced, {"named barrier 1", "ends with 32 of 64 threads arrived"}); });
  run("err_named_barrier_count", [] { return bug(Bug::kNamedBarrierCount, {"this round of the barrier counts"}); });
  run("err_named_barrier_deadlock", [] {
    return bug(Bug::kNamedBarrierDeadlock, {"deadlock", "bar.sync of named barrier 1", "bar.sync of named barrier 2"});
  });
  run("err_named_barrier_bad_count", [] { return bug(Bug::kNamedBarrierBadCount, {"bar.sync 1, 48", "multiple of 32"}); });
  run("err_named_barrier_zero", [] { return bug(Bug::kNamedBarrierZero, {"bar.sync 0", "0 is __syncthreads'"}); });
  run("err_collective_divergent", [] { return bug(Bug::kCollectiveDivergent, {"divergent warp collective"}); });
  run("err_exit_in_collective",
      [] { return bug(Bug::kExitInCollective, {"lane 31 exits while 31 lanes", "__shfl_xor_sync"}); });
  run("err_shfl_inactive_lane", [] { return bug(Bug::kShflInactiveLane, {"reads lane 16", "not active"}); });
  run("err_shfl_bad_width", [] { return bug(Bug::kShflBadWidth, {"width 12"}); });
  run("err_ldmatrix_partial_warp", [] { return bug(Bug::kLdmatrixPartialWarp, {"ldmatrix", "needs all 32"}); });
  run("err_ldmatrix_global", [] { return bug(Bug::kLdmatrixGlobal, {"ldmatrix", "row of shared memory"}); });
  run("err_ldmatrix_misaligned", [] { return bug(Bug::kLdmatrixMisaligned, {"ldmatrix", "16-byte aligned"}); });
  if (sm80) {
    run("err_cp_async_misaligned_src",
        [] { return bug(Bug::kCpAsyncMisalignedSrc, {"cp.async source", "not 16-byte aligned"}); });
    run("err_cp_async_misaligned_dst",
        [] { return bug(Bug::kCpAsyncMisalignedDst, {"cp.async destination", "not 16 bytes of shared memory"}); });
    run("err_cp_async_global_dst",
        [] { return bug(Bug::kCpAsyncGlobalDst, {"cp.async destination", "not 16 bytes of shared memory"}); });
    run("err_cp_async_never_waited", [] { return bug(Bug::kCpAsyncNeverWaited, {"1 cp.async copies never waited for"}); });
  } else {  // the sm_80 wrappers must refuse to run on sm_75
    const std::pair<const char*, Bug> old[] = {
        {"err_sm75_cp_async", Bug::kCpAsyncOnOldArch},       {"err_sm75_cp_async_commit", Bug::kCommitOnOldArch},
        {"err_sm75_cp_async_wait", Bug::kWaitOnOldArch},     {"err_sm75_mma_m16n8k16_f16", Bug::kMmaF16K16OnOldArch},
        {"err_sm75_mma_m16n8k16_bf16", Bug::kMmaBf16K16OnOldArch}, {"err_sm75_pack_bf16x2", Bug::kPackBf16OnOldArch}};
    for (const auto& [name, b] : old) run(name, [b = b] { return bug(b, {"needs sm_80", "sm_75"}); });
  }
  run("err_static_smem_over_48k",
      [] { return bug(Bug::kStaticSmemOver48K, {"static shared memory", "53248 B with 'second'", "48 KiB"}); });
  run("err_dynamic_align_over_128", [] { return bug(Bug::kDynamicAlignOver128, {"aligned to 256"}); });
  run("err_trap", [] { return bug(Bug::kTrap, {"__trap()", "thread (5,0,0)"}); });
  run("err_ldg_misaligned_uint4", [] { return bug(Bug::kLdgMisaligned, {"__ldg of a 16-byte value", "not 16-byte aligned"}); });

  run("err_launch_block_over_1024", [] { return refused(dim3(2), dim3(1025), {"more than 1024 threads"}); });
  run("err_launch_block_product_over_1024", [] { return refused(dim3(2), dim3(64, 1, 17), {"more than 1024 threads"}); });
  run("err_launch_block_z_over_64", [] { return refused(dim3(2), dim3(1, 1, 65), {"block over (1024, 1024, 64)"}); });
  run("err_launch_grid_zero", [] { return refused(dim3(0), dim3(32), {"dimension is 0"}); });
  run("err_launch_block_zero", [] { return refused(dim3(2), dim3(32, 0), {"dimension is 0"}); });
  run("err_launch_grid_y_over_65535", [] { return refused(dim3(2, 65536), dim3(32), {"grid over"}); });
  run("ok_launch_limits", [] {
    // The largest legal block runs (one block: 1024 fibers).
    int flags[2] = {0, 0};
    launch_config(dim3(1), dim3(1024), flags);
    std::string why = unexpected_errors();
    if (flags[0] != 1) why += "the 1024-thread block did not run; ";
    return Result{why.empty(), why.empty() ? "block of 1024 threads ran" : why};
  });

  // Dynamic shared memory: 48 KiB without an attribute, more with one, never over the opt-in limit.
  const int optin = smem_optin_limit(arch);
  run("err_dynamic_smem_over_48k_without_attribute", [] {
    return expect_error([](int* f) { int ok[2]; launch_dynamic(DynKernel::kNoAttr, 48 * 1024 + 16, f, ok); },
                        {cudaErrorInvalidValue, {"49168 B of dynamic shared memory", "48 KiB", "cudaFuncSetAttribute"}, 0});
  });
  run("ok_dynamic_smem_48k_without_attribute", [] {
    int flags[2] = {0, 0}, ok[2] = {0, 0};
    launch_dynamic(DynKernel::kNoAttr, 48 * 1024, flags, ok);
    std::string why = unexpected_errors();
    if (!(ok[0] && ok[1])) why += "the kernel could not fill its 48 KiB; ";
    return Result{why.empty(), why.empty() ? "48 KiB without cudaFuncSetAttribute ran" : why};
  });
  run("ok_dynamic_smem_over_48k_with_attribute", [] {
    const int bytes = 56 * 1024;  // within every opt-in limit from sm_75 on
    std::string why;
    if (set_dynamic_limit(DynKernel::kWithAttr, bytes) != cudaSuccess) why += "cudaFuncSetAttribute failed; ";
    int flags[2] = {0, 0}, ok[2] = {0, 0};
    launch_dynamic(DynKernel::kWithAttr, size_t(bytes), flags, ok);
    why += unexpected_errors();
    if (!(ok[0] && ok[1])) why += "the kernel could not fill its 56 KiB; ";
    // The attribute belongs to the device it was set on.
    cudaSetDevice(1);
    launch_dynamic(DynKernel::kWithAttr, size_t(bytes), flags, ok);
    const cudaError_t e = cudaGetLastError();
    cudaSetDevice(0);
    take_errors();
    if (e != cudaErrorInvalidValue) why += format("on device 1 (no attribute there) the launch gave %s; ", cudaGetErrorName(e));
    return Result{why.empty(), why.empty() ? "56 KiB ran after cudaFuncSetAttribute; refused on a device without it" : why};
  });
  run("err_func_attribute_over_optin", [optin, arch] {
    std::string why;
    const cudaError_t over = set_dynamic_limit(DynKernel::kOverOptin, optin + 1);
    if (over != cudaErrorInvalidValue) why += format("cudaFuncSetAttribute(opt-in + 1) = %s; ", cudaGetErrorName(over));
    const cudaError_t last = cudaGetLastError();  // a failed runtime call is also the last error
    if (last != cudaErrorInvalidValue) why += format("then cudaGetLastError() = %s; ", cudaGetErrorName(last));
    if (set_dynamic_limit(DynKernel::kOverOptin, optin) != cudaSuccess) why += "cudaFuncSetAttribute(opt-in) failed; ";
    int flags[2] = {0, 0}, ok[2] = {0, 0};
    launch_dynamic(DynKernel::kOverOptin, size_t(optin), flags, ok);
    why += unexpected_errors();
    if (!(ok[0] && ok[1])) why += "the kernel could not fill the opt-in limit; ";
    return Result{why.empty(), why.empty() ? format("%d B refused, %d B (sm_%d opt-in) ran", optin + 1, optin, arch) : why};
  });
  run("err_static_plus_dynamic_over_optin", [optin, arch] {
    if (set_dynamic_limit(DynKernel::kStaticPlusDynamic, optin) != cudaSuccess)
      return Result{false, "cudaFuncSetAttribute(opt-in) failed"};
    return expect_error(
        [optin](int* f) { int ok[2]; launch_dynamic(DynKernel::kStaticPlusDynamic, size_t(optin), f, ok); },
        {cudaErrorLaunchFailure, {"static (1024 B) + dynamic", format("over sm_%d's", arch)}, 1});
  });
}

// --- semantics ---------------------------------------------------------------------------------------

// Runs `check` under the forward, reverse and a shuffled thread and block order: results of a
// correct kernel must not depend on them.
Result under_orders(const std::function<std::string()>& check, const char* what) {
  for (Order o : {Order::kForward, Order::kReverse, Order::kShuffle}) {
    set_schedule(Schedule{o, o, 12345});
    std::string why = check();
    why += unexpected_errors();
    if (!why.empty()) return {false, format("order %d: ", int(o)) + why};
  }
  return {true, what};
}

// PTX ISA, shfl.sync: the CUDA intrinsics pass c = ((32 - width) << 8) | clamp, clamp 0 for .up and
// 31 otherwise; b is the lane / delta / lane mask (its low 5 bits). A source out of range gives the
// caller its own value.
int shfl_source(Shfl kind, int lane, int b, int width) {
  const int segmask = (32 - width) & 31;
  const int clamp = kind == Shfl::kUp ? 0 : 31;
  const int bval = b & 31;
  const int max_lane = (lane & segmask) | (clamp & ~segmask);
  const int min_lane = lane & segmask;
  int j = lane;
  bool in_range = false;
  switch (kind) {
    case Shfl::kUp: j = lane - bval; in_range = j >= max_lane; break;
    case Shfl::kDown: j = lane + bval; in_range = j <= max_lane; break;
    case Shfl::kXor: j = lane ^ bval; in_range = j <= max_lane; break;
    case Shfl::kIdx: j = min_lane | (bval & ~segmask); in_range = j <= max_lane; break;
  }
  return in_range ? j : lane;
}

Result shfl_test(Shfl kind, int width, const std::vector<std::vector<int>>& ops, bool wide) {
  std::vector<uint64_t> in(32);
  for (int l = 0; l < 32; ++l) in[size_t(l)] = wide ? (0xabcd000000000000ull | (uint64_t(l) << 32) | uint32_t(~l)) : 0x1000u + 0x11u * l;
  return under_orders(
      [&]() -> std::string {
        for (const std::vector<int>& op : ops) {
          const std::vector<uint64_t> got = run_shfl(kind, op, width, in, wide);
          for (int l = 0; l < 32; ++l) {
            const uint64_t want = in[size_t(shfl_source(kind, l, op[size_t(l)], width))];
            if (got[size_t(l)] != want)
              return format("lane %d, operand %d, width %d: got 0x%llx, want 0x%llx", l, op[size_t(l)], width,
                            (unsigned long long)got[size_t(l)], (unsigned long long)want);
          }
        }
        return "";
      },
      "every lane matches PTX shfl.sync for each operand set");
}

std::vector<int> uniform(int v) { return std::vector<int>(32, v); }
std::vector<int> per_lane(const std::function<int(int)>& f) {
  std::vector<int> v(32);
  for (int l = 0; l < 32; ++l) v[size_t(l)] = f(l);
  return v;
}

void shuffle_tests() {
  const auto idx_ops = std::vector<std::vector<int>>{uniform(0), uniform(5), uniform(13), uniform(37), uniform(-1),
                                                     per_lane([](int l) { return (l * 7 + 3) % 41 - 1; })};
  const auto delta_ops = std::vector<std::vector<int>>{uniform(0), uniform(1), uniform(3), uniform(7), uniform(8),
                                                       uniform(31), per_lane([](int l) { return l % 5; })};
  const auto xor_ops = std::vector<std::vector<int>>{uniform(1), uniform(2), uniform(4), uniform(8), uniform(12),
                                                     uniform(16), uniform(31), per_lane([](int l) { return l % 4; })};
  for (int width : {32, 8}) {
    run(format("shfl_sync_w%d", width), [&] { return shfl_test(Shfl::kIdx, width, idx_ops, false); });
    run(format("shfl_up_sync_w%d", width), [&] { return shfl_test(Shfl::kUp, width, delta_ops, false); });
    run(format("shfl_down_sync_w%d", width), [&] { return shfl_test(Shfl::kDown, width, delta_ops, false); });
    run(format("shfl_xor_sync_w%d", width), [&] { return shfl_test(Shfl::kXor, width, xor_ops, false); });
  }
  run("shfl_sync_64bit_w16", [&] { return shfl_test(Shfl::kIdx, 16, idx_ops, true); });
  run("shfl_xor_sync_64bit_w32", [&] { return shfl_test(Shfl::kXor, 32, xor_ops, true); });
  run("ballot_sync", [] {
    const std::vector<std::vector<int>> preds = {uniform(0), uniform(1), per_lane([](int l) { return l % 3 == 0; }),
                                                 per_lane([](int l) { return l * 5 - 40; }),  // any non-zero is true
                                                 per_lane([](int l) { return l == 31 ? 7 : 0; })};
    return under_orders(
        [&]() -> std::string {
          for (const auto& p : preds) {
            uint32_t want = 0;
            for (int l = 0; l < 32; ++l) want |= uint32_t(p[size_t(l)] != 0) << l;
            const std::vector<uint32_t> got = run_ballot(p);
            for (int l = 0; l < 32; ++l)
              if (got[size_t(l)] != want) return format("lane %d: got 0x%08x, want 0x%08x", l, got[size_t(l)], want);
          }
          return "";
        },
        "bit l = lane l's predicate != 0, on every lane");
  });
}

// PTX ISA, ldmatrix .m8n8 .b16: lanes 8i..8i+7 address rows 0..7 of matrix i; lane l receives in
// register i the elements (l/4, 2(l%4)) and (l/4, 2(l%4)+1) of matrix i, lower half first; with
// .trans the elements (2(l%4), l/4) and (2(l%4)+1, l/4).
Result ldmatrix_test(int num, bool trans) {
  std::vector<uint16_t> rows(32 * 8);
  for (int l = 0; l < 32; ++l)
    for (int c = 0; c < 8; ++c) rows[size_t(8 * l + c)] = uint16_t(0x8000 | (l << 8) | (c << 4) | 0x5);
  std::vector<int> slot(32);
  for (int l = 0; l < 32; ++l) slot[size_t(l)] = (l * 13 + 7) % 32;  // rows scattered over the tile
  auto elem = [&](int m, int r, int c) { return uint32_t(rows[size_t(8 * (8 * m + r) + c)]); };
  return under_orders(
      [&]() -> std::string {
        const std::vector<uint32_t> got = run_ldmatrix(num, trans, rows, slot);
        for (int l = 0; l < 32; ++l) {
          const int g = l / 4, t = l % 4;
          for (int i = 0; i < 4; ++i) {
            uint32_t want = 0;  // registers past .x<num> are not written
            if (i < num)
              want = trans ? elem(i, 2 * t, g) | elem(i, 2 * t + 1, g) << 16 : elem(i, g, 2 * t) | elem(i, g, 2 * t + 1) << 16;
            if (got[size_t(4 * l + i)] != want)
              return format("lane %d register %d: got 0x%08x, want 0x%08x", l, i, got[size_t(4 * l + i)], want);
          }
        }
        return "";
      },
      "every lane's registers match the ISA's fragment layout; lanes past 8*num passed nullptr");
}

// fp16 / bf16 bits of a value that must be exact in the format (test data only).
uint16_t f16_exact(double v) {
  if (v == 0) return 0;
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  int e;
  const double m = std::frexp(std::fabs(v), &e);  // |v| = m 2^e, m in [0.5, 1)
  const double mant = std::ldexp(m, 11);          // 11 significant bits
  if (e - 1 < -14 || e - 1 > 15 || mant != std::floor(mant)) std::abort();
  return uint16_t(sign | ((e - 1 + 15) << 10) | (uint16_t(mant) - 1024));
}
uint16_t bf16_exact(double v) {
  const float f = float(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (double(f) != v || (u & 0xffffu) != 0) std::abort();
  return uint16_t(u >> 16);
}

// mma.sync.aligned.m16n8k{16,8}.row.col.f32.{f16,bf16}: D = A B + C against a naive product in
// double. The values are multiples of 1/8 small enough that every sum is exact in fp32, except
// A[0][0] B[0][0] = 288^2, over fp16's range (the accumulation must be fp32).
Result mma_test(Mma kind, bool zero_c) {
  const int K = kind == Mma::kF16K8 ? 8 : 16;
  const bool bf16 = kind == Mma::kBf16K16;
  double A[16][16], B[16][8], C[16][8];
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < K; ++k) A[r][k] = ((r * 5 + k * 3) % 17 - 8) / 4.0;
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < 8; ++n) B[k][n] = ((k * 7 + n * 11) % 13 - 6) / 2.0;
  A[0][0] = 288.0;
  B[0][0] = 288.0;
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) C[r][n] = zero_c ? 0.0 : ((r * 3 + n * 5) % 9 - 4) * 0.125;
  auto bits = [&](double v) { return uint32_t(bf16 ? bf16_exact(v) : f16_exact(v)); };
  // Fragments, element by element as the ISA tabulates them (g = groupID, t = threadID_in_group).
  std::vector<uint32_t> a(128, 0u), b(64, 0u);
  std::vector<float> c(128);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < (K == 16 ? 8 : 4); ++i) {  // a_i: register i/2, half i%2
      const int row = K == 16 ? ((i < 2 || (i >= 4 && i < 6)) ? g : g + 8) : (i < 2 ? g : g + 8);
      const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      a[size_t(4 * l + i / 2)] |= bits(A[row][col]) << (16 * (i % 2));
    }
    for (int i = 0; i < (K == 16 ? 4 : 2); ++i) {  // b_i
      const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      b[size_t(2 * l + i / 2)] |= bits(B[row][g]) << (16 * (i % 2));
    }
    for (int i = 0; i < 4; ++i) c[size_t(4 * l + i)] = float(C[i < 2 ? g : g + 8][t * 2 + (i & 1)]);
  }
  return under_orders(
      [&]() -> std::string {
        const std::vector<float> d = run_mma(kind, a, b, c);
        for (int l = 0; l < 32; ++l)
          for (int i = 0; i < 4; ++i) {
            const int row = i < 2 ? l / 4 : l / 4 + 8, col = (l % 4) * 2 + (i & 1);
            double want = C[row][col];
            for (int k = 0; k < K; ++k) want += A[row][k] * B[k][col];
            if (d[size_t(4 * l + i)] != float(want))
              return format("D[%d][%d] (lane %d, c%d): got %.9g, want %.9g", row, col, l, i, double(d[size_t(4 * l + i)]), want);
          }
        return "";
      },
      zero_c ? "D = A B exactly (C = 0), every element" : "D = A B + C exactly, every element");
}

// --- fp32 -> fp16 / bf16, round to nearest even: a bit-level reference -------------------------------------

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// v >> s rounded to nearest, ties to even.
uint32_t shift_rne(uint32_t v, int s) {
  if (s == 0) return v;
  if (s > 31) return 0;
  const uint32_t q = v >> s, rem = v & ((1u << s) - 1), half = 1u << (s - 1);
  return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t f16_reference(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7e00;                 // NaN (any payload passes the check)
  if (a >= 0x477ff000u) return sign | 0x7c00;         // >= 65520 = 65504 + half an ulp: ties to even = inf
  const int e = int(a >> 23);                         // biased fp32 exponent
  if (e < 113) {                                      // below 2^-14: a multiple of 2^-24, or zero
    if (e == 0) return sign;                          // fp32 zero / subnormal: far below 2^-25
    return sign | uint16_t(shift_rne((a & 0x7fffffu) | 0x800000u, 126 - e));
  }
  // Normal: rebias the exponent (127 -> 15) and drop 13 mantissa bits; a carry may reach the exponent.
  return sign | uint16_t(shift_rne(a - (112u << 23), 13));
}

uint16_t bf16_reference(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return uint16_t(shift_rne(x & 0x7fffffffu, 16) | ((x >> 16) & 0x8000));  // overflow carries into inf
}

bool is_nan16(uint16_t h, bool bf16) {
  return bf16 ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0 : (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

// Hand-picked (input, expected bits) from the formats' definitions: ties, subnormals, overflow.
struct Pick {
  uint32_t in;  // fp32 bits
  uint16_t want;
};
const Pick kF16Picks[] = {
    {0x3f800000, 0x3c00},  // 1
    {0x3f801000, 0x3c00},  // 1 + 2^-11: tie, to the even 1
    {0x3f803000, 0x3c02},  // 1 + 3 2^-11: tie, to the even 1 + 2^-9
    {0x3f801001, 0x3c01},  // just above the tie
    {0x3dcccccd, 0x2e66},  // 0.1
    {0x477fe000, 0x7bff},  // 65504, the largest finite
    {0x477fefff, 0x7bff},  // just below 65520
    {0x477ff000, 0x7c00},  // 65520: tie between 65504 and 2^16, to the even (inf)
    {0xc77ff000, 0xfc00},  // -65520
    {0x7f7fffff, 0x7c00},  // FLT_MAX
    {0x33800000, 0x0001},  // 2^-24, the smallest subnormal
    {0x33000000, 0x0000},  // 2^-25: tie, to the even 0
    {0x33000001, 0x0001},  // just above it
    {0x33c00000, 0x0002},  // 3 2^-25: tie between 1 and 2 units, to 2
    {0x387fe000, 0x0400},  // 2^-14 - 2^-25: tie between 0x3ff and 0x400, to 0x400
    {0x38800000, 0x0400},  // 2^-14, the smallest normal
    {0x80000000, 0x8000},  // -0
    {0x00000001, 0x0000},  // fp32 subnormal
    {0x7f800000, 0x7c00},  // inf
    {0xff800000, 0xfc00},  // -inf
};
const Pick kBf16Picks[] = {
    {0x3f800000, 0x3f80},  // 1
    {0x3f808000, 0x3f80},  // 1 + 2^-8: tie, to the even 1
    {0x3f818000, 0x3f82},  // 1 + 3 2^-8: tie, to 1 + 2^-6
    {0x3f808001, 0x3f81},  // just above the tie
    {0x3dcccccd, 0x3dcd},  // 0.1
    {0x7f7f0000, 0x7f7f},  // the largest finite bf16
    {0x7f7f8000, 0x7f80},  // tie between it and 2^128, to the even (inf)
    {0x7f7fffff, 0x7f80},  // FLT_MAX
    {0xff7fffff, 0xff80},  // -FLT_MAX
    {0x00010000, 0x0001},  // 2^-133, the smallest bf16 subnormal
    {0x00008000, 0x0000},  // half of it: tie, to 0
    {0x00018000, 0x0002},  // 1.5 units: tie, to 2
    {0x00000001, 0x0000},  // the smallest fp32 subnormal
    {0x80000000, 0x8000},  // -0
    {0x7f800000, 0x7f80},  // inf
    {0xff800000, 0xff80},  // -inf
};

Result pack_test(bool bf16) {
  // Check the reference itself against the compiler's _Float16 conversion where there is one.
#if defined(__FLT16_MAX__)
  if (!bf16) {
    for (uint32_t i = 0; i < 200000; ++i) {
      const uint32_t x = i * 2654435761u;
      const _Float16 h = static_cast<_Float16>(bits_float(x));
      uint16_t hb;
      std::memcpy(&hb, &h, 2);
      const uint16_t r = f16_reference(bits_float(x));
      if (hb != r && !(is_nan16(hb, false) && is_nan16(r, false)))
        return {false, format("the test's own reference disagrees with _Float16 at 0x%08x", x)};
    }
  }
#endif
  std::vector<float> in;
  std::vector<uint16_t> want;
  for (const Pick& p : bf16 ? std::vector<Pick>(std::begin(kBf16Picks), std::end(kBf16Picks))
                            : std::vector<Pick>(std::begin(kF16Picks), std::end(kF16Picks))) {
    if ((bf16 ? bf16_reference(bits_float(p.in)) : f16_reference(bits_float(p.in))) != p.want)
      return {false, format("the test's own reference is wrong at 0x%08x", p.in)};
    in.push_back(bits_float(p.in));
    want.push_back(p.want);
  }
  in.push_back(bits_float(0x7fc00000));  // NaN, and a NaN with a payload and the sign
  in.push_back(bits_float(0xff800001));
  want.push_back(0);
  want.push_back(0);
  const size_t picks = in.size();
  for (uint32_t i = 0; in.size() < 4096; ++i) {  // and a spread of bit patterns, many near ties
    const uint32_t x = i * 2654435761u;
    in.push_back(bits_float(i % 2 ? x : (x & 0xffff0000u) | (bf16 ? 0x8000u : 0x1000u)));
    want.push_back(0);
  }
  if (in.size() % 2) in.push_back(1.0f), want.push_back(0);
  for (size_t i = picks; i < in.size(); ++i) want[i] = bf16 ? bf16_reference(in[i]) : f16_reference(in[i]);
  std::vector<float> swapped(in.size());  // each pair also the other way round: lo must be the low half
  for (size_t i = 0; i < in.size(); i += 2) swapped[i] = in[i + 1], swapped[i + 1] = in[i];
  std::string why = "";
  for (int pass = 0; pass < 2 && why.empty(); ++pass) {
    const std::vector<float>& x = pass ? swapped : in;
    const std::vector<uint32_t> got = run_pack(bf16, x);
    why += unexpected_errors();
    for (size_t i = 0; i < x.size() && why.empty(); ++i) {
      const uint16_t g = uint16_t(got[i / 2] >> (16 * (i % 2)));
      const uint16_t w = pass ? want[i ^ 1] : want[i];
      const bool nan = std::isnan(x[i]);
      if (nan ? !is_nan16(g, bf16) : g != w)
        why = format("input 0x%08x (%s half): got 0x%04x, want %s0x%04x", float_bits(x[i]), i % 2 ? "high" : "low", g,
                     nan ? "a NaN, e.g. " : "", nan ? 0x7fff : w);
    }
  }
  return {why.empty(), why.empty() ? format("%zu hand-picked and %zu spread inputs, both halves", picks, in.size() - picks)
                                   : why};
}

// --- cp.async ----------------------------------------------------------------------------------------------

alignas(16) uint8_t g_src_a[512];
alignas(16) uint8_t g_src_b[512];

std::string all_bytes(const std::vector<uint8_t>& v, const std::function<uint8_t(size_t)>& want, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != want(i)) return format("%s: byte %zu is 0x%02x, want 0x%02x; ", what, i, v[i], want(i));
  return "";
}

void cp_async_tests() {
  for (size_t i = 0; i < 512; ++i) g_src_a[i] = uint8_t(i * 3 + 1), g_src_b[i] = uint8_t(i * 5 + 2);
  auto poison = [](size_t) { return uint8_t(0xff); };
  auto data_a = [](size_t i) { return g_src_a[i]; };
  auto data_b = [](size_t i) { return g_src_b[i]; };
  run("cp_async_lands_at_wait", [&] {
    const CpAsyncTrace t = run_cp_async(g_src_a, g_src_b);
    std::string why = unexpected_errors();
    why += all_bytes(t.a[0], poison, "group A right after issue");
    why += all_bytes(t.b[0], poison, "group B right after issue");
    why += all_bytes(t.a[2], data_a, "group A after cp_async_wait<0>");
    why += all_bytes(t.b[2], data_b, "group B after cp_async_wait<0>");
    return Result{why.empty(), why.empty() ? "0xFF until the wait, the data after it" : why};
  });
  run("cp_async_wait1_keeps_newest_group", [&] {
    const CpAsyncTrace t = run_cp_async(g_src_a, g_src_b);
    std::string why = unexpected_errors();
    why += all_bytes(t.a[1], data_a, "older group A after cp_async_wait<1>");
    why += all_bytes(t.b[1], poison, "newest group B after cp_async_wait<1>");
    return Result{why.empty(), why.empty() ? "wait<1>: the older group landed, the newest still in flight" : why};
  });
  run("cp_async_pred_false_zero_fills", [&] {
    const CpAsyncTrace t = run_cp_async(g_src_a, nullptr);  // B: pred false, source nullptr (never read)
    std::string why = unexpected_errors();
    why += all_bytes(t.b[0], poison, "zero-fill group right after issue");
    why += all_bytes(t.b[2], [](size_t) { return uint8_t(0); }, "zero-fill group after the wait");
    why += all_bytes(t.a[2], data_a, "the other group");
    return Result{why.empty(), why.empty() ? "pred false: 16 zero bytes, nothing read" : why};
  });
}

// --- shared memory, schedules, device attributes ---------------------------------------------------------------

bool is_permutation(const std::vector<int>& v) {
  std::vector<int> s = v;
  std::sort(s.begin(), s.end());
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] != int(i)) return false;
  return true;
}

std::vector<int> iota(int n, bool reverse) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  if (reverse) std::reverse(v.begin(), v.end());
  return v;
}

void runtime_tests() {
  run("smem_poison_every_block", [] {
    std::string why;
    for (Order o : {Order::kForward, Order::kShuffle}) {
      set_schedule(Schedule{o, Order::kForward, 7});
      const std::vector<int> ok = run_smem_poison(3, 64);
      why += unexpected_errors();
      for (size_t i = 0; i < ok.size() && why.empty(); ++i)
        if (!ok[i]) why = format("block %zu thread %zu saw shared memory that was not 0xFF", i / 64, i % 64);
    }
    return Result{why.empty(), why.empty() ? "static and dynamic shared memory all 0xFF at the start of 3 blocks" : why};
  });
  run("schedule_forward_reverse_shuffle", [] {
    const int nb = 8, nt = 64;
    std::string why;
    std::vector<int> shuffled_blocks[2];
    std::vector<int> shuffled_threads[2];
    for (int k = 0; k < 4 && why.empty(); ++k) {
      const Order o = k == 0 ? Order::kForward : k == 1 ? Order::kReverse : Order::kShuffle;
      set_schedule(Schedule{o, o, uint64_t(k)});
      const StartOrder s = run_start_order(nb, nt);
      why += unexpected_errors();
      if (o != Order::kShuffle) {
        if (s.blocks != iota(nb, o == Order::kReverse)) why += format("order %d: blocks not in order; ", k);
        for (int b = 0; b < nb; ++b)
          if (s.threads[size_t(b)] != iota(nt, o == Order::kReverse)) why += format("order %d: threads not in order; ", k);
      } else {
        if (!is_permutation(s.blocks)) why += "shuffled blocks are not a permutation; ";
        for (int b = 0; b < nb; ++b)
          if (!is_permutation(s.threads[size_t(b)])) why += "shuffled threads are not a permutation; ";
        if (s.blocks == iota(nb, false) || s.blocks == iota(nb, true)) why += "shuffled blocks in a plain order; ";
        if (s.threads[0] == iota(nt, false) || s.threads[0] == iota(nt, true)) why += "shuffled threads in a plain order; ";
        shuffled_blocks[k - 2] = s.blocks;
        shuffled_threads[k - 2] = s.threads[0];
      }
    }
    if (why.empty() && shuffled_blocks[0] == shuffled_blocks[1] && shuffled_threads[0] == shuffled_threads[1])
      why = "two shuffled launches ran in the same order";  // (the runtime mixes the launch count into the seed)
    return Result{why.empty(), why.empty() ? "forward, reverse, and seeded permutations of 8 blocks x 64 threads" : why};
  });
  run("schedule_rounds_and_greedy", [] {
    // control.h: rounds resume every runnable thread once; greedy always the first runnable one,
    // so warp 0 runs until it waits before warp 1 starts. runtime.cpp: the last lane to reach a
    // collective completes it and runs on.
    std::vector<int> rounds, greedy;
    auto ids = [](std::vector<int>& v, int from, int to, int plus) {
      for (int i = from; i < to; ++i) v.push_back(plus + i);
    };
    ids(rounds, 0, 32, 0), rounds.push_back(1031), ids(rounds, 32, 64, 0), rounds.push_back(1063);
    ids(rounds, 0, 31, 1000), ids(rounds, 32, 63, 1000);
    ids(greedy, 0, 32, 0), greedy.push_back(1031), ids(greedy, 0, 31, 1000);
    ids(greedy, 32, 64, 0), greedy.push_back(1063), ids(greedy, 32, 63, 1000);
    std::string why;
    for (bool g : {false, true}) {
      Schedule s;
      s.greedy = g;
      set_schedule(s);
      if (run_event_log() != (g ? greedy : rounds)) why += g ? "greedy order wrong; " : "round order wrong; ";
    }
    why += unexpected_errors();
    return Result{why.empty(), why.empty() ? "forward rounds interleave the warps; greedy runs warp 0 to its end first" : why};
  });
  run("named_barrier_turns", [] {
    // Each turn's 128 entries come as one run, the groups alternate, and every thread took every turn.
    return under_orders(
        [] {
          const int steps = 5;
          const std::vector<int> log = run_named_barrier_turns(steps);
          for (size_t i = 0; i < log.size(); ++i)
            if (log[i] != int(i / 128))
              return format("entry %zu is turn %d (want %d: 128 entries per turn, groups alternating)", i, log[i],
                            int(i / 128));
          return std::string();
        },
        "bar.sync / bar.arrive turns alternate the two groups, 128 entries each, under every order");
  });
  run("set_sm_count_per_device", [] {
    auto sms = [](int dev) {
      int v = -1;
      return cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess ? v : -1;
    };
    std::string why;
    if (sms(0) != 108 || sms(1) != 2) why += format("defaults %d, %d (want 108, 2); ", sms(0), sms(1));
    set_sm_count(1, 7);
    if (sms(1) != 7 || sms(0) != 108) why += format("after set_sm_count(1, 7): %d, %d; ", sms(0), sms(1));
    set_sm_count(0, 33);
    if (sms(0) != 33 || sms(1) != 7) why += format("after set_sm_count(0, 33): %d, %d; ", sms(0), sms(1));
    set_sm_count(0, 108);
    set_sm_count(1, 2);
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, kDevices) != cudaErrorInvalidDevice)
      why += "no cudaErrorInvalidDevice for a device past the last; ";
    (void)cudaGetLastError();
    why += unexpected_errors();
    return Result{why.empty(), why.empty() ? "device 0: 108 -> 33, device 1: 2 -> 7, each on its own" : why};
  });
  run("last_error_read_clears", [] {
    std::string why;
    int flags[2] = {0, 0};
    launch_config(dim3(0), dim3(32), flags);  // refused
    take_errors();
    if (cudaPeekAtLastError() != cudaErrorInvalidConfiguration) why += "peek after a refused launch; ";
    if (cudaPeekAtLastError() != cudaErrorInvalidConfiguration) why += "a peek cleared the error; ";
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) why += "get after a refused launch; ";
    if (cudaGetLastError() != cudaSuccess) why += "a second get still has the error; ";
    launch_bug(Bug::kTrap, flags);  // aborted
    take_errors();
    if (cudaGetLastError() != cudaErrorLaunchFailure) why += "get after an aborted launch; ";
    if (cudaGetLastError() != cudaSuccess) why += "a second get after an abort still has the error; ";
    why += recovery();
    return Result{why.empty(), why.empty() ? "peek keeps, get returns once then cudaSuccess" : why};
  });
  run("recover_after_aborts_in_a_row", [] {
    // Several aborts of different kinds between fiber re-creations, then a clean shuffled run.
    int flags[2];
    for (Bug b : {Bug::kDeadlock, Bug::kTrap, Bug::kExitInCollective, Bug::kSyncthreadsDivergent}) launch_bug(b, flags);
    const size_t n = take_errors().size();
    (void)cudaGetLastError();
    set_schedule(Schedule{Order::kShuffle, Order::kShuffle, 99});
    std::string why = recovery();
    if (n != 4) why += format("%zu errors for 4 aborted launches; ", n);
    return Result{why.empty(), why.empty() ? "4 aborted launches, then a correct one computes the right sums" : why};
  });
}

}  // namespace

int run_all(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
      g_filter = argv[++i];
    } else {
      std::fprintf(stderr, "usage: fastradio_emu_selftest [--filter SUBSTRING]\n");
      return 2;
    }
  }
  const int arch = emulated_arch();
  std::fprintf(stderr, "fastradio_emu_selftest: emulated sm_%d\n", arch);
  error_tests(arch);
  shuffle_tests();
  for (int num : {1, 2, 4})
    for (bool trans : {false, true})
      run(format("ldmatrix_x%d%s", num, trans ? "_trans" : ""), [=] { return ldmatrix_test(num, trans); });
  for (bool zero_c : {false, true}) {
    const char* c = zero_c ? "_c0" : "";
    if (arch >= 80) {
      run(format("mma_m16n8k16_f16%s", c), [=] { return mma_test(Mma::kF16K16, zero_c); });
      run(format("mma_m16n8k16_bf16%s", c), [=] { return mma_test(Mma::kBf16K16, zero_c); });
    }
    run(format("mma_m16n8k8_f16%s", c), [=] { return mma_test(Mma::kF16K8, zero_c); });
  }
  run("pack_f16x2", [] { return pack_test(false); });
  if (arch >= 80) {
    run("pack_bf16x2", [] { return pack_test(true); });
    cp_async_tests();
  }
  runtime_tests();
  if (arch >= 90)  // the sm_90a instructions (hopper_tests.cpp)
    hopper_tests([](const std::string& name, const std::function<std::pair<bool, std::string>()>& body) {
      run(name, [&] {
        const std::pair<bool, std::string> r = body();
        return Result{r.first, r.second};
      });
    });
  std::printf("SUMMARY\t%d\t%d\n", g_passed, g_failed);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

int main(int argc, char** argv) { return fastradio::emu::selftest::run_all(argc, argv); }

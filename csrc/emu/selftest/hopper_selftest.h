// The emulator's Hopper self-test (sm_90a instructions; run when the emulated arch is sm_90):
// launchers of hopper_kernels.cu, called by hopper_tests.cpp. Plain host C++ like selftest.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fastradio {
namespace emu {
namespace selftest {

// TMA load of one box of a 16-bit tensor (rank 2 or 3; dims/strides in elements, dim 0 innermost)
// at `coords`, then the raw shared-memory bytes of the box (swizzled as TMA leaves them) as
// 16-bit words. how: 0 wait on the mbarrier, then read; 1 read before the wait (poison expected);
// 2 never wait (an error expected); 3 announce 2 bytes too many with expect_tx (a deadlock).
// Returns an empty vector when encoding the tensor map failed.
std::vector<uint16_t> run_tma_load(int rank, const uint16_t* data, const uint64_t* dims,
                                   const uint64_t* strides, const uint32_t* box, const int* coords, int swizzle,
                                   int how);

// TMA store of a box (given as the shared-memory bytes, i.e. already swizzled, which the threads
// store, then fence.proxy.async unless !fence) into a tensor of 0x5A5A words; returns the tensor.
std::vector<uint16_t> run_tma_store(const std::vector<uint16_t>& smem_box, const uint64_t* dims, const uint64_t* strides,
                                    const uint32_t* box, const int* coords, int swizzle, bool fence = true);

// wgmma m64nNk16 over K = 16 * ksteps: D (64 x N) = A (64 x K, row-major) * B^T (B: N x K,
// row-major), 16-bit inputs as bits. A and B reach shared memory by TMA with `swizzle` (32/64/128,
// K = swizzle / 2) or, swizzle 0, by the threads' own stores in core-matrix layout (K = 16).
// desc_swizzle_b: the swizzle B's descriptor claims (normally = swizzle). rs: A from registers.
// Returns each thread's accumulators, thread-major (128 x N/2).
struct WgmmaSpec {
  int n = 8;
  int swizzle = 128;
  int desc_swizzle_b = 128;
  bool bf16 = false;
  bool rs = false;
  bool fence = true;  // swizzle 0: fence.proxy.async between the threads' stores and the wgmma
  bool mn_b = false;  // B MN-major (transpose-B flag), loaded by TMA from Bᵀ; swizzle 32/64/128 only
};
std::vector<float> run_wgmma(const WgmmaSpec& spec, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b);

// stmatrix .x<num> [.trans]: lane l holds regs[4 * l + i]; returns the 4 x 8 rows of 8 words it
// stores (row 8i + r = what lane 8i + r stored).
std::vector<uint16_t> run_stmatrix(int num, bool trans, const std::vector<uint32_t>& regs);

// elect.sync in a warp: per lane 1 if elected.
std::vector<int> run_elect();

// A two-stage TMA pipeline: the elected lane of warp 0 loads `tiles` 8x64 u16 tiles of `data`
// (8 * tiles rows of 64) into stage t % 2 after waiting for the stage's "empty" barrier; all 128
// threads wait on the "full" barrier (parity (t / 2) % 2), add up the tile, arrive on "empty".
// Returns per tile the sum thread 0 saw.
std::vector<uint64_t> run_pipeline(const std::vector<uint16_t>& data, int tiles);

enum class HopperBug {
  kWgmmaWaitOffByOne,    // two groups in flight, wait_group<1>, then both accumulators read
  kWgmmaNoFence,         // mma_async without wgmma.fence
  kWgmmaPartialGroup,    // 96-thread block
  kSetmaxnregIllegal,    // setmaxnreg.inc 100
  kSetmaxnregDisagree,   // warp 0 asks for 240, the others for 232
  kMbarrierNotInit,      // arrive on a barrier nobody initialised
  kAccumulatorTouched,   // d *= 2 between the wgmma's issue and its wait_group
  kChainedGroups,        // correct: d = A·B in group 0, d += A·B in group 1, wait_group<1>, <0>: d = 32
};
// Runs the kernel (1 block); the caller reads take_errors(). out: 128 * 8 floats some kernels write.
void launch_hopper_bug(HopperBug bug, std::vector<float>* out);

// A wgmma's shared-memory operands are held until the wait_group that retires it. One warpgroup; two
// 64 x 16 f16 tiles of ones loaded by TMA (32-byte swizzle); group 0 is a wgmma on tile 0, group 1
// one on tile 1 (A = the tile, B = its first 8 rows: N = 8, D = 16), then:
enum class OperandHold {
  kReloadAfterWait,     // wait_group<0>, then a TMA load of twos into tile 0 and a wgmma on it (D = 64): correct
  kOlderAfterWaitOne,   // wait_group<1> retires group 0, then stores into tile 0: correct
  kStoreBeforeWait,     // stores into tile 0 before the wait_group<0>: caught at the wait_group
  kNewerAfterWaitOne,   // wait_group<1>, then stores into tile 1 (group 1 in flight): caught at wait_group<0>
  kTmaBeforeWait,       // a TMA load into tile 1 before the wait_group: caught where it is issued
  kLandBeforeWait,      // a TMA load into tile 1 issued before its wgmma lands (mbarrier wait) before the wait_group
  kStmatrixBeforeWait,  // stmatrix into tile 0 before the wait_group: caught at the stmatrix
};
// Runs it (1 block of 128 threads). out: per thread group 0's 4 accumulators, then the second wgmma's
// (group 1's, or the reload's). issue_lines: the source lines of the wgmma on tile 0 and on tile 1.
void launch_operand_hold(OperandHold how, std::vector<float>* out, int issue_lines[2]);

// The Hopper tests, registered through selftest.cpp's run().
using HopperRun = std::function<void(const std::string&, const std::function<std::pair<bool, std::string>()>&)>;
void hopper_tests(const HopperRun& run);

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

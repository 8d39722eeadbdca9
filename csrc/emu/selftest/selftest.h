// The emulator's self-test (csrc/emu/selftest/): launchers of kernels.cu, called by selftest.cpp.
// kernels.cu is compiled like a real kernel source (-x c++ -include emu/device.h); selftest.cpp is
// plain host C++, so this header uses nothing but the CUDA runtime shim's types.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastradio {
namespace emu {
namespace selftest {

// --- deliberately buggy kernels ------------------------------------------------------------------
// Each runs a grid of 2 blocks; thread 0 of a block first sets blocks_run[blockIdx.x] = 1, so an
// aborted launch leaves {1, 0} under the forward block order (block 1 never started).
enum class Bug {
  kSyncthreadsDivergent,    // half the block at one __syncthreads, half at another
  kExitWhileBarrierWaits,   // the last thread returns while the others wait at __syncthreads
  kSyncthreadsAfterExit,    // thread 0 returns, the others then reach __syncthreads
  kDeadlock,                // lane 0 waits in a shuffle, the rest of the block at a barrier
  kShflPartialMask,         // __shfl_xor_sync(0x0000ffff, ...) on a full warp
  kCollectiveDivergent,     // odd and even lanes at two different shuffle lines
  kExitInCollective,        // lane 31 returns while its warp waits in a shuffle
  kShflInactiveLane,        // 16-thread block: lane 15 shuffles down from lane 16, which does not exist
  kShflBadWidth,            // width 12
  kLdmatrixPartialWarp,     // ldmatrix in a 16-thread block
  kLdmatrixGlobal,          // ldmatrix rows in global memory
  kLdmatrixMisaligned,      // ldmatrix row 8 bytes into shared memory
  kCpAsyncMisalignedSrc,    // cp.async source at 16k + 8
  kCpAsyncMisalignedDst,    // cp.async destination at 16k + 8 of shared memory
  kCpAsyncGlobalDst,        // cp.async destination in global memory
  kCpAsyncNeverWaited,      // cp.async committed, never waited for
  kStaticSmemOver48K,       // two static __shared__ arrays, 32 KiB + 20 KiB
  kDynamicAlignOver128,     // FASTRADIO_DYNAMIC_SHARED(256, ...)
  kTrap,                    // __trap() in thread 5
  kLdgMisaligned,           // __ldg of a uint4 at 16k + 4
  kNamedBarrierUnbalanced,  // warp 1 arrives twice at named barrier 1 (64 threads), warp 0 syncs once
  kNamedBarrierCount,       // warp 0: bar.sync 1, 64; warp 1: bar.arrive 1, 32
  kNamedBarrierDeadlock,    // warp 0 syncs on barrier 1, warp 1 on barrier 2 (64 threads each)
  kNamedBarrierBadCount,    // bar.sync 1, 48
  kNamedBarrierZero,        // bar.sync 0, 64 (barrier 0 is __syncthreads')
  // sm_80 instructions, which must fault when the emulated arch is sm_75:
  kCpAsyncOnOldArch, kCommitOnOldArch, kWaitOnOldArch, kMmaF16K16OnOldArch, kMmaBf16K16OnOldArch,
  kPackBf16OnOldArch,
};
void launch_bug(Bug bug, int* blocks_run);

// A correct kernel (writes blocks_run[blockIdx.x]) under any launch configuration.
void launch_config(dim3 grid, dim3 block, int* blocks_run);

// Dynamic shared memory. Attributes stick to a function (and device), so each test has a kernel
// of its own. kernel fills its whole dynamic buffer and checks it back: *ok = 1 if it could.
enum class DynKernel { kNoAttr, kWithAttr, kOverOptin, kStaticPlusDynamic };
cudaError_t set_dynamic_limit(DynKernel k, int bytes);
void launch_dynamic(DynKernel k, size_t bytes, int* blocks_run, int* ok);

// A correct kernel with a barrier, shared memory and shuffles; returns each warp's sum, which must
// be healthy_expected(). Run after every aborted launch: the emulator must recover.
std::vector<uint32_t> run_healthy();
std::vector<uint32_t> healthy_expected();

// --- semantics -------------------------------------------------------------------------------------
enum class Shfl { kIdx, kUp, kDown, kXor };
// One warp: lane l calls the shuffle with value in[l], operand op[l] (srcLane / delta / laneMask)
// and `width`; returns what each lane got. wide: the values move as uint64_t.
std::vector<uint64_t> run_shfl(Shfl kind, const std::vector<int>& op, int width, const std::vector<uint64_t>& in,
                               bool wide);
std::vector<uint32_t> run_ballot(const std::vector<int>& pred);

// ldmatrix .x<num> [.trans]: rows[l] (8 b16 values) is the row lane l addresses, stored in shared
// memory slot slot[l] (32-byte stride; lanes >= 8 * num pass nullptr); returns lane l's registers
// at [4 * l + i].
std::vector<uint32_t> run_ldmatrix(int num, bool trans, const std::vector<uint16_t>& rows,
                                   const std::vector<int>& slot);

// mma.sync: per lane a[4 * l + j], b[2 * l + j], c[4 * l + j] (m16n8k8: a's first two, b's first)
// -> d[4 * l + j].
enum class Mma { kF16K16, kBf16K16, kF16K8 };
std::vector<float> run_mma(Mma kind, const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
                           const std::vector<float>& c);

// pack_f16x2 / pack_bf16x2 of (in[2i], in[2i + 1]).
std::vector<uint32_t> run_pack(bool bf16, const std::vector<float>& in);

// cp.async, 32 threads: group A copies src_a (16 B per thread), group B copies src_b, or zero-fills
// when src_b is null (pred false; B's destination is first set to 0x5A by the thread). Snapshots of
// each thread's 16 destination bytes of A and B (32 x 16 B each): right after issue, after
// cp_async_wait<1>, after cp_async_wait<0>.
struct CpAsyncTrace {
  std::vector<uint8_t> a[3], b[3];
};
CpAsyncTrace run_cp_async(const uint8_t* src_a, const uint8_t* src_b);

// Shared memory poison: per (block, thread), 1 if its words of a static __shared__ array and of
// the dynamic buffer were all 0xFF when the thread started (each thread then overwrites them).
std::vector<int> run_smem_poison(int blocks, int threads);

// The order blocks start in, and per block the order its threads start in.
struct StartOrder {
  std::vector<int> blocks;
  std::vector<std::vector<int>> threads;
};
StartOrder run_start_order(int blocks, int threads);

// One block of 64: each thread logs tid, waits in __syncwarp(), logs 1000 + tid; returns the log.
std::vector<int> run_event_log();

// Ping-pong turns through named barriers (attention_sm90a's schedule): one block of 256 threads in
// two groups of 128 take `steps` turns each, group c waiting on barrier 1 + c (256
// threads) and passing the turn by bar.arrive on the other's; each thread logs 2 * step + group at
// each turn. Returns the log (256 * steps entries).
std::vector<int> run_named_barrier_turns(int steps);

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

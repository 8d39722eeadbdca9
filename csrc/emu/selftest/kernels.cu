// Kernels of the emulator's self-test (selftest.cpp): deliberately buggy ones, whose launches the
// emulator must abort or refuse with the right message, and correct ones, whose results must match
// what the CUDA C++ Programming Guide / PTX ISA define. Compiled exactly like a real kernel source
// (-x c++ -include emu/device.h, csrc/emu/emulation.cmake), through the same macros and wrappers
// (common/kernel.h, common/ptx.h), so a check proven here is the check the real kernels get.
//
// Unlike real kernels, bodies that use sm_80 instructions carry no arch guard: on sm_75 the
// wrappers themselves must refuse them (Bug::k*OnOldArch), and that is under test too.
#include "emu/selftest/selftest.h"

#include "common/kernel.h"
#include "common/ptx.h"

namespace fastradio {
namespace emu {
namespace selftest {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// Blocks here are 1-D.
__device__ __forceinline__ unsigned lane_id() { return threadIdx.x % 32; }

// Thread 0 records that its block started: an aborted launch shows as a block that never did.
__device__ __forceinline__ void mark(int* run) {
  if (threadIdx.x == 0) run[blockIdx.x] = 1;
}

// Stand-in for atomicAdd (the emulator has none: no fastradio kernel needs one). Blocks are fibers
// with no happens-before between them, so a plain shared counter would be a TSan race.
__device__ __forceinline__ int fetch_add(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

// --- barriers ----------------------------------------------------------------------------------------

__global__ void syncthreads_divergent(int* run) {
  mark(run);
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();  // another call site: another barrier on a GPU
  }
}

// Forward thread order: threads 0..62 wait first, then 63 leaves.
__global__ void exit_while_barrier_waits(int* run) {
  mark(run);
  if (threadIdx.x == blockDim.x - 1) return;
  __syncthreads();
}

// Forward thread order: thread 0 has left when thread 1 reaches the barrier.
__global__ void syncthreads_after_exit(int* run) {
  mark(run);
  if (threadIdx.x == 0) return;
  __syncthreads();
}

__global__ void deadlock(int* run, uint32_t* sink) {
  mark(run);
  uint32_t v = threadIdx.x;
  if (threadIdx.x == 0) {
    v = __shfl_sync(kFull, v, 1);  // lanes 1..31 never come: they wait at the barrier
  } else {
    __syncthreads();
  }
  sink[threadIdx.x] = v;
}

// Named barriers, 64 threads = warps 0 and 1.
template <Bug kBug>
__global__ void named_barrier_bug(int* run) {
  mark(run);
  const unsigned warp = threadIdx.x / 32;
  if constexpr (kBug == Bug::kNamedBarrierUnbalanced) {
    if (warp == 0) {
      ptx::named_barrier_sync(1, 64);
    } else {
      ptx::named_barrier_arrive(1, 64);
      ptx::named_barrier_arrive(1, 64);  // a turn nobody takes
    }
  } else if constexpr (kBug == Bug::kNamedBarrierCount) {
    if (warp == 0) {
      ptx::named_barrier_sync(1, 64);
    } else {
      ptx::named_barrier_arrive(1, 32);
    }
  } else if constexpr (kBug == Bug::kNamedBarrierDeadlock) {
    ptx::named_barrier_sync(1 + warp, 64);
  } else if constexpr (kBug == Bug::kNamedBarrierBadCount) {
    ptx::named_barrier_sync(1, 48);
  } else {
    ptx::named_barrier_sync(0, 64);
  }
}

// Two groups of 128 threads take turns (the ping-pong of attention_sm90a): group c waits for its
// turn on barrier 1 + c and passes it with bar.arrive on the other group's barrier; group 1 gives
// group 0 the first turn and does not pass after its last one (every round completes).
__global__ void named_barrier_turns(int* count, int* log, int steps) {
  const int c = int(threadIdx.x) / 128;
  if (c == 1) ptx::named_barrier_arrive(1, 256);
  for (int k = 0; k < steps; ++k) {
    ptx::named_barrier_sync(1 + c, 256);
    log[fetch_add(count, 1)] = 2 * k + c;
    if (c == 0 || k + 1 < steps) ptx::named_barrier_arrive(2 - c, 256);
  }
}

// --- warp collectives -------------------------------------------------------------------------------

__global__ void shfl_partial_mask(int* run, uint32_t* sink) {
  mark(run);
  sink[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, uint32_t(threadIdx.x), 1);
}

__global__ void collective_divergent(int* run, uint32_t* sink) {
  mark(run);
  uint32_t v = threadIdx.x;
  if (lane_id() % 2 == 1) {
    v = __shfl_sync(kFull, v, 0);
  } else {
    v = __shfl_sync(kFull, v, 1);
  }
  sink[threadIdx.x] = v;
}

// Forward thread order: lanes 0..30 wait in the shuffle, then lane 31 leaves.
__global__ void exit_in_collective(int* run, uint32_t* sink) {
  mark(run);
  if (lane_id() == 31) return;
  sink[threadIdx.x] = __shfl_xor_sync(kFull, uint32_t(threadIdx.x), 1);
}

// A 16-thread block: the warp's active lanes are 0x0000ffff; lane 15 reads lane 16.
__global__ void shfl_inactive_lane(int* run, uint32_t* sink) {
  mark(run);
  sink[threadIdx.x] = __shfl_down_sync(0x0000ffffu, uint32_t(threadIdx.x), 1);
}

__global__ void shfl_bad_width(int* run, uint32_t* sink) {
  mark(run);
  sink[threadIdx.x] = __shfl_xor_sync(kFull, uint32_t(threadIdx.x), 1, 12);
}

// --- ldmatrix -----------------------------------------------------------------------------------------

template <Bug kBug>
__global__ void ldmatrix_bug(int* run, const uint4* global_rows, uint32_t* sink) {
  mark(run);
  FASTRADIO_SHARED(16, uint16_t, tile, [32 * 8 + 8]);  // 32 rows of 16 bytes (0xFF), and a spare
  const unsigned lane = lane_id();
  const void* row = tile + 8 * lane;
  if constexpr (kBug == Bug::kLdmatrixGlobal) row = global_rows + lane;
  if constexpr (kBug == Bug::kLdmatrixMisaligned) row = tile + 8 * lane + 4;
  uint32_t r[4];
  ptx::ldmatrix_x4(r, row);
  sink[threadIdx.x] = r[0] ^ r[1] ^ r[2] ^ r[3];
}

// --- cp.async -----------------------------------------------------------------------------------------

template <Bug kBug>
__global__ void cp_async_bug(int* run, const uint8_t* gsrc, uint8_t* gdst) {
  mark(run);
  FASTRADIO_SHARED(16, uint8_t, tile, [32 * 16 + 16]);
  const unsigned t = threadIdx.x;
  const uint8_t* src = gsrc + 16 * t;
  uint8_t* dst = tile + 16 * t;
  if constexpr (kBug == Bug::kCpAsyncMisalignedSrc) src += 8;
  if constexpr (kBug == Bug::kCpAsyncMisalignedDst) dst += 8;
  if constexpr (kBug == Bug::kCpAsyncGlobalDst) dst = gdst + 16 * t;
  ptx::cp_async_16(dst, src, true);
  ptx::cp_async_commit();
  if constexpr (kBug != Bug::kCpAsyncNeverWaited) ptx::cp_async_wait<0>();
}

// --- shared memory, traps, loads -------------------------------------------------------------------------

__global__ void static_smem_over_48k(int* run, float* sink) {
  mark(run);
  FASTRADIO_SHARED(16, float, first, [8 * 1024]);   // 32 KiB
  FASTRADIO_SHARED(16, float, second, [5 * 1024]);  // + 20 KiB: over the 48 KiB of static shared memory
  sink[threadIdx.x] = first[threadIdx.x] + second[threadIdx.x];
}

__global__ void dynamic_align_256(int* run, float* sink) {
  mark(run);
  FASTRADIO_DYNAMIC_SHARED(256, float, buf);
  sink[threadIdx.x] = buf[threadIdx.x];
}

__global__ void trap_in_thread_5(int* run) {
  mark(run);
  if (threadIdx.x == 5) __trap();
}

__global__ void ldg_misaligned(int* run, const uint8_t* bytes, uint32_t* sink) {
  mark(run);
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(bytes + 16 * threadIdx.x + 4));
  sink[threadIdx.x] = v.x ^ v.y ^ v.z ^ v.w;
}

// --- sm_80 instructions (must fault on sm_75) --------------------------------------------------------

template <Bug kBug>
__global__ void sm80_instruction(int* run, const uint4* gsrc, float* sink) {
  mark(run);
  FASTRADIO_SHARED(16, uint4, tile, [32]);
  const unsigned lane = lane_id();
  float out = 0.0f;
  if constexpr (kBug == Bug::kCpAsyncOnOldArch) {
    ptx::cp_async_16(&tile[lane], gsrc + lane, true);
  } else if constexpr (kBug == Bug::kCommitOnOldArch) {
    ptx::cp_async_commit();
  } else if constexpr (kBug == Bug::kWaitOnOldArch) {
    ptx::cp_async_wait<0>();
  } else if constexpr (kBug == Bug::kPackBf16OnOldArch) {
    out = float(ptx::pack_bf16x2(1.0f, 2.0f));
  } else {
    const uint32_t a[4] = {0u, 0u, 0u, 0u}, b[2] = {0u, 0u};
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (kBug == Bug::kMmaF16K16OnOldArch) ptx::mma_m16n8k16_f16(c, a, b);
    if constexpr (kBug == Bug::kMmaBf16K16OnOldArch) ptx::mma_m16n8k16_bf16(c, a, b);
    out = c[0];
  }
  sink[threadIdx.x] = out;
}

// --- correct kernels -------------------------------------------------------------------------------------

__global__ void config_probe(int* run) { mark(run); }

template <DynKernel kKernel>
__global__ void dynamic_fill(int* run, int* ok, size_t bytes) {
  mark(run);
  FASTRADIO_DYNAMIC_SHARED(16, uint8_t, buf);
  if constexpr (kKernel == DynKernel::kStaticPlusDynamic) {
    FASTRADIO_SHARED(16, uint8_t, extra, [1024]);  // 1 KiB on top of the dynamic buffer
    extra[threadIdx.x] = 0;
  }
  for (size_t i = threadIdx.x; i < bytes; i += blockDim.x) buf[i] = uint8_t(i * 7 + 3);
  __syncthreads();
  if (threadIdx.x == 0) {
    bool good = true;
    for (size_t i = 0; i < bytes; ++i) good = good && buf[i] == uint8_t(i * 7 + 3);
    ok[blockIdx.x] = good;
  }
}

// 2 blocks of 64: a barrier orders the shared-memory exchange, then an xor butterfly per warp.
__global__ void healthy(uint32_t* out) {
  FASTRADIO_SHARED(16, uint32_t, s, [64]);
  const unsigned t = threadIdx.x;
  s[t] = t + 100 * blockIdx.x;
  __syncthreads();
  uint32_t v = s[t ^ 1] + 1;
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  if (lane_id() == 0) out[2 * blockIdx.x + t / 32] = v;
}

template <class T>
__global__ void shfl_kernel(Shfl kind, const int* op, int width, const uint64_t* in, uint64_t* out) {
  const unsigned lane = lane_id();
  const T v = T(in[lane]);
  T r = v;
  switch (kind) {
    case Shfl::kIdx: r = __shfl_sync(kFull, v, op[lane], width); break;
    case Shfl::kUp: r = __shfl_up_sync(kFull, v, unsigned(op[lane]), width); break;
    case Shfl::kDown: r = __shfl_down_sync(kFull, v, unsigned(op[lane]), width); break;
    case Shfl::kXor: r = __shfl_xor_sync(kFull, v, op[lane], width); break;
  }
  out[lane] = uint64_t(r);
}

__global__ void ballot_kernel(const int* pred, uint32_t* out) {
  out[lane_id()] = __ballot_sync(kFull, pred[lane_id()]);
}

// Slot s of the tile is 32 bytes: a 16-byte row, then 16 bytes no lane addresses.
template <int kNum, bool kTrans>
__global__ void ldmatrix_kernel(const uint16_t* rows, const int* slot, uint32_t* out) {
  FASTRADIO_SHARED(16, uint16_t, tile, [32 * 16]);
  const unsigned lane = lane_id();
  for (int c = 0; c < 8; ++c) tile[16 * slot[lane] + c] = rows[8 * lane + c];
  __syncthreads();
  const void* row = lane < 8u * kNum ? tile + 16 * slot[lane] : nullptr;  // the other lanes' addresses are unused
  uint32_t r[4] = {0u, 0u, 0u, 0u};
  if constexpr (kNum == 1) {
    emu::ldmatrix<1, kTrans>(r, row, __FILE__, __LINE__);  // common/ptx.h has no .x1 wrapper
  } else if constexpr (kNum == 2) {
    uint32_t r2[2];
    if constexpr (kTrans) ptx::ldmatrix_x2_trans(r2, row);
    if constexpr (!kTrans) ptx::ldmatrix_x2(r2, row);
    r[0] = r2[0];
    r[1] = r2[1];
  } else {
    if constexpr (kTrans) ptx::ldmatrix_x4_trans(r, row);
    if constexpr (!kTrans) ptx::ldmatrix_x4(r, row);
  }
  for (int i = 0; i < 4; ++i) out[4 * lane + i] = r[i];
}

__global__ void mma_kernel(Mma kind, const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const unsigned l = lane_id();
  const uint32_t ra[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
  const uint32_t rb[2] = {b[2 * l], b[2 * l + 1]};
  float acc[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]};
  if (kind == Mma::kF16K16) {
    ptx::mma_m16n8k16_f16(acc, ra, rb);
  } else if (kind == Mma::kBf16K16) {
    ptx::mma_m16n8k16_bf16(acc, ra, rb);
  } else {
    const uint32_t ra2[2] = {ra[0], ra[1]};
    ptx::mma_m16n8k8_f16(acc, ra2, rb[0]);
  }
  for (int j = 0; j < 4; ++j) d[4 * l + j] = acc[j];
}

__global__ void pack_kernel(bool bf16, const float* in, uint32_t* out, int pairs) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  out[i] = bf16 ? ptx::pack_bf16x2(in[2 * i], in[2 * i + 1]) : ptx::pack_f16x2(in[2 * i], in[2 * i + 1]);
}

// snap: [3 moments][2 buffers][32 threads][16 bytes].
__global__ void cp_async_kernel(const uint8_t* src_a, const uint8_t* src_b, uint8_t* snap) {
  FASTRADIO_SHARED(16, uint8_t, a, [32 * 16]);
  FASTRADIO_SHARED(16, uint8_t, b, [32 * 16]);
  const unsigned t = threadIdx.x;
  uint8_t* da = a + 16 * t;
  uint8_t* db = b + 16 * t;
  for (int i = 0; i < 16; ++i) db[i] = 0x5a;  // what the copy (data or zeros) must replace
  ptx::cp_async_16(da, src_a + 16 * t, true);
  ptx::cp_async_commit();
  ptx::cp_async_16(db, src_b != nullptr ? src_b + 16 * t : nullptr, src_b != nullptr);
  ptx::cp_async_commit();
  auto keep = [&](int moment) {
    for (int i = 0; i < 16; ++i) {
      snap[((moment * 2 + 0) * 32 + t) * 16 + i] = da[i];
      snap[((moment * 2 + 1) * 32 + t) * 16 + i] = db[i];
    }
  };
  keep(0);
  ptx::cp_async_wait<1>();
  keep(1);
  ptx::cp_async_wait<0>();
  keep(2);
}

// Each thread checks its own words, then overwrites them: a buffer handed to the next block
// without a fresh fill would show the zeros.
__global__ void smem_poison(int* ok) {
  FASTRADIO_SHARED(16, uint32_t, st, [64]);
  FASTRADIO_DYNAMIC_SHARED(16, uint32_t, dyn);  // 4 words per thread
  const unsigned t = threadIdx.x;
  bool all = st[t] == 0xffffffffu;
  for (int k = 0; k < 4; ++k) all = all && dyn[4 * t + k] == 0xffffffffu;
  ok[blockIdx.x * blockDim.x + t] = all;
  st[t] = 0;
  for (int k = 0; k < 4; ++k) dyn[4 * t + k] = 0;
}

__global__ void start_order(int* block_count, int* block_order, int* thread_count, int* thread_order) {
  const int slot = fetch_add(&thread_count[blockIdx.x], 1);
  thread_order[blockIdx.x * blockDim.x + slot] = int(threadIdx.x);
  if (slot == 0) block_order[fetch_add(block_count, 1)] = int(blockIdx.x);
}

__global__ void event_log(int* count, int* log) {
  log[fetch_add(count, 1)] = int(threadIdx.x);
  __syncwarp();
  log[fetch_add(count, 1)] = 1000 + int(threadIdx.x);
}

}  // namespace

// --- launchers ------------------------------------------------------------------------------------------

void launch_bug(Bug bug, int* run) {
  // Global buffers the buggy kernels read or write (16-byte aligned, 64 threads' worth).
  static uint4 global_a[64 + 2], global_b[64 + 2];
  static uint32_t sink[64];
  static float fsink[64];
  uint8_t* ga = reinterpret_cast<uint8_t*>(global_a);
  uint8_t* gb = reinterpret_cast<uint8_t*>(global_b);
  cudaStream_t s = nullptr;
  switch (bug) {
    case Bug::kSyncthreadsDivergent: FASTRADIO_LAUNCH(2, 64, 0, s, syncthreads_divergent)(run); break;
    case Bug::kExitWhileBarrierWaits: FASTRADIO_LAUNCH(2, 64, 0, s, exit_while_barrier_waits)(run); break;
    case Bug::kSyncthreadsAfterExit: FASTRADIO_LAUNCH(2, 64, 0, s, syncthreads_after_exit)(run); break;
    case Bug::kDeadlock: FASTRADIO_LAUNCH(2, 64, 0, s, deadlock)(run, sink); break;
    case Bug::kShflPartialMask: FASTRADIO_LAUNCH(2, 32, 0, s, shfl_partial_mask)(run, sink); break;
    case Bug::kCollectiveDivergent: FASTRADIO_LAUNCH(2, 32, 0, s, collective_divergent)(run, sink); break;
    case Bug::kExitInCollective: FASTRADIO_LAUNCH(2, 32, 0, s, exit_in_collective)(run, sink); break;
    case Bug::kShflInactiveLane: FASTRADIO_LAUNCH(2, 16, 0, s, shfl_inactive_lane)(run, sink); break;
    case Bug::kShflBadWidth: FASTRADIO_LAUNCH(2, 32, 0, s, shfl_bad_width)(run, sink); break;
    case Bug::kLdmatrixPartialWarp:
      FASTRADIO_LAUNCH(2, 16, 0, s, ldmatrix_bug<Bug::kLdmatrixPartialWarp>)(run, global_a, sink);
      break;
    case Bug::kLdmatrixGlobal:
      FASTRADIO_LAUNCH(2, 32, 0, s, ldmatrix_bug<Bug::kLdmatrixGlobal>)(run, global_a, sink);
      break;
    case Bug::kLdmatrixMisaligned:
      FASTRADIO_LAUNCH(2, 32, 0, s, ldmatrix_bug<Bug::kLdmatrixMisaligned>)(run, global_a, sink);
      break;
    case Bug::kCpAsyncMisalignedSrc:
      FASTRADIO_LAUNCH(2, 32, 0, s, cp_async_bug<Bug::kCpAsyncMisalignedSrc>)(run, ga, gb);
      break;
    case Bug::kCpAsyncMisalignedDst:
      FASTRADIO_LAUNCH(2, 32, 0, s, cp_async_bug<Bug::kCpAsyncMisalignedDst>)(run, ga, gb);
      break;
    case Bug::kCpAsyncGlobalDst: FASTRADIO_LAUNCH(2, 32, 0, s, cp_async_bug<Bug::kCpAsyncGlobalDst>)(run, ga, gb); break;
    case Bug::kCpAsyncNeverWaited:
      FASTRADIO_LAUNCH(2, 32, 0, s, cp_async_bug<Bug::kCpAsyncNeverWaited>)(run, ga, gb);
      break;
    case Bug::kStaticSmemOver48K: FASTRADIO_LAUNCH(2, 32, 0, s, static_smem_over_48k)(run, fsink); break;
    case Bug::kDynamicAlignOver128: FASTRADIO_LAUNCH(2, 32, 1024, s, dynamic_align_256)(run, fsink); break;
    case Bug::kTrap: FASTRADIO_LAUNCH(2, 32, 0, s, trap_in_thread_5)(run); break;
    case Bug::kLdgMisaligned: FASTRADIO_LAUNCH(2, 32, 0, s, ldg_misaligned)(run, ga, sink); break;
    case Bug::kNamedBarrierUnbalanced:
      FASTRADIO_LAUNCH(2, 64, 0, s, named_barrier_bug<Bug::kNamedBarrierUnbalanced>)(run);
      break;
    case Bug::kNamedBarrierCount: FASTRADIO_LAUNCH(2, 64, 0, s, named_barrier_bug<Bug::kNamedBarrierCount>)(run); break;
    case Bug::kNamedBarrierDeadlock:
      FASTRADIO_LAUNCH(2, 64, 0, s, named_barrier_bug<Bug::kNamedBarrierDeadlock>)(run);
      break;
    case Bug::kNamedBarrierBadCount:
      FASTRADIO_LAUNCH(2, 64, 0, s, named_barrier_bug<Bug::kNamedBarrierBadCount>)(run);
      break;
    case Bug::kNamedBarrierZero: FASTRADIO_LAUNCH(2, 64, 0, s, named_barrier_bug<Bug::kNamedBarrierZero>)(run); break;
    case Bug::kCpAsyncOnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kCpAsyncOnOldArch>)(run, global_a, fsink);
      break;
    case Bug::kCommitOnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kCommitOnOldArch>)(run, global_a, fsink);
      break;
    case Bug::kWaitOnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kWaitOnOldArch>)(run, global_a, fsink);
      break;
    case Bug::kMmaF16K16OnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kMmaF16K16OnOldArch>)(run, global_a, fsink);
      break;
    case Bug::kMmaBf16K16OnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kMmaBf16K16OnOldArch>)(run, global_a, fsink);
      break;
    case Bug::kPackBf16OnOldArch:
      FASTRADIO_LAUNCH(2, 32, 0, s, sm80_instruction<Bug::kPackBf16OnOldArch>)(run, global_a, fsink);
      break;
  }
}

void launch_config(dim3 grid, dim3 block, int* run) { FASTRADIO_LAUNCH(grid, block, 0, nullptr, config_probe)(run); }

cudaError_t set_dynamic_limit(DynKernel k, int bytes) {
  constexpr cudaFuncAttribute kAttr = cudaFuncAttributeMaxDynamicSharedMemorySize;
  switch (k) {
    case DynKernel::kNoAttr: return cudaFuncSetAttribute(dynamic_fill<DynKernel::kNoAttr>, kAttr, bytes);
    case DynKernel::kWithAttr: return cudaFuncSetAttribute(dynamic_fill<DynKernel::kWithAttr>, kAttr, bytes);
    case DynKernel::kOverOptin: return cudaFuncSetAttribute(dynamic_fill<DynKernel::kOverOptin>, kAttr, bytes);
    case DynKernel::kStaticPlusDynamic:
      return cudaFuncSetAttribute(dynamic_fill<DynKernel::kStaticPlusDynamic>, kAttr, bytes);
  }
  return cudaErrorInvalidValue;
}

void launch_dynamic(DynKernel k, size_t bytes, int* run, int* ok) {
  switch (k) {
    case DynKernel::kNoAttr: FASTRADIO_LAUNCH(2, 64, bytes, nullptr, dynamic_fill<DynKernel::kNoAttr>)(run, ok, bytes); break;
    case DynKernel::kWithAttr:
      FASTRADIO_LAUNCH(2, 64, bytes, nullptr, dynamic_fill<DynKernel::kWithAttr>)(run, ok, bytes);
      break;
    case DynKernel::kOverOptin:
      FASTRADIO_LAUNCH(2, 64, bytes, nullptr, dynamic_fill<DynKernel::kOverOptin>)(run, ok, bytes);
      break;
    case DynKernel::kStaticPlusDynamic:
      FASTRADIO_LAUNCH(2, 64, bytes, nullptr, dynamic_fill<DynKernel::kStaticPlusDynamic>)(run, ok, bytes);
      break;
  }
}

std::vector<uint32_t> run_healthy() {
  std::vector<uint32_t> out(4, 0u);
  FASTRADIO_LAUNCH(2, 64, 0, nullptr, healthy)(out.data());
  return out;
}

std::vector<uint32_t> healthy_expected() {
  std::vector<uint32_t> e(4, 0u);
  for (unsigned b = 0; b < 2; ++b)
    for (unsigned t = 0; t < 64; ++t) e[2 * b + t / 32] += t + 100 * b + 1;  // t ^ 1 permutes each warp
  return e;
}

std::vector<uint64_t> run_shfl(Shfl kind, const std::vector<int>& op, int width, const std::vector<uint64_t>& in,
                               bool wide) {
  std::vector<uint64_t> out(32, 0);
  if (wide) {
    FASTRADIO_LAUNCH(1, 32, 0, nullptr, shfl_kernel<uint64_t>)(kind, op.data(), width, in.data(), out.data());
  } else {
    FASTRADIO_LAUNCH(1, 32, 0, nullptr, shfl_kernel<uint32_t>)(kind, op.data(), width, in.data(), out.data());
  }
  return out;
}

std::vector<uint32_t> run_ballot(const std::vector<int>& pred) {
  std::vector<uint32_t> out(32, 0u);
  FASTRADIO_LAUNCH(1, 32, 0, nullptr, ballot_kernel)(pred.data(), out.data());
  return out;
}

std::vector<uint32_t> run_ldmatrix(int num, bool trans, const std::vector<uint16_t>& rows,
                                   const std::vector<int>& slot) {
  std::vector<uint32_t> out(128, 0u);
  const uint16_t* r = rows.data();
  const int* s = slot.data();
  uint32_t* o = out.data();
  if (num == 1 && !trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<1, false>)(r, s, o);
  if (num == 1 && trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<1, true>)(r, s, o);
  if (num == 2 && !trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<2, false>)(r, s, o);
  if (num == 2 && trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<2, true>)(r, s, o);
  if (num == 4 && !trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<4, false>)(r, s, o);
  if (num == 4 && trans) FASTRADIO_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<4, true>)(r, s, o);
  return out;
}

std::vector<float> run_mma(Mma kind, const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
                           const std::vector<float>& c) {
  std::vector<float> d(128, 0.0f);
  FASTRADIO_LAUNCH(1, 32, 0, nullptr, mma_kernel)(kind, a.data(), b.data(), c.data(), d.data());
  return d;
}

std::vector<uint32_t> run_pack(bool bf16, const std::vector<float>& in) {
  const int pairs = int(in.size() / 2);
  std::vector<uint32_t> out(size_t(pairs), 0u);
  FASTRADIO_LAUNCH(dim3(unsigned((pairs + 63) / 64)), 64, 0, nullptr, pack_kernel)(bf16, in.data(), out.data(), pairs);
  return out;
}

CpAsyncTrace run_cp_async(const uint8_t* src_a, const uint8_t* src_b) {
  std::vector<uint8_t> snap(3 * 2 * 32 * 16, 0u);
  FASTRADIO_LAUNCH(1, 32, 0, nullptr, cp_async_kernel)(src_a, src_b, snap.data());
  CpAsyncTrace t;
  for (int m = 0; m < 3; ++m) {
    t.a[m].assign(snap.begin() + (m * 2 + 0) * 512, snap.begin() + (m * 2 + 1) * 512);
    t.b[m].assign(snap.begin() + (m * 2 + 1) * 512, snap.begin() + (m * 2 + 2) * 512);
  }
  return t;
}

std::vector<int> run_smem_poison(int blocks, int threads) {
  std::vector<int> ok(size_t(blocks * threads), 0);
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(unsigned(threads)), size_t(threads) * 16, nullptr, smem_poison)(ok.data());
  return ok;
}

StartOrder run_start_order(int blocks, int threads) {
  int block_count = 0;
  std::vector<int> block_order(size_t(blocks), -1), thread_count(size_t(blocks), 0),
      thread_order(size_t(blocks * threads), -1);
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(unsigned(threads)), 0, nullptr, start_order)(
      &block_count, block_order.data(), thread_count.data(), thread_order.data());
  StartOrder o;
  o.blocks = block_order;
  for (int b = 0; b < blocks; ++b)
    o.threads.emplace_back(thread_order.begin() + b * threads, thread_order.begin() + (b + 1) * threads);
  return o;
}

std::vector<int> run_event_log() {
  int count = 0;
  std::vector<int> log(128, -1);
  FASTRADIO_LAUNCH(1, 64, 0, nullptr, event_log)(&count, log.data());
  return log;
}

std::vector<int> run_named_barrier_turns(int steps) {
  int count = 0;
  std::vector<int> log(size_t(256 * steps), -1);
  FASTRADIO_LAUNCH(1, 256, 0, nullptr, named_barrier_turns)(&count, log.data(), steps);
  return log;
}

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

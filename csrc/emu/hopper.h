// common/hopper.h's wrappers on the emulated device (sm_90a: mbarrier, TMA tensor copies, wgmma,
// stmatrix, elect.sync, setmaxnreg), written from the PTX ISA, not from the real wrappers. The
// state machines live in emu/hopper.cpp; DESIGN.md "The emulated device" / "Hopper" has the model:
//
//   mbarrier      a table per block keyed by shared address: expected count, pending arrivals, tx
//                 count, phase. mbarrier_wait sleeps (a rendezvous the deadlock check sees) until the
//                 phase of the other parity has completed. try_wait is the same sleep (it may return
//                 true late; never false), so that spin loops cannot hang the cooperative scheduler.
//   TMA load      at issue the thread reads the box from global memory (its own reads: a bad
//                 address faults there), writes 0xFF over the destination, and hangs the bytes on
//                 the mbarrier; they land (and complete_tx) only when a thread waits on the phase
//                 after every arrival. A read before the wait sees NaN; a block that ends with
//                 copies nobody waited for is an error.
//   wgmma         a warpgroup rendezvous (all 128 threads, same line). Operands are read at issue
//                 (B K-major, or MN-major with the transpose-B flag, swizzled layouts);
//                 each thread's accumulators are overwritten with a signalling NaN until the
//                 wgmma.wait_group that retires their group writes the result; if the thread has
//                 changed them meanwhile (a write, or arithmetic, which quiets the NaN) that
//                 wait_group faults. Chained wgmmas on the same
//                 accumulators see the pending value (as the hardware orders them). mma_async
//                 without a wgmma.fence since the thread's last wait_group is an error. The
//                 shared-memory operands stay held until the first wait_group of the warpgroup
//                 that retires the instruction: a TMA load into them (at its issue, or landing
//                 there) or stmatrix is an error where it writes, any other change (ordinary
//                 stores) at that wait_group.
//   setmaxnreg    checks the count (24..256, multiple of 8) and that all four warps agree.
//   async proxy   wgmma and TMA stores read a per-block copy of shared memory that ordinary stores
//                 reach only through fence.proxy.async (TMA loads land in both): a missing fence
//                 reads stale bytes (0xFF at first).
#pragma once

#include <cuda.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/arch.h"
#include "emu/device.h"
#include "emu/ptx.h"

namespace fastradio {
namespace emu {

void mbar_init(void* bar, unsigned count, const char* file, int line);
uint64_t mbar_arrive(void* bar, uint32_t tx_bytes, const char* file, int line);
void mbar_wait(void* bar, uint32_t parity, const char* file, int line);
// rank 2 or 3; coords[rank]
void tma_load(void* smem, const CUtensorMap* map, int rank, const int* coords, void* bar, const char* file, int line);
void tma_store(const CUtensorMap* map, int rank, const int* coords, const void* smem, const char* file, int line);
void setmaxnreg(int count, bool inc, const char* file, int line);
// A write of [p, p + bytes) into shared memory by `what` (stmatrix): an error if a wgmma in flight reads it.
void shared_write_check(const void* p, size_t bytes, const char* what, const char* file, int line);
void proxy_fence();
uint32_t shared_address_of(const void* p, const char* file, int line);

struct WgmmaCall {
  int regs;          // accumulator registers per thread (N / 2)
  bool bf16;
  bool a_in_regs;    // RS form
  uint64_t desc_a, desc_b;
  uint32_t a[4];     // RS: this thread's A fragment
  bool accumulate;   // scale-d: D = A*B + D (else D = A*B)
  float* d;          // this thread's accumulators
  bool trans_b = false;  // imm-trans-b: B is MN-major in shared memory
};
// What a wgmma's accumulator registers hold between its issue and the wait_group that retires it: a
// signalling NaN, so that a read is NaN and any arithmetic on it (which quiets it) or write is seen
// at the wait_group (hopper.cpp wgmma_wait).
inline constexpr uint32_t kAccumulatorPoison = 0x7fb00d0du;
void wgmma_fence(const char* file, int line);
void wgmma_issue(WgmmaCall* call, const char* file, int line);
void wgmma_commit(const char* file, int line);
void wgmma_wait(int pending, const char* file, int line);

}  // namespace emu

namespace ptx {

// The emulated twin of common/ptx.h's smem_addr (the window address of a shared-memory pointer).
inline uint32_t smem_addr(const void* p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return emu::shared_address_of(p, file, line);
}

// --- mbarrier ----------------------------------------------------------------------------------------
inline void mbarrier_init(uint64_t* bar, unsigned count, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
  emu::require_arch<900>("mbarrier.init", file, line);
  emu::mbar_init(bar, count, file, line);
}
inline void fence_mbarrier_init(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("fence.mbarrier_init", file, line);
}
inline uint64_t mbarrier_arrive(uint64_t* bar, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("mbarrier.arrive", file, line);
  return emu::mbar_arrive(bar, 0, file, line);
}
inline uint64_t mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes, const char* file = __builtin_FILE(),
                                          int line = __builtin_LINE()) {
  emu::require_arch<900>("mbarrier.arrive.expect_tx", file, line);
  return emu::mbar_arrive(bar, bytes, file, line);
}
inline void mbarrier_wait(uint64_t* bar, uint32_t parity, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
  emu::require_arch<900>("mbarrier.try_wait.parity", file, line);
  emu::mbar_wait(bar, parity, file, line);
}
inline bool mbarrier_try_wait(uint64_t* bar, uint32_t parity, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  mbarrier_wait(bar, parity, file, line);
  return true;
}

// --- proxies, election, registers -------------------------------------------------------------------------
inline void fence_proxy_async(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("fence.proxy.async", file, line);
  emu::proxy_fence();
}
inline bool elect_one_sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("elect.sync", file, line);
  const unsigned members = __ballot_sync(0xffffffffu, 1, file, line);  // the warp's rendezvous
  return emu::g_current->lane == unsigned(__builtin_ctz(members));
}
template <int kCount>
inline void setmaxnreg_inc(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("setmaxnreg", file, line);
  emu::setmaxnreg(kCount, true, file, line);
}
template <int kCount>
inline void setmaxnreg_dec(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("setmaxnreg", file, line);
  emu::setmaxnreg(kCount, false, file, line);
}

// --- TMA ---------------------------------------------------------------------------------------------------
inline void tma_load_2d(void* smem, const CUtensorMap* map, int c0, int c1, uint64_t* bar,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("cp.async.bulk.tensor.2d", file, line);
  const int c[2] = {c0, c1};
  emu::tma_load(smem, map, 2, c, bar, file, line);
}
inline void tma_load_3d(void* smem, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("cp.async.bulk.tensor.3d", file, line);
  const int c[3] = {c0, c1, c2};
  emu::tma_load(smem, map, 3, c, bar, file, line);
}
// shared -> global: done at issue (the emulator keeps no bulk group for stores; commit/wait check
// the arch only). The box's out-of-bounds part is not written.
inline void tma_store_2d(const CUtensorMap* map, int c0, int c1, const void* smem, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
  emu::require_arch<900>("cp.async.bulk.tensor.2d.global.shared", file, line);
  const int c[2] = {c0, c1};
  emu::tma_store(map, 2, c, smem, file, line);
}
inline void bulk_commit_group(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("cp.async.bulk.commit_group", file, line);
}
template <int N>
inline void bulk_wait_group_read(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("cp.async.bulk.wait_group.read", file, line);
}

// --- wgmma --------------------------------------------------------------------------------------------------
inline void wgmma_fence(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("wgmma.fence", file, line);
  emu::wgmma_fence(file, line);
}
inline void wgmma_commit_group(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<900>("wgmma.commit_group", file, line);
  emu::wgmma_commit(file, line);
}
template <int N>
inline void wgmma_wait_group(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
  emu::require_arch<900>("wgmma.wait_group", file, line);
  emu::wgmma_wait(N, file, line);
}

namespace detail {
template <int R>
inline void wgmma(float (&d)[R], bool bf16, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool accumulate,
                  bool trans_b, const char* file, int line) {
  static_assert(R >= 4 && R <= 128 && R % 4 == 0, "wgmma m64nNk16: N = 2 * registers must be a multiple of 8 in 8..256");
  emu::require_arch<900>("wgmma.mma_async", file, line);
  emu::WgmmaCall call{R, bf16, a != nullptr, desc_a, desc_b, {0, 0, 0, 0}, accumulate, d, trans_b};
  if (a != nullptr)
    for (int i = 0; i < 4; ++i) call.a[i] = a[i];
  emu::wgmma_issue(&call, file, line);
  for (int i = 0; i < R; ++i) std::memcpy(&d[i], &emu::kAccumulatorPoison, 4);  // until wait_group
}
}  // namespace detail

template <int R, bool kTransB = false>
inline void wgmma_ss_f16(float (&d)[R], uint64_t desc_a, uint64_t desc_b, bool accumulate,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::wgmma(d, false, nullptr, desc_a, desc_b, accumulate, kTransB, file, line);
}
template <int R, bool kTransB = false>
inline void wgmma_ss_bf16(float (&d)[R], uint64_t desc_a, uint64_t desc_b, bool accumulate,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::wgmma(d, true, nullptr, desc_a, desc_b, accumulate, kTransB, file, line);
}
template <int R, bool kTransB = false>
inline void wgmma_rs_f16(float (&d)[R], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::wgmma(d, false, a, 0, desc_b, accumulate, kTransB, file, line);
}
template <int R, bool kTransB = false>
inline void wgmma_rs_bf16(float (&d)[R], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::wgmma(d, true, a, 0, desc_b, accumulate, kTransB, file, line);
}

// --- stmatrix ------------------------------------------------------------------------------------------------
namespace detail {
template <int kNum, bool kTrans>
inline void stmatrix(void* row, const uint32_t* r, const char* file, int line) {
  emu::require_arch<900>("stmatrix", file, line);
  uint32_t regs[4] = {0u, 0u, 0u, 0u};
  for (int i = 0; i < kNum; ++i) regs[i] = r[i];
  uint32_t mine[4];  // the 16-byte row this lane stores
  emu::warp_collective(emu::CollectiveArgs{emu::Collective::kStmatrix, 0xffffffffu, kNum, kTrans ? 1 : 0}, regs,
                       sizeof(regs), mine, sizeof(mine), file, line);
  if (emu::g_current->lane < 8u * kNum) {
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0 || !emu::is_shared(row, 16))
      emu::fault(file, line, "stmatrix row address %p is not a 16-byte aligned row of shared memory", row);
    emu::shared_write_check(row, 16, "stmatrix", file, line);
    for (int k = 0; k < 4; ++k) std::memcpy(static_cast<char*>(row) + 4 * k, &mine[k], 4);
  }
}
}  // namespace detail
inline void stmatrix_x1(void* row, const uint32_t (&r)[1], const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::stmatrix<1, false>(row, r, file, line);
}
inline void stmatrix_x2(void* row, const uint32_t (&r)[2], const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::stmatrix<2, false>(row, r, file, line);
}
inline void stmatrix_x4(void* row, const uint32_t (&r)[4], const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::stmatrix<4, false>(row, r, file, line);
}
inline void stmatrix_x1_trans(void* row, const uint32_t (&r)[1], const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  detail::stmatrix<1, true>(row, r, file, line);
}
inline void stmatrix_x2_trans(void* row, const uint32_t (&r)[2], const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  detail::stmatrix<2, true>(row, r, file, line);
}
inline void stmatrix_x4_trans(void* row, const uint32_t (&r)[4], const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  detail::stmatrix<4, true>(row, r, file, line);
}

}  // namespace ptx
}  // namespace fastradio

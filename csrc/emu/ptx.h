// common/ptx.h's wrappers on the emulated device, written from the PTX ISA ("Warp-level matrix
// instructions": ldmatrix, mma.sync; "Data movement": cp.async; "cvt"), not from the host twins,
// so that the two check each other. Included by common/ptx.h under FASTRADIO_EMULATION.
//
//   cp.async      deferred: at issue the thread reads its 16 source bytes (a bad global read is
//                 reported at the call) and fills the destination with 0xFF (stores the sanitizers
//                 see; fp16/bf16 0xFFFF and fp32 0xFFFFFFFF are NaN); the data lands only in the
//                 cp.async.wait_group that must complete its group. Both addresses must be 16-byte
//                 aligned and the destination in shared memory; pred false zero-fills.
//   ldmatrix      a warp rendezvous: each lane that supplies an address (.x1: lanes 0-7, .x2: 0-15,
//                 .x4: all) reads its own 16-byte row of shared memory (16-byte aligned), then the
//                 runtime hands each lane its fragment (runtime.cpp, warp collectives).
//   mma.sync      a warp rendezvous: fragments in, fp32 accumulators out (the products are exact,
//                 the sum is taken in double and rounded once: not the tensor cores' bit pattern).
//   cvt packs     round to nearest even, written independently of common/convert.h.
//   bar.sync / bar.arrive with an id and a count (named barriers): runtime.cpp's NamedBarrier.
// Each wrapper checks that the emulated arch has the instruction, as the real ones' arch guards do.
#pragma once

#include <cstdint>

#include "emu/device.h"

namespace fastradio {
namespace emu {

// fp32 -> fp16 / bf16 bits, round to nearest even, by arithmetic rather than bit tricks.
uint16_t cvt_rn_f16(float x);
uint16_t cvt_rn_bf16(float x);

template <int kArch>
inline void require_arch(const char* what, const char* file, int line) {
  if constexpr (FASTRADIO_DEVICE_ARCH < kArch)
    fault(file, line, "%s needs sm_%d; the emulated arch is sm_%d", what, kArch / 10, FASTRADIO_EMU_ARCH);
}

template <int kNum, bool kTrans>
inline void ldmatrix(uint32_t* r, const void* row, const char* file, int line) {
  require_arch<750>("ldmatrix", file, line);
  uint32_t data[4] = {0u, 0u, 0u, 0u};
  if (g_current->lane < 8u * kNum) {  // the lanes whose addresses the instruction uses
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0 || !is_shared(row, 16))
      fault(file, line, "ldmatrix row address %p is not a 16-byte aligned row of shared memory", row);
    for (int k = 0; k < 4; ++k) data[k] = load_u32(static_cast<const char*>(row) + 4 * k);
  }
  warp_collective(CollectiveArgs{Collective::kLdmatrix, 0xffffffffu, kNum, kTrans ? 1 : 0}, data, sizeof(data), r,
                  kNum * sizeof(uint32_t), file, line);
}

template <Collective kKind, int kA, int kB>
inline void mma(float (&c)[4], const uint32_t* a, const uint32_t* b, const char* file, int line) {
  require_arch<kKind == Collective::kMmaF16K8 ? 750 : 800>("mma.sync", file, line);
  uint32_t in[kA + kB + 4];
  for (int i = 0; i < kA; ++i) in[i] = a[i];
  for (int i = 0; i < kB; ++i) in[kA + i] = b[i];
  std::memcpy(in + kA + kB, c, sizeof(c));
  warp_collective(CollectiveArgs{kKind, 0xffffffffu}, in, sizeof(in), c, sizeof(c), file, line);
}

}  // namespace emu

namespace ptx {

// --- named barriers (every arch) ----------------------------------------------------------------------
inline void named_barrier_sync(uint32_t id, uint32_t count, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
  emu::named_barrier(id, count, true, file, line);
}
inline void named_barrier_arrive(uint32_t id, uint32_t count, const char* file = __builtin_FILE(),
                                 int line = __builtin_LINE()) {
  emu::named_barrier(id, count, false, file, line);
}

// --- cp.async (sm_80) -------------------------------------------------------------------------------
inline void cp_async_16(void* smem, const void* gmem, bool pred, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  emu::require_arch<800>("cp.async", file, line);
  if (reinterpret_cast<uintptr_t>(smem) % 16 != 0 || !emu::is_shared(smem, 16))
    emu::fault(file, line, "cp.async destination %p is not 16 bytes of shared memory, 16-byte aligned", smem);
  uint64_t lo = 0, hi = 0;
  if (pred) {
    if (reinterpret_cast<uintptr_t>(gmem) % 16 != 0)
      emu::fault(file, line, "cp.async source %p is not 16-byte aligned", gmem);
    lo = emu::load_u64(gmem);
    hi = emu::load_u64(static_cast<const char*>(gmem) + 8);
  }
  emu::store_u64(smem, ~uint64_t(0));  // two 8-byte stores: TSan sees them (a 16-byte memset it may not)
  emu::store_u64(static_cast<char*>(smem) + 8, ~uint64_t(0));
  emu::cp_async_issue(smem, lo, hi);
}

inline void cp_async_commit(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<800>("cp.async.commit_group", file, line);
  emu::cp_async_commit();
}

template <int N>
inline void cp_async_wait(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(N >= 0, "cp.async.wait_group takes a count >= 0");
  emu::require_arch<800>("cp.async.wait_group", file, line);
  emu::CpAsyncCopy c;
  while (emu::cp_async_next_landing(N, &c)) {  // the thread's own stores, as seen by the sanitizers
    emu::store_u64(c.dst, c.lo);
    emu::store_u64(static_cast<char*>(c.dst) + 8, c.hi);
  }
}

// --- ldmatrix (sm_75) -------------------------------------------------------------------------------
inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  emu::ldmatrix<4, false>(r, smem_row, file, line);
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  emu::ldmatrix<2, false>(r, smem_row, file, line);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  emu::ldmatrix<4, true>(r, smem_row, file, line);
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  emu::ldmatrix<2, true>(r, smem_row, file, line);
}

// --- mma.sync ---------------------------------------------------------------------------------------
inline void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::mma<emu::Collective::kMmaF16K16, 4, 2>(c, a, b, file, line);
}
inline void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::mma<emu::Collective::kMmaBf16K16, 4, 2>(c, a, b, file, line);
}
inline void mma_m16n8k8_f16(float (&c)[4], const uint32_t (&a)[2], uint32_t b, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
  emu::mma<emu::Collective::kMmaF16K8, 2, 1>(c, a, &b, file, line);
}

// --- cvt --------------------------------------------------------------------------------------------
inline uint32_t pack_f16x2(float lo, float hi) {
  return uint32_t(emu::cvt_rn_f16(lo)) | (uint32_t(emu::cvt_rn_f16(hi)) << 16);
}
inline uint32_t pack_bf16x2(float lo, float hi, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::require_arch<800>("cvt.rn.bf16x2.f32", file, line);
  return uint32_t(emu::cvt_rn_bf16(lo)) | (uint32_t(emu::cvt_rn_bf16(hi)) << 16);
}

}  // namespace ptx
}  // namespace fastradio

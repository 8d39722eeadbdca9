// Thin wrappers over the PTX instructions the tensor-core tiers use (PTX ISA 9.7 "Warp-level
// matrix instructions" and "Data movement"): cp.async (sm_80), ldmatrix (sm_75) and mma.sync
// (m16n8k8 f16: sm_75; m16n8k16 f16/bf16: sm_80). One place for the asm strings, shared by every
// op; a kernel body that calls one of them must itself sit under the matching arch guard
// (common/arch.h), because the instruction does not exist below it.
//
// Fragment layouts (per lane, "group" g = lane / 4, "thread in group" t = lane % 4):
//   A (16x16, row-major): a[0] = A[g][2t..2t+1],   a[1] = A[g+8][2t..2t+1],
//                         a[2] = A[g][2t+8..+9],   a[3] = A[g+8][2t+8..+9]
//   B (16x8, "col"):      b[0] = B[2t..2t+1][g],   b[1] = B[2t+8..+9][g]
//   C/D (16x8, fp32):     c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
// m16n8k8 f16 uses the first two A registers and the first B register of the same picture.
#pragma once

#include <cstdint>

#include "common/arch.h"

#if defined(FASTRADIO_EMU_DEVICE_H)
// A kernel source compiled for the emulated device (csrc/emu/): the same wrappers, written from
// the PTX ISA, not from the host twins, so that the two check each other.
#include "emu/ptx.h"
#endif

namespace fastradio {
namespace ptx {

#if defined(__CUDACC__)

// Shared-memory address of a generic pointer into shared memory (what ldmatrix/cp.async take).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// --- cp.async (sm_80) -------------------------------------------------------------------------
// 16-byte global -> shared copy that bypasses L1 (.cg). With `pred` false nothing is read and the
// 16 destination bytes are zero-filled (src-size 0), so out-of-range tiles need no branch.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool pred) {
#if FASTRADIO_DEVICE_ARCH >= 800
  const int src_size = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_size)
               : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if FASTRADIO_DEVICE_ARCH >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// Wait until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if FASTRADIO_DEVICE_ARCH >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// --- named barriers (every arch) ---------------------------------------------------------------
// bar.sync id, count: wait until `count` threads (a multiple of 32; whole warps) have arrived at
// barrier `id` (1..15; 0 is __syncthreads'). bar.arrive: arrive without waiting (a producer's
// hand-off, e.g. the turn of attention_sm90a's ping-pong). Arrivals order prior memory accesses
// before the waiters' later ones.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// --- ldmatrix (sm_75) -------------------------------------------------------------------------
// Each of the 32 lanes gives the shared address of one 16-byte row (lanes 8i..8i+7 address matrix
// i); each lane receives one 32-bit register per 8x8 b16 matrix. .trans transposes each matrix.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
#if FASTRADIO_DEVICE_ARCH >= 750
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
#if FASTRADIO_DEVICE_ARCH >= 750
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(smem_row)));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
#if FASTRADIO_DEVICE_ARCH >= 750
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
#if FASTRADIO_DEVICE_ARCH >= 750
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(smem_row)));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// --- mma.sync ---------------------------------------------------------------------------------
// D = A * B + C with fp32 accumulation, in place on c (see the fragment layouts above).

// fp16 inputs, m16n8k16 (sm_80).
__device__ __forceinline__ void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if FASTRADIO_DEVICE_ARCH >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// bf16 inputs, m16n8k16 (sm_80).
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if FASTRADIO_DEVICE_ARCH >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// fp16 inputs, m16n8k8 (sm_75: Turing's only fp16 shape with fp32 accumulation). a = the first two
// registers of the m16n8k16 A picture (k 0..7), b = its first register.
__device__ __forceinline__ void mma_m16n8k8_f16(float (&c)[4], const uint32_t (&a)[2], uint32_t b) {
#if FASTRADIO_DEVICE_ARCH >= 750
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(b));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// Two fp32 -> one register of two fp16/bf16 (lo in the low half), round-to-nearest-even. For
// building A fragments from registers (e.g. attention's P = softmax(S) feeding P·V).
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  uint32_t r;
  asm("{ .reg .f16 l, h;\n cvt.rn.f16.f32 l, %1;\n cvt.rn.f16.f32 h, %2;\n mov.b32 %0, {l, h};\n}\n"
      : "=r"(r)
      : "f"(lo), "f"(hi));
  return r;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if FASTRADIO_DEVICE_ARCH >= 800
  uint32_t r;
  // cvt.rn.bf16x2.f32 d, a, b puts a in the upper half.
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  FASTRADIO_UNREACHABLE_ARCH();
  return 0;
#endif
}

#endif  // __CUDACC__

}  // namespace ptx
}  // namespace fastradio

// Thin wrappers over the sm_90 / sm_90a instructions of the Hopper tier (PTX ISA 9.7): mbarrier
// (init, arrive, arrive.expect_tx, try_wait.parity), fence.proxy.async, elect.sync, setmaxnreg,
// cp.async.bulk.tensor (TMA, 2D/3D loads into shared memory, 2D stores), wgmma.mma_async (m64nNk16,
// fp16/bf16 in, fp32 accumulators, A from shared memory or registers, B from shared memory, K-major
// or, with kTransB, MN-major: the transpose-B immediate of the 16-bit types)
// with its fence / commit_group / wait_group, and stmatrix. One place for the asm strings; on the
// emulated device emu/hopper.h provides the same names, written from the PTX ISA independently.
//
// Arch guards: mbarrier, TMA, elect.sync, stmatrix and fence.proxy.async need sm_90; wgmma and
// setmaxnreg need the arch-specific sm_90a (__CUDA_ARCH_FEAT_SM90_ALL; they do not exist on sm_100).
// A kernel body that calls them sits under the matching guard (FASTRADIO_HOPPER_WGMMA below).
//
// Fragments (thread t of the warpgroup, warp w = t / 32, g = t % 32 / 4, q = t % 4):
//   D (64 x N, fp32, R = N / 2 registers): d[4i + 2h + c] = D[16w + g + 8h][8i + 2q + c]
//   A (64 x 16 from registers, RS):        a[j] = A[16w + g + 8 (j % 2)][2q + 8 (j / 2) + {0, 1}]
// Shared-memory operands are K-major (row r of A / of B^T holds its 16 k values), described by
// smem_desc(): unswizzled, 8x16-byte core matrices (lbo: between core matrices along K, sbo:
// between 8-row groups); swizzled (32/64/128 B), row r at r * span within each 8-row group (sbo
// between groups), the span's 16-byte chunks XOR-permuted by the row, as TMA writes them.
// MN-major B (kTransB; swizzled layouts only here): k-row k holds span / 2 consecutive n values at
// (k % 8) * span inside an 8-k-row atom, atoms sbo apart along K and lbo apart along N, the same
// XOR permutation (what TMA writes for a box whose inner dimension is N).
#pragma once

#include <cstdint>

#include "common/arch.h"
#include "common/ptx.h"  // ptx::smem_addr

#if defined(FASTRADIO_EMU_DEVICE_H)
#include "emu/hopper.h"
#endif

#if defined(__CUDACC__) && !defined(FASTRADIO_EMU_DEVICE_H)
#include <cuda.h>
#endif

#if defined(__CUDACC__)
#include "common/wgmma_operands.h"
#endif

// True in a device pass that may use wgmma / setmaxnreg (sm_90a); kernels guard their bodies with it.
#if defined(FASTRADIO_EMU_DEVICE_H)
#define FASTRADIO_HOPPER_WGMMA (FASTRADIO_DEVICE_ARCH >= 900)
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FASTRADIO_HOPPER_WGMMA 1
#else
#define FASTRADIO_HOPPER_WGMMA 0
#endif

namespace fastradio {
namespace ptx {

#if defined(__CUDACC__)

// --- mbarrier (sm_90 forms) ---------------------------------------------------------------------------
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, unsigned count) {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// Makes initialised mbarriers visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void fence_mbarrier_init() {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ uint64_t mbarrier_arrive(uint64_t* bar) {
  uint64_t state = 0;
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 %0, [%1];\n" : "=l"(state) : "r"(smem_addr(bar)) : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
  return state;
}

// Arrive and announce `bytes` of transactions (TMA) that complete the current phase too.
__device__ __forceinline__ uint64_t mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  uint64_t state = 0;
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 %0, [%1], %2;\n"
               : "=l"(state)
               : "r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
  return state;
}

// True once the phase of parity `parity` has completed (may return false after a time limit).
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(smem_addr(bar)), "r"(parity)
      : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
  return done != 0;
}

__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  while (!mbarrier_try_wait(bar, parity)) {
  }
}

// --- proxies, election, registers -----------------------------------------------------------------------
// Generic-proxy writes to shared memory (st.shared) become visible to the async proxy (TMA stores, wgmma).
__device__ __forceinline__ void fence_proxy_async() {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// True in exactly one lane of the (full) warp.
__device__ __forceinline__ bool elect_one_sync() {
  uint32_t elected = 0;
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("{\n .reg .pred p;\n elect.sync _|p, %1;\n selp.u32 %0, 1, 0, p;\n}\n"
               : "=r"(elected)
               : "r"(0xffffffffu));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
  return elected != 0;
}

// Producer warpgroups give registers back, consumers take them; every warp of a warpgroup must ask
// for the same count, a multiple of 8 in 24..256.
template <int kCount>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kCount >= 24 && kCount <= 256 && kCount % 8 == 0, "setmaxnreg: a multiple of 8 in 24..256");
#if FASTRADIO_HOPPER_WGMMA
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kCount));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
template <int kCount>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kCount >= 24 && kCount <= 256 && kCount % 8 == 0, "setmaxnreg: a multiple of 8 in 24..256");
#if FASTRADIO_HOPPER_WGMMA
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kCount));
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// --- TMA (sm_90) ------------------------------------------------------------------------------------------
// The tensor map must live in global/const/param space (a __grid_constant__ kernel parameter).
__device__ __forceinline__ void tma_load_2d(void* smem, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_addr(smem)),
      "l"(map), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void tma_load_3d(void* smem, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::
          "r"(smem_addr(smem)),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
      : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// shared -> global; fence_proxy_async() first if the box was written with ordinary stores.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, int c0, int c1, const void* smem) {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(map), "r"(c0),
               "r"(c1), "r"(smem_addr(smem))
               : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

__device__ __forceinline__ void bulk_commit_group() {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// Wait until at most N bulk groups still read their shared-memory source.
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
#if FASTRADIO_DEVICE_ARCH >= 900
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// --- wgmma (sm_90a) -----------------------------------------------------------------------------------------
__device__ __forceinline__ void wgmma_fence() {
#if FASTRADIO_HOPPER_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
__device__ __forceinline__ void wgmma_commit_group() {
#if FASTRADIO_HOPPER_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
#if FASTRADIO_HOPPER_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// d (R = N / 2 registers) = A * B (+ d if accumulate); A, B from descriptors (SS) or A from registers (RS).
// kTransB: B is MN-major in shared memory (imm-trans-b = 1; legal for the 16-bit types only).
#define FASTRADIO_WGMMA_SS_CASE(R, TYPES, TB)                                                                       \
  if constexpr (kR == R) {                                                                                      \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, " FASTRADIO_WGMMA_ARG_##R##_2                              \
                 ", 0;\n wgmma.mma_async.sync.aligned.m64n" FASTRADIO_WGMMA_N_##R "k16.f32." TYPES " "          \
                 FASTRADIO_WGMMA_D_##R ", " FASTRADIO_WGMMA_ARG_##R##_0 ", " FASTRADIO_WGMMA_ARG_##R##_1        \
                 ", p, 1, 1, 0, " TB ";\n}\n"                                                                        \
                 : FASTRADIO_WGMMA_OUT_##R(d)                                                                   \
                 : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));                                             \
  }
#define FASTRADIO_WGMMA_RS_CASE(R, TYPES, TB)                                                                       \
  if constexpr (kR == R) {                                                                                      \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, " FASTRADIO_WGMMA_ARG_##R##_5                              \
                 ", 0;\n wgmma.mma_async.sync.aligned.m64n" FASTRADIO_WGMMA_N_##R "k16.f32." TYPES " "          \
                 FASTRADIO_WGMMA_D_##R ", {" FASTRADIO_WGMMA_ARG_##R##_0 ", " FASTRADIO_WGMMA_ARG_##R##_1 ", "  \
                 FASTRADIO_WGMMA_ARG_##R##_2 ", " FASTRADIO_WGMMA_ARG_##R##_3 "}, " FASTRADIO_WGMMA_ARG_##R##_4 \
                 ", p, 1, 1, " TB ";\n}\n"                                                                           \
                 : FASTRADIO_WGMMA_OUT_##R(d)                                                                   \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)));            \
  }
#define FASTRADIO_WGMMA_SS_F16(R) FASTRADIO_WGMMA_SS_CASE(R, "f16.f16", "0")
#define FASTRADIO_WGMMA_SS_BF16(R) FASTRADIO_WGMMA_SS_CASE(R, "bf16.bf16", "0")
#define FASTRADIO_WGMMA_RS_F16(R) FASTRADIO_WGMMA_RS_CASE(R, "f16.f16", "0")
#define FASTRADIO_WGMMA_RS_BF16(R) FASTRADIO_WGMMA_RS_CASE(R, "bf16.bf16", "0")
#define FASTRADIO_WGMMA_SS_F16_TB(R) FASTRADIO_WGMMA_SS_CASE(R, "f16.f16", "1")
#define FASTRADIO_WGMMA_SS_BF16_TB(R) FASTRADIO_WGMMA_SS_CASE(R, "bf16.bf16", "1")
#define FASTRADIO_WGMMA_RS_F16_TB(R) FASTRADIO_WGMMA_RS_CASE(R, "f16.f16", "1")
#define FASTRADIO_WGMMA_RS_BF16_TB(R) FASTRADIO_WGMMA_RS_CASE(R, "bf16.bf16", "1")

template <int kR, bool kTransB = false>
__device__ __forceinline__ void wgmma_ss_f16(float (&d)[kR], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(kR >= 4 && kR <= 128 && kR % 4 == 0, "wgmma m64nNk16: N = 2 * registers, a multiple of 8 in 8..256");
#if FASTRADIO_HOPPER_WGMMA
  if constexpr (kTransB) {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_SS_F16_TB)
  } else {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_SS_F16)
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
template <int kR, bool kTransB = false>
__device__ __forceinline__ void wgmma_ss_bf16(float (&d)[kR], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(kR >= 4 && kR <= 128 && kR % 4 == 0, "wgmma m64nNk16: N = 2 * registers, a multiple of 8 in 8..256");
#if FASTRADIO_HOPPER_WGMMA
  if constexpr (kTransB) {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_SS_BF16_TB)
  } else {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_SS_BF16)
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
template <int kR, bool kTransB = false>
__device__ __forceinline__ void wgmma_rs_f16(float (&d)[kR], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  static_assert(kR >= 4 && kR <= 128 && kR % 4 == 0, "wgmma m64nNk16: N = 2 * registers, a multiple of 8 in 8..256");
#if FASTRADIO_HOPPER_WGMMA
  if constexpr (kTransB) {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_RS_F16_TB)
  } else {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_RS_F16)
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}
template <int kR, bool kTransB = false>
__device__ __forceinline__ void wgmma_rs_bf16(float (&d)[kR], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  static_assert(kR >= 4 && kR <= 128 && kR % 4 == 0, "wgmma m64nNk16: N = 2 * registers, a multiple of 8 in 8..256");
#if FASTRADIO_HOPPER_WGMMA
  if constexpr (kTransB) {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_RS_BF16_TB)
  } else {
    FASTRADIO_WGMMA_FOR_EACH_R(FASTRADIO_WGMMA_RS_BF16)
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// --- stmatrix (sm_90) ----------------------------------------------------------------------------------------
// The inverse of ldmatrix: lane (g, q) holds in r[i] elements (g, 2q..2q+1) of 8x8 b16 matrix i;
// lanes 8i..8i+7 give the shared addresses of matrix i's rows (.trans: its columns).
#if FASTRADIO_DEVICE_ARCH >= 900
#define FASTRADIO_STMATRIX(NAME, NUM, SUFFIX, REGS, ...)                                                          \
  __device__ __forceinline__ void NAME(void* row, const uint32_t(&r)[NUM]) {                                     \
    asm volatile("stmatrix.sync.aligned.m8n8.x" #NUM SUFFIX ".shared.b16 [%0], " REGS ";\n" ::"r"(smem_addr(row)), \
                 __VA_ARGS__                                                                                     \
                 : "memory");                                                                                    \
  }
#else
#define FASTRADIO_STMATRIX(NAME, NUM, SUFFIX, REGS, ...) \
  __device__ __forceinline__ void NAME(void*, const uint32_t(&)[NUM]) { FASTRADIO_UNREACHABLE_ARCH(); }
#endif
FASTRADIO_STMATRIX(stmatrix_x1, 1, "", "{%1}", "r"(r[0]))
FASTRADIO_STMATRIX(stmatrix_x2, 2, "", "{%1, %2}", "r"(r[0]), "r"(r[1]))
FASTRADIO_STMATRIX(stmatrix_x4, 4, "", "{%1, %2, %3, %4}", "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]))
FASTRADIO_STMATRIX(stmatrix_x1_trans, 1, ".trans", "{%1}", "r"(r[0]))
FASTRADIO_STMATRIX(stmatrix_x2_trans, 2, ".trans", "{%1, %2}", "r"(r[0]), "r"(r[1]))
FASTRADIO_STMATRIX(stmatrix_x4_trans, 4, ".trans", "{%1, %2, %3, %4}", "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]))
#undef FASTRADIO_STMATRIX

#endif  // __CUDACC__

#if defined(FASTRADIO_DEVICE_CODE)
// A wgmma shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"): start address,
// leading / stride byte offsets (16-byte units, 14 bits each), swizzle span in bytes (0, 32, 64, 128).
__device__ __forceinline__ uint64_t smem_desc(const void* smem, uint32_t lbo_bytes, uint32_t sbo_bytes, int swizzle) {
  const uint64_t mode = swizzle == 128 ? 1 : swizzle == 64 ? 2 : swizzle == 32 ? 3 : 0;
  return uint64_t((smem_addr(smem) & 0x3ffff) >> 4) | uint64_t((lbo_bytes >> 4) & 0x3fff) << 16 |
         uint64_t((sbo_bytes >> 4) & 0x3fff) << 32 | mode << 62;
}
#endif

}  // namespace ptx

#if defined(__CUDACC__) || defined(FASTRADIO_EMU_DEVICE_H)
// Host side: a tiled TMA tensor map through the driver's cuTensorMapEncodeTiled, reached via the
// runtime (no libcuda link; the emulator provides the same entry). dims / strides in elements of
// `esize` bytes, dimension 0 innermost (strides[0] is implied); swizzle in bytes (0, 32, 64, 128);
// out-of-bounds elements read as zero. Returns CUDA_SUCCESS or the driver's refusal.
inline CUresult encode_tensor_map(CUtensorMap* map, CUtensorMapDataType type, int esize, int rank, void* base,
                                  const uint64_t* dims, const uint64_t* strides, const uint32_t* box, int swizzle) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
          cudaSuccess ||
      found != cudaDriverEntryPointSuccess || fn == nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  cuuint64_t gdim[5], gstride[4];
  cuuint32_t bdim[5], estride[5];
  for (int i = 0; i < rank && i < 5; ++i) {
    gdim[i] = dims[i];
    bdim[i] = box[i];
    estride[i] = 1;
    if (i > 0) gstride[i - 1] = strides[i] * uint64_t(esize);
  }
  const CUtensorMapSwizzle sw = swizzle == 128  ? CU_TENSOR_MAP_SWIZZLE_128B
                                : swizzle == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                                : swizzle == 32 ? CU_TENSOR_MAP_SWIZZLE_32B
                                                : CU_TENSOR_MAP_SWIZZLE_NONE;
  return reinterpret_cast<decltype(&cuTensorMapEncodeTiled)>(fn)(map, type, cuuint32_t(rank), base, gdim, gstride, bdim,
                                                          estride, CU_TENSOR_MAP_INTERLEAVE_NONE, sw,
                                                          CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}
#endif

}  // namespace fastradio

// Kernels of the emulator's Hopper self-test (hopper_tests.cpp): correct ones whose results the
// host checks against its own computation, and broken ones the emulator must catch. Compiled like
// every kernel source (-x c++ -include emu/device.h) through common/hopper.h. No arch guards: they
// run only when the emulated arch is sm_90.
#include "emu/selftest/hopper_selftest.h"

#include <cstring>

#include "common/hopper.h"
#include "common/kernel.h"

namespace fastradio {
namespace emu {
namespace selftest {
namespace {

// --- TMA ------------------------------------------------------------------------------------------------
__global__ void tma_load_kernel(const __grid_constant__ CUtensorMap map, int rank, int c0, int c1, int c2,
                                uint32_t bytes, int how, uint16_t* out) {
  FASTRADIO_DYNAMIC_SHARED(128, uint16_t, box);
  FASTRADIO_SHARED(8, uint64_t, bar, [1]);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(&bar[0], 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    ptx::mbarrier_arrive_expect_tx(&bar[0], how == 3 ? bytes + 2 : bytes);
    if (rank == 2) {
      ptx::tma_load_2d(box, &map, c0, c1, &bar[0]);
    } else {
      ptx::tma_load_3d(box, &map, c0, c1, c2, &bar[0]);
    }
  }
  if (how == 0 || how == 3) ptx::mbarrier_wait(&bar[0], 0);
  if (how == 1 || how == 2) __syncthreads();  // every thread is past the issue, none has waited yet
  for (uint32_t i = threadIdx.x; i < bytes / 2; i += blockDim.x) out[i] = box[i];
  if (how == 1) {
    __syncthreads();  // every read precedes every wait
    ptx::mbarrier_wait(&bar[0], 0);  // too late: the reads above saw the poison
  }
}

__global__ void tma_store_kernel(const __grid_constant__ CUtensorMap map, int c0, int c1, const uint16_t* in,
                                 uint32_t words, int fence) {
  FASTRADIO_DYNAMIC_SHARED(128, uint16_t, box);
  for (uint32_t i = threadIdx.x; i < words; i += blockDim.x) box[i] = in[i];
  if (fence) ptx::fence_proxy_async();  // the generic-proxy stores above -> the TMA store (async proxy)
  __syncthreads();
  if (threadIdx.x == 0) {
    ptx::tma_store_2d(&map, c0, c1, box);
    ptx::bulk_commit_group();
    ptx::bulk_wait_group_read<0>();
  }
}

// --- wgmma ----------------------------------------------------------------------------------------------
// One warpgroup. a: 64 x K, b: N x K (row-major bits). K = swizzle / 2, or 16 when swizzle is 0.
// mn_b: map_b is over Bᵀ (K x N, N contiguous) and B is read MN-major (the transpose-B flag): one
// TMA box of swizzle / 2 columns x K rows per N atom, atoms K * swizzle bytes apart (lbo), 8-k-row
// groups 8 * swizzle bytes apart (sbo).
template <int R>
__global__ void wgmma_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                             const uint16_t* a, const uint16_t* b, int swizzle, int desc_swizzle_b, int bf16, int rs,
                             int fence, int mn_b, float* out) {
  constexpr int N = 2 * R;
  FASTRADIO_DYNAMIC_SHARED(128, uint16_t, smem);
  FASTRADIO_SHARED(8, uint64_t, bar, [1]);
  const int k_total = swizzle ? swizzle / 2 : 16;
  const int row_bytes = swizzle ? swizzle : 32;
  uint16_t* sa = smem;
  uint16_t* sb = smem + (64 * row_bytes + 1023) / 1024 * 1024 / 2;
  const int atoms = mn_b ? (N + swizzle / 2 - 1) / (swizzle / 2) : 1;  // MN-major: N atoms of swizzle / 2
  const uint32_t lbo = mn_b ? uint32_t(k_total * swizzle) : 128, sbo = swizzle ? 8 * swizzle : 256;
  if (swizzle) {
    if (threadIdx.x == 0) {
      ptx::mbarrier_init(&bar[0], 1);
      ptx::fence_mbarrier_init();
    }
    __syncthreads();
    if (threadIdx.x < 32 && ptx::elect_one_sync()) {
      const uint32_t b_bytes = mn_b ? uint32_t(atoms * k_total * swizzle) : uint32_t(N * k_total * 2);
      ptx::mbarrier_arrive_expect_tx(&bar[0], uint32_t(64 * k_total * 2) + b_bytes);
      ptx::tma_load_2d(sa, &map_a, 0, 0, &bar[0]);
      if (mn_b) {
        for (int i = 0; i < atoms; ++i)
          ptx::tma_load_2d(reinterpret_cast<char*>(sb) + i * lbo, &map_b, i * swizzle / 2, 0, &bar[0]);
      } else {
        ptx::tma_load_2d(sb, &map_b, 0, 0, &bar[0]);
      }
    }
    ptx::mbarrier_wait(&bar[0], 0);
  } else {
    // The canonical unswizzled K-major layout by hand: 8x8 core matrices of 128 contiguous bytes,
    // the two along K 128 B apart (lbo), 8-row groups 256 B apart (sbo).
    auto at = [&](int r, int k) { return (r / 8) * int(sbo / 2) + (k / 8) * int(lbo / 2) + (r % 8) * 8 + k % 8; };
    for (int i = threadIdx.x; i < 64 * 16; i += blockDim.x) sa[at(i / 16, i % 16)] = a[i];
    for (int i = threadIdx.x; i < N * 16; i += blockDim.x) sb[at(i / 16, i % 16)] = b[i];
    if (fence) ptx::fence_proxy_async();  // generic-proxy stores -> wgmma's reads
    __syncthreads();
  }
  float d[R];
  const int t = threadIdx.x, w = t / 32, g = t % 32 / 4, q = t % 4;
  ptx::wgmma_fence();
  for (int ks = 0; ks < k_total / 16; ++ks) {
    // Within a swizzled row the k-slice starts 32 bytes further; the swizzle applies to the address.
    // MN-major: the k-slice is 16 k-rows (two 8-row groups) further.
    const uint64_t db = ptx::smem_desc(mn_b ? sb + 16 * ks * swizzle / 2 : sb + 16 * ks, lbo, sbo, desc_swizzle_b);
    if (rs && mn_b) {
      uint32_t af[4];
      for (int j = 0; j < 4; ++j) {
        const int row = 16 * w + g + 8 * (j % 2), col = 16 * ks + 2 * q + 8 * (j / 2);
        af[j] = uint32_t(a[row * k_total + col]) | uint32_t(a[row * k_total + col + 1]) << 16;
      }
      if (bf16) {
        ptx::wgmma_rs_bf16<R, true>(d, af, db, ks > 0);
      } else {
        ptx::wgmma_rs_f16<R, true>(d, af, db, ks > 0);
      }
    } else if (mn_b) {
      const uint64_t da = ptx::smem_desc(sa + 16 * ks, lbo, sbo, swizzle);
      if (bf16) {
        ptx::wgmma_ss_bf16<R, true>(d, da, db, ks > 0);
      } else {
        ptx::wgmma_ss_f16<R, true>(d, da, db, ks > 0);
      }
    } else if (rs) {
      uint32_t af[4];
      for (int j = 0; j < 4; ++j) {
        const int row = 16 * w + g + 8 * (j % 2), col = 16 * ks + 2 * q + 8 * (j / 2);
        af[j] = uint32_t(a[row * k_total + col]) | uint32_t(a[row * k_total + col + 1]) << 16;
      }
      if (bf16) {
        ptx::wgmma_rs_bf16(d, af, db, ks > 0);
      } else {
        ptx::wgmma_rs_f16(d, af, db, ks > 0);
      }
    } else {
      const uint64_t da = ptx::smem_desc(sa + 16 * ks, lbo, sbo, swizzle);
      if (bf16) {
        ptx::wgmma_ss_bf16(d, da, db, ks > 0);
      } else {
        ptx::wgmma_ss_f16(d, da, db, ks > 0);
      }
    }
  }
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  for (int e = 0; e < R; ++e) out[t * R + e] = d[e];
}

// --- stmatrix, elect ------------------------------------------------------------------------------------
__global__ void stmatrix_kernel(int num, int trans, const uint32_t* regs, uint16_t* out) {
  FASTRADIO_SHARED(16, uint16_t, rows, [32 * 8]);
  const int l = threadIdx.x;
  for (int i = 0; i < 8; ++i) rows[l * 8 + i] = 0x7777;
  __syncwarp();
  uint16_t* row = &rows[l * 8];
  if (num == 1) {
    const uint32_t r[1] = {regs[4 * l]};
    trans ? ptx::stmatrix_x1_trans(row, r) : ptx::stmatrix_x1(row, r);
  } else if (num == 2) {
    const uint32_t r[2] = {regs[4 * l], regs[4 * l + 1]};
    trans ? ptx::stmatrix_x2_trans(row, r) : ptx::stmatrix_x2(row, r);
  } else {
    const uint32_t r[4] = {regs[4 * l], regs[4 * l + 1], regs[4 * l + 2], regs[4 * l + 3]};
    trans ? ptx::stmatrix_x4_trans(row, r) : ptx::stmatrix_x4(row, r);
  }
  __syncwarp();
  for (int i = 0; i < 8; ++i) out[l * 8 + i] = rows[l * 8 + i];
}

__global__ void elect_kernel(int* out) { out[threadIdx.x] = ptx::elect_one_sync() ? 1 : 0; }

// --- a two-stage pipeline ---------------------------------------------------------------------------------
__global__ void pipeline_kernel(const __grid_constant__ CUtensorMap map, int tiles, uint64_t* sums) {
  FASTRADIO_DYNAMIC_SHARED(128, uint16_t, stage);  // 2 stages of 8 x 64 u16 (1 KiB each)
  FASTRADIO_SHARED(8, uint64_t, full, [2]);
  FASTRADIO_SHARED(8, uint64_t, empty, [2]);
  if (threadIdx.x == 0) {
    for (int s = 0; s < 2; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], blockDim.x);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  const bool producer = threadIdx.x < 32 && ptx::elect_one_sync();
  if (producer)
    for (int t = 0; t < 2 && t < tiles; ++t) {  // both stages start empty
      ptx::mbarrier_arrive_expect_tx(&full[t], 8 * 64 * 2);
      ptx::tma_load_2d(stage + t * 512, &map, 0, 8 * t, &full[t]);
    }
  for (int t = 0; t < tiles; ++t) {
    const int s = t % 2;
    const uint32_t parity = uint32_t(t / 2) % 2;
    ptx::mbarrier_wait(&full[s], parity);
    uint64_t sum = 0;
    for (int i = 0; i < 512; ++i) sum += stage[s * 512 + i];
    if (threadIdx.x == 0) sums[t] = sum;
    ptx::mbarrier_arrive(&empty[s]);
    if (producer && t + 2 < tiles) {  // refill the stage once every thread has released it
      ptx::mbarrier_wait(&empty[s], parity);
      ptx::mbarrier_arrive_expect_tx(&full[s], 8 * 64 * 2);
      ptx::tma_load_2d(stage + s * 512, &map, 0, 8 * (t + 2), &full[s]);
    }
  }
}

// --- broken kernels -----------------------------------------------------------------------------------------
template <int kCount>
__device__ __forceinline__ void ask_registers() {
  ptx::setmaxnreg_inc<kCount>();  // one call site for every count
}

__global__ void hopper_bug_kernel(int bug, float* out) {
  FASTRADIO_SHARED(1024, uint16_t, tile, [64 * 64]);
  FASTRADIO_SHARED(8, uint64_t, bar, [1]);
  const int t = threadIdx.x;
  for (int i = t; i < 64 * 64; i += blockDim.x) tile[i] = 0x3c00;  // 1.0 in fp16
  ptx::fence_proxy_async();
  __syncthreads();
  const uint64_t da = ptx::smem_desc(tile, 128, 1024, 128);
  switch (HopperBug(bug)) {
    case HopperBug::kWgmmaWaitOffByOne: {
      float d0[4], d1[4];
      ptx::wgmma_fence();
      ptx::wgmma_ss_f16(d0, da, da, false);
      ptx::wgmma_commit_group();
      ptx::wgmma_ss_f16(d1, da, da, false);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<1>();  // should be 0: d1's group may still be in flight
      for (int e = 0; e < 4; ++e) {
        out[t * 8 + e] = d0[e];
        out[t * 8 + 4 + e] = d1[e];
      }
      break;
    }
    case HopperBug::kAccumulatorTouched: {
      float d[4];
      ptx::wgmma_fence();
      ptx::wgmma_ss_f16(d, da, da, false);
      ptx::wgmma_commit_group();
      for (int e = 0; e < 4; ++e) d[e] *= 2.0f;  // the tensor cores still own d
      ptx::wgmma_wait_group<0>();
      for (int e = 0; e < 4; ++e) out[t * 8 + e] = d[e];
      break;
    }
    case HopperBug::kChainedGroups: {  // (correct) two groups accumulate into one d, as linear's k-loop
      float d[4];
      ptx::wgmma_fence();
      ptx::wgmma_ss_f16(d, da, da, false);
      ptx::wgmma_commit_group();
      ptx::wgmma_ss_f16(d, da, da, true);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<1>();  // retires group 0; d still belongs to group 1
      ptx::wgmma_wait_group<0>();
      for (int e = 0; e < 4; ++e) out[t * 8 + e] = d[e];
      break;
    }
    case HopperBug::kWgmmaNoFence: {
      float d[4];
      ptx::wgmma_ss_f16(d, da, da, false);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<0>();
      out[t] = d[0];
      break;
    }
    case HopperBug::kWgmmaPartialGroup: {
      float d[4];
      ptx::wgmma_fence();
      ptx::wgmma_ss_f16(d, da, da, false);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<0>();
      out[t] = d[0];
      break;
    }
    case HopperBug::kSetmaxnregIllegal:
      ptx::setmaxnreg_inc<100>();
      break;
    case HopperBug::kSetmaxnregDisagree:
      if (t < 32) {
        ask_registers<240>();
      } else {
        ask_registers<232>();
      }
      break;
    case HopperBug::kMbarrierNotInit:
      ptx::mbarrier_arrive(&bar[0]);
      break;
  }
}

// --- wgmma operands held until retirement (OperandHold) ---------------------------------------------------
// The wgmma on tile 0 and the one on tile 1, each on its own line (the messages' "issued at" names it).
constexpr int kHoldLine0 = __LINE__ + 1;
__device__ __forceinline__ void hold_wgmma0(float (&acc)[4], uint64_t desc) { ptx::wgmma_ss_f16(acc, desc, desc, false); }
constexpr int kHoldLine1 = __LINE__ + 1;
__device__ __forceinline__ void hold_wgmma1(float (&acc)[4], uint64_t desc) { ptx::wgmma_ss_f16(acc, desc, desc, false); }

__global__ void operand_hold_kernel(const __grid_constant__ CUtensorMap map, int how, float* out) {
  FASTRADIO_SHARED(1024, uint16_t, tiles, [2 * 64 * 16]);  // two 2 KiB tiles: rows of 32 bytes, 32-byte swizzle
  FASTRADIO_SHARED(8, uint64_t, bar, [2]);
  const OperandHold h = OperandHold(how);
  const int t = threadIdx.x;
  uint16_t* tile0 = tiles;
  uint16_t* tile1 = tiles + 64 * 16;
  if (t == 0) {
    ptx::mbarrier_init(&bar[0], 1);
    ptx::mbarrier_init(&bar[1], 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (t == 0)
    for (int i = 0; i < 2; ++i) {
      ptx::mbarrier_arrive_expect_tx(&bar[i], 64 * 16 * 2);
      ptx::tma_load_2d(tiles + i * 64 * 16, &map, 0, 0, &bar[i]);  // rows 0..63 of the tensor: ones
    }
  ptx::mbarrier_wait(&bar[0], 0);
  ptx::mbarrier_wait(&bar[1], 0);
  if (h == OperandHold::kLandBeforeWait && t == 0) {  // tile 1 refilled before the wgmma on it, nobody waits
    ptx::mbarrier_arrive_expect_tx(&bar[1], 64 * 16 * 2);
    ptx::tma_load_2d(tile1, &map, 0, 64, &bar[1]);
  }
  const uint64_t d0 = ptx::smem_desc(tile0, 128, 256, 32), d1 = ptx::smem_desc(tile1, 128, 256, 32);
  float acc0[4], acc1[4];
  ptx::wgmma_fence();
  // A = the tile (64 x 16), B = its first 8 rows.
  hold_wgmma0(acc0, d0);
  ptx::wgmma_commit_group();
  hold_wgmma1(acc1, d1);
  ptx::wgmma_commit_group();
  switch (h) {
    case OperandHold::kReloadAfterWait:
      ptx::wgmma_wait_group<0>();
      __syncthreads();  // every thread has retired both groups
      if (t == 0) {
        ptx::mbarrier_arrive_expect_tx(&bar[0], 64 * 16 * 2);
        ptx::tma_load_2d(tile0, &map, 0, 64, &bar[0]);  // rows 64..127: twos
      }
      ptx::mbarrier_wait(&bar[0], 1);
      ptx::wgmma_fence();
      ptx::wgmma_ss_f16(acc1, d0, d0, false);
      ptx::wgmma_commit_group();
      break;
    // Every thread writes before its own wait_group: the first thread's retirement ends a wgmma's hold.
    case OperandHold::kOlderAfterWaitOne:
      ptx::wgmma_wait_group<1>();
      tile0[t] = 0x4000;  // group 0 has retired: its tile is free
      break;
    case OperandHold::kStoreBeforeWait:
      tile0[t] = 0x4000;
      break;
    case OperandHold::kNewerAfterWaitOne:
      ptx::wgmma_wait_group<1>();
      tile1[t] = 0x4000;  // group 1 may still read its tile
      break;
    case OperandHold::kTmaBeforeWait:
      if (t == 0) {
        ptx::mbarrier_arrive_expect_tx(&bar[1], 64 * 16 * 2);
        ptx::tma_load_2d(tile1, &map, 0, 64, &bar[1]);
      }
      ptx::mbarrier_wait(&bar[1], 1);
      break;
    case OperandHold::kLandBeforeWait:
      ptx::mbarrier_wait(&bar[1], 1);  // the copy issued before the wgmma on tile 1 lands here
      break;
    case OperandHold::kStmatrixBeforeWait: {
      const uint32_t r[4] = {0x40004000u, 0x40004000u, 0x40004000u, 0x40004000u};
      ptx::stmatrix_x4(tile0 + 8 * t, r);  // every lane stores a 16-byte row: the threads cover tile 0
      break;
    }
  }
  ptx::wgmma_wait_group<0>();
  for (int e = 0; e < 4; ++e) {
    out[t * 8 + e] = acc0[e];
    out[t * 8 + 4 + e] = acc1[e];
  }
}

CUtensorMap encode(const void* base, int rank, const uint64_t* dims, const uint64_t* strides, const uint32_t* box,
                   int swizzle, bool* ok) {
  CUtensorMap map;
  *ok = encode_tensor_map(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, rank, const_cast<void*>(base), dims, strides, box,
                          swizzle) == CUDA_SUCCESS;
  return map;
}

}  // namespace

std::vector<uint16_t> run_tma_load(int rank, const uint16_t* data, const uint64_t* dims,
                                   const uint64_t* strides, const uint32_t* box, const int* coords, int swizzle,
                                   int how) {
  bool ok = false;
  const CUtensorMap map = encode(data, rank, dims, strides, box, swizzle, &ok);
  if (!ok) return {};
  uint32_t bytes = 2;
  for (int d = 0; d < rank; ++d) bytes *= box[d];
  std::vector<uint16_t> out(bytes / 2, 0x1234);
  FASTRADIO_LAUNCH(1, 128, bytes, nullptr, tma_load_kernel)(map, rank, coords[0], coords[1], rank > 2 ? coords[2] : 0,
                                                            bytes, how, out.data());
  return out;
}

std::vector<uint16_t> run_tma_store(const std::vector<uint16_t>& smem_box, const uint64_t* dims, const uint64_t* strides,
                                    const uint32_t* box, const int* coords, int swizzle, bool fence) {
  std::vector<uint16_t> tensor(size_t(dims[1] * strides[1]), 0x5a5a);
  bool ok = false;
  const CUtensorMap map = encode(tensor.data(), 2, dims, strides, box, swizzle, &ok);
  if (!ok) return {};
  FASTRADIO_LAUNCH(1, 64, smem_box.size() * 2, nullptr, tma_store_kernel)(map, coords[0], coords[1], smem_box.data(),
                                                                          uint32_t(smem_box.size()), int(fence));
  return tensor;
}

template <int R>
std::vector<float> wgmma_launch(const WgmmaSpec& s, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  const int k = s.swizzle ? s.swizzle / 2 : 16;
  CUtensorMap ma{}, mb{};
  std::vector<uint16_t> bt;  // mn_b: Bᵀ (K x N), what the MN-major B is loaded from
  if (s.mn_b) {
    bt.resize(b.size());
    for (int n = 0; n < s.n; ++n)
      for (int kk = 0; kk < k; ++kk) bt[size_t(kk * s.n + n)] = b[size_t(n * k + kk)];
  }
  if (s.swizzle) {
    bool ok_a = false, ok_b = false;
    const uint64_t dims_a[2] = {uint64_t(k), 64}, dims_b[2] = {uint64_t(k), uint64_t(s.n)};
    const uint64_t strides[2] = {1, uint64_t(k)};
    const uint32_t box_a[2] = {uint32_t(k), 64}, box_b[2] = {uint32_t(k), uint32_t(s.n)};
    ma = encode(a.data(), 2, dims_a, strides, box_a, s.swizzle, &ok_a);
    if (s.mn_b) {
      const uint64_t dims_t[2] = {uint64_t(s.n), uint64_t(k)}, strides_t[2] = {1, uint64_t(s.n)};
      const uint32_t box_t[2] = {uint32_t(s.swizzle / 2), uint32_t(k)};
      mb = encode(bt.data(), 2, dims_t, strides_t, box_t, s.swizzle, &ok_b);
    } else {
      mb = encode(b.data(), 2, dims_b, strides, box_b, s.swizzle, &ok_b);
    }
    if (!ok_a || !ok_b) return {};
  }
  const int row_bytes = s.swizzle ? s.swizzle : 32;
  const int atoms = s.mn_b ? (s.n + s.swizzle / 2 - 1) / (s.swizzle / 2) : 0;
  const size_t b_bytes = s.mn_b ? size_t(atoms * k * s.swizzle) : size_t(s.n * row_bytes);
  const size_t smem = size_t((64 * row_bytes + 1023) / 1024 * 1024) + b_bytes;
  std::vector<float> out(size_t(128 * R), -12345.0f);
  FASTRADIO_LAUNCH(1, 128, smem, nullptr, wgmma_kernel<R>)(ma, mb, a.data(), s.mn_b ? bt.data() : b.data(), s.swizzle,
                                                           s.desc_swizzle_b, int(s.bf16), int(s.rs), int(s.fence),
                                                           int(s.mn_b), out.data());
  return out;
}

std::vector<float> run_wgmma(const WgmmaSpec& s, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  switch (s.n) {
    case 8: return wgmma_launch<4>(s, a, b);
    case 16: return wgmma_launch<8>(s, a, b);
    case 24: return wgmma_launch<12>(s, a, b);
    case 40: return wgmma_launch<20>(s, a, b);
    case 64: return wgmma_launch<32>(s, a, b);
    case 72: return wgmma_launch<36>(s, a, b);
    case 80: return wgmma_launch<40>(s, a, b);
    case 256: return wgmma_launch<128>(s, a, b);
  }
  return {};
}

std::vector<uint16_t> run_stmatrix(int num, bool trans, const std::vector<uint32_t>& regs) {
  std::vector<uint16_t> out(32 * 8, 0);
  FASTRADIO_LAUNCH(1, 32, 0, nullptr, stmatrix_kernel)(num, int(trans), regs.data(), out.data());
  return out;
}

std::vector<int> run_elect() {
  std::vector<int> out(32, -1);
  FASTRADIO_LAUNCH(1, 32, 0, nullptr, elect_kernel)(out.data());
  return out;
}

std::vector<uint64_t> run_pipeline(const std::vector<uint16_t>& data, int tiles) {
  bool ok = false;
  const uint64_t dims[2] = {64, uint64_t(8 * tiles)}, strides[2] = {1, 64};
  const uint32_t box[2] = {64, 8};
  const CUtensorMap map = encode(data.data(), 2, dims, strides, box, 128, &ok);
  if (!ok) return {};
  std::vector<uint64_t> sums(size_t(tiles), 0);
  FASTRADIO_LAUNCH(1, 128, 2048, nullptr, pipeline_kernel)(map, tiles, sums.data());
  return sums;
}

void launch_hopper_bug(HopperBug bug, std::vector<float>* out) {
  out->assign(128 * 8, -1.0f);
  const unsigned threads = bug == HopperBug::kWgmmaPartialGroup ? 96 : 128;
  FASTRADIO_LAUNCH(1, threads, 0, nullptr, hopper_bug_kernel)(int(bug), out->data());
}

void launch_operand_hold(OperandHold how, std::vector<float>* out, int issue_lines[2]) {
  out->assign(128 * 8, -1.0f);
  static std::vector<uint16_t> data;  // 128 x 16: ones, then twos (fp16)
  data.assign(64 * 16, 0x3c00);
  data.resize(128 * 16, 0x4000);
  bool ok = false;
  const uint64_t dims[2] = {16, 128}, strides[2] = {1, 16};
  const uint32_t box[2] = {16, 64};
  const CUtensorMap map = encode(data.data(), 2, dims, strides, box, 32, &ok);
  if (!ok) return;
  FASTRADIO_LAUNCH(1, 128, 0, nullptr, operand_hold_kernel)(map, int(how), out->data());
  issue_lines[0] = kHoldLine0;
  issue_lines[1] = kHoldLine1;
}

}  // namespace selftest
}  // namespace emu
}  // namespace fastradio

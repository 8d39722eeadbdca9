// linear, wgmma_sm90a tier: out = act(x·Wᵀ + bias) + residual on Hopper's warpgroup tensor cores,
// fp16 or bf16 inputs, fp32 accumulation (wgmma.mma_async m64n128k16, both operands from shared
// memory), the epilogue in fp32 and one rounding. Mirrors fastradio.backends.reference.linear.
// Tier: wgmma_sm90a, sm_90a only (ONLY_ARCHS 90a: wgmma and setmaxnreg do not exist elsewhere).
//
// The plan of DESIGN.md "Hopper (sm_90a)": a CTA of 384 threads = one producer warpgroup and two
// consumer warpgroups. Each output tile is 128 tokens x 128 features; consumer c owns its rows
// 64c..64c+63 (64 fp32 accumulators per thread). A stage holds 128 x 64 of x and 128 x 64 of W
// (both K-major as stored: W is nn.Linear's (M, K), so no transposed operand), each row one
// 128-byte swizzle span, brought by two TMA loads (out-of-bounds rows and k-values read as zero:
// ragged N, M and K cost nothing). kStages = 4 stages (128 KiB) with a full barrier (count 1: the
// producer's arrive.expect_tx, completed by the TMA bytes) and an empty barrier (count 2: one
// arrival per consumer warpgroup once its wgmmas on the stage have retired).
//
// Persistent: the grid is min(tiles, SMs) and block b walks tiles b, b + grid, ... in the grouped
// order of linear_block_tile; producer and consumers walk the same sequence, and the stage/phase
// counter runs on across tiles, so the producer fills the next tile's first stages while the
// consumers finish the current one and run its epilogue.
//
// Epilogue (per consumer thread, straight from the accumulator fragments): + bias, GELU, +
// residual (read from global, masked), one rounding. When the output allows a tensor map (M % 8 ==
// 0, 16-byte aligned) each warp writes its 16 x 128 slice into its own 128-byte-swizzled staging
// tile (conflict-free 4-byte stores), fence.proxy.async, and one lane issues two TMA stores (16 x
// 64 boxes, clipped at the tensor's edges); otherwise masked global stores. No named barrier is
// needed: a warp's staging tile is its own.
//
// Refused here (linear.cu falls back to mma_sm80): K % 8 != 0 or x / W not 16-byte aligned (a
// tensor map needs 16-byte aligned rows), as cp.async's chunk path needs on sm_80.
//
// Expected speed: not measured (no GPU has run this kernel yet). Registers: producer 40, consumers
// 232 (setmaxnreg); the compile gate reports what ptxas allocates under __launch_bounds__(384, 1).
#include "linear/linear_sm90a.h"

#include "common/hopper.h"
#include "common/kernel.h"
#include "linear/linear_mma.cuh"

namespace fastradio {
namespace {

using namespace linear_sm90a;

template <DType kT>
__device__ __forceinline__ void mma(float (&d)[kAccRegs], uint64_t da, uint64_t db) {
  if constexpr (kT == DType::kBFloat16) {
    ptx::wgmma_ss_bf16(d, da, db, true);
  } else {
    ptx::wgmma_ss_f16(d, da, db, true);
  }
}

// Two values of one row at columns col, col + 1 (< m each, checked) of a (rows, m) matrix.
template <DType kT>
__device__ __forceinline__ void load_pair(const uint16_t* src, int64_t at, int64_t col, int64_t m, bool pair,
                                          float& v0, float& v1) {
  if (pair) {  // m even and src 4-byte aligned: col < m implies col + 1 < m
    const uint32_t w = *reinterpret_cast<const unsigned int*>(src + at);
    v0 = Elem<kT>::to_float(uint16_t(w)), v1 = Elem<kT>::to_float(uint16_t(w >> 16));
  } else {
    v0 = Elem<kT>::to_float(src[at]);
    v1 = col + 1 < m ? Elem<kT>::to_float(src[at + 1]) : 0.0f;
  }
}

template <DType kT, bool kTmaStore>
__global__ void __launch_bounds__(kThreads, 1)
    linear_sm90a_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,
                        const __grid_constant__ CUtensorMap map_out, LinearParams p, bool pair) {
#if FASTRADIO_HOPPER_WGMMA
  static_assert(kSmemAlloc <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10), "shared memory over the arch's limit");
  FASTRADIO_DYNAMIC_SHARED(128, uint8_t, smem_raw);  // kSmemAlloc; realigned to 1024 below
  FASTRADIO_SHARED(8, uint64_t, full, [kStages]);
  FASTRADIO_SHARED(8, uint64_t, empty, [kStages]);
  // The 128-byte swizzle repeats every 1024 bytes of the shared window: stages start on such a
  // boundary (the launch adds 1 KiB for this).
  uint8_t* smem = smem_raw + ((1024u - (ptx::smem_addr(smem_raw) & 1023u)) & 1023u);
  const int64_t tiles_r = (p.n + kRows - 1) / kRows;
  const int64_t tiles_c = (p.m + kCols - 1) / kCols;
  const int64_t tiles = tiles_r * tiles_c;
  const int64_t steps = (p.k + kK - 1) / kK;
  const int wg = int(threadIdx.x) / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], kConsumers);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();  // the last block-wide barrier: the producer's idle warps exit below

  if (wg == 0) {  // producer warpgroup: one elected lane issues every TMA load
    ptx::setmaxnreg_dec<40>();
    if (threadIdx.x < 32 && ptx::elect_one_sync()) {
      int64_t it = 0;  // k-steps issued by this block, across its tiles
      for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        const LinearTile tile = linear_block_tile(t, tiles_r, tiles_c, kLinearGroupRows);
        const int r0 = int(tile.row_tile * kRows), c0 = int(tile.col_tile * kCols);
        for (int64_t s = 0; s < steps; ++s, ++it) {
          const int stage = int(it % kStages);
          const uint32_t phase = uint32_t(it / kStages) & 1u;
          // Wait until both consumers released the stage's previous contents (a fresh barrier's
          // phase before the first counts as complete, so the first pass does not block).
          ptx::mbarrier_wait(&empty[stage], phase ^ 1u);
          uint8_t* st = smem + stage * kStageBytes;
          ptx::mbarrier_arrive_expect_tx(&full[stage], uint32_t(kStageBytes));
          ptx::tma_load_2d(st, &map_x, int(s * kK), r0, &full[stage]);
          ptx::tma_load_2d(st + kXBytes, &map_w, int(s * kK), c0, &full[stage]);
        }
      }
    }
    return;
  }

  ptx::setmaxnreg_inc<232>();
  const int c = wg - 1;                   // consumer: tile rows 64c..64c+63
  const int t = int(threadIdx.x) % 128;   // thread of the warpgroup
  const int w = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
  const uint16_t* __restrict__ bias = static_cast<const uint16_t*>(p.bias);  // (m,) or null
  const uint16_t* residual = static_cast<const uint16_t*>(p.residual);       // (n, m) or null; may be out
  uint16_t* out = static_cast<uint16_t*>(p.out);                             // (n, m)
  uint8_t* stage_out = smem + kPipeBytes + (c * 4 + w) * kOutWarpBytes;       // this warp's 16 x 128 tile
  int64_t it = 0;
  for (int64_t tt = blockIdx.x; tt < tiles; tt += gridDim.x) {
    const LinearTile tile = linear_block_tile(tt, tiles_r, tiles_c, kLinearGroupRows);
    const int64_t row0 = tile.row_tile * kRows + 64 * c, col0 = tile.col_tile * kCols;
    float d[kAccRegs];
#pragma unroll
    for (int e = 0; e < kAccRegs; ++e) d[e] = 0.0f;
    for (int64_t s = 0; s < steps; ++s, ++it) {
      const int stage = int(it % kStages);
      ptx::mbarrier_wait(&full[stage], uint32_t(it / kStages) & 1u);  // the stage's TMA bytes landed
      const uint8_t* xs = smem + stage * kStageBytes + c * (64 * kK * 2);
      const uint8_t* ws = smem + stage * kStageBytes + kXBytes;
      ptx::wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kK / 16; ++ks) {
        // k16 slice ks starts 32 bytes into each swizzled 128-byte row; 8-row groups 1024 B apart.
        mma<kT>(d, ptx::smem_desc(xs + 32 * ks, 16, 1024, 128), ptx::smem_desc(ws + 32 * ks, 16, 1024, 128));
      }
      ptx::wgmma_commit_group();
      // One group stays in flight: the previous step's has retired, so its stage is free.
      ptx::wgmma_wait_group<1>();
      if (s > 0 && t == 0) ptx::mbarrier_arrive(&empty[int((it - 1) % kStages)]);
    }
    ptx::wgmma_wait_group<0>();
    if (steps > 0 && t == 0) ptx::mbarrier_arrive(&empty[int((it - 1) % kStages)]);

    // Epilogue. Fragment: d[4i + 2h + e] = D[16w + g + 8h][8i + 2q + e] (common/hopper.h).
    if constexpr (kTmaStore) {
      if (lane == 0) ptx::bulk_wait_group_read<0>();  // the previous tile's stores have read the staging tile
      __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < kCols / 8; ++i) {
      const int64_t col = col0 + 8 * i + 2 * q;
      float b0 = 0.0f, b1 = 0.0f;
      if (bias != nullptr && col < p.m) load_pair<kT>(bias, col, col, p.m, pair, b0, b1);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = 16 * w + g + 8 * h;  // row in the consumer's 64
        const int64_t row = row0 + r;
        const bool live = row < p.n && col < p.m;
        float r0 = 0.0f, r1 = 0.0f;
        if (residual != nullptr && live) load_pair<kT>(residual, row * p.m + col, col, p.m, pair, r0, r1);
        const uint16_t o0 = Elem<kT>::from_float(linear_epilogue(d[4 * i + 2 * h], b0, p.activation, r0));
        const uint16_t o1 = Elem<kT>::from_float(linear_epilogue(d[4 * i + 2 * h + 1], b1, p.activation, r1));
        if constexpr (kTmaStore) {
          // Box half i / 8 (columns 64(i / 8)..), row r % 16, 16-byte chunk i % 8 XOR the row (the
          // 128-byte swizzle TMA undoes), 4-byte word q.
          const int rr = g + 8 * h;
          uint8_t* at = stage_out + (i / 8) * kOutHalfBytes + rr * 128 + (((i % 8) ^ (rr % 8)) << 4) + 4 * q;
          *reinterpret_cast<uint32_t*>(at) = uint32_t(o0) | uint32_t(o1) << 16;
        } else if (live) {
          const int64_t at = row * p.m + col;
          if (pair) {
            *reinterpret_cast<unsigned int*>(out + at) = uint32_t(o0) | (uint32_t(o1) << 16);
          } else {
            out[at] = o0;
            if (col + 1 < p.m) out[at + 1] = o1;
          }
        }
      }
    }
    if constexpr (kTmaStore) {
      ptx::fence_proxy_async();  // the staging tile's st.shared -> the TMA store (async proxy)
      __syncwarp();
      if (lane == 0) {
        const int row = int(row0) + 16 * w;
        ptx::tma_store_2d(&map_out, int(col0), row, stage_out);
        ptx::tma_store_2d(&map_out, int(col0) + 64, row, stage_out + kOutHalfBytes);
        ptx::bulk_commit_group();
      }
    }
  }
  if constexpr (kTmaStore) {
    if (lane == 0) ptx::bulk_wait_group_read<0>();  // shared memory stays until the stores read it
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// A 2D tensor map over a (rows, cols) row-major fp16/bf16 matrix with `box_rows` x `box_cols`
// boxes, 128-byte swizzle (box_cols * 2 must be 128).
bool encode(CUtensorMap* map, DType t, const void* base, int64_t rows, int64_t cols, uint32_t box_cols,
            uint32_t box_rows) {
  const uint64_t dims[2] = {uint64_t(cols), uint64_t(rows)};
  const uint64_t strides[2] = {1, uint64_t(cols)};
  const uint32_t box[2] = {box_cols, box_rows};
  const CUtensorMapDataType type =
      t == DType::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode_tensor_map(map, type, 2, 2, const_cast<void*>(base), dims, strides, box, 128) == CUDA_SUCCESS;
}

template <DType kT, bool kTmaStore>
Status launch(const LinearParams& p, const CUtensorMap& mx, const CUtensorMap& mw, const CUtensorMap& mo, int64_t blocks,
              cudaStream_t stream) {
  auto kernel = linear_sm90a_kernel<kT, kTmaStore>;
  FASTRADIO_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemAlloc));
  FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(kThreads), kSmemAlloc, stream, kernel)(mx, mw, mo, p,
                                                                                      linear_mma::pairs_ok(p));
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

template <DType kT>
Status launch_dtype(const LinearParams& p, cudaStream_t stream) {
  const int64_t tiles = ((p.n + kRows - 1) / kRows) * ((p.m + kCols - 1) / kCols);
  const int sms = linear_mma::sm_count();
  const int64_t blocks = sms > 0 && tiles > sms ? sms : tiles;
  if (blocks > INT32_MAX) return Status::kInvalidArgument;
  CUtensorMap mx{}, mw{}, mo{};
  if (!encode(&mx, kT, p.x, p.n, p.k, kK, kRows) || !encode(&mw, kT, p.weight, p.m, p.k, kK, kCols))
    return Status::kInvalidArgument;  // linear_sm90a_takes() holds: the driver refused something else
  if (linear_sm90a_tma_out(p) && encode(&mo, kT, p.out, p.n, p.m, 64, 16))
    return launch<kT, true>(p, mx, mw, mo, blocks, stream);
  return launch<kT, false>(p, mx, mw, mo, blocks, stream);
}

}  // namespace

Status linear_wgmma_sm90a(const LinearParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat16: return launch_dtype<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_dtype<DType::kBFloat16>(p, stream);
    default: return Status::kUnsupportedDType;
  }
}

}  // namespace fastradio

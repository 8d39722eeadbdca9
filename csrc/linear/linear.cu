// linear, CUDA-core tier, and the launcher of every tier: out = act(x·Wᵀ + bias) + residual with
// fp32 FMAs (IEEE fp32 products for fp32: this is also the fp32 tier on tensor-core GPUs), the
// epilogue in fp32 and one rounding to the storage dtype. Mirrors fastradio.backends.reference.linear.
// Tier: cuda_core, every arch from sm_60; fp32, fp16 and bf16 storage.
//
// A block of 256 threads owns a 128 x 128 output tile; each thread an 8 x 8 register block (rows
// 4ty + {0..3} and 64 + 4ty + {0..3}, columns likewise with tx; linear_cuda_core.h), so that its
// operands are two float4 shared-memory reads per matrix per k. Tiles of x and W (8 k-values of 128 rows each,
// both K-contiguous as stored) are read four elements (8 or 16 bytes) at a time when K and the
// pointers allow (else one predicated element at a time), widened to fp32 and stored k-major in
// shared memory; the next tile is loaded into registers while the current one is multiplied
// (double buffering, one barrier per step). Each output sums k = 0..K-1 in order with fmaf,
// exactly as the host twin (linear_host.h) does, so the two agree bit for bit.
//
// Registers: __launch_bounds__(256, 2) caps them at 128 (two blocks per SM; the Jetson archs
// sm_62/sm_72 allow only 32K registers per block anyway), and the k loop is not unrolled:
// unrolled, ptxas hoists the next k's shared-memory reads and spills on some archs. Sixteen warps
// per SM hide the shared-memory latency instead (102-125 registers, no spills, on every arch).
#include "linear/linear.h"
#include "linear/linear_cuda_core.h"
#include "linear/linear_sm90a.h"
#include "common/kernel.h"

namespace fastradio {
namespace {

using linear_cc::block_col;
using linear_cc::block_row;
using linear_cc::kSmemStride;
using linear_cc::kThreads;
using linear_cc::kTile;
using linear_cc::kTileK;

// One operand tile in registers between its global load and its shared-memory store: kV
// consecutive k-values (4: an 8- or 16-byte vector, or 1: one element) per chunk, kept as raw bits
// (widened to fp32 only when stored: fewer registers live across the FMAs). Which chunks: LoadMap
// (linear_cuda_core.h); a thread's chunks sit kRowStep rows apart at the same k, so one row pointer
// and one predicate on k serve them all.
template <DType kT, int kV>
struct TileLoader {
  using Bits = typename Elem<kT>::Bits;
  using Map = linear_cc::LoadMap<kV>;
  static constexpr int kChunks = Map::kChunks;  // per thread
  static constexpr int kRowStep = Map::kRowStep;
  static constexpr int kWords = (kV * int(sizeof(Bits)) + 3) / 4;  // 32-bit registers per chunk

  const Bits* first;  // this thread's first chunk at k = 0
  int rows_left;      // rows of the matrix from this thread's first row on (may be <= 0)
  int k_left;         // K minus this thread's k offset in the tile
  uint32_t w[kChunks][kWords];

  // Rows [row0, row0 + 128) of a (rows, K) row-major matrix (rows, K < 2^31: linear_check).
  __device__ __forceinline__ TileLoader(const Bits* src, int64_t rows, int64_t K, int64_t row0) {
    const int r = Map::row(int(threadIdx.x), 0);
    const int k = Map::k(int(threadIdx.x));
    first = src + (row0 + r) * K + k;
    rows_left = int(rows - row0) - r;
    k_left = int(K) - k;
  }

  // k-values [k0, k0 + kTileK) of the tile's rows; zeros outside the matrix. kV > 1 only when
  // K % kV == 0, so a chunk is wholly inside K or wholly outside. K comes from the kernel's
  // parameters (constant memory) on every call rather than living in registers.
  __device__ __forceinline__ void load(int k0, int64_t K) {
    const bool k_live = k0 < k_left;
    const Bits* p = first + k0;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const bool live = k_live && i * kRowStep < rows_left;
      if constexpr (kV == 1) {
        w[i][0] = live ? uint32_t(__ldg(p)) : 0u;
      } else if constexpr (kWords == 4) {
        const uint4 v = live ? __ldg(reinterpret_cast<const uint4*>(p)) : make_uint4(0u, 0u, 0u, 0u);
        w[i][0] = v.x, w[i][1] = v.y, w[i][2] = v.z, w[i][3] = v.w;
      } else {
        const uint2 v = live ? __ldg(reinterpret_cast<const uint2*>(p)) : make_uint2(0u, 0u);
        w[i][0] = v.x, w[i][1] = v.y;
      }
      p += kRowStep * K;
    }
  }

  // Transposed into smem[k][row] (k-major: a thread's 4 rows are one float4 at each k).
  __device__ __forceinline__ void store(float (*smem)[kSmemStride]) const {
    const int k = Map::k(int(threadIdx.x));
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        uint32_t bits;
        if constexpr (kV == 1 || sizeof(Bits) == 4) {
          bits = w[i][e];
        } else {
          bits = (w[i][e / 2] >> (16 * (e % 2))) & 0xffffu;
        }
        smem[k + e][Map::row(int(threadIdx.x), i)] = Elem<kT>::to_float(Bits(bits));
      }
    }
  }
};

// Four consecutive elements at p (aligned to four elements) <-> fp32. kNc: read-only for the whole
// kernel (ld.global.nc); the residual is not (out may be the residual itself).
template <DType kT, bool kNc>
__device__ __forceinline__ void load_four(const typename Elem<kT>::Bits* p, float (&f)[4]) {
  if constexpr (sizeof(typename Elem<kT>::Bits) == 4) {
    const uint4 w = kNc ? __ldg(reinterpret_cast<const uint4*>(p)) : *reinterpret_cast<const uint4*>(p);
    f[0] = Elem<kT>::to_float(w.x), f[1] = Elem<kT>::to_float(w.y);
    f[2] = Elem<kT>::to_float(w.z), f[3] = Elem<kT>::to_float(w.w);
  } else {
    const uint2 w = kNc ? __ldg(reinterpret_cast<const uint2*>(p)) : *reinterpret_cast<const uint2*>(p);
    f[0] = Elem<kT>::to_float(uint16_t(w.x)), f[1] = Elem<kT>::to_float(uint16_t(w.x >> 16));
    f[2] = Elem<kT>::to_float(uint16_t(w.y)), f[3] = Elem<kT>::to_float(uint16_t(w.y >> 16));
  }
}

template <DType kT>
__device__ __forceinline__ void store_four(typename Elem<kT>::Bits* p, const float (&f)[4]) {
  using Bits = typename Elem<kT>::Bits;
  const Bits b0 = Elem<kT>::from_float(f[0]), b1 = Elem<kT>::from_float(f[1]);
  const Bits b2 = Elem<kT>::from_float(f[2]), b3 = Elem<kT>::from_float(f[3]);
  if constexpr (sizeof(Bits) == 4) {
    *reinterpret_cast<uint4*>(p) = make_uint4(b0, b1, b2, b3);
  } else {
    *reinterpret_cast<uint2*>(p) = make_uint2(uint32_t(b0) | uint32_t(b1) << 16, uint32_t(b2) | uint32_t(b3) << 16);
  }
}

// Epilogue of the columns [col, col + 4) of one row (those < M): bias, activation, residual,
// rounding; vector loads and stores when `vec` (M % 4 == 0 and every pointer aligned for it).
template <DType kT>
__device__ __forceinline__ void epilogue_four(const LinearParams& p, int64_t row, int64_t col, const float (&acc)[4],
                                              bool vec) {
  using Bits = typename Elem<kT>::Bits;
  const Bits* __restrict__ bias = static_cast<const Bits*>(p.bias);  // (m,) or null
  const Bits* residual = static_cast<const Bits*>(p.residual);       // (n, m) or null; may be out
  Bits* out = static_cast<Bits*>(p.out);                             // (n, m)
  const int64_t at = row * p.m + col;
  if (vec) {
    float b[4] = {0.0f, 0.0f, 0.0f, 0.0f}, r[4] = {0.0f, 0.0f, 0.0f, 0.0f}, o[4];
    if (bias != nullptr) load_four<kT, true>(bias + col, b);
    if (residual != nullptr) load_four<kT, false>(residual + at, r);
#pragma unroll
    for (int j = 0; j < 4; ++j) o[j] = linear_epilogue(acc[j], b[j], p.activation, r[j]);
    store_four<kT>(out + at, o);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (col + j < p.m) {
      const float b = bias ? Elem<kT>::to_float(bias[col + j]) : 0.0f;
      const float r = residual ? Elem<kT>::to_float(residual[at + j]) : 0.0f;
      out[at + j] = Elem<kT>::from_float(linear_epilogue(acc[j], b, p.activation, r));
    }
  }
}

// kV: k-values per global load (4, or 1 for the predicated scalar path).
template <DType kT, int kV>
__global__ void __launch_bounds__(kThreads, 2) linear_cuda_core_kernel(LinearParams p, bool vec_out) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using Bits = typename Elem<kT>::Bits;
  FASTRADIO_SHARED(16, float, xs, [2][kTileK][kSmemStride]);
  FASTRADIO_SHARED(16, float, ws, [2][kTileK][kSmemStride]);
  const Bits* __restrict__ x = static_cast<const Bits*>(p.x);       // (n, k)
  const Bits* __restrict__ w = static_cast<const Bits*>(p.weight);  // (m, k)
  const int64_t tiles_r = (p.n + kTile - 1) / kTile;
  const int64_t tiles_c = (p.m + kTile - 1) / kTile;
  const LinearTile tile = linear_block_tile(blockIdx.x, tiles_r, tiles_c, kLinearGroupRows);
  const int64_t row0 = tile.row_tile * kTile;
  const int64_t col0 = tile.col_tile * kTile;
  const int t = int(threadIdx.x);

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  TileLoader<kT, kV> xl(x, p.n, p.k, row0), wl(w, p.m, p.k, col0);
  xl.load(0, p.k);
  wl.load(0, p.k);
  xl.store(xs[0]);
  wl.store(ws[0]);
  __syncthreads();
  const int steps = int((p.k + kTileK - 1) / kTileK);
  for (int s = 0; s < steps; ++s) {
    const int buf = int(s & 1);
    const bool more = s + 1 < steps;
    if (more) {  // in flight while this step's FMAs run
      xl.load((s + 1) * kTileK, p.k);
      wl.load((s + 1) * kTileK, p.k);
    }
#pragma unroll 1
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[8], b[8];
      *reinterpret_cast<float4*>(a) = *reinterpret_cast<const float4*>(&xs[buf][kk][block_row(t, 0)]);
      *reinterpret_cast<float4*>(a + 4) = *reinterpret_cast<const float4*>(&xs[buf][kk][block_row(t, 4)]);
      *reinterpret_cast<float4*>(b) = *reinterpret_cast<const float4*>(&ws[buf][kk][block_col(t, 0)]);
      *reinterpret_cast<float4*>(b + 4) = *reinterpret_cast<const float4*>(&ws[buf][kk][block_col(t, 4)]);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = linear_fma(a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other buffer was last read before the previous barrier
      xl.store(xs[buf ^ 1]);
      wl.store(ws[buf ^ 1]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t row = row0 + block_row(t, i);
    if (row >= p.n) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t col = col0 + block_col(t, 4 * h);
      if (col >= p.m) continue;
      const float four[4] = {acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]};
      epilogue_four<kT>(p, row, col, four, vec_out && col + 4 <= p.m);
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

bool aligned(const void* q, int64_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <DType kT>
Status launch_cuda_core(const LinearParams& p, cudaStream_t stream) {
  constexpr int kSize = int(sizeof(typename Elem<kT>::Bits));
  const int64_t blocks = ((p.n + kTile - 1) / kTile) * ((p.m + kTile - 1) / kTile);
  if (blocks > INT32_MAX) return Status::kInvalidArgument;
  // Four outputs per store: M % 4 == 0 keeps every row's groups aligned.
  const int64_t out_bytes = 4 * kSize;
  const bool vec_out = p.m % 4 == 0 && aligned(p.out, out_bytes) &&
                       (p.residual == nullptr || aligned(p.residual, out_bytes)) &&
                       (p.bias == nullptr || aligned(p.bias, out_bytes));
  if (linear_cc::vector_loads(p)) {
    FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(kThreads), 0, stream, linear_cuda_core_kernel<kT, 4>)(p, vec_out);
  } else {
    FASTRADIO_LAUNCH(dim3(unsigned(blocks)), dim3(kThreads), 0, stream, linear_cuda_core_kernel<kT, 1>)(p, vec_out);
  }
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

}  // namespace

Status linear_cuda_core(const LinearParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kFloat32: return launch_cuda_core<DType::kFloat32>(p, stream);
    case DType::kFloat16: return launch_cuda_core<DType::kFloat16>(p, stream);
    case DType::kBFloat16: return launch_cuda_core<DType::kBFloat16>(p, stream);
  }
  return Status::kUnsupportedDType;
}

Status linear_fwd(const LinearParams& p, cudaStream_t stream) {
  const Status s = linear_check(p);
  if (s != Status::kSuccess) return s;
  switch (p.tier) {
    case Tier::kCudaCore: return linear_cuda_core(p, stream);
#if FASTRADIO_HAS_LINEAR_MMA_SM75
    case Tier::kMmaSm75: return linear_mma_sm75(p, stream);
#endif
#if FASTRADIO_HAS_LINEAR_MMA_SM80
    case Tier::kMmaSm80: return linear_mma_sm80(p, stream);
#endif
#if FASTRADIO_HAS_LINEAR_WGMMA_SM90A
    case Tier::kWgmmaSm90a:
      if (linear_sm90a_takes(p)) return linear_wgmma_sm90a(p, stream);
      // No tensor map over x / W (K % 8 != 0 or a misaligned pointer): the sm_80 kernel, which
      // runs on sm_90a too and has a predicated path for exactly this.
#if FASTRADIO_HAS_LINEAR_MMA_SM80
      return linear_mma_sm80(p, stream);
#else
      return linear_cuda_core(p, stream);
#endif
#endif
    default: return Status::kTierNotCompiled;
  }
}

}  // namespace fastradio

// add_layer_norm, CUDA-core tier: x_new = x + delta (one fp32 add, rounded to the residual dtype)
// and a = LayerNorm(x_new) * weight + bias with fp32 statistics, rounded to the compute dtype.
// Mirrors fastradio.backends.reference.add_layer_norm (DESIGN.md decisions 11-12).
// Tier: cuda_core, every arch from sm_60 (memory-bound: one read of x and delta, one write of
// x_new and a; weight and bias stay in L1/L2).
//
// A row group of G = blockDim.x threads owns one row (G <= 32, a power of two: several rows per
// warp, shuffles only; G > 32, a multiple of 32: one or more warps per row, plus shared memory),
// blockDim.y rows per block, grid-stride over rows. The row is loaded once into registers as fp32
// (up to 16 elements per thread as 16-byte loads of x when D and the pointers allow, else 4
// scalars), so the statistics are two passes over registers: the sum gives a shift, then
// sum(v - shift) and sum((v - shift)^2) give the mean correction and the variance (no
// E[x^2] - E[x]^2). Rows too wide for the registers of a 256-thread group (D > 4096 vectorised,
// D > 1024 scalar) take a streaming kernel that re-reads its own x_new (three passes).
#include "add_layer_norm/add_layer_norm.h"
#include "common/kernel.h"

#include <algorithm>

namespace fastradio {
namespace {

// Threads per block: with __launch_bounds__(kMaxThreads, 1) every arch allows >= 128 registers per
// thread (sm_62 has 32K per SM). The explicit minimum of 1 block matters: without it ptxas trades a
// few bytes of spills for occupancy on some archs (seen on sm_75, sm_90, sm_120), which the gate
// forbids; the kernels need 46-153 registers depending on arch, compiler and dtypes.
constexpr int kMaxThreads = 256;
constexpr int kTargetThreads = 256;
constexpr int kMaxWarps = kMaxThreads / 32;
constexpr int kCacheFloats = 16;  // row elements one thread holds (fp32 registers), vectorised path
constexpr int kItemsScalar = 4;   // elements per thread, scalar path

// kN contiguous elements of dtype kT at p (aligned to their size): loads into fp32, stores from
// fp32 (with RNE rounding) or from bits. 16/8/4/2-byte accesses.
template <DType kT, int kN>
struct VecIO {
  using Bits = typename Elem<kT>::Bits;
  static constexpr int kSize = int(sizeof(Bits));
  static constexpr int kBytes = kN * kSize;
  static constexpr int kWords = kBytes >= 4 ? kBytes / 4 : 1;
  static_assert(kBytes == 16 || kBytes == 8 || kBytes == 4 || kBytes == 2, "unsupported vector size");

  static __device__ __forceinline__ void unpack(const uint32_t (&w)[kWords], float (&out)[kN]) {
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      if constexpr (kSize == 4) {
        out[k] = Elem<kT>::to_float(w[k]);
      } else {
        out[k] = Elem<kT>::to_float(static_cast<uint16_t>(w[k / 2] >> (16 * (k % 2))));
      }
    }
  }

  // The raw words of the vector. kNc: read-only for the whole kernel (ld.global.nc); else a plain,
  // coherent load.
  template <bool kNc = true>
  static __device__ __forceinline__ void load_raw(const Bits* p, uint32_t (&w)[kWords]) {
    if constexpr (kBytes == 16) {
      const uint4 r = kNc ? __ldg(reinterpret_cast<const uint4*>(p)) : *reinterpret_cast<const uint4*>(p);
      w[0] = r.x, w[1] = r.y, w[2] = r.z, w[3] = r.w;
    } else if constexpr (kBytes == 8) {
      const uint2 r = kNc ? __ldg(reinterpret_cast<const uint2*>(p)) : *reinterpret_cast<const uint2*>(p);
      w[0] = r.x, w[1] = r.y;
    } else if constexpr (kBytes == 4) {
      w[0] = kNc ? __ldg(reinterpret_cast<const unsigned int*>(p)) : *reinterpret_cast<const unsigned int*>(p);
    } else {
      w[0] = kNc ? __ldg(reinterpret_cast<const unsigned short*>(p)) : *reinterpret_cast<const unsigned short*>(p);
    }
  }

  template <bool kNc = true>
  static __device__ __forceinline__ void load(const Bits* p, float (&out)[kN]) {
    uint32_t w[kWords];
    load_raw<kNc>(p, w);
    unpack(w, out);
  }

  static __device__ __forceinline__ void store_bits(Bits* p, const Bits (&b)[kN]) {
    uint32_t w[kWords];
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = 0;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      if constexpr (kSize == 4) {
        w[k] = b[k];
      } else {
        w[k / 2] |= uint32_t(b[k]) << (16 * (k % 2));
      }
    }
    if constexpr (kBytes == 16) {
      *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    } else if constexpr (kBytes == 8) {
      *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
    } else if constexpr (kBytes == 4) {
      *reinterpret_cast<unsigned int*>(p) = w[0];
    } else {
      *reinterpret_cast<unsigned short*>(p) = static_cast<unsigned short>(w[0]);
    }
  }

  static __device__ __forceinline__ void store(Bits* p, const float (&v)[kN]) {
    Bits b[kN];
#pragma unroll
    for (int k = 0; k < kN; ++k) b[k] = Elem<kT>::from_float(v[k]);
    store_bits(p, b);
  }
};

// Sums v[] over the row group (blockDim.x threads) and hands every thread of the group the same
// bits: an xor butterfly gives identical results on all lanes (fp32 + commutes), and the
// cross-warp step reads the per-warp partials in one fixed order. Every thread of the block calls
// it (rows past the end with zeros). `smem` must not be reused before the next __syncthreads.
template <int kN>
__device__ __forceinline__ void row_group_sum(float (&v)[kN], float (&smem)[kN][kMaxWarps]) {
  const int g = blockDim.x;
  const int width = g < 32 ? g : 32;
#pragma unroll
  for (int k = 0; k < kN; ++k)
    for (int off = width / 2; off > 0; off /= 2) v[k] += __shfl_xor_sync(0xffffffffu, v[k], off);
  if (g > 32) {  // uniform over the block
    const int warps = g / 32;
    const int slot = threadIdx.y * warps;
    if (threadIdx.x % 32 == 0) {
#pragma unroll
      for (int k = 0; k < kN; ++k) smem[k][slot + threadIdx.x / 32] = v[k];
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      float s = smem[k][slot];
      for (int i = 1; i < warps; ++i) s += smem[k][slot + i];
      v[k] = s;
    }
  }
}

// The row in registers. Thread tx of a group holds vectors j = tx + i*G, i < kItems, of kVec
// elements; the launcher picks G with G*kItems*kVec >= D. kVec > 1 needs D % kVec == 0. Offsets
// inside a row are 32-bit (D <= kMaxThreads*kItems*kVec here), row offsets 64-bit.
template <DType kX, DType kW, int kVec, int kItems>
__global__ void __launch_bounds__(kMaxThreads, 1) add_layer_norm_kernel(AddLayerNormParams p) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using XIO = VecIO<kX, kVec>;
  using WIO = VecIO<kW, kVec>;
  using XBits = typename Elem<kX>::Bits;
  using WBits = typename Elem<kW>::Bits;
  FASTRADIO_SHARED(4, float, sum_smem, [1][kMaxWarps]);
  FASTRADIO_SHARED(4, float, dev_smem, [2][kMaxWarps]);
  const XBits* __restrict__ x = static_cast<const XBits*>(p.x);          // (rows, dim)
  const WBits* __restrict__ delta = static_cast<const WBits*>(p.delta);  // (rows, dim) or null
  const WBits* __restrict__ weight = static_cast<const WBits*>(p.weight);  // (dim,)
  const WBits* __restrict__ bias = static_cast<const WBits*>(p.bias);      // (dim,)
  XBits* __restrict__ x_new = static_cast<XBits*>(p.x_new);              // (rows, dim) or null
  WBits* __restrict__ out = static_cast<WBits*>(p.out);                  // (rows, dim)
  const int g = blockDim.x;
  const int tx = threadIdx.x;
  const int vecs = static_cast<int>(p.dim / kVec);
  const bool has_delta = delta != nullptr;
  const int64_t step = int64_t(gridDim.x) * blockDim.y;
  for (int64_t base = int64_t(blockIdx.x) * blockDim.y; base < p.rows; base += step) {
    const int64_t n = base + threadIdx.y;
    const bool live = n < p.rows;
    const int64_t row = n * p.dim;  // element offset of row n
    // Every load of the row is issued before any of them is used (the loads of one item do not
    // wait for the previous item's arithmetic).
    uint32_t xw[kItems][XIO::kWords], dw[kItems][WIO::kWords];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int j = tx + i * g;
      if (live && j < vecs) {
        XIO::load_raw(x + row + j * kVec, xw[i]);
        if (has_delta) WIO::load_raw(delta + row + j * kVec, dw[i]);
      }
    }
    float v[kItems][kVec];
    float sum[1] = {0.0f};
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = 0.0f;
      if (live && tx + i * g < vecs) {
        XIO::unpack(xw[i], v[i]);
        if (has_delta) {
          float d[kVec];
          WIO::unpack(dw[i], d);
#pragma unroll
          for (int k = 0; k < kVec; ++k) v[i][k] = Elem<kX>::to_float(add_layer_norm_residual<kX>(v[i][k], d[k]));
        }
#pragma unroll
        for (int k = 0; k < kVec; ++k) sum[0] += v[i][k];
      }
    }
    // x_new after every load of the row, so no store sits between the loads. v holds the rounded
    // values exactly, so converting back gives the same bits.
    if (has_delta) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int j = tx + i * g;
        if (live && j < vecs) {
          XBits b[kVec];
#pragma unroll
          for (int k = 0; k < kVec; ++k) b[k] = Elem<kX>::from_float(v[i][k]);
          XIO::store_bits(x_new + row + j * kVec, b);
        }
      }
    }
    row_group_sum(sum, sum_smem);
    const float shift = add_layer_norm_shift(sum[0], p.dim);
    float dev[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (live && tx + i * g < vecs) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float t = v[i][k] - shift;
          dev[0] += t;
          dev[1] += t * t;
        }
      }
    }
    row_group_sum(dev, dev_smem);
    const LayerNormStats s = add_layer_norm_stats(shift, dev[0], dev[1], p.dim, p.eps);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int j = tx + i * g;
      if (live && j < vecs) {
        float w[kVec], b[kVec], o[kVec];
        WIO::load(weight + j * kVec, w);
        WIO::load(bias + j * kVec, b);
#pragma unroll
        for (int k = 0; k < kVec; ++k) o[k] = add_layer_norm_apply(v[i][k], s, w[k], b[k]);
        WIO::store(out + row + j * kVec, o);
      }
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

// Rows wider than the register cache: one block per row, three passes over it. Pass 1 writes
// x_new; passes 2 and 3 read back the elements this same thread wrote (plain loads: the .nc path
// may not see writes of the running kernel), which mostly hit L1/L2.
template <DType kX, DType kW>
__global__ void __launch_bounds__(kMaxThreads, 1) add_layer_norm_wide_kernel(AddLayerNormParams p) {
#if FASTRADIO_DEVICE_ARCH >= 600
  using XIO = VecIO<kX, 1>;
  using WIO = VecIO<kW, 1>;
  using XBits = typename Elem<kX>::Bits;
  using WBits = typename Elem<kW>::Bits;
  FASTRADIO_SHARED(4, float, sum_smem, [1][kMaxWarps]);
  FASTRADIO_SHARED(4, float, dev_smem, [2][kMaxWarps]);
  const XBits* x = static_cast<const XBits*>(p.x);          // (rows, dim)
  const WBits* delta = static_cast<const WBits*>(p.delta);  // (rows, dim) or null
  const WBits* __restrict__ weight = static_cast<const WBits*>(p.weight);  // (dim,)
  const WBits* __restrict__ bias = static_cast<const WBits*>(p.bias);      // (dim,)
  XBits* x_new = static_cast<XBits*>(p.x_new);              // (rows, dim) or null
  WBits* __restrict__ out = static_cast<WBits*>(p.out);     // (rows, dim)
  const int64_t g = blockDim.x;
  const int64_t dim = p.dim;
  const bool has_delta = delta != nullptr;
  const XBits* src = has_delta ? x_new : x;  // what passes 2 and 3 normalise
  for (int64_t n = blockIdx.x; n < p.rows; n += gridDim.x) {  // blockDim.y == 1: uniform
    const int64_t row = n * dim;
    float sum[1] = {0.0f};
    for (int64_t d = threadIdx.x; d < dim; d += g) {
      float v[1];
      XIO::load(x + row + d, v);
      if (has_delta) {
        float dl[1];
        WIO::load(delta + row + d, dl);
        const XBits b[1] = {add_layer_norm_residual<kX>(v[0], dl[0])};
        XIO::store_bits(x_new + row + d, b);
        v[0] = Elem<kX>::to_float(b[0]);
      }
      sum[0] += v[0];
    }
    row_group_sum(sum, sum_smem);
    const float shift = add_layer_norm_shift(sum[0], dim);
    float dev[2] = {0.0f, 0.0f};
    for (int64_t d = threadIdx.x; d < dim; d += g) {
      float v[1];
      XIO::template load<false>(src + row + d, v);
      const float t = v[0] - shift;
      dev[0] += t;
      dev[1] += t * t;
    }
    row_group_sum(dev, dev_smem);
    const LayerNormStats s = add_layer_norm_stats(shift, dev[0], dev[1], dim, p.eps);
    for (int64_t d = threadIdx.x; d < dim; d += g) {
      float v[1], w[1], b[1];
      XIO::template load<false>(src + row + d, v);
      WIO::load(weight + d, w);
      WIO::load(bias + d, b);
      const float o[1] = {add_layer_norm_apply(v[0], s, w[0], b[0])};
      WIO::store(out + row + d, o);
    }
  }
#else
  FASTRADIO_UNREACHABLE_ARCH();
#endif
}

int64_t grid_blocks(int64_t rows, int rows_per_block) {
  return std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, int64_t(1) << 30);
}

template <DType kX, DType kW, int kVec, int kItems>
Status launch_cached(const AddLayerNormParams& p, cudaStream_t stream) {
  const int64_t groups = (p.dim / kVec + kItems - 1) / kItems;  // threads one row needs
  int g = 1;
  if (groups <= 32) {
    while (g < groups) g *= 2;  // a power of two: groups never straddle a warp
  } else {
    g = int((groups + 31) / 32 * 32);
  }
  const int r = std::max(1, kTargetThreads / g);
  FASTRADIO_LAUNCH(dim3(unsigned(grid_blocks(p.rows, r))), dim3(g, r), 0, stream,
                   add_layer_norm_kernel<kX, kW, kVec, kItems>)(p);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

bool aligned(const void* q, int64_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <DType kX, DType kW>
Status launch(const AddLayerNormParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / int(sizeof(typename Elem<kX>::Bits));  // 16-byte accesses of x
  constexpr int64_t kWBytes = kVec * int64_t(sizeof(typename Elem<kW>::Bits));
  const bool vec = p.dim % kVec == 0 && aligned(p.x, 16) && (p.x_new == nullptr || aligned(p.x_new, 16)) &&
                   (p.delta == nullptr || aligned(p.delta, kWBytes)) && aligned(p.weight, kWBytes) &&
                   aligned(p.bias, kWBytes) && aligned(p.out, kWBytes);
  if (vec && p.dim <= int64_t(kMaxThreads) * kCacheFloats)
    return launch_cached<kX, kW, kVec, kCacheFloats / kVec>(p, stream);
  if (p.dim <= int64_t(kMaxThreads) * kItemsScalar) return launch_cached<kX, kW, 1, kItemsScalar>(p, stream);
  FASTRADIO_LAUNCH(dim3(unsigned(grid_blocks(p.rows, 1))), dim3(kMaxThreads), 0, stream,
                   add_layer_norm_wide_kernel<kX, kW>)(p);
  FASTRADIO_CUDA_TRY(cudaGetLastError());
  return Status::kSuccess;
}

Status add_layer_norm_cuda_core(const AddLayerNormParams& p, cudaStream_t stream) {
  using D = DType;
  if (p.x_dtype == p.w_dtype) {
    switch (p.x_dtype) {
      case D::kFloat32: return launch<D::kFloat32, D::kFloat32>(p, stream);
      case D::kFloat16: return launch<D::kFloat16, D::kFloat16>(p, stream);
      case D::kBFloat16: return launch<D::kBFloat16, D::kBFloat16>(p, stream);
    }
  } else if (p.x_dtype == D::kFloat32) {
    switch (p.w_dtype) {
      case D::kFloat16: return launch<D::kFloat32, D::kFloat16>(p, stream);
      case D::kBFloat16: return launch<D::kFloat32, D::kBFloat16>(p, stream);
      default: break;
    }
  }
  return Status::kUnsupportedDType;
}

}  // namespace

Status add_layer_norm_fwd(const AddLayerNormParams& p, cudaStream_t stream) {
  const Status s = add_layer_norm_check(p);
  if (s != Status::kSuccess) return s;
  // This file is the cuda_core tier, which every build compiles; other tiers would live in their
  // own files and be dispatched here under FASTRADIO_HAS_ADD_LAYER_NORM_<TIER>.
  switch (p.tier) {
    case Tier::kCudaCore: return add_layer_norm_cuda_core(p, stream);
    default: return Status::kTierNotCompiled;
  }
}

}  // namespace fastradio

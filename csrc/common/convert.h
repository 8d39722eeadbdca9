// fp32 -> fp16/bf16 with round-to-nearest-even, identical on every arch and both compilers,
// and usable on the host (host twins of kernels in tests). bf16 is done with integer ops:
// cvt.rn.bf16.f32 needs sm_80 and cuda_bf16.h's fallbacks differ between nvcc and clang.
// Also the exact widening conversions and Elem<DType>, the storage type of each dtype, shared by
// every kernel that reads or writes fp32/fp16/bf16 tensors.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/arch.h"
#include "common/dtype.h"

namespace fastradio {

FASTRADIO_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

// bf16 bits of x, rounded to nearest even; NaN stays NaN (quietened), infinities stay.
FASTRADIO_HD uint16_t float_to_bf16_bits(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// fp16 bits of x, rounded to nearest even, with subnormals, overflow to inf and NaN.
FASTRADIO_HD uint16_t float_to_fp16_bits(float x) {
#if defined(__CUDA_ARCH__)
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
  return h;
#else
  const uint32_t u = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {  // below the smallest normal fp16 (2^-14): subnormal or zero
    if (a < 0x33000000u) return sign;  // <= 2^-25 rounds to 0 (2^-25 itself is a tie to even 0)
    const uint32_t e = a >> 23;               // 102..112
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;          // 14..24: value = m * 2^(e-150) in units of 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15, keep 23-bit mantissa
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
#endif
}

// --- element conversions (bit patterns <-> fp32), identical on host and device ------------------

// fp16 bits -> fp32, exact (normals, subnormals, infinities, NaN payloads).
FASTRADIO_HD float fp16_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: shift the mantissa up to an implicit leading 1
    uint32_t e = 113u;
    while (!(man & 0x400u)) {
      man <<= 1;
      --e;
    }
    u = sign | (e << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// bf16 bits -> fp32, exact.
FASTRADIO_HD float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

FASTRADIO_HD float bits_to_float_fp32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// Element type of a DType: its storage and fp32 conversions.
template <DType kT>
struct Elem;

template <>
struct Elem<DType::kFloat32> {
  using Bits = uint32_t;
  static FASTRADIO_HD float to_float(Bits b) { return bits_to_float_fp32(b); }
  static FASTRADIO_HD Bits from_float(float f) { return float_bits(f); }
};

template <>
struct Elem<DType::kFloat16> {
  using Bits = uint16_t;
  static FASTRADIO_HD float to_float(Bits b) { return fp16_bits_to_float(b); }
  static FASTRADIO_HD Bits from_float(float f) { return float_to_fp16_bits(f); }
};

template <>
struct Elem<DType::kBFloat16> {
  using Bits = uint16_t;
  static FASTRADIO_HD float to_float(Bits b) { return bf16_bits_to_float(b); }
  static FASTRADIO_HD Bits from_float(float f) { return float_to_bf16_bits(f); }
};

}  // namespace fastradio

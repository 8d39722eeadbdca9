// fp32 -> fp16/bf16 with round-to-nearest-even, identical on every arch and both compilers,
// and usable on the host (host twins of kernels in tests). bf16 is done with integer ops:
// cvt.rn.bf16.f32 needs sm_80 and cuda_bf16.h's fallbacks differ between nvcc and clang.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/arch.h"

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

}  // namespace fastradio

#include "emu/driver/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "common/convert.h"

namespace fastradio::driver {

uint32_t encode(DType t, double v) {
  const float f = static_cast<float>(v);
  switch (t) {
    case DType::kFloat32: return float_bits(f);
    case DType::kFloat16: return float_to_fp16_bits(f);
    case DType::kBFloat16: return float_to_bf16_bits(f);
  }
  return 0;
}

double decode(DType t, uint32_t bits) {
  switch (t) {
    case DType::kFloat32: return bits_to_float_fp32(bits);
    case DType::kFloat16: return fp16_bits_to_float(static_cast<uint16_t>(bits));
    case DType::kBFloat16: return bf16_bits_to_float(static_cast<uint16_t>(bits));
  }
  return 0.0;
}

const char* short_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "f32";
    case DType::kFloat16: return "f16";
    case DType::kBFloat16: return "bf16";
  }
  return "?";
}

bool parse_dtype(const char* s, DType* out) {
  static const struct {
    const char* name;
    DType t;
  } kNames[] = {{"f32", DType::kFloat32},  {"fp32", DType::kFloat32},  {"float32", DType::kFloat32},
                {"f16", DType::kFloat16},  {"fp16", DType::kFloat16},  {"float16", DType::kFloat16},
                {"bf16", DType::kBFloat16}, {"bfloat16", DType::kBFloat16}};
  for (const auto& n : kNames)
    if (std::strcmp(s, n.name) == 0) {
      *out = n.t;
      return true;
    }
  return false;
}

Buffer::Buffer(DType dtype, int64_t numel, int64_t offset) : dtype_(dtype), numel_(numel) {
  const size_t size = size_t((offset + numel) * dtype_size(dtype));
  if (posix_memalign(&alloc_, 64, size) != 0) throw std::bad_alloc();
  data_ = static_cast<unsigned char*>(alloc_) + offset * dtype_size(dtype);
  std::memset(alloc_, 0, size);
}

Buffer::~Buffer() { std::free(alloc_); }

uint32_t Buffer::bits(int64_t i) const {
  if (dtype_ == DType::kFloat32) {
    uint32_t u;
    std::memcpy(&u, data_ + 4 * i, 4);
    return u;
  }
  uint16_t h;
  std::memcpy(&h, data_ + 2 * i, 2);
  return h;
}

void Buffer::set(int64_t i, double v) {
  const uint32_t b = encode(dtype_, v);
  if (dtype_ == DType::kFloat32) {
    std::memcpy(data_ + 4 * i, &b, 4);
  } else {
    const uint16_t h = static_cast<uint16_t>(b);
    std::memcpy(data_ + 2 * i, &h, 2);
  }
}

std::vector<double> Buffer::values() const {
  std::vector<double> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[size_t(i)] = get(i);
  return v;
}

void Buffer::fill_nan() {
  if (dtype_ == DType::kFloat32) {
    const uint32_t nan = 0x7fc0dead;
    for (int64_t i = 0; i < numel_; ++i) std::memcpy(data_ + 4 * i, &nan, 4);
  } else {
    const uint16_t nan = dtype_ == DType::kFloat16 ? 0x7e5a : 0x7fda;
    for (int64_t i = 0; i < numel_; ++i) std::memcpy(data_ + 2 * i, &nan, 2);
  }
}

std::vector<unsigned char> Buffer::snapshot() const { return {data_, data_ + bytes()}; }

void Buffer::restore(const std::vector<unsigned char>& s) { std::memcpy(data_, s.data(), s.size()); }

}  // namespace fastradio::driver

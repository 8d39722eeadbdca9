// Host tensors handed to the kernels (plain memory: on the emulated device the launchers take
// host pointers). A buffer is one exact-size allocation, 64-byte aligned, optionally starting
// `offset` elements in so that a case can reach a kernel's unaligned-pointer path; an exact size
// lets AddressSanitizer see a read past the end. Values go in and out as doubles: `set` rounds to
// fp32 and then to the dtype (round to nearest even), `get` widens exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "common/dtype.h"

namespace fastradio::driver {

// Storage bits of v in dtype t (v rounded to fp32, then to t), and back (exact).
uint32_t encode(DType t, double v);
double decode(DType t, uint32_t bits);
inline double round_to(DType t, double v) { return decode(t, encode(t, v)); }

// "f32", "f16", "bf16": the spelling of case names and of --dtype.
const char* short_name(DType t);
bool parse_dtype(const char* s, DType* out);

class Buffer {
 public:
  Buffer(DType dtype, int64_t numel, int64_t offset = 0);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  int64_t bytes() const { return numel_ * dtype_size(dtype_); }
  void* data() { return data_; }
  const void* data() const { return data_; }

  uint32_t bits(int64_t i) const;
  double get(int64_t i) const { return decode(dtype_, bits(i)); }
  void set(int64_t i, double v);
  std::vector<double> values() const;

  // A quiet NaN with a payload in every element: what an unwritten output reads as.
  void fill_nan();
  std::vector<unsigned char> snapshot() const;
  void restore(const std::vector<unsigned char>& s);

 private:
  DType dtype_;
  int64_t numel_;
  void* alloc_ = nullptr;
  unsigned char* data_ = nullptr;
};

}  // namespace fastradio::driver

// Element types crossing the binding. Python reads the codes from _C.dtype_codes(); nothing
// else may hard-code the numbers.
#pragma once

#include <cstdint>

namespace fastradio {

enum class DType : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
};

inline constexpr int kNumDTypes = 3;

inline bool is_valid_dtype(int code) { return code >= 0 && code < kNumDTypes; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "unknown";
}

inline int64_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

}  // namespace fastradio

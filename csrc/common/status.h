// Error codes returned by every fastradio launcher. Torch-free and Python-free: a launcher
// reports what went wrong; the binding (csrc/python/module.cpp) turns it into an exception.
#pragma once

#include <cuda_runtime_api.h>

namespace fastradio {

enum class Status : int {
  kSuccess = 0,
  kInvalidArgument = 1,   // null pointer, non-positive or overflowing size
  kUnsupportedDType = 2,  // a dtype code outside DType, or one the op does not take
  kUnknownTier = 3,       // a tier code outside Tier
  kTierNotCompiled = 4,   // a known tier this build did not compile for this op
  kCudaError = 5,         // a CUDA runtime call or launch failed; see last_cuda_error()
};

inline const char* status_name(Status s) {
  switch (s) {
    case Status::kSuccess: return "success";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kUnsupportedDType: return "unsupported dtype";
    case Status::kUnknownTier: return "unknown tier";
    case Status::kTierNotCompiled: return "tier not compiled in this build";
    case Status::kCudaError: return "CUDA error";
  }
  return "unknown status";
}

// The CUDA error behind the last Status::kCudaError on this thread (cudaSuccess if none).
// Thread-local so that concurrent launches from different threads do not mix their reports.
inline cudaError_t& last_cuda_error() {
  static thread_local cudaError_t err = cudaSuccess;
  return err;
}

}  // namespace fastradio

// Inside a launcher returning Status: evaluate a CUDA runtime call, record and report a failure.
#define FASTRADIO_CUDA_TRY(expr)                         \
  do {                                                   \
    const cudaError_t fastradio_err_ = (expr);           \
    if (fastradio_err_ != cudaSuccess) {                 \
      ::fastradio::last_cuda_error() = fastradio_err_;   \
      return ::fastradio::Status::kCudaError;            \
    }                                                    \
  } while (0)

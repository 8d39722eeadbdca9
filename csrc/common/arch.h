// Arch guards for kernel BODIES (never declarations: every kernel and launcher must exist in
// every compilation pass, so that host code links and the binding can refuse cleanly).
//
//   __global__ void k(Params p) {
//   #if FASTRADIO_DEVICE_ARCH >= 800
//     ... body using sm_80 instructions ...
//   #else
//     FASTRADIO_UNREACHABLE_ARCH();
//   #endif
//   }
//
// In the host pass FASTRADIO_DEVICE_ARCH is "infinite", so every body is parsed there too; on the
// emulated device it is the emulated arch (host and "device" code are one pass there).
#pragma once

#if defined(__CUDA_ARCH__)
#define FASTRADIO_DEVICE_ARCH __CUDA_ARCH__
#elif defined(FASTRADIO_EMULATION)
// The emulated device (csrc/emu/): kernel bodies, their arch guards and their shared-memory
// static_asserts are compiled for the emulated arch (FASTRADIO_EMU_ARCH, e.g. 80 for sm_80).
#define FASTRADIO_DEVICE_ARCH (FASTRADIO_EMU_ARCH * 10)
#else
#define FASTRADIO_DEVICE_ARCH 1000000
#endif

// The binding checks archs before any launch; reaching a compiled-out body is a bug.
#define FASTRADIO_UNREACHABLE_ARCH() __trap()

// Whether this translation unit compiles device code: a CUDA compilation, or a kernel source built
// for the emulated device (emu/device.h force-included). Device-only helpers in shared headers are
// guarded by it (host-only TUs, e.g. the bindings and host twins, skip them).
#if defined(__CUDACC__) || defined(FASTRADIO_EMU_DEVICE_H)
#define FASTRADIO_DEVICE_CODE 1
#endif

// __host__ __device__ for small math helpers shared by kernels and their host twins.
#if defined(__CUDACC__)
#define FASTRADIO_HD __host__ __device__ __forceinline__
#else
#define FASTRADIO_HD inline
#endif

namespace fastradio {

// Shared memory one block may use, in bytes, per arch: static __shared__ is capped at 48 KiB
// everywhere; dynamic shared memory can go up to the opt-in limit below (after
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)). From the CUDA
// C++ Programming Guide's per-compute-capability table. A kernel using dynamic shared memory
// static_asserts its size in its body: static_assert(kSmem <= smem_optin_limit(FASTRADIO_DEVICE_ARCH / 10)).
// csrc/tools/compile_gate.py reads this table; keep one {arch, KiB} pair per line.
struct SmemLimit {
  int arch;
  int kib;
};
inline constexpr int kStaticSmemLimit = 48 * 1024;
inline constexpr SmemLimit kSmemOptinLimits[] = {
    {60, 48},  {61, 48},  {62, 48},                          // Pascal
    {70, 96},  {72, 96},  {75, 64},                          // Volta, Xavier, Turing
    {80, 163}, {86, 99},  {87, 163}, {88, 99}, {89, 99},     // Ampere, Orin, Ada
    {90, 227}, {100, 227}, {103, 227}, {110, 227},           // Hopper, Blackwell, Thor
    {120, 99}, {121, 99},                                    // Blackwell (GeForce/RTX Pro, Spark)
};

// Opt-in limit of `arch` (e.g. 80); the host pass (FASTRADIO_DEVICE_ARCH / 10 >= 100000) is not
// limited, and an arch missing from the table gets the 48 KiB every arch has. __host__ __device__
// so that a kernel body can static_assert against it (nvcc refuses host-only constexpr calls there).
FASTRADIO_HD constexpr int smem_optin_limit(int arch) {
  if (arch >= 100000) return 1 << 30;
  for (const SmemLimit& l : kSmemOptinLimits)
    if (l.arch == arch) return l.kib * 1024;
  return kStaticSmemLimit;
}

}  // namespace fastradio

// The three pieces of CUDA syntax a kernel source writes through a macro, so that the same .cu
// files compile for a GPU (nvcc, clang) and, unchanged, as host C++ for the emulated device
// (csrc/emu/, FASTRADIO_EMULATION; DESIGN.md "The emulated device"):
//
//   FASTRADIO_LAUNCH(grid, block, smem, stream, kernel<A, B>)(args...);   // kernel<<<...>>>(args...)
//   FASTRADIO_SHARED(16, float, tile, [2][8][132]);   // __shared__ __align__(16) float tile[2][8][132];
//   FASTRADIO_DYNAMIC_SHARED(128, uint16_t, smem);     // extern __shared__ __align__(128) uint16_t smem[];
//
// The kernel comes last in FASTRADIO_LAUNCH so that the commas of its template arguments survive.
// Under emulation a launch runs every block on the CPU, and a block's static shared arrays and its
// dynamic buffer are heap buffers of exactly the declared / launched size, filled with 0xFF (NaN in
// every float format) when the block starts. Nothing else in a kernel body differs between the two builds.
#pragma once

#if defined(FASTRADIO_EMULATION)
#if !defined(FASTRADIO_EMU_DEVICE_H)
#error "FASTRADIO_EMULATION: compile kernel sources with -include emu/device.h (csrc/emu/CMakeLists.txt)"
#endif
#define FASTRADIO_LAUNCH(grid, block, smem, stream, ...) FASTRADIO_EMU_LAUNCH(grid, block, smem, stream, __VA_ARGS__)
#define FASTRADIO_SHARED(align, T, name, dims) FASTRADIO_EMU_SHARED(align, T, name, dims)
#define FASTRADIO_DYNAMIC_SHARED(align, T, name) FASTRADIO_EMU_DYNAMIC_SHARED(align, T, name)
#else
#define FASTRADIO_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define FASTRADIO_SHARED(align, T, name, dims) __shared__ __align__(align) T name dims
#define FASTRADIO_DYNAMIC_SHARED(align, T, name) extern __shared__ __align__(align) T name[]
#endif

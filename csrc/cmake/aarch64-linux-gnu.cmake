# CMake toolchain file: fastradio for aarch64 Linux (Jetson, Grace), cross-built on x86_64 with
# Debian's aarch64-linux-gnu cross g++ for host code and the x86_64 nvcc for device code
# (csrc/tools/cross_aarch64.py; DESIGN.md decision 29). Pass CMAKE_CUDA_COMPILER = the nvcc of the
# toolkit overlay cross_aarch64.cuda_toolkit() makes: its targets/aarch64-linux holds the aarch64
# CUDA runtime, which CMake (CMakeDetermineCUDACompiler, FindCUDAToolkit) picks for this processor.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CUDA_HOST_COMPILER aarch64-linux-gnu-g++)
# nvcc's own default include/library folders (nvcc.profile) are those of targets/<dir>.
set(CMAKE_CUDA_FLAGS_INIT "-target-dir aarch64-linux")
# Programs (nvcc's helpers, Python, ptxas) run on the build machine; libraries and headers are the
# target's, but found anywhere (the aarch64 CUDA runtime sits in the toolkit overlay, not a sysroot).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# The emulated device (csrc/emu/, DESIGN.md "The emulated device"): the kernel sources of csrc/<op>/
# compiled as host C++ with emu/device.h force-included, linked with the emulator's runtime; no CUDA
# toolkit needed. Included by the top-level CMakeLists.txt when FASTRADIO_CPU_EMULATION=ON, which
# then builds nothing else. `python csrc/tools/emulate.py` configures, builds and runs it.
#
# Knobs (CMake variables):
#   FASTRADIO_EMU_ARCH       emulated arch, e.g. 80 (default) or 75: which tiers are compiled
#                            (MIN_ARCH <= arch), and what arch guards and shared-memory
#                            static_asserts see
#   FASTRADIO_EMU_SANITIZER  none (default) | thread | address (address + undefined)
#   FASTRADIO_EMU_SRC        the csrc/ folder to compile (default: this one); the mutation check
#                            points it at an edited copy
#   FASTRADIO_EMU_FMA        ON: -mfma (fmaf as one instruction; only where the CPU has FMA)
#   FASTRADIO_EMU_PYTHON     ON: also the emulated fastradio._C (Python module, same API as the
#                            real one; plain builds only)
#
# Targets: fastradio_emu_runtime, fastradio_emu_kernels (every tier the arch runs),
# fastradio_emu_driver (the test driver, csrc/emu/driver/), fastradio_emu_selftest (the emulator's
# own checks, csrc/emu/selftest/), and with FASTRADIO_EMU_PYTHON the module _C.

set(FASTRADIO_EMU_ARCH 80 CACHE STRING "emulated arch (e.g. 75, 80)")
set(FASTRADIO_EMU_SANITIZER none CACHE STRING "none | thread | address")
set(FASTRADIO_EMU_SRC "${CMAKE_CURRENT_LIST_DIR}/.." CACHE PATH "csrc/ folder to compile")
option(FASTRADIO_EMU_FMA "compile with -mfma" OFF)
option(FASTRADIO_EMU_PYTHON "build the emulated fastradio._C module" OFF)
cmake_path(ABSOLUTE_PATH FASTRADIO_EMU_SRC NORMALIZE OUTPUT_VARIABLE _emu_src)
string(REGEX REPLACE "/$" "" _emu_src "${_emu_src}")
if(NOT FASTRADIO_EMU_ARCH MATCHES "^[0-9]+$")
  message(FATAL_ERROR "FASTRADIO_EMU_ARCH must be a number like 80, got '${FASTRADIO_EMU_ARCH}'")
endif()
if(NOT FASTRADIO_EMU_SANITIZER MATCHES "^(none|thread|address)$")
  message(FATAL_ERROR "FASTRADIO_EMU_SANITIZER must be none, thread or address, got '${FASTRADIO_EMU_SANITIZER}'")
endif()

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

# One set of flags for everything (runtime, kernels, driver): the sanitizers need every object.
# -ffp-contract=off: the kernels' arithmetic as written (fmaf only where the source says so).
set(_emu_flags -g -ffp-contract=off -fno-strict-aliasing)
if(FASTRADIO_EMU_SANITIZER STREQUAL "thread")
  list(APPEND _emu_flags -O1 -fsanitize=thread)
  set(_emu_link -fsanitize=thread)
elseif(FASTRADIO_EMU_SANITIZER STREQUAL "address")
  list(APPEND _emu_flags -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fsanitize-recover=address,undefined)
  set(_emu_link -fsanitize=address,undefined)
else()
  list(APPEND _emu_flags -O2)
  set(_emu_link)
endif()
if(FASTRADIO_EMU_FMA)
  list(APPEND _emu_flags -mfma)
endif()

add_library(fastradio_emu_config INTERFACE)
target_include_directories(fastradio_emu_config INTERFACE "${_emu_src}/emu/include" "${_emu_src}")
target_compile_definitions(fastradio_emu_config INTERFACE FASTRADIO_EMULATION FASTRADIO_EMU_ARCH=${FASTRADIO_EMU_ARCH})
target_compile_options(fastradio_emu_config INTERFACE ${_emu_flags})
target_link_options(fastradio_emu_config INTERFACE ${_emu_link})

add_library(fastradio_emu_runtime STATIC "${_emu_src}/emu/runtime.cpp" "${_emu_src}/emu/fiber.cpp"
            "${_emu_src}/emu/hopper.cpp")
target_link_libraries(fastradio_emu_runtime PUBLIC fastradio_emu_config)

# --- the kernels: the ops' own CMakeLists.txt, read with emulated fastradio_add_kernel ----------------
set(_emu_kernel_sources)
set(_emu_binding_sources)
set(_emu_kernel_table "")
set(_emu_has_defs)

function(fastradio_add_kernel op)
  cmake_parse_arguments(K "" "TIER;MIN_ARCH" "ONLY_ARCHS;SOURCES" ${ARGN})
  if(NOT K_TIER OR NOT K_MIN_ARCH OR NOT K_SOURCES)
    message(FATAL_ERROR "fastradio_add_kernel(${op}): TIER, MIN_ARCH and SOURCES are required")
  endif()
  if(FASTRADIO_EMU_ARCH LESS K_MIN_ARCH)
    return()
  endif()
  if(K_ONLY_ARCHS AND NOT FASTRADIO_EMU_ARCH IN_LIST K_ONLY_ARCHS AND NOT "${FASTRADIO_EMU_ARCH}a" IN_LIST K_ONLY_ARCHS)
    return()
  endif()
  set(srcs)
  foreach(s IN LISTS K_SOURCES)
    cmake_path(ABSOLUTE_PATH s BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" OUTPUT_VARIABLE abs)
    list(APPEND srcs "${abs}")
  endforeach()
  string(TOUPPER "FASTRADIO_HAS_${op}_${K_TIER}" def)
  set(_emu_kernel_sources ${_emu_kernel_sources} ${srcs} PARENT_SCOPE)
  set(_emu_has_defs ${_emu_has_defs} ${def}=1 PARENT_SCOPE)
  set(_emu_kernel_table "${_emu_kernel_table}    {\"${op}\", \"${K_TIER}\", \"${FASTRADIO_EMU_ARCH}\", \"${FASTRADIO_EMU_ARCH}\"},\n"
      PARENT_SCOPE)
endfunction()

function(fastradio_add_binding)
  cmake_parse_arguments(B "" "" "SOURCES" ${ARGN})
  set(srcs)
  foreach(s IN LISTS B_SOURCES)
    cmake_path(ABSOLUTE_PATH s BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" OUTPUT_VARIABLE abs)
    list(APPEND srcs "${abs}")
  endforeach()
  set(_emu_binding_sources ${_emu_binding_sources} ${srcs} PARENT_SCOPE)
endfunction()

# include() rather than add_subdirectory(): the calls above then set this scope's lists directly.
file(GLOB _emu_op_lists "${_emu_src}/*/CMakeLists.txt")
list(SORT _emu_op_lists)
foreach(_list IN LISTS _emu_op_lists)
  cmake_path(GET _list PARENT_PATH _dir)
  set(_saved_dir "${CMAKE_CURRENT_SOURCE_DIR}")
  set(CMAKE_CURRENT_SOURCE_DIR "${_dir}")
  include("${_list}")
  set(CMAKE_CURRENT_SOURCE_DIR "${_saved_dir}")
endforeach()
if(NOT _emu_kernel_sources)
  message(FATAL_ERROR "fastradio emulation: no kernel in ${_emu_src}/*/CMakeLists.txt runs on sm_${FASTRADIO_EMU_ARCH}")
endif()

set_source_files_properties(${_emu_kernel_sources} PROPERTIES LANGUAGE CXX)
add_library(fastradio_emu_kernels STATIC ${_emu_kernel_sources})
target_compile_options(fastradio_emu_kernels PRIVATE -x c++ -include "${_emu_src}/emu/device.h")
target_compile_definitions(fastradio_emu_kernels PUBLIC ${_emu_has_defs})
target_link_libraries(fastradio_emu_kernels PUBLIC fastradio_emu_runtime)
list(JOIN _emu_has_defs " " _shown)
message(STATUS "fastradio emulation: sm_${FASTRADIO_EMU_ARCH}, sanitizer ${FASTRADIO_EMU_SANITIZER}, src ${_emu_src}; ${_shown}")

# --- the test driver ----------------------------------------------------------------------------------
file(GLOB _emu_driver_sources CONFIGURE_DEPENDS "${_emu_src}/emu/driver/*.cpp")
if(_emu_driver_sources)
  add_executable(fastradio_emu_driver ${_emu_driver_sources})
  target_link_libraries(fastradio_emu_driver PRIVATE fastradio_emu_kernels)
endif()

# --- the emulator's self-test (csrc/emu/selftest/): its kernels compiled like the ops' ----------------
# Only where the folder exists: the mutation check builds edited copies of csrc/.
if(EXISTS "${_emu_src}/emu/selftest/selftest.cpp")
  file(GLOB _emu_selftest_kernels CONFIGURE_DEPENDS "${_emu_src}/emu/selftest/*.cu")
  set_source_files_properties(${_emu_selftest_kernels} PROPERTIES LANGUAGE CXX
                              COMPILE_OPTIONS "-x;c++;-include;${_emu_src}/emu/device.h")
  file(GLOB _emu_selftest_hosts CONFIGURE_DEPENDS "${_emu_src}/emu/selftest/*.cpp")
  add_executable(fastradio_emu_selftest ${_emu_selftest_kernels} ${_emu_selftest_hosts})
  target_link_libraries(fastradio_emu_selftest PRIVATE fastradio_emu_runtime)
endif()

# --- the emulated fastradio._C --------------------------------------------------------------------------
if(FASTRADIO_EMU_PYTHON)
  if(NOT FASTRADIO_EMU_SANITIZER STREQUAL "none")
    message(FATAL_ERROR "FASTRADIO_EMU_PYTHON needs FASTRADIO_EMU_SANITIZER=none (a sanitizer runtime cannot be loaded into Python here)")
  endif()
  find_package(Python 3.9 REQUIRED COMPONENTS Interpreter Development.Module)
  if(NOT DEFINED pybind11_DIR)
    execute_process(COMMAND "${Python_EXECUTABLE}" -m pybind11 --cmakedir
                    OUTPUT_VARIABLE pybind11_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  find_package(pybind11 CONFIG REQUIRED)
  set(FASTRADIO_KERNEL_TABLE "${_emu_kernel_table}")
  set(FASTRADIO_TOOLCHAIN "emulated")
  set(CMAKE_CUDA_COMPILER_ID "emulated")
  set(CMAKE_CUDA_COMPILER_VERSION "sm_${FASTRADIO_EMU_ARCH} (${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION})")
  set(CUDAToolkit_VERSION "none")
  set(FASTRADIO_ARCHS_STR "${FASTRADIO_EMU_ARCH}")
  set(FASTRADIO_ARCHS_ORIGIN "FASTRADIO_EMU_ARCH")
  configure_file("${_emu_src}/python/build_info.cpp.in" "${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp" @ONLY)
  pybind11_add_module(_C MODULE "${_emu_src}/python/module.cpp" "${_emu_src}/python/binding.cpp"
                      ${_emu_binding_sources} "${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp")
  target_link_libraries(_C PRIVATE fastradio_emu_kernels)
  # The module's kernel objects are only reached through the launchers the bindings call.
endif()

# CUDA arch sets and kernel targets of fastradio (csrc/README.md).
#
# Arch set of a kernel tier = requested ∩ supported by this compiler ∩ needed by the tier:
#   requested : FASTRADIO_CUDA_ARCHS (CMake variable, else environment variable), a list like
#               "80" or "75;80;90a" (";" or "," separated), "all", or "native" (this machine's
#               GPUs, via nvidia-smi); default: FASTRADIO_DEFAULT_ARCHS
#   supported : nvcc: `nvcc --list-gpu-code` (+ the "a" variant of each arch >= 90);
#               clang: clang's own table ∩ the archs of the toolkit's ptxas
#   needed    : fastradio_add_kernel(... MIN_ARCH n [ONLY_ARCHS ...])
# Every tier gets SASS for each arch of its set and PTX for its highest arch. A tier without
# ONLY_ARCHS skips an "a" arch whose plain arch is also requested (e.g. "90;90a" -> 90 only).
#
# Kernels built once, bindings many times (the wheels; CMakeLists.txt "Build modes"):
# fastradio_export_kernels() writes a static library and fastradio_kernels.cmake, and
# fastradio_use_prebuilt_kernels() takes them in place of compiling the kernels.

set(FASTRADIO_DEFAULT_ARCHS 60 61 62 70 72 75 80 86 87 89 90 100 110 120)

# "90a" -> 90; "120" -> 120
function(_fastradio_arch_number arch out)
  string(REGEX MATCH "^[0-9]+" n "${arch}")
  set(${out} ${n} PARENT_SCOPE)
endfunction()

# Sort archs numerically, "90" before "90a".
function(_fastradio_sort_archs list_var)
  set(keyed)
  foreach(a IN LISTS ${list_var})
    _fastradio_arch_number(${a} n)
    string(REGEX REPLACE "^[0-9]+" "" suffix "${a}")
    math(EXPR padded "${n} + 10000")
    list(APPEND keyed "${padded}${suffix}:${a}")
  endforeach()
  list(SORT keyed)
  set(sorted)
  foreach(k IN LISTS keyed)
    string(REGEX REPLACE "^[^:]*:" "" a "${k}")
    list(APPEND sorted ${a})
  endforeach()
  list(REMOVE_DUPLICATES sorted)
  set(${list_var} ${sorted} PARENT_SCOPE)
endfunction()

function(_fastradio_supported_archs out)
  set(archs)
  if(CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA")
    execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-code
                    OUTPUT_VARIABLE codes RESULT_VARIABLE rc ERROR_QUIET)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "fastradio: `${CMAKE_CUDA_COMPILER} --list-gpu-code` failed (${rc})")
    endif()
    string(REGEX MATCHALL "sm_[0-9]+" codes "${codes}")
    foreach(c IN LISTS codes)
      string(SUBSTRING "${c}" 3 -1 n)
      list(APPEND archs ${n})
      if(n GREATER_EQUAL 90)
        list(APPEND archs ${n}a)
      endif()
    endforeach()
  elseif(CMAKE_CUDA_COMPILER_ID STREQUAL "Clang")
    # No arch-specific ("a") archs with clang: the tiers that need them (wgmma_sm90a) pass TMA
    # tensor maps as `const __grid_constant__ CUtensorMap` kernel parameters, and clang 19 ignores
    # __grid_constant__ ("unknown attribute"): it copies the map to a local stack slot and hands
    # cp.async.bulk.tensor a local address, which TMA cannot read (the map must live in param,
    # const or global memory). The clang-built cu12 wheel therefore has no sm_90a tier; on H100
    # it runs mma_sm80 and Triton (DESIGN.md "Hopper").
    set(clang_archs 60 61 62 70 72 75 80 86 87 89 90)
    if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 20)
      list(APPEND clang_archs 100 101 120)
    endif()
    set(ptxas "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}/bin/ptxas")
    execute_process(COMMAND "${ptxas}" --help OUTPUT_VARIABLE help RESULT_VARIABLE rc ERROR_QUIET)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "fastradio: `${ptxas} --help` failed (${rc}); is CUDAToolkit_ROOT a CUDA toolkit?")
    endif()
    string(REGEX MATCHALL "'sm_[0-9]+a?'" ptxas_archs "${help}")
    string(REPLACE "'sm_" "" ptxas_archs "${ptxas_archs}")
    string(REPLACE "'" "" ptxas_archs "${ptxas_archs}")
    foreach(a IN LISTS clang_archs)
      if(a IN_LIST ptxas_archs)
        list(APPEND archs ${a})
      endif()
    endforeach()
  else()
    message(FATAL_ERROR "fastradio: unsupported CUDA compiler ${CMAKE_CUDA_COMPILER_ID}")
  endif()
  _fastradio_sort_archs(archs)
  set(${out} ${archs} PARENT_SCOPE)
endfunction()

# Resolves FASTRADIO_ARCHS (requested ∩ supported) and FASTRADIO_SUPPORTED_ARCHS.
function(fastradio_resolve_archs)
  _fastradio_supported_archs(supported)
  if(DEFINED FASTRADIO_CUDA_ARCHS AND NOT FASTRADIO_CUDA_ARCHS STREQUAL "")
    set(raw "${FASTRADIO_CUDA_ARCHS}")
    set(origin "FASTRADIO_CUDA_ARCHS")
  elseif(DEFINED ENV{FASTRADIO_CUDA_ARCHS} AND NOT "$ENV{FASTRADIO_CUDA_ARCHS}" STREQUAL "")
    set(raw "$ENV{FASTRADIO_CUDA_ARCHS}")
    set(origin "environment FASTRADIO_CUDA_ARCHS")
  else()
    set(raw "${FASTRADIO_DEFAULT_ARCHS}")
    set(origin "default")
  endif()
  string(REGEX REPLACE "[, \t]+" ";" raw "${raw}")
  set(requested)
  foreach(tok IN LISTS raw)
    string(REGEX REPLACE "^(sm_|compute_)" "" a "${tok}")
    if(a STREQUAL "")
      continue()
    elseif(a STREQUAL "all")
      list(APPEND requested ${supported})
    elseif(a STREQUAL "native")  # the GPUs of this machine, via nvidia-smi
      execute_process(COMMAND nvidia-smi --query-gpu=compute_cap --format=csv,noheader
                      OUTPUT_VARIABLE caps RESULT_VARIABLE rc ERROR_QUIET)
      string(REGEX MATCHALL "[0-9]+\\.[0-9]+" caps "${caps}")
      if(NOT rc EQUAL 0 OR NOT caps)
        message(FATAL_ERROR "fastradio: ${origin}: 'native' needs nvidia-smi and a GPU; name the arch instead, e.g. 80")
      endif()
      foreach(cap IN LISTS caps)
        string(REPLACE "." "" cap "${cap}")
        list(APPEND requested ${cap})
      endforeach()
    elseif(a MATCHES "^[0-9]+[af]?$")
      list(APPEND requested ${a})
    else()
      message(FATAL_ERROR "fastradio: ${origin}: '${tok}' is not an arch; "
                          "expected numbers like \"80\" or \"75;80;90a\" (or \"all\")")
    endif()
  endforeach()
  set(archs)
  set(dropped)
  foreach(a IN LISTS requested)
    if(a IN_LIST supported)
      list(APPEND archs ${a})
    else()
      list(APPEND dropped ${a})
    endif()
  endforeach()
  _fastradio_sort_archs(archs)
  if(dropped AND NOT origin STREQUAL "default")
    list(JOIN dropped " " d)
    list(JOIN supported " " s)
    message(WARNING "fastradio: ${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION} cannot compile "
                    "sm_${d} (${origin}); it supports: ${s}")
  endif()
  if(NOT archs)
    message(FATAL_ERROR "fastradio: no arch left to build (${origin}: '${raw}'; "
                        "${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION} supports: ${supported})")
  endif()
  set(FASTRADIO_SUPPORTED_ARCHS ${supported} PARENT_SCOPE)
  set(FASTRADIO_ARCHS ${archs} PARENT_SCOPE)
  set(FASTRADIO_ARCHS_ORIGIN "${origin}" PARENT_SCOPE)
endfunction()

# Tier names, read from the Tier enum so that CMake and C++ cannot disagree.
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../common/tier.h" _tier_lines REGEX "case Tier::k[A-Za-z0-9]+: return \"")
set(FASTRADIO_TIER_NAMES)
foreach(line IN LISTS _tier_lines)
  string(REGEX MATCH "return \"([a-z0-9_]+)\"" _ "${line}")
  list(APPEND FASTRADIO_TIER_NAMES ${CMAKE_MATCH_1})
endforeach()

add_library(fastradio_config INTERFACE)
cmake_path(GET CMAKE_CURRENT_LIST_DIR PARENT_PATH _fastradio_csrc)
target_include_directories(fastradio_config INTERFACE "${_fastradio_csrc}")
target_compile_features(fastradio_config INTERFACE cxx_std_17 cuda_std_17)

# fastradio_add_kernel(<op> TIER <tier> MIN_ARCH <n> [ONLY_ARCHS <arch>...] SOURCES <file>...)
# Compiles one tier of one op into an object library linked into _C, for its arch set; records
# it for _C.build_info() and defines FASTRADIO_HAS_<OP>_<TIER>=1 for every target. A tier with
# an empty arch set is skipped (reported by build_info as absent). The compile gate
# (csrc/tools/compile_gate.py) reads these calls too: keep one call per tier, arguments literal.
function(fastradio_add_kernel op)
  cmake_parse_arguments(K "" "TIER;MIN_ARCH" "ONLY_ARCHS;SOURCES" ${ARGN})
  if(NOT K_TIER IN_LIST FASTRADIO_TIER_NAMES)
    message(FATAL_ERROR "fastradio_add_kernel(${op}): unknown TIER '${K_TIER}' (csrc/common/tier.h has: ${FASTRADIO_TIER_NAMES})")
  endif()
  if(NOT K_MIN_ARCH OR NOT K_SOURCES)
    message(FATAL_ERROR "fastradio_add_kernel(${op}): MIN_ARCH and SOURCES are required")
  endif()
  if(FASTRADIO_PREBUILT_KERNELS)
    return()  # compiled already: the table and definitions come from the prebuilt folder
  endif()
  set(archs)
  foreach(a IN LISTS FASTRADIO_ARCHS)
    _fastradio_arch_number(${a} n)
    if(n LESS K_MIN_ARCH OR (K_ONLY_ARCHS AND NOT a IN_LIST K_ONLY_ARCHS))
      continue()
    endif()
    # A portable tier (no ONLY_ARCHS) gains nothing from arch-specific SASS ("90a") next to the
    # plain arch's ("90"), which also runs there: requesting both (as the cu13 wheel does, for
    # the tiers that need 90a) must not compile portable tiers twice.
    if(NOT K_ONLY_ARCHS AND a MATCHES "[af]$" AND "${n}" IN_LIST FASTRADIO_ARCHS)
      continue()
    endif()
    list(APPEND archs ${a})
  endforeach()
  if(NOT archs)
    message(STATUS "fastradio: ${op}/${K_TIER} not compiled: no requested arch >= ${K_MIN_ARCH} ${K_ONLY_ARCHS}")
    return()
  endif()
  # PTX: the highest arch-portable ("a"-less) arch, else the highest.
  set(ptx)
  foreach(a IN LISTS archs)
    if(NOT a MATCHES "a$")
      set(ptx ${a})
    endif()
  endforeach()
  if(NOT ptx)
    list(GET archs -1 ptx)
  endif()

  set(target fastradio_${op}_${K_TIER})
  add_library(${target} OBJECT ${K_SOURCES})
  target_link_libraries(${target} PRIVATE fastradio_config)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_ARCHITECTURES OFF
                                             CUDA_RUNTIME_LIBRARY None)
  set(flags)
  if(CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA")
    foreach(a IN LISTS archs)
      list(APPEND flags "--generate-code=arch=compute_${a},code=sm_${a}")
    endforeach()
    list(APPEND flags "--generate-code=arch=compute_${ptx},code=compute_${ptx}" "--threads=0")
  else()
    foreach(a IN LISTS archs)
      list(APPEND flags "--cuda-gpu-arch=sm_${a}")
    endforeach()
    list(APPEND flags "--no-cuda-include-ptx=all" "--cuda-include-ptx=sm_${ptx}")
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${flags}>)

  string(TOUPPER "FASTRADIO_HAS_${op}_${K_TIER}" def)
  target_compile_definitions(fastradio_config INTERFACE ${def}=1)
  set_property(GLOBAL APPEND PROPERTY FASTRADIO_KERNEL_TARGETS ${target})
  list(JOIN archs ";" sass_str)
  set_property(GLOBAL APPEND_STRING PROPERTY FASTRADIO_KERNEL_TABLE
               "    {\"${op}\", \"${K_TIER}\", \"${sass_str}\", \"${ptx}\"},\n")
  list(JOIN archs " " shown)
  message(STATUS "fastradio: ${op}/${K_TIER}: SASS sm_{${shown}}, PTX compute_${ptx}")
endfunction()

# fastradio_add_binding(SOURCES <file>...)
# The op's pybind11 binding (csrc/<op>/<op>_binding.cpp, FASTRADIO_BIND_OP): compiled into _C
# itself, the only per-Python-version code; kernels stay in the Python-free object libraries.
function(fastradio_add_binding)
  cmake_parse_arguments(B "" "" "SOURCES" ${ARGN})
  foreach(f IN LISTS B_SOURCES)
    cmake_path(ABSOLUTE_PATH f BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" OUTPUT_VARIABLE abs)
    set_property(GLOBAL APPEND PROPERTY FASTRADIO_BINDING_SOURCES "${abs}")
  endforeach()
endfunction()

# --- prebuilt kernels ----------------------------------------------------------------------------

# A fingerprint of everything a kernel library and a binding must agree on: the C++/CUDA sources
# and headers and the build files (not csrc/tools/, not docs).
function(_fastradio_source_hash out)
  file(GLOB_RECURSE files RELATIVE "${_fastradio_csrc}"
       "${_fastradio_csrc}/*.h" "${_fastradio_csrc}/*.cuh" "${_fastradio_csrc}/*.cu" "${_fastradio_csrc}/*.cpp"
       "${_fastradio_csrc}/*.in" "${_fastradio_csrc}/*.cmake" "${_fastradio_csrc}/*CMakeLists.txt")
  list(FILTER files EXCLUDE REGEX "^tools/")
  list(SORT files)
  set(all "")
  foreach(f IN LISTS files)
    file(SHA256 "${_fastradio_csrc}/${f}" h)
    string(APPEND all "${f} ${h}\n")
  endforeach()
  string(SHA256 h "${all}")
  set(${out} ${h} PARENT_SCOPE)
endfunction()

# FASTRADIO_KERNELS_ONLY: the kernel objects as one static library, and fastradio_kernels.cmake
# describing them; `cmake --install <build> --prefix <dir>` puts both in <dir>.
function(fastradio_export_kernels)
  get_property(targets GLOBAL PROPERTY FASTRADIO_KERNEL_TARGETS)
  get_property(table GLOBAL PROPERTY FASTRADIO_KERNEL_TABLE)
  if(NOT targets)
    message(FATAL_ERROR "fastradio: FASTRADIO_KERNELS_ONLY but no kernel was compiled (archs: ${FASTRADIO_ARCHS})")
  endif()
  set(objects)
  foreach(t IN LISTS targets)
    list(APPEND objects $<TARGET_OBJECTS:${t}>)
  endforeach()
  add_library(fastradio_kernels STATIC ${objects})
  set_target_properties(fastradio_kernels PROPERTIES LINKER_LANGUAGE CXX)
  install(TARGETS fastradio_kernels ARCHIVE DESTINATION lib)

  get_target_property(defs fastradio_config INTERFACE_COMPILE_DEFINITIONS)
  if(NOT defs)
    set(defs "")
  endif()
  _fastradio_source_hash(hash)
  set(f "${CMAKE_CURRENT_BINARY_DIR}/fastradio_kernels.cmake")
  file(WRITE "${f}" "# Generated by fastradio's CMake (FASTRADIO_KERNELS_ONLY); read by FASTRADIO_PREBUILT_KERNELS.\n")
  foreach(pair
      "VERSION;${PROJECT_VERSION}" "TOOLCHAIN;${FASTRADIO_TOOLCHAIN}"
      "CUDA_COMPILER;${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}"
      "CUDA_TOOLKIT;${CUDAToolkit_VERSION}" "ARCHS_ORIGIN;${FASTRADIO_ARCHS_ORIGIN}" "SOURCE_HASH;${hash}")
    list(GET pair 0 k)
    list(GET pair 1 v)
    file(APPEND "${f}" "set(FASTRADIO_KERNELS_${k} [==[${v}]==])\n")
  endforeach()
  list(JOIN FASTRADIO_ARCHS " " archs)
  list(JOIN defs " " defs)
  file(APPEND "${f}" "set(FASTRADIO_KERNELS_ARCHS ${archs})\n"
                     "set(FASTRADIO_KERNELS_DEFINITIONS ${defs})\n"
                     "# C++ initialisers of build_info()'s kernel table: {op, tier, SASS archs, PTX arch}\n"
                     "set(FASTRADIO_KERNELS_TABLE [==[\n${table}]==])\n"
                     "set(FASTRADIO_KERNELS_LIBRARY \"\${CMAKE_CURRENT_LIST_DIR}/lib/"
                     "${CMAKE_STATIC_LIBRARY_PREFIX}fastradio_kernels${CMAKE_STATIC_LIBRARY_SUFFIX}\")\n")
  install(FILES "${f}" DESTINATION .)
  message(STATUS "fastradio: kernels only -> static library fastradio_kernels + fastradio_kernels.cmake")
endfunction()

# FASTRADIO_PREBUILT_KERNELS: take the kernels of fastradio_kernels.cmake (already included by
# CMakeLists.txt) after checking they were made from these sources by this toolchain.
function(fastradio_use_prebuilt_kernels)
  set(dir "${FASTRADIO_PREBUILT_KERNELS}")
  set(problems)
  _fastradio_source_hash(hash)
  foreach(check
      "version;${FASTRADIO_KERNELS_VERSION};${PROJECT_VERSION}"
      "toolchain;${FASTRADIO_KERNELS_TOOLCHAIN};${FASTRADIO_TOOLCHAIN}"
      "CUDA compiler;${FASTRADIO_KERNELS_CUDA_COMPILER};${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}"
      "CUDA toolkit;${FASTRADIO_KERNELS_CUDA_TOOLKIT};${CUDAToolkit_VERSION}"
      "sources (csrc/ fingerprint);${FASTRADIO_KERNELS_SOURCE_HASH};${hash}")
    list(GET check 0 what)
    list(GET check 1 theirs)
    list(GET check 2 ours)
    if(NOT theirs STREQUAL ours)
      list(APPEND problems "${what}: prebuilt '${theirs}', this build '${ours}'")
    endif()
  endforeach()
  if(NOT EXISTS "${FASTRADIO_KERNELS_LIBRARY}")
    list(APPEND problems "library ${FASTRADIO_KERNELS_LIBRARY} is missing")
  endif()
  if(problems)
    list(JOIN problems "\n  " p)
    message(FATAL_ERROR "fastradio: FASTRADIO_PREBUILT_KERNELS=${dir} does not match this build:\n  ${p}\n"
                        "Rebuild it from these sources with -DFASTRADIO_KERNELS_ONLY=ON and the same toolchain.")
  endif()
  add_library(fastradio_prebuilt_kernels STATIC IMPORTED GLOBAL)
  set_target_properties(fastradio_prebuilt_kernels PROPERTIES IMPORTED_LOCATION "${FASTRADIO_KERNELS_LIBRARY}")
  if(FASTRADIO_KERNELS_DEFINITIONS)
    target_compile_definitions(fastradio_config INTERFACE ${FASTRADIO_KERNELS_DEFINITIONS})
  endif()
  set(FASTRADIO_ARCHS ${FASTRADIO_KERNELS_ARCHS} PARENT_SCOPE)
  set(FASTRADIO_ARCHS_ORIGIN "${FASTRADIO_KERNELS_ARCHS_ORIGIN} (prebuilt)" PARENT_SCOPE)
  message(STATUS "fastradio: prebuilt kernels from ${dir}")
endfunction()

#!/usr/bin/env bash
# Installs and assembles the two CUDA toolchains of DESIGN.md §6, idempotently:
#
#   nvcc  : CUDA 13.0 nvcc (sm_75..sm_120), expected at /usr/local/cuda-13.0 or $FASTRADIO_NVCC;
#   clang : clang-19 (Debian package) + a CUDA 12.9 toolkit folder assembled from PyPI wheels
#           (sm_60..sm_90), at $FASTRADIO_TOOLCHAINS_DIR/cuda-12.9.
#
# The PyPI cu12 wheels ship headers, cudart, ptxas, libnvvm and libdevice but no nvcc and no
# fatbinary, so the folder gets three small generated scripts: bin/fatbinary (translates clang 19's
# `--image=profile=sm_NN,file=F` into CUDA 13 fatbinary's `--image3=kind=elf,sm=NN,file=F`),
# bin/nvcc (answers only what CMake's clang-CUDA detection asks: `-v` → TOP=/NVVMIR_LIBRARY_DIR=,
# `--version` → the toolkit version), and include/curand_mtgp32_kernel.h (a stub clang's CUDA
# wrapper includes).
#
# Usage: bash csrc/tools/setup_toolchains.sh            # prints the paths, writes env.sh
#        source "$FASTRADIO_TOOLCHAINS_DIR/env.sh"       # FASTRADIO_NVCC, FASTRADIO_CLANG, ...
# Knobs (environment): FASTRADIO_TOOLCHAINS_DIR (default <repo>/.toolchains), PYTHON (a python
# with pip; default: $VIRTUAL_ENV, <repo>/.venv, python3), FASTRADIO_NVCC (CUDA 13 nvcc),
# FASTRADIO_CUDA13_FATBINARY (CUDA 13 fatbinary; default: next to nvcc, on PATH, or from the
# PyPI wheel nvidia-cuda-nvcc==13.0.*), FASTRADIO_SKIP_APT=1 (never call apt-get), FASTRADIO_AARCH64=1
# (also the Debian pieces of the aarch64 cross build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
root="${FASTRADIO_TOOLCHAINS_DIR:-$repo/.toolchains}"
mkdir -p "$root"
root="$(cd "$root" && pwd)"

cu12_pins=(nvidia-cuda-nvcc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-cccl-cu12==12.9.27)
cu13_nvcc_pin="nvidia-cuda-nvcc==13.0.88"
cuda12_version="12.9.86"

log() { printf '[setup_toolchains] %s\n' "$*" >&2; }
die() { printf '[setup_toolchains] error: %s\n' "$*" >&2; exit 1; }

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then echo "$VIRTUAL_ENV/bin/python"; return; fi
  if [[ -x "$repo/.venv/bin/python" ]]; then echo "$repo/.venv/bin/python"; return; fi
  command -v python3 || die "no python found; set PYTHON"
}

pip_target() {  # pip_target DIR PKG...: install wheels (no deps) into a private folder
  local dir="$1"; shift
  local py; py="$(pick_python)"
  "$py" -m pip --version >/dev/null 2>&1 || die "$py has no pip; set PYTHON to a python with pip"
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$dir" "$@" >&2
}

# --- clang-19 ---------------------------------------------------------------------------------
clang="$(command -v clang++-19 || true)"
if [[ -z "$clang" ]]; then
  [[ "${FASTRADIO_SKIP_APT:-0}" == 1 ]] && die "clang++-19 not found and FASTRADIO_SKIP_APT=1"
  [[ "$(id -u)" == 0 ]] || die "clang++-19 not found; run as root or: apt-get install clang-19"
  log "installing clang-19 with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-19 >&2
  clang="$(command -v clang++-19)" || die "apt-get installed clang-19 but clang++-19 is not on PATH"
fi

# --- aarch64 cross pieces (FASTRADIO_AARCH64=1; csrc/tools/cross_aarch64.py) --------------------
# The cross g++, qemu-user and the aarch64 CPython 3.11 headers/stdlib (Debian multiarch); the CUDA
# pieces (toolkit overlay with PyPI's aarch64 cudart) are made by build_wheels.py --platform aarch64,
# and CPython 3.13 (Debian 13's packages, in a private sysroot: nothing installed, the machine's apt
# set-up untouched) is fetched by cross_aarch64.py when a build or check first needs it.
if [[ "${FASTRADIO_AARCH64:-0}" == 1 ]] && ! { command -v aarch64-linux-gnu-g++ >/dev/null \
     && command -v qemu-aarch64-static >/dev/null && [[ -f /usr/include/aarch64-linux-gnu/python3.11/pyconfig.h ]]; }; then
  [[ "${FASTRADIO_SKIP_APT:-0}" == 1 ]] && die "aarch64 cross pieces missing and FASTRADIO_SKIP_APT=1"
  [[ "$(id -u)" == 0 ]] || die "aarch64 cross pieces missing; as root: dpkg --add-architecture arm64 && apt-get update && apt-get install g++-aarch64-linux-gnu qemu-user-static libpython3.11-dev:arm64"
  log "installing the aarch64 cross compiler, qemu-user-static and libpython3.11-dev:arm64 with apt-get"
  dpkg --add-architecture arm64
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu \
    qemu-user-static libpython3.11-dev:arm64 >&2
fi

# --- CUDA 13 nvcc and fatbinary ---------------------------------------------------------------
nvcc13="${FASTRADIO_NVCC:-}"
if [[ -z "$nvcc13" ]]; then
  for c in /usr/local/cuda-13.0/bin/nvcc /usr/local/cuda/bin/nvcc "$(command -v nvcc || true)"; do
    if [[ -n "$c" && -x "$c" ]] && "$c" --version 2>/dev/null | grep -q 'release 13\.'; then nvcc13="$c"; break; fi
  done
fi
if [[ -n "$nvcc13" && ! -x "$nvcc13" ]]; then
  log "warning: FASTRADIO_NVCC=$nvcc13 is not an executable"
  nvcc13=""
fi
[[ -n "$nvcc13" ]] || log "warning: no CUDA 13 nvcc found (set FASTRADIO_NVCC); the nvcc toolchain is unavailable"

fatbin13="${FASTRADIO_CUDA13_FATBINARY:-}"
if [[ -z "$fatbin13" && -n "$nvcc13" && -x "$(dirname "$nvcc13")/fatbinary" ]]; then
  fatbin13="$(dirname "$nvcc13")/fatbinary"
fi
if [[ -z "$fatbin13" ]]; then
  c="$(command -v fatbinary || true)"
  if [[ -n "$c" ]] && "$c" --help 2>&1 | grep -q -- '--image3'; then fatbin13="$c"; fi
fi
if [[ -z "$fatbin13" ]]; then
  if [[ ! -x "$root/pip-cu13/nvidia/cu13/bin/fatbinary" ]]; then
    log "fetching CUDA 13 fatbinary from PyPI ($cu13_nvcc_pin)"
    pip_target "$root/pip-cu13" "$cu13_nvcc_pin"
  fi
  fatbin13="$root/pip-cu13/nvidia/cu13/bin/fatbinary"
fi
[[ -x "$fatbin13" ]] || die "CUDA 13 fatbinary not found at $fatbin13"
fatbin13="$(readlink -f "$fatbin13")"

# --- CUDA 12.9 folder for clang ---------------------------------------------------------------
cuda12="$root/cuda-12.9"
stamp="v3 ${cu12_pins[*]} fatbinary=$fatbin13"
if [[ -f "$cuda12/.stamp" && "$(cat "$cuda12/.stamp")" == "$stamp" && -x "$cuda12/bin/ptxas" ]]; then
  log "CUDA 12.9 folder up to date: $cuda12"
else
  log "assembling CUDA 12.9 folder for clang at $cuda12"
  wheels="$root/pip-cu12"
  pip_target "$wheels" "${cu12_pins[@]}"
  nv="$wheels/nvidia"
  tmp="$cuda12.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/bin" "$tmp/include" "$tmp/lib64" "$tmp/nvvm/lib64" "$tmp/nvvm/libdevice"
  # Merged include/: runtime headers, the compiler's crt/ headers, then CCCL (cub, thrust, cuda/).
  # Hard links where the file system allows (the wheels stay the single copy), else copies.
  copy() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }
  copy "$nv/cuda_runtime/include/." "$tmp/include/"
  copy "$nv/cuda_nvcc/include/." "$tmp/include/"
  copy "$nv/cuda_cccl/include/." "$tmp/include/"
  find "$tmp/include" \( -name '__init__.py' -o -name '__pycache__' \) -prune -exec rm -rf {} +
  cat > "$tmp/include/curand_mtgp32_kernel.h" <<'H'
/* Stub: clang's __clang_cuda_runtime_wrapper.h includes this cuRAND header, which the PyPI
   wheels do not ship. fastradio does not use cuRAND. */
#pragma once
H
  copy "$nv/cuda_runtime/lib/." "$tmp/lib64/"
  rm -f "$tmp/lib64/__init__.py"
  ln -sf libcudart.so.12 "$tmp/lib64/libcudart.so"
  ln -s lib64 "$tmp/lib"
  copy "$nv/cuda_nvcc/nvvm/libdevice/." "$tmp/nvvm/libdevice/"
  copy "$nv/cuda_nvcc/nvvm/lib64/." "$tmp/nvvm/lib64/"
  copy "$nv/cuda_nvcc/bin/ptxas" "$tmp/bin/ptxas"
  printf '{\n  "cuda": {"name": "CUDA SDK", "version": "%s"}\n}\n' "$cuda12_version" > "$tmp/version.json"

  cat > "$tmp/bin/fatbinary" <<F
#!/usr/bin/env bash
# clang 19 speaks the CUDA <= 12 fatbinary dialect; CUDA 13's fatbinary only takes --image3.
args=()
for a in "\$@"; do
  if [[ "\$a" =~ ^--image=profile=sm_([0-9]+[a-z]?),file=(.*)\$ ]]; then
    args+=("--image3=kind=elf,sm=\${BASH_REMATCH[1]},file=\${BASH_REMATCH[2]}")
  elif [[ "\$a" =~ ^--image=profile=compute_([0-9]+[a-z]?),file=(.*)\$ ]]; then
    args+=("--image3=kind=ptx,sm=\${BASH_REMATCH[1]},file=\${BASH_REMATCH[2]}")
  else
    args+=("\$a")
  fi
done
exec "$fatbin13" "\${args[@]}"
F
  cat > "$tmp/bin/nvcc" <<N
#!/usr/bin/env bash
# Not a compiler: CMake's clang-CUDA detection runs \`nvcc -v\` and \`nvcc --version\` only to locate
# the toolkit and read its version. Anything else is refused.
top="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")/.." && pwd)"
case "\${1:-}" in
  -v) echo "#\\\$ _NVVM_BRANCH_=nvvm"; echo "#\\\$ TOP=\$top"; echo "#\\\$ NVVMIR_LIBRARY_DIR=\$top/nvvm/libdevice"; exit 0 ;;
  --version|-V) echo "nvcc: NVIDIA (R) Cuda compiler driver (fastradio stand-in for clang builds)"
                echo "Cuda compilation tools, release ${cuda12_version%.*}, V${cuda12_version}"; exit 0 ;;
esac
echo "this nvcc is a stand-in that only answers CMake's toolkit detection; compile with clang++-19" >&2
exit 1
N
  chmod +x "$tmp/bin/fatbinary" "$tmp/bin/nvcc"
  echo "$stamp" > "$tmp/.stamp"
  rm -rf "$cuda12"
  mv "$tmp" "$cuda12"
fi

# --- report -----------------------------------------------------------------------------------
cat > "$root/env.sh" <<E
# Generated by csrc/tools/setup_toolchains.sh; source it.
export FASTRADIO_TOOLCHAINS_DIR="$root"
export FASTRADIO_NVCC="$nvcc13"
export FASTRADIO_CLANG="$clang"
export FASTRADIO_CLANG_CUDA_PATH="$cuda12"
E
echo "FASTRADIO_TOOLCHAINS_DIR=$root"
echo "FASTRADIO_NVCC=$nvcc13"
echo "FASTRADIO_CLANG=$clang"
echo "FASTRADIO_CLANG_CUDA_PATH=$cuda12"
echo "# clang build: CUDACXX=$clang CUDAToolkit_ROOT=$cuda12 pip install --no-build-isolation ."
echo "# env file:    source $root/env.sh"

"""What each prebuilt wheel is and promises: the one place build_wheels.py (what to compile) and
check_wheel.py (what to prove) read it from (README "Install")."""

from __future__ import annotations

import dataclasses
import re

#: CPython versions the wheels are built for.
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def arch_key(arch: str) -> tuple[int, str]:
    """Sort key: numeric, "90" before "90a"."""
    m = re.fullmatch(r"(\d+)([a-z]?)", arch)
    if not m:
        raise ValueError(f"not an arch: {arch!r} (expected e.g. '80' or '90a')")
    return int(m.group(1)), m.group(2)


@dataclasses.dataclass(frozen=True)
class Variant:
    dist: str            # distribution name
    cuda_major: str      # "12" | "13": cuda_version of _C.build_info() starts with it
    toolchain: str       # build_info()["toolchain"]
    sass: tuple[str, ...]     # promised SASS archs
    extra: tuple[str, ...]    # also requested: arch-specific archs, used only by tiers that name them
    #                          (a portable tier skips "90a" next to "90": FastradioCuda.cmake)
    platform: str = "x86_64"  # machine of the host code: "x86_64" | "aarch64" (cross-built, cross_aarch64.py)

    @property
    def ptx(self) -> tuple[str, ...]:
        """PTX of the newest promised arch, so that newer GPUs JIT it."""
        return (max(self.sass, key=arch_key),)

    def request(self, reduced: list[str] | None = None) -> list[str]:
        """FASTRADIO_CUDA_ARCHS for the kernel build."""
        return sorted(set(reduced) if reduced else set(self.sass) | set(self.extra), key=arch_key)

    def promise(self, reduced: list[str] | None = None) -> tuple[list[str], list[str]]:
        """(SASS archs, PTX archs) the wheel must contain; a reduced build promises what it asked for."""
        if not reduced:
            return list(self.sass), list(self.ptx)
        plain = [a for a in reduced if not a[-1].isalpha()] or list(reduced)
        return sorted(reduced, key=arch_key), [max(plain, key=arch_key)]


VARIANTS = {
    # clang-19 + CUDA 12.9: Pascal to Hopper, incl. Jetson Xavier (72) and Orin (87); PTX for newer GPUs.
    # No "90a": clang 19 ignores __grid_constant__, so the TMA tier (wgmma_sm90a) cannot be built
    # with it (FastradioCuda.cmake); H100 users of this wheel run mma_sm80 and Triton.
    "12": Variant("fastradio-cu12", "12", "clang",
                  ("60", "61", "62", "70", "72", "75", "80", "86", "87", "89", "90"), ()),
    # CUDA 13.0 nvcc: Turing to Blackwell, incl. Orin (87) and Thor (110); CUDA 13 dropped sm_60-72.
    "13": Variant("fastradio-cu13", "13", "nvcc",
                  ("75", "80", "86", "87", "89", "90", "100", "110", "120"), ("90a", "100a")),
}


#: The aarch64 wheels (Jetson Orin/Thor, Grace: GH200, GB200, GB10), cross-built on x86_64 (DESIGN.md
#: decision 29). Only CUDA 13: it is the CUDA of JetPack 7 (Thor) and of Grace machines (SBSA); Orin's
#: JetPack 6 ships a Jetson-specific CUDA 12 that a static SBSA runtime does not serve (README "Install").
AARCH64_VARIANTS = {
    # Orin (87), Grace Hopper (90), Grace Blackwell (100), Thor (110), GB10 / DGX Spark (121); PTX 121.
    "13": Variant("fastradio-cu13", "13", "nvcc", ("87", "90", "100", "110", "121"), ("90a", "100a"),
                  platform="aarch64"),
}

#: Variants per platform (build_wheels.py --platform).
PLATFORM_VARIANTS = {"x86_64": VARIANTS, "aarch64": AARCH64_VARIANTS}


def platform_of_tag(plat_tag: str) -> str:
    """The machine a wheel's platform tag names: "manylinux_2_28_aarch64" -> "aarch64"."""
    for machine in PLATFORM_VARIANTS:
        if plat_tag.endswith("_" + machine) or plat_tag == machine:
            return machine
    raise ValueError(f"platform tag {plat_tag!r}: expected one ending in {' or '.join(PLATFORM_VARIANTS)}")


def variant_of(dist: str, platform: str = "x86_64") -> Variant | None:
    """The variant of a distribution name ("fastradio_cu13" and "fastradio-cu13" alike) on a
    platform ("x86_64" | "aarch64"), or None."""
    name = re.sub(r"[-_.]+", "-", dist).lower()
    return next((v for v in PLATFORM_VARIANTS.get(platform, {}).values() if v.dist == name), None)

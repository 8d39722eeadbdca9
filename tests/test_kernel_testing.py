"""The rules of tests/kernel_testing.py that every kernel test relies on.

1. When a GPU test runs: no CUDA device -> skip; a device that torch sees but fastradio._C cannot
   use (``_C.device_count() == 0``: an NVIDIA driver older than the CUDA runtime _C links
   statically) -> FAIL with the driver requirement, never skip, so that a GPU run cannot come out
   green having run nothing. Checked here on CPU by faking that state (torch.cuda.is_available()
   True, _C.device_count() 0), both through the helpers directly and end to end in a pytest
   subprocess whose outcome must be "failed", not "skipped".
2. The seed loop: the draws a seed-looped check makes.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fastradio import _C

import kernel_testing
from kernel_testing import backend_or_skip, case_seed, needs_gpu, require_gpu, seed_runs

TESTS = Path(__file__).resolve().parent
CUDA_VERSION = _C.build_info()["cuda_version"]


def _torch_sees_a_gpu_c_does_not(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_C, "device_count", lambda: 0)


def _failure(fn, *args, **kwargs) -> str:
    """The message of the test failure ``fn`` raises; a skip (or nothing) fails this test."""
    try:
        fn(*args, **kwargs)
    except pytest.skip.Exception as e:
        pytest.fail(f"{fn.__name__} skipped where it must fail: {e}")
    except pytest.fail.Exception as e:
        return str(e)
    pytest.fail(f"{fn.__name__} neither failed nor skipped")


def _assert_driver_message(msg: str) -> None:
    assert f"fastradio._C (built against CUDA {CUDA_VERSION}) finds none" in msg, msg
    assert f"the NVIDIA driver must support CUDA {CUDA_VERSION} or newer" in msg, msg
    assert "nvidia-smi shows the highest CUDA version the driver supports" in msg, msg


def test_require_gpu_fails_when_c_cannot_use_the_gpu_torch_sees(monkeypatch):
    _torch_sees_a_gpu_c_does_not(monkeypatch)
    _assert_driver_message(_failure(require_gpu))
    assert kernel_testing.has_gpu() is False
    _assert_driver_message(kernel_testing.gpu_unusable_reason())


def test_needs_gpu_and_the_cuda_backend_fail_too(monkeypatch):
    _torch_sees_a_gpu_c_does_not(monkeypatch)
    ran = []

    @needs_gpu
    def test_something(x, y=2):
        ran.append((x, y))

    assert list(inspect.signature(test_something).parameters) == ["x", "y"]  # pytest sees the fixtures
    _assert_driver_message(_failure(test_something, 1))
    assert ran == []
    for op in ("linear", "attention", "patch_embed", "add_layer_norm", "pos_embed"):
        _assert_driver_message(_failure(backend_or_skip, "cuda", op, "cuda", torch.bfloat16, head_dim=64))
    # Backends that do not go through _C are not affected: torch's device works for them.
    assert backend_or_skip("reference", "linear", "cuda") is not None


def test_no_gpu_skips(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(pytest.skip.Exception, match=r"torch.cuda.is_available\(\) is False"):
        require_gpu()
    with pytest.raises(pytest.skip.Exception):
        backend_or_skip("cuda", "linear", "cuda")
    assert kernel_testing.gpu_unusable_reason() is None and kernel_testing.has_gpu() is False


def test_a_usable_gpu_runs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_C, "device_count", lambda: 1)
    require_gpu()  # neither skips nor fails
    assert kernel_testing.gpu_unusable_reason() is None and kernel_testing.has_gpu() is True

    @needs_gpu
    def test_something():
        return "ran"

    assert test_something() == "ran"


_CONFTEST = """
import torch
from fastradio import _C

# The state of a machine whose driver is older than the CUDA runtime _C links: torch sees the GPU,
# _C does not.
torch.cuda.is_available = lambda: True
_C.device_count = lambda: 0
"""

_TESTS = """
import pytest
from kernel_testing import backend_or_skip, needs_gpu


@needs_gpu
def test_marked():
    pass


@needs_gpu
@pytest.mark.parametrize("n", [1, 2])
def test_marked_parametrized(n):
    pass


def test_cuda_backend():
    backend_or_skip("cuda", "attention", "cuda", head_dim=64)
"""


def test_a_gpu_run_with_an_unusable_gpu_fails_end_to_end(tmp_path):
    """pytest itself reports the GPU tests as failed (not skipped), with the driver message."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(_CONFTEST))
    (tmp_path / "test_gate.py").write_text(textwrap.dedent(_TESTS))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "4 failed" in out and "skipped" not in out, out
    _assert_driver_message(" ".join(out.split()))


def test_seed_runs(monkeypatch):
    monkeypatch.delenv(kernel_testing.SEED_ENV, raising=False)
    assert seed_runs() == ["0", "1", "2", "3", "4", "5"] and seed_runs(1) == ["0"]
    assert case_seed("a", 3) == case_seed("a", 3, run="0") != case_seed("a", 3, run="1")
    monkeypatch.setenv(kernel_testing.SEED_ENV, "7")
    assert seed_runs(3) == ["7", "8", "9"]
    assert case_seed("a", 3) == case_seed("a", 3, run="7")
    monkeypatch.setenv(kernel_testing.SEED_ENV, "x")
    assert seed_runs(3) == ["x", "x+1", "x+2"]

"""The Triton backend below the op contract: the launcher's out= (NaN-poisoned), exact bf16
rounding (the interpreter's own cast truncates, so the kernel rounds in software there), the
custom-op registration, and the refusal reasons. The op itself is tested in test_op_pos_embed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fastradio import backends

from kernel_testing import TRITON_COMPILE_PRELUDE


def _device_or_skip() -> str:
    for device in ("cuda", "cpu"):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        if not backends.refusals("triton", "pos_embed", torch.device(device), torch.float32):
            return device
    pytest.skip("triton cannot run here: " + "; ".join(
        backends.refusals("triton", "pos_embed", torch.device("cpu"), torch.float32)))


@pytest.fixture(scope="module")
def device():
    return _device_or_skip()


@pytest.fixture(scope="module")
def kernel():
    _device_or_skip()
    from fastradio.kernels import pos_embed as k  # tests may reach below the backend

    return k


@pytest.mark.parametrize("g,h,w,d", [(16, 7, 13, 3), (16, 31, 31, 17), (128, 9, 31, 300), (16, 1, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_launcher_writes_every_element_of_a_poisoned_out(kernel, device, g, h, w, d, dtype):
    table = (torch.randn(g, g, d, generator=torch.Generator().manual_seed(g * h + w)) * 0.02).to(device)
    out = torch.full((h * w, d), float("nan"), dtype=dtype, device=device)
    got = kernel.pos_embed(table, h, w, dtype, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.isfinite(out).all()
    expect = backends.get("reference").pos_embed(table.cpu(), h, w, torch.float32)
    torch.testing.assert_close(out.cpu().float(), expect, rtol=2e-2 if dtype != torch.float32 else 1e-6,
                               atol=1e-6)


def test_launcher_rejects_a_wrong_out(kernel, device):
    table = torch.zeros(8, 8, 4, device=device)
    for bad in (torch.empty(12, 5, device=device), torch.empty(12, 4, dtype=torch.float16, device=device),
                torch.empty(4, 12, device=device).t()):
        with pytest.raises(ValueError, match="out must be"):
            kernel.pos_embed(table, 3, 4, torch.float32, out=bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees inf/NaN
def test_bf16_and_fp16_casts_round_to_nearest_even_bit_exactly(device):
    # The identity resize passes the table through, so the output is exactly the cast.
    one = 1.0
    ulp = 2.0 ** -7  # bf16 spacing in [1, 2)
    special = [one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2 ** -20, -(one + ulp / 2),  # ties
               3.4e38, -3.4e38, 1e-40, -1e-40, 0.0, -0.0, float("inf"), float("-inf"), float("nan"),
               65504.0, 65520.0, 6e-8, 2.9802322e-08, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11]
    g = 5
    vals = torch.tensor(special + [0.1 * i for i in range(g * g * 2 - len(special))], dtype=torch.float32)
    table = vals.reshape(g, g, 2).to(device)
    mod = backends.get("triton")
    for dtype in (torch.bfloat16, torch.float16):
        got = mod.pos_embed(table, g, g, dtype).cpu()
        expect = table.cpu().reshape(g * g, 2).to(dtype)
        nan = torch.isnan(expect)
        assert torch.equal(torch.isnan(got), nan)
        assert torch.equal(got.view(torch.int16)[~nan], expect.view(torch.int16)[~nan]), dtype


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_identity_copies_non_finite_entries_without_leaking(device):
    table = torch.randn(6, 6, 8, device=device) * 0.02
    table[2, 3, 1] = float("nan")
    table[4, 0, 5] = float("inf")
    out = backends.get("triton").pos_embed(table, 6, 6, torch.float32)
    torch.testing.assert_close(out, table.reshape(36, 8), rtol=0, atol=0, equal_nan=True)


def test_registered_custom_op_passes_opcheck(device):
    mod = backends.get("triton")
    assert mod.OP_NAMES["pos_embed"] == "fastradio::triton_pos_embed"
    op = torch.ops.fastradio.triton_pos_embed.default
    table = torch.randn(16, 16, 12, device=device) * 0.02
    for args in ((table, 7, 13, torch.float32, True), (table, 20, 3, torch.bfloat16, False),
                 (table, 1, 1, torch.float16, True)):
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


def test_launch_config_is_deterministic_and_tiles_real_widths(kernel):
    for d in (768, 1024, 1280, 1536):
        cfg = kernel.launch_config(48 * 48, d)
        assert cfg == kernel.launch_config(48 * 48, d)
        assert d % cfg["BLOCK_D"] == 0  # no masked lanes at real widths
    assert kernel.launch_config(1, 1)["BLOCK_N"] == 1


def test_cpu_is_refused_with_a_reason_when_the_interpreter_is_off():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch; from fastradio import backends; "
            "print('|'.join(backends.refusals('triton', 'pos_embed', torch.device('cpu'), torch.float32)))")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "TRITON_INTERPRET" in res.stdout, res.stdout


def test_other_refusals_name_the_reason():
    pytest.importorskip("triton")
    mod = backends.get("triton")
    assert any("dtype" in r for r in mod.supports("pos_embed", torch.device("cpu"), torch.int8))
    assert any("device type" in r for r in mod.supports("pos_embed", torch.device("meta"), torch.float32))


_LOOP_BOUND_KERNEL = """
import torch, triton, triton.language as tl
import fastradio.kernels._common  # noqa: F401  (its interpreter fix: see the test below)

@triton.jit
def _sum_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i0 in range(0, n, BLOCK):  # a runtime bound: tensor.__index__ in the interpreter
        offs = i0 + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0))

x = torch.arange(37, dtype=torch.float32)
out = torch.zeros(1)
_sum_kernel[(1,)](x, out, x.numel(), BLOCK=16)
assert out.item() == 666.0, out
print("ok")
"""


def test_interpreter_takes_a_runtime_loop_bound(tmp_path):
    # Up to Triton 3.6 the interpreter's tensor.__index__ is int(1-element array), a TypeError
    # under NumPy >= 2.4 (triton-lang/triton#9171): every kernel loop over a runtime bound failed.
    # Importing fastradio.kernels._common (every kernel module does) installs Triton 3.7's
    # conversion where the interpreter needs it.
    pytest.importorskip("triton")
    script = tmp_path / "loop_bound.py"  # triton.jit reads the kernel's source from a file
    script.write_text(_LOOP_BOUND_KERNEL)
    res = subprocess.run([sys.executable, str(script)], env={**os.environ, "TRITON_INTERPRET": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


_COMPILE_CHECK = TRITON_COMPILE_PRELUDE + r"""
import json, os, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastradio.kernels import pos_embed as k

arch = int(sys.argv[1])
align = sys.argv[2] == "1"
sig = {"table_ptr": "*fp32", "out_ptr": "*bf16", "n_rows": "i32", "w": "i32", "G": "i32", "D": "i32",
       "scale": "fp32", "ALIGN_CORNERS": "constexpr", "BLOCK_N": "constexpr", "BLOCK_D": "constexpr",
       "SOFT_BF16": "constexpr"}
cfg = k.launch_config(48 * 48, 1024)
src = ASTSource(fn=k._pos_embed_kernel, signature=sig,
                constexprs={"ALIGN_CORNERS": align, "BLOCK_N": cfg["BLOCK_N"], "BLOCK_D": cfg["BLOCK_D"],
                            "SOFT_BF16": False},
                attrs={(0,): [["tt.divisibility", 16]], (1,): [["tt.divisibility", 16]], (5,): [["tt.divisibility", 16]]})
ptx = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": cfg["num_warps"]}).asm["ptx"]
import re
res = {"vector_loads": "ld.global.v4.b32" in ptx,
       # align_corners: the product rounded alone (fma(scale, i, 0)); else (i + 0.5)·scale − 0.5 exact
       # in fp64 and rounded once to fp32.
       "rounded_src": (len(re.findall(r"fma\.rn\.f32\s+%r\d+, %r\d+, %r\d+, 0f00000000;", ptx)) >= 2 if align
                       else len(re.findall(r"cvt\.rn\.f32\.f64", ptx)) >= 2)}
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
if os.path.exists(ptxas):
    target = next(l.split()[1] for l in ptx.splitlines() if l.startswith(".target"))
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "k.ptx"), "w").write(ptx)
        p = subprocess.run([ptxas, f"-arch={target}", "-v", os.path.join(d, "k.ptx"), "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
    res["ptxas"] = p.stderr[-2000:]
    res["no_spills"] = p.returncode == 0 and "0 bytes spill stores" in p.stderr
print(json.dumps(res))
"""


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("arch", [80, 90])
def test_compiles_for_the_gpu_without_a_gpu(arch, align_corners):
    # Triton compiles for a named target with no device (in a process without the interpreter):
    # the sm_80/sm_90 code has 16-byte loads along D, a source coordinate rounded as the specs say
    # (align_corners: fma(scale, i, 0), which ptxas cannot contract; else one fp64 -> fp32
    # rounding of (i + 0.5)·scale − 0.5), and, with the bundled ptxas, no spills.
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _COMPILE_CHECK, str(arch), str(int(align_corners))], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(f"cannot compile for sm_{arch} here: {out['skip']}")
    assert out["vector_loads"] and out["rounded_src"], out
    if "no_spills" in out:
        assert out["no_spills"], out["ptxas"]

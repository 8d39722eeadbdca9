"""The whole forward pass on the emulated device (csrc/emu/, DESIGN.md "The emulated device"): every
op taken from the real CUDA kernels, compiled as host C++ and run on the CPU, one kernel tier at a
time, through the same Python wrappers, binding and launchers a GPU run uses. Checked against the
reference backend with the model rules of DESIGN.md §7, on the test architectures and on
C-RADIOv2-B at a small resolution, with packed mixed sizes and a NaN image.

These tests need a process in which ``FASTRADIO_EMULATED_DEVICE`` names an emulated build of
``_C``; ``python csrc/tools/emulate.py`` (its model step) starts one. Anywhere else they skip.
"""

from __future__ import annotations

import pytest
import torch

import fastradio
from fastradio import synthetic
from fastradio.backends import cuda
from helpers import rel_l2

pytestmark = pytest.mark.skipif(
    not cuda.EMULATED, reason=f"needs the emulated device ({cuda.EMULATION_ENV}); run python csrc/tools/emulate.py")

CPU = torch.device("cpu")
COMPILED = cuda.build_info()["tiers"]

#: (compute dtype, tier forced on every op that has it; None: the automatic choice).
RUNS = [(torch.float32, None), (torch.float16, "cuda_core"), (torch.float16, "mma_sm75"),
        (torch.float16, "mma_sm80"), (torch.bfloat16, "cuda_core"), (torch.bfloat16, "mma_sm80"),
        (torch.float16, "wgmma_sm90a"), (torch.bfloat16, "wgmma_sm90a")]  # the last two: sm_90 builds only
RUN_IDS = [f"{str(d).replace('torch.', '')}-{t or 'auto'}" for d, t in RUNS]


@pytest.fixture(params=RUNS, ids=RUN_IDS)
def run(request, monkeypatch):
    dtype, tier = request.param
    if tier is not None:
        spec = ",".join(f"{op}:{tier}" for op, tiers in COMPILED.items() if tier in tiers)
        if not spec:
            pytest.skip(f"the emulated arch sm_{cuda.build_info()['archs'][0]} has no tier {tier}")
        monkeypatch.setenv(cuda.TIER_ENV, spec)
    return dtype, tier


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in ("test-d128", "test-d160", "C-RADIOv2-B"):
        f = tmp_path_factory.mktemp(name)
        synthetic.write_checkpoint(f, name, seed=5)
        out[name] = f
    return out


def _images(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def _check_against_reference(folder, dtype, x, **load_kw):
    """The cuda backend (emulated) against the reference, by DESIGN.md §7: fp32 within 1e-5
    (relative L2); fp16/bf16 at most 1.5x as far from the fp32 oracle as the reference run in the
    same dtype, and per-image summary cosine >= 0.999. ``load_kw`` go to every load."""
    fast = fastradio.load(folder, device=CPU, dtype=dtype, backend="cuda", **load_kw)
    assert set(fast.plan.names.values()) == {"cuda"}, fast.plan.names
    assert fast.folds_input_norm
    oracle = fastradio.load(folder, device=CPU, dtype=torch.float32, backend="reference", **load_kw)
    got, want = fast(x), oracle(x)
    if dtype == torch.float32:
        for field in ("summary", "features"):
            err = rel_l2(getattr(got, field), getattr(want, field))
            assert err <= 1e-5, (field, err)
        return fast
    ref16 = fastradio.load(folder, device=CPU, dtype=dtype, backend="reference", **load_kw)(x)
    for field in ("summary", "features"):
        floor = rel_l2(getattr(ref16, field).float(), getattr(want, field))
        err = rel_l2(getattr(got, field).float(), getattr(want, field))
        assert err <= 1.5 * floor + 1e-4, (field, err, floor)
    cos = torch.nn.functional.cosine_similarity(got.summary.float(), want.summary, dim=-1)
    assert (cos >= 0.999).all(), cos
    return fast


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
def test_test_architectures_match_the_reference(folders, name, run):
    dtype, _ = run
    x = torch.stack(_images([(48, 64)] * 2, seed=1))
    _check_against_reference(folders[name], dtype, x)


def test_c_radio_v2_b_at_a_small_resolution(folders, run):
    dtype, _ = run
    x = torch.stack(_images([(32, 48)], seed=2))
    _check_against_reference(folders["C-RADIOv2-B"], dtype, x)


def test_vitdet_windows(folders, run):
    """ViTDet windowed attention (DESIGN.md decision 26): block 0 attends inside 2x2-patch windows
    (one attention segment each), block 1 globally over each image; the kernels are unchanged."""
    dtype, _ = run
    x = torch.stack(_images([(64, 96)] * 2, seed=6))
    fast = _check_against_reference(folders["test-d128"], dtype, x, vitdet_window_size=2, vitdet_num_global=1)
    assert fast.config.window_schedule == (True, False)


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
def test_packed_mixed_sizes_with_a_nan_image(folders, name, run):
    """A list of different sizes runs packed (one token sequence, varlen attention over several
    images); each image equals its own one-image call, and a NaN image stays inside itself."""
    dtype, _ = run
    model = fastradio.load(folders[name], device=CPU, dtype=dtype, backend="cuda")
    imgs = _images([(16, 16), (48, 32), (16, 80), (96, 64)], seed=3)
    imgs[1][1, 5, 7] = float("nan")
    outs = model(imgs)
    assert torch.isnan(outs[1].summary).all() and torch.isnan(outs[1].features).all()
    for i in (0, 2, 3):
        alone = model(imgs[i][None])
        assert torch.isfinite(outs[i].features).all() and torch.isfinite(outs[i].summary).all()
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(outs[i].summary, alone.summary, rtol=tol, atol=tol)
        torch.testing.assert_close(outs[i].features, alone.features, rtol=tol, atol=tol)


def test_forward_intermediates_match_the_reference(folders):
    fast = fastradio.load(folders["test-d128"], device=CPU, dtype=torch.float32, backend="cuda")
    ref = fastradio.load(folders["test-d128"], device=CPU, dtype=torch.float32, backend="reference")
    x = torch.stack(_images([(32, 32)], seed=4))
    (fa, ia), (fb, ib) = (m.forward_intermediates(x, indices=[0, -1]) for m in (fast, ref))
    assert len(ia) == len(ib) == 2
    for a, b in zip(ia, ib):
        assert rel_l2(a, b) <= 1e-5


def test_the_kernels_ran_on_the_emulated_device():
    """What runs is the emulated build of _C (not a fallback): its toolchain, its device type,
    and a value from its linear kernel."""
    info = cuda.build_info()
    assert info["toolchain"] == "emulated" and cuda.DEVICE_TYPE == "cpu"
    x, w = torch.randn(3, 40), torch.randn(24, 40)
    torch.testing.assert_close(cuda.linear(x, w, tier="cuda_core"), x @ w.T, rtol=1e-5, atol=1e-5)

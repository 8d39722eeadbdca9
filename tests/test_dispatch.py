"""The per-op dispatcher: explicit choices, "auto", the environment override, explained refusals."""

from __future__ import annotations

import pytest
import torch

from fastradio import backends, ops


def test_auto_takes_the_first_backend_that_does_not_refuse(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    cpu = torch.device("cpu")
    for op in ops.OPS:
        order = backends.auto_order(op, cpu)
        assert order == ("reference",)  # the Triton interpreter runs only when named
        expected = next(n for n in order if not backends.refusals(n, op, cpu, torch.float32, head_dim=64))
        assert backends.select(op, "auto", cpu, torch.float32, head_dim=64) == expected
    real = backends.refusals
    monkeypatch.setattr(backends, "refusals",
                        lambda name, *a, **k: [] if name == "reference" else ["refused for the test"])
    assert backends.select("pos_embed", "auto", cpu, torch.float32) == "reference"
    monkeypatch.setattr(backends, "refusals", lambda name, *a, **k: ["refused for the test"])
    with pytest.raises(backends.BackendUnavailable, match="no backend can run 'pos_embed'.*reference: refused"):
        backends.select("pos_embed", "auto", cpu, torch.float32)
    gpu = torch.device("cuda")
    monkeypatch.setattr(backends, "refusals",
                        lambda name, *a, **k: [] if name == "reference" else ["refused for the test"])
    assert backends.auto_order("linear", gpu)[0] != "reference"
    assert backends.select("linear", "auto", gpu, torch.bfloat16) == "reference"
    assert real is not backends.refusals


def test_explicit_refusal_lists_reasons(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(backends.BackendUnavailable, match=r"backend 'cuda' cannot run 'pos_embed' on cpu"):
        backends.select("pos_embed", "cuda", torch.device("cpu"), torch.float32)
    reasons = backends.refusals("cuda", "pos_embed", torch.device("cpu"), torch.float32)
    assert reasons and all(isinstance(r, str) and r for r in reasons)


def test_unimplemented_op_is_named():
    reasons = backends.refusals("cuda", "attention", torch.device("cpu"), torch.float32)
    assert reasons  # either "does not implement" or a device reason; never silently empty


def test_env_override(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "pos_embed:reference")
    assert backends.select("pos_embed", "auto", torch.device("cpu"), torch.float32) == "reference"
    monkeypatch.setenv(backends.ENV_VAR, "cuda")
    with pytest.raises(backends.BackendUnavailable, match="backend 'cuda' cannot run"):
        backends.select("add_layer_norm", "auto", torch.device("cpu"), torch.float32)


def test_reference_refuses_unsupported_dtype():
    assert backends.refusals("reference", "linear", torch.device("cpu"), torch.int8)
    with pytest.raises(backends.BackendUnavailable, match="no backend can run 'linear'"):
        backends.select("linear", "auto", torch.device("cpu"), torch.int8)


def test_plan_falls_back_for_unimplemented_ops(monkeypatch):
    reasons = backends.refusals("triton", "pos_embed", torch.device("cpu"), torch.float32)
    if reasons:
        pytest.skip("; ".join(reasons))
    monkeypatch.delattr(backends.get("triton"), "attention")  # as if it had no attention kernel yet
    p = ops.plan("triton", "cpu", torch.float32, head_dim=64)
    assert p.names["pos_embed"] == "triton"
    assert p.names["attention"] == "reference"


@pytest.mark.parametrize("cap,tier,forced,dtype,first", [
    ((9, 0), "mma_sm80", None, torch.bfloat16, "triton"),       # Hopper without a wgmma tier for the op
    ((9, 0), "mma_sm80", None, torch.float16, "triton"),
    ((9, 0), "wgmma_sm90a", None, torch.bfloat16, "cuda"),      # the Hopper tier leads
    ((9, 0), "cuda_core", None, torch.bfloat16, "cuda"),        # memory-bound ops: no tensor-core question
    ((9, 0), "mma_sm80", "mma_sm80", torch.bfloat16, "cuda"),   # FASTRADIO_TIER forces a tier: run it
    ((9, 0), "cuda_core", None, torch.float32, "cuda"),         # fp32: cuda_core (no TF32), as everywhere
    ((8, 0), "mma_sm80", None, torch.bfloat16, "cuda"),         # Ampere: unchanged
    ((10, 0), "mma_sm80", None, torch.bfloat16, "cuda"),
])
def test_auto_order_on_hopper(monkeypatch, cap, tier, forced, dtype, first):
    """Issue 15: on sm_90 "auto" prefers the wgmma tier, then Triton (tl.dot lowers to wgmma there),
    then the mma.sync tiers."""
    try:
        from fastradio.backends import cuda
    except ImportError as e:  # no compiled extension here
        pytest.skip(f"the cuda backend does not import: {e}")
    monkeypatch.setattr(cuda._common, "_capability", lambda device: cap)
    monkeypatch.setattr(cuda, "_forced_tier", lambda op: forced)
    monkeypatch.setattr(cuda, "resolve_tier", lambda op, device, tier_=None, dtype=None: tier)
    order = backends.auto_order("linear", torch.device("cuda"), dtype)
    assert order[0] == first and sorted(order) == sorted(backends._DEFAULT_ORDER), order
    assert backends.auto_order("linear", torch.device("cpu"), dtype) == ("reference",)

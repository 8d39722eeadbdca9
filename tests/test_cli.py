"""The command line: `fastradio info`, `models`, `embed` (batching, resolution policies, output
file and metadata, exit codes), `python -m fastradio`, and an end-to-end run on a synthetic model.
CPU only, no network."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

import fastradio
from fastradio import cli, embed, images, samples
from fastradio.errors import ModelNotFoundError

REPO = Path(__file__).resolve().parents[1]


# -- a fake model that records its calls ------------------------------------------------------------

class _Out(NamedTuple):
    summary: torch.Tensor
    features: torch.Tensor


class _Plan:
    names = {"pos_embed": "reference", "patch_embed": "reference", "add_layer_norm": "reference",
             "linear": "reference", "attention": "reference"}


class FakeModel:
    """Quacks like RadioModel. summary = per-channel means, tiled to 3·D; features = per-patch
    channel means, padded to D. So outputs identify the image they came from."""

    min_resolution_step = 16
    patch_size = 16
    embed_dim = 4
    summary_dim = 12
    max_resolution = 2048
    dtype = torch.float32
    device = torch.device("cpu")
    plan = _Plan()
    source = "fake-source"

    def __init__(self, preferred=(64, 64), fail=False):
        self.preferred_resolution = fastradio.Resolution(*preferred)
        self.calls: list = []
        self.fail = fail

    def get_nearest_supported_resolution(self, h, w):
        return fastradio.Resolution(*(max(round(s / 16), 1) * 16 for s in (h, w)))

    @staticmethod
    def expected(x: torch.Tensor, feature_fmt: str = "NLC"):
        """Outputs for one (3, H, W) image, without batch dim."""
        c, hh, ww = x.shape
        h, w = hh // 16, ww // 16
        summary = x.mean(dim=(1, 2)).repeat(4)                            # (12,)
        patches = x.reshape(3, h, 16, w, 16).mean(dim=(2, 4))             # (3, h, w)
        feat = torch.cat([patches, patches[:1]], 0)                        # (4, h, w)
        if feature_fmt == "NLC":
            feat = feat.permute(1, 2, 0).reshape(h * w, 4)
        return summary, feat

    def _one(self, x, feature_fmt):
        s, f = self.expected(x, feature_fmt)
        return s[None], f[None]

    def __call__(self, x, feature_fmt="NLC"):
        if self.fail:
            raise RuntimeError("kernel exploded")
        if isinstance(x, list):
            self.calls.append(("list", [tuple(t.shape) for t in x], feature_fmt))
            return [_Out(*self._one(t, feature_fmt)) for t in x]
        assert x.dim() == 4 and x.dtype == torch.float32
        self.calls.append(("tensor", tuple(x.shape), feature_fmt))
        parts = [self._one(t, feature_fmt) for t in x]
        return _Out(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


@pytest.fixture
def fake(monkeypatch):
    """Replace fastradio.load with one that returns a FakeModel; records its arguments."""
    state = {"model": FakeModel(), "loads": []}

    def load(name, **kw):
        state["loads"].append((name, kw))
        return state["model"]

    monkeypatch.setattr(fastradio, "load", load)
    return state


def _img(path: Path, h: int, w: int, seed: int = 0, mode: str = "RGB") -> Path:
    a = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(a).convert(mode).save(path)
    return path


def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# -- batching ----------------------------------------------------------------------------------------

def test_batching_same_sizes_as_tensor_mixed_as_list(tmp_path):
    sizes = [(32, 32), (32, 32), (32, 32), (48, 32), (32, 32)]
    items = [cli.EmbedItem(_img(tmp_path / f"{i}.png", h, w, seed=i), (h, w), (h, w))
             for i, (h, w) in enumerate(sizes)]
    m = FakeModel()
    tensors, done = cli.embed_images(m, items, batch=2)
    assert m.calls == [
        ("tensor", (2, 3, 32, 32), "NLC"),
        ("list", [(3, 32, 32), (3, 48, 32)], "NLC"),
        ("tensor", (1, 3, 32, 32), "NLC"),
    ]
    assert done == items
    assert sorted(tensors) == sorted([f"summary/{i}" for i in range(5)] + [f"features/{i}" for i in range(5)])
    for i, it in enumerate(items):
        s, f = FakeModel.expected(images.read_image(it.path))
        assert torch.equal(tensors[f"summary/{i}"], s)
        assert torch.equal(tensors[f"features/{i}"], f)
        assert tensors[f"summary/{i}"].dtype == torch.float32


def test_batching_does_not_change_results(tmp_path):
    items = [cli.EmbedItem(_img(tmp_path / f"{i}.png", h, w, seed=i), (h, w), (32, 32))
             for i, (h, w) in enumerate([(30, 40), (32, 32), (50, 20), (17, 17)])]
    ref, _ = cli.embed_images(FakeModel(), items, batch=1)
    for b in (2, 3, 16):
        m = FakeModel()
        got, _ = cli.embed_images(m, items, batch=b)
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref)
        assert all(kind == "tensor" for kind, *_ in m.calls)  # all resized to 32x32


def test_embed_images_nchw_and_no_features(tmp_path):
    items = [cli.EmbedItem(_img(tmp_path / "a.png", 32, 48), (32, 48), (32, 48))]
    t, _ = cli.embed_images(FakeModel(), items, feature_fmt="NCHW")
    assert t["features/0"].shape == (4, 2, 3)
    t, _ = cli.embed_images(FakeModel(), items, features=False)
    assert list(t) == ["summary/0"]


# -- embed through main() ----------------------------------------------------------------------------

def test_embed_writes_file_and_metadata(tmp_path, capsys, fake):
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "b.png", 32, 48, seed=1)
    _img(d / "a.jpg", 40, 40, seed=2)          # nearest: round(40 / 16) = round(2.5) = 2 → 32x32
    _img(d / "c.png", 32, 48, seed=3, mode="RGBA")
    (d / "readme.txt").write_text("x")
    out = tmp_path / "emb.safetensors"
    rc, so, se = _run(capsys, "embed", d, "--model", "C-RADIOv2-B", "--out", out, "--batch", "2")
    assert rc == 0, se
    assert fake["loads"] == [("C-RADIOv2-B", {"device": None, "dtype": None, "backend": "auto", "revision": None})]
    assert "readme.txt" in se and "skipped" in se
    assert "wrote" in so and str(out) in so
    tensors, meta = cli.read_embeddings(out)
    assert meta["format"] == cli.FORMAT_NAME and meta["format_version"] == "1"
    assert meta["fastradio_version"] == fastradio.__version__
    assert meta["model"] == "C-RADIOv2-B" and meta["model_source"] == "fake-source"
    assert meta["synthetic"] is False
    assert meta["dtype"] == "float32" and meta["device"] == "cpu"
    assert meta["backends"] == _Plan.names
    assert meta["count"] == 3 and meta["embed_dim"] == 4 and meta["summary_dim"] == 12 and meta["patch_size"] == 16
    assert meta["feature_fmt"] == "NLC" and meta["resolution"] == "nearest"
    assert meta["background"] == "255,255,255" and meta["exif_transpose"] is True
    assert [Path(p).name for p in meta["images"]] == ["a.jpg", "b.png", "c.png"]
    assert meta["original_sizes"] == [[40, 40], [32, 48], [32, 48]]
    assert meta["model_sizes"] == [[32, 32], [32, 48], [32, 48]]   # round(2.5) == 2
    assert len(tensors) == 6
    for i, p in enumerate(meta["images"]):
        x = images.resize(images.read_image(p), meta["model_sizes"][i])
        s, f = FakeModel.expected(x)
        assert torch.equal(tensors[f"summary/{i}"], s)
        assert torch.equal(tensors[f"features/{i}"], f)
    # every metadata value in the raw header is a string (safetensors' rule)
    from safetensors import safe_open
    with safe_open(str(out), framework="pt") as f:
        raw = f.metadata()
    assert all(isinstance(v, str) for v in raw.values())
    assert json.loads(raw["images"]) == meta["images"]
    assert not list(tmp_path.glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask   # a normal file, not mkstemp's 0600


def test_progress_bar_on_a_tty(tmp_path, monkeypatch, fake):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    p = _img(tmp_path / "a.png", 32, 32)
    for quiet, shown in (([], True), (["--quiet"], False)):
        err = TTY()
        monkeypatch.setattr(sys, "stderr", err)
        out = tmp_path / f"o{len(quiet)}"
        assert cli.main(["embed", str(p), "-m", "x", "-o", str(out), *quiet]) == 0
        assert ("1/1" in err.getvalue()) is shown
        assert "progress:" not in err.getvalue()   # a bar on a terminal, no log lines


def test_embed_options_reach_load_and_model(tmp_path, capsys, fake):
    p = _img(tmp_path / "a.png", 32, 32)
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", p, "-m", "x", "-o", out, "--dtype", "bf16", "--device", "cpu",
                     "--backend", "reference", "--revision", "v1", "--feature-fmt", "NCHW", "-q")
    assert rc == 0, se
    assert fake["loads"][0][1] == {"device": torch.device("cpu"), "dtype": torch.bfloat16,
                                   "backend": "reference", "revision": "v1"}
    assert fake["model"].calls == [("tensor", (1, 3, 32, 32), "NCHW")]
    t, meta = cli.read_embeddings(out)
    assert t["features/0"].shape == (4, 2, 2) and meta["feature_fmt"] == "NCHW"


def test_embed_no_features(tmp_path, capsys, fake):
    p = _img(tmp_path / "a.png", 32, 32)
    out = tmp_path / "o.safetensors"
    assert _run(capsys, "embed", p, "-m", "x", "-o", out, "--no-features")[0] == 0
    t, meta = cli.read_embeddings(out)
    assert list(t) == ["summary/0"] and meta["feature_fmt"] == "none"


@pytest.mark.parametrize("res,expected", [
    ("native", [[32, 48], [64, 16]]),
    ("nearest", [[32, 48], [64, 16]]),
    ("preferred", [[64, 64], [64, 64]]),
    ("48x96", [[48, 96], [48, 96]]),
])
def test_resolution_modes(tmp_path, capsys, fake, res, expected):
    a = _img(tmp_path / "a.png", 32, 48)
    b = _img(tmp_path / "b.png", 64, 16)
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", a, b, "-m", "x", "-o", out, "--resolution", res)
    assert rc == 0, se
    _, meta = cli.read_embeddings(out)
    assert meta["model_sizes"] == expected
    assert meta["original_sizes"] == [[32, 48], [64, 16]]


def test_native_non_multiple_is_exit_2_naming_it(tmp_path, capsys, fake):
    """Sizes are learnt while decoding (no pre-pass over a huge collection): the run stops at the
    first image --resolution native cannot take, after writing the images before it."""
    a = _img(tmp_path / "a.png", 32, 32)
    b = _img(tmp_path / "photo.png", 500, 333)
    for out in (tmp_path / "o.safetensors", tmp_path / "o"):
        rc, so, se = _run(capsys, "embed", a, b, "-m", "x", "-o", out, "--resolution", "native", "-j", "0")
        assert rc == 2
        last = se.strip().splitlines()[-1]
        assert last.startswith("fastradio: error:") and "Traceback" not in se
        assert "photo.png" in last and "500x333" in last and "--resolution nearest" in last and "496x336" in last
        assert "--skip-unreadable" in last
    assert not (tmp_path / "o.safetensors").exists()
    data, manifest = embed.load(tmp_path / "o")
    assert data["ids"] == [str(a)] and manifest["runs"][-1]["status"] == "stopped" and not manifest["complete"]
    # skipped with --skip-unreadable, recorded with its reason
    rc, _, se = _run(capsys, "embed", a, b, "-m", "x", "-o", tmp_path / "o2", "--resolution", "native",
                     "--skip-unreadable")
    assert rc == 0, se
    m = embed.read_manifest(tmp_path / "o2")
    assert m["count"] == 1 and [s["id"] for s in m["skipped"]] == [str(b)] and "500x333" in m["skipped"][0]["reason"]


def test_nearest_resizes_with_note(tmp_path, capsys, fake):
    b = _img(tmp_path / "photo.png", 500, 333)
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", b, "-m", "x", "-o", out)
    assert rc == 0
    assert "resized 1 of 1" in se
    t, meta = cli.read_embeddings(out)
    assert meta["model_sizes"] == [[496, 336]]
    assert t["features/0"].shape == (31 * 21, 4)


def test_synthetic_warning(tmp_path, capsys, fake):
    p = _img(tmp_path / "a.png", 32, 32)
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", p, "-m", "synthetic:C-RADIOv2-B", "-o", out, "-q")
    assert rc == 0
    assert "warning:" in se and "RANDOM weights" in se   # printed even with --quiet
    assert cli.read_embeddings(out)[1]["synthetic"] is True


def test_samples_flag(tmp_path, capsys, fake, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", "--samples", "-m", "x", "-o", out, "--batch", "3")
    assert rc == 0, se
    _, meta = cli.read_embeddings(out)
    assert [Path(p).name for p in meta["images"]] == list(samples.SAMPLES)
    assert all(Path(p).parent == tmp_path / "cache" / "samples-v1" for p in meta["images"])
    assert len({tuple(s) for s in meta["model_sizes"]}) == len(samples.SAMPLES)
    assert any(kind == "list" for kind, *_ in fake["model"].calls)


def test_skip_unreadable(tmp_path, capsys, fake):
    d = tmp_path / "d"
    d.mkdir()
    _img(d / "a.png", 32, 32)
    (d / "b.png").write_text("not really a png")
    out = tmp_path / "o.safetensors"
    rc, _, se = _run(capsys, "embed", d, "-m", "x", "-o", out)
    assert rc == 2 and "b.png" in se and "--skip-unreadable" in se
    rc, _, se = _run(capsys, "embed", d, "-m", "x", "-o", out, "--skip-unreadable")
    assert rc == 0 and "b.png" in se
    assert [Path(p).name for p in cli.read_embeddings(out)[1]["images"]] == ["a.png"]


def test_model_not_found_is_exit_2_and_mentions_synthetic(tmp_path, capsys, monkeypatch):
    def load(name, **kw):
        raise ModelNotFoundError("nvidia/C-RADIOv2-B is not in the Hugging Face cache and the Hub is "
                                 "unreachable; download it with `hf download nvidia/C-RADIOv2-B`")

    monkeypatch.setattr(fastradio, "load", load)
    p = _img(tmp_path / "a.png", 32, 32)
    rc, _, se = _run(capsys, "embed", p, "-m", "C-RADIOv2-B", "-o", tmp_path / "o.st")
    assert rc == 2
    lines = se.strip().splitlines()
    assert lines[0].startswith("loading C-RADIOv2-B") and len(lines) == 2
    assert "nvidia/C-RADIOv2-B" in lines[-1] and "synthetic:C-RADIOv2-B" in lines[-1]
    assert "Traceback" not in se
    assert not (tmp_path / "o.st").exists()   # the output folder is made only once the model is loaded


def test_real_model_offline_and_not_cached_is_exit_2(tmp_path, capsys, monkeypatch):
    """The real loader, offline with an empty cache: never a silent fallback to random weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    p = _img(tmp_path / "a.png", 32, 32)
    rc, so, se = _run(capsys, "embed", p, "-m", "C-RADIOv2-B", "-o", tmp_path / "o.st")
    assert rc == 2, se
    assert "nvidia/C-RADIOv2-B" in se and "synthetic:C-RADIOv2-B" in se
    assert "RANDOM" not in se and "Traceback" not in se
    assert not (tmp_path / "o.st").exists()
    assert not (tmp_path / "cache" / "synthetic").exists()


def test_runtime_failure_is_exit_1(tmp_path, capsys, fake):
    fake["model"].fail = True
    p = _img(tmp_path / "a.png", 32, 32)
    rc, _, se = _run(capsys, "embed", p, "-m", "x", "-o", tmp_path / "o.safetensors")
    assert rc == 1 and "kernel exploded" in se and "Traceback" not in se
    rc, _, se = _run(capsys, "embed", p, "-m", "x", "-o", tmp_path / "o.safetensors", "--debug")
    assert rc == 1 and "Traceback" in se
    assert not (tmp_path / "o.safetensors").exists()
    # a folder output records the failed run (nothing embedded) and can be resumed
    rc, _, se = _run(capsys, "embed", p, "-m", "x", "-o", tmp_path / "o")
    assert rc == 1 and "kernel exploded" in se
    m = embed.read_manifest(tmp_path / "o")
    assert m["count"] == 0 and m["shards"] == [] and m["runs"][-1]["status"] == "failed" and not m["complete"]
    fake["model"].fail = False
    assert _run(capsys, "embed", p, "-m", "x", "-o", tmp_path / "o", "--resume")[0] == 0
    assert embed.read_manifest(tmp_path / "o")["complete"]


@pytest.mark.parametrize("args,needle", [
    (["embed", "{d}/missing.png", "-m", "x"], "no such file"),
    (["embed", "-m", "x"], "no images given"),
    (["embed", "{d}/empty", "-m", "x"], "no images found"),
    (["embed", "{d}/ok.png", "-m", "x", "--batch", "0"], "--batch"),
    (["embed", "{d}/ok.png", "-m", "x", "--dtype", "int8"], "--dtype"),
    (["embed", "{d}/ok.png", "-m", "x", "--resolution", "huge"], "resolution"),
    (["embed", "{d}/ok.png", "-m", "x", "--resolution", "50x50"], "multiples of 16; the nearest supported resolution is 48x48"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}/nodir/o.st"], "does not exist"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}"], "files that are not fastradio output (e.g. bad.png)"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}/empty/x/y"], "does not exist"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}/ok.png"], "is a file"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}/o.safetensors", "--resume"], "needs a sharded output folder"),
    (["embed", "{d}/ok.png", "-m", "x", "--out", "{d}/o.safetensors", "--shard-size", "4"], "--shard-size needs"),
    (["embed", "{d}/ok.png", "-m", "x", "--resume", "--overwrite"], "contradict"),
    (["embed", "{d}/ok.png", "-m", "x", "--shard-size", "0"], "--shard-size"),
    (["embed", "{d}/ok.png", "-m", "x", "--workers", "-1"], "--workers"),
    (["embed", "{d}/ok.png", "-m", "x", "--log-interval", "-1"], "--log-interval"),
    (["embed", "{d}/ok.png", "-m", "x", "--no-features", "--features", "full"], "contradicts"),
    (["embed", "-m", "x", "--file-list", "{d}/nolist.txt"], "no such file"),
    (["embed", "{d}/ok.png", "-m", "x", "--device", "tpu"], "--device"),
    (["embed", "{d}/ok.png", "-m", "x", "--background", "nocolour"], "background"),
])
def test_usage_errors_exit_2(tmp_path, capsys, fake, args, needle):
    _img(tmp_path / "ok.png", 32, 32)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "empty").mkdir()
    argv = [a.format(d=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.st")]
    rc, so, se = _run(capsys, *argv)
    assert rc == 2
    assert needle in se
    assert "Traceback" not in se
    assert se.strip().splitlines()[-1].startswith("fastradio: error:")
    assert len(se.strip().splitlines()) == 1
    assert fake["loads"] == []   # input errors are found before the model is loaded


@pytest.mark.parametrize("argv", [["embed", "a.png"], ["embed", "a.png", "-m", "x", "--nope"], ["frobnicate"],
                                  ["embed", "a.png", "-m", "x", "--feature-fmt", "NHWC"], []])
def test_argparse_errors_exit_2(capsys, argv):
    assert cli.main(argv) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_exit_2(tmp_path, capsys, fake):
    p = _img(tmp_path / "a.png", 32, 32)
    rc, _, se = _run(capsys, "embed", p, "-m", "x", "--device", "cuda", "-o", tmp_path / "o.st")
    assert rc == 2 and "CUDA is not available" in se and fake["loads"] == []


def test_debug_shows_traceback_for_usage_errors(tmp_path, capsys):
    rc, _, se = _run(capsys, "embed", tmp_path / "missing.png", "-m", "x", "--debug")
    assert rc == 2 and "Traceback" in se and "no such file" in se


def test_help_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert fastradio.__version__ in capsys.readouterr().out
    assert cli.main(["embed", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--model", "--out", "--batch", "--resolution", "--device", "--dtype", "--backend",
                "--feature-fmt", "--no-features", "--recursive", "--samples"):
        assert opt in out


# -- info and models ---------------------------------------------------------------------------------

def test_info_text(capsys):
    from fastradio import backends, ops

    rc, out, _ = _run(capsys, "info")
    assert rc == 0
    assert f"fastradio   {fastradio.__version__}" in out
    assert torch.__version__ in out
    assert "python" in out and "triton" in out and "_C" in out
    assert "devices" in out and "cpu" in out
    if not torch.cuda.is_available():
        assert "cuda      unavailable:" in out
    for b in backends.BACKENDS:
        assert f"  {b}" in out
    assert "backends on cpu" in out
    assert "auto (" in out
    try:
        importlib.import_module("fastradio._C")
    except ImportError:
        assert "extension not built:" in out


def test_info_json_shape(capsys):
    from fastradio import backends, ops

    rc, out, _ = _run(capsys, "info", "--json")
    assert rc == 0
    info = json.loads(out)
    for key in ("fastradio", "python", "platform", "torch", "triton", "packages", "extension", "cuda",
                "devices", "backends", "auto"):
        assert key in info
    assert info["fastradio"]["version"] == fastradio.__version__
    assert info["torch"]["version"] == torch.__version__
    assert set(info["extension"]) == {"available", "build_info", "error"}
    assert info["devices"][0]["device"] == "cpu"
    assert info["cuda"]["available"] == torch.cuda.is_available()
    devs = [d["device"] for d in info["devices"] if not d.get("error")]
    rows = info["backends"]
    assert len(rows) == len(devs) * 3 * len(ops.OPS) * len(backends.BACKENDS)
    for r in rows:
        assert set(r) == {"device", "dtype", "backend", "op", "usable", "reasons"}
        assert r["usable"] == (r["reasons"] == [])
        assert r["backend"] in backends.BACKENDS and r["op"] in ops.OPS
    ref_cpu = [r for r in rows if r["backend"] == "reference" and r["device"] == "cpu"]
    assert ref_cpu and all(r["usable"] for r in ref_cpu)
    assert len(info["auto"]) == len(devs) * 3 * len(ops.OPS)
    assert all(a["backend"] in backends.BACKENDS for a in info["auto"] if a["device"] == "cpu")


def test_info_reports_refusals_and_missing_extension(capsys, monkeypatch):
    from fastradio import backends

    real_refusals = backends.refusals

    def refusals(name, op, device, dtype, **facts):
        if name == "triton" and op == "attention" and dtype == torch.float16:
            return ["head dim 80 needs sm_80 (test)"]
        return real_refusals(name, op, device, dtype, **facts)

    monkeypatch.setattr(backends, "refusals", refusals)
    monkeypatch.setitem(sys.modules, "fastradio._C", None)  # makes the import fail
    rc, out, _ = _run(capsys, "info")
    assert rc == 0
    assert "extension not built:" in out
    assert "head dim 80 needs sm_80 (test)" in out
    info = cli.collect_info()
    assert info["extension"]["available"] is False and "extension not built" in info["extension"]["error"]
    row = [r for r in info["backends"] if r["backend"] == "triton" and r["op"] == "attention"
           and r["dtype"] == "float16"][0]
    assert row == {"device": "cpu", "dtype": "float16", "backend": "triton", "op": "attention",
                   "usable": False, "reasons": ["head dim 80 needs sm_80 (test)"]}


def test_info_with_extension_build_info(capsys, monkeypatch):
    import types

    fake_c = types.ModuleType("fastradio._C")
    fake_c.build_info = lambda: {"cuda_version": "13.0", "archs": ["sm_80", "sm_90"]}
    monkeypatch.setitem(sys.modules, "fastradio._C", fake_c)
    info = cli.collect_info()
    assert info["extension"] == {"available": True, "error": None,
                                 "build_info": {"cuda_version": "13.0", "archs": ["sm_80", "sm_90"]}}
    rc, out, _ = _run(capsys, "info")
    assert "cuda_version: 13.0" in out and "sm_90" in out


def _fake_torch(*, cuda_version="13.0", devices=(), init_error=None):
    from types import SimpleNamespace as NS

    def init():
        if init_error:
            raise RuntimeError(init_error)

    props = [NS(name=n, major=c[0], minor=c[1], total_memory=80 * 2**30, multi_processor_count=132)
             for n, c in devices]
    cuda = NS(device_count=lambda: len(props), is_available=lambda: bool(props), init=init,
              get_device_properties=lambda i: props[i])
    return NS(__version__="2.99.0+cu130", version=NS(cuda=cuda_version, hip=None), cuda=cuda)


def test_info_cuda_devices_and_reasons(capsys):
    info, devs = cli._cuda_info(_fake_torch(devices=[("NVIDIA H100 80GB HBM3", (9, 0)), ("Tesla P100", (6, 0))]))
    assert info == {"available": True, "device_count": 2, "reason": None}
    assert [(d["device"], d["name"], d["sm"], d["capability"]) for d in devs] == [
        ("cuda:0", "NVIDIA H100 80GB HBM3", "sm_90", [9, 0]), ("cuda:1", "Tesla P100", "sm_60", [6, 0])]
    info, devs = cli._cuda_info(_fake_torch(init_error="Found no NVIDIA driver on your system."))
    assert not info["available"] and "no NVIDIA driver" in info["reason"] and devs == []
    info, _ = cli._cuda_info(_fake_torch(cuda_version=None))
    assert not info["available"] and "built without CUDA" in info["reason"]
    # rendering of a CUDA device
    full = cli.collect_info()
    full["devices"].append({"device": "cuda:0", "type": "cuda", "name": "NVIDIA H100 80GB HBM3",
                            "capability": [9, 0], "sm": "sm_90", "total_memory_bytes": 80 * 2**30,
                            "multiprocessors": 132})
    text = cli.format_info(full)
    assert "cuda:0    NVIDIA H100 80GB HBM3, sm_90 (compute capability 9.0), 80.0 GiB, 132 SMs" in text


def test_models(capsys):
    rc, out, _ = _run(capsys, "models")
    assert rc == 0
    for name in ("C-RADIOv2-B", "C-RADIOv2-L", "C-RADIOv2-H", "C-RADIOv2-g", "nvidia/C-RADIOv2-g", "synthetic:",
                 "C-RADIOv3-B", "C-RADIOv3-L", "C-RADIOv3-H", "nvidia/C-RADIOv3-g", "nvidia/C-RADIOv4-SO400M",
                 "C-RADIOv4-H", "431,237,232", "651,645,440", "98,254,848", "corners=False", "per revision"):
        assert name in out
    assert "test-d128" not in out
    rc, out, _ = _run(capsys, "models", "--all", "--json")
    recs = json.loads(out)
    assert any(r["name"] == "test-d128" for r in recs)
    b = [r for r in recs if r["name"] == "C-RADIOv2-B"][0]
    assert b["hub_repo"] == "nvidia/C-RADIOv2-B" and b["embed_dim"] == 768 and b["params"] == 98_233_344
    so = [r for r in recs if r["name"] == "C-RADIOv4-SO400M"][0]
    assert (so["params"], so["num_heads"], so["head_dim"], so["mlp_hidden"], so["summary_dim"]) == (
        431_237_232, 16, 72, 4304, 2304)
    t = [r for r in recs if r["name"] == "test-d128"][0]
    assert t["params"] == 528_640             # the 16x16 position grid of test architectures, not 128x128


def test_models_all_counts_and_limits_are_the_built_models(capsys, tmp_path, monkeypatch):
    """Every row of `fastradio models --all` against a model built from it: the parameter count
    (sum of numel) of the model on the meta device (no memory, every size), and for the tiny test
    architectures also of the model loaded from its synthetic checkpoint, with its limits."""
    from fastradio.configs import resolve_known_model
    from fastradio.model import RadioModel

    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    rc, out, _ = _run(capsys, "models", "--all", "--json")
    recs = json.loads(out)
    assert rc == 0 and {r["name"] for r in recs} == {m.name for m in fastradio.list_models(include_test=True)}
    rc, text, _ = _run(capsys, "models", "--all")
    for r in recs:
        with torch.device("meta"):
            built = RadioModel(resolve_known_model(r["name"]).config, backend="reference")
        assert r["params"] == sum(p.numel() for p in built.parameters()), r["name"]
        assert f"{r['params']:,}" in text
        if not r["test_only"]:
            continue
        m = fastradio.load(f"synthetic:{r['name']}", device="cpu", dtype=torch.float32, backend="reference")
        assert r["params"] == sum(p.numel() for p in m.parameters()), r["name"]
        assert (r["patch_size"], r["min_resolution_step"], r["max_resolution"], r["preferred_resolution"]) == (
            m.patch_size, m.min_resolution_step, m.max_resolution, list(m.preferred_resolution)), r["name"]
        assert (r["embed_dim"], r["num_prefix_tokens"], r["summary_dim"]) == (
            m.embed_dim, m.num_summary_tokens, m.summary_dim), r["name"]
        assert (r["max_resolution"], r["preferred_resolution"]) == (256, [64, 64])   # the 16x16 position grid


def test_other_radio_generations_are_refused_not_downloaded(capsys, tmp_path, monkeypatch):
    import huggingface_hub

    def no_hub(*a, **kw):
        raise AssertionError("the Hub must not be asked for a model fastradio does not support")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    p = _img(tmp_path / "a.png", 32, 32)
    rc, _, se = _run(capsys, "embed", p, "-m", "nvidia/RADIO-B", "-o", tmp_path / "o.st")
    assert rc == 2 and "Traceback" not in se
    assert "RADIOv2.5" in se and "not support yet" in se and "14-pixel patches" in se
    assert "hf download" not in se and "huggingface-cli" not in se


def test_python_dash_m(tmp_path):
    """`python -m fastradio` runs cli.main and passes its exit code on."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    r = subprocess.run([sys.executable, "-m", "fastradio", "embed", "-m", "x"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "no images given" in r.stderr and r.stdout == ""


# -- end to end on a synthetic model -----------------------------------------------------------------

def _synthetic_available() -> str | None:
    try:
        fastradio.load("synthetic:test-d128", device="cpu")
    except ModuleNotFoundError as e:  # the loader's modules are still being written
        return f"synthetic loading not available yet: {e}"
    return None


def test_end_to_end_samples_synthetic(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    why = _synthetic_available()
    if why:
        pytest.skip(why)
    out = tmp_path / "e2e.safetensors"
    rc, so, se = _run(capsys, "embed", "--samples", "--model", "synthetic:test-d128", "--device", "cpu",
                      "--out", out, "--batch", "3")
    assert rc == 0, se
    assert "RANDOM weights" in se
    tensors, meta = cli.read_embeddings(out)
    assert meta["synthetic"] is True and meta["count"] == len(samples.SAMPLES)
    model = fastradio.load("synthetic:test-d128", device="cpu")
    assert meta["embed_dim"] == model.embed_dim and meta["summary_dim"] == model.summary_dim
    assert meta["dtype"] == "float32"
    for i, p in enumerate(meta["images"]):
        x = images.read_image(p)
        assert list(x.shape[1:]) == meta["original_sizes"][i]
        h, w = model.get_nearest_supported_resolution(*x.shape[1:])
        assert meta["model_sizes"][i] == [h, w]
        with torch.inference_mode():
            s, f = model(images.resize(x, (h, w))[None])
        torch.testing.assert_close(tensors[f"summary/{i}"], s[0].float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tensors[f"features/{i}"], f[0].float(), rtol=1e-5, atol=1e-5)
        assert tensors[f"features/{i}"].shape == ((h // 16) * (w // 16), model.embed_dim)

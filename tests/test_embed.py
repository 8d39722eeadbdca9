"""`fastradio embed` for real collections (fastradio.embed): loader workers, resolution buckets,
streaming shards + manifest, --resume after a crash or a kill, unreadable files, Parquet, progress
lines. CPU only, no network; the model is synthetic:test-d128 (random weights, generated into a
temporary cache) on small generated images."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastradio
from fastradio import cli, embed, images
from fastradio.embed import store
from fastradio.embed.loader import Batcher, Decoded, Geometry
from fastradio.embed.progress import Progress, fmt_duration

MODEL = "synthetic:test-d128"
PKG_ROOT = Path(fastradio.__file__).resolve().parents[1]   # what `import fastradio` finds, for subprocesses


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path_factory.getbasetemp() / "fastradio-cache"))


@pytest.fixture
def counting(monkeypatch):
    """fastradio.load wrapped so that every image fed to the model is counted, and list calls
    (packed mixed sizes) are recorded."""
    real = fastradio.load
    state = {"images": 0, "calls": []}

    def load(name, **kw):
        m = real(name, **kw)
        fwd = m.forward

        def forward(x, feature_fmt="NLC"):
            if isinstance(x, (list, tuple)):
                state["calls"].append(("list", [tuple(t.shape[1:]) for t in x]))
                state["images"] += len(x)
            else:
                state["calls"].append(("tensor", tuple(x.shape)))
                state["images"] += x.shape[0]
            return fwd(x, feature_fmt=feature_fmt)

        m.forward = forward
        return m

    monkeypatch.setattr(fastradio, "load", load)
    return state


def _save(path: Path, h: int, w: int, seed: int) -> Path:
    a = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def _images(folder: Path, n: int, sizes=((32, 32),), ext: str = "png", start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [_save(folder / f"img{i:05d}.{ext}", *sizes[i % len(sizes)], seed=i) for i in range(start, start + n)]


def _truncated_jpeg(path: Path, h: int = 64, w: int = 64) -> Path:
    """A JPEG cut at 2/3: its header reads fine (probe passes), decoding fails."""
    a = np.random.default_rng(123).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert images.probe(path) == (h, w)
    with pytest.raises(images.ImageInputError, match="truncated"):
        images.read_image(path)
    return path


def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _sub_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


def _cli_cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "fastradio", "embed", *map(str, argv)]


def _file_state(p: Path) -> tuple:
    st = p.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha256(p.read_bytes()).hexdigest()


def _by_id(data: dict) -> dict:
    out = {}
    for k, i in enumerate(data["ids"]):
        out[i] = (data["summary"][k],
                  None if data["pooled"] is None else data["pooled"][k],
                  None if data["features"] is None else data["features"][k])
    return out


def _assert_same(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        for x, y in zip(a[k], b[k]):
            assert (x is None) == (y is None), k
            if x is not None:
                if exact:
                    assert torch.equal(x, y), k
                else:
                    torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


# -- units -------------------------------------------------------------------------------------------

def _dec(seq, h, w):
    return Decoded(seq, torch.zeros(3, h, w), (h, w), (h, w))


def test_batcher_groups_by_size_and_packs_the_rest():
    b = Batcher(batch=2, max_pending=3)
    out = []
    sizes = [(32, 32), (48, 32), (32, 32), (64, 16), (48, 32), (16, 16), (80, 16), (96, 16), (16, 16)]
    for k, s in enumerate(sizes):
        out += [[d.seq for d in batch] for batch in b.add(_dec(k, *s))]
    # full same-size buckets go as soon as they fill; >3 pending: the 2 oldest go as a packed list
    assert out == [[0, 2], [1, 4], [3, 5]]
    assert len(b) == 3
    rest = [[d.seq for d in batch] for batch in b.drain()]
    assert rest == [[7, 6], [8]]       # largest first, then item order
    assert len(b) == 0 and b.drain() == []
    with pytest.raises(ValueError):
        Batcher(0)


def test_geometry_follows_the_model_or_declines():
    m = fastradio.load(MODEL, device="cpu")
    g = Geometry.of(m)
    assert g is not None and g.min_resolution_step == 16 and g.preferred_resolution == tuple(m.preferred_resolution)
    for h, w in ((500, 333), (17, 17), (8, 1000)):
        assert g.get_nearest_supported_resolution(h, w) == tuple(m.get_nearest_supported_resolution(h, w))

    class Odd:
        min_resolution_step = 16
        preferred_resolution = (64, 64)

        def get_nearest_supported_resolution(self, h, w):   # rounds up: not the common rule
            return (-(-h // 16) * 16, -(-w // 16) * 16)

    assert Geometry.of(Odd()) is None


def test_progress_log_lines_at_a_steady_interval():
    clock = [100.0]
    err = io.StringIO()
    p = Progress(total=1000, already=200, mode="log", interval=10, stream=err, clock=lambda: clock[0],
                 wall=lambda: 0.0)
    p.start()
    for _ in range(40):                 # 40 updates of 10 images, 1 s apart: a line every 10 s
        clock[0] += 1.0
        p.update(embedded=10)
    p.update(skipped=1)
    lines = err.getvalue().splitlines()
    assert len(lines) == 4
    assert "progress: 300/1000 images (30.0%), 10.0 img/s, elapsed 0:00:10, ETA 0:01:10" in lines[0]
    assert "600/1000 images (60.0%)" in lines[-1] and "ETA 0:00:40" in lines[-1]
    p.set_shards(3)
    assert p.line("done").endswith("3 shards written, 1 skipped")
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "?"
    q = Progress(total=10, mode="none", stream=err)
    q.update(embedded=10)
    assert len(err.getvalue().splitlines()) == 4


def test_file_list_source(tmp_path, monkeypatch):
    a, b = _images(tmp_path / "d", 2)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my images\n\n  {a}  \n{os.path.relpath(b, tmp_path)}\n{a}\n")
    monkeypatch.chdir(tmp_path)
    src = embed.FileListSource(lst)
    notes = []
    items = embed.collect_items([src], on_duplicates=lambda n, first: notes.append((n, first)))
    assert [i.id for i in items] == [str(a), os.path.relpath(b, tmp_path)]
    assert notes == [(1, str(a))]
    assert src.read(items[1].ref).shape == (3, 32, 32)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{b}\n"))
    assert [i for i, _ in embed.FileListSource("-").entries()] == [str(b)]


def test_pipeline_sizes_in_the_main_process_when_the_model_rounds_differently(tmp_path):
    """A model whose nearest-size rule is not the common one: the workers leave sizing and
    resizing to the main process, which asks the model itself."""
    paths = _images(tmp_path / "imgs", 5, sizes=((30, 40), (17, 33)))
    model = fastradio.load(MODEL, device="cpu")
    model.get_nearest_supported_resolution = lambda h, w: (-(-h // 16) * 16, -(-w // 16) * 16)   # round up
    assert Geometry.of(model) is None
    src = embed.FileSource(paths)
    items = embed.collect_items([src])
    out = embed.MemoryOutput()
    stats = embed.run(model, [src], items, out, options=embed.Options(batch=2, workers=1, features="pooled"))
    assert stats.embedded == 5 and stats.resized == 5
    assert [r.model_size for r in out.results] == [(32, 48), (32, 48), (32, 48), (32, 48), (32, 48)]
    assert [r.original_size for r in out.results] == [(30, 40), (17, 33), (30, 40), (17, 33), (30, 40)]
    with torch.inference_mode():
        s, _ = model(images.resize(images.read_image(paths[1]), (32, 48))[None])
    torch.testing.assert_close(out.results[1].summary, s[0], rtol=1e-5, atol=1e-5)


def test_shards_also_close_at_the_byte_limit(tmp_path):
    paths = _images(tmp_path / "imgs", 10)
    model = fastradio.load(MODEL, device="cpu")
    src = embed.FileSource(paths)
    sizes = []

    class Out(embed.MemoryOutput):
        def add(self, results):
            sizes.append(len(results))
            super().add(results)

    # 32x32, full features: (4 x 128 + 384) x 4 bytes = 3584 bytes per image; a 10000-byte cap → 3 per shard
    embed.run(model, [src], embed.collect_items([src]), Out(),
              options=embed.Options(batch=2, shard_size=100, shard_bytes=10_000, features="full"))
    assert sizes == [3, 3, 3, 1]


# -- the CLI on the synthetic model --------------------------------------------------------------------

def test_shards_are_written_as_the_run_goes(tmp_path, capsys, monkeypatch, counting):
    """shard size 8, 40 images: 5 shards, each on disk and in the manifest before the next one is
    computed; nothing is kept back for the end."""
    _images(tmp_path / "imgs", 40, sizes=((32, 32), (48, 32), (32, 64)))
    out = tmp_path / "out"
    seen = []
    real_write = store.ShardedOutput._write_shard

    def write_shard(self, results):
        real_write(self, results)
        m = json.loads((out / store.MANIFEST).read_text())
        seen.append((counting["images"], m["count"], [e["file"] for e in m["shards"]],
                     sorted(p.name for p in out.glob("shard-*"))))

    monkeypatch.setattr(store.ShardedOutput, "_write_shard", write_shard)
    rc, so, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 8, "-b", 4)
    assert rc == 0, se
    assert [s[1] for s in seen] == [8, 16, 24, 32, 40]
    for k, (fed, count, listed, on_disk) in enumerate(seen):
        assert listed == on_disk == [f"shard-{i:05d}.safetensors" for i in range(k + 1)]
        assert fed <= count + 8     # the model is at most one shard ahead of the disk
    m = embed.read_manifest(out)
    assert m["complete"] and m["count"] == 40 and m["shard_count"] == 5 and m["skipped"] == []
    assert [e["count"] for e in m["shards"]] == [8] * 5
    for k in ("model", "dtype", "resolution", "fastradio_version", "shard_format", "features", "embed_dim"):
        assert k in m
    assert m["model"] == MODEL and m["fastradio_version"] == fastradio.__version__ and m["dtype"] == "float32"
    for e in m["shards"]:
        assert store.sha256_file(out / e["file"]) == e["sha256"] and (out / e["file"]).stat().st_size == e["bytes"]
    data, _ = embed.load(out)
    assert data["ids"] == [str(p) for p in sorted((tmp_path / "imgs").iterdir())]   # input order
    assert data["summary"].shape == (40, 384) and len(data["features"]) == 40
    assert "wrote summaries and NLC features of 40 image(s) in 5 safetensors shard(s)" in so
    assert not list(out.glob(".*.tmp"))


def test_outputs_equal_direct_model_calls(tmp_path, capsys):
    """Every stored tensor is what the model gives for that image alone (resized as the policy says),
    whatever the batching, bucketing and shard boundaries."""
    paths = _images(tmp_path / "imgs", 11, sizes=((30, 40), (32, 32), (50, 20), (17, 17)))
    out = tmp_path / "out"
    assert _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 4, "-b", 3)[0] == 0
    data, m = embed.load(out)
    model = fastradio.load(MODEL, device="cpu")
    for k, p in enumerate(paths):
        x = images.read_image(p)
        size = tuple(model.get_nearest_supported_resolution(*x.shape[1:]))
        assert data["model_sizes"][k] == size and data["original_sizes"][k] == tuple(x.shape[1:])
        with torch.inference_mode():
            s, f = model(images.resize(x, size)[None])
        torch.testing.assert_close(data["summary"][k], s[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(data["features"][k], f[0], rtol=1e-5, atol=1e-5)


def test_native_mixed_sizes_are_packed_and_equal_one_at_a_time(tmp_path, capsys, counting):
    sizes = ((32, 32), (48, 32), (32, 64), (16, 16), (64, 48))
    paths = _images(tmp_path / "imgs", 10, sizes=sizes)
    out = tmp_path / "out"
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out, "--resolution", "native",
                     "-b", 4, "--shard-size", 10, "-j", 0)
    assert rc == 0, se
    assert any(kind == "list" and len(set(s)) > 1 for kind, s in counting["calls"])   # mixed sizes, packed
    data, m = embed.load(out)
    assert m["resolution"] == "native"
    model = fastradio.load(MODEL, device="cpu")
    for k, p in enumerate(paths):
        x = images.read_image(p)
        assert data["model_sizes"][k] == tuple(x.shape[1:])
        with torch.inference_mode():
            s, f = model(x[None])
        torch.testing.assert_close(data["summary"][k], s[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(data["features"][k], f[0], rtol=1e-5, atol=1e-5)


def test_workers_give_results_identical_to_in_process(tmp_path, capsys):
    _images(tmp_path / "imgs", 30, sizes=((30, 40), (32, 32), (50, 20), (64, 64), (17, 33)), ext="jpg")
    common = ["-m", MODEL, "--shard-size", 7, "-b", 4, "--features", "full"]
    assert _run(capsys, "embed", tmp_path / "imgs", "-o", tmp_path / "w0", "-j", 0, *common)[0] == 0
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-o", tmp_path / "w2", "-j", 2, *common)
    assert rc == 0, se
    assert "2 loader worker(s)" in se
    a, ma = embed.load(tmp_path / "w0")
    b, mb = embed.load(tmp_path / "w2")
    assert a["ids"] == b["ids"] and a["model_sizes"] == b["model_sizes"]
    assert [e["ids"] for e in ma["shards"]] == [e["ids"] for e in mb["shards"]]
    _assert_same(_by_id(a), _by_id(b), exact=True)


def test_features_pooled_is_the_mean_of_full(tmp_path, capsys):
    _images(tmp_path / "imgs", 6, sizes=((32, 32), (48, 64)))
    for f in ("full", "pooled", "none"):
        assert _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / f, "--features", f)[0] == 0
    full, _ = embed.load(tmp_path / "full")
    pooled, mp = embed.load(tmp_path / "pooled")
    none, mn = embed.load(tmp_path / "none")
    assert mp["features"] == "pooled" and mp["feature_fmt"] is None and pooled["features"] is None
    assert pooled["pooled"].shape == (6, 128)
    torch.testing.assert_close(pooled["pooled"], torch.stack([f.mean(0) for f in full["features"]]))
    assert none["pooled"] is None and none["features"] is None
    assert torch.equal(none["summary"], full["summary"]) and torch.equal(pooled["summary"], full["summary"])


def test_truncated_jpeg_stops_the_run_or_is_skipped(tmp_path, capsys, counting):
    d = tmp_path / "imgs"
    _images(d, 12)                                     # img00000 .. img00011
    bad = _truncated_jpeg(d / "img00006_cut.jpg")      # sorts after img00006
    _images(d, 7, start=12)
    # without --skip-unreadable: stop at it, naming it; the 7 images before it are written, and
    # the model never sees it or anything after it
    out = tmp_path / "out"
    rc, so, se = _run(capsys, "embed", d, "-m", MODEL, "-o", out, "--shard-size", 4, "-b", 2, "-j", 0)
    assert rc == 2
    last = se.strip().splitlines()[-1]
    assert last.startswith("fastradio: error:") and str(bad) in last and "truncated" in last
    assert "--skip-unreadable" in last and "--resume" in last
    assert counting["images"] == 7
    m = embed.read_manifest(out)
    assert m["count"] == 7 and [e["count"] for e in m["shards"]] == [4, 3] and not m["complete"]
    assert m["runs"][-1]["status"] == "stopped" and str(bad) not in sum((e["ids"] for e in m["shards"]), [])
    # single file: nothing written
    rc, _, se = _run(capsys, "embed", d, "-m", MODEL, "-o", tmp_path / "one.safetensors", "-j", 0)
    assert rc == 2 and str(bad) in se and not (tmp_path / "one.safetensors").exists()
    # --resume --skip-unreadable: continues after the 7, reports and records the bad file
    counting["images"] = 0
    rc, so, se = _run(capsys, "embed", d, "-m", MODEL, "-o", out, "--shard-size", 4, "-b", 2, "--resume",
                      "--skip-unreadable")
    assert rc == 0, se
    assert f"skipped {bad}: cannot decode (image file is truncated" in se
    assert counting["images"] == 12
    m = embed.read_manifest(out)
    assert m["complete"] and m["count"] == 19 and m["skipped_count"] == 1
    assert m["skipped"] == [{"id": str(bad), "reason": m["skipped"][0]["reason"]}] and "truncated" in m["skipped"][0]["reason"]
    assert "skipped 1 unreadable" in so
    # the single file records it too
    assert _run(capsys, "embed", d, "-m", MODEL, "-o", tmp_path / "one.safetensors", "--skip-unreadable")[0] == 0
    _, meta = cli.read_embeddings(tmp_path / "one.safetensors")
    assert meta["count"] == 19 and [s["id"] for s in meta["skipped"]] == [str(bad)]


@pytest.mark.parametrize("stage", ["shard", "orphan", "tmp"])
def test_crash_after_k_shards_then_resume_recomputes_nothing_written(tmp_path, capsys, counting, stage):
    """A run dies (os._exit) after its 2nd shard: after the manifest update ("shard"), after the
    file's rename but before the manifest lists it ("orphan"), or half way through writing it
    ("tmp"). --resume keeps the listed shards untouched, drops the rest, embeds only the others."""
    _images(tmp_path / "imgs", 40, sizes=((32, 32), (32, 48)))
    out = tmp_path / "out"
    argv = [tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 8, "-b", 4, "-j", 1]
    r = subprocess.run(_cli_cmd(*argv), env=_sub_env(**{store.CRASH_ENV: f"{stage}:2"}), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 70, r.stderr
    m = embed.read_manifest(out)
    kept = 2 if stage == "shard" else 1
    assert m["shard_count"] == kept and m["count"] == 8 * kept and not m["complete"]
    assert m["runs"][-1]["status"] == "running"          # it never got to say otherwise
    leftovers = {"shard": [], "orphan": ["shard-00001.safetensors"], "tmp": []}[stage]
    assert sorted(p.name for p in out.glob("shard-*")) == [e["file"] for e in m["shards"]] + leftovers
    assert bool(list(out.glob(".*.tmp"))) == (stage == "tmp")
    before = {e["file"]: _file_state(out / e["file"]) for e in m["shards"]}
    assert _run(capsys, "embed", *argv[:4], tmp_path / "ref", *argv[5:])[0] == 0   # an uninterrupted run
    counting["images"] = 0

    rc, so, se = _run(capsys, "embed", *argv, "--resume")
    assert rc == 0, se
    assert counting["images"] == 40 - 8 * kept              # nothing written is computed again
    assert f"{8 * kept} of 40 image(s) are already in" in se
    if stage != "shard":
        assert "removed 1 unfinished file(s)" in se
    assert not list(out.glob(".*.tmp"))
    m = embed.read_manifest(out)
    assert m["complete"] and m["count"] == 40 and len(m["runs"]) == 2
    assert m["runs"][1]["resumed"] and m["runs"][1]["embedded"] == 40 - 8 * kept and m["runs"][1]["status"] == "complete"
    for name, st in before.items():
        assert _file_state(out / name) == st                  # untouched: same inode, mtime, bytes
    a, _ = embed.load(out)
    b, _ = embed.load(tmp_path / "ref")
    assert sorted(a["ids"]) == sorted(b["ids"])
    _assert_same(_by_id(a), _by_id(b), exact=False)
    # resuming a complete run does nothing, without loading the model
    counting["images"] = 0
    rc, so, _ = _run(capsys, "embed", *argv, "--resume")
    assert rc == 0 and "nothing to do" in so and counting["images"] == 0


def test_resume_refuses_other_settings_and_says_which(tmp_path, capsys):
    _images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    assert _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out)[0] == 0
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out)
    assert rc == 2 and "--resume" in se and "--overwrite" in se
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", "synthetic:test-d128@1", "-o", out, "--resume",
                     "--dtype", "bf16", "--resolution", "64x64", "--features", "pooled")
    assert rc == 2
    msg = se.strip().splitlines()[-1]
    for part in ("model synthetic:test-d128 (this run: synthetic:test-d128@1)", "dtype float32 (this run: bfloat16)",
                 "resolution nearest (this run: 64x64)", "features full (this run: pooled)"):
        assert part in msg, msg
    # aliases of the same model are the same model
    assert _run(capsys, "embed", tmp_path / "imgs", "-m", "synthetic:test-d128@0", "-o", out, "--resume")[0] == 0
    # --overwrite starts over
    rc, so, _ = _run(capsys, "embed", _images(tmp_path / "two", 2)[0], "-m", MODEL, "-o", out, "--overwrite")
    assert rc == 0 and embed.read_manifest(out)["count"] == 1 and len(list(out.glob("shard-*"))) == 1


def test_resume_redoes_a_damaged_shard(tmp_path, capsys, counting):
    _images(tmp_path / "imgs", 12)
    out = tmp_path / "out"
    assert _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 4)[0] == 0
    ref, _ = embed.load(out)
    shard1 = out / "shard-00001.safetensors"
    raw = bytearray(shard1.read_bytes())
    raw[-3] ^= 0xFF
    shard1.write_bytes(bytes(raw))
    with pytest.raises(embed.OutputError, match="checksum mismatch"):
        embed.load(out)
    counting["images"] = 0
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 4, "--resume")
    assert rc == 0, se
    assert "shard-00001.safetensors: checksum mismatch; its 4 image(s) will be embedded again" in se
    assert counting["images"] == 4
    got, m = embed.load(out)
    assert [e["file"] for e in m["shards"]] == ["shard-00000.safetensors", "shard-00002.safetensors",
                                                "shard-00003.safetensors"]
    _assert_same(_by_id(got), _by_id(ref), exact=True)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, capsys):
    _images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    out.mkdir()
    lock, _ = store.prepare_folder(out, resume=False, overwrite=False, settings={})
    try:
        rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out)
        assert rc == 2 and "another fastradio embed is writing this folder" in se
    finally:
        lock.close()
    assert _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", out)[0] == 0


def test_file_list_and_folder_inputs(tmp_path, capsys, monkeypatch):
    a = _images(tmp_path / "a", 3)
    b = _images(tmp_path / "b" / "sub", 2)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in b) + "\n")
    out = tmp_path / "out"
    rc, _, se = _run(capsys, "embed", tmp_path / "a", "--file-list", lst, "-m", MODEL, "-o", out)
    assert rc == 0, se
    data, m = embed.load(out)
    assert data["ids"] == [str(p) for p in a + b]
    assert m["sources"] == ["3 files from the arguments", f"2 files listed in {lst}"]
    # a missing file in a list is an unreadable image (found by the loader, not up front)
    lst.write_text(f"{b[0]}\n{tmp_path / 'gone.png'}\n")
    rc, _, se = _run(capsys, "embed", "--file-list", lst, "-m", MODEL, "-o", tmp_path / "o2")
    assert rc == 2 and "gone.png" in se


def test_parquet_equals_safetensors(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'fastradio[parquet]')")
    import pyarrow.parquet as pq

    paths = _images(tmp_path / "imgs", 9, sizes=((32, 32), (48, 32), (30, 50)))
    for fmt in ("safetensors", "parquet"):
        for f in ("full", "pooled"):
            rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / f"{fmt}-{f}",
                             "--format", fmt, "--features", f, "--shard-size", 4)
            assert rc == 0, se
    for f in ("full", "pooled"):
        st, _ = embed.load(tmp_path / f"safetensors-{f}")
        pqd, m = embed.load(tmp_path / f"parquet-{f}")
        assert m["shard_format"] == "parquet" and [e["file"] for e in m["shards"]] == [
            "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
        assert pqd["ids"] == st["ids"] and pqd["model_sizes"] == st["model_sizes"]
        _assert_same(_by_id(pqd), _by_id(st), exact=True)
    # read with pyarrow alone
    t = pq.read_table(str(tmp_path / "parquet-full"))
    assert t.num_rows == 9
    assert t.column_names == ["id", "height", "width", "input_height", "input_width", "summary", "features"]
    assert t.schema.field("summary").type == pa.list_(pa.float32(), 384)
    assert t.schema.field("features").type == pa.large_list(pa.float32())
    assert t.column("id").to_pylist() == [str(p) for p in paths]
    row = t.slice(2, 1).to_pylist()[0]            # 30x50 → 32x48
    assert (row["height"], row["width"], row["input_height"], row["input_width"]) == (30, 50, 32, 48)
    st, _ = embed.load(tmp_path / "safetensors-full")
    assert np.array_equal(np.asarray(row["summary"], np.float32), st["summary"][2].numpy())
    assert np.array_equal(np.asarray(row["features"], np.float32), st["features"][2].reshape(-1).numpy())
    tp = pq.read_table(str(tmp_path / "parquet-pooled"))
    assert "features" not in tp.column_names and tp.schema.field("pooled").type == pa.list_(pa.float32(), 128)
    meta = json.loads(tp.schema.metadata[b"fastradio"])
    assert meta["features"] == "pooled"


def test_parquet_without_pyarrow_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    _images(tmp_path / "imgs", 1)
    rc, _, se = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / "o", "--format", "parquet")
    assert rc == 2 and "pip install 'fastradio[parquet]'" in se and "Traceback" not in se
    assert not (tmp_path / "o").exists()


def test_progress_lines_and_load_messages_in_a_log_file(tmp_path):
    _images(tmp_path / "imgs", 24)
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        r = subprocess.run(_cli_cmd(tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / "out", "--shard-size", 8,
                                    "-b", 4, "--log-interval", 0), env=_sub_env(), stdout=subprocess.PIPE,
                           stderr=err, text=True, timeout=300)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\r" not in text and "it/s" not in text                       # no bar in a file
    assert f"loading {MODEL}: random weights, generated locally" in text
    assert f"loaded {MODEL} in " in text
    assert "embedding 24 image(s): batch 4" in text
    lines = [ln for ln in text.splitlines() if " progress: " in ln]
    assert len(lines) == 6                                                # one per batch with --log-interval 0
    assert "progress: 4/24 images (16.7%)" in lines[0] and "img/s" in lines[0] and "ETA" in lines[0]
    assert "24/24 images (100.0%)" in lines[-1]
    assert " done: 24/24 images (100.0%)" in text and "3 shards written" in text
    # a long interval: only the start and the final line
    with open(log, "w") as err:
        subprocess.run(_cli_cmd(tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / "out2", "--log-interval", 3600),
                       env=_sub_env(), stdout=subprocess.PIPE, stderr=err, timeout=300, check=True)
    text = log.read_text()
    assert " progress: " not in text and " done: 24/24" in text
    # --quiet: nothing but the random-weights warning
    r = subprocess.run(_cli_cmd(tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / "out3", "-q"), env=_sub_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout == "" and r.stderr.strip().startswith("warning:") and len(r.stderr.splitlines()) == 1


def test_ctrl_c_saves_what_was_computed(tmp_path):
    _images(tmp_path / "imgs", 400)
    out = tmp_path / "out"
    argv = [tmp_path / "imgs", "-m", MODEL, "-o", out, "--shard-size", 20, "-b", 4, "-j", 1]
    # SIGINT back to its default in the child: a parent that ignores it (a job started with `&` in a
    # non-interactive shell) passes SIG_IGN down, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen(_cli_cmd(*argv), env=_sub_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads((out / store.MANIFEST).read_text())["shard_count"] >= 2:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)                     # Ctrl-C reaches the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err and err.strip().splitlines()[-1] == "fastradio: interrupted"
    m = embed.read_manifest(out)
    assert m["runs"][-1]["status"] == "interrupted" and not m["complete"] and 40 <= m["count"] < 400
    assert m["count"] == m["runs"][-1]["embedded"]
    r = subprocess.run(_cli_cmd(*argv, "--resume", "-q"), env=_sub_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m2 = embed.read_manifest(out)
    assert m2["complete"] and m2["count"] == 400 and m2["runs"][-1]["embedded"] == 400 - m["count"]


# -- acceptance ----------------------------------------------------------------------------------------

def test_acceptance_2000_images_killed_and_resumed(tmp_path):
    """2,000 small images (one a truncated JPEG), stderr to a log file: progress lines as it goes,
    shards on disk while it runs, SIGKILL midway, --resume finishes without recomputing the shards
    written, the truncated file reported and skipped, every image accounted for."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(1999):
        _save(d / f"{i:05d}.{'jpg' if i % 2 else 'png'}", 32, 32, seed=i)
    bad = _truncated_jpeg(d / "01000_cut.jpg", 32, 32)
    out = tmp_path / "out"
    argv = [d, "-m", MODEL, "-o", out, "--shard-size", 100, "-b", 16, "-j", 2, "--skip-unreadable",
            "--log-interval", 0.2]
    log1 = tmp_path / "run1.log"
    with open(log1, "w") as err:
        proc = subprocess.Popen(_cli_cmd(*argv), env=_sub_env(), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            m = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    m = json.loads((out / store.MANIFEST).read_text())
                except (OSError, ValueError):
                    m = None
                # midway: shards on disk and (the interval is 0.2 s) progress lines in the log
                if m and m["shard_count"] >= 4 and log1.read_text().count(" progress: ") >= 2:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be killed midway"
            os.killpg(proc.pid, signal.SIGKILL)                 # the run and its loader workers
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    m = embed.read_manifest(out)
    assert not m["complete"] and 4 <= m["shard_count"] < 20 and m["count"] == 100 * m["shard_count"]
    for e in m["shards"]:                                        # shards written while it ran, all valid
        assert store.sha256_file(out / e["file"]) == e["sha256"]
    first = m["count"]
    before = {e["file"]: _file_state(out / e["file"]) for e in m["shards"]}
    text1 = log1.read_text()
    assert f"loaded {MODEL} in" in text1 and "embedding 2000 image(s)" in text1
    assert sum(" progress: " in ln for ln in text1.splitlines()) >= 2 and "img/s" in text1 and "ETA" in text1

    log2 = tmp_path / "run2.log"
    with open(log2, "w") as err:
        r = subprocess.run(_cli_cmd(*argv, "--resume"), env=_sub_env(), stdout=subprocess.PIPE, stderr=err,
                           text=True, timeout=600)
    text2 = log2.read_text()
    assert r.returncode == 0, text2
    assert f"--resume: {first} of 2000 image(s) are already in" in text2
    assert f"skipped {bad}: cannot decode (image file is truncated" in text2
    assert " done: 2000/2000 images (100.0%)" in text2 and "1 skipped" in text2
    m = embed.read_manifest(out)
    assert m["complete"] and m["count"] == 1999 and m["skipped"][0]["id"] == str(bad)
    assert m["runs"][1]["embedded"] == 1999 - first and m["runs"][0]["status"] == "running"
    for name, st in before.items():
        assert _file_state(out / name) == st
    data, _ = embed.load(out)
    assert sorted(data["ids"]) == sorted(str(p) for p in d.iterdir() if p != bad)
    assert len(set(data["ids"])) == 1999
    # spot checks against the model called on one image at a time
    model = fastradio.load(MODEL, device="cpu")
    pos = {i: k for k, i in enumerate(data["ids"])}
    for name in ("00000.png", "00999.jpg", "01500.png", "01998.png"):
        k = pos[str(d / name)]
        with torch.inference_mode():
            s, _ = model(images.read_image(d / name)[None])
        torch.testing.assert_close(data["summary"][k], s[0], rtol=1e-5, atol=1e-5)

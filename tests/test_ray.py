"""`fastradio embed --engine ray` and `fastradio.ray.RadioEmbedder` on a real local Ray cluster:
started here (2 CPUs, no GPU, no dashboard, node address 127.0.0.1 asked for, nothing contacted
off this machine), stopped at the end. Ray 2.60 maps 127.0.0.1 to the node's own address and its
gRPC servers listen on all interfaces, which cannot be narrowed from Ray's side; so .ci/run runs the
suite through tests/loopback_only.py, in a network namespace whose only interface is `lo`, and
test_the_cluster_is_reachable_through_loopback_only asserts it (DESIGN decision 28). The model is
synthetic:test-d128 (random weights) on small generated images, the reference backend; the
one-machine path (`--engine local`) is the oracle the Ray output must equal row for row."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fastradio[ray]'); CI installs it")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")

import fastradio  # noqa: E402
from fastradio import cli, embed  # noqa: E402
from fastradio.ray import RadioEmbedder, embedder as ray_embedder  # noqa: E402

MODEL = "synthetic:test-d128"
PKG_ROOT = Path(fastradio.__file__).resolve().parents[1]   # what `import fastradio` finds, for the Ray workers
SIZES = ((32, 32), (48, 32), (30, 45), (64, 48))
#: awkward sizes that --resolution nearest all takes to 32x48: one model size, so both engines cut
#: the same (B, 3, H, W) batches and the results are bit-identical
ONE_MODEL_SIZE = ((30, 45), (32, 48), (34, 50), (33, 41))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster for this module. Its workers import this fastradio (PYTHONPATH), share
    the synthetic-model cache, and know where a test asks one of them to die (KILL_ENV). One fake
    GPU is declared so that a GPU worker can be placed on this GPU-less machine (and refuse)."""
    base = tmp_path_factory.mktemp("ray")
    cache = base / "fastradio-cache"
    kill = base / "kill-one-worker"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PKG_ROOT), os.environ.get("PYTHONPATH")])),
           "FASTRADIO_CACHE": str(cache), ray_embedder.KILL_ENV: str(kill), "RAY_AUTH_MODE": "disabled"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # the driver (this process) sees what the workers see
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
    try:
        yield {"kill": kill, "cache": cache}
    finally:
        ray.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_cluster_is_reachable_through_loopback_only(cluster):
    """Under tests/loopback_only.py (as in CI): this namespace has no interface but `lo`, Ray's
    servers listen in it (so only loopback reaches them), and the cluster's address is loopback."""
    from loopback_only import ENV, interfaces
    if os.environ.get(ENV) != "1":
        pytest.skip("not run through tests/loopback_only.py (.ci/run does): network isolation not checked")
    assert interfaces() == ["lo"]
    listening = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            listening += [line.split()[1] for line in f.readlines()[1:] if line.split()[3] == "0A"]
    assert len(listening) >= 2, f"expected Ray's servers among the listening sockets, found {listening}"
    gcs = ray.get_runtime_context().gcs_address
    assert gcs.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]", "::1", "localhost"), gcs


def _images(folder: Path, n: int, start: int = 0, sizes=SIZES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        h, w = sizes[i % len(sizes)]
        a = np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        p = folder / f"img{i:05d}.png"
        Image.fromarray(a).save(p)
        out.append(p)
    return out


def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _same(x: torch.Tensor, y: torch.Tensor, exact: bool) -> None:
    if exact:
        assert torch.equal(x, y), (x - y).abs().max()
    else:   # other batch groupings (a packed list vs a (B, 3, H, W) batch): fp32 rounding only
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def _assert_same_output(a_dir: Path, b_dir: Path, *, same_shards: bool = True, exact: bool = True) -> None:
    """Two output folders hold the same images, in the same order, with the same fp32 results
    (bit-identical when both engines batched the images alike)."""
    a, ma = embed.load(a_dir)
    b, mb = embed.load(b_dir)
    assert a["ids"] == b["ids"], "same ids in the same order"
    assert len(set(b["ids"])) == len(b["ids"]), "no id twice"
    assert a["original_sizes"] == b["original_sizes"] and a["model_sizes"] == b["model_sizes"]
    assert torch.isfinite(b["summary"]).all()
    _same(a["summary"], b["summary"], exact)
    assert (a["pooled"] is None) == (b["pooled"] is None)
    if a["pooled"] is not None:
        _same(a["pooled"], b["pooled"], exact)
    assert (a["features"] is None) == (b["features"] is None)
    for x, y in zip(a["features"] or (), b["features"] or ()):
        _same(x, y, exact)
    if same_shards:
        assert [e["ids"] for e in ma["shards"]] == [e["ids"] for e in mb["shards"]]
    assert mb["complete"] == ma["complete"] and mb["runs"][-1]["status"] == ma["runs"][-1]["status"]


COMMON = ["-m", MODEL, "--backend", "reference", "-b", 8, "--shard-size", 200, "-j", 1, "-q"]


@pytest.fixture(scope="module")
def thousand(cluster, tmp_path_factory):
    """~1000 generated images in four sizes and the one-machine output for them (the oracle)."""
    root = tmp_path_factory.mktemp("thousand")
    _images(root / "imgs", 1000, sizes=ONE_MODEL_SIZE)
    rc = cli.main([str(a) for a in ("embed", root / "imgs", "-o", root / "local", "--features", "pooled", *COMMON)])
    assert rc == 0
    return root


def test_ray_equals_the_one_machine_path_row_for_row(thousand, tmp_path, capsys):
    t0 = time.monotonic()
    rc, out, err = _run(capsys, "embed", thousand / "imgs", "-o", tmp_path / "ray", "--features", "pooled", *COMMON,
                        "--engine", "ray", "--num-workers", 2)
    assert rc == 0, err
    _assert_same_output(thousand / "local", tmp_path / "ray")
    m = embed.read_manifest(tmp_path / "ray")
    assert m["count"] == 1000 and m["runs"][-1]["engine"] == "ray"
    assert ray.data.DataContext.get_current().execution_options.preserve_order is False, "the caller's context is kept"
    print(f"1000 images through 2 Ray workers in {time.monotonic() - t0:.1f} s")


def test_a_worker_killed_midway_gives_complete_duplicate_free_output(thousand, cluster, tmp_path, capsys):
    """One actor dies (its process exits at once) after the first shard is written; Ray restarts
    it and retries its batch. The output is the same as without the kill."""
    kill = cluster["kill"]
    out = tmp_path / "ray"
    stop = threading.Event()

    def trigger():   # arm the kill once the run is underway (a shard is listed in the manifest)
        while not stop.is_set():
            try:
                if embed.read_manifest(out)["shard_count"] >= 1:
                    kill.write_text("die")
                    return
            except embed.OutputError:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=trigger, daemon=True)
    t.start()
    try:
        rc, _, err = _run(capsys, "embed", thousand / "imgs", "-o", out, "--features", "pooled", *COMMON,
                          "--engine", "ray", "--num-workers", 2)
    finally:
        stop.set()
        t.join()
    assert rc == 0, err
    claimed = list(kill.parent.glob(kill.name + ".*"))
    assert not kill.exists() and len(claimed) == 1, "exactly one worker took the kill"
    claimed[0].unlink()
    _assert_same_output(thousand / "local", out)


def test_corrupt_image_is_skipped_or_stops_the_run_like_the_local_path(cluster, tmp_path, capsys):
    _images(tmp_path / "imgs", 30)
    (tmp_path / "imgs" / "img00012.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)   # a PNG header, no image
    args = ["--features", "full", "-m", MODEL, "--backend", "reference", "-b", 4, "--shard-size", 8, "-j", 1]
    for engine in ("local", "ray"):
        rc, _, err = _run(capsys, "embed", tmp_path / "imgs", "-o", tmp_path / f"skip-{engine}", *args,
                          "--skip-unreadable", "--engine", engine)
        assert rc == 0, err
        assert "img00012.png" in err
    _assert_same_output(tmp_path / "skip-local", tmp_path / "skip-ray", exact=False)
    m = embed.read_manifest(tmp_path / "skip-ray")
    assert [s["id"] for s in m["skipped"]] == [str(tmp_path / "imgs" / "img00012.png")]
    assert m["count"] == 29

    for engine in ("local", "ray"):
        rc, _, err = _run(capsys, "embed", tmp_path / "imgs", "-o", tmp_path / f"stop-{engine}", *args,
                          "--engine", engine)
        assert rc == 2 and "img00012.png" in err and "--skip-unreadable" in err, err
    _assert_same_output(tmp_path / "stop-local", tmp_path / "stop-ray", exact=False)
    assert embed.load(tmp_path / "stop-ray")[0]["ids"][-1].endswith("img00011.png"), "the images before it are kept"


@pytest.mark.parametrize("first,second", [("local", "ray"), ("ray", "local")])
def test_resume_across_engines(cluster, tmp_path, capsys, first, second):
    """A run of the first 40 images by one engine, resumed over all 100 by the other, equals one
    run over all 100; the resuming engine embeds only the 60 new images."""
    imgs = tmp_path / "imgs"
    _images(imgs, 40)
    args = ["--features", "pooled", "-m", MODEL, "--backend", "reference", "-b", 4, "--shard-size", 16, "-j", 1]
    assert _run(capsys, "embed", imgs, "-o", tmp_path / "out", *args, "--engine", first)[0] == 0
    _images(imgs, 60, start=40)
    rc, _, err = _run(capsys, "embed", imgs, "-o", tmp_path / "out", *args, "--engine", second, "--resume")
    assert rc == 0, err
    assert "40 of 100 image(s) are already in" in err
    assert _run(capsys, "embed", imgs, "-o", tmp_path / "ref", *args)[0] == 0
    _assert_same_output(tmp_path / "ref", tmp_path / "out", same_shards=False, exact=False)
    m = embed.read_manifest(tmp_path / "out")
    assert [r["engine"] for r in m["runs"]] == [first, second]
    assert [r["embedded"] for r in m["runs"]] == [40, 60]


def test_model_options_reach_the_workers(cluster, tmp_path, capsys):
    """--vitdet-window-size (a `fastradio.load` option) is passed to the Ray workers: with ws = 3 the
    step is 48 px, so `nearest` gives other model sizes than without it, and both engines agree."""
    _images(tmp_path / "imgs", 12)
    args = ["--features", "pooled", "-m", MODEL, "--backend", "reference", "-b", 4, "-j", 1, "-q",
            "--vitdet-window-size", 3]
    for engine in ("local", "ray"):
        rc, _, err = _run(capsys, "embed", tmp_path / "imgs", "-o", tmp_path / engine, *args, "--engine", engine)
        assert rc == 0, err
    _assert_same_output(tmp_path / "local", tmp_path / "ray", exact=False)
    sizes = embed.load(tmp_path / "ray")[0]["model_sizes"]
    assert all(h % 48 == 0 and w % 48 == 0 for h, w in sizes), sizes


def test_errors_at_construction_not_after_hours(cluster, tmp_path, capsys):
    _images(tmp_path / "imgs", 3)
    base = ["embed", tmp_path / "imgs", "-o", tmp_path / "out", "--engine", "ray", "-q"]
    # an unknown model: refused by the probe worker, before any shard, naming the model
    t0 = time.monotonic()
    rc, _, err = _run(capsys, *base, "-m", "C-RADIOv9-Z")
    assert rc == 2 and "C-RADIOv9-Z" in err and "unknown model" in err, err
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "out").exists()
    # more GPUs than the cluster has
    rc, _, err = _run(capsys, *base, "-m", MODEL, "--num-workers", 2, "--gpus-per-worker", 1)
    assert rc == 2 and "needs 2 GPU(s), the Ray cluster has 1" in err, err
    # a GPU worker whose PyTorch sees no GPU (the declared GPU of this cluster is not real)
    rc, _, err = _run(capsys, *base, "-m", MODEL, "--gpus-per-worker", 1)
    assert rc == 2 and "num_gpus=1" in err and "no CUDA device" in err, err
    # options that belong to --engine ray
    rc, _, err = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "--num-workers", 2)
    assert rc == 2 and "--num-workers applies to --engine ray only" in err


def test_embedder_refuses_a_model_too_large_for_the_memory(cluster):
    with pytest.raises(RuntimeError, match=r"needs about 1\.0 GiB of GPU memory, the actor's GPU has 0\.5 GiB"):
        RadioEmbedder(MODEL, memory_limit_bytes=1 << 29)
    # the estimate grows with the model, the dtype width and the batch
    from fastradio.configs import resolve_known_model
    cfg_b, cfg_g = resolve_known_model("C-RADIOv2-B").config, resolve_known_model("C-RADIOv2-g").config
    est = ray_embedder.estimate_gpu_bytes
    assert est(cfg_g, torch.bfloat16, 32, (512, 512)) > est(cfg_b, torch.bfloat16, 32, (512, 512))
    assert est(cfg_b, torch.float32, 32, (512, 512)) > est(cfg_b, torch.bfloat16, 32, (512, 512))
    assert est(cfg_b, torch.bfloat16, 64, (512, 512)) > est(cfg_b, torch.bfloat16, 32, (512, 512))
    with pytest.raises(ValueError, match="features: expected one of none, pooled, full, got 'all'"):
        RadioEmbedder(MODEL, features="all")
    # load kwargs reach fastradio.load: a known one takes effect, an unknown one is named
    e = RadioEmbedder(MODEL, pos_align_corners=False)
    assert e.model.config.align_corners is False
    with pytest.raises(TypeError, match=r"load kwargs \['no_such_option'\]"):
        RadioEmbedder(MODEL, load_kwargs={"no_such_option": 1})


def test_embedder_in_a_user_pipeline_read_images_and_bytes(cluster, tmp_path):
    """The documented use: read_images (decoded arrays) or binary files (bytes) → map_batches →
    rows with the input's path, a summary equal to the one-machine output's, a NaN-poisoned row
    with an error for a file that is not an image."""
    paths = _images(tmp_path / "imgs", 12)
    rc = cli.main([str(a) for a in ("embed", tmp_path / "imgs", "-o", tmp_path / "local", "--features", "none",
                                    "-m", MODEL, "-q", "--resolution", "64x64")])
    assert rc == 0
    ref, _ = embed.load(tmp_path / "local")
    want = dict(zip(ref["ids"], ref["summary"]))

    kw = {"model": MODEL, "backend": "reference", "resolution": "64x64", "summary_dtype": "float16"}
    ds = ray.data.read_images([str(p) for p in paths], include_paths=True, mode="RGB")
    rows = ds.map_batches(RadioEmbedder, fn_constructor_kwargs=kw, batch_size=5, compute=ray.data.ActorPoolStrategy(size=1),
                          num_cpus=1).take_all()
    assert len(rows) == 12 and {r["path"].split("/")[-1] for r in rows} == {p.name for p in paths}
    for r in rows:
        got = torch.from_numpy(np.array(r["summary"]))
        assert got.dtype == torch.float16 and r["error"] == "" and (r["input_height"], r["input_width"]) == (64, 64)
        full = want[next(p for p in want if p.endswith(r["path"].split("/")[-1]))]
        torch.testing.assert_close(got.float(), full, rtol=1e-3, atol=1e-3)   # fp16 storage of the fp32 result

    (tmp_path / "imgs" / "zz-not-an-image.png").write_bytes(b"hello")
    ds = ray.data.read_binary_files(str(tmp_path / "imgs"), include_paths=True).rename_columns({"bytes": "image"})
    kw.update(summary_dtype="float32")
    rows = ds.map_batches(RadioEmbedder, fn_constructor_kwargs=kw, batch_size=8, compute=ray.data.ActorPoolStrategy(size=1),
                          num_cpus=1).take_all()
    bad = [r for r in rows if r["error"]]
    assert len(rows) == 13 and len(bad) == 1 and "zz-not-an-image.png" in bad[0]["error"]
    assert np.isnan(bad[0]["summary"]).all() and bad[0]["input_height"] == -1
    for r in rows:
        if not r["error"]:
            name = r["path"].split("/")[-1]
            full = want[next(p for p in want if p.endswith(name))]
            assert torch.equal(torch.from_numpy(np.array(r["summary"])), full), name


def test_core_package_never_imports_ray_and_a_missing_ray_is_named(tmp_path, capsys, monkeypatch):
    code = ("import sys, fastradio, fastradio.cli, fastradio.embed, fastradio.ray, fastradio.ray.engine; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PKG_ROOT), os.environ.get("PYTHONPATH")])))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
    _images(tmp_path / "imgs", 2)
    monkeypatch.setitem(sys.modules, "ray", None)   # as if not installed
    rc, _, err = _run(capsys, "embed", tmp_path / "imgs", "-m", MODEL, "-o", tmp_path / "out", "--engine", "ray")
    assert rc == 2 and "pip install 'fastradio[ray]'" in err, err

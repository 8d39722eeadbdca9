"""hub.py: name resolution, local folders, the Hugging Face cache, offline behaviour. No network:
every test runs offline with HF_HOME / HF_HUB_CACHE / FASTRADIO_CACHE in tmp, and a guard makes
any non-local snapshot_download call fail unless the test replaced it with a fake."""

from __future__ import annotations

import pickle
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from fastradio import checkpoint as ck
from fastradio import hub
from fastradio.errors import CheckpointError, ModelNotFoundError, UnsupportedModelError

from helpers import edit_config, fake_hf_cache, make_checkpoint, offline_hf

REAL_SNAPSHOT = huggingface_hub.snapshot_download


@pytest.fixture(autouse=True)
def hf_cache(monkeypatch, tmp_path) -> Path:
    cache = offline_hf(monkeypatch, tmp_path / "env")
    calls: list[dict] = []

    def guarded(repo_id, **kw):
        calls.append(dict(repo_id=repo_id, **kw))
        if not kw.get("local_files_only"):
            raise AssertionError(f"test tried to reach the network for {repo_id}")
        return REAL_SNAPSHOT(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", guarded)
    guarded.calls = calls
    return cache


@pytest.fixture
def small(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "src", "test-d128", seed=0)


def _load(resolved: hub.ResolvedModel) -> dict:
    cfg = ck.parse_config(ck.read_config(resolved.config_path))
    cfg = ck.config_for_files(cfg, resolved.weight_files)
    return ck.load_weights(resolved.weight_files, cfg)


# -- synthetic: --------------------------------------------------------------------------------

def test_synthetic_name_generates_into_the_cache(tmp_path):
    r = hub.resolve("synthetic:test-d128")
    root = tmp_path / "env" / "fastradio" / "synthetic"
    assert r.source == "synthetic" and r.repo_id is None
    assert r.folder == root / "test-d128-seed0"
    assert r.config_path == r.folder / "config.json" and r.weight_files == [r.folder / "model.safetensors"]
    assert len(_load(r)) == 30
    mtime = r.weight_files[0].stat().st_mtime_ns
    again = hub.resolve("synthetic:TEST_D128@0")
    assert again == r and again.weight_files[0].stat().st_mtime_ns == mtime   # reused
    r3 = hub.resolve("synthetic:test-d128@3")
    assert r3.folder == root / "test-d128-seed3"
    assert r3.weight_files[0].read_bytes() != r.weight_files[0].read_bytes()


@pytest.mark.parametrize("name, exc, needles", [
    ("synthetic:test-d128@x", ValueError, ["non-negative integer seed", "'x'"]),
    ("synthetic:test-d128@", ValueError, ["non-negative integer seed"]),
    ("synthetic:test-d128@-1", ValueError, ["'-1'"]),
    ("synthetic:C-RADIOv5-B", ModelNotFoundError, ["unknown model 'C-RADIOv5-B'", "C-RADIOv2-B", "C-RADIOv4-H",
                                                    "test-d128"]),
    ("synthetic:", ModelNotFoundError, ["unknown model ''"]),
])
def test_synthetic_bad_names(name, exc, needles):
    with pytest.raises(exc) as e:
        hub.resolve(name)
    for needle in needles:
        assert needle in str(e.value)


def test_synthetic_with_revision_refused():
    with pytest.raises(ValueError, match="revision applies to Hub models only"):
        hub.resolve("synthetic:test-d128", revision="main")


# -- local folders -------------------------------------------------------------------------------

def test_local_folder_as_str_path_and_file(small):
    for arg in (str(small), small, small / "config.json", small / "model.safetensors"):
        r = hub.resolve(arg)
        assert (r.folder, r.source, r.repo_id) == (small.resolve(), "local", None)
        assert r.weight_files == [small.resolve() / "model.safetensors"]


def test_local_sharded_folder(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d160", shards=3)
    r = hub.resolve(folder)
    assert [f.name for f in r.weight_files] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert len(_load(r)) == 30


def test_local_folder_missing_config(small):
    (small / "config.json").unlink()
    (small / "notes.txt").write_text("hi")
    with pytest.raises(ModelNotFoundError) as e:
        hub.resolve(small)
    msg = str(e.value)
    assert "missing config.json" in msg and "found: model.safetensors, notes.txt" in msg


def test_local_folder_missing_weights(small):
    (small / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"expected model.safetensors or model.safetensors.index.json "
                                                 r"\(sharded\), found: config.json"):
        hub.resolve(str(small))


def test_local_folder_with_only_a_pickle(small, tmp_path):
    marker = tmp_path / "executed"

    class Boom:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    (small / "model.safetensors").unlink()
    (small / "radio_v2.pth.tar").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UnsupportedModelError, match="pickle checkpoints .* are refused"):
        hub.resolve(small)
    with pytest.raises(UnsupportedModelError, match="arbitrary code"):
        hub.resolve(small / "radio_v2.pth.tar")
    assert not marker.exists()


def test_local_folder_with_broken_index(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", shards=2)
    (folder / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lists shard"):
        hub.resolve(folder)


@pytest.mark.parametrize("name", ["./does-not-exist", "/no/such/folder", "~/no-such-fastradio-folder",
                                  "a/b/c", "weights.safetensors"])
def test_missing_paths(name):
    with pytest.raises(ModelNotFoundError, match="no such file or folder"):
        hub.resolve(name)


def test_missing_pathlike(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file or folder"):
        hub.resolve(tmp_path / "nope")


def test_local_with_revision_refused(small):
    with pytest.raises(ValueError, match="revision applies to Hub models only"):
        hub.resolve(small, revision="main")


def test_python_files_are_ignored(small, tmp_path):
    marker = tmp_path / "executed"
    (small / "hf_model.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    edit_config(small, lambda c: c.update(auto_map={"AutoModel": "hf_model.RADIOModel"}))
    r = hub.resolve(small)
    assert len(_load(r)) == 30
    assert not marker.exists()


# -- the Hugging Face cache --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["C-RADIOv2-G", "c-radio_v2-g", "nvidia/C-RADIOv2-g", "nvidia/C-RADIOv2-G",
                                  "CRADIOV2G", "  C-RADIOv2-g "])
def test_alias_resolves_to_the_cached_g_repo(hf_cache, small, name):
    snap = fake_hf_cache(hf_cache, "nvidia/C-RADIOv2-g", small)
    r = hub.resolve(name)
    assert (r.repo_id, r.source) == ("nvidia/C-RADIOv2-g", "cache")
    assert r.folder == snap and "models--nvidia--C-RADIOv2-g" in str(r.folder)   # lower-case g on disk
    assert r.weight_files == [snap / "model.safetensors"]
    assert len(_load(r)) == 30                                  # the symlinked blobs load
    calls = huggingface_hub.snapshot_download.calls
    assert calls and all(c["local_files_only"] for c in calls)
    assert calls[0]["allow_patterns"] == ["config.json", "*.safetensors", "model.safetensors.index.json",
                                          "vit_patch_generator.py"]


@pytest.mark.parametrize("name, repo", [("C-RADIOv2-B", "nvidia/C-RADIOv2-B"), ("c_radiov2_l", "nvidia/C-RADIOv2-L"),
                                        ("NVIDIA/c-radiov2-h", "nvidia/C-RADIOv2-H")])
def test_aliases_of_every_size(hf_cache, small, name, repo):
    fake_hf_cache(hf_cache, repo, small)
    assert hub.resolve(name).repo_id == repo


def test_cache_with_sharded_snapshot_and_revision(hf_cache, tmp_path):
    folder = make_checkpoint(tmp_path / "src", "test-d128", shards=2)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = fake_hf_cache(hf_cache, "nvidia/C-RADIOv2-B", folder, commit=commit, ref="v1")
    by_tag = hub.resolve("C-RADIOv2-B", revision="v1")
    by_hash = hub.resolve("C-RADIOv2-B", revision=commit)
    assert by_tag.folder == by_hash.folder == snap
    assert len(by_tag.weight_files) == 2 and len(_load(by_tag)) == 30
    with pytest.raises(ModelNotFoundError, match=r"nvidia/C-RADIOv2-B \(revision main\): offline"):
        hub.resolve("C-RADIOv2-B", revision="main")


def test_hf_home_alone_locates_the_cache(monkeypatch, hf_cache, small):
    monkeypatch.delenv("HF_HUB_CACHE")
    fake_hf_cache(hf_cache, "nvidia/C-RADIOv2-L", small)       # hf_cache is $HF_HOME/hub
    assert hub.resolve("C-RADIOv2-L").source == "cache"


def test_offline_not_cached_names_repo_and_remedies():
    with pytest.raises(ModelNotFoundError) as e:
        hub.resolve("C-RADIOv2-B")
    msg = str(e.value)
    for needle in ("nvidia/C-RADIOv2-B", "offline", "not in the Hugging Face cache",
                   "hf download nvidia/C-RADIOv2-B", "folder", "synthetic:"):
        assert needle in msg
    # The current Hugging Face CLI (`huggingface-cli` is its deprecated name), skipping the
    # TorchHub pickle that fastradio never reads.
    assert "huggingface-cli" not in msg and "--exclude '*.pth.tar'" in msg


def test_offline_incomplete_snapshot(hf_cache, small):
    fake_hf_cache(hf_cache, "nvidia/C-RADIOv2-H", small, files=["config.json"])
    with pytest.raises(ModelNotFoundError) as e:
        hub.resolve("C-RADIOv2-H")
    msg = str(e.value)
    assert "nvidia/C-RADIOv2-H" in msg and "incomplete" in msg and "model.safetensors" in msg


def test_raw_repo_id_is_allowed(hf_cache, small):
    with pytest.raises(ModelNotFoundError, match="someone/radio-finetune: offline"):
        hub.resolve("someone/radio-finetune")
    fake_hf_cache(hf_cache, "someone/radio-finetune", small)
    r = hub.resolve("someone/radio-finetune")
    assert (r.repo_id, r.source) == ("someone/radio-finetune", "cache")


def test_unknown_plain_name():
    with pytest.raises(ModelNotFoundError) as e:
        hub.resolve("C-RADIOv5-B")
    msg = str(e.value)
    for needle in ("unknown model 'C-RADIOv5-B'", "C-RADIOv2-B, C-RADIOv2-L, C-RADIOv2-H, C-RADIOv2-g, C-RADIOv3-B",
                   "C-RADIOv4-SO400M, C-RADIOv4-H",
                   "owner/name", "synthetic:"):
        assert needle in msg
    assert huggingface_hub.snapshot_download.calls == []


def test_test_only_name_points_to_synthetic():
    with pytest.raises(ModelNotFoundError, match="test-only architecture.*'synthetic:test-d192'"):
        hub.resolve("test-d192")


def test_bad_argument_types():
    with pytest.raises(TypeError, match="name_or_path: expected a str or os.PathLike, got int"):
        hub.resolve(3)
    with pytest.raises(ValueError, match="got an empty string"):
        hub.resolve("  ")


# -- online (with a fake snapshot_download) --------------------------------------------------------

def test_online_downloads_only_safe_files(monkeypatch, hf_cache, small):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls = []

    def fake(repo_id, *, local_files_only, allow_patterns, revision, cache_dir):
        calls.append(dict(repo_id=repo_id, local_files_only=local_files_only, allow_patterns=allow_patterns,
                          revision=revision, cache_dir=cache_dir))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(fake_hf_cache(cache_dir, repo_id, small))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    r = hub.resolve("C-RADIOv2-G")
    assert (r.repo_id, r.source) == ("nvidia/C-RADIOv2-g", "download")
    assert [c["local_files_only"] for c in calls] == [True, False]           # cache first
    for c in calls:
        assert c["repo_id"] == "nvidia/C-RADIOv2-g" and c["cache_dir"] == str(hf_cache)
        assert c["allow_patterns"] == ["config.json", "*.safetensors", "model.safetensors.index.json",
                                       "vit_patch_generator.py"]
        # one named source file (read as text, never run): no *.py, no wildcard
        assert [p for p in c["allow_patterns"] if p.endswith(".py")] == ["vit_patch_generator.py"]
        assert [p for p in c["allow_patterns"] if "*" in p] == ["*.safetensors"]


def test_online_download_failure(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def fake(repo_id, **kw):
        raise LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(ModelNotFoundError) as e:
        hub.resolve("C-RADIOv2-L")
    msg = str(e.value)
    assert "nvidia/C-RADIOv2-L" in msg and "connection refused" in msg and "`hf download nvidia/C-RADIOv2-L" in msg


def test_online_repo_without_weights(monkeypatch, hf_cache, small):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def fake(repo_id, *, local_files_only, cache_dir, **kw):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(fake_hf_cache(cache_dir, repo_id, small, files=["config.json"]))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(ModelNotFoundError, match=r"someone/empty: the repo has no config.json .* "
                                                 r"\(downloaded: config.json\)"):
        hub.resolve("someone/empty")


# -- other RADIO generations ---------------------------------------------------------------------

@pytest.mark.parametrize("name, family, reason", [
    ("nvidia/RADIO-B", "RADIOv2.5", "14-pixel patches"),
    ("RADIO-g", "RADIOv2.5", "not verified"),
    ("RADIOv2.5-L", "RADIOv2.5", "not verified"),
    ("radio_v2.5-h", "RADIOv2.5", "not verified"),      # the reference's version strings too
    ("nvidia/E-RADIO", "E-RADIO", "not a ViT"),
    ("e-radio_v2", "E-RADIO", "not a ViT"),
    ("nvidia/RADIO", "RADIO (v1, v2, v2.1)", "TorchHub pickles only"),
    ("RADIOv1", "RADIO (v1, v2, v2.1)", "14-pixel patches"),
    ("radio_v2.1", "RADIO (v1, v2, v2.1)", "TorchHub pickles only"),
    ("nvidia/C-RADIO", "C-RADIO (first release)", "not verified"),
    ("C-RADIOv2-VLM-H", "C-RADIOv2-VLM-H", "not verified"),
])
def test_other_radio_generations_are_refused_as_not_supported_yet(monkeypatch, name, family, reason):
    def no_hub(*a, **kw):
        raise AssertionError("the Hub must not be asked for a model fastradio does not support")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for spelled in (name, f"synthetic:{name}"):
        with pytest.raises(UnsupportedModelError) as e:
            hub.resolve(spelled)
        msg = str(e.value)
        assert f"{spelled!r} names {family}" in msg and "not support yet" in msg and reason in msg, msg
        assert "C-RADIOv2-B" in msg and "C-RADIOv4-H" in msg                # what is supported
        assert "download" not in msg


def test_supported_names_and_other_owners_are_not_refused(monkeypatch):
    from fastradio.configs import KNOWN_MODELS, REFERENCE_VERSIONS, resolve_known_model, unsupported_release

    for m in KNOWN_MODELS:
        for name in (m.name, m.hub_repo, m.version, *m.aliases):
            assert not name or unsupported_release(name) is None, name
    # Every version string the reference knows names one of our models or is refused by name
    # (radio_v2.5-b, the reference version of C-RADIOv2-B's synthetic configs, names RADIOv2.5-B).
    for v in REFERENCE_VERSIONS:
        assert (resolve_known_model(v) is None) != (unsupported_release(v) is None), v
    # Exact names only: another owner's repo of the same name is an ordinary Hub repo id.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="someone/RADIO-B"):
        hub.resolve("someone/RADIO-B")

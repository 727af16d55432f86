from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_tqdm_monitor():
    # tqdm's monitor thread, started by an earlier test that loaded a tokenizer, outlives that
    # test; rcahook's worker pool rightly refuses to fork with a live thread, so the tests that
    # check the pool forks would see it go serial in a full run. No monitor in this process.
    std = sys.modules.get("tqdm.std")
    if std is not None:
        std.tqdm.monitor_interval = 0
        for thread in threading.enumerate():
            if isinstance(thread, std.TMonitor):
                thread.exit()
    yield


@pytest.fixture(autouse=True)
def _isolate_home(tmp_path_factory, monkeypatch):
    # Keep tests away from the user's home, git config and caches; the model cache is
    # shared across tests on purpose (de-quantizing the embedded model takes seconds).
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    # A developer's own rcahook config and model settings must not reach a test: each test
    # gets an empty config directory (tests write their user config there).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for var in ("RCAHOOK_RANKER", "RCAHOOK_MODEL", "RCAHOOK_LLM_URL", "RCAHOOK_LLM_MODEL", "RCAHOOK_LLM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    for var in list(os.environ):
        if var.startswith("GIT_") and var not in {
            "GIT_CONFIG_NOSYSTEM", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
        }:
            monkeypatch.delenv(var, raising=False)


class GitRepo:
    """A throw-away repository driven through the git CLI, with real commits."""

    def __init__(self, path: Path):
        self.path = path
        self._tick = 0
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> str:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        out = subprocess.run(
            ["git", *args], cwd=self.path, env=full_env, input=input,
            check=True, capture_output=True,
        )
        return out.stdout.decode("utf-8", "replace").strip()

    def write(self, rel: str, content: str | bytes) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        p.write_bytes(content)

    def commit(self, message: str, files: dict[str, str | bytes | None] | None = None, *,
               author: str | None = None, date: str | None = None) -> str:
        """Write (or delete, for None) files, stage everything, commit; return the sha."""
        for rel, content in (files or {}).items():
            if content is None:
                self.git("rm", "-q", "--", rel)
            else:
                self.write(rel, content)
        self.git("add", "-A")
        self._tick += 1
        when = date or "2024-01-01T00:00:00+00:00"
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        if date is None:
            # strictly increasing times keep `git log` order deterministic
            stamp = 1_704_067_200 + self._tick * 3600
            env = {"GIT_AUTHOR_DATE": f"{stamp} +0000", "GIT_COMMITTER_DATE": f"{stamp} +0000"}
        if author:
            name, _, email = author.partition(" <")
            env["GIT_AUTHOR_NAME"] = name
            env["GIT_AUTHOR_EMAIL"] = email.rstrip(">") or f"{name.lower()}@example.com"
        self.git("commit", "-q", "--allow-empty", "-F", "-", env=env, input=message.encode())
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def make_repo(tmp_path):
    counter = iter(range(1000))

    def _make(name: str | None = None) -> GitRepo:
        path = tmp_path / (name or f"repo{next(counter)}")
        path.mkdir()
        return GitRepo(path)

    return _make


@pytest.fixture
def repo(make_repo) -> GitRepo:
    return make_repo("repo")

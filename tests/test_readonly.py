"""A read-only repository (#10): commands read the index as it is, save nothing, say so once;
permission problems are reported as such and never lead to deleting an index.

Tests run as root in CI, where chmod alone prevents nothing. rcahook then runs as root
without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH), through setpriv: the same uid (so the interpreter under /root stays
reachable), but `chmod a-w` binds it like anyone else. As any other user, chmod suffices.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import rcahook

_CAPS = "-dac_override,-dac_read_search"
RESTRICT = ["setpriv", f"--inh-caps={_CAPS}", f"--bounding-set={_CAPS}"] if os.geteuid() == 0 else []


def _restriction_works(probe: Path) -> bool:
    """Whether a file without write permission is really unwritable to what RESTRICT runs."""
    if RESTRICT and shutil.which("setpriv") is None:
        return False
    probe.write_text("x")
    probe.chmod(0o444)
    try:
        done = subprocess.run([*RESTRICT, "sh", "-c", f"echo y >> '{probe}'"], capture_output=True, check=False)
    finally:
        probe.chmod(0o644)
    return done.returncode != 0


@pytest.fixture(scope="module")
def restricted(tmp_path_factory) -> None:
    # root on a machine like CI's has setpriv (util-linux); this only skips elsewhere
    if not _restriction_works(tmp_path_factory.mktemp("probe") / "f"):
        pytest.skip("cannot drop the permission-bypassing capabilities here (no setpriv?)")


INCIDENT = ("handler 3 rounds wrongly", "--window", "10")  # the fixture's commits are from 2024


def run(cwd: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, bound by file permissions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_CONFIG_NOSYSTEM"}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"))
    return subprocess.run([*RESTRICT, sys.executable, "-m", "rcahook", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.fixture
def indexed(make_repo):
    """A repository with a few commits, indexed, and one saved investigation."""
    repo = make_repo("src")
    for i in range(1, 6):
        repo.commit(f"parser: add handler {i}", {f"src/h{i}.py": f"def handle_{i}(x):\n    return x + {i}\n"})
    repo.commit("parser: handler 3 rounds wrongly", {"src/h3.py": "def handle_3(x):\n    return round(x) + 3\n"})
    assert rcahook("index", "--repo", str(repo.path), "-q").code == 0
    saved = rcahook("investigate", "--repo", str(repo.path), "--title", *INCIDENT,
                    "--format", "json")
    assert saved.code == 0, saved.err
    return repo, json.loads(saved.out)["id"]


@pytest.fixture
def read_only_copy(indexed, tmp_path, restricted):
    repo, inv_id = indexed
    copy = tmp_path / "ro"
    shutil.copytree(repo.path, copy, symlinks=True)
    set_writable(copy, False)
    yield copy, inv_id
    set_writable(copy, True)  # so that pytest can clean up as any user


def test_read_only_repository_reads_the_index_as_it_is_and_saves_nothing(read_only_copy, tmp_path):
    copy, _ = read_only_copy
    data = copy / ".git" / "rcahook"
    index, state = data / "index.sqlite", data / "state.sqlite"
    before = (digest(index), digest(state), listing(data))
    home = tmp_path / "home"

    inv = run(copy, "investigate", "--title", *INCIDENT, "--format", "json", home=home)
    assert inv.returncode == 0, inv.stderr
    doc = json.loads(inv.stdout)
    assert doc["id"] is None and doc["suggestions"]
    notes = [line for line in inv.stderr.splitlines() if line.startswith("rcahook:")]
    assert len(notes) == 1, inv.stderr  # one note, not a warning per thing not done
    assert "not writable" in notes[0] and "without updating it" in notes[0] and "not saved" in notes[0]
    assert "corrupt" not in inv.stderr

    no_update = run(copy, "investigate", "--no-update", "--title", *INCIDENT, home=home)
    assert no_update.returncode == 0, no_update.stderr
    assert "not saved" in no_update.stderr and "without updating" not in no_update.stderr
    assert "corrupt" not in no_update.stderr

    show = run(copy, "show", "HEAD", "--format", "json", home=home)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["subject"] == "parser: handler 3 rounds wrongly"
    assert show.stderr == ""  # show never writes: nothing to say

    scan = run(copy, "scan", "--format", "json", "HEAD~2..HEAD", home=home)
    assert scan.returncode == 0, scan.stderr
    assert len(json.loads(scan.stdout)["commits"]) == 2
    scan_notes = [line for line in scan.stderr.splitlines() if line.startswith("rcahook:")]
    assert len(scan_notes) == 1 and "nothing is saved" in scan_notes[0], scan.stderr

    listed = run(copy, "feedback", "--list", home=home)
    assert listed.returncode == 0, listed.stderr

    assert (digest(index), digest(state), listing(data)) == before  # byte-identical, no -wal/-shm left


def test_index_in_a_read_only_repository_is_a_permission_error_with_the_fix(read_only_copy, tmp_path):
    copy, _ = read_only_copy
    index = copy / ".git" / "rcahook" / "index.sqlite"
    before = digest(index)
    home = tmp_path / "home"
    done = run(copy, "index", home=home)
    assert done.returncode == 21, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot write the index" in done.stderr and "--db PATH" in done.stderr
    assert "corrupt" not in done.stderr and "Traceback" not in done.stderr
    assert digest(index) == before

    # the fix it names works: an index of one's own, then used by the other commands
    mine = tmp_path / "mine" / "index.sqlite"
    assert run(copy, "index", "--db", str(mine), "-q", home=home).returncode == 0
    show = run(copy, "show", "HEAD", "--db", str(mine), home=home)
    assert show.returncode == 0 and "handler 3 rounds wrongly" in show.stdout


def test_a_verdict_cannot_be_recorded_in_a_read_only_repository(read_only_copy, tmp_path):
    copy, inv_id = read_only_copy
    state = copy / ".git" / "rcahook" / "state.sqlite"
    before = digest(state)
    done = run(copy, "feedback", inv_id, "--root-cause", "HEAD", home=tmp_path / "home")
    assert done.returncode == 21, done.stderr
    assert "feedback cannot be recorded" in done.stderr and "not writable" in done.stderr
    assert digest(state) == before
    shown = run(copy, "feedback", inv_id, home=tmp_path / "home")
    assert shown.returncode == 0 and "no verdict yet" in shown.stdout


def test_an_unreadable_index_is_reported_as_such_and_never_deleted(indexed, restricted, tmp_path):
    repo, _ = indexed
    index = repo.path / ".git" / "rcahook" / "index.sqlite"
    before = digest(index)
    index.chmod(0)
    try:
        for args in (("index",), ("show", "HEAD"), ("investigate", "--title", *INCIDENT)):
            done = run(repo.path, *args, home=tmp_path / "home")
            assert done.returncode == 21, (args, done.stderr)
            assert "corrupt" not in done.stderr and "rebuilding" not in done.stderr, done.stderr
            assert str(index) in done.stderr
        assert index.exists()
    finally:
        index.chmod(0o644)
    assert digest(index) == before
    assert rcahook("show", "HEAD", "--repo", str(repo.path)).code == 0  # still the good index


def test_a_file_that_is_not_a_database_is_rebuilt_but_only_by_index(indexed):
    repo, _ = indexed
    index = repo.path / ".git" / "rcahook" / "index.sqlite"
    index.write_bytes(b"not a database at all" * 100)
    show = rcahook("show", "HEAD", "--repo", str(repo.path))
    assert show.code == 13 and "corrupt" in show.err and index.read_bytes().startswith(b"not a database")
    rebuilt = rcahook("index", "--repo", str(repo.path))
    assert rebuilt.code == 0 and "rebuilding the index" in rebuilt.err and "corrupt" in rebuilt.err
    assert rcahook("show", "HEAD", "--repo", str(repo.path)).code == 0


def _read_only_mount_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--mount", "sh", "-c",
                           "mount --make-rprivate / && mount -t tmpfs none /mnt -o ro"],
                          capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs root and mount namespaces (unshare)")
def test_read_only_file_system(indexed, tmp_path):
    """A read-only bind mount: even root cannot write (EROFS), the same rules apply."""
    repo, _ = indexed
    index = repo.path / ".git" / "rcahook" / "index.sqlite"
    before = digest(index)
    investigate = shlex.join([sys.executable, "-m", "rcahook", "investigate", "--title", *INCIDENT, "--format", "json"])
    script = (f"mount --make-rprivate / && mount --bind '{repo.path}' '{repo.path}' && "
              f"mount -o remount,bind,ro '{repo.path}' && cd '{repo.path}' && {investigate} && "
              f"{{ '{sys.executable}' -m rcahook index; echo \"index exit $?\" >&2; }}")
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] is None
    assert "read-only file system" in done.stderr and "not saved" in done.stderr
    assert "index exit 21" in done.stderr
    assert digest(index) == before


def test_a_wal_file_sqlite_removes_while_it_is_checked_is_no_write_problem(tmp_path, monkeypatch):
    """`rcahook serve` saves investigations from several threads: SQLite removes the -shm and
    -wal files when the last connection closes, so a probe can see one exist, then not find it.
    That once answered a 503 "…state.sqlite-shm is not readable or writable"."""
    import os

    from rcahook.index import store

    db = tmp_path / "state.sqlite"
    db.write_bytes(b"")
    shm = tmp_path / "state.sqlite-shm"
    shm.write_bytes(b"")
    real_access = os.access

    def closing_meanwhile(path, mode, **kwargs):
        if str(path) == str(shm) and shm.exists():
            shm.unlink()  # the last connection closed between the two looks
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(store.os, "access", closing_meanwhile)
    assert store.write_problem(db) is None

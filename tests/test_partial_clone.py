"""A partial clone (#10): missing blobs are recorded as unavailable, never fetched, never a crash."""
from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
from pathlib import Path

import pytest

from clirun import rcahook
from rcahook.errors import RcahookError, RepositoryReadError
from rcahook.index.gitrepo import Repo

LIMIT = 1024  # --filter=blob:limit=1k


def big(tag: str, lines: int = 80) -> str:
    """A Python file well above the filter's limit."""
    return "".join(f"def {tag}_{i}(x):\n    return x * {i}  # {tag} padding padding\n" for i in range(lines))


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout


def partial_clone(src: Path, dst: Path, *extra: str) -> Path:
    git(src, "config", "uploadpack.allowFilter", "true")  # the serving side must allow filters
    subprocess.run(["git", "clone", "-q", "--no-local", f"--filter=blob:limit={LIMIT // 1024}k", *extra,
                    src.as_uri(), str(dst)], check=True, capture_output=True)
    return dst


def objects_state(repo: Path) -> tuple[str, list[str]]:
    """What a fetch would change: the object counts and the packs."""
    git_dir = Path(git(repo, "rev-parse", "--absolute-git-dir").strip())
    return git(repo, "count-objects", "-v"), sorted(p.name for p in (git_dir / "objects" / "pack").iterdir())


def missing_blobs(repo: Path) -> set[str]:
    out = git(repo, "rev-list", "--objects", "--all", "--missing=print")
    return {line[1:] for line in out.splitlines() if line.startswith("?")}


@pytest.fixture
def history(make_repo):
    src = make_repo("src")
    src.commit("engine: add the engine",
               {"engine.py": big("v1"), "notes.txt": "small\n", "util.py": "def u():\n    return 1\n"})
    src.commit("engine: speed up", {"engine.py": big("v2")})
    mixed = src.commit("engine: fix rounding in u and the engine", {"engine.py": big("v3"),
                                                                      "util.py": "def u():\n    return 2\n"})
    src.git("mv", "engine.py", "core.py")
    rename = src.commit("move the engine to core.py", {"core.py": big("v3") + "# moved\n"})
    src.commit("core: tune", {"core.py": big("v4")})
    return src, mixed, rename


def test_partial_clone_indexes_with_unavailable_changes_and_fetches_nothing(history, tmp_path):
    src, mixed, rename = history
    clone = partial_clone(src.path, tmp_path / "clone")
    absent = missing_blobs(clone)
    assert len(absent) >= 3  # the engine's old versions were filtered out
    before = objects_state(clone)

    done = rcahook("index", "--repo", str(clone))
    assert done.code == 0, done.err
    db = sqlite3.connect(clone / ".git" / "rcahook" / "index.sqlite")
    rows = db.execute("SELECT ch.path, ch.old_blob, ch.new_blob, ch.added, ch.hunks FROM changes ch"
                      " WHERE ch.unavailable=1").fetchall()
    assert rows and all(added == 0 and hunks == "" for _, _, _, added, hunks in rows)
    assert all({b for b in (old, new) if b} & absent for _, old, new, _, _ in rows)  # exactly those missing
    available = db.execute("SELECT old_blob, new_blob FROM changes WHERE unavailable=0").fetchall()
    assert not any({b for b in pair if b} & absent for pair in available)
    assert f"{len(rows)} file change(s) unavailable (missing blobs, e.g. a partial clone)" in done.out

    # nothing was fetched from the promisor remote, though it is right there and would serve it
    assert objects_state(clone) == before and missing_blobs(clone) == absent

    # the commit that touched both files: the small one is whole, the big one unavailable
    shown = rcahook("show", mixed, "--repo", str(clone), "--format", "json")
    assert shown.code == 0, shown.err
    files = {f["path"]: f for f in json.loads(shown.out)["files"]}
    assert files["engine.py"]["unavailable"] is True and files["engine.py"]["hunks"] == []
    assert files["util.py"]["unavailable"] is False and files["util.py"]["added"] == 1
    touched = {t["path"] for t in json.loads(shown.out)["touched"]}
    assert touched == {"util.py"}  # definitions from what could be parsed only
    text = rcahook("show", mixed, "--repo", str(clone))
    assert "unavailable" in text.out and "partial clone" in text.out, text.out

    # a rename whose old blob is missing: still indexed (similarity could not be computed)
    moved = rcahook("show", rename, "--repo", str(clone), "--format", "json")
    assert moved.code == 0 and "core.py" in {f["path"] for f in json.loads(moved.out)["files"]}

    inv = rcahook("investigate", "--repo", str(clone), "--title", "engine rounding wrong", "--window", "10",
                  "--no-save", "--format", "json")
    assert inv.code == 0, inv.err
    assert objects_state(clone) == before


def test_partial_clone_without_checkout_skips_missing_files_in_the_code_graph(history, tmp_path):
    src, _, _ = history
    clone = partial_clone(src.path, tmp_path / "bare", "--bare")
    before = objects_state(clone)
    done = rcahook("index", "--repo", str(clone))
    assert done.code == 0, done.err
    graph = rcahook("graph", "stats", "--repo", str(clone), "--format", "json")
    assert graph.code == 0, graph.err
    assert json.loads(graph.out)["skipped"]["missing"] == 1  # core.py at HEAD is not in the clone
    assert objects_state(clone) == before


def test_many_commits_go_through_worker_processes(make_repo, tmp_path):
    """Enough commits for the worker pool: the original crash was an unpicklable pygit2 error there."""
    src = make_repo("src")
    stream = []
    for i in range(420):  # PARALLEL_MIN is 400
        body, msg = big(f"r{i}", 30), f"step {i}\n"
        stream.append(f"commit refs/heads/main\ncommitter A <a@example.com> {1_700_000_000 + i} +0000\n"
                      f"data {len(msg)}\n{msg}M 100644 inline big.py\ndata {len(body)}\n{body}\n"
                      f"M 100644 inline n.txt\ndata {len(str(i)) + 1}\n{i}\n\n")
    src.git("fast-import", "--quiet", input="".join(stream).encode())
    src.git("reset", "-q", "--hard", "main")
    clone = partial_clone(src.path, tmp_path / "clone")
    before = objects_state(clone)
    done = rcahook("index", "--repo", str(clone), "--jobs", "2", "--no-graph")
    assert done.code == 0, done.err
    # every commit changes big.py: all its versions but HEAD's are missing, and HEAD's parent's too
    assert "420 file change(s) unavailable" in done.out
    assert objects_state(clone) == before


def test_worker_errors_cross_back_as_plain_errors(history):
    from rcahook.index.indexer import _worker_rows
    from rcahook.pool import _plain_errors

    src, _, _ = history
    with pytest.raises(RcahookError) as caught:
        _worker_rows((Repo(src.path).path, ["f" * 40]))  # a commit this repository does not have
    assert "cannot read commit ffffffffffff" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))  # what a worker's error goes through
    assert type(again) is RepositoryReadError and str(again) == str(caught.value)

    class Unpicklable(Exception):  # a local class, as unpicklable as pygit2's were
        pass

    def fail(task):
        raise Unpicklable(f"bad {task}")

    with pytest.raises(RepositoryReadError) as caught:
        _plain_errors(fail, "building the code graph", RepositoryReadError, 7)
    assert "Unpicklable: bad 7" in str(pickle.loads(pickle.dumps(caught.value)))

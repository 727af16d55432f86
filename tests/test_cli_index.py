"""`rcahook index` from the command line: bad input gets one line naming the problem and
the fix, and an exit code of its own; kill -9 mid-run and rerun gives a clean index."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcahook.cli import main
from rcahook.index import store


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def db_of(repo) -> Path:
    return repo.path / ".git" / "rcahook" / "index.sqlite"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rcahook: error: ")
    return lines[0]


def test_index_then_incremental(repo, capsys):
    repo.commit("one", {"a": "1\n"})
    repo.commit("two", {"a": "2\n"})
    code, out, err = run_cli(capsys, "index", "--repo", str(repo.path), "--no-graph")
    assert code == 0 and err == ""
    assert out.startswith("indexed 2 new commit(s) in ")
    assert "culprit links: 0 (0 unresolved)" in out
    assert run_cli(capsys, "index", "--repo", str(repo.path), "--no-graph")[1].startswith("indexed 0 new commit(s)")
    repo.commit("three", {"a": "3\n"})
    assert run_cli(capsys, "index", "--repo", str(repo.path), "--no-graph")[1].startswith("indexed 1 new commit(s)")
    assert run_cli(capsys, "index", "--repo", str(repo.path), "--no-graph", "-q") == (0, "", "")


def test_index_with_the_code_graph(repo, capsys):
    repo.commit("one", {"m.py": "def f():\n    return 1\n"})
    code, out, err = run_cli(capsys, "index", "--repo", str(repo.path))
    assert code == 0 and err == ""
    assert f"code graph: 1 files at {repo.git('rev-parse', 'HEAD')[:12]}" in out
    assert "touched definitions recorded for 1 new commit(s)" in out


def test_not_a_git_repository(tmp_path, capsys):
    code, out, err = run_cli(capsys, "index", "--repo", str(tmp_path), "--no-graph")
    assert code == 10 and out == ""
    assert one_error_line(err) == (f"rcahook: error: {tmp_path} is not a git repository; "
                                   "run rcahook inside one or pass --repo PATH")
    code, _, err = run_cli(capsys, "index", "--repo", str(tmp_path / "missing"), "--no-graph")
    assert code == 10 and "no such directory" in one_error_line(err)


def test_empty_repository(make_repo, capsys):
    empty = make_repo()
    code, out, err = run_cli(capsys, "index", "--repo", str(empty.path), "--no-graph")
    assert code == 11 and out == ""
    assert "has no commits yet" in one_error_line(err) and "commit something first" in err


def test_unknown_revision(repo, capsys):
    repo.commit("one", {"a": "1\n"})
    code, out, err = run_cli(capsys, "index", "--repo", str(repo.path), "--rev", "nope", "--no-graph")
    assert code == 12 and out == ""
    assert "unknown revision 'nope'" in one_error_line(err) and "git rev-parse nope" in err


def test_shallow_clone_is_indexed_and_said(repo, tmp_path, capsys):
    for i in range(5):
        repo.commit(f"c{i}", {"a": f"{i}\n"})
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "3", f"file://{repo.path}", str(clone)], check=True)
    code, out, err = run_cli(capsys, "index", "--repo", str(clone), "--no-graph")
    assert code == 0
    assert "indexed 3 new commit(s)" in out
    assert "rcahook: shallow clone: indexed what is there" in err and "git fetch --unshallow" in err
    boundary = repo.git("rev-parse", "HEAD~2")
    code, out, err = run_cli(capsys, "show", boundary, "--repo", str(clone), "--format", "json")
    shown = json.loads(out)
    assert code == 0 and (shown["shallow"], shown["parents"], shown["files"]) == (True, [repo.git(
        "rev-parse", "HEAD~3")], [])
    assert "beyond this shallow clone's boundary" in run_cli(capsys, "show", boundary, "--repo", str(clone))[1]


@pytest.mark.parametrize("content, reason", [
    (None, "it has schema version 2, this rcahook needs"),
    (b"\x89garbage, not SQLite\x00" * 300, "it is corrupt"),
])
def test_unusable_database_is_rebuilt_and_said(repo, tmp_path, capsys, content, reason):
    repo.commit("one", {"a": "1\n"})
    db = tmp_path / "index.sqlite"
    if content is None:
        conn = sqlite3.connect(db)
        conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                           "INSERT INTO meta VALUES ('schema_version', '2');")
        conn.close()
    else:
        db.write_bytes(content)
    code, out, err = run_cli(capsys, "index", "--repo", str(repo.path), "--db", str(db), "--no-graph")
    assert code == 0 and "indexed 1 new commit(s)" in out
    assert err.startswith(f"rcahook: rebuilding the index at {db}: {reason}")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM commits").fetchone() == (1,)


def test_two_index_runs_at_once(repo, capsys, monkeypatch):
    repo.commit("one", {"a": "1\n"})
    monkeypatch.setenv("RCAHOOK_LOCK_WAIT", "0.5")
    with store.index_lock(db_of(repo), wait=0):
        code, out, err = run_cli(capsys, "index", "--repo", str(repo.path), "--no-graph")
    assert code == 14 and out == ""
    line = one_error_line(err)
    assert f"another rcahook index is updating {db_of(repo)} (waited 0.5s)" in line
    assert "let it finish, then run this again" in line


def test_queries_without_an_index(repo, capsys):
    repo.commit("one", {"a": "1\n"})
    for args in (["show", "HEAD"], ["links"], ["owners", "a"]):
        code, out, err = run_cli(capsys, *args, "--repo", str(repo.path))
        assert code == 13 and out == ""
        assert "run `rcahook index` first" in one_error_line(err)


# -- kill -9 in the middle of a run ---------------------------------------------------------------

def fast_import_commit(when: int, message: str, files: dict[str, str], *, parent: str | None = None) -> bytes:
    """One commit on main in git fast-import's language; without `parent` it follows the
    previous commit of the stream (or is a root, first in a new repository)."""
    msg = message.encode()
    out = [b"commit refs/heads/main\ncommitter T <t@example.com> %d +0000\ndata %d\n%s" % (when, len(msg), msg)]
    if parent:
        out.append(b"from %s\n" % parent.encode())
    for path, content in files.items():
        data = content.encode()
        out.append(b"M 644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    return b"".join(out)


def fast_import(repo, commits: list[bytes]) -> None:
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo.path, input=b"".join(commits), check=True)


def many_commits(repo, n: int) -> None:
    """20 seed commits, then n tiny commits in a second or two (git fast-import): every 50th
    a fix naming a seed, every 70th (not 50th) naming a sha that does not exist."""
    fast_import(repo, [fast_import_commit(1_600_000_000 + i, f"seed {i}\n", {f"seed{i}.txt": f"{i}\n"})
                       for i in range(20)])
    seeds = repo.git("rev-list", "--reverse", "main").split()
    commits = []
    for i in range(1, n + 1):
        if i % 50 == 0:
            message = f'fix {i}\n\nFixes: {seeds[i % 20][:12]} ("seed")\n'
        elif i % 70 == 0:
            message = f"fix {i}\n\nRegression in {i:012x}\n"
        else:
            message = f"change {i}\n"
        files = {f"d{k}/f{(i + k) % 89}.txt": f"v{i}\n" * 3 for k in range(3)}
        commits.append(fast_import_commit(1_600_100_000 + i * 60, message, files,
                                          parent="refs/heads/main^0" if i == 1 else None))
    fast_import(repo, commits)


def snapshot(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchall(),
            "commits": sorted(conn.execute(
                "SELECT sha, subject, n_parents, n_files, added, deleted FROM commits").fetchall()),
            "parents": sorted(conn.execute(
                "SELECT c.sha, p.idx, p.parent_sha FROM parents p JOIN commits c ON c.id = p.commit_id")),
            "changes": sorted(conn.execute(
                "SELECT c.sha, ch.idx, ch.path, ch.status, ch.added, ch.deleted, ch.hunks"
                " FROM changes ch JOIN commits c ON c.id = ch.commit_id")),
            "links": sorted(conn.execute(
                "SELECT c.sha, l.seq, l.kind, l.ref, l.culprit_sha, l.status"
                " FROM links l JOIN commits c ON c.id = l.fix_id")),
        }
    finally:
        conn.close()


def count_commits(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        try:
            return conn.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet, or the schema is being written


@pytest.mark.slow
def test_killed_index_resumes_to_a_clean_index(repo, tmp_path):
    n = 4000
    many_commits(repo, n)
    total = n + 20
    db = tmp_path / "killed.sqlite"

    def command(db: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "rcahook", "index", "--repo", str(repo.path), "--db", str(db),
                "--no-graph", *extra]

    # its own process group, so that the kill reaches the diff workers too
    proc = subprocess.Popen(command(db, "-q"), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and count_commits(db) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        at_kill = count_commits(db)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 0 < at_kill < total
    killed = snapshot(db)
    assert killed["integrity"] == [("ok",)] and len(killed["commits"]) < total

    rerun = subprocess.run(command(db), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed_count = int(rerun.stdout.split()[1])
    assert resumed_count == total - len(killed["commits"])  # only what the killed run had not written

    clean = tmp_path / "clean.sqlite"
    subprocess.run(command(clean, "-q"), check=True)
    resumed, reference = snapshot(db), snapshot(clean)
    assert resumed == reference
    assert len(resumed["commits"]) == total
    statuses = {row[5] for row in resumed["links"]}
    assert statuses == {"resolved", "unknown"}
    assert sum(row[5] == "resolved" for row in resumed["links"]) == n // 50

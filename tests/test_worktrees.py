"""Linked worktrees (#10) share one index and one feedback store: git's common directory."""
from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from clirun import rcahook
from rcahook.index.gitrepo import Repo

INCIDENT = ("--title", "parser drops the last token", "--window", "10")  # the commits are from 2024


@pytest.fixture
def worktrees(make_repo, tmp_path):
    main = make_repo("main")
    for i in range(1, 5):
        main.commit(f"lexer: token kind {i}", {f"lex{i}.py": f"def kind_{i}():\n    return {i}\n"})
    main.commit("parser: drop the last token on error", {"parse.py": "def parse(t):\n    return t[:-1]\n"})
    linked = tmp_path / "linked"
    main.git("worktree", "add", "-q", str(linked), "-b", "side")
    return main.path, linked


def commits_in(index: Path) -> int:
    db = sqlite3.connect(index)
    try:
        return db.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
    finally:
        db.close()


def test_common_dir_is_the_main_repositorys_git_dir(worktrees):
    main, linked = worktrees
    r = Repo(linked)
    assert r.git_dir == main / ".git" / "worktrees" / "linked"
    expected = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=linked,
                              check=True, capture_output=True, text=True).stdout.strip()
    assert r.common_dir == Path(expected) == main / ".git"
    assert Repo(main).common_dir == Repo(main).git_dir == main / ".git"


def test_a_linked_worktree_uses_the_index_built_in_the_main_one(worktrees):
    main, linked = worktrees
    assert rcahook("index", "--repo", str(main), "-q").code == 0
    index = main / ".git" / "rcahook" / "index.sqlite"
    n = commits_in(index)

    again = rcahook("index", "--repo", str(linked))
    assert again.code == 0, again.err
    assert again.out.startswith("indexed 0 new commit(s)") and str(index) in again.out

    inv = rcahook("investigate", "--repo", str(linked), *INCIDENT, "--format", "json")
    assert inv.code == 0, inv.err
    assert json.loads(inv.out)["suggestions"][0]["subject"] == "parser: drop the last token on error"
    assert not (main / ".git" / "worktrees" / "linked" / "rcahook").exists()  # no second index
    assert commits_in(index) == n


def test_a_verdict_recorded_in_one_worktree_is_seen_in_the_other(worktrees):
    main, linked = worktrees
    inv = rcahook("investigate", "--repo", str(linked), *INCIDENT, "--format", "json")
    assert inv.code == 0, inv.err
    doc = json.loads(inv.out)
    inv_id, culprit = doc["id"], doc["suggestions"][0]["sha"]

    assert rcahook("feedback", inv_id, "--root-cause", culprit, "--repo", str(linked)).code == 0
    seen = rcahook("feedback", inv_id, "--repo", str(main))
    assert seen.code == 0, seen.err
    assert f"{culprit[:12]} root cause" in seen.out

    # and back: a later verdict from the main worktree supersedes it in the linked one
    other = doc["suggestions"][1]["sha"]
    assert rcahook("feedback", inv_id, "--root-cause", other, "--repo", str(main)).code == 0
    listed = rcahook("feedback", "--list", "--repo", str(linked))
    assert listed.code == 0 and other[:12] in listed.out


def test_an_index_left_in_a_worktrees_own_git_dir_is_not_used(worktrees):
    main, linked = worktrees
    old = main / ".git" / "worktrees" / "linked" / "rcahook" / "index.sqlite"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an index from an older rcahook")
    done = rcahook("index", "--repo", str(linked), "-q")
    assert done.code == 0, done.err
    assert "no longer uses" in done.err and str(old) in done.err
    assert old.read_bytes() == b"an index from an older rcahook"  # not ours to delete
    assert (main / ".git" / "rcahook" / "index.sqlite").exists()


def test_a_linked_worktree_of_a_shallow_clone_knows_the_shallow_boundary(worktrees, tmp_path):
    main, _ = worktrees
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", main.as_uri(), str(clone)], check=True, capture_output=True)
    wt = tmp_path / "shallow-wt"
    subprocess.run(["git", "worktree", "add", "-q", str(wt), "-b", "w"], cwd=clone, check=True, capture_output=True)
    assert rcahook("index", "--repo", str(wt), "-q").code == 0
    # the `shallow` file lives in the common directory: the boundary commit has no file changes
    # rather than the whole tree as added
    boundary = json.loads(rcahook("show", "HEAD~1", "--repo", str(wt), "--format", "json").out)
    assert boundary["shallow"] is True and boundary["files"] == []


def test_a_planted_commondir_file_does_not_move_rcahooks_data(make_repo, tmp_path):
    """Only a real linked worktree's git dir (<common>/worktrees/<name>) names another directory."""
    repo = make_repo("planted")
    repo.commit("one", {"a.txt": "a\n"})
    elsewhere = make_repo("elsewhere")
    elsewhere.commit("two", {"b.txt": "b\n"})
    (repo.path / ".git" / "commondir").write_text(str(elsewhere.path / ".git") + "\n")
    assert Repo(repo.path).common_dir == repo.path / ".git"

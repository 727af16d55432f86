from __future__ import annotations

import json
import os
import sqlite3

import pytest

from rcahook.errors import EmptyRepositoryError, IndexLockedError, UnknownRevisionError
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from test_gitrepo import history_with_merges


def index(repo, db=None, **kwargs):
    kwargs.setdefault("graph", False)
    db = db or repo.path / ".git" / "rcahook" / "index.sqlite"
    return index_repository(Repo(repo.path), db, **kwargs)


def open_history(repo) -> History:
    return History.open(repo.path / ".git" / "rcahook" / "index.sqlite")


def query(repo, sql, *args):
    conn = sqlite3.connect(repo.path / ".git" / "rcahook" / "index.sqlite")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_indexes_all_commits_then_incrementally(repo):
    shas = [repo.commit(f"c{i}", {"f.txt": f"{i}\n"}) for i in range(3)]
    first = index(repo)
    assert (first.new_commits, first.total_commits) == (3, 3)
    assert index(repo).new_commits == 0  # nothing new: nothing walked again
    new = repo.commit("c3", {"f.txt": "3\n"})
    again = index(repo)
    assert (again.new_commits, again.total_commits) == (1, 4)
    assert {s for (s,) in query(repo, "SELECT sha FROM commits")} == {*shas, new}


def test_commit_columns(repo):
    sha = repo.commit("net: fix\n\nbody text\n\nSigned-off-by: A <a@example.com>\nCc: b@example.com\n",
                      {"a.py": "def run_server():\n    pass\n"}, author="Ann Author <ann@example.com>",
                      date="2024-03-01T10:00:00+02:00")
    index(repo)
    row = query(repo, "SELECT author_name, author_email, author_time, author_offset, committer_name,"
                      " subject, body, trailers, n_parents, n_files, added, deleted, idents_added"
                      " FROM commits WHERE sha=?", sha)[0]
    assert row[:6] == ("Ann Author", "ann@example.com", 1709280000, 120, "Test Committer", "net: fix")
    assert row[6] == "body text\n\nSigned-off-by: A <a@example.com>\nCc: b@example.com"
    assert json.loads(row[7]) == [["Signed-off-by", "A <a@example.com>"], ["Cc", "b@example.com"]]
    assert row[8:12] == (0, 1, 2, 0)
    assert "run_server" in row[12].split()


def test_renames_and_merges(repo):
    repo.commit("add", {"old.txt": "".join(f"{i}\n" for i in range(30))})
    repo.git("mv", "old.txt", "new.txt")
    renamed = repo.commit("rename")
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side", {"s.txt": "s\n"})
    repo.git("checkout", "-q", "main")
    main = repo.commit("main", {"m.txt": "m\n"})
    repo.git("merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = repo.git("rev-parse", "HEAD")
    index(repo)
    history = open_history(repo)
    try:
        assert [(c.path, c.old_path, c.status) for c in history.changes(renamed)] == [("new.txt", "old.txt", "R")]
        assert history.changes(merge) == []  # merges record no changes
        assert history.parents(merge) == (main, side)
        view = history.commit(merge)
        assert (view.n_parents, view.n_files) == (2, 0)
    finally:
        history.close()


def test_binary_files_are_changes_without_hunks(repo):
    sha = repo.commit("bin", {"logo.png": bytes(range(256)) * 4, "a.txt": "a\n"})
    index(repo)
    rows = dict((r[0], r[1:]) for r in query(
        repo, "SELECT ch.path, ch.binary, ch.added, ch.deleted, ch.hunks FROM changes ch"
              " JOIN commits c ON c.id = ch.commit_id"
              " WHERE c.sha=?", sha))
    assert rows["logo.png"] == (1, 0, 0, "")
    assert rows["a.txt"] == (0, 1, 0, "0,0,1,1")


def test_files_over_the_size_cap_are_still_changes(repo):
    big = "".join(f"x_{i} = {i}\n" for i in range(150_000))  # 2 MB: over the parse cap
    sha = repo.commit("generated", {"gen.py": big, "small.py": "def f():\n    return 1\n"})
    index(repo)
    rows = dict(query(repo, "SELECT ch.path, ch.added FROM changes ch JOIN commits c ON c.id = ch.commit_id"
                            " WHERE c.sha=?", sha))
    assert rows == {"gen.py": 150_000, "small.py": 2}


def test_files_over_the_size_cap_are_not_parsed(repo):
    from rcahook.codegraph.build import MAX_BLOB_BYTES

    big = "".join(f"def f_{i}():\n    return {i}\n" for i in range(MAX_BLOB_BYTES // 20))
    assert len(big) > MAX_BLOB_BYTES
    sha = repo.commit("generated", {"gen.py": big, "small.py": "def small():\n    return 1\n"})
    index(repo, graph=True)
    touched = {(t.path, t.name) for t in open_history(repo).touched(sha)}
    assert ("small.py", "small") in touched
    assert not any(path == "gen.py" for path, _ in touched)


def test_touched_definitions_recorded(repo):
    repo.commit("add", {"m.py": "def keep():\n    return 1\n\n\ndef edit():\n    return 1\n"})
    sha = repo.commit("edit", {"m.py": "def keep():\n    return 1\n\n\ndef edit():\n    return 2\n"})
    index(repo, graph=True)
    assert {t.name for t in open_history(repo).touched(sha)} == {"edit"}


def test_non_utf8_messages_and_paths(repo):
    repo.write("a", "a\n")
    repo.git("add", "-A")
    repo.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "-F", "-",
             input="Caf\xe9: fix\n\nd\xe9j\xe0 vu\n".encode("latin-1"))
    with_header = repo.git("rev-parse", "HEAD")
    (repo.path / os.fsdecode(b"na\xefve.txt")).write_bytes(b"x\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-F", "-", input="na\xefve\n".encode("latin-1"))
    without_header = repo.git("rev-parse", "HEAD")
    index(repo)
    history = open_history(repo)
    try:
        assert (history.commit(with_header).subject, history.commit(with_header).body) == ("Café: fix", "déjà vu")
        assert history.commit(without_header).subject == "naïve"
        assert [c.path for c in history.changes(without_header)] == ["na\\xefve.txt"]
    finally:
        history.close()


def test_errors_empty_repository_and_unknown_revision(make_repo, repo, tmp_path):
    with pytest.raises(EmptyRepositoryError):
        index(make_repo())
    repo.commit("one", {"a": "1\n"})
    with pytest.raises(UnknownRevisionError, match="nope"):
        index(repo, revs=["nope"])


def test_shallow_clone_indexes_what_is_there(repo, tmp_path):
    for i in range(6):
        repo.commit(f"c{i}", {"f.txt": f"{i}\n", f"g{i}.txt": "g\n"})
    clone = tmp_path / "clone"
    repo.git("clone", "-q", "--depth", "3", f"file://{repo.path}", str(clone))
    db = tmp_path / "shallow.sqlite"
    result = index_repository(Repo(clone), db, graph=False)
    assert result.shallow and result.total_commits == 3
    assert any("shallow clone" in note for note in result.notes)
    conn = sqlite3.connect(db)
    boundary = repo.git("rev-parse", "HEAD~2")
    assert conn.execute("SELECT shallow, n_files FROM commits WHERE sha=?", (boundary,)).fetchone() == (1, 0)
    assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 4  # 2 commits x 2 files


def test_old_schema_and_corrupt_database_are_rebuilt(repo, tmp_path):
    repo.commit("one", {"a": "1\n"})
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                       "INSERT INTO meta VALUES ('schema_version', '2');")
    conn.close()
    said: list[str] = []
    assert index(repo, db=old, say=said.append).total_commits == 1
    assert said == [f"rebuilding the index at {old}: it has schema version 2, this rcahook needs "
                    f"{store.SCHEMA_VERSION}"]
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database\x00\xff" * 512)
    said.clear()
    assert index(repo, db=corrupt, say=said.append).total_commits == 1
    assert len(said) == 1 and "it is corrupt" in said[0]
    assert sqlite3.connect(corrupt).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_second_index_run_gives_up_clearly(repo, monkeypatch):
    repo.commit("one", {"a": "1\n"})
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    monkeypatch.setenv("RCAHOOK_LOCK_WAIT", "0.5")
    with store.index_lock(db, wait=0):
        with pytest.raises(IndexLockedError, match=r"another rcahook index is updating .* \(waited 0.5s\)"):
            index(repo)
    assert index(repo).new_commits == 1  # the lock is released with its holder


# -- culprit links -------------------------------------------------------------------------------

def test_culprit_links_resolved(repo):
    culprit = repo.commit("parser: add fast path", {"p.py": "x = 1\n"})
    other = repo.commit("net: retry", {"n.py": "y = 1\n"})
    third = repo.commit("db: pool", {"d.py": "z = 1\n"})
    fix = repo.commit(f'parser: fix\n\nFixes: {culprit[:12]} ("parser: add fast path")\n', {"p.py": "x = 2\n"})
    regression = repo.commit(f"net: fix retry\n\nRegression in {other[:10]}.\n", {"n.py": "y = 2\n"})
    introduced = repo.commit(f"db: fix\n\nThe leak was introduced by commit {third[:8]}.\n", {"d.py": "z = 2\n"})
    revert = repo.commit(f'Revert "db: pool"\n\nThis reverts commit {third}.\n', {"d.py": None})
    index(repo)
    history = open_history(repo)
    try:
        got = [(link.fix, link.kind, link.ref, link.culprit, link.status) for link in history.links()]
        assert got == [
            (fix, "fixes", culprit[:12], culprit, "resolved"),
            (regression, "regression", other[:10], other, "resolved"),
            (introduced, "introduced", third[:8], third, "resolved"),
            (revert, "revert", third, third, "resolved"),
        ]
        assert history.culprit_of() == {fix: culprit, regression: other, introduced: third}
        as_fix, as_culprit = history.links_of(third)
        assert as_fix == [] and [link.fix for link in as_culprit] == [introduced, revert]
    finally:
        history.close()


def test_unknown_references_are_retried_when_new_commits_arrive(repo):
    repo.commit("base", {"a": "1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    culprit = repo.commit("feature work", {"b": "1\n"})
    repo.git("checkout", "-q", "main")
    fix = repo.commit(f"fix\n\nFixes: {culprit[:12]}\nFixes: 0123456789abcdef\n", {"a": "2\n"})
    first = index(repo, revs=["main"])  # the culprit's branch is not indexed yet
    assert (first.links_total, first.links_unresolved) == (2, 2)
    assert query(repo, "SELECT ref, status, culprit_sha FROM links ORDER BY seq") == [
        (culprit[:12], "unknown", None), ("0123456789abcdef", "unknown", None)]
    second = index(repo)  # every branch: the culprit arrives
    assert (second.new_commits, second.links_total, second.links_unresolved) == (1, 2, 1)
    assert query(repo, "SELECT ref, status, culprit_sha FROM links ORDER BY seq") == [
        (culprit[:12], "resolved", culprit), ("0123456789abcdef", "unknown", None)]
    assert open_history(repo).culprit_of() == {fix: culprit}


def test_ambiguous_references_stay_unresolved(repo):
    # A real 7-hex collision needs ~2^14 commits: a row with a twin sha, written into the
    # real index between two runs, stands for the other commit
    culprit = repo.commit("culprit", {"a": "1\n"})
    index(repo)
    twin = culprit[:7] + ("0" if culprit[7] != "0" else "1") + "f" * 32
    conn = sqlite3.connect(repo.path / ".git" / "rcahook" / "index.sqlite")
    conn.execute("INSERT INTO commits (sha, author_name, author_email, author_time, author_offset,"
                 " committer_name, committer_email, committer_time, committer_offset, subject, body,"
                 " trailers, n_parents, n_files, added, deleted, idents_added, idents_removed, generation)"
                 " VALUES (?, 'x', 'x', 0, 0, 'x', 'x', 0, 0, 'twin', '', '[]', 0, 0, 0, 0, '', '', 1)", (twin,))
    conn.commit()
    conn.close()
    repo.commit(f"fix\n\nFixes: {culprit[:7]}\n", {"a": "2\n"})
    result = index(repo)
    assert (result.links_total, result.links_unresolved) == (1, 1)
    assert query(repo, "SELECT status, culprit_sha FROM links") == [("ambiguous", None)]


# -- rev-list over the index ---------------------------------------------------------------------

@pytest.mark.parametrize("same_time", [False, True])
def test_history_rev_list_equals_git_rev_list(repo, same_time):
    history_with_merges(repo, same_time=same_time)
    index(repo)
    history = open_history(repo)
    try:
        head = repo.git("rev-parse", "HEAD")
        everything = repo.git("rev-list", "--no-merges", "HEAD").split()
        for n in range(1, len(everything) + 1):
            assert history.rev_list(head, max_count=n) == repo.git(
                "rev-list", "--no-merges", f"--max-count={n}", "HEAD").split()
        assert history.rev_list(head) == everything
        assert history.rev_list(head, no_merges=False) == repo.git("rev-list", "HEAD").split()
        side = repo.git("rev-parse", "side")
        assert history.rev_list(side, max_count=2) == repo.git("rev-list", "--no-merges", "--max-count=2",
                                                              "side").split()
    finally:
        history.close()


def test_an_update_follows_parents_from_the_tips_and_stops_at_indexed_commits(repo):
    """After a finished run every indexed commit's ancestors are indexed, so an update walks
    only the new commits (libgit2's walk hiding old tips went through the whole history when
    commit times go backwards): new branches, merges and a committer clock set far back are
    all found, children before parents, as a full walk orders them."""
    base = [repo.commit(f"c{i}", {"f.txt": f"{i}\n"}) for i in range(4)]
    index(repo)
    assert query(repo, "SELECT value FROM meta WHERE key = 'walk_complete'") == [("1",)]
    repo.git("checkout", "-q", "-b", "side", base[1])
    side = [repo.commit(f"side {i}", {"s.txt": f"{i}\n"}, date="2001-01-01T00:00:00+00:00") for i in range(3)]
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = repo.git("rev-parse", "HEAD")
    after = repo.commit("after the merge", {"f.txt": "x\n"})
    result = index(repo)
    assert result.new_commits == 5
    everything = set(repo.git("rev-list", "--all").split())
    assert {sha for (sha,) in query(repo, "SELECT sha FROM commits")} == everything
    ids = dict(query(repo, "SELECT sha, id FROM commits"))
    assert ids[after] < ids[merge] < ids[side[2]] < ids[side[1]] < ids[side[0]]  # children first


def test_an_interrupted_run_keeps_the_full_walk_until_its_commits_have_their_parents(repo):
    """A run stopped midway leaves commits whose parents are not indexed (children are written
    first); if their branch is then gone, a finished run does not reach them, and the walk
    that stops at indexed commits would never index their parents when the branch comes back.
    Until no indexed commit lacks a parent the repository has, updates use the full walk."""
    from rcahook.index import indexer

    base = repo.commit("base", {"f.txt": "0\n"})
    index(repo)
    repo.git("checkout", "-q", "-b", "topic")
    topic = [repo.commit(f"topic {i}", {"t.txt": f"{i}\n"}) for i in range(3)]
    repo.git("checkout", "-q", "main")
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    conn = store.open_index(db)
    try:  # what a run killed after its first batch leaves: the newest commit, not its parents
        with store.transaction(conn):
            indexer._insert(conn, [indexer._rows(Repo(repo.path).commit_record(topic[2]))])
            store.set_meta(conn, "walk_complete", "0")
    finally:
        conn.close()
    repo.git("branch", "-D", "topic")
    repo.commit("main moves on", {"f.txt": "1\n"})
    index(repo)
    assert query(repo, "SELECT value FROM meta WHERE key = 'walk_complete'") == [("0",)]
    repo.git("branch", "topic", topic[2])
    index(repo)
    indexed = {sha for (sha,) in query(repo, "SELECT sha FROM commits")}
    assert set(topic) | {base} <= indexed
    assert query(repo, "SELECT value FROM meta WHERE key = 'walk_complete'") == [("1",)]


def test_a_new_link_gets_its_old_culprit_touched_without_listing_every_culprit(repo):
    """Once every culprit is done, an update looks only at the links its new commits make (or
    resolve to them), not at every culprit of the history; a new fix's old culprit is done."""
    shas = [repo.commit(f"c{i}", {f"m{i}.py": f"def f{i}(x):\n    return x + {i}\n"}) for i in range(5)]
    index(repo, graph=True, touched_depth=1)
    assert query(repo, "SELECT value FROM meta WHERE key = 'culprits_touched'") == [("1",)]
    assert query(repo, "SELECT defs_done FROM commits WHERE sha = ?", shas[1]) == [(0,)]
    repo.commit(f"Fix f1\n\nFixes: {shas[1][:12]}", {"m1.py": "def f1(x):\n    return x - 1\n"})
    index(repo, graph=True, touched_depth=1)
    assert query(repo, "SELECT defs_done FROM commits WHERE sha = ?", shas[1]) == [(1,)]
    assert query(repo, "SELECT defs_done FROM commits WHERE sha = ?", shas[2]) == [(0,)]

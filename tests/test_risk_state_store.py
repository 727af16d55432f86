"""The scan's saved counts are rows per key, read by the keys of the pushed commits (issue 11):
what a scan computes from them equals an in-memory replay from scratch, it reads no key its
commits do not involve, a malformed row is never trusted, and a read-only index is left as it
is. Real repositories, real `rcahook index` and `rcahook scan`, real SQLite."""
from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest

import riskrepo as rr
from rcahook.index import store
from rcahook.index.reader import History
from rcahook.index.store import default_db_path
from rcahook.risk.facts import load_facts, similarity_document
from rcahook.risk.model import default_risk_model
from rcahook.risk.scan import assess
from rcahook.risk.state import FEATURE_INDEX, NOT_SAVED, RiskHistory, history_state, load_state, save_state
from rcahook.text import component_prefix, tokenize

ALICE, BOB, CAROL = "Alice <alice@example.com>", "Bob <bob@example.com>", "Carol <carol@example.com>"


def _db(repo):
    return default_db_path(repo.path / ".git")


def _grow(repo, n: int) -> list[str]:
    """A round of work by several authors on several files: one-file and many-file commits,
    a root cause and the fix naming it."""
    shas = []
    net = (repo.path / "src/net.c").read_text()
    shas.append(repo.commit(f"net: wider buffers {n}", {
        "src/net.c": net + rr.c_function(f"net_wide{n}", 8), f"lib/buf{n}.c": f"int buf{n};\n",
        "lib/list.c": f"int list_{n};\n"}, author=ALICE))
    shas.append(repo.commit(f"lib: list helper {n}", {"lib/list.c": f"int list_{n} = {n};\n"}, author=BOB))
    culprit = repo.commit(f"util: cache results {n}", {
        "src/util.c": f"int util(void) {{ return {n}; }}\n", "lib/list.c": f"int list_{n} = -{n};\n"}, author=CAROL)
    shas.append(culprit)
    shas.append(repo.commit(f"util: fix the cache\n\nFixes: {culprit[:12]} (\"util: cache results {n}\")\n",
                            {"src/util.c": f"int util(void) {{ return {n + 1}; }}\n"}, author=ALICE))
    return shas


@pytest.fixture
def project(repo, tmp_path):
    rr.build_history(repo)
    _grow(repo, 0)
    # a file and an author no pushed commit of these tests involves
    repo.commit("tools: lonely script", {"tools/lonely.sh": "echo hi\n"}, author="Zed <zed@example.com>")
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    return repo


def _scan(repo, range_: str) -> dict:
    result = rr.run_scan(repo, "--format", "json", range_)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _pushed(conn, shas):
    return sorted(load_facts(conn, sorted(shas)).values(), key=lambda c: c.time)


def _features(state: RiskHistory, pushed) -> list[np.ndarray]:
    """As the scan describes them: each seeing the pushed commits before it."""
    rows = []
    for c in pushed:
        rows.append(state.features(c)[0])
        state.observe(c)
    return rows


def _rows(conn) -> dict[str, list]:
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("risk_state", "risk_counts", "risk_pairs", "risk_decayed", "risk_culprits", "risk_terms")}


def test_saved_rows_describe_as_a_replay_from_scratch(project):
    """(a) After several rounds of index + scan, each brought up to date from the saved rows,
    the features and risks equal those of an in-memory state rebuilt from the index."""
    repo = project
    model = default_risk_model()
    for n in range(1, 4):
        repo.git("push", "-q", "origin", "main")  # what was pushed is history now
        shas = _grow(repo, n)
        doc = _scan(repo, "origin/main..HEAD")
        assert len(doc["commits"]) == len(shas)
        with sqlite3.connect(_db(repo)) as conn:
            saved, why = load_state(conn)
            assert why is None and saved is not None and saved.store is not None  # read by key
            pushed = _pushed(conn, shas)
            assert any(len(c.paths) > 1 for c in pushed) and any(len(c.paths) == 1 for c in pushed)
            saved.prefetch(pushed, describe=True)
            scratch = history_state(conn, None, set(shas))
            assert scratch.store is None and scratch.n_commits == saved.n_commits
            assert saved.n_culprits == scratch.n_culprits >= 2 + n
            # the root causes they resemble: from the saved postings, as BM25 over them all
            resembled = saved.similar(pushed, top=5)
            assert resembled == scratch.similar(pushed, top=5) and any(resembled)
            from_rows, from_scratch = _features(saved, pushed), _features(scratch, pushed)
        for a, b in zip(from_rows, from_scratch, strict=True):
            assert a.tobytes() == b.tobytes()  # bit for bit
        assert max(x[FEATURE_INDEX["file_authors"]] for x in from_rows) > np.log1p(2)  # several authors per file
        # the scan's own figures: the same model over the same features
        risks = {c["sha"]: c["risk"] for c in doc["commits"]}
        expected = model.probability(np.vstack(from_scratch))
        assert [risks[c.sha] for c in pushed] == [round(float(p), 4) for p in expected]
        # and in process, exact: from the saved rows and from nothing
        history = History.open(_db(repo))
        try:
            stored = assess(history, shas, model=model, index_dir=_db(repo).parent)
            fresh = assess(history, shas, model=model)
        finally:
            history.close()
        assert [(r.probability, r.reasons) for r in stored] == [(r.probability, r.reasons) for r in fresh]


_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def test_a_scan_reads_only_the_keys_of_its_commits(project):
    """(b) An up-to-date scan selects the saved counts of the pushed commits' files, authors,
    directories, words and definitions, a bounded number of queries, and nothing else."""
    repo = project
    repo.git("push", "-q", "origin", "main")
    shas = _grow(repo, 1)
    _scan(repo, "origin/main..HEAD")  # saved, up to date
    history = History.open(_db(repo))
    statements: list[str] = []
    try:
        pushed = _pushed(history.conn, shas)
        history.conn.set_trace_callback(statements.append)
        assess(history, shas, model=default_risk_model(), index_dir=_db(repo).parent)
        history.conn.set_trace_callback(None)
        saved_keys = {key for (key,) in history.conn.execute("SELECT key FROM risk_counts")}
        root_causes = {sha for (sha,) in history.conn.execute("SELECT sha FROM risk_culprits")}
    finally:
        history.close()
    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")
             and re.search(r"\brisk_(counts|pairs|decayed|terms)\b", sql)]
    authors = {c.email for c in pushed}
    assert reads and len(reads) <= 20 + len(authors)  # a query per part and author, whatever the history
    asked = {m.replace("''", "'") for sql in reads for m in _LITERAL.findall(sql)}
    involved = {"file_commits", "file_lines", "file_culprits", "file_author_counts", "author_commits",
                "author_culprits", "component_commits", "component_culprits", "dir_commits", "dir_culprits",
                "word_commits", "word_culprits", "def_culprits"}
    for c in pushed:
        involved |= {*c.paths, c.email, *tokenize(c.subject), *c.defs, component_prefix(c.subject)}
        involved |= {p.split("/", 1)[0] if "/" in p else "." for p in c.paths}
        involved |= set(similarity_document(c))  # the terms of its resemblance to past root causes
    assert asked <= involved | root_causes, asked - involved  # and the root causes that resemble them most
    assert {"src/net.c", "alice@example.com", "lib"} <= asked  # what the features need was read
    others = {"tools/lonely.sh", "zed@example.com", "README.md", "maint@example.com", "tools"}
    assert others <= saved_keys and not others & asked  # saved, and not read


@pytest.mark.parametrize("tamper, said", [
    ("UPDATE risk_counts SET value = 'x' WHERE part = 'file_commits'", "file_commits: expected integer counts"),
    ("UPDATE risk_counts SET value = 1.5 WHERE part = 'author_commits'", "author_commits: expected integer counts"),
    ("UPDATE risk_counts SET value = -3 WHERE part = 'file_culprits'", "file_culprits: -3 is not a count"),
    ("UPDATE risk_counts SET value = 1000000000000 WHERE part = 'word_commits'", "is not a count of this history"),
    ("UPDATE risk_pairs SET n = -1", "author_files: -1 is not a count"),
    ("UPDATE risk_decayed SET value = -1.0", "recent_culprits: expected [value, time]"),
    ("UPDATE risk_decayed SET time = 'noon'", "recent_culprits: expected [value, time]"),
    ("UPDATE risk_state SET data = 'NaN' WHERE part = 'n_commits'", "n_commits: expected an integer"),
    ("UPDATE risk_culprits SET fixes = '[]'", "fixes_of: expected a list of fixes"),
    ("UPDATE risk_terms SET tf = 0", "is not a term's count in a document"),
    ("UPDATE risk_state SET data = '9999999' WHERE part = 'n_culprits'", "n_culprits: 9999999 root causes"),
    ("DROP TABLE risk_pairs", "no such table: risk_pairs"),
])
def test_malformed_rows_are_rebuilt(project, tamper, said):
    """(c) A row save_state would not write is never trusted: said once, rebuilt, saved right."""
    repo = project
    repo.git("push", "-q", "origin", "main")
    shas = _grow(repo, 1)
    first = _scan(repo, "origin/main..HEAD")
    with sqlite3.connect(_db(repo)) as conn:
        conn.execute(tamper)
    result = rr.run_scan(repo, "--format", "json", "origin/main..HEAD")
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert "rebuilding the scan state: the saved one is malformed (" in line and said in line, line
    assert [c["risk"] for c in json.loads(result.stdout)["commits"]] == [c["risk"] for c in first["commits"]]
    with sqlite3.connect(_db(repo)) as conn:
        saved, why = load_state(conn)
        assert why is None and saved is not None
        scratch = history_state(conn, None, set(shas))
        parts, expected = saved.to_parts(), scratch.to_parts()  # every row read back and checked
    assert parts["file_commits"] == expected["file_commits"] and parts["n_commits"] == expected["n_commits"]
    assert sorted(map(tuple, parts["author_files"])) == sorted(map(tuple, expected["author_files"]))
    assert parts["recent_culprits"] == expected["recent_culprits"]  # rebuilt as from scratch: exactly
    assert rr.run_scan(repo, "--format", "json", "origin/main..HEAD").stderr == ""  # saved right: quiet


def test_read_only_index_scans_and_saves_nothing(project):
    """(d) On an index this process cannot write, the saved rows are read and brought up to date
    in memory, the scan is the same, and not a row changes."""
    repo = project
    repo.git("push", "-q", "origin", "main")
    shas = _grow(repo, 1)
    _scan(repo, "origin/main..HEAD")
    repo.git("push", "-q", "origin", "main")
    later = _grow(repo, 2)  # the saved state lacks these and what was pushed
    rr.index(repo)
    with sqlite3.connect(_db(repo)) as conn:
        before = _rows(conn)
    assert before["risk_counts"]
    history = History(store.connect_read_only(_db(repo)))
    said: list[str] = []
    try:
        model = default_risk_model()
        stored = assess(history, later, model=model, index_dir=_db(repo).parent, say=said.append)
        fresh = assess(history, later, model=model)
    finally:
        history.close()
    assert said == [NOT_SAVED]
    assert [r.probability for r in stored] == [r.probability for r in fresh] and len(stored) == len(later)
    with sqlite3.connect(_db(repo)) as conn:
        assert _rows(conn) == before
    assert set(shas).isdisjoint(later)


def test_a_state_saved_meanwhile_is_not_overwritten(project):
    """Two scans at once: the one that loaded the older rows does not write its keys over the
    rows another saved since (their watermark and counts would no longer agree)."""
    repo = project
    _grow(repo, 1)
    _scan(repo, "origin/main..HEAD")  # saved
    _grow(repo, 2)
    rr.index(repo)
    with sqlite3.connect(_db(repo), isolation_level=None) as older, \
            sqlite3.connect(_db(repo), isolation_level=None) as other:
        stale, why = load_state(older)
        assert why is None and stale is not None
        history_state(other, _db(repo).parent, set())  # brought up to date and saved
        after = _rows(other)
        stale.observe(_pushed(older, [repo.git("rev-parse", "HEAD").strip()])[0])
        assert save_state(older, stale) is False
        assert _rows(other) == after

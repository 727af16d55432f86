from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

import riskrepo as rr
from clirun import rcahook as run_cli
from rcahook.cli import cli
from rcahook.commands.scan import skip_reason
from rcahook.hook_entry import EXIT_VERDICT
from rcahook.index.store import default_db_path
from rcahook.risk.pushrange import MAX_UNPUSHED, ZERO


@pytest.fixture
def project(repo, tmp_path):
    return repo, rr.published(repo, tmp_path)


def scan(repo, *args: str):
    return CliRunner().invoke(cli, ["scan", "--repo", str(repo.path), *args])


def test_risky_commit_warns_with_reasons_and_passes(project):
    repo, _ = project
    risky = rr.risky_commit(repo)
    rr.benign_commit(repo)
    result = scan(repo)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "2 commit(s)" in lines[0]
    # riskiest first, with the reasons a reviewer can check
    assert risky[:12] in lines[1]
    assert "src/net.c was changed by 2 earlier root causes" in result.output
    assert "first commit by drive@example.com to these files" in result.output
    assert "look first at src/net.c:" in result.output


def test_json_orders_and_explains(project):
    repo, shas = project
    risky = rr.risky_commit(repo)
    benign = rr.benign_commit(repo)
    doc = json.loads(scan(repo, "--format", "json").output)
    assert doc["schema"] == "rcahook.scan/1"
    by_sha = {c["sha"]: c for c in doc["commits"]}
    assert by_sha[risky]["risk"] > by_sha[benign]["risk"]
    kinds = {r["kind"] for r in by_sha[risky]["reasons"]}
    assert {"size", "past_root_causes", "author_experience", "risky_definitions"} <= kinds
    assert by_sha[risky]["location"]["path"] == "src/net.c"
    assert doc["blocked"] == []


def test_fail_above_blocks(project):
    repo, _ = project
    risky = rr.risky_commit(repo)
    doc = json.loads(scan(repo, "--format", "json").output)
    p = doc["commits"][0]["risk"]
    result = scan(repo, "--fail-above", str(p / 2))
    assert result.exit_code == EXIT_VERDICT
    assert "push blocked" in result.output and risky[:12] in result.output
    assert scan(repo, "--fail-above", str(min(p * 2, 1.0))).exit_code == 0


def test_fail_above_from_config(project):
    repo, _ = project
    rr.risky_commit(repo)
    repo.write(".rcahook.toml", "fail-above = 0.0001\n")
    assert scan(repo).exit_code == EXIT_VERDICT


def test_ranges(project):
    repo, shas = project
    a = rr.benign_commit(repo, 1)
    b = rr.benign_commit(repo, 2)
    doc = json.loads(scan(repo, f"{a}..{b}", "--format", "json").output)
    assert [c["sha"] for c in doc["commits"]] == [b]
    doc = json.loads(scan(repo, "--from", shas["init"], "--to", a, "--format", "json").output)
    assert len(doc["commits"]) > 10
    doc = json.loads(scan(repo, a, "--format", "json").output)
    assert [c["sha"] for c in doc["commits"]] == [a]
    assert scan(repo, "--from", ZERO, "--to", ZERO).output == ""  # a deleted branch: nothing to say
    deleted = json.loads(scan(repo, "--from", ZERO, "--to", ZERO, "--format", "json").output)
    assert deleted["commits"] == [] and deleted["error"] is None and deleted["range"]["description"] == "deleted branch"


def test_new_branch_scans_only_what_the_remote_lacks(project):
    repo, _ = project
    repo.git("checkout", "-q", "-b", "feature")
    a = rr.benign_commit(repo, 1)
    b = rr.risky_commit(repo)
    doc = json.loads(scan(repo, "--from", ZERO, "--to", "feature", "--remote", "origin", "--format", "json").output)
    assert {c["sha"] for c in doc["commits"]} == {a, b}
    assert doc["range"]["description"].startswith("new branch")


def test_force_push_scans_commits_not_on_the_remote(project):
    repo, _ = project
    old = rr.benign_commit(repo, 1)
    repo.git("push", "-q", "origin", "main")
    repo.git("reset", "-q", "--hard", "HEAD~1")
    new = rr.risky_commit(repo)
    doc = json.loads(scan(repo, "--from", old, "--to", new, "--format", "json").output)
    assert [c["sha"] for c in doc["commits"]] == [new]
    assert doc["range"]["description"].startswith("force push")


def test_new_branch_is_capped(project):
    repo, _ = project
    repo.git("checkout", "-q", "--orphan", "lonely")
    for i in range(MAX_UNPUSHED + 3):
        repo.commit(f"lonely {i}", {"x.txt": str(i)})
    doc = json.loads(scan(repo, "--from", ZERO, "--to", "lonely", "--format", "json").output)
    assert doc["range"]["capped"] and len(doc["commits"]) == MAX_UNPUSHED


def test_broken_index_passes_with_one_line(project):
    repo, _ = project
    rr.risky_commit(repo)
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"\x00garbage, not a database\xff" * 100)
    result = rr.run_scan(repo, "--fail-above", "0.0001")
    assert result.returncode == 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unusable" in result.stderr and "rcahook index" in result.stderr
    strict = rr.run_scan(repo, "--strict")
    assert strict.returncode != 0


def test_missing_index_passes_with_one_line(repo, tmp_path):
    rr.build_history(repo)
    result = rr.run_scan(repo, "--fail-above", "0.0001")
    assert result.returncode == 0 and len(result.stderr.strip().splitlines()) == 1
    assert "rcahook index" in result.stderr


def test_time_budget_overrun_passes(project, monkeypatch):
    repo, _ = project
    rr.risky_commit(repo)
    import rcahook.commands.scan as command

    def slow(**kwargs):
        import time
        time.sleep(5)
        return 0

    monkeypatch.setattr(command, "scan", slow)
    result = scan(repo, "--max-seconds", "0.2", "--fail-above", "0.0001")
    assert result.exit_code == 0
    assert "budget" in result.output
    assert scan(repo, "--max-seconds", "0.2", "--strict").exit_code == 124


def test_internal_error_passes_unless_strict(project, monkeypatch):
    repo, _ = project
    rr.risky_commit(repo)
    import rcahook.risk.scan

    def boom(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(rcahook.risk.scan, "assess", boom)
    result = scan(repo, "--fail-above", "0.0001")
    assert result.exit_code == 0
    assert "internal error ZeroDivisionError: planted" in result.output
    # --strict: the same error fails the command, through the CLI's own mapping of a bug
    strict = run_cli("scan", "--repo", str(repo.path), "--fail-above", "0.0001", "--strict")
    assert strict.code == 70
    assert "internal error: ZeroDivisionError: planted" in strict.err and "passed without a verdict" not in strict.err


@pytest.mark.parametrize("env, skipped", [
    ({"SKIP": "rcahook-risk"}, True), ({"SKIP": "flake8, rcahook-risk"}, True), ({"SKIP": "flake8"}, False),
    ({"RCAHOOK_SKIP": "1"}, True), ({"RCAHOOK_SKIP": "0"}, False), ({}, False)])
def test_skip(env, skipped):
    assert (skip_reason(env) is not None) == skipped


def test_skip_env_is_honoured(project):
    repo, _ = project
    rr.risky_commit(repo)
    result = rr.run_scan(repo, "--fail-above", "0.0001", SKIP="black,rcahook-risk")
    assert result.returncode == 0 and result.stdout == ""
    assert "skipped" in result.stderr


def test_pre_commit_framework_environment(project):
    repo, shas = project
    a = rr.benign_commit(repo, 1)
    b = rr.risky_commit(repo)
    result = rr.run_scan(repo, "--hook", "pre-commit-framework", "--format", "json",
                         PRE_COMMIT_FROM_REF=a, PRE_COMMIT_TO_REF=b, PRE_COMMIT_REMOTE_NAME="origin")
    assert [c["sha"] for c in json.loads(result.stdout)["commits"]] == [b]


def test_hook_path_imports_no_heavy_libraries(project):
    repo, _ = project
    rr.risky_commit(repo)
    code = ("import sys, json\nfrom rcahook.cli import main\n"
            f"code = main(['scan', '--repo', {str(repo.path)!r}, '--hook', 'pre-push'])\n"
            "print('MODULES', json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=rr.hook_env())
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout.split("MODULES", 1)[1]))
    assert "rcahook.risk.state" in modules  # the scan did run
    heavy = {"torch", "transformers", "sklearn", "matplotlib", "peft", "scipy", "rich"}
    assert not heavy & {m.split(".")[0] for m in modules}
    # nor the other stages (docs/architecture.md; tests/test_architecture.py checks the imports alone)
    stages = ("rcahook.llm", "rcahook.train", "rcahook.rca", "rcahook.backtest", "rcahook.serve")
    assert not [m for m in modules if m.startswith(stages)]


# --- the exit code of a verdict ---------------------------------------------------------------

def test_only_a_verdict_exits_3():
    """EXIT_VERDICT is what the plain hook reads as "blocked": no error class may share it."""
    from rcahook import errors

    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.RcahookError)}
    assert EXIT_VERDICT not in codes | {0, 1, 2, 70, 124, 126, 127, 130}


def test_bad_fail_above_passes_in_hooks_and_fails_when_strict(project):
    repo, _ = project
    rr.risky_commit(repo)
    result = rr.run_scan(repo, "--fail-above", "7", "--hook", "pre-push")
    assert result.returncode == 0 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--fail-above 7" in line
    assert rr.run_scan(repo, "--fail-above", "7", "--strict").returncode == 15


def test_a_locked_database_ends_within_the_budget(project):
    """Another process keeps SQLite locked: the scan waits inside SQLite, where the alarm cannot
    reach it; past the budget it is cut off and passes with one line (30 s of busy timeout else)."""
    repo, _ = project
    rr.risky_commit(repo)  # something to index, so the scan must write
    db = sqlite3.connect(default_db_path(repo.path / ".git"), isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        result = subprocess.run([rr.RCAHOOK, "scan", "--repo", str(repo.path), "--hook", "pre-push",
                                 "--max-seconds", "1", "--format", "json"], capture_output=True, text=True,
                                env=rr.hook_env(), timeout=20)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert "budget" in line
    assert json.loads(result.stdout)["error"]["kind"] == "timeout"


# --- the saved state is data, never code ------------------------------------------------------

class _Planted:
    """Unpickling this opens (creates) a file: what a crafted state file would do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_crafted_state_is_never_executed(project, tmp_path):
    repo, _ = project
    risky = rr.risky_commit(repo)
    first = rr.run_scan(repo, "--format", "json")  # saves the state in the index
    assert first.returncode == 0, first.stderr
    db = default_db_path(repo.path / ".git")
    marker = tmp_path / "unpickled"
    (db.parent / "risk-state.pickle").write_bytes(pickle.dumps(
        {"features": None, "state": _Planted(str(marker))}))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE risk_state SET data = ? WHERE part = 'fed'", ('{"not": "a list"',))
    result = rr.run_scan(repo, "--format", "json")
    assert not marker.exists()
    assert result.returncode == 0, result.stderr
    assert [c["sha"] for c in json.loads(result.stdout)["commits"]] == [risky]
    (line,) = result.stderr.splitlines()
    assert "rebuilding the scan state" in line and "malformed" in line
    assert not (db.parent / "risk-state.pickle").exists()  # never to be read: removed
    again = rr.run_scan(repo, "--format", "json")  # rebuilt and saved: quiet again
    assert again.stderr == "" and json.loads(again.stdout)["commits"] == json.loads(result.stdout)["commits"]


def test_old_pickle_alone_is_removed_and_said(project, tmp_path):
    repo, _ = project
    rr.risky_commit(repo)
    db = default_db_path(repo.path / ".git")
    marker = tmp_path / "unpickled"
    (db.parent / "risk-state.pickle").write_bytes(pickle.dumps(_Planted(str(marker))))
    result = rr.run_scan(repo)
    assert result.returncode == 0 and not marker.exists()
    (line,) = result.stderr.splitlines()
    assert "risk-state.pickle is from an older rcahook" in line


@pytest.mark.parametrize("tamper, said", [
    ("UPDATE meta SET value = '0' WHERE key = 'risk_state_version'", "version 0"),
    ("UPDATE risk_state SET data = '[\"nope\"]' WHERE part = 'features'", "other features"),
    ("UPDATE risk_counts SET value = 'x' WHERE part = 'file_commits'", "malformed"),
    ("UPDATE risk_culprits SET fixes = '[[1, 2, 3]]'", "malformed"),
])
def test_foreign_or_old_state_is_rebuilt(project, tamper, said):
    repo, _ = project
    rr.risky_commit(repo)
    rr.run_scan(repo)
    with sqlite3.connect(default_db_path(repo.path / ".git")) as conn:
        conn.execute(tamper)
    result = rr.run_scan(repo, "--format", "json")
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    assert "rebuilding the scan state" in line and said in line
    assert json.loads(result.stdout)["commits"]


def test_state_parts_round_trip(project):
    from rcahook.index.reader import History
    from rcahook.risk.facts import load_facts
    from rcahook.risk.state import RISK_FEATURES, RiskHistory, history_state

    repo, _ = project
    history = History.open(default_db_path(repo.path / ".git"))
    try:
        state = history_state(history.conn, None, set())
        parts = json.loads(json.dumps(state.to_parts()))
        assert set(parts) == set(vars(RiskHistory())) - {"callers"}  # every attribute is saved
        back = RiskHistory.from_parts(parts)
        commit = next(iter(load_facts(history.conn).values()))
        assert list(back.features(commit)[0]) == list(state.features(commit)[0])
        assert len(RISK_FEATURES) == len(back.features(commit)[0])
    finally:
        history.close()


def test_read_only_index_still_scans_and_says_so_once(project):
    """A connection that cannot write (as on a read-only repository): computed, used, not saved."""
    from rcahook.risk.state import NOT_SAVED, history_state, load_state

    repo, _ = project
    db = default_db_path(repo.path / ".git")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    said: list[str] = []
    try:
        state = history_state(conn, db.parent, set(), say=said.append)
        assert state.n_commits > 10
        assert said == [NOT_SAVED]
        assert load_state(conn) == (None, None)
    finally:
        conn.close()


# --- never an empty document ------------------------------------------------------------------

def _failed_sarif(doc: dict) -> str:
    (run,) = doc["runs"]
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False and run["results"] == []
    (note,) = invocation["toolExecutionNotifications"]
    return note["message"]["text"]


@pytest.mark.parametrize("where", ["outside", "empty", "no-index"])
def test_json_and_sarif_carry_the_error(where, tmp_path, make_repo):
    if where == "outside":
        path = tmp_path / "plain-dir"
        path.mkdir()
    elif where == "empty":
        path = make_repo("empty").path
    else:
        r = make_repo("unindexed")
        r.commit("init", {"a.txt": "a\n"})
        path = r.path
    run = lambda fmt: subprocess.run([rr.RCAHOOK, "scan", "--repo", str(path), "--format", fmt],  # noqa: E731
                                     capture_output=True, text=True, env=rr.hook_env())
    as_json, as_sarif = run("json"), run("sarif")
    assert as_json.returncode == 0 and as_sarif.returncode == 0
    doc = json.loads(as_json.stdout)
    assert doc["schema"] == "rcahook.scan/1" and doc["commits"] == [] and doc["error"]["message"]
    assert doc["error"]["message"] in as_json.stderr
    assert doc["error"]["message"] in _failed_sarif(json.loads(as_sarif.stdout))
    strict = subprocess.run([rr.RCAHOOK, "scan", "--repo", str(path), "--format", "json", "--strict"],
                            capture_output=True, text=True, env=rr.hook_env())
    assert strict.returncode not in (0, EXIT_VERDICT) and json.loads(strict.stdout)["error"]


def test_skipped_scan_prints_a_document(project):
    repo, _ = project
    result = rr.run_scan(repo, "--format", "sarif", RCAHOOK_SKIP="1")
    (run,) = json.loads(result.stdout)["runs"]
    assert run["invocations"][0]["executionSuccessful"] is True
    assert "skipped" in run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    assert json.loads(rr.run_scan(repo, "--format", "json", RCAHOOK_SKIP="1").stdout)["skipped"] == "RCAHOOK_SKIP"

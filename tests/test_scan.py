from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import riskrepo as rr
from rcahook.cli import cli
from rcahook.commands.scan import MAX_UNPUSHED, ZERO, skip_reason


@pytest.fixture
def project(repo, tmp_path):
    shas = rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    return repo, shas


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
    assert result.exit_code == 1
    assert "push blocked" in result.output and risky[:12] in result.output
    assert scan(repo, "--fail-above", str(min(p * 2, 1.0))).exit_code == 0


def test_fail_above_from_config(project):
    repo, _ = project
    rr.risky_commit(repo)
    repo.write(".rcahook.toml", "fail-above = 0.0001\n")
    assert scan(repo).exit_code == 1


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
    import rcahook.scan

    def boom(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(rcahook.scan, "assess", boom)
    result = scan(repo, "--fail-above", "0.0001")
    assert result.exit_code == 0
    assert "internal error ZeroDivisionError: planted" in result.output


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
    assert "rcahook.risk" in modules  # the scan did run
    heavy = {"torch", "transformers", "sklearn", "matplotlib", "peft", "scipy"}
    assert not heavy & {m.split(".")[0] for m in modules}

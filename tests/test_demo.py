"""The demo repository: deterministic, realistic enough, and its regression is found."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clirun import rcahook
from rcahook.config import load_config
from rcahook.demo import generate
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.rca.incident import load_incident
from rcahook.rca.report import JSON_SCHEMA
from rcahook.rca.stacktrace import map_frames, parse_stack_trace


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo") / "repo")


def test_history_looks_like_a_real_team(demo):
    log = git(demo.repo, "log", "--format=%an|%s").splitlines()
    assert 250 <= len(log) == demo.commits <= 500
    assert len({line.split("|")[0] for line in log}) == 8
    prefixes = {line.split("|")[1].split(":")[0] for line in log}
    assert {"billing", "auth", "search", "http", "docs"} <= prefixes
    times = [int(t) for t in git(demo.repo, "log", "--format=%at").split()]
    assert 55 * 86400 <= max(times) - min(times) <= 62 * 86400
    files = git(demo.repo, "ls-files").split()
    assert {"CODEOWNERS", ".rcahook.toml", "libs/http/retry.py", "services/search/query.go"} <= set(files)
    assert git(demo.repo, "status", "--porcelain") == ""  # checked out, clean
    subject = git(demo.repo, "log", "-1", "--format=%s", demo.culprit).strip()
    assert subject == "http: never retry non-idempotent methods"
    assert len(demo.fixes) == 5
    diff = git(demo.repo, "show", "--format=", demo.culprit)
    assert "+    attempts = max_attempts if method.upper() in IDEMPOTENT_METHODS else 1" in diff


def test_generation_is_deterministic(demo, tmp_path):
    again = generate(tmp_path / "again")
    assert again.culprit == demo.culprit and again.fixes == demo.fixes
    assert again.incident_file.read_text() == demo.incident_file.read_text()


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    with pytest.raises(SystemExit):
        generate(tmp_path / "x")


def test_incident_file_and_config_fit_the_repository(demo):
    assert demo.incident_file == demo.repo.with_name("repo-incident.json")
    inc = load_incident(demo.incident_file)
    repo = Repo(demo.repo)
    frames = map_frames(parse_stack_trace(inc.stack_trace or ""), [e.path for e in repo.list_tree("HEAD")])
    assert [f.path for f in frames] == ["libs/http/retry.py", "services/billing/client.py",
                                        "services/billing/charge.py", "services/billing/checkout.py"]
    # the traceback quotes the code that really is on those lines at HEAD
    for f in frames:
        code = repo.read_path("HEAD", f.path).decode().splitlines()[f.line - 1].strip()
        assert code in inc.stack_trace
    assert repo.commit_time(demo.culprit) < inc.time.timestamp()
    assert set(load_config(demo.repo).services) == {"billing", "auth", "search", "http"}


def test_make_demo_finds_the_regression(demo):
    """What `make demo` runs: index, then investigate the incident file with the defaults."""
    indexed = rcahook("index", "--repo", str(demo.repo), "--quiet")
    assert indexed.code == 0, indexed.err
    history = History.open(demo.repo / ".git" / "rcahook" / "index.sqlite")
    assert history.culprit_of() == demo.fixes  # every Fixes:/Regression in reference resolved
    history.close()
    result = rcahook("investigate", "--repo", str(demo.repo), "--incident", str(demo.incident_file),
                     "--format", "json", "--no-update", "--no-save")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    import jsonschema
    jsonschema.validate(doc, JSON_SCHEMA)
    shas = [s["sha"] for s in doc["suggestions"]]
    assert demo.culprit in shas[:5]
    assert doc["confidence"]["confident"]


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rcahook.demo", str(tmp_path / "d" / "repo")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rcahook investigate --repo" in proc.stdout
    assert (tmp_path / "d" / "repo-incident.json").is_file()
    usage = subprocess.run([sys.executable, "-m", "rcahook.demo"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr

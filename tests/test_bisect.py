"""`rcahook bisect` and `rcahook verify` end to end: a generated repository with a real module
and a real pytest test, one commit among thirty breaking it, and the real command run in
scratch worktrees."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clirun import rcahook

CALC = "def add(a, b):\n    return a + b\n"
CALC_BROKEN = "def add(a, b):\n    return a + b + (1 if a > 1 else 0)\n"
TEST_X = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TITLE = "add returns wrong results for large inputs"
CULPRIT_SUBJECT = "calc: round add results for large inputs"
WHEN = "2024-01-03T00:00:00Z"  # after the generated history (one commit an hour from 2024-01-01)
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider test_x.py"


def build(repo, *, n: int = 30, culprit_at: int = 18, broken_at: int | None = None,
          subject: str = CULPRIT_SUBJECT) -> dict:
    """A first commit with calc.py and its test, then n commits (commit i writes notes/n{i % 5}.md);
    number `culprit_at` breaks add() and number `broken_at` (if any) cannot be built (it adds a
    BROKEN file; the next removes it)."""
    shas = [repo.commit("calc: first version", {"calc.py": CALC, "test_x.py": TEST_X})]
    culprit = None
    for i in range(1, n + 1):
        files: dict[str, str | None] = {f"notes/n{i % 5}.md": f"note {i} on the release checklist\n" * i}
        message = f"docs: note {i} on the release checklist"
        if i == culprit_at:
            files = {"calc.py": CALC_BROKEN}
            message = subject
        if broken_at is not None and i == broken_at:
            files["BROKEN"] = "half-done migration\n"
        if broken_at is not None and i == broken_at + 1:
            files["BROKEN"] = None
        shas.append(repo.commit(message, files))
        if i == culprit_at:
            culprit = shas[-1]
    assert rcahook("index", "--repo", str(repo.path), "-q").code == 0
    return {"shas": shas, "culprit": culprit}


def worktrees(repo) -> list[str]:
    return [line for line in repo.git("worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def scratch_dirs(repo) -> list[Path]:
    root = repo.path / ".git" / "rcahook" / "bisect"
    return sorted(p for p in root.glob("wt-*") if p.suffix != ".lock") if root.is_dir() else []


def bisect(repo, *args: str, cmd: str = PYTEST):
    return rcahook("bisect", "--repo", str(repo.path), "--cmd", cmd, *args)


@pytest.fixture
def history(repo):
    return build(repo)


def test_bisect_names_the_culprit_in_two_runs_and_leaves_everything_as_it_was(repo, history):
    status_before = repo.git("status", "--porcelain")
    head_before = repo.git("rev-parse", "HEAD")
    index_before = (repo.path / ".git" / "index").read_bytes()
    r = bisect(repo, "--title", TITLE, "--window", "30", "--time", WHEN, "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["status"] == "found"
    assert doc["culprit"]["sha"] == history["culprit"]
    assert doc["culprit"]["rank"] == 1
    # a confident ranking: the suspect fails and its parent passes, nothing else is run
    assert doc["runs"]["used"] == 2
    assert {(e["sha"], e["verdict"]) for e in doc["evidence"]} == {
        (history["culprit"], "bad"), (history["shas"][17], "good")}
    assert doc["runs"]["plain_bisection"] == 5
    assert "assert 6 == 5" in next(e for e in doc["evidence"] if e["verdict"] == "bad")["output_tail"]
    # the user's working tree, HEAD and git index are untouched; no worktree is left
    assert (repo.path / ".git" / "index").read_bytes() == index_before
    assert repo.git("status", "--porcelain") == status_before
    assert repo.git("rev-parse", "HEAD") == head_before
    assert worktrees(repo) == [f"worktree {repo.path}"]
    assert scratch_dirs(repo) == []
    # the culprit is recorded as feedback on the saved investigation
    assert doc["feedback"]["recorded"] is True
    listed = rcahook("feedback", "--repo", str(repo.path), doc["investigation"])
    assert f"{history['culprit'][:12]} root cause" in listed.out
    # the replay file puts git's own bisect on the same commit (in a copy: replay checks out)
    copy = repo.path.parent / "copy"
    shutil.copytree(repo.path, copy)
    replay = subprocess.run(["git", "bisect", "replay", doc["replay"]], cwd=copy, capture_output=True, text=True)
    assert f"{history['culprit']} is the first bad commit" in replay.stdout


def test_plain_bisection_skips_an_unbuildable_commit_and_still_finds_the_culprit(repo):
    h = build(repo, culprit_at=22, broken_at=15)
    cmd = f"test -e BROKEN && exit 125; {PYTEST}"
    r = bisect(repo, "--good", h["shas"][0], "--bad", h["shas"][-1], "--format", "json", cmd=cmd)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["culprit"]["sha"] == h["culprit"]
    skipped = [e for e in doc["evidence"] if e["verdict"] == "skip"]
    assert skipped and skipped[0]["exit_code"] == 125 and skipped[0]["sha"] in (h["shas"][15],)
    assert "plain bisection" in r.err  # no incident: said so


def test_markdown_report_shows_untrusted_text_as_text(repo):
    h = build(repo, subject="calc: <img src=x onerror=alert(1)> see [docs](https://evil.example)")
    r = bisect(repo, "--good", h["shas"][0], "--bad", h["shas"][-1], "--format", "markdown")
    assert r.code == 0, r.err
    assert f"**Culprit:** `{h['culprit'][:12]}`" in r.out
    assert "<img" not in r.out and "&lt;img src=x onerror=alert\\(1\\)&gt;" in r.out
    assert "[docs](https://evil.example)" not in r.out


def test_a_command_failing_on_the_good_revision_too_is_a_clear_error(repo, history):
    after = history["shas"][20]  # after the culprit: the test fails there
    r = bisect(repo, "--title", TITLE, "--window", "30", "--time", WHEN, "--good", after, "--bad",
               history["shas"][-1], "--no-feedback")
    assert r.code == 24
    assert f"the good revision {after[:12]} is not good" in r.err
    assert worktrees(repo) == [f"worktree {repo.path}"]


def test_a_culprit_outside_the_window_says_how_to_widen_it(repo, history):
    r = bisect(repo, "--title", TITLE, "--window", "8", "--time", WHEN, "--no-feedback")
    assert r.code == 24
    assert "the culprit is outside the window" in r.err
    assert "--window 16" in r.err and "--good REV" in r.err


def test_a_command_that_cannot_run_is_said_to_be_so(repo, history):
    r = bisect(repo, "--title", TITLE, "--window", "30", "--time", WHEN, "--no-feedback",
               cmd="no-such-command-rcahook-test")
    assert r.code == 24
    assert "the command cannot be run" in r.err and "127" in r.err


def test_max_runs_stops_and_reports_what_is_left(repo, history):
    r = bisect(repo, "--good", history["shas"][0], "--bad", history["shas"][-1], "--max-runs", "1")
    assert r.code == 3
    assert "stopped after 1 runs (--max-runs)" in r.out
    assert "candidate:" in r.out


def _start(repo, cmd: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # Ctrl-C as a terminal sends it: a test run started in the background by a shell without
    # job control (CI scripts, nohup ... &) inherits SIGINT ignored, and so would rcahook
    return subprocess.Popen([sys.executable, "-m", "rcahook", "bisect", "--repo", str(repo.path), "--cmd", cmd,
                             "--good", repo.git("rev-list", "--max-parents=0", "HEAD"), "--bad", "HEAD", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_ctrl_c_mid_run_leaves_no_worktree_and_no_command_behind(repo, history, tmp_path):
    pid_file = tmp_path / "cmd.pid"
    proc = _start(repo, f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep 60")
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command to start")
    assert scratch_dirs(repo)  # the run is under way in its scratch worktree
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert worktrees(repo) == [f"worktree {repo.path}"]
    assert scratch_dirs(repo) == []
    with pytest.raises(ProcessLookupError):  # the command's process group was ended too
        os.kill(int(pid_file.read_text()), 0)


def test_a_worktree_left_by_a_killed_run_is_removed_by_the_next(repo, history, tmp_path):
    pid_file = tmp_path / "cmd.pid"
    proc = _start(repo, f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep 60")
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command to start")
    proc.kill()  # SIGKILL: no clean-up is possible
    proc.communicate(timeout=60)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    left = scratch_dirs(repo)
    assert len(left) == 1 and len(worktrees(repo)) == 2
    r = bisect(repo, "--good", history["shas"][0], "--bad", history["shas"][-1])
    assert r.code == 0, r.err
    assert f"removed a scratch worktree left by a run that was killed: {left[0]}" in r.err
    assert worktrees(repo) == [f"worktree {repo.path}"]
    assert scratch_dirs(repo) == []


def test_reuses_a_saved_investigation(repo, history):
    inv = rcahook("investigate", "--repo", str(repo.path), "--title", TITLE, "--window", "30", "--time", WHEN,
                  "--format", "json")
    inv_id = json.loads(inv.out)["id"]
    r = bisect(repo, "--investigation", inv_id, "--format", "markdown")
    assert r.code == 0, r.err
    assert f"**Culprit:** `{history['culprit'][:12]}`" in r.out
    assert "round add results for large inputs" in r.out


def test_verify_the_culprit_fixes_it_and_an_innocent_does_not(repo, history):
    fixed = rcahook("verify", history["culprit"], "--repo", str(repo.path), "--cmd", PYTEST, "--format", "json")
    assert fixed.code == 0, fixed.err
    doc = json.loads(fixed.out)
    assert doc["outcome"] == "fixed"
    assert doc["at_bad"]["verdict"] == "bad" and doc["reverted"]["verdict"] == "good"
    innocent = rcahook("verify", history["shas"][27], "--repo", str(repo.path), "--cmd", PYTEST)
    assert innocent.code == 1
    assert innocent.out.startswith("not fixed")
    assert worktrees(repo) == [f"worktree {repo.path}"]
    assert repo.git("status", "--porcelain") == ""


def test_verify_a_revert_that_conflicts_says_so_and_offers_bisect(repo):
    base = repo.commit("calc: first version", {"calc.py": CALC, "test_x.py": TEST_X})
    suspect = repo.commit(CULPRIT_SUBJECT, {"calc.py": CALC_BROKEN})
    repo.commit("calc: name the rounding", {"calc.py": CALC_BROKEN.replace("(1 if a > 1 else 0)", "_round(a)")
                                            + "\n\ndef _round(a):\n    return 1 if a > 1 else 0\n"})
    r = rcahook("verify", suspect, "--repo", str(repo.path), "--cmd", PYTEST)
    assert r.code == 3, r.err
    assert "does not apply" in r.out
    assert "conflict: calc.py" in r.out
    assert f"rcahook bisect --cmd {shlex.quote(PYTEST)} --good {suspect[:12]}^" in r.out
    assert worktrees(repo) == [f"worktree {repo.path}"]
    assert base  # the first commit is the good side of the offered bisect

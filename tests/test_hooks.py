from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import riskrepo as rr
from rcahook.cli import cli
from rcahook.commands.install_hook import BACKUP_SUFFIX, hook_source

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(repo, tmp_path):
    rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    assert install(repo).exit_code == 0
    return repo


def install(repo, *args: str):
    return CliRunner().invoke(cli, ["install-hook", "--repo", str(repo.path), *args])


def push(repo, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", *args], cwd=repo.path, capture_output=True, text=True,
                          env=rr.hook_env(**env))


def remote_head(repo, branch: str = "main") -> str:
    return repo.git("ls-remote", "origin", f"refs/heads/{branch}").split()[0] if repo.git(
        "ls-remote", "origin", f"refs/heads/{branch}") else ""


def test_shipped_hook_is_the_repository_hook():
    assert (ROOT / "hooks" / "pre-push").read_bytes() == hook_source()
    assert os.access(ROOT / "hooks" / "pre-push", os.X_OK)


def test_push_with_risky_commit_warns_and_goes_through(project):
    risky = rr.risky_commit(project)
    result = push(project, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert risky[:12] in result.stderr + result.stdout
    assert "earlier root causes" in result.stderr + result.stdout
    assert remote_head(project) == risky


def test_fail_above_rejects_the_push(project):
    before = remote_head(project)
    rr.risky_commit(project)
    project.write(".rcahook.toml", "fail-above = 0.0001\n")
    result = push(project, "origin", "main")
    assert result.returncode != 0
    assert "push blocked" in result.stderr
    assert remote_head(project) == before  # nothing reached the remote
    skipped = push(project, "origin", "main", SKIP="rcahook-risk")
    assert skipped.returncode == 0 and "skipped" in skipped.stderr


def test_broken_index_does_not_stop_the_push(project):
    risky = rr.risky_commit(project)
    project.write(".rcahook.toml", "fail-above = 0.0001\n")
    db = project.path / ".git" / "rcahook" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(os.urandom(4096))
    result = push(project, "origin", "main")
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("rcahook")]
    assert len(ours) == 1 and "rcahook index" in ours[0]
    assert remote_head(project) == risky


def test_new_branch_then_deleted_branch(project):
    project.write(".rcahook.toml", "fail-above = 0.9999\n")
    project.git("checkout", "-q", "-b", "feature")
    a = rr.benign_commit(project, 1)
    created = push(project, "origin", "feature")
    assert created.returncode == 0, created.stderr
    assert "new branch" in created.stderr and "1 commit(s)" in created.stderr and a[:12] in created.stderr
    deleted = push(project, "origin", "--delete", "feature")
    assert deleted.returncode == 0, deleted.stderr
    assert "rcahook" not in deleted.stderr
    assert remote_head(project, "feature") == ""


def test_force_push_scans_the_rewritten_commits(project):
    rr.benign_commit(project, 1)
    assert push(project, "origin", "main").returncode == 0
    project.git("reset", "-q", "--hard", "HEAD~1")
    new = rr.risky_commit(project)
    result = push(project, "--force", "origin", "main")
    assert result.returncode == 0, result.stderr
    assert "force push" in result.stderr and new[:12] in result.stderr and "1 commit(s)" in result.stderr


def test_hook_without_rcahook_passes(project):
    rr.risky_commit(project)
    result = push(project, "origin", "main", RCAHOOK="rcahook-not-installed-here")
    assert result.returncode == 0
    assert "not installed" in result.stderr


def test_install_hook_is_idempotent_and_careful(repo):
    rr.build_history(repo)
    hooks = repo.path / ".git" / "hooks"
    assert install(repo).exit_code == 0
    assert (hooks / "pre-push").read_bytes() == hook_source()
    again = install(repo)
    assert again.exit_code == 0 and "already installed" in again.output
    (hooks / "pre-push").write_text("#!/bin/sh\necho mine\n")
    refused = install(repo)
    assert refused.exit_code != 0 and "--force" in str(refused.exception)
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\necho mine\n"
    assert install(repo, "--force").exit_code == 0
    assert (hooks / "pre-push").read_bytes() == hook_source()
    assert (hooks / f"pre-push{BACKUP_SUFFIX}").read_text() == "#!/bin/sh\necho mine\n"


def test_install_hook_respects_core_hooks_path(repo):
    rr.build_history(repo)
    repo.git("config", "core.hooksPath", ".githooks")
    assert install(repo).exit_code == 0
    assert (repo.path / ".githooks" / "pre-push").read_bytes() == hook_source()
    assert not (repo.path / ".git" / "hooks" / "pre-push").exists()


def test_pre_commit_manifest():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "rcahook-risk"
    assert hook["entry"] == "rcahook scan --hook pre-commit-framework"
    assert hook["language"] == "python" and hook["stages"] == ["pre-push"]
    assert hook["pass_filenames"] is False and hook["always_run"] is True


def snapshot_of_this_checkout(dest: Path) -> Path:
    """This checkout as one commit, untracked files included: try-repo only sees tracked changes."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.mark.slow
def test_pre_commit_try_repo_runs_our_hook(project, tmp_path):
    """pre-commit builds its own virtualenv, pip-installs rcahook from this checkout, and runs the hook."""
    pre_commit = shutil.which("pre-commit", path=str(Path(rr.RCAHOOK).parent))
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (the test extra has it)")
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if not any(d.startswith("numpy") for d in declared):
        pytest.skip("pre-commit installs only the declared dependencies and rcahook imports numpy: "
                    "add numpy to [project] dependencies")
    base = project.git("rev-parse", "HEAD")
    risky = rr.risky_commit(project)
    env = rr.hook_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    result = subprocess.run(
        [pre_commit, "try-repo", str(snapshot_of_this_checkout(tmp_path / "rcahook-src")), "rcahook-risk",
         "--hook-stage", "pre-push", "--from-ref", base, "--to-ref", risky, "--verbose"],
        cwd=project.path, capture_output=True, text=True, env=env, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "rcahook risk scan of outgoing commits" in output
    assert risky[:12] in output and "earlier root causes" in output

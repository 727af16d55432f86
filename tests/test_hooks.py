"""Both hook modes through a real `git push` to a local bare remote: only a verdict blocks.

The plain hook is installed by `rcahook install-hook`; the pre-commit mode by
`pre-commit install --hook-type pre-push` with a `repo: local` config that runs this
repository's manifest entry (`rcahook-hook pre-commit-framework`) from the test's
virtualenv (the slow test at the end runs the README's snippet with pre-commit's own
virtualenv instead).
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import riskrepo as rr
from rcahook.cli import cli
from rcahook.commands.install_hook import CHAINED_SUFFIX, OLD_HOOK_HEADER, hook_source, hook_template
from rcahook.hook_entry import EXIT_VERDICT

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODES = ("plain", "pre-commit")
USER_HOOK = """#!/bin/sh
# the user's own pre-push hook: records that it ran and what git gave it
cat > "$(dirname "$0")/../user-hook-ran"
exit ${USER_HOOK_EXIT:-0}
"""


def install(repo, *args: str):
    return CliRunner().invoke(cli, ["install-hook", "--repo", str(repo.path), *args])


def manifest() -> dict:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return hook


def use_pre_commit(repo, args: tuple[str, ...] = ()) -> None:
    """The manifest's hook as a `repo: local` hook (language: system, entry from this virtualenv)."""
    hook = {**manifest(), "language": "system", "entry": f"{BIN}/{manifest()['entry']}", "args": list(args)}
    repo.write(".pre-commit-config.yaml", yaml.safe_dump({"repos": [{"repo": "local", "hooks": [hook]}]}))
    exclude = repo.path / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + ".pre-commit-config.yaml\n" if exclude.exists()
                       else ".pre-commit-config.yaml\n")
    subprocess.run([str(BIN / "pre-commit"), "install", "--hook-type", "pre-push"], cwd=repo.path, check=True,
                   capture_output=True, env=rr.hook_env())


@pytest.fixture
def project(repo, tmp_path):
    rr.published(repo, tmp_path)
    assert install(repo).exit_code == 0
    return repo


@pytest.fixture(params=MODES)
def hooked(request, repo, tmp_path):
    """A project with rcahook's hook installed in one of the two modes (mode on `repo.mode`)."""
    rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    repo.mode = request.param
    if repo.mode == "plain":
        assert install(repo).exit_code == 0
    else:
        use_pre_commit(repo)
    return repo


def push(repo, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", *args], cwd=repo.path, capture_output=True, text=True,
                          env=rr.hook_env(**env))


def remote_head(repo, branch: str = "main") -> str:
    out = repo.git("ls-remote", "origin", f"refs/heads/{branch}")
    return out.split()[0] if out else ""


def rcahook_lines(result: subprocess.CompletedProcess) -> list[str]:
    """rcahook's notes and warnings (the report's lines start with `rcahook risk:`)."""
    return [line.strip() for line in (result.stdout + result.stderr).splitlines()
            if line.strip().startswith("rcahook:")]


def assert_passed_with_one_warning(repo, result, pushed: str) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert remote_head(repo) == pushed
    (line,) = rcahook_lines(result)
    assert "without a verdict" in line or "not installed" in line, line
    return line


# --- only a verdict blocks, in both modes -----------------------------------------------------

def test_verdict_blocks_the_push(hooked):
    before = remote_head(hooked)
    risky = rr.risky_commit(hooked)
    hooked.write(".rcahook.toml", "fail-above = 0.0001\n")
    result = push(hooked, "origin", "main")
    assert result.returncode != 0
    assert "push blocked" in result.stdout + result.stderr and risky[:12] in result.stdout + result.stderr
    assert remote_head(hooked) == before  # nothing reached the remote
    skipped = push(hooked, "origin", "main", SKIP="rcahook-risk")
    assert skipped.returncode == 0 and remote_head(hooked) == risky


def test_broken_module_on_pythonpath_passes(hooked, tmp_path):
    risky = rr.risky_commit(hooked)
    hooked.write(".rcahook.toml", "fail-above = 0.0001\n")  # would block, if the scan could run
    broken = tmp_path / "broken"
    (broken / "click").mkdir(parents=True)
    (broken / "click" / "__init__.py").write_text("raise RuntimeError('planted broken click')\n")
    result = push(hooked, "origin", "main", PYTHONPATH=str(broken))
    line = assert_passed_with_one_warning(hooked, result, risky)
    assert "planted broken click" in line


def test_unreadable_index_passes(hooked):
    """Root reads any file whatever its mode, so as root the index is a directory instead."""
    risky = rr.risky_commit(hooked)
    hooked.write(".rcahook.toml", "fail-above = 0.0001\n")
    db = hooked.path / ".git" / "rcahook" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    if os.geteuid() == 0:
        db.unlink()
        db.mkdir()
    else:
        db.chmod(0)
    try:
        result = push(hooked, "origin", "main")
    finally:
        if db.is_file():
            db.chmod(0o644)
    assert_passed_with_one_warning(hooked, result, risky)


def test_bad_fail_above_in_config_passes(hooked):
    risky = rr.risky_commit(hooked)
    hooked.write(".rcahook.toml", "fail-above = 7\n")
    line = assert_passed_with_one_warning(hooked, push(hooked, "origin", "main"), risky)
    assert "fail-above" in line


@pytest.mark.parametrize("args", [("--fail-above", "7"), ("--fail-above", "high"), ("--no-such-option",)])
def test_bad_option_passes(repo, tmp_path, args):
    """pre-commit passes the config's `args` to the entry; none of these may block."""
    rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    use_pre_commit(repo, args)
    risky = rr.risky_commit(repo)
    line = assert_passed_with_one_warning(repo, push(repo, "origin", "main"), risky)
    assert args[0] in line or "fail-above" in line


def test_lock_held_elsewhere_passes(hooked):
    risky = rr.risky_commit(hooked)
    hooked.write(".rcahook.toml", "fail-above = 0.0001\n")
    lock = hooked.path / ".git" / "rcahook" / "index.sqlite.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a running `rcahook index` holds it
        result = push(hooked, "origin", "main", RCAHOOK_LOCK_WAIT="0.5")
    line = assert_passed_with_one_warning(hooked, result, risky)
    assert "another rcahook index" in line


def test_repository_code_is_never_imported(hooked, tmp_path):
    """A pushed repository's own rcahook/ or click/ directory must not run (it is untrusted)."""
    risky = rr.risky_commit(hooked)
    marker = tmp_path / "repository-code-ran"
    for package in ("rcahook", "click"):
        hooked.write(f"{package}/__init__.py", f"open({str(marker)!r}, 'w').write('{package}')\n")
    result = push(hooked, "origin", "main")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists()
    assert risky[:12] in result.stdout + result.stderr  # the scan ran, with the installed rcahook


# --- the plain hook ---------------------------------------------------------------------------

def test_the_hook_has_one_source():
    # the package data is the only copy; hooks/pre-push (the design card's layout) links to it
    hooks = ROOT / "hooks" / "pre-push"
    assert hooks.is_symlink() and hooks.resolve() == (ROOT / "rcahook" / "data" / "pre-push").resolve()
    assert os.access(ROOT / "rcahook" / "data" / "pre-push", os.X_OK)
    assert hook_template().count("INSTALL_PYTHON=''") == 1
    assert f"VERDICT={EXIT_VERDICT}" in hook_template()


def test_the_hook_runs_the_interpreter_that_installed_it(project):
    text = (project.path / ".git" / "hooks" / "pre-push").read_text()
    assert re.search(rf"^INSTALL_PYTHON={re.escape(sys.executable)}$", text, re.MULTILINE)


def test_push_with_risky_commit_warns_and_goes_through(project):
    risky = rr.risky_commit(project)
    result = push(project, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert risky[:12] in result.stderr
    assert "earlier root causes" in result.stderr
    assert remote_head(project) == risky


def test_broken_index_does_not_stop_the_push(project):
    risky = rr.risky_commit(project)
    project.write(".rcahook.toml", "fail-above = 0.0001\n")
    db = project.path / ".git" / "rcahook" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(os.urandom(4096))
    line = assert_passed_with_one_warning(project, push(project, "origin", "main"), risky)
    assert "rcahook index" in line


def test_interpreter_without_rcahook_passes(project, tmp_path):
    """An editable install whose checkout moved: the recorded interpreter cannot import rcahook."""
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    hook = project.path / ".git" / "hooks" / "pre-push"
    hook.write_text(re.sub(r"^INSTALL_PYTHON=.*$", f"INSTALL_PYTHON={bare}/bin/python", hook.read_text(),
                           count=1, flags=re.MULTILINE))
    risky = rr.risky_commit(project)
    project.write(".rcahook.toml", "fail-above = 0.0001\n")
    line = assert_passed_with_one_warning(project, push(project, "origin", "main"), risky)
    # which import fails first depends on how the interpreter finds packages (PYTHONPATH or not)
    assert "ModuleNotFoundError: No module named" in line


def test_interpreter_gone_falls_back_to_path(project, tmp_path):
    hook = project.path / ".git" / "hooks" / "pre-push"
    hook.write_text(re.sub(r"^INSTALL_PYTHON=.*$", f"INSTALL_PYTHON={tmp_path}/gone/python", hook.read_text(),
                           count=1, flags=re.MULTILINE))
    risky = rr.risky_commit(project)
    found = push(project, "origin", "main")  # rcahook is on PATH (the test's virtualenv)
    assert found.returncode == 0 and risky[:12] in found.stderr
    rr.benign_commit(project, 3)
    lonely = push(project, "origin", "main", PATH="/usr/bin:/bin")
    line = assert_passed_with_one_warning(project, lonely, project.git("rev-parse", "HEAD"))
    assert "not installed" in line


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


# --- install-hook chains the user's hook ------------------------------------------------------

def test_install_twice_keeps_and_runs_the_users_hook(repo, tmp_path):
    rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-push").write_text(USER_HOOK)
    (hooks / "pre-push").chmod(0o755)
    first = install(repo)
    assert first.exit_code == 0 and "kept your pre-push hook" in first.output
    again = install(repo)
    assert again.exit_code == 0 and "already installed" in again.output
    assert (hooks / "pre-push").read_bytes() == hook_source()
    assert (hooks / f"pre-push{CHAINED_SUFFIX}").read_text() == USER_HOOK  # never overwritten by ours
    risky = rr.risky_commit(repo)
    result = push(repo, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert f"refs/heads/main {risky} refs/heads/main" in (repo.path / ".git" / "user-hook-ran").read_text()
    assert risky[:12] in result.stderr  # and the scan ran after it
    # the user's hook still decides for itself: its failure blocks, as it did before rcahook
    rr.benign_commit(repo, 1)
    refused = push(repo, "origin", "main", USER_HOOK_EXIT="1")
    assert refused.returncode != 0 and remote_head(repo) == risky


def test_refreshing_an_outdated_hook_keeps_the_chain(repo):
    rr.build_history(repo)
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-push").write_text(USER_HOOK)
    assert install(repo).exit_code == 0
    (hooks / "pre-push").write_bytes(hook_source(python="/old/venv/bin/python"))  # installed from elsewhere
    assert install(repo).exit_code == 0
    assert (hooks / "pre-push").read_bytes() == hook_source()
    assert (hooks / f"pre-push{CHAINED_SUFFIX}").read_text() == USER_HOOK


def test_an_old_rcahook_hook_is_replaced_not_chained(repo):
    rr.build_history(repo)
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-push").write_text(f"#!/bin/sh\n{OLD_HOOK_HEADER}.\nrcahook scan --hook pre-push\n")
    assert install(repo).exit_code == 0
    assert (hooks / "pre-push").read_bytes() == hook_source()
    assert not (hooks / f"pre-push{CHAINED_SUFFIX}").exists()


def test_install_refuses_to_lose_a_hook(repo):
    rr.build_history(repo)
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\necho mine\n")
    (hooks / f"pre-push{CHAINED_SUFFIX}").write_text("#!/bin/sh\necho older\n")
    refused = install(repo)
    assert refused.exit_code != 0 and "merge them" in str(refused.exception)
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\necho mine\n"
    assert (hooks / f"pre-push{CHAINED_SUFFIX}").read_text() == "#!/bin/sh\necho older\n"


def test_uninstall_puts_the_users_hook_back(repo):
    rr.build_history(repo)
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-push").write_text(USER_HOOK)
    assert install(repo).exit_code == 0
    assert install(repo, "--uninstall").exit_code == 0
    assert (hooks / "pre-push").read_text() == USER_HOOK
    assert not (hooks / f"pre-push{CHAINED_SUFFIX}").exists()
    refused = install(repo, "--uninstall")  # the user's hook is not rcahook's to remove
    assert refused.exit_code != 0 and (hooks / "pre-push").read_text() == USER_HOOK


def test_install_hook_respects_core_hooks_path(repo):
    rr.build_history(repo)
    repo.git("config", "core.hooksPath", ".githooks")
    assert install(repo).exit_code == 0
    assert (repo.path / ".githooks" / "pre-push").read_bytes() == hook_source()
    assert not (repo.path / ".git" / "hooks" / "pre-push").exists()


# --- pre-commit -------------------------------------------------------------------------------

def test_pre_commit_manifest():
    import tomllib

    hook = manifest()
    assert hook["id"] == "rcahook-risk"
    assert hook["entry"] == "rcahook-hook pre-commit-framework"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rcahook-hook"] == "rcahook.hook_entry:main"
    assert hook["language"] == "python" and hook["stages"] == ["pre-push"]
    assert hook["pass_filenames"] is False and hook["always_run"] is True


def test_hook_entry_maps_only_the_verdict(tmp_path, capsys):
    """The entry point itself: a verdict is 1 for pre-commit, anything else 0 with one line."""
    from rcahook import hook_entry

    assert hook_entry.main(["pre-commit-framework", "--repo", str(tmp_path)]) == 0  # not a repository
    assert hook_entry.main(["pre-commit-framework", "--fail-above"]) == 0  # click: option needs a value
    assert hook_entry.main(["no-such-mode"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("rcahook: risk scan passed without a verdict") for line in lines)
    assert hook_entry.BLOCKED == {"pre-push": EXIT_VERDICT, "pre-commit-framework": 1}


def snapshot_of_this_checkout(dest: Path) -> tuple[Path, str]:
    """This checkout as one commit, untracked files included; (path, sha)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, check=True, capture_output=True,
                         text=True).stdout.strip()
    return dest, sha


def readme_pre_commit_snippet() -> str:
    section = (ROOT / "README.md").read_text().split("### Pre-push hook", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_snippet_names_no_missing_tag():
    snippet = yaml.safe_load(readme_pre_commit_snippet())
    (entry,) = snippet["repos"]
    tags = subprocess.run(["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert entry["rev"] in tags or re.fullmatch(r"<.*sha.*>", entry["rev"]), entry["rev"]
    assert [h["id"] for h in entry["hooks"]] == [manifest()["id"]]


@pytest.mark.slow
def test_readme_snippet_runs_in_a_fresh_repository(repo, tmp_path):
    """The README's snippet with `repo:` a clone's path and `rev:` its sha, as the README says:
    pre-commit clones it, pip-installs rcahook into its own virtualenv and runs the hook on a push."""
    pre_commit = shutil.which("pre-commit", path=str(BIN))
    assert pre_commit is not None, f"pre-commit is not in {BIN}: the test extra declares it (make setup)"
    rr.build_history(repo)
    rr.add_remote(repo, tmp_path)
    rr.index(repo)
    src, sha = snapshot_of_this_checkout(tmp_path / "rcahook-src")
    config = yaml.safe_load(readme_pre_commit_snippet())
    config["repos"][0].update(repo=str(src), rev=sha)
    repo.write(".pre-commit-config.yaml", yaml.safe_dump(config))
    repo.git("add", ".pre-commit-config.yaml")
    repo.git("commit", "-q", "-m", "pre-commit config")
    env = rr.hook_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    subprocess.run([pre_commit, "install", "--hook-type", "pre-push"], cwd=repo.path, check=True, env=env)
    risky = rr.risky_commit(repo)
    result = subprocess.run(["git", "push", "origin", "main"], cwd=repo.path, capture_output=True, text=True,
                            env=env, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "rcahook risk scan of outgoing commits" in output
    assert risky[:12] in output and "earlier root causes" in output
    repo.write(".rcahook.toml", "fail-above = 0.0001\n")
    rr.benign_commit(repo, 1)
    blocked = subprocess.run(["git", "push", "origin", "main"], cwd=repo.path, capture_output=True, text=True,
                             env=env, timeout=600)
    assert blocked.returncode != 0 and "push blocked" in blocked.stdout + blocked.stderr

"""`rcahook install-hook`: install the plain git pre-push hook (rcahook/data/pre-push).

Respects `core.hooksPath`. A pre-push hook that is not rcahook's is chained, not replaced:
it is moved to pre-push.before-rcahook and rcahook's hook runs it first (its failure still
blocks the push). Installing again only refreshes rcahook's hook (the interpreter it runs),
so the user's hook is never lost; `--uninstall` puts it back.
"""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from importlib import resources
from pathlib import Path

from rcahook.commands.common import open_repo
from rcahook.errors import BadInputError, NotARepositoryError

CHAINED_SUFFIX = ".before-rcahook"  # not pre-commit's `.legacy`: the two chains must not meet
HOOK_ID = "rcahook-hook-id: 7d1c52e4"  # in every hook rcahook writes (kept across versions)
# rcahook's hook before it carried HOOK_ID: replaced, not chained (it would scan twice)
OLD_HOOK_HEADER = "# rcahook pre-push hook: warns about risky outgoing commits"
PYTHON_LINE = "INSTALL_PYTHON=''"


def hook_template() -> str:
    """The hook as shipped: the one source of the plain hook (the package data travels in wheels)."""
    return (resources.files("rcahook") / "data" / "pre-push").read_text()


def hook_source(python: str | None = None) -> bytes:
    """The hook as installed: the template with the interpreter that runs rcahook filled in."""
    template = hook_template()
    assert template.count(PYTHON_LINE) == 1, "the hook template must have one INSTALL_PYTHON line"
    return template.replace(PYTHON_LINE, f"INSTALL_PYTHON={shlex.quote(python or sys.executable)}").encode()


def is_rcahook_hook(path: Path) -> bool:
    try:
        text = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return False
    return HOOK_ID in text or text.startswith(f"#!/bin/sh\n{OLD_HOOK_HEADER}")


def hooks_dir(repo_path: str) -> Path:
    """Where git looks for hooks: core.hooksPath (relative to the work tree) or <git dir>/hooks."""
    r = open_repo(repo_path)
    # `git rev-parse --git-path hooks` applies core.hooksPath exactly as git does
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    cwd = r.workdir or r.git_dir
    try:
        out = subprocess.run(["git", "rev-parse", "--git-path", "hooks"], cwd=cwd, env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise NotARepositoryError(f"git cannot say where {cwd}'s hooks live ({e}); is git installed?") from e
    path = Path(out)
    return path if path.is_absolute() else (cwd / path)


def run(*, repo: str, uninstall: bool = False) -> int:
    directory = hooks_dir(repo)
    target = directory / "pre-push"
    chained = directory / f"pre-push{CHAINED_SUFFIX}"
    if uninstall:
        return _uninstall(target, chained)
    source = hook_source()
    present = os.path.lexists(target)
    if present and is_rcahook_hook(target):
        if target.read_bytes() == source:
            _make_executable(target)
            print(f"rcahook pre-push hook already installed at {target}")
            return 0
        # an older rcahook hook, or one that runs another interpreter: refresh it, chain untouched
    elif present:
        if os.path.lexists(chained):
            raise BadInputError(
                f"{target} is not rcahook's hook and {chained.name} (the hook rcahook chains) exists too; "
                f"merge them into one of the two and remove the other, then run this again")
        target.replace(chained)
        print(f"kept your pre-push hook as {chained}; rcahook's hook runs it first")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".pre-push.rcahook.{os.getpid()}")
    tmp.write_bytes(source)
    _make_executable(tmp)
    tmp.replace(target)
    print(f"installed the rcahook pre-push hook at {target} (runs {sys.executable}); "
          "run `rcahook index` once so pushes are scanned")
    return 0


def _uninstall(target: Path, chained: Path) -> int:
    if os.path.lexists(target) and not is_rcahook_hook(target):
        raise BadInputError(f"{target} is not rcahook's hook; left as it is")
    if os.path.lexists(target):
        target.unlink()
        print(f"removed rcahook's pre-push hook from {target}")
    else:
        print(f"no rcahook pre-push hook at {target}")
    if os.path.lexists(chained):
        chained.replace(target)
        print(f"restored your pre-push hook from {chained}")
    return 0


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

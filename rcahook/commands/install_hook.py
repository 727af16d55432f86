"""`rcahook install-hook`: install the plain git pre-push hook (hooks/pre-push).

Respects `core.hooksPath`. Never clobbers a different hook without --force, and then keeps
it as pre-push.rcahook-backup. Installing twice changes nothing.
"""
from __future__ import annotations

import os
import stat
import subprocess
from importlib import resources
from pathlib import Path

from rcahook.commands.common import open_repo
from rcahook.errors import BadInputError, NotARepositoryError

BACKUP_SUFFIX = ".rcahook-backup"


def hook_source() -> bytes:
    """The hook as shipped (rcahook/data/pre-push, a copy of the repository's hooks/pre-push)."""
    return (resources.files("rcahook") / "data" / "pre-push").read_bytes()


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


def run(*, repo: str, force: bool) -> int:
    directory = hooks_dir(repo)
    target = directory / "pre-push"
    source = hook_source()
    if target.exists() or target.is_symlink():
        if target.is_file() and target.read_bytes() == source:
            _make_executable(target)
            print(f"rcahook pre-push hook already installed at {target}")
            return 0
        if not force:
            raise BadInputError(f"{target} already exists and is not rcahook's hook; pass --force to replace "
                                f"it (it is kept as pre-push{BACKUP_SUFFIX}), or call `rcahook scan --hook "
                                "pre-push` from it yourself (see docs/scan.md)")
        backup = target.with_name(f"pre-push{BACKUP_SUFFIX}")
        target.replace(backup)
        print(f"kept the previous hook as {backup}")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source)
    _make_executable(target)
    print(f"installed the rcahook pre-push hook at {target}; run `rcahook index` once so pushes are scanned")
    return 0


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

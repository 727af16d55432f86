"""The scratch worktree the user's command runs in: never the user's own working tree.

It is a linked worktree (`git worktree add --detach`) under the index directory, in git's
common directory (<common dir>/rcahook/bisect/), so the user's checkout, index and
branches are never touched and `git worktree list` shows it while it lives. It is removed
when the run ends, however it ends: normally, on an error, on Ctrl-C or SIGTERM (the
command turns SIGTERM into an exception), with those signals held off while it is removed.

A run killed outright (SIGKILL, a power cut) cannot clean up. Each worktree has a lock
file that its run holds (flock) while it lives, and the kernel lets go when the process
dies: the next run removes every worktree whose lock is free.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rcahook.errors import PermissionDeniedError
from rcahook.index import gitrepo, store

SCRATCH_DIR = "bisect"
PREFIX = "wt-"
FRESH_LOCK_SECONDS = 60  # a lock this young may belong to a run that is making its worktree now


def scratch_root(common_dir: Path) -> Path:
    """Where scratch worktrees (and replay files) live: beside the default index."""
    return store.default_db_path(common_dir).parent / SCRATCH_DIR


@dataclass(frozen=True)
class Scratch:
    path: Path
    common_dir: Path

    def checkout(self, rev: str) -> None:
        gitrepo.checkout_clean(self.path, rev)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while a worktree is removed (a second Ctrl-C would leave it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _remove(common_dir: Path, path: Path) -> None:
    gitrepo.worktree_remove(common_dir, path)
    shutil.rmtree(path, ignore_errors=True)  # what git left (it keeps ignored build output)


def prune_stale(common_dir: Path, root: Path) -> list[Path]:
    """Remove the scratch worktrees of runs that are gone; returns their paths."""
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(PREFIX) or entry.suffix == ".lock":
            continue
        lock_path = entry.with_name(entry.name + ".lock")
        try:
            lock = open(lock_path, "a")  # noqa: SIM115 - closed in the finally below, after the unlink
        except OSError:
            continue
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its run is alive
            _remove(common_dir, entry)
            removed.append(entry)
            lock_path.unlink(missing_ok=True)
        finally:
            lock.close()
    for lock_path in root.glob(f"{PREFIX}*.lock"):  # a lock whose worktree never got made
        try:
            young = time.time() - lock_path.stat().st_mtime < FRESH_LOCK_SECONDS
        except OSError:
            continue
        if not young and not lock_path.with_suffix("").exists():
            try:
                with open(lock_path, "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    lock_path.unlink(missing_ok=True)
            except OSError:
                pass
    return removed


@contextmanager
def scratch_worktree(common_dir: Path, rev: str, *, say: Callable[[str], None] = lambda m: None
                     ) -> Iterator[Scratch]:
    """A fresh linked worktree at `rev` for the duration of the block, then gone."""
    root = scratch_root(common_dir)
    problem = store.write_problem(root / "probe")
    if problem:
        raise PermissionDeniedError(f"cannot make a scratch worktree under {root}: {problem}; rcahook bisect and "
                                    "verify need a repository they can write (run them in a writable clone)")
    root.mkdir(parents=True, exist_ok=True)
    for path in prune_stale(common_dir, root):
        say(f"removed a scratch worktree left by a run that was killed: {path}")
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    path = root / name
    lock_path = root / f"{name}.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 - held across the yield, closed after the clean-up
    fcntl.flock(lock, fcntl.LOCK_EX)  # held while this run lives; see prune_stale
    try:
        gitrepo.worktree_add(common_dir, path, rev)
        yield Scratch(path, common_dir)
    finally:
        with _signals_held():
            _remove(common_dir, path)
            lock_path.unlink(missing_ok=True)
            lock.close()

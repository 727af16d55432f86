"""Running the user's command at one revision, and reading its exit code as `git bisect run` does.

0 is good, 125 is "cannot test this revision" (skip), 1-127 is bad. A run past the timeout
is killed (its whole process group) and counts as a skip. Like `git bisect run`, a code
above 127 (the shell's report of a command killed by a signal) stops the bisection: it
usually means the test harness itself broke, not that this revision is bad.
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rcahook.bisect.plan import BAD, GOOD, SKIP
from rcahook.errors import BisectError

SKIP_CODE = 125
NOT_RUNNABLE = (126, 127)  # the shell's "cannot execute" and "not found"
TAIL_LINES = 15  # of the command's output, kept with each verdict
TAIL_BYTES = 16_384
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a command past its timeout

# Variables that tell git which repository to use (`git rev-parse --local-env-vars`): set when
# rcahook runs inside a hook, they would send the command's own git calls to the user's tree.
_REPOSITORY_ENV = ("GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
                   "GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE",
                   "GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_PREFIX",
                   "GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE", "GIT_COMMON_DIR")


@dataclass(frozen=True)
class RunResult:
    verdict: str  # good | bad | skip
    exit_code: int | None  # None: killed at the timeout
    seconds: float
    tail: str  # the last lines the command printed (stdout and stderr together)

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def verdict_for(code: int, *, cmd: str) -> str:
    if code == 0:
        return GOOD
    if code == SKIP_CODE:
        return SKIP
    if 1 <= code <= 127:
        return BAD
    shown = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    raise BisectError(f"the command stopped with {shown} (above 127: a crash or a signal, not a verdict); "
                      "git bisect run stops there too. To count it as bad, end the command with "
                      "`; s=$?; [ $s -gt 127 ] && exit 1; exit $s`")


def command_env(*, rev: str, source: Path | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment without git's repository pointers, plus what the command may use:
    RCAHOOK_REV (the revision under test) and RCAHOOK_SOURCE (the user's own working tree, where
    a reproduction script that is not committed lives)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _REPOSITORY_ENV}
    env["RCAHOOK_REV"] = rev
    if source is not None:
        env["RCAHOOK_SOURCE"] = str(source)
    return env


def run_command(cmd: str, *, cwd: Path, env: Mapping[str, str], timeout: float | None) -> RunResult:
    """Run `cmd` with the shell in `cwd`; its process group is killed on a timeout or on Ctrl-C."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        # its own session: a Ctrl-C reaches rcahook, which then ends the command's whole group
        proc = subprocess.Popen(cmd, shell=True, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = None
        except BaseException:
            _kill_group(proc)
            raise
        seconds = time.perf_counter() - started
        tail = _tail(out)
    if code is None:
        return RunResult(SKIP, None, seconds, tail)
    return RunResult(verdict_for(code, cmd=cmd), code, seconds, tail)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(out: IO[bytes]) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - TAIL_BYTES))
    text = out.read().decode("utf-8", "replace")
    return "\n".join(text.rstrip("\n").splitlines()[-TAIL_LINES:])

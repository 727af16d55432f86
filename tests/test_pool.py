"""The one worker pool (rcahook/pool.py): workers forked before any thread, errors that cross back."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading

import pytest

from rcahook.errors import NotFoundError, RepositoryReadError
from rcahook.pool import WorkerPool

# Run in a process of its own, with a terminal on stderr (so rich draws its bar and starts its
# refresh thread): every fork of that process is recorded with the threads alive at that moment.
INDEX_SCRIPT = """
import json, os, sys, threading
forks, started = [], []
os.register_at_fork(before=lambda: forks.append(sorted(t.name for t in threading.enumerate())))
start = threading.Thread.start
def recording_start(self, *args, **kwargs):
    started.append(type(self).__name__)
    return start(self, *args, **kwargs)
threading.Thread.start = recording_start
from rcahook.cli import main
code = main(["index", "--repo", sys.argv[1], "--jobs", "2"])
print(json.dumps({"code": code, "forks": forks, "started": started}))
"""


def _history_for_every_pool(repo) -> None:
    """Enough for all three pools of `rcahook index` at their real thresholds: 420 commits
    (diffs), 70 Python files at HEAD (the graph's parses) and 490 changes (touched definitions)."""
    files = {f"pkg/m{i:02d}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(70)}
    stream = []
    for n in range(420):
        if n == 0:
            changed = files
        else:
            path = f"pkg/m{n % 70:02d}.py"
            files[path] += f"\n\ndef g{n}(y):\n    return f{n % 70}(y) * {n}\n"
            changed = {path: files[path]}
        msg = f"change {n}\n"
        body = "".join(f"M 100644 inline {p}\ndata {len(c.encode())}\n{c}\n" for p, c in changed.items())
        stream.append(f"commit refs/heads/main\ncommitter A <a@example.com> {1_700_000_000 + n} +0000\n"
                      f"data {len(msg)}\n{msg}{body}\n")
    repo.git("fast-import", "--quiet", input="".join(stream).encode())
    repo.git("reset", "-q", "--hard", "main")


def test_index_forks_its_workers_before_the_progress_thread_starts(repo, tmp_path):
    _history_for_every_pool(repo)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RCAHOOK_QUIET", "PRE_COMMIT")}
    main_fd, term_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", INDEX_SCRIPT, str(repo.path)], stdout=subprocess.PIPE,
                            stderr=term_fd, env=env, cwd=tmp_path)
    os.close(term_fd)
    drawn = b""
    while True:  # drain the terminal, or rich blocks on a full one
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the last writer is gone
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main_fd)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, drawn.decode(errors="replace")[-2000:]
    report = json.loads(out.decode().splitlines()[-1])
    assert report["code"] == 0
    assert "_RefreshThread" in report["started"]  # the bar was drawn, by its own thread
    # two pools of two workers each: diffs; touched definitions and the graph's parses
    assert len(report["forks"]) >= 4, report
    assert all(threads == ["MainThread"] for threads in report["forks"]), report["forks"]


_forks_here: list[int] = []
os.register_at_fork(before=lambda: _forks_here.append(threading.active_count()))


def square(x: int) -> int:
    return x * x


def test_with_a_thread_running_the_pool_never_forks_this_process():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        _forks_here.clear()
        with WorkerPool(2, what="squaring") as pool:
            assert pool.method in ("forkserver", "spawn") and pool.threads == 2
            assert list(pool.map(square, range(20))) == [x * x for x in range(20)]
            assert sorted(pool.map(square, range(20), ordered=False)) == [x * x for x in range(20)]
        assert _forks_here == []  # the workers came from the forkserver, a single-threaded process
        with WorkerPool(2, what="squaring", inherit=True) as pool:  # needs fork: runs here instead
            assert pool.method == "serial" and list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]
    finally:
        stop.set()
        thread.join()


def test_alone_the_pool_forks_every_worker_at_creation():
    if threading.active_count() != 1:
        pytest.fail(f"this test process runs other threads: {threading.enumerate()}")
    _forks_here.clear()
    with WorkerPool(3, what="squaring") as pool:
        assert pool.method == "fork" and _forks_here == [1, 1, 1]  # all three, before the pool's own thread
        assert list(pool.map(square, range(50))) == [x * x for x in range(50)]
    assert _forks_here == [1, 1, 1]


def fail_unpicklably(task: int) -> int:
    class LibraryError(Exception):  # a local class: as unpicklable as pygit2's errors were
        pass

    raise LibraryError(f"bad {task}")


def fail_plainly(task: int) -> int:
    raise NotFoundError(f"no commit {task}")


def test_worker_errors_cross_back_as_rcahook_errors():
    with WorkerPool(2, what="indexing /some/repo") as pool:
        with pytest.raises(RepositoryReadError) as caught:
            list(pool.map(fail_unpicklably, [7]))
    assert str(caught.value).startswith("indexing /some/repo failed in a worker process: LibraryError: bad 7")
    assert "--jobs 1" in str(caught.value)
    with WorkerPool(2, what="indexing") as pool:  # rcahook's own errors arrive as they were raised
        with pytest.raises(NotFoundError, match="no commit 3"):
            list(pool.map(fail_plainly, [3]))

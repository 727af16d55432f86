"""The one worker pool: workers started before any thread runs, errors that cross back.

fork() copies the calling thread only: a lock another thread held at that moment (rich's
progress refresh thread holds its console's lock while it draws; logging's; the allocator's)
stays locked forever in the child, which can then hang. So the pool starts every worker
when it is created, and callers create it before they start a progress bar. When another
thread already runs (the pre-push scan's deadline timer, the server's threads), the workers
start from the forkserver instead, a clean single-threaded process (the initializer and its
arguments are then pickled); work that needs this process's memory (`inherit=True`) then
runs here, serially, with the same results.

Workers send back rcahook's own errors only: a library's exception class may not survive
pickling on its way back, and the pool would die with an unreadable error.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

from rcahook.errors import RcahookError, RepositoryReadError

T = TypeVar("T")
R = TypeVar("R")

_IN_FLIGHT = 4  # tasks submitted per worker ahead of the results used: workers stay busy, memory stays bounded


def default_jobs() -> int:
    return min(os.cpu_count() or 1, 8)


def start_method(jobs: int, *, inherit: bool, threads: int | None = None) -> str:
    """"serial", "fork", "forkserver" or "spawn": fork only while this is the only thread."""
    if jobs <= 1:
        return "serial"
    threads = threading.active_count() if threads is None else threads
    methods = multiprocessing.get_all_start_methods()
    if threads == 1 and "fork" in methods:
        return "fork"
    if inherit:
        return "serial"  # the work needs this process's memory: only fork would carry it
    return "forkserver" if "forkserver" in methods else "spawn"


class WorkerPool:
    """`jobs` worker processes, all started here. `what` names the work in the error a worker
    sends back ("indexing /repo failed in a worker process: ..."), as `error`'s class.
    `inherit`: the workers use module state set before the pool was created (fork only)."""

    def __init__(self, jobs: int, *, what: str, error: type[RcahookError] = RepositoryReadError,
                 initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
                 inherit: bool = False):
        self.jobs = jobs
        self.what = what
        self.error = error
        self.threads = threading.active_count()  # at creation: what the start method was chosen by
        self.method = start_method(jobs, inherit=inherit, threads=self.threads)
        self._executor: ProcessPoolExecutor | None = None
        if self.method != "serial":
            self._executor = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(self.method),
                                                 initializer=initializer, initargs=initargs)
            # the first submit starts every worker (with fork: all of them, before the pool's own
            # manager thread), so none is forked later, under a thread started meanwhile
            self._executor.submit(_ready).result()

    @property
    def parallel(self) -> bool:
        """Whether the work runs in worker processes (the method chosen, closed or not)."""
        return self.method != "serial"

    def map(self, fn: Callable[[T], R], tasks: Iterable[T], *, ordered: bool = True) -> Iterator[R]:
        """fn(task) for each task: in order, or as they complete; serially when the pool is serial.
        Tasks are drawn from `tasks` as workers need them."""
        if self._executor is None:
            yield from map(fn, tasks)
            return
        executor = self._executor
        call = functools.partial(_plain_errors, fn, self.what, self.error)
        window = self.jobs * _IN_FLIGHT
        if ordered:
            queue: deque[Future[R]] = deque()
            for task in tasks:
                queue.append(executor.submit(call, task))
                if len(queue) >= window:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
            return
        pending: set[Future[R]] = set()
        for task in tasks:
            pending.add(executor.submit(call, task))
            if len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    def close(self) -> None:
        if self._executor is not None:
            # tasks not started yet are dropped (an error or Ctrl-C in the caller ends the work)
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ready() -> None:
    """The task that starts the workers."""


def _plain_errors(fn: Callable[[Any], R], what: str, error: type[RcahookError], task: Any) -> R:
    """fn(task), with any error turned into one that survives pickling back to the parent."""
    try:
        return fn(task)
    except RcahookError:
        raise
    except Exception as e:  # noqa: BLE001 (any error: what matters is that it crosses back)
        raise error(f"{what} failed in a worker process: {type(e).__name__}: {e} "
                    "(run with --jobs 1 for the full error; please report it)") from None

"""`rcahook scan`: the risk of each outgoing commit, run by hand, in CI or as a pre-push hook.

Never in the way: risky commits are warnings (exit 0) unless --fail-above (or `fail-above`
in the config) is passed by one of them: that verdict, and nothing else, exits 3
(EXIT_VERDICT). Anything else that goes wrong (no index, a corrupt or locked index, a bad
option, a bug, the time budget) prints one line and passes, unless --strict. With
`--format json|sarif` every outcome prints a document; a failure carries its error.
`SKIP=rcahook-risk` (pre-commit's list) and `RCAHOOK_SKIP=1` skip the scan.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from rcahook.commands.common import index_path, open_repo, print_json, say
from rcahook.errors import BadInputError, RcahookError, log_crash
from rcahook.hook_entry import EXIT_VERDICT
from rcahook.index import store
from rcahook.risk.pushrange import resolve_range, update_index

HOOK_ID = "rcahook-risk"  # the id in .pre-commit-hooks.yaml, and what SKIP names
HOOK_BUDGET = 20.0  # seconds, in hooks unless --max-seconds says otherwise
HARD_STOP_GRACE = 2.0  # past the budget, a scan stuck where the alarm cannot reach (a busy SQLite) is ended
EXIT_OVERRUN = 124  # --strict only: like timeout(1)


class _Overrun(Exception):
    pass


def skip_reason(env: Mapping[str, str] | None = None) -> str | None:
    values = os.environ if env is None else env
    if HOOK_ID in {s.strip() for s in values.get("SKIP", "").split(",")}:
        return f"SKIP={values['SKIP']}"
    if values.get("RCAHOOK_SKIP", "").strip() not in ("", "0", "false", "no"):
        return "RCAHOOK_SKIP"
    return None


@contextmanager
def deadline(seconds: float | None, *, hard_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Raise _Overrun in the main thread after `seconds`; unwinding closes transactions and pools.

    A signal handler only runs between Python bytecodes, so a scan waiting inside SQLite (a
    database another process keeps locked: 30 s of busy timeout) would outlive its budget;
    `hard_stop` is called from a thread HARD_STOP_GRACE seconds later for that case.
    """
    if not seconds or seconds <= 0 or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Overrun()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    timer = None
    if hard_stop is not None:
        timer = threading.Timer(seconds + HARD_STOP_GRACE, hard_stop)
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if timer is not None:
            timer.cancel()


class _Output:
    """What the scan prints on stdout: a document in json/sarif even when it fails (never an
    empty file for CI to upload), nothing in text; and each note on stderr once."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.printed = False
        self._said: set[str] = set()

    def say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            say(message)

    def document(self, doc_json: Callable[[], dict], doc_sarif: Callable[[], dict]) -> None:
        if self.printed or self.fmt == "text":
            return
        self.printed = True
        print_json(doc_json() if self.fmt == "json" else doc_sarif())

    def nothing_assessed(self, message: str, *, kind: str, failed: bool = True, skipped: str | None = None,
                         range_description: str | None = None) -> None:
        from rcahook.risk import sarif
        from rcahook.risk import scan as scan_output

        self.document(
            lambda: scan_output.empty_json(error=(kind, message) if failed else None, skipped=skipped,
                                           range_description=range_description),
            lambda: sarif.without_results(message, kind=kind, failed=failed))


def run(*, range_: str | None, from_: str | None, to: str | None, fmt: str, fail_above: float | None,
        max_seconds: float | None, strict: bool, hook: str | None, remote: str | None, repo: str,
        db: str | None) -> int:
    out = _Output(fmt)
    why = skip_reason()
    if why:
        say(f"risk scan skipped ({why})")
        out.nothing_assessed(f"risk scan skipped ({why})", kind="skipped", failed=False, skipped=why)
        return 0
    budget = max_seconds if max_seconds is not None else (HOOK_BUDGET if hook else None)
    overrun = f"it ran out of its {budget:g}s budget (--max-seconds)" if budget else ""

    def hard_stop() -> None:
        # from a thread, while the main thread is stuck: say it, print the document, leave now
        # (SQLite's journal makes an abandoned transaction safe; nothing else is half-written)
        # sys.__stderr__: the hook entry may be holding sys.stderr in a buffer that dies with us
        print(f"rcahook: risk scan passed without a verdict: {overrun}", file=sys.__stderr__, flush=True)
        try:
            out.nothing_assessed(overrun, kind="timeout")
            sys.stdout.flush()
        finally:
            os._exit(EXIT_OVERRUN if strict else 0)

    try:
        with deadline(budget, hard_stop=hard_stop):
            if fail_above is not None and not 0 <= fail_above <= 1:
                raise BadInputError(f"--fail-above {fail_above}: expected a probability between 0 and 1")
            return scan(range_=range_, from_=from_, to=to, fail_above=fail_above, hook=hook,
                        remote=remote, repo=repo, db=db, out=out)
    except _Overrun:
        say(f"risk scan passed without a verdict: {overrun}")
        out.nothing_assessed(overrun, kind="timeout")
        return EXIT_OVERRUN if strict else 0
    except RcahookError as e:
        out.nothing_assessed(str(e), kind=type(e).__name__)
        if strict:
            raise
        say(f"risk scan passed without a verdict: {e}")
        return 0
    except Exception as e:  # a bug must not stop a push
        out.nothing_assessed(f"internal error {type(e).__name__}: {e}", kind="internal-error")
        if strict:
            raise
        say(f"risk scan passed without a verdict: internal error {type(e).__name__}: {e} "
            f"(details in {log_crash()}; please report it)")
        return 0


# --- the scan -----------------------------------------------------------------------------------

def scan(*, range_: str | None, from_: str | None, to: str | None, fail_above: float | None,
         hook: str | None, remote: str | None, repo: str, db: str | None, out: _Output) -> int:
    started = time.perf_counter()
    r = open_repo(repo)
    path = index_path(r, db)
    rng = resolve_range(r, range_=range_, from_=from_, to=to, hook=hook, remote=remote)
    if rng.to is None:  # a deleted branch
        out.nothing_assessed("nothing to scan: a deleted branch", kind="deleted-branch", failed=False,
                             range_description=rng.description)
        return 0
    # A push never waits for a first index (minutes on a large history): that is `rcahook index`.
    store.open_index(path, create=False).close()
    if fail_above is None:
        from rcahook.config import load_config

        fail_above = load_config(r.workdir, read_head=lambda name: r.read_path("HEAD", name)).fail_above
    note = out.say_once
    problem = store.write_problem(path)
    if problem:  # a read-only repository (#10): the index as it is, and one note for all that is not saved
        from rcahook.risk.state import NOT_SAVED

        out.say_once(f"note: {problem}: scanned with the index as it is, without updating it; "
                     "nothing is saved")
        note = lambda message: None if message == NOT_SAVED else out.say_once(message)  # noqa: E731
    else:
        update_index(r, path, to_sha=rng.to)
    from rcahook.index.reader import History
    from rcahook.risk.model import load_risk_model
    from rcahook.risk.scan import assess, caller_counts

    history = History.open(path, repo=r)  # touched definitions of an old pushed commit are computed
    try:
        model, source = load_risk_model(path.parent)
        risks = assess(history, rng.shas, model=model,
                       callers=caller_counts(history.conn),
                       index_dir=path.parent, say=note)
    finally:
        history.close()
    blocked = [c for c in risks if fail_above is not None and c.probability > fail_above]
    seconds = time.perf_counter() - started
    from rcahook.risk import scan as scan_output

    if out.fmt == "text":
        sys.stdout.write(scan_output.render_text(risks, rng=rng, model=model, source=source,
                                                 fail_above=fail_above))
    else:
        from rcahook.risk.sarif import to_sarif

        out.document(lambda: scan_output.to_json(risks, rng=rng, model=model, source=source,
                                                 fail_above=fail_above, blocked=blocked, seconds=seconds),
                     lambda: to_sarif(risks, model=model, source=source))
    if blocked:
        worst = max(blocked, key=lambda c: c.probability)
        say(f"push blocked: {len(blocked)} commit(s) above fail-above {fail_above:g} "
            f"(worst {worst.sha[:12]} at {worst.probability:.2f}); bypass once with SKIP={HOOK_ID} "
            "or git push --no-verify")
        return EXIT_VERDICT
    return 0

"""The hooks' entry point: `rcahook-hook pre-push|pre-commit-framework [scan options]`.

Only a verdict may stop a push (see #10). This module is standard library only and imports
rcahook's command line inside its guard, so what goes wrong before rcahook's own error
handling (a broken module earlier on PYTHONPATH, an editable install whose checkout moved,
a bad option, a bug) still ends in exit 0 with one warning line. The exit code is what
the hook runner reads as "blocked" on a verdict, 0 otherwise:

- pre-push (the plain git hook, rcahook/data/pre-push): EXIT_VERDICT, which the script
  tells apart from any failure of the interpreter itself;
- pre-commit-framework: 1, since pre-commit blocks on any non-zero exit.
"""
from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr

# `rcahook scan`'s exit code for "a commit is above fail-above". Nothing else in rcahook, click
# (1, 2), Python (1 on an uncaught exception, 2 for its own usage errors, 120 when flushing
# fails at exit), the shell (126, 127) or a signal (128 + n) exits with it.
EXIT_VERDICT = 3
BLOCKED = {"pre-push": EXIT_VERDICT, "pre-commit-framework": 1}  # what each hook runner must see
MAX_DETAIL = 300  # characters of the failure kept in the warning line


def _warning(detail: str) -> str:
    detail = " ".join(detail.split())
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL - 3] + "..."
    return f"rcahook: risk scan passed without a verdict: {detail}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BLOCKED:
        sys.stderr.write(_warning(f"rcahook-hook needs a mode first ({' or '.join(BLOCKED)}), "
                                  f"got {' '.join(args) or 'nothing'}"))
        return 0
    mode, options = args[0], args[1:]
    captured = io.StringIO()  # rcahook's own lines, held back until the outcome is known
    failure = None
    code: int | None = None
    try:
        with redirect_stderr(captured):
            from rcahook.cli import main as cli_main

            code = cli_main(["scan", "--hook", mode, *options])
    except BaseException as e:  # noqa: BLE001 - whatever it is, the push goes through
        failure = f"rcahook could not run ({type(e).__name__}: {e}); reinstall it, then `rcahook install-hook`"
    if failure is None and code in (0, EXIT_VERDICT):
        sys.stderr.write(captured.getvalue())
        return BLOCKED[mode] if code == EXIT_VERDICT else 0
    if failure is None:
        # rcahook's handler reported it (a usage error prints several lines): keep the last one
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        failure = f"{lines[-1] if lines else 'no message'} (exit {code})"
    sys.stderr.write(_warning(failure))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`rcahook verify SUSPECT`: revert the suspect on top of the bad revision and run the command."""
from __future__ import annotations

import sys

from rcahook.commands.common import open_repo, print_json, say
from rcahook.errors import BadInputError


def run(*, suspect: str, cmd: str, bad: str, timeout: float | None, fmt: str, repo: str) -> int:
    if not cmd.strip():
        raise BadInputError("--cmd is empty; give the command that fails where the bug is (exit 0 passes)")
    if timeout is not None and timeout <= 0:
        raise BadInputError(f"--timeout must be positive, got {timeout}")
    from rcahook.bisect import report
    from rcahook.bisect.verify import EXIT_CODES, to_json, verify

    r = open_repo(repo)
    v = verify(r, r.resolve(suspect), r.resolve(bad), cmd=cmd, timeout=timeout, say=say)
    doc = to_json(r, v, cmd=cmd)
    if fmt == "json":
        print_json(doc)
    elif fmt == "markdown":
        sys.stdout.write(report.verify_markdown(doc))
    else:
        report.verify_text(doc, print)
    return EXIT_CODES[v.outcome]

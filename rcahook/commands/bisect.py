"""`rcahook bisect`: run a command across the suspects, in the order the ranking makes cheapest,
until the culprit is proven (rcahook.bisect)."""
from __future__ import annotations

import sys

from rcahook.commands.common import (
    IncidentFlags,
    incident_from_flags,
    index_path,
    open_history,
    open_repo,
    print_json,
    say,
)
from rcahook.errors import BadInputError


def run(*, cmd: str, investigation_id: str | None, good: str | None, bad: str | None, timeout: float | None,
        max_runs: int | None, retries: int, no_feedback: bool, title: str | None, description: str | None,
        time_: str | None, at: str | None, since: str | None, window: int | None,
        impacted_paths: tuple[str, ...], services: tuple[str, ...], stack_trace: str | None,
        incident_file: str | None, ranker: str | None, fmt: str, no_update: bool, repo: str, db: str | None) -> int:
    if not cmd.strip():
        raise BadInputError("--cmd is empty; give the command that fails where the bug is, e.g. "
                            "--cmd 'python -m pytest -q tests/test_parser.py' (exit 0 good, 125 skip, 1-127 bad)")
    for name, value in (("--timeout", timeout), ("--max-runs", max_runs)):
        if value is not None and value <= 0:
            raise BadInputError(f"{name} must be positive, got {value}")
    if retries < 0:
        raise BadInputError(f"--retries must be 0 or more, got {retries}")
    incident = IncidentFlags(title=title, description=description, time_=time_, at=at, since=since, window=window,
                             impacted_paths=impacted_paths, services=services, stack_trace=stack_trace)
    has_incident = any(incident.values()) or incident_file is not None or ranker is not None
    if investigation_id and has_incident:
        raise BadInputError("--investigation reuses a saved investigation's incident and ranking; drop the incident "
                            "flags (--title, --at, --window, ...) or drop --investigation")
    if not investigation_id and not has_incident and not (good and bad):
        raise BadInputError("nothing to rank the commits by: pass the incident (--title TEXT, as for `rcahook "
                            "investigate`) or --investigation ID; or --good REV and --bad REV for a plain bisection")
    from rcahook.bisect import session
    from rcahook.bisect import suspects as sus

    r = open_repo(repo)
    history = open_history(r, db, update=not no_update)
    try:
        suspects = None
        if investigation_id:
            suspects = sus.from_saved(history, r.common_dir, investigation_id)
        elif has_incident:
            suspects = _investigate(r, history, db, incident_from_flags(incident_file, **incident), ranker=ranker,
                                    save=not no_feedback)
        setup = session.prepare(r, history, suspects, good=good, bad=bad)
        for w in setup.warnings:
            say(f"note: {w}")
        search = session.execute(r, setup, cmd=cmd, timeout=timeout, max_runs=max_runs, retries=retries, say=say)
        doc = session.finish(r, history, setup, search, cmd=cmd, record=not no_feedback)
    finally:
        history.close()
    from rcahook.bisect import report

    if fmt == "json":
        print_json(doc)
    elif fmt == "markdown":
        sys.stdout.write(report.render_markdown(doc))
    else:
        report.render_text(doc, print)
    return 0 if doc["culprit"] else 3


def _investigate(r, history, db, incident, *, ranker: str | None, save: bool):
    """`rcahook investigate`'s own call, saved as it saves (for the culprit's feedback)."""
    from rcahook.bisect import suspects as sus
    from rcahook.config import load_config
    from rcahook.rca.investigate import investigate, options_from

    config = load_config(r.workdir, read_head=lambda name: r.read_path(incident.at or "HEAD", name),
                         git_dir=r.git_dir)
    for line in config.ignored:
        say(f"warning: {line}")
    options = options_from(config, ranker=ranker, model=None, llm_url=None, llm_model=None, llm_top=40,
                           max_candidates=None, min_confidence=None, strict=False, top=5)
    result = investigate(r, history, incident, options, config=config, index_dir=index_path(r, db).parent,
                         warn=lambda m: say(f"warning: {m}"))
    return sus.from_result(result, sus.save(r, result, say=say) if save else None)

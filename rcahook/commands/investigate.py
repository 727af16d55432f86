from __future__ import annotations

import sys
import time
from pathlib import Path

from rcahook.commands.common import (
    incident_from_flags,
    index_path,
    note_read_only,
    open_history,
    open_repo,
    print_json,
    say,
)
from rcahook.config import load_config
from rcahook.errors import RcahookError


def run(*, title: str | None, description: str | None, time_: str | None, at: str | None,
        since: str | None, window: int | None, impacted_paths: tuple[str, ...], services: tuple[str, ...],
        stack_trace: str | None, incident_file: str | None, ranker: str | None, model: str | None,
        llm_url: str | None, llm_model: str | None, llm_top: int, llm_timeout: float | None,
        llm_connect_timeout: float | None, max_candidates: int | None,
        min_confidence: float | None, strict: bool, top: int, fmt: str, no_save: bool, no_update: bool,
        repo: str, db: str | None) -> int:
    incident = incident_from_flags(
        incident_file, title=title, description=description, time_=time_, at=at, since=since, window=window,
        impacted_paths=impacted_paths, services=services, stack_trace=stack_trace)
    r = open_repo(repo)
    r.resolve(incident.at or "HEAD")  # an unknown --at fails before the index update, not after
    config = load_config(r.workdir, read_head=lambda name: r.read_path(incident.at or "HEAD", name),
                         git_dir=r.git_dir)
    for line in config.ignored:  # once per command: the repository asked for what only the user may set
        say(f"warning: {line}")
    from rcahook.progress import interactive
    from rcahook.rca.investigate import investigate, options_from

    options = options_from(config, ranker=ranker, model=model, llm_url=llm_url, llm_model=llm_model,
                           llm_top=llm_top, max_candidates=max_candidates, min_confidence=min_confidence,
                           strict=strict, top=top, llm_timeout=llm_timeout,
                           llm_connect_timeout=llm_connect_timeout)
    history = open_history(r, db, update=not no_update)
    index_not_updated = history.read_only and not no_update
    try:
        result = investigate(r, history, incident, options, config=config, index_dir=index_path(r, db).parent,
                             warn=lambda m: say(f"warning: {m}"), progress=interactive())
    finally:
        history.close()

    from rcahook.rca import report

    created = int(time.time())
    doc = report.to_json(result, inv_id=None, created=created)
    # a read-only repository: one note says what was not done (update, save), then the report
    if note_read_only(r, db, index_not_updated=index_not_updated, saving=not no_save):
        doc["id"] = _save(r.common_dir, doc, result, created)
    if fmt == "json":
        print_json(doc)
    elif fmt == "markdown":
        sys.stdout.write(report.render_markdown(doc))
    else:
        from rich.console import Console

        # a pipe or a file gets a wide table rather than rich's 80-column default
        report.render_text(doc, Console(highlight=False, soft_wrap=False,
                                        width=None if sys.stdout.isatty() else 150))
    return 0


def _save(git_dir: Path, doc: dict, result, created: int) -> str | None:
    """Save for feedback; a state database that cannot be written costs the id, not the report."""
    import sqlite3

    from rcahook.rca import feedback, report

    path = feedback.state_path(git_dir)
    try:
        return report.save_result(path, repo=str(git_dir), doc=doc, result=result, created=created)
    except (OSError, sqlite3.Error, RcahookError) as e:
        say(f"warning: could not save this investigation in {path} ({e}); it has no id for feedback "
            "(pass --no-save to skip saving)")
        return None

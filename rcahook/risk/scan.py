"""Assess outgoing commits: risk probability, level, reasons, the hunk to look at first.

Every commit of the index that is not being pushed is history; the pushed commits are
described against it (oldest first, each also seeing the pushed commits before it), with
the state of risk/state.py and the model of risk/model.py. Reasons name concrete facts a reviewer can check:
files and definitions that were root causes before, callers in the code graph, the
author's experience with the files, and the past root causes the change resembles
together with the fixes that named them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcahook.index.reader import History
from rcahook.risk.facts import CommitFacts, load_facts
from rcahook.risk.model import RiskModel
from rcahook.risk.state import RISK_FEATURES, RiskEvidence, history_state
from rcahook.text import DOC_PATH
from rcahook.untrusted import term_text

# Which features each reason speaks for: a reason's weight is their share of the log-odds.
REASON_FEATURES: dict[str, tuple[str, ...]] = {
    "size": ("log_added", "log_deleted", "log_files", "log_dirs", "entropy", "log_code_added", "log_idents",
             "log_defs", "log_new_defs", "relative_churn", "doc_share"),
    "past_root_causes": ("file_culprits", "file_culprit_rate", "recent_culprits", "dir_culprit_rate"),
    "risky_definitions": ("def_culprits",),
    "blast_radius": ("blast_radius",),
    "author_experience": ("author_file_exp", "author_exp", "author_culprit_rate"),
    "component": ("component_rate",),
    "words": ("word_risk",),
    "resembles": (),
}
SIMILAR_MIN_SCORE = 8.0  # BM25 below this is a few shared common words, not a resemblance


@dataclass(frozen=True)
class RiskReason:
    kind: str  # a key of REASON_FEATURES
    text: str
    weight: float  # its features' share of the log-odds, against an average commit


@dataclass(frozen=True)
class Location:
    path: str
    start_line: int  # new side, 1-based
    end_line: int
    hunk: tuple[int, int, int, int]


@dataclass(frozen=True)
class Similar:
    culprit: str
    subject: str
    score: float
    fixes: tuple[tuple[str, str], ...]  # (sha, subject) of the fixes that named it


@dataclass(frozen=True)
class CommitRisk:
    sha: str
    subject: str
    author: str
    probability: float
    level: str
    reasons: tuple[RiskReason, ...]
    location: Location | None
    similar: tuple[Similar, ...]
    lines_added: int
    lines_deleted: int
    files: int


class CallerCounts:
    """name -> callers in the indexed code graph (the blast radius feature), computed for the
    names a scan asks about from the files that define or reference them (codegraph/local.py):
    the cost follows the pushed commits, not the tree (issue 11)."""

    def __init__(self, conn):
        self.conn = conn
        self.counts: dict[str, int] = {}

    def prefetch(self, names: Iterable[str]) -> None:
        from rcahook.codegraph.local import callers_counts

        todo = {n for n in names if n not in self.counts}
        if todo:
            found = callers_counts(self.conn, todo)
            self.counts.update({n: found.get(n, 0) for n in todo})

    def __call__(self, name: str) -> int:
        if name not in self.counts:
            self.prefetch([name])
        return self.counts[name]


def caller_counts(conn) -> Callable[[str], int] | None:
    """Caller counts of the indexed code graph, or None when the index has no graph (or one
    written before its terms existed: `rcahook index` adds them)."""
    try:
        from rcahook.codegraph.local import terms_ready
    except ImportError:  # the graph's dependencies are broken: the scan goes on without them
        return None
    return CallerCounts(conn) if terms_ready(conn) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _reason_texts(c: CommitFacts, ev: RiskEvidence, similar: Sequence[Similar], email: str) -> dict[str, str]:
    n_dirs = len({p.rsplit("/", 1)[0] if "/" in p else "." for p in c.paths})
    out = {"size": f"+{c.added}/-{c.deleted} lines in {_plural(len(c.files), 'file')}"
                   f" across {_plural(n_dirs, 'directory').replace('directorys', 'directories')}"}
    if ev.culprit_file:
        path, n = ev.culprit_file
        out["past_root_causes"] = f"{path} was changed by {_plural(n, 'earlier root cause')}"
    if ev.culprit_def:
        name, n = ev.culprit_def
        out["risky_definitions"] = f"touches {name}(), changed by {_plural(n, 'earlier root cause')}"
    if ev.callers:
        name, n = ev.callers
        more = f" ({ev.total_callers} over all touched definitions)" if ev.total_callers > n else ""
        out["blast_radius"] = f"touches {name}() with {_plural(n, 'caller')}{more}"
    if ev.author_file_commits == 0:
        out["author_experience"] = (f"first commit by {email} to these files"
                                    + ("" if ev.author_commits else " (and first in this repository)"))
    else:
        out["author_experience"] = f"{email} made {_plural(ev.author_file_commits, 'earlier commit')} to these files"
    if ev.component:
        prefix, bad, seen = ev.component
        out["component"] = f"{bad} of {seen} earlier '{prefix}:' commits were root causes"
    if ev.words:
        out["words"] = f"subject words that went with root causes before: {', '.join(ev.words)}"
    if similar:
        parts = []
        for s in similar:
            fixes = ", ".join(f"{sha[:12]} (\"{subj}\")" for sha, subj in s.fixes[:2])
            parts.append(f"{s.culprit[:12]} (\"{s.subject}\"), fixed by {fixes}")
        out["resembles"] = "resembles past root cause " + "; ".join(parts)
    return out


def riskiest_hunk(history: History, sha: str, file_culprits: Callable[[str], int]) -> Location | None:
    """The hunk to look at first: in the code file with most past root causes (then most lines
    added), the hunk adding most lines. None when the commit adds no line anywhere."""
    best = None
    for ch in history.changes(sha):
        if ch.status == "D" or ch.binary or not ch.hunks:
            continue
        key = (file_culprits(ch.path), not DOC_PATH.search(ch.path), ch.added)
        if best is None or key > best[0]:
            best = (key, ch)
    if best is None:
        return None
    ch = best[1]
    hunk = max(ch.hunks, key=lambda h: h[3])
    start = max(hunk[2], 1)
    return Location(ch.path, start, start + max(hunk[3], 1) - 1, hunk)


def assess(history: History, shas: Sequence[str], *, model: RiskModel, callers: Callable[[str], int] | None = None,
           index_dir: Path | None = None, top_similar: int = 2,
           say: Callable[[str], None] = lambda message: None) -> list[CommitRisk]:
    """Risk of each non-merge commit among `shas` (merges and unknown shas are left out), oldest first.

    With `index_dir`, the state of history is read from and saved to the index (history_state)."""
    wanted = set(shas)
    pushed = sorted(load_facts(history.conn, sorted(wanted), repo=history.repo).values(), key=lambda c: c.time)
    pushed = [c for c in pushed if history.commit(c.sha).n_parents <= 1]
    if not pushed:
        return []
    state = history_state(history.conn, index_dir, wanted, describe=pushed, say=say)
    if isinstance(callers, CallerCounts):  # one read for every pushed definition
        callers.prefetch({name for c in pushed for name in c.defs})
    state.callers = callers
    rows, evidence = [], []
    for c in pushed:
        x, ev = state.explain(c)
        rows.append(x)
        evidence.append(ev)
        state.observe(c)
    X = np.vstack(rows)  # (N, F)
    probability = model.probability(X)
    contributions = model.contributions(X)  # (N, F)
    col = {n: i for i, n in enumerate(RISK_FEATURES)}
    resembled = state.similar(pushed, top=top_similar)
    subjects = {v.sha: v.subject for v in history.commits(
        {s for hits in resembled for h in hits for s in (h[0], *h[2])})}
    out = []
    for i, (c, ev, hits) in enumerate(zip(pushed, evidence, resembled, strict=True)):
        similar = tuple(Similar(sha, subjects.get(sha, ""), score,
                                tuple((f, subjects.get(f, "")) for f in fixes))
                        for sha, score, fixes in hits if score >= SIMILAR_MIN_SCORE)
        view = history.commit(c.sha)
        texts = _reason_texts(c, ev, similar, view.author_email)
        reasons = []
        for kind, text in texts.items():
            weight = float(sum(contributions[i, col[f]] for f in REASON_FEATURES[kind]))
            reasons.append(RiskReason(kind, text, weight))
        reasons.sort(key=lambda r: (r.kind != "size" and r.weight <= 0, -r.weight))
        p = float(probability[i])
        out.append(CommitRisk(
            sha=c.sha, subject=c.subject, author=f"{view.author_name} <{view.author_email}>", probability=p,
            level=model.level(p), reasons=tuple(reasons),
            location=riskiest_hunk(history, c.sha, lambda path: state.file_culprits.get(path, 0)),
            similar=similar, lines_added=c.added, lines_deleted=c.deleted, files=len(c.files)))
    return out


# --- output -----------------------------------------------------------------------------------

JSON_SCHEMA = "rcahook.scan/1"


def level_note(model: RiskModel, source: str) -> str:
    medium, high = model.thresholds
    q = model.info.get("level_quantiles", [0.8, 0.95])
    return (f"levels: medium >= {medium:.3f}, high >= {high:.3f} (riskier than {q[0]:.0%} / {q[1]:.0%} of "
            f"the commits the {source} model was fitted on)")


def to_json(risks: Sequence[CommitRisk], *, rng, model: RiskModel, source: str, fail_above: float | None,
            blocked: Sequence[CommitRisk], seconds: float) -> dict:
    """The scan as JSON (schema documented in docs/scan.md)."""
    return {
        "schema": JSON_SCHEMA,
        "error": None,
        "skipped": None,
        "range": {"description": rng.description, "to": rng.to, "commits": len(rng.shas), "capped": rng.capped},
        "model": {"source": source, "thresholds": {"medium": model.thresholds[0], "high": model.thresholds[1]}},
        "fail_above": fail_above,
        "blocked": [c.sha for c in blocked],
        "seconds": round(seconds, 3),
        "commits": [{
            "sha": c.sha, "subject": c.subject, "author": c.author, "risk": round(c.probability, 4),
            "level": c.level, "lines_added": c.lines_added, "lines_deleted": c.lines_deleted, "files": c.files,
            "reasons": [{"kind": r.kind, "text": r.text, "weight": round(r.weight, 3)} for r in c.reasons],
            "location": None if c.location is None else {
                "path": c.location.path, "start_line": c.location.start_line, "end_line": c.location.end_line},
            "resembles": [{"culprit": s.culprit, "subject": s.subject, "score": round(s.score, 2),
                           "fixes": [{"sha": f, "subject": t} for f, t in s.fixes]} for s in c.similar],
        } for c in risks],
    }


def empty_json(*, error: tuple[str, str] | None = None, skipped: str | None = None,
               range_description: str | None = None) -> dict:
    """The document of a scan that assessed nothing: it failed (`error`: kind, message; the scan
    passed without a verdict), was skipped, or had nothing to scan (a deleted branch)."""
    return {
        "schema": JSON_SCHEMA,
        "error": None if error is None else {"kind": error[0], "message": error[1]},
        "skipped": skipped,
        "range": None if range_description is None else {
            "description": range_description, "to": None, "commits": 0, "capped": False},
        "model": None,
        "fail_above": None,
        "blocked": [],
        "seconds": None,
        "commits": [],
    }


def render_text(risks: Sequence[CommitRisk], *, rng, model: RiskModel, source: str,
                fail_above: float | None) -> str:
    """Plain text (no rich: the hook's start-up time matters): a line per commit, reasons for
    the medium and high ones, riskiest first."""
    head = f"rcahook risk: {len(risks)} commit(s), {rng.description}"
    if rng.capped:
        head += f" (only the newest {len(rng.shas)})"
    lines = [head]
    for c in sorted(risks, key=lambda c: -c.probability):
        flag = "  BLOCKS" if fail_above is not None and c.probability > fail_above else ""
        # subjects, reasons and paths are the repository's: shown on the terminal, never obeyed
        lines.append(f"{c.level.upper():<6} {c.probability:5.2f}  {c.sha[:12]}  {term_text(c.subject[:72])}{flag}")
        if c.level == "low" and not flag:
            continue
        for r in c.reasons:
            lines.append(f"         - {term_text(r.text)}")
        if c.location:
            lines.append(f"         look first at {term_text(c.location.path)}:{c.location.start_line}-"
                         f"{c.location.end_line}")
    lines.append(level_note(model, source))
    return "\n".join(lines) + "\n"

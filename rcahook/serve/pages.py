"""The pages people read: the list of investigations and one investigation.

Server-rendered with Jinja2, autoescaping on for every template: commit messages, author
names, paths, diffs and incident text are other people's words and reach the page only as
text. The one picture (suspects and deploys on a timeline before the incident) is inline
SVG whose shapes are computed here, numbers and escaped labels only. The only script is
/static/rcahook.js (the CSP forbids inline script): it posts the buttons' verdicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from rcahook.rca import feedback as fb

HERE = Path(__file__).parent
STATIC = HERE / "static"
DIFF_LINES = 40  # of each suspect's diff, on the page (the whole diff is one `git show` away)

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def _when(value: str | None) -> str:
    """An ISO time as "2024-05-02 09:50 UTC"."""
    if not value:
        return "-"
    return _parse(value).strftime("%Y-%m-%d %H:%M UTC")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


_env.filters.update(when=_when, percent=_percent)


def render(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


# -- the timeline ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    label: str
    title: str  # the tooltip (SVG <title>), escaped like everything else
    kind: str  # suspect | deploy | incident | tick
    href: str = ""


WIDTH, LEFT, RIGHT, AXIS_Y = 880.0, 24.0, 70.0, 96.0
LANE = 23.0  # vertical step between suspects that would overlap
TICKS = [(3600, "1h"), (3 * 3600, "3h"), (12 * 3600, "12h"), (86400, "1d"), (2 * 86400, "2d"), (4 * 86400, "4d"),
         (7 * 86400, "7d"), (14 * 86400, "14d"), (30 * 86400, "30d"), (90 * 86400, "90d"), (365 * 86400, "1y")]


def timeline(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Suspects (by rank), the deploys and the incident on one axis of time before the
    incident, on a log scale: the last hours get as much room as the weeks before them."""
    end = _parse(doc["incident"]["time"]).timestamp()
    suspects = [(s, end - _parse(s["committed"]).timestamp()) for s in doc.get("suggestions", [])]
    if not suspects:
        return None
    deploys = doc["search_space"].get("deploys") or {}
    shown = [(d, end - _parse(d["time"]).timestamp()) for d in (deploys.get("previous"), deploys.get("last")) if d]
    oldest = max([age for _, age in suspects + shown] + [3600.0])
    scale = math.log1p(oldest / 3600) * 1.08

    def x(age: float) -> float:
        return round(WIDTH - RIGHT - (WIDTH - RIGHT - LEFT) * math.log1p(max(age, 0) / 3600) / scale, 1)

    marks = [Mark(x(0), 16, "incident", f"incident: {_when(doc['incident']['time'])}", "incident")]
    for i, (d, age) in enumerate(shown):
        marks.append(Mark(x(age), 30 + 14 * i, f"deploy {d['sha'][:7]}",
                          f"deployed {d['sha'][:12]} to {d['environment']} at {_when(d['time'])}", "deploy"))
    lanes: list[list[float]] = []
    ranked = doc.get("order") == "ranked"
    for s, age in sorted(suspects, key=lambda pair: pair[1]):
        at = x(age)
        lane = next((i for i, xs in enumerate(lanes) if all(abs(at - other) >= 2 * 11 + 2 for other in xs)), len(lanes))
        if lane == len(lanes):
            lanes.append([])
        lanes[lane].append(at)
        label = str(s["rank"]) if ranked and s.get("rank") else "•"
        marks.append(Mark(at, AXIS_Y - 16 - LANE * lane, label, f"{s['short_sha']} {s['subject']} ({s['age']})",
                          "suspect", href=f"#suspect-{s['short_sha']}"))
    ticks = [Mark(x(age), AXIS_Y + 18, f"{label} before", "", "tick") for age, label in TICKS if age < oldest * 1.08]
    top = min(m.y for m in marks) - 16
    return {"width": WIDTH, "top": min(top, 0), "height": AXIS_Y + 28 - min(top, 0), "axis_y": AXIS_Y,
            "left": LEFT, "right": WIDTH - RIGHT + 8, "marks": marks, "ticks": ticks}


# -- page contexts ----------------------------------------------------------------------------

def diff_lines(text: str) -> list[tuple[str, str]]:
    """(css class, line) for the first DIFF_LINES lines of a diff."""
    out = []
    for line in text.splitlines()[:DIFF_LINES]:
        kind = ("file" if line.startswith(("diff ", "+++", "---")) else "hunk" if line.startswith("@@")
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        out.append((kind, line))
    return out


def verdict_rows(verdicts: list[fb.Verdict]) -> list[dict[str, Any]]:
    return [{"seq": v.seq, "when": fb.iso(v.created),
             "verdict": "root cause" if v.verdict == "root_cause" else "not it", "sha": v.sha,
             "superseded": v.superseded, "note": v.note or ""} for v in verdicts]


def commit_link(template: str | None, sha: str) -> str:
    """The forge's page of a commit, from the repository's `commit-url` (validated to be
    http(s) with a {sha}; the sha is hex, so it adds nothing that needs quoting)."""
    return template.replace("{sha}", sha) if template else ""

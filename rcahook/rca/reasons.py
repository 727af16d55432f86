"""Evidence -> sentences a responder can check in a minute.

Each feature that fired for a candidate becomes one `Reason`: a stable `kind` (for the
JSON report and for tests) and a sentence naming the concrete facts (which words, which
identifiers, which files), never a bare score. Strongest kinds first.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rcahook.rca.features import FEATURE_NAMES, Query
from rcahook.rca.retrieve import Candidate
from rcahook.text import component_prefix, identifier_tokens, tokenize

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
LARGE_CHANGE_LINES = 300
RECENT_SECONDS = 2 * 86400  # "landed N hours before" is worth saying within two days
OWNER_SHARE = 0.1
MAX_ITEMS = 5  # words, identifiers or files named in one sentence
# Words that match everywhere and convince nobody; BM25 already weighs them down.
_STOP = frozenset("""a about after an and are as at be before but by for from has have in into is it its
    no not of on or see since that the their then there these this to up used was we were when where which
    while with""".split())

# The order reasons are listed in: what points at the code itself first.
KINDS = ("named_definition", "identifiers", "impacted_path", "graph", "impacted_dir", "text_match",
         "same_component", "associated_files", "component_files", "past_root_causes", "owner",
         "large_change", "recent")


@dataclass(frozen=True)
class Reason:
    kind: str  # one of KINDS
    text: str


def _listing(items: list[str], limit: int = MAX_ITEMS) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def human_age(seconds: int) -> str:
    """'45m', '3h', '2d 4h', '12d': coarse enough to read at a glance."""
    seconds = abs(int(seconds))
    if seconds < 90 * 60:
        return f"{max(seconds // 60, 1)}m" if seconds >= 60 else "<1m"
    hours = seconds // 3600
    if hours < 48:
        return f"{hours}h"
    days, rest = divmod(hours, 24)
    return f"{days}d {rest}h" if days < 7 and rest else f"{days}d"


def relative_age(commit_time: int, incident_time: int | None) -> str:
    if incident_time is None:
        return "-"
    delta = incident_time - commit_time
    return f"{human_age(delta)} before" if delta >= 0 else f"{human_age(delta)} after"


def _where_words(candidate: Candidate, words: list[str]) -> list[str]:
    c = candidate.commit
    subject = set(tokenize(c.subject))
    paths = set(tokenize(" ".join(c.paths)))
    diff = set(identifier_tokens(c.idents_added.split() + c.idents_removed.split()))
    out = []
    for w in words:
        if len(w) < 3 or w in _STOP or w.isdigit():
            continue
        places = [name for name, toks in (("subject", subject), ("paths", paths), ("diff", diff)) if w in toks]
        if places:
            out.append(f"'{w}' ({', '.join(places)})")
    return out


def _label(path: str, sources: Mapping[str, str]) -> str:
    if path in sources:
        return f"{path} ({sources[path]})"
    under = next((d for d in sources if d.endswith("/") and path.startswith(d)), None)
    return f"{path} (in {under}: {sources[under]})" if under else path


def _closest(changed: tuple[str, ...], impacted: list[str]) -> tuple[str, str, str] | None:
    """(changed path, impacted path, shared directory) sharing the deepest directory."""
    best: tuple[int, str, str, str] | None = None
    for a in changed[:50]:
        da = a.split("/")[:-1]
        for b in impacted[:20]:
            db = b.rstrip("/").split("/") if b.endswith("/") else b.split("/")[:-1]
            depth = 0
            for x, y in zip(da, db):
                if x != y:
                    break
                depth += 1
            if depth and (best is None or depth > best[0]):
                best = (depth, a, b, "/".join(da[:depth]) + "/")
    return best[1:] if best else None


def reasons_for(candidate: Candidate, query: Query, *, sources: Mapping[str, str] | None = None
                ) -> list[Reason]:
    """Sentences for the features that fired. `sources`: impacted path -> where it came
    from ("stack frame", "--impacted-path", "service billing")."""
    sources = sources or {}
    x = candidate.features
    e = candidate.evidence
    c = candidate.commit
    out: dict[str, str] = {}

    def value(name: str) -> float:
        return float(x[_COL[name]])

    if e.named_defs:
        where = "the stack trace" if set(query.functions) & {d.rsplit(".", 1)[-1] for d in e.named_defs} \
            else "the incident"
        out["named_definition"] = f"changes {_listing(e.named_defs)}, named in {where}"
    if e.matched_idents:
        added, removed = set(c.idents_added.split()), set(c.idents_removed.split())
        parts = []
        for ident in e.matched_idents:
            side = "added and removed" if ident in added and ident in removed else (
                "added" if ident in added else "removed")
            parts.append(f"{ident} ({side})")
        out["identifiers"] = f"its diff touches identifiers the incident names: {_listing(parts)}"
    if e.impacted_hits:
        hits = list(dict.fromkeys(e.impacted_hits))
        labelled = [_label(p, sources) for p in hits]
        out["impacted_path"] = f"changes impacted file{'s' if len(hits) > 1 else ''} {_listing(labelled)}"
    if e.graph_hops is not None and not (e.graph_hops == 0 and (e.named_defs or e.impacted_hits)):
        hops = e.graph_hops  # 0 with a named definition or an impacted file hit says nothing new
        out["graph"] = ("changes a definition of the impacted code (code graph)" if hops == 0 else
                        f"changes code {hops} call/import step{'s' if hops > 1 else ''} from the impacted "
                        "code (code graph)")
    if not e.impacted_hits and value("impacted_dir") > 0:
        impacted = list(dict.fromkeys(query.impacted_paths))
        near = _closest(c.paths, impacted)
        if near:
            path, target, shared = near
            label = f" ({sources[target]})" if target in sources else ""
            what = f"the impacted {target}{label}" if not target.endswith("/") else f"impacted {target}{label}"
            out["impacted_dir"] = f"changes {path}, in {shared} like {what}"
    if e.matched_words:
        located = _where_words(candidate, e.matched_words)
        if located:
            out["text_match"] = f"incident words match: {_listing(located)}"
    if value("same_component") > 0:
        prefix = component_prefix(query.title)
        out["same_component"] = f"same component as the incident title ('{prefix}:')"
    if e.assoc_file:
        out["associated_files"] = (f"changes {e.assoc_file}, which past commits with the incident's words "
                                   "usually touched")
    if e.component_file:
        prefix = component_prefix(query.title)
        out["component_files"] = f"changes {e.component_file}, a usual file of '{prefix}:' changes"
    if e.culprit_file:
        path, count = e.culprit_file
        out["past_root_causes"] = (f"{path} was changed by {count} earlier root cause{'s' if count > 1 else ''}"
                                   " (Fixes: links)")
    if e.owner_share >= OWNER_SHARE:
        out["owner"] = (f"{c.author_name} wrote {e.owner_share:.0%} of the recent changes to the impacted "
                        "code")
    if c.added + c.deleted >= LARGE_CHANGE_LINES:
        out["large_change"] = f"large change: +{c.added} -{c.deleted} lines in {c.n_files} files"
    if query.time is not None and 0 <= query.time - c.committer_time <= RECENT_SECONDS:
        out["recent"] = f"landed {human_age(query.time - c.committer_time)} before the incident"
    contributions = candidate.contributions
    if contributions is None:
        return [Reason(kind, out[kind]) for kind in KINDS if kind in out]
    # Only what raised this candidate's score counts as a reason, strongest first: a fact
    # the model weighs against a change (say, a large change on a repository where large
    # changes rarely break things) is not why it was picked.
    lift = {kind: _lift(contributions, kind) for kind in out}
    ranked = sorted((k for k in out if lift[k] > 0), key=lambda k: (-lift[k], KINDS.index(k)))
    return [Reason(kind, out[kind]) for kind in ranked]


_FEATURES_OF = {
    "named_definition": ("touched_named",), "identifiers": ("exact_ident",),
    "impacted_path": ("impacted_overlap",), "graph": ("graph_near",), "impacted_dir": ("impacted_dir",),
    "text_match": ("bm25_text", "bm25_subject", "bm25_paths", "bm25_idents", "bm25_added", "bm25_removed",
                   "path_tokens", "basename_match"),
    "same_component": ("same_component",), "associated_files": ("assoc_max", "assoc_mean"),
    "component_files": ("component_files",), "past_root_causes": ("culprit_prior",),
    "owner": ("owner_match",), "large_change": ("log_size", "log_files"), "recent": ("recency", "log_age_days"),
}


def _lift(contributions: np.ndarray, kind: str) -> float:
    from rcahook.rca.features import all_feature_names

    names = all_feature_names()
    total = 0.0
    for feature in _FEATURES_OF[kind]:
        for name in (feature, f"{feature}/max"):
            if name in names:
                total += float(contributions[names.index(name)])
    return total


def nonzero_features(candidate: Candidate) -> dict[str, float]:
    """The raw feature values that fired, rounded, for the JSON report."""
    return {name: round(float(v), 4) for name, v in zip(FEATURE_NAMES, candidate.features)
            if v != 0 and math.isfinite(float(v))}

"""Culprit links mined from commit messages: "Fixes: <sha>", "Regression in <sha>", reverts.

The patterns and their order are those of the benchmark protocol (shared/docs/benchmark.md),
so the index, the backtest and the training data agree on what a culprit is.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

_FLAGS = re.IGNORECASE | re.MULTILINE
# In protocol order: the first reference that resolves to exactly one commit is the culprit.
CULPRIT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("fixes", re.compile(r"^Fixes:\s*(?:commit\s+)?([0-9a-f]{7,40})\b", _FLAGS)),
    ("regression", re.compile(
        r"\bregress\w*\s+(?:in|from|since|by|of|introduced\s+(?:in|by))\s+(?:commit\s+)?([0-9a-f]{7,40})\b",
        _FLAGS)),
    ("introduced", re.compile(
        r"\b(?:introduced|broken|caused)\s+(?:in|by)\s+(?:commit\s+)?([0-9a-f]{7,40})\b", _FLAGS)),
)
# Reverts name their culprit too; the risk track counts them, the RCA track does not.
REVERT_PATTERN = re.compile(r"This reverts commit ([0-9a-f]{7,40})", _FLAGS)


@dataclass(frozen=True)
class LinkRef:
    seq: int
    kind: str  # fixes | regression | introduced | revert
    ref: str  # lower-cased hex prefix


def find_references(subject: str, body: str) -> list[LinkRef]:
    """Every culprit reference in a message, in the protocol's order, then reverts."""
    refs: list[LinkRef] = []
    for text in (body, subject):
        for kind, pattern in CULPRIT_PATTERNS:
            for m in pattern.finditer(text):
                refs.append(LinkRef(len(refs), kind, m.group(1).lower()))
    for m in REVERT_PATTERN.finditer(body):
        refs.append(LinkRef(len(refs), "revert", m.group(1).lower()))
    return refs


class ShaResolver:
    """Resolves hex prefixes against a set of commit shas; never guesses between several."""

    def __init__(self, shas: Iterable[str]):
        self._shas = sorted(shas)

    def resolve(self, prefix: str) -> tuple[str, str | None]:
        """("resolved", sha), ("ambiguous", None) or ("unknown", None)."""
        prefix = prefix.lower()
        i = bisect.bisect_left(self._shas, prefix)
        matches: list[str] = []
        while i < len(self._shas) and self._shas[i].startswith(prefix) and len(matches) < 2:
            matches.append(self._shas[i])
            i += 1
        if len(matches) == 1:
            return "resolved", matches[0]
        return ("ambiguous" if matches else "unknown"), None

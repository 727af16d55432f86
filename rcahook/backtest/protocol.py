"""Protocol v1.1 (docs/backtest.md): the wordings it adds to v1, and what it records of each
investigation.

v1.1 is computed at backtest time only: the index's links (rcahook.index.links) stay v1's,
so a v1 run, and the v1 part of a v1.1 run, are what they always were. The added wordings
are read from the subjects and bodies the index stores, and resolved as v1 resolves a
reference: a hex prefix of 7 to 40 digits naming exactly one indexed commit.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

V1 = "1"
V1_1 = "1.1"
PROTOCOLS = (V1, V1_1)

RULE_V1 = "v1"  # found by v1's patterns (the index's links)
ADDED_PREFIX = "v1.1:"  # rules v1.1 adds: "v1.1:" + the pattern's name

_FLAGS = re.IGNORECASE | re.MULTILINE
# In order, after v1's (which always win): the first reference that resolves is the culprit.
# "Fixes <sha>" must open its line like v1's "Fixes:" (an indented one is usually another
# commit's message quoted); "Fixes #12" names an issue, not a commit, and never matches.
ADDED_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("fixes", re.compile(r"^Fixes[ \t]+(?:commit[ \t]+)?([0-9a-f]{7,40})\b", _FLAGS)),
    ("follow-up", re.compile(r"\bfollow(?:-|[ \t]+)?up[ \t]+(?:to|for|of)[ \t]+(?:commit[ \t]+)?([0-9a-f]{7,40})\b",
                             _FLAGS)),
)
_HEX = re.compile(r"\b[0-9a-f]{7,40}\b", re.IGNORECASE)
# A cheap SQL filter before the patterns: a message without these words cannot match them
# (LIKE is case-insensitive for ASCII in SQLite).
_SQL_WORDS = ("%fixes%", "%follow%")


def added_references(subject: str, body: str) -> list[tuple[str, str]]:
    """(pattern name, lower-cased hex prefix) for each v1.1 wording in a message: the body,
    then the subject, each in pattern order, as v1 searches."""
    refs: list[tuple[str, str]] = []
    for text in (body, subject):
        for name, pattern in ADDED_PATTERNS:
            refs.extend((name, m.group(1).lower()) for m in pattern.finditer(text))
    return refs


def subject_names(subject: str, culprit: str) -> bool:
    """Whether the fix's subject carries a prefix of the culprit's sha ("Fix build broken by
    1a2b3c4"): its cleaned title is then left with little to go on."""
    return any(culprit.startswith(m.group(0).lower()) for m in _HEX.finditer(subject))


def resolve_prefix(conn: sqlite3.Connection, prefix: str) -> str | None:
    """The one indexed commit whose sha starts with `prefix`; None when none or several do
    (v1's rule: never guess between several)."""
    rows = conn.execute("SELECT sha FROM commits WHERE sha >= ? AND sha < ? LIMIT 2",
                        (prefix, prefix + "g")).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def added_culprits(conn: sqlite3.Connection, fixes: Iterable[str], v1_culprits: dict[str, str]
                   ) -> dict[str, tuple[str, str]]:
    """fix sha -> (culprit sha, rule) for the given commits that have no v1 culprit and whose
    message names one in a v1.1 wording. One pass over the stored messages."""
    wanted = {sha for sha in fixes if sha not in v1_culprits}
    where = " OR ".join("subject LIKE ? OR body LIKE ?" for _ in _SQL_WORDS)
    params = [w for w in _SQL_WORDS for _ in range(2)]
    out: dict[str, tuple[str, str]] = {}
    rows = conn.execute(f"SELECT sha, subject, body FROM commits WHERE {where}", params).fetchall()
    for sha, subject, body in rows:
        if sha not in wanted:
            continue
        for name, prefix in added_references(subject, body):
            culprit = resolve_prefix(conn, prefix)
            if culprit is not None:
                out[sha] = (culprit, ADDED_PREFIX + name)
                break
    return out


def is_added(rule: str) -> bool:
    return rule.startswith(ADDED_PREFIX)

"""The protocol's baselines, run on the same investigations as the rankers.

- random: expected metrics, computed analytically (metrics.random_summary); no order here.
- recency: newest first, which is the window's own order.
- bm25: the title against each candidate's subject, body and changed paths (k1=1.2,
  b=0.75, the protocol tokenizer); ties go to the newer commit.
- path-overlap (paths track): the share of the impacted paths a candidate touches; ties
  go to the newer commit.
"""
from __future__ import annotations

from collections.abc import Sequence

from rcahook.index.reader import CommitView, History
from rcahook.text import BM25, tokenize

BASELINES = ("random", "recency", "bm25", "path-overlap")


def order_by_score(shas: Sequence[str], scores: Sequence[float]) -> list[str]:
    """Best first; equal scores keep the window's order (newer first)."""
    return [shas[i] for i in sorted(range(len(shas)), key=lambda i: (-scores[i], i))]


class BaselineRanker:
    """Orders a window for one baseline; caches each commit's BM25 document across
    investigations, since consecutive windows share most of their commits."""

    def __init__(self, history: History):
        self.history = history
        self._docs: dict[str, list[str]] = {}

    def _document(self, c: CommitView) -> list[str]:
        doc = self._docs.get(c.sha)
        if doc is None:
            doc = tokenize(c.subject) + tokenize(c.body) + tokenize(" ".join(c.paths))
            self._docs[c.sha] = doc
        return doc

    def recency(self, window: Sequence[str]) -> list[str]:
        return list(window)

    def bm25(self, title: str, window: Sequence[str]) -> list[str]:
        commits = self.history.commits(window)
        assert len(commits) == len(window), "every candidate of the window must be in the index"
        scores = BM25([self._document(c) for c in commits], k1=1.2, b=0.75).score(tokenize(title))
        return order_by_score(window, scores)

    def path_overlap(self, impacted: Sequence[str], window: Sequence[str]) -> list[str]:
        wanted = set(impacted)
        commits = self.history.commits(window)
        scores = [len(wanted.intersection(c.paths)) / len(wanted) if wanted else 0.0 for c in commits]
        return order_by_score(window, scores)

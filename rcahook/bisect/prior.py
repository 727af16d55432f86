"""How likely each candidate is to be the culprit, before any test: the ranking's belief.

The features ranker's probabilities are a softmax over the search space; they are sharper
than its record deserves on some incidents and say nothing of commits outside the window
that a good..bad range can hold (a side branch merged late). So a share of the mass,
RESERVE, is kept back and spread evenly over every candidate: a wrong ranking then costs a
few runs more than plain bisection, never a search that starves the true culprit.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

RESERVE = 0.05  # mass spread evenly over the range, whatever the ranking says (bench/bench_bisect.py)


def prior_masses(shas: Sequence[str], ranked: Iterable[tuple[str, float]], *, reserve: float = RESERVE) -> np.ndarray:
    """(n,) masses summing to 1 over `shas`, the bisection's candidates.

    `ranked` is (sha, probability) of the ranked candidates (softmax over the search space,
    best first, possibly cut: stage 1 keeps 300); the probability of the search space's
    commits that were cut is spread evenly over the candidates the ranking did not list.
    """
    if not shas:
        return np.zeros(0)
    position = {sha: i for i, sha in enumerate(shas)}
    p = np.zeros(len(shas))
    listed = np.zeros(len(shas), dtype=bool)
    total = 0.0
    for sha, probability in ranked:
        total += probability
        i = position.get(sha)
        if i is not None:
            p[i] = probability
            listed[i] = True
    unlisted = ~listed
    if unlisted.any():
        p[unlisted] = max(1.0 - total, 0.0) / unlisted.sum()
    if p.sum() <= 0:
        return np.full(len(shas), 1.0 / len(shas))
    p /= p.sum()
    return (1.0 - reserve) * p + reserve / len(shas)


def uniform(n: int) -> np.ndarray:
    """Plain bisection's belief: every candidate alike."""
    return np.full(n, 1.0 / n) if n else np.zeros(0)

"""The commits a bisection searches and their ancestry (pure: no git, no I/O).

As in `git bisect`, the range is every commit reachable from the bad revision and from no
good one. Merges are walked through (they carry ancestry) but never named: the first bad
commit is a commit that changed something, so the candidates are the range's non-merge
commits, in `git rev-list --no-merges bad ^good` order (newest first).
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rcahook.errors import BadInputError

MAX_RANGE = 4096  # commits in good..bad: the ancestry matrix holds n x n booleans
PLAIN_CACHE = 4096  # subsets whose plain-bisection depths a Space keeps


@dataclass(frozen=True)
class Space:
    shas: tuple[str, ...]  # the candidates, newest first
    ancestry: np.ndarray  # (n, n) bool: [t, x] when x is t itself or one of t's ancestors
    roots: np.ndarray  # (n,) bool: a parent lies below the good revision (its goodness is assumed)
    parents: tuple[tuple[int, ...], ...]  # each candidate's parents that are candidates
    bad_index: int | None  # the bad revision's own index when it is a candidate (not a merge)
    _plain: dict[bytes, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.shas)

    def index(self, sha: str) -> int:
        return self.shas.index(sha)

    def plain_depths(self, subset: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Runs plain bisection (git bisect's even split: the first of the most even, in this
        order) needs to name each of `subset` (ascending candidate indices) as the culprit,
        searching `subset` alone; the depth of each leaf of its decision tree. With `weights`
        (aligned with subset), the split that halves their sum instead."""
        key = subset.tobytes() + (b"w" + weights.tobytes() if weights is not None else b"")
        depth = self._plain.get(key)
        if depth is not None:
            return depth
        depth = np.zeros(len(subset), dtype=np.int64)
        stack = [(np.arange(len(subset)), 0)]
        while stack:
            part, d = stack.pop()  # positions in subset, ascending
            k = len(part)
            if k <= 1:
                depth[part] = d
                continue
            members = subset[part]
            sub = self.ancestry[np.ix_(members, members)]
            count_bad = sub.sum(axis=1)
            by_count = np.abs(count_bad - k / 2)
            by_count[(count_bad == 0) | (count_bad == k)] = np.inf
            if weights is None:
                t = int(np.argmin(by_count))
            else:  # the same choice as rcahook.bisect.plan._weighted_split
                w = weights[part]
                score = np.abs(sub @ w / w.sum() - 0.5)
                score[(count_bad == 0) | (count_bad == k)] = np.inf
                t = int(np.lexsort((np.arange(k), by_count, np.round(score, 12)))[0])
            stack.append((part[sub[t]], d + 1))
            stack.append((part[~sub[t]], d + 1))
        if len(self._plain) >= PLAIN_CACHE:
            self._plain.clear()
        self._plain[key] = depth
        return depth


def range_commits(bad: str, goods: Iterable[str], parents: Callable[[str], Sequence[str]]) -> set[str]:
    """Commits reachable from `bad` and from none of `goods` (merges included)."""
    hidden = set(goods)
    stack = list(hidden)
    while stack:  # everything below a good revision: exact, whatever the commit dates say
        for p in parents(stack.pop()):
            if p not in hidden:
                hidden.add(p)
                stack.append(p)
    found: set[str] = set()
    stack = [bad] if bad not in hidden else []
    while stack:
        sha = stack.pop()
        if sha in found:
            continue
        found.add(sha)
        if len(found) > MAX_RANGE:
            raise BadInputError(
                f"the range between the good and the bad revision holds more than {MAX_RANGE} commits; "
                "pass a more recent --good (or a smaller --window), or use `git bisect` for a range this long")
        stack.extend(p for p in parents(sha) if p not in hidden and p not in found)
    return found


def git_order(commits: set[str], bad: str, parents: Callable[[str], Sequence[str]],
              commit_time: Callable[[str], int]) -> list[str]:
    """`git rev-list` order over `commits`: newest committer date first, a commit's parents
    queued once it is shown (what rcahook.index.reader.History.rev_list does for the window)."""
    tick = itertools.count()
    queue = [(-commit_time(bad), next(tick), bad)] if bad in commits else []
    seen = {bad}
    out: list[str] = []
    while queue:
        _, _, sha = heapq.heappop(queue)
        out.append(sha)
        for p in parents(sha):
            if p in commits and p not in seen:
                seen.add(p)
                heapq.heappush(queue, (-commit_time(p), next(tick), p))
    return out


def build_space(bad: str, goods: Iterable[str], parents: Callable[[str], Sequence[str]],
                commit_time: Callable[[str], int]) -> Space:
    """The candidates of good..bad and their ancestry, from the commit graph."""
    commits = range_commits(bad, goods, parents)
    order = git_order(commits, bad, parents, commit_time)
    is_merge = {sha: len(parents(sha)) > 1 for sha in order}
    shas = tuple(s for s in order if not is_merge[s])
    position = {sha: i for i, sha in enumerate(shas)}
    # ancestor sets as Python ints (bit i: candidate i), parents before children
    bits: dict[str, int] = {}
    for sha in _parents_first(order, commits, parents):
        value = 1 << position[sha] if sha in position else 0
        for p in parents(sha):
            value |= bits.get(p, 0)
        bits[sha] = value
    n = len(shas)
    ancestry = np.zeros((n, n), dtype=bool)
    for i, sha in enumerate(shas):
        row = np.frombuffer(bits[sha].to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
        ancestry[i] = np.unpackbits(row, bitorder="little")[:n].astype(bool)
    roots = np.array([any(p not in commits for p in parents(s)) or not parents(s) for s in shas], dtype=bool)
    cand_parents = tuple(tuple(position[p] for p in parents(s) if p in position) for s in shas)
    return Space(shas, ancestry, roots, cand_parents, position.get(bad))


def _parents_first(order: Sequence[str], commits: set[str], parents: Callable[[str], Sequence[str]]) -> list[str]:
    """A topological order, parents before children (commit dates can lie: clock skew)."""
    out: list[str] = []
    done: set[str] = set()
    for start in reversed(order):
        stack = [(start, False)]
        while stack:
            sha, expanded = stack.pop()
            if sha in done:
                continue
            if expanded:
                done.add(sha)
                out.append(sha)
                continue
            stack.append((sha, True))
            stack.extend((p, False) for p in parents(sha) if p in commits and p not in done)
    return out

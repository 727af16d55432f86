"""Who owns a path: CODEOWNERS at a revision, and who changes it, weighted toward recent work.

History ownership is computed from the index (`changes` joined to `commits`). Each commit
that changed the path (or, for a directory, any file under it) counts once, with weight

    w = 2 ** (-age_days / half_life_days) * (1 + line_weight * min(lines, line_cap))

where `age_days` is how long before `now` the commit was authored (never negative),
`lines` is the lines it added plus deleted in the path (summed over the directory's files,
so a commit touching 200 files under a directory is one piece of evidence, not 200), and
the defaults are half_life_days=180, line_weight=0.01, line_cap=200: a change made half a
year ago counts half as much as one made today, and a 200-line change at most three times
as much as a one-line change. A person's weight is the sum over their commits (people are
told apart by lower-cased email); their share is their weight over everyone's.

Commits count when they landed (committer time) no later than `now`. Renames are followed
for files: the history of the old path before the rename counts toward the new path.
Merge commits have no changes in the index, so they never count.
"""
from __future__ import annotations

import bisect
import time as _time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from rcahook.index.codeowners import CodeOwners, Rule, find_codeowners
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History

MAX_RENAME_HOPS = 20  # a file renamed more often than this keeps only its recent names


@dataclass(frozen=True)
class Weighting:
    half_life_days: float = 180.0  # age at which a change counts half
    line_weight: float = 0.01  # extra weight per line added or deleted
    line_cap: int = 200  # lines beyond this add nothing (generated files, reformatting)

    def weight(self, age_seconds: float, lines: int) -> float:
        age_days = max(age_seconds, 0.0) / 86400.0
        return 2.0 ** (-age_days / self.half_life_days) * (1.0 + self.line_weight * min(lines, self.line_cap))


DEFAULT_WEIGHTING = Weighting()


@dataclass(frozen=True)
class Owner:
    name: str  # the name of their most recent commit
    email: str  # lower-cased
    weight: float
    share: float  # weight / everyone's weight, 0..1
    commits: int
    last_time: int  # author time of their most recent change, seconds since the epoch

    def to_json(self) -> dict:
        """As `rcahook owners` and `rcahook show` print it."""
        return {"name": self.name, "email": self.email, "weight": round(self.weight, 6),
                "share": round(self.share, 6), "commits": self.commits, "last_time": self.last_time}


@dataclass(frozen=True)
class _Touch:
    """One commit's change to one file, as ownership needs it."""

    sha: str
    name: str
    email: str
    author_time: int
    lines: int


def normalize_path(path: str) -> tuple[str, bool]:
    """(repository path without leading './' or '/' and without a trailing '/', whether a
    trailing '/' said it is a directory)."""
    path = path.replace("\\", "/").strip()
    while path.startswith("./"):
        path = path[2:]
    is_dir = path.endswith("/") or path in ("", ".")
    path = path.strip("/")
    return ("" if path == "." else path), is_dir


def _dir_bounds(path: str) -> tuple[str, str]:
    """[low, high) of the paths under directory `path`; '0' sorts right after '/'."""
    return (f"{path}/", f"{path}0") if path else ("", "\U0010ffff")


def _aggregate(touches: Iterable[_Touch], *, now: int, weighting: Weighting) -> list[Owner]:
    # lines summed per (person, commit) first: a commit counts once per path queried
    per_commit: dict[tuple[str, str], list] = {}
    for t in touches:
        key = (t.email, t.sha)
        acc = per_commit.get(key)
        if acc is None:
            per_commit[key] = [t.name, t.author_time, t.lines]
        else:
            acc[2] += t.lines
    people: dict[str, list] = {}  # email -> [name, weight, commits, last_time]
    for (email, _), (name, when, lines) in per_commit.items():
        w = weighting.weight(now - when, lines)
        acc = people.get(email)
        if acc is None:
            people[email] = [name, w, 1, when]
        else:
            acc[1] += w
            acc[2] += 1
            if when >= acc[3]:
                acc[0], acc[3] = name, when
    total = sum(acc[1] for acc in people.values()) or 1.0
    owners = [Owner(name, email, w, w / total, n, last) for email, (name, w, n, last) in people.items()]
    owners.sort(key=lambda o: (-o.weight, -o.last_time, o.email))
    return owners


_TOUCH_SQL = ("SELECT c.sha, c.author_name, c.author_email, c.author_time, ch.added + ch.deleted,"
              " ch.path, ch.old_path, ch.status, c.committer_time"
              " FROM changes ch JOIN commits c ON c.id = ch.commit_id")


def _file_touches(history: History, path: str, *, now: int, exclude: frozenset[str]) -> list[_Touch]:
    """Changes to file `path`, and to its earlier names before each rename."""
    out: list[_Touch] = []
    todo = [(path, now)]  # (name, only changes that landed no later than this)
    seen: set[str] = set()
    while todo and len(seen) < MAX_RENAME_HOPS:
        name, until = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for sha, aname, email, atime, lines, _, old, status, ctime in history.conn.execute(
                f"{_TOUCH_SQL} WHERE ch.path = ? AND c.committer_time <= ?", (name, until)):
            if status == "R" and old:
                # the same second counts: scripted histories often share one timestamp
                todo.append((old, ctime))
            if sha not in exclude:  # an excluded rename still leads to the old name
                out.append(_Touch(sha, aname, email.lower(), atime, lines))
    return out


def _dir_touches(history: History, path: str, *, now: int, exclude: frozenset[str]) -> list[_Touch]:
    low, high = _dir_bounds(path)
    return [
        _Touch(sha, aname, email.lower(), atime, lines)
        for sha, aname, email, atime, lines, *_ in history.conn.execute(
            f"{_TOUCH_SQL} WHERE ch.path >= ? AND ch.path < ? AND c.committer_time <= ?",
            (low, high, now))
        if sha not in exclude
    ]


def history_owners(history: History, path: str, *, now: int | None = None, limit: int | None = 5,
                   directory: bool | None = None, exclude: Iterable[str] = (),
                   weighting: Weighting = DEFAULT_WEIGHTING) -> list[Owner]:
    """Who changes `path` (a file, or a directory with a trailing '/' or `directory=True`),
    most weight first; commits in `exclude` do not count (e.g. the commit being shown)."""
    now = int(_time.time()) if now is None else now
    path, is_dir = normalize_path(path)
    if directory is None:
        directory = is_dir or not path_was_changed(history, path)
    excluded = frozenset(exclude)
    touches = (_dir_touches if directory else _file_touches)(history, path, now=now, exclude=excluded)
    owners = _aggregate(touches, now=now, weighting=weighting)
    return owners[:limit] if limit is not None else owners


def path_was_changed(history: History, path: str) -> bool:
    """Whether an indexed commit changed file `path` (exactly that path)."""
    return history.conn.execute("SELECT 1 FROM changes WHERE path = ? LIMIT 1", (path,)).fetchone() is not None


def dir_was_changed(history: History, path: str) -> bool:
    low, high = _dir_bounds(path)
    return history.conn.execute(
        "SELECT 1 FROM changes WHERE path >= ? AND path < ? LIMIT 1", (low, high)).fetchone() is not None


# -- CODEOWNERS ---------------------------------------------------------------------------------

def load_codeowners(repo: Repo, rev: str) -> CodeOwners | None:
    """The CODEOWNERS file at `rev` (read from the object store: bare repositories work)."""
    sha = repo.resolve(rev)
    return find_codeowners(lambda p: repo.read_path(sha, p))


def codeowners_for(repo: Repo, rev: str, path: str, *,
                   codeowners: CodeOwners | None = None) -> tuple[tuple[str, ...], Rule | None]:
    """(owners, the deciding rule) of `path` by the CODEOWNERS file at `rev`; ((), None)
    when there is no file or no rule matches. A directory is asked with a trailing '/'."""
    co = codeowners if codeowners is not None else load_codeowners(repo, rev)
    if co is None:
        return (), None
    rules = co.rules_for(path)
    return co.owners_of(path), (rules[-1] if rules else None)


# -- the batch form, for ranking a few hundred candidates ------------------------------------------

class OwnershipModel:
    """Ownership over a fixed set of commits, loaded once and queried many times.

    Answers match `history_owners` over the same commits (rename following included).
    """

    def __init__(self, own: dict[str, list[_Touch]], inherited: dict[str, list[_Touch]], *,
                 now: int, weighting: Weighting):
        self._own = own  # path -> changes made to it under that name
        self._inherited = inherited  # path -> changes made under its earlier names
        self._paths = sorted(own)
        self._now = now
        self._weighting = weighting
        self._cache: dict[str, dict[str, float]] = {}

    @classmethod
    def build(cls, history: History, scope: Sequence[str] | tuple[int, int], *, now: int | None = None,
              weighting: Weighting = DEFAULT_WEIGHTING) -> OwnershipModel:
        """`scope`: the commits to learn from, as shas, or as a (since, until) range of
        committer times (inclusive). `now` defaults to the newest of those commits."""
        rows: list[tuple] = []
        if _is_time_range(scope):
            since, until = scope
            rows = history.conn.execute(
                f"{_TOUCH_SQL} WHERE c.committer_time >= ? AND c.committer_time <= ?",
                (since, until)).fetchall()
        else:
            shas = list(dict.fromkeys(scope))
            for i in range(0, len(shas), 500):
                chunk = shas[i:i + 500]
                rows += history.conn.execute(
                    f"{_TOUCH_SQL} WHERE c.sha IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        if now is None:
            now = max((r[8] for r in rows), default=int(_time.time()))
        own: dict[str, list[_Touch]] = {}
        renames: list[tuple[int, str, str]] = []
        ctimes: dict[str, int] = {}
        for sha, aname, email, atime, lines, path, old, status, ctime in rows:
            if ctime > now:
                continue
            own.setdefault(path, []).append(_Touch(sha, aname, email.lower(), atime, lines))
            ctimes[sha] = ctime
            if status == "R" and old:
                renames.append((ctime, old, path))
        inherited: dict[str, list[_Touch]] = {}
        # oldest rename first, so a chain a -> b -> c carries a's history into c
        for when, old, new in sorted(renames):
            have = {t.sha for t in own.get(new, ())} | {t.sha for t in inherited.get(new, ())}
            for t in (*own.get(old, ()), *inherited.get(old, ())):
                if ctimes[t.sha] <= when and t.sha not in have:
                    inherited.setdefault(new, []).append(t)
                    have.add(t.sha)
        return cls(own, inherited, now=now, weighting=weighting)

    def owners_of(self, path: str) -> dict[str, float]:
        """email -> share of the file or directory (trailing '/' optional), largest first."""
        key, is_dir = normalize_path(path)
        cache_key = f"{key}/" if is_dir else key
        found = self._cache.get(cache_key)
        if found is None:
            if not is_dir and key in self._own:
                touches = [*self._own[key], *self._inherited.get(key, ())]
            else:
                # a directory: what was changed under it, not what its files were once called
                low, high = _dir_bounds(key)
                start = bisect.bisect_left(self._paths, low)
                end = bisect.bisect_left(self._paths, high)
                touches = [t for p in self._paths[start:end] for t in self._own[p]]
            owners = _aggregate(touches, now=self._now, weighting=self._weighting)
            found = self._cache[cache_key] = {o.email: o.share for o in owners}
        return found

    def is_owner(self, email: str, path: str) -> float:
        """The share of `path` that `email` owns: 0.0 when they never changed it."""
        return self.owners_of(path).get(email.lower(), 0.0)


def _is_time_range(scope: object) -> TypeGuard[tuple[int, int]]:
    return (isinstance(scope, tuple) and len(scope) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in scope))

"""The code graph around some names and files, read from the index without the whole tree.

A million-commit monorepo's tree has tens of thousands of files; building the whole graph
costs seconds and hundreds of MiB on every investigate and scan (issue 11). What a feature
asks is local: which definitions lie within three edges of the impacted code, how many
callers a touched definition has. So the index keeps, per graph file, the terms that lead
to its neighbours (`graph_terms`: the names it defines and references, the modules it
imports), and this module loads only the files a question can reach:

- a definition's neighbours are its file's definitions, the definitions its file's calls
  may resolve to, and the callers in the files that reference its name;
- a file's neighbours are the files it imports and the files whose imports may name it.

The answer is the whole graph's, not an approximation: a breadth-first search widens the
loaded set one level at a time, calls are resolved only from files whose every candidate
definition is loaded (`CodeGraph.partial`), and the whole tree's candidate counts keep an
ambiguous call ambiguous. tests/test_codegraph_local.py compares both on every start. One
bound: on a tree of more than SMALL_TREE files, a neighbourhood that would load more than
LARGE_BUDGET files is exact only to the depth reached before that.
"""
from __future__ import annotations

import json
import posixpath
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rcahook.codegraph.build import unpack_parse
from rcahook.index import store

if TYPE_CHECKING:
    from rcahook.codegraph.graph import CodeGraph
    from rcahook.codegraph.imports import PathSet

TERMS_TABLE = ("CREATE TABLE IF NOT EXISTS graph_terms (term TEXT NOT NULL, kind INTEGER NOT NULL,"
               " path TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (term, kind, path)) WITHOUT ROWID",
               "CREATE INDEX IF NOT EXISTS graph_terms_path ON graph_terms(path)")
DEFINES, QUALIFIED, REFERENCES, IMPORTS = 0, 1, 2, 3
_FAMILY = {"cpp": "c", "typescript": "javascript", "tsx": "javascript"}  # as graph.py resolves calls
_SPLIT = re.compile(r"[./:\\]+")
_RELATIVE_START = frozenset({"crate", "self", "super"})
# A question that reaches more than this share of the tree's files is answered from the
# whole graph instead (built once per process): widening level by level rebuilds the partial
# graph each time, which then costs more than one whole build.
WHOLE_SHARE = 0.2
# Below this many files the whole graph costs about what a partial one three edges deep
# does (two seconds at 7,000 files on the synthetic monorepo; code graphs are small worlds,
# so three edges from a name often reach a fifth of the tree), once per process.
SMALL_TREE = 10_000
# Nor is the whole graph a fallback on a tree where a fifth is more than this many files
# (61,538 files at 1M synthetic commits: 68 s and 3.8 GB): a question whose next level would
# load more than this is answered from the levels already loaded, exact to that depth; what
# lies farther counts as out of reach. Only a name defined or called across much of the
# tree gets there, and distance from it says little.
LARGE_BUDGET = 4_000


# --- terms, kept up to date with graph_files ----------------------------------------------------

def _terms_of(path: str, data: str) -> list[tuple[str, int, str, int]]:
    """(term, kind, path, n) rows of one parsed file (ParsedFile JSON)."""
    from rcahook.codegraph.graph import raw_from_json

    _, defs, refs, imports = raw_from_json(data)
    seen: set[str] = set()
    names: dict[str, int] = defaultdict(int)  # definition nodes per name, as CodeGraph counts them
    qualified: dict[str, int] = defaultdict(int)
    for name, qualname, *_ in defs:
        if qualname in seen:  # the graph keeps the first of two equal qualnames in a file
            continue
        seen.add(qualname)
        names[name] += 1
        if qualname != name:
            qualified[qualname] += 1
    rows = [(t, DEFINES, path, n) for t, n in names.items()]
    rows += [(t, QUALIFIED, path, n) for t, n in qualified.items()]
    rows += [(t, REFERENCES, path, 1) for t in {r[0] for r in refs}]
    keys: set[str] = set()
    for imp in imports:
        parts = [p for p in _SPLIT.split(imp.module) if p]
        keys.update(parts)
        keys.update(imp.names)
        if imp.relative_level or not parts or imp.module.startswith(".") or parts[0] in _RELATIVE_START:
            # relative: the target is named by the importer's own directories
            directory = posixpath.dirname(path)
            while directory:
                keys.add(posixpath.basename(directory))
                directory = posixpath.dirname(directory)
            keys.add("src")
    rows += [(k, IMPORTS, path, 1) for k in keys]
    return rows


# Files an import names by their directory: a package's __init__, a JS directory's index, a
# Rust module directory, any Go file (a package is a directory), Java's `import a.b.*`.
_BY_DIRECTORY = re.compile(r"(^|/)(__init__\.pyi?|index\.[cm]?[jt]sx?|mod\.rs|lib\.rs|main\.rs)$|\.(go|java)$")


def import_keys(path: str) -> set[str]:
    """The terms under which another file's import may name `path` (see _terms_of)."""
    base = posixpath.basename(path)
    keys = {base.split(".", 1)[0], posixpath.splitext(base)[0]}
    if _BY_DIRECTORY.search(path):
        keys.add(posixpath.basename(posixpath.dirname(path)))
    return keys - {""}


def update_terms(conn: sqlite3.Connection, rev: str, *, removed: Iterable[str] = (),
                 added: dict[str, str] | None = None) -> None:
    """Bring graph_terms to graph_files at `rev`: drop `removed` paths, (re)write `added`
    ({path: blob}); everything when the terms were never written or are for another revision
    than the one before. Call inside the transaction that rewrites graph_files."""
    for statement in TERMS_TABLE:  # not executescript: that would commit the caller's transaction
        conn.execute(statement)
    current = store.get_meta(conn, "graph_terms_rev")
    previous = store.get_meta(conn, "graph_rev")
    if added is None or current is None or current != previous:
        conn.execute("DELETE FROM graph_terms")
        added = dict(conn.execute("SELECT path, blob FROM graph_files"))
    else:
        for _ in store.rows_in(conn, "DELETE FROM graph_terms WHERE path IN ({marks})", [*removed, *added]):
            pass  # a DELETE returns no rows: iterating runs each chunk
    by_blob: dict[str, list[str]] = defaultdict(list)
    for path, blob in added.items():
        by_blob[blob].append(path)
    rows = []
    for blob, data in store.rows_in(conn, "SELECT blob, data FROM blob_parse WHERE full=1 AND blob IN ({marks})",
                                    sorted(by_blob)):
        text = unpack_parse(data)
        for path in by_blob[blob]:
            rows += _terms_of(path, text)
        if len(rows) >= 50_000:  # a monorepo's whole tree is millions of terms: written as they come
            conn.executemany("INSERT OR REPLACE INTO graph_terms VALUES (?, ?, ?, ?)", rows)
            rows = []
    conn.executemany("INSERT OR REPLACE INTO graph_terms VALUES (?, ?, ?, ?)", rows)
    store.set_meta(conn, "graph_terms_rev", rev)


def _has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='graph_terms'").fetchone() is not None


def terms_ready(conn: sqlite3.Connection) -> bool:
    """Whether graph_terms describes the indexed graph (an index from before they existed has none)."""
    rev = store.get_meta(conn, "graph_rev")
    return rev is not None and store.get_meta(conn, "graph_terms_rev") == rev and _has_table(conn)


# --- loading what a question reaches -------------------------------------------------------------

_paths_cache: dict[tuple[str, str], PathSet] = {}


def _all_paths(conn: sqlite3.Connection, rev: str) -> PathSet:
    """Every graph path and import-resolution aux path: imports resolve as in the whole graph."""
    from rcahook.codegraph.graph import db_file
    from rcahook.codegraph.imports import PathSet

    key = (db_file(conn), rev)
    found = _paths_cache.get(key)
    if found is None:
        aux = json.loads(store.get_meta(conn, "graph_aux_paths", "[]"))
        found = PathSet([p for (p,) in conn.execute("SELECT path FROM graph_files")] + aux)
        _paths_cache.clear()  # one revision of one index: a server moves on with its index
        _paths_cache[key] = found
    return found


class _Loader:
    def __init__(self, conn: sqlite3.Connection):
        from rcahook.codegraph.graph import FANOUT_CAP

        self.conn = conn
        self.rev = store.get_meta(conn, "graph_rev")
        self.paths = _all_paths(conn, self.rev or "")
        self.cap = FANOUT_CAP
        self.lang: dict[str, str] = {}
        self.data: dict[str, tuple] = {}  # path -> the loaded file, decoded (graph.raw_from_json)
        self.closed: set[str] = set()
        self.counts: dict[tuple[str, str], int] = {}  # (family, name) -> definitions in the tree
        self._defining: dict[str, list[tuple[str, str, int]]] = {}  # name -> (path, family, n)

    # -- queries --
    def _rows(self, sql: str, values: Iterable[str]) -> list[tuple]:
        return list(store.rows_in(self.conn, sql, values))

    def defining(self, names: Iterable[str]) -> dict[str, list[tuple[str, str, int]]]:
        """name -> [(path, family, definitions)] over the whole tree (by plain name)."""
        todo = [n for n in set(names) if n not in self._defining]
        for n in todo:
            self._defining[n] = []
        for term, path, n, lang in self._rows(
                "SELECT t.term, t.path, t.n, g.lang FROM graph_terms t JOIN graph_files g ON g.path = t.path"
                f" WHERE t.kind = {DEFINES} AND t.term IN ({{marks}})", todo):
            family = _FAMILY.get(lang, lang)
            self._defining[term].append((path, family, n))
            self.counts[(family, term)] = self.counts.get((family, term), 0) + n
        return {n: self._defining[n] for n in names}

    def paths_with(self, kind: int, terms: Iterable[str]) -> set[str]:
        return {p for (p,) in self._rows(
            f"SELECT DISTINCT path FROM graph_terms WHERE kind = {kind} AND term IN ({{marks}})", list(terms))}

    def callers_of(self, named: dict[tuple[str, str], set[str]]) -> set[str]:
        """The files that may call a definition of `named` ((family, name) -> files defining
        one): those of the family referencing the name, and where the tree has more of its
        definitions than the fan-out cap (a call then resolves only to what the caller sees),
        only those that can see a defining file: the same directory, or an import of it."""
        self.defining({name for _, name in named})
        referencing: dict[tuple[str, str], set[str]] = defaultdict(set)
        for term, p, lang in self._rows(
                "SELECT t.term, t.path, g.lang FROM graph_terms t JOIN graph_files g ON g.path = t.path"
                f" WHERE t.kind = {REFERENCES} AND t.term IN ({{marks}})", [name for _, name in named]):
            key = (_FAMILY.get(lang, lang), term)
            if key in named:
                referencing[key].add(p)
        found: set[str] = set()
        for key, files in referencing.items():
            if self.counts.get(key, 0) <= self.cap:
                found |= files
            else:
                found |= files & set().union(*(self.seeing(p) for p in named[key]))
        return found

    def seeing(self, path: str) -> set[str]:
        """The files to which `path`'s definitions are visible before the whole tree: its
        directory, its importers, and for C, the includers of its header (graph._choose)."""
        directory = posixpath.dirname(path)
        found = set(self.paths.files_in(directory)) | self.importers(path)
        if _FAMILY.get(self.lang.get(path, ""), "") == "c":
            stem = path.rsplit(".", 1)[0]
            siblings = [p for p in self.paths.files_in(directory) if p != path and p.rsplit(".", 1)[0] == stem]
            self.load(siblings)
            for sibling in siblings:
                if sibling in self.lang:
                    found |= self.importers(sibling)
        return found

    def importers(self, path: str) -> set[str]:
        """The files whose imports resolve to `path` (candidates by import terms, then checked)."""
        family = _FAMILY.get(self.lang[path], self.lang[path])
        candidates = {p for p, lang in self._rows(
            "SELECT DISTINCT t.path, g.lang FROM graph_terms t JOIN graph_files g ON g.path = t.path"
            f" WHERE t.kind = {IMPORTS} AND t.term IN ({{marks}})", list(import_keys(path)))
            if _FAMILY.get(lang, lang) == family and p != path}
        self.load(candidates)
        found = set()
        for p in candidates & self.data.keys():
            lang, _, _, imports = self.data[p]
            if any(path in self.paths.resolved(p, imp, lang) for imp in imports):
                found.add(p)
        return found

    # -- loading --
    def load(self, paths: Iterable[str]) -> None:
        from rcahook.codegraph.graph import raw_from_json

        todo = [p for p in set(paths) if p not in self.data]
        for path, lang, data in self._rows(
                "SELECT g.path, g.lang, b.data FROM graph_files g JOIN blob_parse b ON b.blob = g.blob AND b.full = 1"
                " WHERE g.path IN ({marks})", todo):
            self.data[path] = raw_from_json(unpack_parse(data))
            self.lang[path] = lang

    def close(self, paths: Iterable[str]) -> None:
        """Load every definition the calls of `paths` may resolve to, so they resolve as in the
        whole graph: all of a name's definitions, or where the tree has more than the fan-out
        cap (a call then resolves only to what the caller can see), those it can see."""
        paths = [p for p in set(paths) if p not in self.closed]
        self.load(paths)
        paths = [p for p in paths if p in self.data]
        refs_of = {p: self.data[p] for p in paths}
        defining = self.defining({r[0] for raw in refs_of.values() for r in raw[2]})
        wanted: set[str] = set()
        for path, (lang, _, refs, imports) in refs_of.items():
            family = _FAMILY.get(lang, lang)
            visible: set[str] | None = None
            for name in {r[0] for r in refs}:
                places = [(p, n) for p, f, n in defining[name] if f == family]
                if sum(n for _, n in places) <= self.cap:
                    wanted.update(p for p, _ in places)
                    continue
                if visible is None:  # the tiers before the whole tree: imports, the file, its directory
                    visible = {t for imp in imports for t in self.paths.resolved(path, imp, lang)}
                    if family == "c":
                        visible |= {f"{p.rsplit('.', 1)[0]}.{ext}" for p in visible for ext in ("c", "cc", "cpp")}
                directory = posixpath.dirname(path)
                wanted.update(p for p, _ in places
                              if p == path or p in visible or posixpath.dirname(p) == directory)
        self.load(wanted)
        self.closed.update(paths)

    def too_wide(self) -> bool:
        return len(self.data) > WHOLE_SHARE * len(self.paths.paths)

    def past_budget(self) -> bool:
        return len(self.data) > LARGE_BUDGET

    def graph(self) -> CodeGraph:
        from rcahook.codegraph.graph import CodeGraph

        return CodeGraph.partial(self.data, paths=self.paths, calls_from=self.closed, candidates=self.counts,
                                 rev=self.rev)


def neighbourhood(conn: sqlite3.Connection, *, names: Iterable[str], paths: Iterable[str],
                  depth: int) -> CodeGraph:
    """A graph in which every node within `depth` edges of the definitions named `names` or in
    the files `paths` has the same distance, definitions and callers as in the whole graph
    (past LARGE_BUDGET files loaded: within the depth reached before that)."""
    loader = _Loader(conn)
    if len(loader.paths.paths) <= SMALL_TREE:
        return _whole(conn)
    names = set(names)
    starts_files = loader.paths_with(DEFINES, names) | loader.paths_with(QUALIFIED, names) | set(paths)
    loader.load(starts_files)
    graph = loader.graph()
    if loader.past_budget():
        return graph  # the starts alone are past the budget: exact at depth 0

    def starts() -> list[str]:
        found = [n for name in sorted(names) for n in graph.definitions_named(name)]
        return found + [n for path in paths for n in graph.definitions_in(path)]

    for level in range(depth):
        dist = graph.distances_from(starts(), level)
        frontier = [n for n, d in dist.items() if d == level]
        to_close: set[str] = set()
        to_load: set[str] = set()
        named: dict[tuple[str, str], set[str]] = defaultdict(set)  # calls resolve within a family
        for node in frontier:
            data = graph.node(node)
            path = data["path"]
            to_close.add(path)
            if data["kind"] == "file":
                _, _, _, imports = loader.data[path]
                to_load.update(t for imp in imports for t in loader.paths.resolved(path, imp, data["lang"]))
                to_load.update(loader.importers(path))
            else:
                named[(_FAMILY.get(data["lang"], data["lang"]), data["name"])].add(path)
        callers = loader.callers_of(named)
        loader.load(to_load | callers)
        loader.close(to_close | callers)
        if loader.past_budget():
            return graph  # this level's graph: exact to `level` edges (LARGE_BUDGET)
        if loader.too_wide():
            return _whole(conn)
        graph = loader.graph()
    return graph


def _referencing_files(loader: _Loader, names: set[str]) -> dict[str, int]:
    """name -> files referencing it: what callers_counts answers when the callers' files are
    past LARGE_BUDGET on a large tree (336 names of a 100-commit push reached 13,789 files at
    1M synthetic commits: 49 s). A proxy for callers, read from the terms alone."""
    counts: dict[str, int] = defaultdict(int)
    for term, _ in loader._rows(
            f"SELECT term, path FROM graph_terms WHERE kind = {REFERENCES} AND term IN ({{marks}})", list(names)):
        counts[term] += 1
    return dict(counts)


def _whole(conn: sqlite3.Connection) -> CodeGraph:
    from rcahook.codegraph.graph import load_graph

    return load_graph(conn)


def callers_counts(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    """name -> callers of what it names (CodeGraph.callers), for those with any."""
    loader = _Loader(conn)
    names = set(names)
    large = len(loader.paths.paths) > SMALL_TREE
    loader.load(loader.paths_with(DEFINES, names) | loader.paths_with(QUALIFIED, names))
    if large and loader.past_budget():
        return _referencing_files(loader, names)
    graph = loader.graph()
    named: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name in names:
        for node in graph.definitions_named(name):
            data = graph.node(node)
            named[(_FAMILY.get(data["lang"], data["lang"]), data["name"])].add(data["path"])
    callers = loader.callers_of(named)
    if large and len(callers | set(loader.data)) > LARGE_BUDGET:
        return _referencing_files(loader, names)
    loader.close(callers)
    # the callers' files are all loaded and closed, so the partial graph's counts are exact;
    # the whole graph is only cheaper to build when they are much of a small tree
    graph = _whole(conn) if loader.too_wide() and len(loader.paths.paths) <= SMALL_TREE else loader.graph()
    counts = {}
    for name in names:
        n = len(graph.callers(name))
        if n:
            counts[name] = n
    return counts

"""The code graph: files and definitions as nodes; contains, imports and calls as edges.

Nodes are `file:<path>` and `def:<path>:<qualname>`. Calls are resolved by name, preferring
the definitions the caller can see (its imports, its file, its directory); a name with too
many equally good candidates is recorded as ambiguous instead of fanning out to all of them.
"""
from __future__ import annotations

import functools
import json
import posixpath
import re
import sqlite3
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from rcahook.codegraph.build import unpack_parse
from rcahook.codegraph.imports import PathSet
from rcahook.index import store

if TYPE_CHECKING:
    from rcahook.codegraph.parse import ParsedFile
    from rcahook.index.gitrepo import Repo

# More candidates than this at the best tier: the call is ambiguous (`init`, `main`, `get`),
# and an edge to each would make everything near everything.
FANOUT_CAP = 5
# Calls only resolve within a family: a Python call never lands on a C function of the same name.
_FAMILY = {"cpp": "c", "typescript": "javascript", "tsx": "javascript"}
_SELF = frozenset({"self", "cls", "this", "super"})


def file_node(path: str) -> str:
    return f"file:{path}"


def def_node(path: str, qualname: str) -> str:
    return f"def:{path}:{qualname}"


class _Import(NamedTuple):
    """What import resolution reads of a parse.Import (decoded without loading the parser)."""
    module: str
    names: tuple[str, ...]
    line: int
    relative_level: int = 0


# One file as the graph needs it: language, definitions (name, qualname, kind, start, end),
# references (name, scope qualname, qualifier) and imports.
_Raw = tuple[str, list[tuple[str, str, str, int, int]], list[tuple[str, str | None, str | None]], list]


def _raw_from_parsed(parsed: ParsedFile) -> _Raw:
    return (parsed.lang, [(d.name, d.qualname, d.kind, d.start, d.end) for d in parsed.definitions],
            [(r.name, r.scope, r.qualifier) for r in parsed.references], list(parsed.imports))


def raw_from_json(data: str) -> _Raw:
    # ParsedFile.to_json's layout, read without building a dataclass per reference
    lang, defs, refs, imps = json.loads(data)
    definitions = [(d[0], d[4] if len(d) > 4 else d[0], d[1], d[2], d[3]) for d in defs]
    qualnames = [d[1] for d in definitions]
    references = [(r[0], qualnames[r[2]] if r[2] is not None else None, r[3]) for r in refs]
    imports = [_Import(i[0], tuple(i[1]), i[2], i[3] if len(i) > 3 else 0) for i in imps]
    return lang, definitions, references, imports


class CodeGraph:
    """A networkx DiGraph (`.graph`) with the lookups the rest of rcahook asks for."""

    def __init__(self, files: Mapping[str, ParsedFile], *, rev: str | None = None,
                 aux_paths: Iterable[str] = ()):
        self._init({p: _raw_from_parsed(pf) for p, pf in files.items()}, rev, aux_paths)

    @classmethod
    def from_json(cls, files: Mapping[str, str], *, rev: str | None = None,
                  aux_paths: Iterable[str] = ()) -> CodeGraph:
        """From {path: ParsedFile JSON}, as the parse cache holds it."""
        graph = cls.__new__(cls)
        graph._init({p: raw_from_json(data) for p, data in files.items()}, rev, aux_paths)
        return graph

    @classmethod
    def partial(cls, files: Mapping[str, _Raw], *, paths: PathSet, calls_from: set[str],
                candidates: Mapping[tuple[str, str], int], rev: str | None = None) -> CodeGraph:
        """A graph over some of the tree's files (codegraph/local.py chooses which, decoded with
        raw_from_json): `paths` is
        every path of the tree (imports resolve as in the whole graph), calls are resolved only
        from the files in `calls_from` (whose candidate definitions were all loaded), and
        `candidates` gives how many definitions a (family, name) has in the whole tree, so a call
        that is ambiguous there stays ambiguous here."""
        graph = cls.__new__(cls)
        graph._init(dict(files), rev, (), paths=paths, calls_from=calls_from, candidates=candidates)
        return graph

    def _init(self, files: dict[str, _Raw], rev: str | None, aux_paths: Iterable[str], *,
              paths: PathSet | None = None, calls_from: set[str] | None = None,
              candidates: Mapping[tuple[str, str], int] | None = None) -> None:
        self.rev = rev
        import networkx as nx  # here, not with the module: an index update reads its helpers only

        self.graph: nx.DiGraph[str] = nx.DiGraph()
        self.ambiguous: Counter[str] = Counter()  # name -> call sites left unresolved for it
        self.unresolved_calls = 0  # calls to names with no definition in the repository
        self._by_name: dict[str, list[str]] = defaultdict(list)
        self._by_qualname: dict[str, list[str]] = defaultdict(list)
        self._by_path: dict[str, list[str]] = {}
        self._adj: dict[str, set[str]] = defaultdict(set)  # undirected, for distances
        self._edge_counts: Counter[str] = Counter()
        self._calls_from = calls_from
        self._candidates = candidates
        self._build(files, paths if paths is not None else PathSet([*files, *aux_paths]))

    # -- construction -------------------------------------------------------------------------
    def _build(self, files: dict[str, _Raw], paths: PathSet) -> None:
        nodes: list[tuple[str, dict]] = []
        edges: list[tuple[str, str, dict]] = []
        attrs: dict[str, dict] = {}  # def node -> attributes, for resolution
        contains, imports = {"kind": "contains"}, {"kind": "imports"}  # shared: edges never change kind
        for path, (lang, defs, _, _) in files.items():
            fnode = file_node(path)
            nodes.append((fnode, {"kind": "file", "name": posixpath.basename(path), "path": path,
                                  "start": 1, "end": None, "lang": lang}))
            members: list[str] = []
            stack: list[tuple[int, str]] = []  # (end line, node) of the enclosing definitions
            prefix = f"def:{path}:"
            for name, qualname, kind, start, end in sorted(defs, key=lambda d: (d[3], -d[4])):
                node = prefix + qualname
                if node in attrs:  # the same name twice in one file (#ifdef branches): keep the first
                    continue
                a = {"kind": kind, "name": name, "qualname": qualname, "path": path,
                     "start": start, "end": end, "lang": lang}
                attrs[node] = a
                nodes.append((node, a))
                members.append(node)
                while stack and stack[-1][0] < end:
                    stack.pop()
                edges.append((stack[-1][1] if stack else fnode, node, contains))
                stack.append((end, node))
                self._by_name[name].append(node)
                if qualname != name:
                    self._by_qualname[qualname].append(node)
            self._by_path[path] = members
        imports_of: dict[str, set[str]] = {}
        # path -> name a file is imported under (from m import name, import a.b, Go's last
        # path element) -> files: `name()` and `name.f()` mean those files first
        named: dict[str, dict[str, set[str]]] = {}
        for path, (lang, _, _, imps) in files.items():
            targets: set[str] = set()
            by_name: dict[str, set[str]] = defaultdict(set)
            for imp in imps:
                found = paths.resolved(path, imp, lang)
                if not found:
                    continue
                targets.update(found)
                for key in imp.names or (imp.module, re.split(r"[./:]+", imp.module)[-1]):
                    by_name[key].update(found)
            targets.discard(path)
            imports_of[path] = targets
            named[path] = by_name
            edges.extend((file_node(path), file_node(t), imports) for t in sorted(targets))
        self.graph.add_nodes_from(nodes)
        self._add_edges(edges)
        self._resolve_calls(files, attrs, imports_of, named)

    def _add_edges(self, edges: list[tuple[str, str, dict]]) -> None:
        self.graph.add_edges_from(edges)
        for a, b, data in edges:
            self._adj[a].add(b)
            self._adj[b].add(a)
            self._edge_counts[data["kind"]] += 1

    def _resolve_calls(self, files: dict[str, _Raw], attrs: dict[str, dict],
                       imports_of: dict[str, set[str]], named: dict[str, dict[str, set[str]]]) -> None:
        by_family: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name, nodes in self._by_name.items():
            for node in nodes:
                by_family[(_FAMILY.get(attrs[node]["lang"], attrs[node]["lang"]), name)].append(node)
        calls: Counter[tuple[str, str]] = Counter()
        for path, (lang, _, refs, _) in files.items():
            if self._calls_from is not None and path not in self._calls_from:
                continue  # a partial graph: this file's candidates may not all be loaded
            family = _FAMILY.get(lang, lang)
            visible = imports_of[path]
            if family == "c":  # a header's functions are mostly defined in the .c file beside it
                visible = visible | {f"{p.rsplit('.', 1)[0]}.{ext}" for p in visible for ext in ("c", "cc", "cpp")}
            directory = posixpath.dirname(path)
            imported_as = named[path] if family != "c" else {}
            memo: dict[tuple, tuple[str, ...] | None] = {}  # () is never a value: a miss
            fnode = file_node(path)
            prefix = f"def:{path}:"
            for name, scope, qualifier in refs:
                candidates = by_family.get((family, name))
                if not candidates:
                    self.unresolved_calls += 1
                    continue
                own = scope if qualifier in _SELF else None
                via = qualifier if qualifier in imported_as else name if name in imported_as else None
                key = (name, own, via)
                targets = memo.get(key, ())
                if targets == ():
                    total = (self._candidates.get((family, name), len(candidates))
                             if self._candidates is not None else len(candidates))
                    targets = memo[key] = _choose(candidates, attrs, family, path, directory, visible, own,
                                                  imported_as.get(via, ()) if via is not None else (), total)
                if targets is None:
                    self.ambiguous[name] += 1
                    continue
                source = prefix + scope if scope else fnode
                if scope and source not in attrs:
                    source = fnode
                for target in targets:
                    calls[(source, target)] += 1
        new = []
        for (a, b), n in calls.items():
            data = self.graph.get_edge_data(a, b) if b in self._adj[a] else None
            if data is None:
                new.append((a, b, {"kind": "calls", "calls": n}))
            else:  # a file calling what it contains: one edge, both facts
                data["calls"] = n
                self._edge_counts["calls"] += 1
        self._add_edges(new)

    # -- lookups ------------------------------------------------------------------------------
    def __contains__(self, node: str) -> bool:
        return node in self.graph

    def node(self, node: str) -> dict:
        return self.graph.nodes[node]

    def definitions_named(self, name: str) -> list[str]:
        """Definitions whose name, or qualified name (Class.method), is `name`."""
        return sorted({*self._by_name.get(name, ()), *self._by_qualname.get(name, ())})

    def definitions_in(self, path: str) -> list[str]:
        return list(self._by_path.get(path, ()))

    def has_path(self, path: str) -> bool:
        return path in self._by_path

    def resolve(self, name: str) -> list[str]:
        """A node id, a qualified name or a name, to the nodes it names."""
        if name in self.graph:
            return [name]
        if name in self._by_path:
            return [file_node(name)]
        return self.definitions_named(name)

    def callers(self, name: str) -> list[str]:
        """Definitions (or files, for top-level code) that call what `name` names."""
        found: set[str] = set()
        for target in self.resolve(name):
            found.update(p for p, data in self.graph.pred[target].items() if "calls" in data)
        return sorted(found)

    def callees(self, node: str) -> list[str]:
        found: set[str] = set()
        for source in self.resolve(node):
            found.update(s for s, data in self.graph.succ[source].items() if "calls" in data)
        return sorted(found)

    def distances_from(self, nodes: Iterable[str], max_depth: int = 4) -> dict[str, int]:
        """node -> edges to the nearest of `nodes` (undirected), for those within max_depth.

        One breadth-first search answers every later "how far is X" by a dict lookup.
        """
        adj = self._adj
        dist = {n: 0 for n in nodes if n in self.graph}
        frontier = list(dist)
        for depth in range(1, max_depth + 1):
            following = []
            for n in frontier:
                for m in adj.get(n, ()):
                    if m not in dist:
                        dist[m] = depth
                        following.append(m)
            if not following:
                break
            frontier = following
        return dist

    def distance(self, nodes_a: Iterable[str], nodes_b: Iterable[str], max_depth: int = 4) -> int | None:
        """Fewest edges (undirected) between the two sets, or None beyond max_depth."""
        targets = {n for n in nodes_b if n in self.graph}
        adj = self._adj
        seen = {n for n in nodes_a if n in self.graph}
        if not targets or not seen:
            return None
        if seen & targets:
            return 0
        frontier = list(seen)
        for depth in range(1, max_depth + 1):
            following = []
            for n in frontier:
                for m in adj.get(n, ()):
                    if m not in seen:
                        if m in targets:
                            return depth
                        seen.add(m)
                        following.append(m)
            if not following:
                return None
            frontier = following
        return None

    def neighbors(self, node_or_name: str, depth: int = 1) -> list[tuple[str, int]]:
        """(node, distance) within `depth` edges of what `node_or_name` names, nearest first."""
        start = self.resolve(node_or_name)
        dist = self.distances_from(start, depth)
        return sorted(((n, d) for n, d in dist.items() if d), key=lambda item: (item[1], item[0]))

    def stats(self) -> dict:
        languages: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "definitions": 0})
        for _, data in self.graph.nodes(data=True):
            languages[data["lang"]]["files" if data["kind"] == "file" else "definitions"] += 1
        return {
            "rev": self.rev,
            "files": len(self._by_path),
            "definitions": sum(len(v) for v in self._by_path.values()),
            "edges": {k: self._edge_counts[k] for k in ("contains", "imports", "calls")},
            "languages": {k: dict(v) for k, v in sorted(languages.items())},
            "unresolved_calls": self.unresolved_calls,
            "ambiguous_calls": sum(self.ambiguous.values()),
            "ambiguous_names": len(self.ambiguous),
        }


_dirname = functools.lru_cache(maxsize=65536)(posixpath.dirname)  # asked per call and candidate (issue 11)


def _choose(candidates: list[str], attrs: dict[str, dict], family: str, path: str, directory: str,
            visible: set[str], own_scope: str | None, via: Iterable[str],
            total: int | None = None) -> tuple[str, ...] | None:
    """The definitions a call of this name most likely means; None when too many are equally likely.

    `via`: the files the name (or its qualifier) was imported from, checked first. `total`: how
    many definitions of the name the whole tree has (a partial graph holds fewer).
    """
    total = len(candidates) if total is None else total
    def in_file(n: str) -> bool:
        return attrs[n]["path"] == path

    def imported(n: str) -> bool:
        return attrs[n]["path"] in visible

    def same_dir(n: str) -> bool:
        return _dirname(attrs[n]["path"]) == directory

    tiers: list = []
    if via:
        tiers.append(lambda n: attrs[n]["path"] in via)
    if own_scope is not None:  # self.x(), this.x(): the caller's own class first
        tiers.append(lambda n: in_file(n) and own_scope.startswith(attrs[n]["qualname"].rpartition(".")[0] + "."))
    if family in ("python", "javascript"):
        tiers += ([in_file, imported, same_dir] if own_scope is not None else [imported, in_file, same_dir])
        unique_only = True
    elif family == "c":  # the directory before the whole tree: often one program per directory
        tiers += [in_file, imported, same_dir]
        unique_only = False
    elif family == "go":  # a package is a directory
        tiers += [in_file, same_dir, imported]
        unique_only = False
    else:
        tiers += [in_file, imported, same_dir]
        unique_only = False
    for tier in tiers:
        chosen = [n for n in candidates if tier(n)]
        if chosen:
            return tuple(chosen) if len(chosen) <= FANOUT_CAP else None
    if unique_only:
        return (candidates[0],) if total == 1 else None
    return tuple(candidates) if total <= FANOUT_CAP else None


# --- loading from the index -----------------------------------------------------------------------

def db_file(conn: sqlite3.Connection) -> str:
    return conn.execute("PRAGMA database_list").fetchone()[2] or f"memory:{id(conn)}"


def _json_of(conn: sqlite3.Connection, blobs: Iterable[str]) -> dict[str, str]:
    """{blob: ParsedFile JSON} of the cached full parses of `blobs`."""
    return {blob: unpack_parse(data) for blob, data in store.rows_in(
        conn, "SELECT blob, data FROM blob_parse WHERE full=1 AND blob IN ({marks})", sorted(set(blobs)))}


_loaded: dict[tuple[str, str | None], CodeGraph] = {}
_at: OrderedDict[tuple[str, str], CodeGraph] = OrderedDict()
_AT_CACHE = 2  # graphs at other revisions kept: the backtest walks fixes one after another


def load_graph(conn: sqlite3.Connection) -> CodeGraph:
    """The indexed graph (`rcahook index` builds it), once per process and revision."""
    rev = store.get_meta(conn, "graph_rev")
    key = (db_file(conn), rev)
    graph = _loaded.get(key)
    if graph is None:
        files = {path: unpack_parse(data) for path, data in conn.execute(
            "SELECT g.path, b.data FROM graph_files g JOIN blob_parse b ON b.blob = g.blob AND b.full = 1")}
        aux = json.loads(store.get_meta(conn, "graph_aux_paths", "[]"))
        graph = CodeGraph.from_json(files, rev=rev, aux_paths=aux)
        # returned from the local: another thread (rcahook serve) may clear the cache meanwhile
        _loaded.clear()
        _loaded[key] = graph
    return graph


def forget_loaded(conn: sqlite3.Connection) -> None:
    """Drop this database's loaded graph: its files were just rewritten (same revision or not)."""
    db = db_file(conn)
    for key in [k for k in _loaded if k[0] == db]:
        del _loaded[key]


def graph_at(conn: sqlite3.Connection, repo: Repo, rev: str) -> CodeGraph:
    """The graph at any revision, from the parse cache (parsing what it lacks)."""
    from rcahook.codegraph.build import tree_at

    sha = repo.resolve(rev)
    if sha == store.get_meta(conn, "graph_rev"):
        return load_graph(conn)
    key = (db_file(conn), sha)
    if key in _at:
        _at.move_to_end(key)
        return _at[key]
    files, aux = tree_at(conn, repo, sha)
    data = _json_of(conn, files.values())
    graph = CodeGraph.from_json({p: data[b] for p, b in files.items() if b in data}, rev=sha, aux_paths=aux)
    _at[key] = graph
    while len(_at) > _AT_CACHE:
        _at.popitem(last=False)
    return graph

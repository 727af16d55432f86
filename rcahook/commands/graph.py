"""`rcahook graph stats|symbols|callers|neighbors`: query the code graph (JSON: docs/graph.md)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rcahook.commands.common import console, index_path, open_repo, print_json
from rcahook.errors import BadInputError, IndexMissingError, NotFoundError
from rcahook.index import store
from rcahook.untrusted import term_text

if TYPE_CHECKING:
    from rcahook.codegraph.graph import CodeGraph

_NODE_FIELDS = ("kind", "name", "qualname", "path", "start", "end", "lang")


def run(*, action: str, repo: str, db: str | None, at: str | None, fmt: str, path: str | None = None,
        name: str | None = None, depth: int = 1) -> int:
    from rcahook.codegraph.graph import graph_at, load_graph

    r = open_repo(repo)
    conn = store.open_index(index_path(r, db), create=False)
    try:
        if at is not None:
            graph = graph_at(conn, r, at)
        elif store.get_meta(conn, "graph_rev") is None:
            raise IndexMissingError("the index has no code graph; run `rcahook index` (without --no-graph)")
        else:
            graph = load_graph(conn)
        if action == "stats":
            from rcahook.codegraph.build import graph_skip_counts

            data = graph.stats()
            data["skipped"] = graph_skip_counts(conn) if at is None else None
            if fmt == "json":
                print_json(data)
            else:
                _show_stats(data)
        elif action == "symbols":
            _symbols(graph, _required(path, "PATH"), fmt)
        elif action == "callers":
            _callers(graph, _required(name, "NAME"), fmt)
        elif action == "neighbors":
            _neighbors(graph, _required(name, "NAME"), depth, fmt)
        else:
            raise AssertionError(f"unknown graph action {action!r}")
    finally:
        conn.close()
    return 0


def _required(value: str | None, what: str) -> str:
    if value is None:  # the CLI makes the argument required; this is for direct callers
        raise BadInputError(f"rcahook graph: missing the {what} argument")
    return value


def _node(graph: CodeGraph, node: str, **extra: Any) -> dict[str, Any]:
    data = graph.node(node)
    out: dict[str, Any] = {"node": node}
    out.update({k: data.get(k) for k in _NODE_FIELDS})
    out.update(extra)
    return out


def _targets(graph: CodeGraph, name: str) -> list[str]:
    targets = graph.resolve(name)
    if not targets:
        raise NotFoundError(
            f"no definition or file named {name!r} in the code graph at {(graph.rev or '?')[:12]}; "
            "list a file's definitions with `rcahook graph symbols PATH`")
    return targets


def _symbols(graph: CodeGraph, path: str, fmt: str) -> None:
    if not graph.has_path(path):
        raise NotFoundError(
            f"{path!r} is not in the code graph at {(graph.rev or '?')[:12]} (a path from the repository root, "
            "of a supported language); check it with `git ls-tree -r --name-only HEAD`")
    symbols = [_node(graph, n) for n in graph.definitions_in(path)]
    if fmt == "json":
        print_json({"rev": graph.rev, "path": path, "lang": graph.node(f"file:{path}")["lang"], "symbols": symbols})
        return
    _table(f"{path} at {(graph.rev or '')[:12]}", ("qualname", "kind", "lines"),
           [(s["qualname"], s["kind"], f"{s['start']}-{s['end']}") for s in symbols])


def _callers(graph: CodeGraph, name: str, fmt: str) -> None:
    targets = _targets(graph, name)
    callers = []
    for caller in graph.callers(name):
        calls = sorted(t for t in graph.callees(caller) if t in targets)
        callers.append(_node(graph, caller, calls=calls))
    if fmt == "json":
        print_json({"rev": graph.rev, "name": name, "targets": [_node(graph, t) for t in targets],
                    "callers": callers, "ambiguous_calls": graph.ambiguous.get(name, 0)})
        return
    _table(f"callers of {name} ({len(targets)} definition(s)) at {(graph.rev or '')[:12]}",
           ("caller", "kind", "path", "lines", "calls"),
           [(c["qualname"] or c["path"], c["kind"], c["path"], _lines(c), ", ".join(_short(t) for t in c["calls"]))
            for c in callers])
    if graph.ambiguous.get(name):
        console().print(f"{graph.ambiguous[name]} call(s) of {name} matched too many definitions to resolve")


def _neighbors(graph: CodeGraph, name: str, depth: int, fmt: str) -> None:
    if depth < 1:
        raise BadInputError(f"--depth {depth}: expected 1 or more edges")
    targets = _targets(graph, name)
    near = [_node(graph, n, distance=d) for n, d in graph.neighbors(name, depth)]
    if fmt == "json":
        print_json({"rev": graph.rev, "name": name, "depth": depth,
                    "targets": [_node(graph, t) for t in targets], "neighbors": near})
        return
    _table(f"within {depth} edge(s) of {name} at {(graph.rev or '')[:12]}",
           ("distance", "node", "kind", "lines"),
           [(str(n["distance"]), _short(n["node"]), n["kind"], _lines(n)) for n in near])


def _show_stats(data: dict) -> None:
    _table(f"code graph at {(data['rev'] or '')[:12]}", ("language", "files", "definitions"),
           [(lang, str(v["files"]), str(v["definitions"])) for lang, v in data["languages"].items()]
           + [("total", str(data["files"]), str(data["definitions"]))])
    edges = data["edges"]
    out = console()
    out.print(f"edges: {edges['contains']} contains, {edges['imports']} imports, {edges['calls']} calls; "
              f"calls left unresolved: {data['unresolved_calls']} to names defined nowhere, "
              f"{data['ambiguous_calls']} ambiguous ({data['ambiguous_names']} names)")
    if data.get("skipped"):
        out.print("files not in the graph: " + ", ".join(f"{n} {k}" for k, n in data["skipped"].items() if n))


def _short(node: str) -> str:
    return node.split(":", 1)[1]


def _lines(n: dict) -> str:
    return f"{n['start']}-{n['end']}" if n.get("end") else ""


def _table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:  # names and paths are the repository's: never rich markup or escape sequences
        table.add_row(*(Text(term_text(cell)) for cell in row))
    console().print(table)

"""Definitions, calls and imports of one source file, read with tree-sitter.

The only module that imports tree_sitter; everything it returns is plain frozen dataclasses.
"""
from __future__ import annotations

import bisect
import importlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate, repeat
from operator import add
from typing import NamedTuple

from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from rcahook.codegraph.grammars import GRAMMARS as _GRAMMARS
from rcahook.codegraph.grammars import SUPPORTED_LANGUAGES, language_for  # noqa: F401 (re-exported)

Hunk = tuple[int, int, int, int]  # a diff hunk: old_start, old_lines, new_start, new_lines


@dataclass(frozen=True)
class Definition:
    name: str
    qualname: str  # dotted with the enclosing definitions; C names are never qualified
    kind: str
    start: int  # 1-based, inclusive
    end: int


@dataclass(frozen=True)
class Reference:
    name: str
    kind: str
    line: int
    scope: str | None  # qualname of the innermost enclosing definition
    qualifier: str | None  # "a" in a.b(), only when it is a plain name path


@dataclass(frozen=True)
class Import:
    module: str
    names: tuple[str, ...]
    line: int
    # Python: leading dots. C/C++: 1 for #include "x.h" (searched next to the includer first).
    relative_level: int = 0


@dataclass(frozen=True)
class ParsedFile:
    lang: str
    definitions: tuple[Definition, ...]
    references: tuple[Reference, ...]
    imports: tuple[Import, ...]

    def to_json(self) -> str:
        # Stored for every blob version, so positional lists; a qualname equal to the name,
        # the "call" kind and a zero relative level are left out, a scope is a definition index.
        index: dict[str, int] = {}
        for i, d in enumerate(self.definitions):
            index.setdefault(d.qualname, i)
        defs = [[d.name, d.kind, d.start, d.end] + ([d.qualname] if d.qualname != d.name else [])
                for d in self.definitions]
        refs = [[r.name, r.line, index.get(r.scope) if r.scope else None, r.qualifier]
                + ([r.kind] if r.kind != "call" else []) for r in self.references]
        imps = [[i.module, list(i.names), i.line] + ([i.relative_level] if i.relative_level else [])
                for i in self.imports]
        return json.dumps([self.lang, defs, refs, imps], separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> ParsedFile:
        lang, defs, refs, imps = json.loads(s)
        definitions = tuple(Definition(d[0], d[4] if len(d) > 4 else d[0], d[1], d[2], d[3]) for d in defs)
        references = tuple(
            Reference(r[0], r[4] if len(r) > 4 else "call", r[1],
                      definitions[r[2]].qualname if r[2] is not None else None, r[3])
            for r in refs)
        imports = tuple(Import(i[0], tuple(i[1]), i[2], i[3] if len(i) > 3 else 0) for i in imps)
        return cls(lang, definitions, references, imports)


# A definition's lines include these wrappers (decorators, template headers).
_WRAPPERS = frozenset({"decorated_definition", "template_declaration"})
# A function directly inside one of these is a method.
_CLASS_KINDS = frozenset({"class", "struct", "union", "interface", "enum", "trait", "impl"})
# Names of these do not prefix the qualnames of what they contain.
_UNSCOPED_KINDS = frozenset({"type", "macro"})
_PLAIN_PATH = re.compile(r"[\w$]+(?:(?:\.|->|::|\?\.)[\w$]+)*")
_LAST_SEPARATOR = re.compile(r"(?:(.*)(?:::|\.))?(.*)", re.DOTALL)


@cache
def _language(lang: str) -> Language:
    grammar = _GRAMMARS[lang]
    return Language(getattr(importlib.import_module(grammar.module), grammar.function)())


@cache
def _query(lang: str, part: str) -> Query:
    grammar = _GRAMMARS[lang]
    # Calls and imports share one query: one walk over the tree instead of two.
    return Query(_language(lang), grammar.defs if part == "defs" else grammar.calls + grammar.imports)


# --- parsing with reuse of the previous version's tree -----------------------------------------
# Callers parse successive versions of the same path; an incremental re-parse of the edited
# region is ~100x faster than a fresh parse. Parsers and trees are per thread (not thread-safe).
# With the tree, the cache keeps the version's raw definitions: where the language allows,
# the next version re-reads only the parts of the tree that changed (see _partial_definitions).
_NUMPY_LINES_FROM = 16384  # bytes: _line_starts of a smaller text splits it
_DIFF_MIN_SPAN = 4096  # bytes: an edit spanning less is re-parsed as one, without a line diff
_TREE_CACHE_BYTES = 1_000_000  # of source kept; a tree takes roughly 60 times its source
_local = threading.local()

# (start_byte, -end_byte, name, scope, kind, first line, last line): a definition as matched,
# before nesting gives it a qualname; ordered as sorted() orders them, outer before inner.
_RawDef = tuple[int, int, str, str, str, int, int]


class _Edit(NamedTuple):
    old_start: int  # bytes of the old text replaced: old_start..old_end
    old_end: int
    new_start: int  # by new_start..new_end of the new text
    new_end: int
    rows: int  # lines added (or, negative, removed)
    kwargs: dict  # Tree.edit's arguments, in the coordinates of the edits before it applied


class _Reuse(NamedTuple):
    raw: list[_RawDef]  # the previous version's
    edits: list[_Edit]
    changed: list[tuple[int, int]]  # byte ranges of the new text whose syntax may differ, merged


def _parse_tree(lang: str, path: str, data: bytes, hunks: Sequence[Hunk] | None = None,
                ) -> tuple[Tree, _Reuse | list[_RawDef] | None]:
    """The tree, and what is known of its definitions: all of them (the same text as the cached
    version), the previous version's with the edits between (a re-parse), or nothing."""
    if not hasattr(_local, "trees"):
        _local.parsers, _local.trees, _local.size = {}, {}, 0  # size: bytes of source in trees
    parser = _local.parsers.get(lang) or _local.parsers.setdefault(lang, Parser(_language(lang)))
    key = (lang, path)
    old = _local.trees.pop(key, None)
    if old is not None:
        _local.size -= len(old[0])
    known: _Reuse | list[_RawDef] | None = None
    starts = None  # line offsets, kept for the next version's hunks
    if old is None:
        tree = parser.parse(data)
    elif old[0] == data:
        tree, known, starts = old[1], old[2], old[3]
    else:
        edits = None
        if hunks:
            old_starts = old[3] or _line_starts(old[0])
            starts = _line_starts(data)
            edits = _hunk_edits(old[0], data, hunks, old_starts, starts)
        edits = edits or _diff_edits(old[0], data)
        old_tree = old[1]
        for edit in edits:
            old_tree.edit(**edit.kwargs)
        tree = parser.parse(data, old_tree)
        if old[2] is not None and (lang in _SPLIT or _GRAMMARS[lang].containers is not None):
            changed = [(r.start_byte, r.end_byte) for r in old_tree.changed_ranges(tree)]
            changed += [(e.new_start, e.new_end) for e in edits]
            known = _Reuse(old[2], edits, _merge_ranges(changed))
    _local.trees[key] = [data, tree, None, starts]  # + its definitions, once read
    _local.size += len(data)
    while _local.size > _TREE_CACHE_BYTES and len(_local.trees) > 1:
        _local.size -= len(_local.trees.pop(next(iter(_local.trees)))[0])
    return tree, known


def _remember_definitions(lang: str, path: str, raw: list[_RawDef]) -> None:
    entry = _local.trees.get((lang, path))
    if entry is not None:
        entry[2] = raw


def _edit(old: bytes, new: bytes) -> _Edit:
    """old -> new as one edit spanning everything between equal ends."""
    prefix = _common_prefix(old, new)
    suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
    old_end, new_end = len(old) - suffix, len(new) - suffix
    kwargs = dict(start_byte=prefix, old_end_byte=old_end, new_end_byte=new_end,
                  start_point=_point(old, prefix), old_end_point=_point(old, old_end),
                  new_end_point=_point(new, new_end))
    rows = new.count(b"\n", prefix, new_end) - old.count(b"\n", prefix, old_end)
    return _Edit(prefix, old_end, prefix, new_end, rows, kwargs)


def _diff_edits(old: bytes, new: bytes) -> list[_Edit]:
    """old -> new as edits: one spanning everything between equal ends when that is little; else
    one per region a line diff finds (versions far apart: an older commit of the path, another
    branch's). Tree-sitter then re-parses the changed regions only: over the versions of
    iproute2's files that culprit links name, 4 to 6 times faster than parsing each from nothing."""
    whole = _edit(old, new)
    if whole.old_end - whole.old_start < _DIFF_MIN_SPAN:
        return [whole]
    from rcahook.index.gitrepo import line_diff  # where libgit2 is

    hunks = line_diff(old, new)
    return (_hunk_edits(old, new, hunks) if hunks else None) or [whole]


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _line_starts(data: bytes) -> list[int]:
    """Offsets where each line starts, then the end: line i is data[starts[i]:starts[i + 1]]."""
    if len(data) < _NUMPY_LINES_FROM:
        starts = list(accumulate(map(add, map(len, data.split(b"\n")), repeat(1)), initial=0))
        starts.pop()  # past the end
    else:
        # numpy finds the newlines 4 to 5 times faster than a split (70 kB: 0.07 ms against 0.34);
        # imported here, on the first large file, not with the module (0.1 s an index update of
        # a few small files would pay for nothing)
        import numpy

        starts = (numpy.flatnonzero(numpy.frombuffer(data, dtype=numpy.uint8) == 10) + 1).tolist()
        starts.insert(0, 0)
    if data and data[-1:] != b"\n":
        starts.append(len(data))  # a last line without its newline
    return starts


def _hunk_edits(old: bytes, new: bytes, hunks: Sequence[Hunk], old_starts: list[int] | None = None,
                new_starts: list[int] | None = None) -> list[_Edit] | None:
    """One edit per diff hunk, or None when the hunks do not turn old into new.

    A commit's edits are often far apart (an include at the top, a function at the bottom); as
    one edit they would span, and re-parse, everything between. The text between hunks is
    compared, so a wrong guess about which version the cached tree holds costs a fallback, never
    a wrong tree.
    """
    old_starts = old_starts or _line_starts(old)
    new_starts = new_starts or _line_starts(new)
    edits = []
    old_pos = new_pos = 0  # ends of the previous hunk
    for old_start, old_lines, new_start, new_lines in sorted(hunks):
        # with zero context, an empty side's start is the line before the change
        first_old = old_start - 1 if old_lines else old_start
        first_new = new_start - 1 if new_lines else new_start
        if not (first_old >= 0 and first_old + old_lines < len(old_starts)
                and first_new >= 0 and first_new + new_lines < len(new_starts)):
            return None
        old_a, old_b = old_starts[first_old], old_starts[first_old + old_lines]
        new_a, new_b = new_starts[first_new], new_starts[first_new + new_lines]
        if old_a < old_pos or old_a - old_pos != new_a - new_pos or old[old_pos:old_a] != new[new_pos:new_a]:
            return None
        start = (first_new, 0)
        kwargs = dict(start_byte=new_a, old_end_byte=new_a + old_b - old_a, new_end_byte=new_b,
                      start_point=start, old_end_point=_advance(start, old[old_a:old_b]),
                      new_end_point=_advance(start, new[new_a:new_b]))
        edits.append(_Edit(old_a, old_b, new_a, new_b, new_lines - old_lines, kwargs))
        old_pos, new_pos = old_b, new_b
    if old[old_pos:] != new[new_pos:]:
        return None
    return edits or None


def _advance(point: tuple[int, int], text: bytes) -> tuple[int, int]:
    rows = text.count(b"\n")
    if not rows:
        return point[0], point[1] + len(text)
    return point[0] + rows, len(text) - text.rfind(b"\n") - 1


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search; slice comparisons run at memcmp speed
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(data: bytes, offset: int) -> tuple[int, int]:
    return data.count(b"\n", 0, offset), offset - (data.rfind(b"\n", 0, offset) + 1)


# --- extraction ---------------------------------------------------------------------------------

def parse_source(path: str, data: bytes, *, with_references: bool = True,
                 hunks: Sequence[Hunk] | None = None) -> ParsedFile | None:
    """Definitions (and, with references, calls and imports) of one file's source.

    `hunks` (old_start, old_lines, new_start, new_lines; zero context lines) describe how the
    version of `path` parsed last turned into `data`; they let the re-parse skip unchanged text.
    """
    lang = language_for(path)
    if lang is None:
        return None
    tree, known = _parse_tree(lang, path, data, hunks)
    root = tree.root_node
    if isinstance(known, list):
        raw = known
    elif known is not None:
        raw = _reuse_definitions(lang, root, known)
    else:
        raw = sorted(_raw_definition(caps) for caps in _definition_matches(lang, root))
    _remember_definitions(lang, path, raw)
    spans = _nest(lang, raw)
    definitions = tuple(d for _, _, d in spans)
    if not with_references:
        return ParsedFile(lang, definitions, (), ())
    references, imports = _references(lang, root, spans)
    return ParsedFile(lang, definitions, references, imports)


def _text(node: Node) -> str:
    # text is None only for a tree parsed from a read callback; ours are parsed from bytes
    return (node.text or b"").decode("utf-8", "replace")


def _first_named(node: Node | None) -> Node | None:
    return node.named_children[0] if node is not None and node.named_child_count else None


def _end_line(node: Node) -> int:
    # A node that swallowed its trailing newline (#define, #include) ends on the line before.
    row, column = node.end_point
    return row if column == 0 and row > node.start_point.row else row + 1


def _declarator_name(node: Node) -> Node:
    """The identifier inside a C declarator chain: *(*name)(args) -> name."""
    while True:
        inner = node.child_by_field_name("declarator")
        if inner is None and node.type == "parenthesized_declarator":
            inner = _first_named(node)
        if inner is None:
            return node
        node = inner


def _definition_matches(lang: str, root: Node) -> Iterator[dict[str, list[Node]]]:
    query, containers = _query(lang, "defs"), _GRAMMARS[lang].containers
    if containers is None:
        for _, caps in QueryCursor(query).matches(root):
            yield caps
        return
    cursor = QueryCursor(query)
    cursor.set_max_start_depth(1)  # patterns rooted at the container's children (or itself)
    stack = [root]
    while stack:
        container = stack.pop()
        for _, caps in cursor.matches(container):
            # the container itself, if a definition, was found among its own container's children
            if not any(nodes[0] == container for cap, nodes in caps.items() if cap.startswith("def.")):
                yield caps
        stack.extend(child for child in container.children if child.type in containers)


def _raw_definition(caps: dict[str, list[Node]]) -> _RawDef:
    # every definition pattern of the queries captures its node as def.<kind>; the last one counts
    node, kind = [(nodes[0], capture[4:]) for capture, nodes in caps.items() if capture.startswith("def.")][-1]
    name_node = caps["name"][0] if "name" in caps else _declarator_name(caps["declarator"][0])
    scope, _, name = _text(name_node).rpartition("::")  # C++: Foo::bar, namespace a::b
    scope = _text(caps["scope"][0]) if "scope" in caps else scope.replace("::", ".")
    if scope and kind == "function":
        kind = "method"  # defined outside its class
    parent = node.parent
    if parent is not None and parent.type in _WRAPPERS:
        node = parent
    last = caps["body"][0] if "body" in caps else node
    return (node.start_byte, -last.end_byte, name, scope, kind, node.start_point.row + 1, _end_line(last))


def _nest(lang: str, raw: list[_RawDef]) -> list[tuple[int, int, Definition]]:
    """(start_byte, end_byte, definition) in file order, outer before inner, with qualnames."""
    out: list[tuple[int, int, Definition]] = []
    stack: list[tuple[int, Definition]] = []  # (end_byte, definition) of the open definitions
    nested = _GRAMMARS[lang].nested_names
    for start_byte, neg_end, name, scope, kind, start, end in raw:
        while stack and stack[-1][0] <= start_byte:
            stack.pop()
        parent_def = stack[-1][1] if stack else None
        if parent_def is not None and kind == "function" and parent_def.kind in _CLASS_KINDS:
            kind = "method"
        prefix = ""
        if nested:
            outer = next((d.qualname for _, d in reversed(stack) if d.kind not in _UNSCOPED_KINDS), "")
            prefix = ".".join(p for p in (outer, scope) if p)
        definition = Definition(name, f"{prefix}.{name}" if prefix else name, kind, start, end)
        out.append((start_byte, -neg_end, definition))
        stack.append((-neg_end, definition))
    return out


# --- definitions of a re-parsed version: the previous ones, and a re-read of what changed ---------
# Nodes whose children are read one by one when only some of them changed: a file, and classes
# (a Python class often holds most of its module). Only languages whose definitions are found
# by one query over the whole tree; the others (containers, sibling patterns) read it all.
_SPLIT: dict[str, frozenset[str]] = {
    "python": frozenset({"module", "class_definition", "decorated_definition", "block"}),
    **{lang: frozenset({"program", "class_declaration", "abstract_class_declaration", "class_body",
                        "export_statement"})
       for lang in ("javascript", "typescript", "tsx")},
}


def _split(lang: str, node: Node) -> bool:
    kind = node.type
    if kind not in _SPLIT[lang]:
        return False
    if kind == "block":  # a class body; a function's body is read whole
        return node.parent is not None and node.parent.type == "class_definition"
    if kind == "decorated_definition":
        inner = node.child_by_field_name("definition")
        return inner is not None and inner.type == "class_definition"
    return True


def _touches(lo: int, hi: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether lo..hi meets one of the sorted, disjoint ranges (ends included)."""
    i = bisect.bisect_left(ranges, (lo,))
    if i < len(ranges) and ranges[i][0] <= hi:
        return True
    return i > 0 and ranges[i - 1][1] >= lo


def _reuse_definitions(lang: str, root: Node, known: _Reuse) -> list[_RawDef]:
    """The new version's raw definitions: those of the previous version that no edit or syntax
    change reached, moved by the edits before them, and a re-read of the nodes that changed."""
    if _GRAMMARS[lang].containers is not None:
        return _reuse_in_containers(lang, root, known)
    query = _query(lang, "defs")
    own = QueryCursor(query)
    own.set_max_start_depth(0)  # a class itself, not what it holds
    fresh: list[_RawDef] = []
    reread: list[tuple[int, int]] = []
    stack = [(root, False)]
    while stack:
        node, wrapped = stack.pop()
        if not wrapped and not _touches(node.start_byte, node.end_byte, known.changed):
            continue
        if _split(lang, node):
            fresh.extend(_raw_definition(caps) for _, caps in own.matches(node))
            # a decorated class's lines start at its decorators: a change there changes the class
            inner = node.child_by_field_name("definition") if node.type == "decorated_definition" else None
            stack.extend((child, child == inner) for child in node.children)
        else:
            fresh.extend(_raw_definition(caps) for _, caps in QueryCursor(query).matches(node))
            reread.append((node.start_byte, node.end_byte))
    reread.sort()
    for raw in _unchanged(known):
        j = bisect.bisect_right(reread, (raw[0], float("inf"))) - 1
        if not (j >= 0 and reread[j][1] >= -raw[1]):  # else inside a re-read node
            fresh.append(raw)
    fresh.sort()
    return fresh


def _unchanged(known: _Reuse) -> Iterator[_RawDef]:
    """The previous version's definitions that no edit or syntax change reached, moved to
    where they are in the new version."""
    edits = known.edits
    i = shift = rows = 0
    for raw in known.raw:
        start, end = raw[0], -raw[1]
        while i < len(edits) and edits[i].old_end < start:
            shift += edits[i].new_end - edits[i].new_start - (edits[i].old_end - edits[i].old_start)
            rows += edits[i].rows
            i += 1
        if i < len(edits) and edits[i].old_start <= end:
            continue  # edited: re-read, if it still exists
        new_start, new_end = start + shift, end + shift
        if not _touches(new_start, new_end, known.changed):
            yield (new_start, -new_end, *raw[2:5], raw[5] + rows, raw[6] + rows)


def _reuse_in_containers(lang: str, root: Node, known: _Reuse) -> list[_RawDef]:
    """_reuse_definitions for a language whose definitions are found among the children of
    containers (see _definition_matches). A definition is re-read when its span meets a change,
    re-used otherwise: each container that a change reaches is searched only over its children
    that the change reaches (a C file: the functions edited, not the file). A match is returned
    when any of it meets the range searched, so a definition made of two siblings (a C function
    defined by a macro) is found from either; a wrapper (a C++ template's header) is searched
    whole, its definition's span being the wrapper's."""
    query, containers = _query(lang, "defs"), _GRAMMARS[lang].containers
    assert containers is not None
    changed = known.changed
    found: set[tuple[int, _RawDef]] = set()  # (pattern, definition): two runs can meet one match
    stack = [root]
    while stack:
        container = stack.pop()
        reached, runs = _children_reached(container, changed)
        for lo, hi in runs:
            cursor = QueryCursor(query)
            cursor.set_max_start_depth(1)
            cursor.set_byte_range(lo, max(hi, lo + 1))
            for pattern, caps in cursor.matches(container):
                if any(nodes[0] == container for cap, nodes in caps.items() if cap.startswith("def.")):
                    continue  # the container itself: found among its own container's children
                raw = _raw_definition(caps)
                if _touches(raw[0], -raw[1], changed):  # the others are among the unchanged ones
                    found.add((pattern, raw))
        stack.extend(child for child in reached if child.type in containers)
    return sorted([raw for _, raw in found] + list(_unchanged(known)))


def _children_reached(container: Node, changed: list[tuple[int, int]],
                      ) -> tuple[list[Node], list[tuple[int, int]]]:
    """The children of `container` that the changed byte ranges meet (ends included), and the
    byte ranges of their runs (all of them for a wrapper)."""
    children = container.children
    if container.type in _WRAPPERS:
        return children, [(children[0].start_byte, children[-1].end_byte)] if children else []
    ends = [child.end_byte for child in children]
    reached: list[Node] = []
    runs: list[tuple[int, int]] = []
    taken = 0  # children before this one are in `reached` or were passed over
    for lo, hi in changed:
        i = max(bisect.bisect_left(ends, lo), taken)  # the first child ending at lo or later
        first = i
        while i < len(children) and children[i].start_byte <= hi:
            reached.append(children[i])
            i += 1
        if i > first:
            if runs and taken == first:  # adjoins the previous run
                runs[-1] = (runs[-1][0], ends[i - 1])
            else:
                runs.append((children[first].start_byte, ends[i - 1]))
            taken = i
    return reached, runs


def _references(lang: str, root: Node, spans: list[tuple[int, int, Definition]],
                ) -> tuple[tuple[Reference, ...], tuple[Import, ...]]:
    found, import_nodes = [], []
    for _, caps in QueryCursor(_query(lang, "refs")).matches(root):
        if "import" in caps:
            import_nodes.append(caps["import"][0])
            continue
        if "path" in caps:  # a::b::c or a.b.C written as one node
            node = caps["path"][0]
            split = _LAST_SEPARATOR.fullmatch(_text(node))
            assert split is not None, "the pattern matches any text"
            qualifier, name = split.groups()
            if name.endswith(">") and name.find("<") > 0:
                name = name[:name.find("<")]
            qualifier = qualifier if qualifier and _PLAIN_PATH.fullmatch(qualifier) else None
        else:
            node = caps["name"][0]
            name = _text(node)
            qual = caps.get("qual")
            qualifier = _text(qual[0]) if qual else None
            if qualifier is not None and not _PLAIN_PATH.fullmatch(qualifier):
                qualifier = None
        found.append((node.start_byte, node.start_point.row + 1, name, qualifier))
    found.sort(key=lambda call: call[0])
    # Sweep calls and definitions together, keeping a stack of the definitions open at each call.
    refs = []
    stack: list[tuple[int, Definition]] = []
    i = 0
    for byte, line, name, qualifier in found:
        while i < len(spans) and spans[i][0] <= byte:
            while stack and stack[-1][0] <= spans[i][0]:
                stack.pop()
            stack.append((spans[i][1], spans[i][2]))
            i += 1
        while stack and stack[-1][0] <= byte:
            stack.pop()
        refs.append(Reference(name, "call", line, stack[-1][1].qualname if stack else None, qualifier))
    read = _IMPORT_READERS[lang]
    imports = (imp for node in sorted(import_nodes, key=lambda n: n.start_byte) for imp in read(node))
    return tuple(refs), tuple(imports)


def _python_imports(node: Node) -> Iterator[Import]:
    line = node.start_point.row + 1
    # a broken file can leave an aliased import without its name: skip it rather than fail
    name_nodes = [m for n in node.children_by_field_name("name")
                  if (m := n.child_by_field_name("name") if n.type == "aliased_import" else n) is not None]
    if node.type == "import_statement":  # import a.b as c: the module only, c is a local alias
        for n in name_nodes:
            yield Import(_text(n), (), line)
        return
    module = node.child_by_field_name("module_name")
    level = 0
    if module is not None and module.type == "relative_import":
        parts = module.named_children
        level = len(_text(parts[0]))
        module = parts[1] if len(parts) > 1 else None
    wildcard = any(c.type == "wildcard_import" for c in node.named_children)
    names = ("*",) if wildcard else tuple(map(_text, name_nodes))
    yield Import(_text(module) if module is not None else "", names, line, level)


def _c_include(node: Node) -> Iterator[Import]:
    path = node.child_by_field_name("path")
    if path is None:
        return
    text = _text(path)
    if path.type == "string_literal":
        yield Import(text.strip('"'), (), node.start_point.row + 1, 1)
    elif path.type == "system_lib_string":
        yield Import(text.strip("<>"), (), node.start_point.row + 1)


def _go_import(node: Node) -> Iterator[Import]:
    path, alias = node.child_by_field_name("path"), node.child_by_field_name("name")
    if path is None:
        return
    names: tuple[str, ...] = ()
    if alias is not None and alias.type != "blank_identifier":
        names = ("*",) if alias.type == "dot" else (_text(alias),)
    yield Import(_text(path).strip('"`'), names, node.start_point.row + 1)


def _java_import(node: Node) -> Iterator[Import]:
    path = next((c for c in node.named_children if c.type in ("scoped_identifier", "identifier")), None)
    if path is not None:
        wildcard = any(c.type == "asterisk" for c in node.named_children)
        yield Import(_text(path), ("*",) if wildcard else (), node.start_point.row + 1)


def _js_import(node: Node) -> Iterator[Import]:
    line = node.start_point.row + 1
    if node.type == "call_expression":  # require('x') / import('x')
        source = _first_named(node.child_by_field_name("arguments"))
        names: tuple[str, ...] = ()
        declarator = node.parent if node.parent is not None and node.parent.type == "variable_declarator" else None
        binding = declarator.child_by_field_name("name") if declarator is not None else None
        if binding is not None and binding.type == "identifier":
            names = (_text(binding),)
        elif binding is not None and binding.type == "object_pattern":
            names = tuple(_text(c.child_by_field_name("key") or c) for c in binding.named_children)
    else:
        clause = next((c for c in node.named_children if c.type == "import_require_clause"), node)
        source = clause.child_by_field_name("source")
        names = tuple(_js_bindings(node))
        if node.type == "export_statement" and not names:
            names = ("*",)
    fragment = _first_named(source)
    if fragment is not None and fragment.type == "string_fragment":
        yield Import(_text(fragment), names, line)


def _js_bindings(node: Node) -> Iterator[str]:
    for child in node.named_children:
        if child.type in ("import_clause", "named_imports", "export_clause", "import_require_clause"):
            yield from _js_bindings(child)
        elif child.type in ("import_specifier", "export_specifier"):
            name = child.child_by_field_name("name")
            if name is not None:  # absent only in a broken file
                yield _text(name)
        elif child.type == "namespace_import":
            name = _first_named(child)
            if name is not None:
                yield _text(name)
        elif child.type == "identifier":  # default import / import x = require()
            yield _text(child)


def _rust_use(node: Node, prefix: str = "") -> Iterator[Import]:
    line = node.start_point.row + 1

    def join(path: str) -> str:
        return f"{prefix}::{path}" if prefix else path

    kind = node.type
    if kind == "use_as_clause":
        yield Import(join(_text(node.named_children[0])), (), line)
    elif kind == "use_wildcard":
        yield Import(join(_text(node).removesuffix("*").removesuffix("::")), ("*",), line)
    elif kind == "scoped_use_list":
        path, items = node.child_by_field_name("path"), node.child_by_field_name("list")
        if items is not None:
            yield from _rust_use(items, join(_text(path)) if path is not None else prefix)
    elif kind == "use_list":
        simple = [c for c in node.named_children if c.type in ("identifier", "self")]
        if simple:
            yield Import(prefix, tuple(map(_text, simple)), line)
        for child in node.named_children:
            if child.type not in ("identifier", "self"):
                yield from _rust_use(child, prefix)
    else:
        yield Import(join(_text(node)), (), line)


_IMPORT_READERS = {
    "python": _python_imports, "c": _c_include, "cpp": _c_include, "go": _go_import,
    "java": _java_import, "javascript": _js_import, "typescript": _js_import, "tsx": _js_import,
    "rust": _rust_use,
}


# --- diff hunks to definitions ------------------------------------------------------------------

class Spans(NamedTuple):
    """A file's definitions arranged for definitions_touching: built once per version, asked
    once per commit that touches it (a version is the new side of one and the old of the next)."""
    unique: list[Definition]  # in line order, equal ones once
    position: dict[Definition, int]  # in `unique`
    segments: list[tuple[int, int, Definition]]
    starts: list[int]


def spans(defs: Sequence[Definition]) -> Spans:
    ordered = sorted(defs, key=lambda d: (d.start, -d.end))
    segments = _innermost_segments(ordered)
    unique = list(dict.fromkeys(ordered))
    return Spans(unique, {d: i for i, d in enumerate(unique)}, segments, [s for s, _, _ in segments])


def definitions_touching(defs: Sequence[Definition] | Spans, ranges: Iterable[tuple[int, int]]) -> list[Definition]:
    unique, position, segments, starts = defs if isinstance(defs, Spans) else spans(defs)
    touched: set[Definition] = set()
    for start, count in ranges:
        if count == 0:
            owner = _owner(segments, starts, start) or _owner(segments, starts, start + 1)
            if owner is not None:
                touched.add(owner)
            continue
        last = start + count - 1
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        while i < len(segments) and segments[i][0] <= last:
            if segments[i][1] >= start:
                touched.add(segments[i][2])
            i += 1
    if not touched:
        return []
    return [unique[i] for i in sorted({position[d] for d in touched})]


def _innermost_segments(ordered: list[Definition]) -> list[tuple[int, int, Definition]]:
    """Disjoint (first, last, definition) line runs, each owned by its innermost definition."""
    segments: list[tuple[int, int, Definition]] = []
    stack: list[Definition] = []
    pos = 1

    def emit(first: int, last: int, d: Definition) -> None:
        nonlocal pos
        if first <= last:
            segments.append((first, last, d))
            pos = last + 1

    for d in ordered:
        while stack and stack[-1].end < d.start:
            emit(pos, stack[-1].end, stack.pop())
        if stack:
            emit(pos, d.start - 1, stack[-1])
        pos = max(pos, d.start)
        stack.append(d)
    while stack:
        emit(pos, stack[-1].end, stack.pop())
    return segments


def _owner(segments: list[tuple[int, int, Definition]], starts: list[int], line: int) -> Definition | None:
    i = bisect.bisect_right(starts, line) - 1
    if i >= 0 and segments[i][1] >= line:
        return segments[i][2]
    return None

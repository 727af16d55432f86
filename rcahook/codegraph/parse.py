"""Definitions, calls and imports of one source file, read with tree-sitter.

The only module that imports tree_sitter; everything it returns is plain frozen dataclasses.
"""
from __future__ import annotations

import bisect
import importlib
import json
import posixpath
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

_EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".go": "go",
    ".java": "java",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".rs": "rust",
}
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "python", "c", "cpp", "go", "java", "javascript", "typescript", "tsx", "rust",
)


def language_for(path: str) -> str | None:
    return _EXTENSIONS.get(posixpath.splitext(path)[1].lower())


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
        index = {}
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


# --- grammars and queries -------------------------------------------------------------------
# Definition patterns capture the node as @def.<kind> and its name as @name, or, for C-like
# declarators (int *(*f)(void)), the declarator chain as @declarator; @scope is an explicit
# qualifier (a Go receiver); @body ends a definition made of two sibling nodes (a C function
# defined by a macro: SYSCALL_DEFINE2(open, ...) { ... } is named "open"). Call patterns
# capture @name with an optional @qual receiver, or a whole a::b::c path as @path. Import
# patterns capture @import nodes for the language's import reader.
#
# A query costs about as much as a walk over the whole tree, so definitions are only looked for
# among the children of `containers` (files, class bodies, preprocessor blocks; not function
# bodies in C), found by a Python walk; None searches the whole tree (JS defines functions in
# any expression, Python in any block).

_C_DEFS = """
(function_definition declarator: (_) @declarator) @def.function
(struct_specifier name: (_) @name body: (_)) @def.struct
(union_specifier name: (_) @name body: (_)) @def.union
(enum_specifier name: (_) @name body: (_)) @def.enum
(preproc_def name: (_) @name) @def.macro
(preproc_function_def name: (_) @name) @def.macro
(type_definition declarator: (_) @declarator) @def.type
((expression_statement (call_expression function: (identifier)
   arguments: (argument_list . (identifier) @name))) @def.function . (compound_statement) @body)
"""
_C_CONTAINERS = frozenset({
    "translation_unit", "preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef",
    "type_definition", "declaration", "struct_specifier", "union_specifier", "field_declaration_list",
    "field_declaration", "ERROR",
})
_C_CALLS = """
(call_expression function: (identifier) @name)
(call_expression function: (field_expression argument: (_) @qual field: (field_identifier) @name))
"""
_JS_COMMON_DEFS = """
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(class_declaration name: (_) @name) @def.class
(method_definition name: (_) @name) @def.method
(variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)]) @def.function
(variable_declarator name: (identifier) @name value: (class)) @def.class
(assignment_expression left: [(identifier) @name (member_expression property: (property_identifier) @name)]
  right: [(arrow_function) (function_expression)]) @def.function
(pair key: (property_identifier) @name value: [(arrow_function) (function_expression)]) @def.function
"""
_JS_DEFS = _JS_COMMON_DEFS + """
(field_definition property: (property_identifier) @name
  value: [(arrow_function) (function_expression)]) @def.function
"""
_TS_DEFS = _JS_COMMON_DEFS + """
(public_field_definition name: (property_identifier) @name
  value: [(arrow_function) (function_expression)]) @def.function
(abstract_class_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(type_alias_declaration name: (_) @name) @def.type
(enum_declaration name: (_) @name) @def.enum
(internal_module name: (_) @name) @def.namespace
"""
_JS_CALLS = """
(call_expression function: (identifier) @name)
(call_expression function: (member_expression object: (_) @qual property: (_) @name))
(new_expression constructor: (identifier) @name)
(new_expression constructor: (member_expression object: (_) @qual property: (_) @name))
"""
_JS_IMPORTS = """
(import_statement) @import
(export_statement source: (_)) @import
(call_expression function: [(identifier) (import)] @fn arguments: (arguments . (string))
  (#any-of? @fn "require" "import")) @import
"""


@dataclass(frozen=True)
class _Grammar:
    module: str
    function: str
    defs: str
    calls: str
    imports: str
    containers: frozenset[str] | None
    nested_names: bool = True  # False: qualnames are bare names (C)


_GRAMMARS = {
    "python": _Grammar(
        "tree_sitter_python", "language",
        defs="""
        (function_definition name: (identifier) @name) @def.function
        (class_definition name: (identifier) @name) @def.class
        """,
        calls="""
        (call function: (identifier) @name)
        (call function: (attribute object: (_) @qual attribute: (identifier) @name))
        """,
        imports="[(import_statement) (import_from_statement)] @import",
        containers=None),  # defs sit in any block; walking them all costs more than the query
    "c": _Grammar(
        "tree_sitter_c", "language", _C_DEFS, _C_CALLS,
        imports="(preproc_include) @import", containers=_C_CONTAINERS, nested_names=False),
    "cpp": _Grammar(
        "tree_sitter_cpp", "language",
        defs=_C_DEFS + """
        (class_specifier name: (_) @name body: (_)) @def.class
        (namespace_definition name: (_) @name) @def.namespace
        (alias_declaration name: (_) @name) @def.type
        """,
        calls=_C_CALLS + """
        (call_expression function: (qualified_identifier) @path)
        (call_expression function: (template_function name: (identifier) @name))
        (call_expression function: (field_expression argument: (_) @qual
          field: (template_method name: (field_identifier) @name)))
        (new_expression type: [(type_identifier) @name (template_type name: (type_identifier) @name)])
        (new_expression type: (qualified_identifier) @path)
        """,
        imports="(preproc_include) @import",
        containers=_C_CONTAINERS | {
            "linkage_specification", "declaration_list", "namespace_definition", "template_declaration",
            "class_specifier"}),
    "go": _Grammar(
        "tree_sitter_go", "language",
        defs="""
        (function_declaration name: (identifier) @name) @def.function
        (method_declaration receiver: (parameter_list (parameter_declaration type: [
            (type_identifier) @scope (generic_type type: (type_identifier) @scope)
            (pointer_type [(type_identifier) @scope (generic_type type: (type_identifier) @scope)])]))
          name: (_) @name) @def.method
        (type_spec name: (_) @name type: (struct_type)) @def.struct
        (type_spec name: (_) @name type: (interface_type)) @def.interface
        (type_spec name: (_) @name type: [(type_identifier) (qualified_type) (pointer_type)
          (function_type) (map_type) (slice_type) (array_type) (channel_type) (generic_type)]) @def.type
        (type_alias name: (_) @name) @def.type
        """,
        calls="""
        (call_expression function: (identifier) @name)
        (call_expression function: (selector_expression operand: (_) @qual field: (field_identifier) @name))
        """,
        imports="(import_spec) @import",
        containers=frozenset({"source_file", "type_declaration", "ERROR"})),
    "java": _Grammar(
        "tree_sitter_java", "language",
        defs="""
        (class_declaration name: (_) @name) @def.class
        (record_declaration name: (_) @name) @def.class
        (interface_declaration name: (_) @name) @def.interface
        (annotation_type_declaration name: (_) @name) @def.interface
        (enum_declaration name: (_) @name) @def.enum
        (method_declaration name: (_) @name) @def.method
        (constructor_declaration name: (_) @name) @def.method
        """,
        calls="""
        (method_invocation object: (_)? @qual name: (identifier) @name)
        (object_creation_expression type: [(type_identifier) @name (generic_type (type_identifier) @name)
          (scoped_type_identifier) @path])
        """,
        imports="(import_declaration) @import",
        containers=frozenset({
            "program", "class_declaration", "class_body", "interface_declaration", "interface_body",
            "enum_declaration", "enum_body", "enum_body_declarations", "enum_constant",
            "record_declaration", "annotation_type_declaration", "annotation_type_body", "ERROR",
        })),
    "javascript": _Grammar("tree_sitter_javascript", "language", _JS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "typescript": _Grammar(
        "tree_sitter_typescript", "language_typescript", _TS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "tsx": _Grammar("tree_sitter_typescript", "language_tsx", _TS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "rust": _Grammar(
        "tree_sitter_rust", "language",
        defs="""
        (function_item name: (_) @name) @def.function
        (function_signature_item name: (_) @name) @def.function
        (struct_item name: (_) @name) @def.struct
        (union_item name: (_) @name) @def.union
        (enum_item name: (_) @name) @def.enum
        (trait_item name: (_) @name) @def.trait
        (impl_item type: [(type_identifier) @name (generic_type type: (type_identifier) @name)
          (scoped_type_identifier name: (type_identifier) @name)]) @def.impl
        (macro_definition name: (_) @name) @def.macro
        (mod_item name: (_) @name body: (_)) @def.module
        (type_item name: (_) @name) @def.type
        """,
        calls="""
        (call_expression function: [(identifier) @name (generic_function function: (identifier) @name)])
        (call_expression function: [
            (field_expression value: (_) @qual field: (field_identifier) @name)
            (generic_function function: (field_expression value: (_) @qual field: (field_identifier) @name))])
        (call_expression function: [
            (scoped_identifier path: (_) @qual name: (identifier) @name)
            (generic_function function: (scoped_identifier path: (_) @qual name: (identifier) @name))])
        (macro_invocation macro: (identifier) @name)
        (macro_invocation macro: (scoped_identifier path: (_) @qual name: (identifier) @name))
        """,
        imports="(use_declaration argument: (_) @import)",
        containers=frozenset({
            "source_file", "mod_item", "declaration_list", "impl_item", "trait_item", "function_item",
            "block", "ERROR"})),
}

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
_TREE_CACHE_BYTES = 1_000_000  # of source kept; a tree takes roughly 60 times its source
_local = threading.local()


def _parse_tree(lang: str, path: str, data: bytes) -> Tree:
    if not hasattr(_local, "trees"):
        _local.parsers, _local.trees = {}, {}
    parser = _local.parsers.get(lang) or _local.parsers.setdefault(lang, Parser(_language(lang)))
    key = (lang, path)
    old = _local.trees.pop(key, None)
    if old is None:
        tree = parser.parse(data)
    elif old[0] == data:
        tree = old[1]
    else:
        tree = old[1]
        _edit(tree, old[0], data)
        tree = parser.parse(data, tree)
    _local.trees[key] = (data, tree)
    total = sum(len(d) for d, _ in _local.trees.values())
    while total > _TREE_CACHE_BYTES and len(_local.trees) > 1:
        evicted = _local.trees.pop(next(iter(_local.trees)))
        total -= len(evicted[0])
    return tree


def _edit(tree: Tree, old: bytes, new: bytes) -> None:
    """Describe old -> new to the tree as one edit spanning everything between equal ends."""
    prefix = _common_prefix(old, new)
    suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
    old_end, new_end = len(old) - suffix, len(new) - suffix
    tree.edit(
        start_byte=prefix, old_end_byte=old_end, new_end_byte=new_end,
        start_point=_point(old, prefix), old_end_point=_point(old, old_end),
        new_end_point=_point(new, new_end))


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

def parse_source(path: str, data: bytes, *, with_references: bool = True) -> ParsedFile | None:
    lang = language_for(path)
    if lang is None:
        return None
    root = _parse_tree(lang, path, data).root_node
    spans = _definitions(lang, root)
    definitions = tuple(d for _, _, d in spans)
    if not with_references:
        return ParsedFile(lang, definitions, (), ())
    references, imports = _references(lang, root, spans)
    return ParsedFile(lang, definitions, references, imports)


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace")


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


def _definitions(lang: str, root: Node) -> list[tuple[int, int, Definition]]:
    """(start_byte, end_byte, definition) in file order, outer before inner."""
    raw = []
    for caps in _definition_matches(lang, root):
        node = kind = None
        for capture, nodes in caps.items():
            if capture.startswith("def."):
                node, kind = nodes[0], capture[4:]
        name_node = caps["name"][0] if "name" in caps else _declarator_name(caps["declarator"][0])
        scope, _, name = _text(name_node).rpartition("::")  # C++: Foo::bar, namespace a::b
        scope = _text(caps["scope"][0]) if "scope" in caps else scope.replace("::", ".")
        if scope and kind == "function":
            kind = "method"  # defined outside its class
        parent = node.parent
        if parent is not None and parent.type in _WRAPPERS:
            node = parent
        last = caps["body"][0] if "body" in caps else node
        raw.append((node.start_byte, -last.end_byte, name, scope, kind,
                    node.start_point.row + 1, _end_line(last)))
    raw.sort()
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


def _references(lang: str, root: Node, spans: list[tuple[int, int, Definition]],
                ) -> tuple[tuple[Reference, ...], tuple[Import, ...]]:
    found, import_nodes = [], []
    for _, caps in QueryCursor(_query(lang, "refs")).matches(root):
        if "import" in caps:
            import_nodes.append(caps["import"][0])
            continue
        if "path" in caps:  # a::b::c or a.b.C written as one node
            node = caps["path"][0]
            qualifier, name = _LAST_SEPARATOR.fullmatch(_text(node)).groups()
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
    name_nodes = [n.child_by_field_name("name") if n.type == "aliased_import" else n
                  for n in node.children_by_field_name("name")]
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
        declarator = node.parent if node.parent.type == "variable_declarator" else None
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
            yield _text(child.child_by_field_name("name"))
        elif child.type == "namespace_import":
            name = _first_named(child)
            if name is not None:
                yield _text(name)
        elif child.type == "identifier":  # default import / import x = require()
            yield _text(child)


def _rust_use(node: Node, prefix: str = "") -> Iterator[Import]:
    line = node.start_point.row + 1
    join = (lambda p: f"{prefix}::{p}" if prefix else p)
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

def definitions_touching(defs: Sequence[Definition], ranges: Iterable[tuple[int, int]]) -> list[Definition]:
    ordered = sorted(defs, key=lambda d: (d.start, -d.end))
    segments = _innermost_segments(ordered)
    starts = [s for s, _, _ in segments]
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
    return [d for d in dict.fromkeys(ordered) if d in touched]


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

"""Which files are parsed, with which tree-sitter grammar and queries.

Plain data only (no tree_sitter import), so callers can choose files without loading a parser.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

EXTENSIONS = {
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
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


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
class Grammar:
    module: str
    function: str
    defs: str
    calls: str
    imports: str
    containers: frozenset[str] | None
    nested_names: bool = True  # False: qualnames are bare names (C)


GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
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
    "c": Grammar(
        "tree_sitter_c", "language", _C_DEFS, _C_CALLS,
        imports="(preproc_include) @import", containers=_C_CONTAINERS, nested_names=False),
    "cpp": Grammar(
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
    "go": Grammar(
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
    "java": Grammar(
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
    "javascript": Grammar("tree_sitter_javascript", "language", _JS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "typescript": Grammar(
        "tree_sitter_typescript", "language_typescript", _TS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "tsx": Grammar("tree_sitter_typescript", "language_tsx", _TS_DEFS, _JS_CALLS, _JS_IMPORTS, None),
    "rust": Grammar(
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


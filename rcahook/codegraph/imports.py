"""Resolve an import written in one repository file to the repository files it refers to."""
from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: resolving imports needs no parser
    from rcahook.codegraph.parse import Import

_JS_EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".d.ts")
# TypeScript sources import their siblings by the compiled file's name: './x.js' means x.ts.
_COMPILED_TO_SOURCE = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}


class PathSet:
    """All file paths of a repository (posix, relative to its root), indexed for resolution."""

    def __init__(self, paths: Iterable[str]):
        self.paths = frozenset(paths)
        self._resolved: dict[tuple[str, Import, str], list[str]] = {}
        self._by_basename: dict[str, list[str]] = defaultdict(list)
        self._by_dir: dict[str, list[str]] = defaultdict(list)
        self._dirs_by_basename: dict[str, set[str]] = defaultdict(set)
        # Python: dotted path from the root ("src.pkg.mod"; a package is its __init__) -> files,
        # and last dotted component -> dotted paths, for suffix matches.
        self._py_files: dict[str, list[str]] = defaultdict(list)
        self._py_by_last: dict[str, set[str]] = defaultdict(set)
        for path in sorted(self.paths):
            directory, base = posixpath.split(path)
            self._by_basename[base].append(path)
            self._by_dir[directory].append(path)
            while directory and directory not in self._dirs_by_basename[posixpath.basename(directory)]:
                self._dirs_by_basename[posixpath.basename(directory)].add(directory)
                directory = posixpath.dirname(directory)
            stem, ext = posixpath.splitext(path)
            if ext in (".py", ".pyi"):
                dotted = stem.removesuffix("/__init__").replace("/", ".")
                self._py_files[dotted].append(path)
                self._py_by_last[dotted.rpartition(".")[2]].add(dotted)

    def resolved(self, importer: str, imp: Import, lang: str) -> list[str]:
        """resolve_import, remembered: a partial graph (codegraph/local.py) asks the same
        imports again as it widens, and a server keeps one PathSet per indexed revision."""
        key = (importer, imp, lang)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = resolve_import(importer, imp, lang, self)
        return found

    def __contains__(self, path: str) -> bool:
        return path in self.paths

    def ending_with(self, suffix: str) -> list[str]:
        """Files whose path is `suffix` or ends with "/" + suffix, sorted."""
        return [p for p in self._by_basename.get(posixpath.basename(suffix), ())
                if p == suffix or p.endswith("/" + suffix)]

    def directories_ending_with(self, suffix: str) -> list[str]:
        return sorted(d for d in self._dirs_by_basename.get(posixpath.basename(suffix), ())
                      if d == suffix or d.endswith("/" + suffix))

    def files_in(self, directory: str) -> list[str]:
        return list(self._by_dir.get(directory, ()))

    def python_module(self, dotted: str) -> list[str]:
        """Files of a dotted module: at the root, else under the fewest leading directories (src/)."""
        if dotted in self._py_files:
            return list(self._py_files[dotted])
        matches = [d for d in self._py_by_last.get(dotted.rpartition(".")[2], ()) if d.endswith("." + dotted)]
        if not matches:
            return []
        shortest = min(map(len, matches))
        return sorted(p for d in matches if len(d) == shortest for p in self._py_files[d])


def resolve_import(importer: str, imp: Import, lang: str, paths: PathSet) -> list[str]:
    resolve = _RESOLVERS.get(lang)
    return resolve(importer, imp, paths) if resolve else []


def _module_or_members(module_files: list[str], names: tuple[str, ...],
                       submodule: Callable[[str], list[str]]) -> list[str]:
    """`from m import a, b`: the submodules a and b where they exist, and m unless all were."""
    found, needs_module = [], not names
    for name in names:
        files = submodule(name) if name not in ("*", "self") else []
        found += files
        needs_module = needs_module or not files
    return list(dict.fromkeys((module_files if needs_module else []) + found))


def _python(importer: str, imp: Import, paths: PathSet) -> list[str]:
    if not imp.relative_level:
        return _module_or_members(paths.python_module(imp.module), imp.names,
                                  lambda name: paths.python_module(f"{imp.module}.{name}"))
    directory = posixpath.dirname(importer)
    for _ in range(imp.relative_level - 1):
        directory = posixpath.dirname(directory)

    def module(relative: str) -> list[str]:
        return [p for p in (f"{relative}.py", f"{relative}/__init__.py", f"{relative}.pyi") if p in paths][:1]

    base = posixpath.join(directory, *imp.module.split(".")) if imp.module else directory
    if imp.module:
        module_files = module(base)
    else:  # from . import x: the package itself is the directory's __init__
        module_files = [p for p in (posixpath.join(directory, "__init__.py"),) if p in paths]
    return _module_or_members(module_files, imp.names, lambda name: module(posixpath.join(base, name)))


def _c(importer: str, imp: Import, paths: PathSet) -> list[str]:
    if imp.relative_level:  # #include "x.h" looks next to the includer first
        local = posixpath.normpath(posixpath.join(posixpath.dirname(importer), imp.module))
        if local in paths:
            return [local]
    suffix = posixpath.normpath(imp.module)
    while suffix.startswith("../"):
        suffix = suffix[3:]
    return paths.ending_with(suffix)


def _javascript(importer: str, imp: Import, paths: PathSet) -> list[str]:
    if not (imp.module.startswith(("./", "../")) or imp.module in (".", "..")):
        return []  # a package, or an alias only the bundler knows
    base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), imp.module))
    stem, ext = posixpath.splitext(base)
    candidates = [base, *(stem + source for source in _COMPILED_TO_SOURCE.get(ext, ())),
                  *(base + e for e in _JS_EXTENSIONS), *(f"{base}/index{e}" for e in _JS_EXTENSIONS)]
    return next(([c] for c in candidates if c in paths), [])


def _go(importer: str, imp: Import, paths: PathSet) -> list[str]:
    # The module path is not known here: the longest tail of the import path that is a package
    # directory under the root or under a go.mod wins ("example.com/app/internal/db" -> internal/db).
    roots = [""] + [posixpath.dirname(p) for p in paths.ending_with("go.mod") if "/" in p]
    parts = imp.module.split("/")
    stdlib_like = "." not in parts[0]  # "net/http": only a whole-path or 2+-part tail match
    for i in range(len(parts)):
        if i and stdlib_like and len(parts) - i < 2:
            break
        for root in roots:
            directory = posixpath.join(root, *parts[i:])
            files = [p for p in paths.files_in(directory) if p.endswith(".go") and not p.endswith("_test.go")]
            if files:
                return files
    return []


def _java(importer: str, imp: Import, paths: PathSet) -> list[str]:
    parts = imp.module.split(".")
    if "*" in imp.names:  # import a.b.*: the classes of package a.b
        return [p for d in paths.directories_ending_with("/".join(parts))
                for p in paths.files_in(d) if p.endswith(".java")]
    # a.b.C, or a.b.C.member (static import): drop trailing parts until a class file matches
    for end in range(len(parts), 0, -1):
        found = paths.ending_with("/".join(parts[:end]) + ".java")
        if found:
            return found
    return []


def _rust(importer: str, imp: Import, paths: PathSet) -> list[str]:
    parts = imp.module.split("::")
    if parts[0] == "crate":  # the crate root is the importer's nearest enclosing src/
        directory = posixpath.dirname(importer)
        while directory and posixpath.basename(directory) != "src":
            directory = posixpath.dirname(directory)
        directory, parts = directory or "src", parts[1:]
    elif parts[0] in ("self", "super"):
        directory = _rust_module_dir(importer)
        while parts and parts[0] in ("self", "super"):
            if parts.pop(0) == "super":
                directory = posixpath.dirname(directory)
    else:
        return []  # another crate: std or a dependency
    # use a::b::Item names an item of module a::b: the longest path that is a module file.
    module_files: list[str] = []
    for end in range(len(parts), -1, -1):
        module_files = _rust_module_file(directory, parts[:end], paths)
        if module_files:
            break
    return _module_or_members(module_files, imp.names,
                              lambda name: _rust_module_file(directory, [*parts, name], paths))


def _rust_module_dir(path: str) -> str:
    directory, base = posixpath.split(path)
    if base in ("mod.rs", "lib.rs", "main.rs"):
        return directory
    return posixpath.join(directory, base.removesuffix(".rs"))


def _rust_module_file(directory: str, parts: list[str], paths: PathSet) -> list[str]:
    base = posixpath.join(directory, *parts)
    candidates = (base + ".rs", base + "/mod.rs") if parts else (
        base + ".rs", base + "/mod.rs", base + "/lib.rs", base + "/main.rs")  # the directory's own module
    return [p for p in candidates if p in paths][:1]


_RESOLVERS = {
    "python": _python, "c": _c, "cpp": _c, "javascript": _javascript, "typescript": _javascript,
    "tsx": _javascript, "go": _go, "java": _java, "rust": _rust,
}

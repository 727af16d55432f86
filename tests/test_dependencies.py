"""Declared dependencies match imports: every third-party module rcahook imports is declared
in pyproject.toml (in the core list, or in the extra its package belongs to), and every
declared distribution is imported somewhere or listed below with the reason it is not."""
from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # declared for 3.10 (rcahook/config.py reads TOML the same way)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rcahook"

# import name -> distribution name, where they are not the same up to "_" vs "-"
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "markdown_it": "markdown-it-py"}
# Where each extra's modules may be imported (files or folders, relative to the repository)
EXTRA_PLACES = {
    "llm": ("rcahook/llm/", "rcahook/train/"),
    "serve": ("rcahook/serve/", "rcahook/commands/serve.py"),
    "report": ("rcahook/backtest/report.py",),
}
# Declared, never imported by name in rcahook/, and why
NOT_IMPORTED = {
    "gguf": "transformers reads the embedded GGUF model through it (llm/embedded.py)",
}
# The test extra: declared for tests/, and why a distribution tests never import is there
TEST_NOT_IMPORTED = {
    "pre-commit": "run as a program by tests/test_hooks.py",
    "httpx": "FastAPI's TestClient is built on it",
    "mypy": "run as a program by `make lint`",
    "ruff": "run as a program by `make lint`",
    "types-pyyaml": "type stubs that mypy reads (`make lint`)",
    "types-networkx": "type stubs that mypy reads (`make lint`)",
}
# Grammar wheels are imported by name (importlib) from the table in codegraph/grammars.py
GRAMMARS = PACKAGE / "codegraph" / "grammars.py"


def distribution(module: str) -> str:
    """The distribution a top-level import name comes from (tree_sitter_c -> tree-sitter-c)."""
    return DISTRIBUTION.get(module, module).replace("_", "-").lower()


def requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[._]", "-", name.group(0)).lower()


def declared() -> dict[str, set[str]]:
    """{"core": names, extra: names} from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": {requirement_name(r) for r in project["dependencies"]}}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        groups[extra] = {requirement_name(r) for r in requirements}
    return groups


def third_party_imports(folder: Path) -> dict[str, set[str]]:
    """top-level module -> files (relative to the repository) that import it."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rcahook":
                    found[top].add(rel)
        if path == GRAMMARS:
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"tree_sitter_\w+", node.value):
                    found[node.value].add(rel)
    return found


def test_every_third_party_import_is_declared_where_it_belongs():
    groups = declared()
    wrong = []
    for module, files in sorted(third_party_imports(PACKAGE).items()):
        dist = distribution(module)
        if dist in groups["core"]:
            continue
        for rel in sorted(files):
            extras = [e for e, places in EXTRA_PLACES.items() if rel.startswith(places) and dist in groups.get(e, ())]
            if not extras:
                where = [g for g, names in groups.items() if dist in names] or ["nowhere"]
                wrong.append(f"{rel} imports {module}: declare {dist} in the core dependencies or in the "
                             f"extra of that package (declared in: {', '.join(where)})")
    assert not wrong, "\n".join(wrong)


def test_every_declared_dependency_is_imported_or_explained():
    groups = declared()
    imported = {distribution(m) for m in third_party_imports(PACKAGE)}
    unused = sorted(f"{dist} ({group})" for group, names in groups.items() if group != "test"
                    for dist in names if dist not in imported and dist not in NOT_IMPORTED)
    assert not unused, f"declared in pyproject.toml, imported nowhere in rcahook/: {unused}"
    tested = {distribution(m) for m in third_party_imports(ROOT / "tests")}
    unused_tests = sorted(groups.get("test", set()) - tested - set(TEST_NOT_IMPORTED))
    assert not unused_tests, f"declared in the test extra, imported nowhere in tests/: {unused_tests}"
    stale = sorted(set(NOT_IMPORTED) - set().union(*groups.values()))
    assert not stale, f"NOT_IMPORTED names distributions no longer declared: {stale}"


def test_the_mapping_of_import_names():
    assert distribution("yaml") == "pyyaml"
    assert distribution("tree_sitter_typescript") == "tree-sitter-typescript"
    assert requirement_name('tomli>=2; python_version < "3.11"') == "tomli"
    assert requirement_name("sarif_kit>=0.3") == "sarif-kit"

"""The import rules of docs/architecture.md, checked on the source (ast) and on a real
process: which modules may import pygit2, tree-sitter, the model stack and the web stack;
commands never import each other or the CLI; the pre-push hook's path stays light."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rcahook"

# top-level module -> where it may be imported (files or folders, relative to the repository)
ONLY_IN: dict[str, tuple[str, ...]] = {
    "pygit2": ("rcahook/index/gitrepo.py",),
    "tree_sitter": ("rcahook/codegraph/parse.py", "rcahook/codegraph/grammars.py"),
    "networkx": ("rcahook/codegraph/",),
    **{m: ("rcahook/llm/", "rcahook/train/") for m in ("torch", "transformers", "peft", "gguf", "accelerate")},
    **{m: ("rcahook/serve/",) for m in ("fastapi", "uvicorn", "jinja2", "starlette", "pydantic")},
}
# imported inside functions only (never when the module itself is imported)
LAZY = {"torch", "transformers", "peft", "gguf", "accelerate", "rich", "matplotlib"}
# the hook's path must not load any of these (modules, and rcahook packages)
NOT_ON_HOOK_PATH = ("torch", "transformers", "peft", "rich", "tree_sitter", "networkx", "sklearn", "scipy",
                    "matplotlib", "rcahook.llm", "rcahook.train", "rcahook.rca", "rcahook.backtest",
                    "rcahook.serve", "rcahook.codegraph")


def _top(name: str) -> str:
    top = name.split(".")[0]
    return "tree_sitter" if top.startswith("tree_sitter_") else top  # grammar wheels count as tree-sitter


def _imports(tree: ast.Module) -> list[tuple[ast.stmt, str, bool]]:
    """(node, module, at module level) for every absolute import; TYPE_CHECKING blocks are skipped."""
    out: list[tuple[ast.stmt, str, bool]] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub, top_level)
                continue
            if isinstance(child, ast.Import):
                out.extend((child, a.name, top_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.extend((child, f"{child.module}.{a.name}", top_level) for a in child.names)
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, True)
    return out


def _sources() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(), filename=str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))]


SOURCES = _sources()


Sources = list[tuple[str, ast.Module]]


def misplaced(sources: Sources) -> list[str]:
    return [f"{rel}:{node.lineno} imports {name}: only {', '.join(ONLY_IN[_top(name)])} may"
            for rel, tree in sources for node, name, _ in _imports(tree)
            if _top(name) in ONLY_IN and not rel.startswith(ONLY_IN[_top(name)])]


def eager(sources: Sources) -> list[str]:
    return [f"{rel}:{node.lineno} imports {name} at module level: import it inside the function that needs it"
            for rel, tree in sources for node, name, top_level in _imports(tree)
            if top_level and _top(name) in LAZY]


def crossed(sources: Sources) -> list[str]:
    """Commands importing another command or the CLI (only the entry points import the CLI)."""
    wrong = []
    for rel, tree in sources:
        for node, name, _ in _imports(tree):
            if (name == "rcahook.cli" or name.startswith("rcahook.cli.")) \
                    and rel not in ("rcahook/__main__.py", "rcahook/hook_entry.py"):
                wrong.append(f"{rel}:{node.lineno} imports rcahook.cli (only the entry points may)")
            if rel.startswith("rcahook/commands/") and name.startswith("rcahook.commands.") \
                    and not name.startswith("rcahook.commands.common"):
                wrong.append(f"{rel}:{node.lineno} imports {name}: move what it shares into a stage package")
    return wrong


NAMEDTUPLE_API = {"_fields", "_field_defaults", "_asdict", "_replace", "_make"}  # public, despite the "_"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def private(sources: Sources) -> list[str]:
    """`from rcahook.x import _name`, or `module._name` on a module imported from rcahook."""
    wrong = []
    for rel, tree in sources:
        bound = set()  # names this file binds to rcahook modules or their members
        for node, name, _ in _imports(tree):
            if not name.startswith("rcahook."):
                continue
            if isinstance(node, ast.ImportFrom) and _is_private(name.rsplit(".", 1)[1]):
                wrong.append(f"{rel}:{node.lineno} imports {name}: make it public with a clear name")
            for alias in node.names:
                if alias.asname or isinstance(node, ast.ImportFrom):
                    bound.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in bound and _is_private(node.attr):
                wrong.append(f"{rel}:{node.lineno} uses {node.value.id}.{node.attr}: make it public with a clear name")
    return wrong


@pytest.mark.parametrize("rule", [misplaced, eager, crossed, private])
def test_the_source_follows_the_import_rules(rule):
    wrong = rule(SOURCES)
    assert not wrong, "\n".join(wrong)


def test_the_rules_catch_violations():
    """The checker itself, on made-up modules: each rule fires, and TYPE_CHECKING imports are exempt."""
    fake = [("rcahook/commands/show.py", ast.parse(
        "import pygit2\nimport torch\nfrom rcahook.commands.owners import run\nfrom rcahook.cli import main\n"
        "from rcahook.rca.ranking import _views\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich\n\ndef f():\n    import rich\n"))]
    assert [w.split(" ")[2] for w in misplaced(fake)] == ["pygit2:", "torch:"]
    assert [w.split(" ")[2] for w in eager(fake)] == ["torch"]
    assert len(crossed(fake)) == 2 and "rcahook.commands.owners.run" in crossed(fake)[0]
    assert private(fake) == ["rcahook/commands/show.py:5 imports rcahook.rca.ranking._views: make it public "
                             "with a clear name"]
    reaching = [("rcahook/x.py", ast.parse("from rcahook.rca import features\nfeatures._DOC_PATH.search('a')\n"))]
    assert private(reaching) == ["rcahook/x.py:2 uses features._DOC_PATH: make it public with a clear name"]


HOOK_PATH = """
import json, sys
import rcahook.hook_entry
import rcahook.commands.scan, rcahook.risk.scan, rcahook.risk.sarif, rcahook.risk.pushrange
import rcahook.risk.model, rcahook.risk.state, rcahook.risk.facts, rcahook.config
print(json.dumps(sorted(sys.modules)))
"""


def test_the_hook_path_imports_nothing_heavy():
    """What `rcahook-hook` loads before and for the scan: never the model, web or parsing stacks."""
    out = subprocess.run([sys.executable, "-c", HOOK_PATH], capture_output=True, text=True, cwd=ROOT, check=True)
    modules = set(json.loads(out.stdout))
    assert "rcahook.risk.state" in modules and "rcahook.commands.scan" in modules  # it did import them
    loaded = sorted(m for m in modules for banned in NOT_ON_HOOK_PATH if m == banned or m.startswith(banned + "."))
    assert not loaded, f"on the hook's path: {loaded}"


@pytest.mark.parametrize("module", ["rcahook.numeric", "rcahook.risk.model", "rcahook.risk.state"])
def test_the_numeric_core_needs_neither_scipy_nor_sklearn(module):
    code = (f"import sys\nsys.modules['scipy'] = None\nsys.modules['sklearn'] = None\nimport {module}\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_one_meaning_per_class_name():
    where: dict[str, list[str]] = {}
    for rel, tree in SOURCES:
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(rel)
    shared = {name: files for name, files in where.items() if len(files) > 1}
    assert not shared, f"class names defined in more than one module: {shared}"

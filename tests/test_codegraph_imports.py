from __future__ import annotations

import pytest

from rcahook.codegraph.imports import PathSet, resolve_import
from rcahook.codegraph.parse import Import, parse_source

PATHS = PathSet([
    # Python: a root package, a src/ layout, and a module name that exists twice
    "app/__init__.py", "app/models.py", "app/views/__init__.py", "app/views/list.py",
    "app/views/detail.py", "src/shop/__init__.py", "src/shop/cart.py", "src/shop/utils/money.py",
    "tests/shop/cart.py", "setup.py",
    # JavaScript / TypeScript
    "web/src/index.ts", "web/src/util.ts", "web/src/components/index.tsx", "web/src/api.js",
    "web/src/types.d.ts", "web/src/styles.css", "web/lib/legacy.mjs",
    # C / C++
    "src/net/dev.c", "src/net/dev.h", "src/net/util.h", "src/fs/util.h", "include/uapi/linux/if.h",
    "include/net/sock.h", "lib/engine.hpp",
    # Go
    "go.mod", "internal/logging/log.go", "internal/logging/log_test.go", "internal/logging/sink.go",
    "cmd/server/main.go", "services/billing/go.mod", "services/billing/store/db.go",
    # Java
    "src/main/java/com/example/util/Strings.java", "src/main/java/com/example/util/Dates.java",
    "src/main/java/com/example/app/Main.java",
    # Rust
    "engine/src/lib.rs", "engine/src/store.rs", "engine/src/net/mod.rs", "engine/src/net/tcp.rs",
    "engine/src/net/udp.rs",
])


def _resolve(importer, imp, lang):
    return resolve_import(importer, imp, lang, PATHS)


@pytest.mark.parametrize(("importer", "imp", "expected"), [
    ("app/views/list.py", Import("app.models", (), 1), ["app/models.py"]),
    ("setup.py", Import("app", (), 1), ["app/__init__.py"]),
    ("setup.py", Import("app.views", (), 1), ["app/views/__init__.py"]),
    # under src/: a suffix of the dotted path; the shallowest match wins over tests/shop
    ("src/shop/cart.py", Import("shop.cart", (), 1), ["src/shop/cart.py"]),
    ("setup.py", Import("shop.utils.money", ("to_cents",), 1), ["src/shop/utils/money.py"]),
    # from pkg import mod: the submodule; from pkg import name: the package
    ("setup.py", Import("app.views", ("list", "detail"), 1), ["app/views/list.py", "app/views/detail.py"]),
    ("setup.py", Import("app.views", ("list", "render"), 1), ["app/views/__init__.py", "app/views/list.py"]),
    ("setup.py", Import("app", ("*",), 1), ["app/__init__.py"]),
    # relative
    ("app/views/list.py", Import("detail", ("show",), 1, 1), ["app/views/detail.py"]),
    ("app/views/list.py", Import("", ("detail",), 1, 1), ["app/views/detail.py"]),
    ("app/views/list.py", Import("", ("helper",), 1, 1), ["app/views/__init__.py"]),
    ("app/views/list.py", Import("models", ("Order",), 1, 2), ["app/models.py"]),
    ("app/views/list.py", Import("", ("models",), 1, 2), ["app/models.py"]),
    ("app/views/list.py", Import("missing", ("x",), 1, 1), []),
    # stdlib and third party
    ("setup.py", Import("os.path", (), 1), []),
    ("setup.py", Import("numpy", ("array",), 1), []),
])
def test_python(importer, imp, expected):
    assert _resolve(importer, imp, "python") == expected


@pytest.mark.parametrize(("importer", "module", "expected"), [
    ("web/src/index.ts", "./util", ["web/src/util.ts"]),
    ("web/src/index.ts", "./util.js", ["web/src/util.ts"]),  # TypeScript names the compiled file
    ("web/src/index.ts", "./components", ["web/src/components/index.tsx"]),
    ("web/src/index.ts", "./api", ["web/src/api.js"]),
    ("web/src/index.ts", "./api.js", ["web/src/api.js"]),
    ("web/src/index.ts", "./types", ["web/src/types.d.ts"]),
    ("web/src/index.ts", "./styles.css", ["web/src/styles.css"]),
    ("web/src/components/index.tsx", "../util", ["web/src/util.ts"]),
    ("web/src/components/index.tsx", "..", ["web/src/index.ts"]),
    ("web/src/index.ts", "../lib/legacy.mjs", ["web/lib/legacy.mjs"]),
    ("web/src/index.ts", "../../../outside", []),
    ("web/src/index.ts", "react", []),
    ("web/src/index.ts", "@/util", []),
])
@pytest.mark.parametrize("lang", ["javascript", "typescript", "tsx"])
def test_javascript(importer, module, expected, lang):
    assert _resolve(importer, Import(module, (), 1), lang) == expected


@pytest.mark.parametrize(("importer", "imp", "expected"), [
    ("src/net/dev.c", Import("dev.h", (), 1, 1), ["src/net/dev.h"]),
    ("src/net/dev.c", Import("util.h", (), 1, 1), ["src/net/util.h"]),  # next to the includer first
    ("src/net/dev.c", Import("../fs/util.h", (), 1, 1), ["src/fs/util.h"]),
    ("src/net/dev.c", Import("net/sock.h", (), 1, 1), ["include/net/sock.h"]),  # -I include
    ("lib/other.c", Import("util.h", (), 1, 1), ["src/fs/util.h", "src/net/util.h"]),  # ambiguous
    ("src/net/dev.c", Import("linux/if.h", (), 1), ["include/uapi/linux/if.h"]),
    ("src/net/dev.c", Import("if.h", (), 1), ["include/uapi/linux/if.h"]),
    ("src/net/dev.c", Import("stdio.h", (), 1), []),
    ("src/net/dev.c", Import("nux/if.h", (), 1), []),  # whole path components only
])
def test_c_includes(importer, imp, expected):
    assert _resolve(importer, imp, "c") == expected
    assert _resolve(importer, imp, "cpp") == expected


def test_go():
    assert _resolve("cmd/server/main.go", Import("example.com/app/internal/logging", ("log",), 1), "go") == [
        "internal/logging/log.go", "internal/logging/sink.go"]
    # a module in a subdirectory (its own go.mod)
    assert _resolve("x.go", Import("example.com/billing/store", (), 1), "go") == [
        "services/billing/store/db.go"]
    assert _resolve("x.go", Import("fmt", (), 1), "go") == []
    assert _resolve("x.go", Import("net/logging", (), 1), "go") == []  # stdlib-like: no 1-part tail


def test_java():
    assert _resolve("src/main/java/com/example/app/Main.java", Import("com.example.util.Strings", (), 1),
                    "java") == ["src/main/java/com/example/util/Strings.java"]
    assert _resolve("Main.java", Import("com.example.util.Strings.join", (), 1), "java") == [
        "src/main/java/com/example/util/Strings.java"]  # import static
    assert _resolve("Main.java", Import("com.example.util", ("*",), 1), "java") == [
        "src/main/java/com/example/util/Dates.java", "src/main/java/com/example/util/Strings.java"]
    assert _resolve("Main.java", Import("java.util.List", (), 1), "java") == []


@pytest.mark.parametrize(("importer", "imp", "expected"), [
    ("engine/src/net/tcp.rs", Import("crate::store", (), 1), ["engine/src/store.rs"]),
    ("engine/src/net/tcp.rs", Import("crate::store::Store", (), 1), ["engine/src/store.rs"]),  # an item
    ("engine/src/lib.rs", Import("crate::net", ("tcp", "udp"), 1),
     ["engine/src/net/tcp.rs", "engine/src/net/udp.rs"]),  # submodules
    ("engine/src/lib.rs", Import("crate::net", ("tcp", "Error"), 1),
     ["engine/src/net/mod.rs", "engine/src/net/tcp.rs"]),  # Error is an item of net
    ("engine/src/store.rs", Import("crate", ("Config",), 1), ["engine/src/lib.rs"]),
    ("engine/src/net/tcp.rs", Import("super::udp", (), 1), ["engine/src/net/udp.rs"]),
    ("engine/src/net/mod.rs", Import("self::tcp::Conn", (), 1), ["engine/src/net/tcp.rs"]),
    ("engine/src/net/tcp.rs", Import("super", ("*",), 1), ["engine/src/net/mod.rs"]),
    ("engine/src/lib.rs", Import("std::collections", ("HashMap",), 1), []),
])
def test_rust(importer, imp, expected):
    assert _resolve(importer, imp, "rust") == expected


def test_unknown_language():
    assert _resolve("README.md", Import("x", (), 1), "markdown") == []


def test_pathset_lookups():
    assert "app/models.py" in PATHS and "app/nothing.py" not in PATHS
    assert PATHS.ending_with("util.h") == ["src/fs/util.h", "src/net/util.h"]
    assert PATHS.directories_ending_with("example/util") == ["src/main/java/com/example/util"]
    assert PATHS.python_module("shop") == ["src/shop/__init__.py"]


def test_parsed_imports_resolve():
    source = b"from . import detail\nfrom ..models import Order\nimport app.views\nimport json\n"
    parsed = parse_source("app/views/list.py", source)
    resolved = [resolve_import("app/views/list.py", imp, parsed.lang, PATHS) for imp in parsed.imports]
    assert resolved == [["app/views/detail.py"], ["app/models.py"], ["app/views/__init__.py"], []]

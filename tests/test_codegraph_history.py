from __future__ import annotations

import random
import re
import subprocess
import textwrap

import pytest

from rcahook.codegraph import build
from rcahook.codegraph.parse import _hunk_edits, parse_source
from rcahook.codegraph.touched import update_touched
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _index(repo, *, graph: bool = True, jobs: int = 1):
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    index_repository(Repo(repo.path), db, graph=graph, jobs=jobs)
    return db


def _touched(db, sha: str) -> set[tuple[str, str, str]]:
    history = History.open(db)
    try:
        return {(t.path, t.qualname, t.side) for t in history.touched(sha)}
    finally:
        history.close()


# Per language: a file with keep/edit/drop functions, and the next version, where `edit`
# changes its body and `drop` is deleted.
CASES = {
    "app/mod.py": (
        _src("""
        def keep():
            return 1


        def edit():
            return 2


        def drop():
            return 3


        class Box:
            def size(self):
                return 4
        """),
        _src("""
        def keep():
            return 1


        def edit():
            value = 2
            return value


        class Box:
            def size(self):
                return 4
        """),
        {("app/mod.py", "edit", "new"), ("app/mod.py", "drop", "old")},
    ),
    "src/mod.c": (
        _src("""
        #include "mod.h"

        int keep(void)
        {
        \treturn 1;
        }

        int edit(int x)
        {
        \treturn x + 2;
        }

        static int drop(void)
        {
        \treturn 3;
        }
        """),
        _src("""
        #include "mod.h"

        int keep(void)
        {
        \treturn 1;
        }

        int edit(int x)
        {
        \tint y = x * 2;
        \treturn y + 2;
        }
        """),
        {("src/mod.c", "edit", "new"), ("src/mod.c", "drop", "old")},
    ),
    "web/mod.js": (
        _src("""
        export function keep() {
          return 1;
        }

        export function edit(x) {
          return x + 2;
        }

        function drop() {
          return 3;
        }
        """),
        _src("""
        export function keep() {
          return 1;
        }

        export function edit(x) {
          const y = x * 2;
          return y + 2;
        }
        """),
        {("web/mod.js", "edit", "new"), ("web/mod.js", "drop", "old")},
    ),
    "web/mod.ts": (
        _src("""
        export function keep(): number {
          return 1;
        }

        export class Store {
          edit(x: number): number {
            return x + 2;
          }

          drop(): number {
            return 3;
          }
        }
        """),
        _src("""
        export function keep(): number {
          return 1;
        }

        export class Store {
          edit(x: number): number {
            const y: number = x * 2;
            return y + 2;
          }
        }
        """),
        {("web/mod.ts", "Store.edit", "new"), ("web/mod.ts", "Store.drop", "old")},
    ),
    "pkg/mod.go": (
        _src("""
        package pkg

        func Keep() int {
        \treturn 1
        }

        func Edit(x int) int {
        \treturn x + 2
        }

        func (s *Store) Drop() int {
        \treturn 3
        }
        """),
        _src("""
        package pkg

        func Keep() int {
        \treturn 1
        }

        func Edit(x int) int {
        \ty := x * 2
        \treturn y + 2
        }
        """),
        {("pkg/mod.go", "Edit", "new"), ("pkg/mod.go", "Store.Drop", "old")},
    ),
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_touched_edit_and_delete(repo, path):
    before, after, expected = CASES[path]
    first = repo.commit("add", {path: before, "README.md": "hello\n"})
    second = repo.commit("edit one, delete one", {path: after, "README.md": "hello again\n"})
    db = _index(repo)
    touched = _touched(db, second)
    # a diff may also take a blank line or brace of the enclosing class: enclosing scopes may show up
    assert expected <= touched
    assert not {q for _, q, _ in touched} & {"keep", "Keep", "Box.size"}
    assert not touched - expected - {(path, "Store", "old"), (path, "Store", "new")}
    # the first commit adds every definition
    added = _touched(db, first)
    assert {side for _, _, side in added} == {"new"}
    assert len(added) >= 3


def test_touched_across_rename_and_enclosing_class(repo):
    repo.commit("add", {"a.py": _src("""
        class Shop:
            def buy(self):
                return 1

            def sell(self):
                return 2
        """)})
    sha = repo.commit("rename and edit", {"a.py": None, "b.py": _src("""
        class Shop:
            def buy(self):
                return 1

            def sell(self):
                return 20
        """)})
    db = _index(repo)
    assert _touched(db, sha) == {("b.py", "Shop.sell", "new")}


def test_each_blob_parsed_once_and_cache_serves_a_rerun(repo, monkeypatch):
    versions = [f"def f():\n    return {i}\n\n\ndef g():\n    return 0\n" for i in range(5)]
    shas = [repo.commit(f"v{i}", {"m.py": v, "n.py": v}) for i, v in enumerate(versions)]
    db = _index(repo, graph=False)
    conn = store.open_index(db)
    calls = []
    real = parse_source
    monkeypatch.setattr("rcahook.codegraph.parse.parse_source",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert update_touched(conn, Repo(repo.path), jobs=1) == 5
    # m.py and n.py hold the same blobs: five versions, each parsed once
    assert len(calls) == 5
    assert conn.execute("SELECT COUNT(*), SUM(full) FROM blob_parse").fetchone() == (5, 0)
    before = sorted(conn.execute("SELECT * FROM touched"))
    # a rerun from scratch parses nothing: every blob is cached
    conn.execute("DELETE FROM touched")
    conn.execute("UPDATE commits SET defs_done=0")
    calls.clear()
    assert update_touched(conn, Repo(repo.path), jobs=1) == 5
    assert calls == []
    assert sorted(conn.execute("SELECT * FROM touched")) == before
    assert update_touched(conn, Repo(repo.path), jobs=1) == 0  # nothing left to do
    conn.close()
    assert _touched(db, shas[2]) == {("m.py", "f", "new"), ("n.py", "f", "new")}


def test_interrupted_commit_is_redone_whole(repo):
    repo.commit("add", {"m.py": "def f():\n    return 1\n"})
    db = _index(repo, graph=False)
    conn = store.open_index(db)
    # what a run killed between two writes leaves: a row for a commit not marked done
    conn.execute("INSERT INTO touched VALUES (1, 'm.py', 'stale', 'stale', 'function', 'new')")
    update_touched(conn, Repo(repo.path), jobs=1)
    assert [r[2] for r in conn.execute("SELECT * FROM touched")] == ["f"]
    conn.close()


def test_binary_oversize_and_unsupported_files_are_skipped(repo, monkeypatch):
    monkeypatch.setattr(build, "MAX_BLOB_BYTES", 2000)
    big = "def big():\n" + "    x = 1\n" * 300
    sha = repo.commit("mixed", {
        "big.py": big, "blob.c": b"int f(void)\x00\x01\x02{ return 0; }\n", "notes.txt": "def not_code():\n",
        "ok.py": "def ok():\n    return 1\n",
    })
    db = _index(repo, graph=True)
    assert _touched(db, sha) == {("ok.py", "ok", "new")}
    conn = store.open_index(db)
    assert store.get_meta(conn, "touched_oversize_blobs") == "1"
    assert build.graph_skip_counts(conn) == {"unsupported": 1, "oversize": 1, "binary": 1, "missing": 0}
    assert [p for (p,) in conn.execute("SELECT path FROM graph_files")] == ["ok.py"]
    conn.close()


def _recording_pools(monkeypatch) -> list:
    """The worker pools the code graph creates from now on (real ones, only remembered)."""
    from rcahook.codegraph import build
    from rcahook.pool import WorkerPool

    made = []

    class Recorded(WorkerPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(build, "WorkerPool", Recorded)
    return made


def test_parallel_workers_give_the_same_rows(repo, monkeypatch):
    for i in range(40):
        # the module's name in it: no two files share a version, so they are separate tasks
        body = f"# m{i % 7}\n" + "".join(f"def f{j}():\n    return {i * j}\n\n\n" for j in range(i % 5 + 1))
        repo.commit(f"c{i}", {f"m{i % 7}.py": body})
    serial = _index(repo, graph=False)
    conn = store.open_index(serial)
    update_touched(conn, Repo(repo.path), jobs=1)
    rows = sorted(conn.execute("SELECT * FROM touched"))
    conn.execute("DELETE FROM touched")
    conn.execute("DELETE FROM blob_parse")
    conn.execute("UPDATE commits SET defs_done=0")
    monkeypatch.setattr("rcahook.codegraph.touched.PARALLEL_MIN_BLOBS", 0)  # workers even for this little
    pools = _recording_pools(monkeypatch)
    update_touched(conn, Repo(repo.path), jobs=2)
    assert [pool.parallel for pool in pools] == [True]  # the rows did come from worker processes
    assert sorted(conn.execute("SELECT * FROM touched")) == rows
    conn.close()


def test_touched_pass_parses_the_head_files_it_reaches_for_the_graph(repo, monkeypatch):
    """The first index's touched pass caches the full parse (references too) of the HEAD blobs:
    those its commits reach from the tree it re-parsed, the others alongside; the code graph
    parses none itself, and what it holds equals a parse from nothing."""
    from rcahook.codegraph import parse as parse_module
    from rcahook.codegraph.parse import ParsedFile

    repo.commit("old", {"old.c": "static int old(void) { return helper(1); }\n"})
    for i in range(4):
        repo.commit(f"v{i}", {
            "app.py": "".join(f"def f{j}():\n    return g{j}({i})\n\n\n" for j in range(i + 2)),
            "lib.c": "".join(f"int c{j}(int x) {{ return helper(x + {i}); }}\n" for j in range(i + 2)),
        })
    graph_parsed = []
    real = build.parse_blob
    monkeypatch.setattr(build, "parse_blob", lambda repo_, path, blob, *, full: graph_parsed.append(path)
                        or real(repo_, path, blob, full=full))
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    index_repository(Repo(repo.path), db, graph=True, jobs=1, touched_depth=4)  # "old" is left for later
    assert graph_parsed == []  # app.py and lib.c reached by commits, old.c alongside them
    conn = store.open_index(db)
    stored = {path: ParsedFile.from_json(build.unpack_parse(data)) for path, data, full in conn.execute(
        "SELECT g.path, b.data, b.full FROM graph_files g JOIN blob_parse b ON b.blob = g.blob") if full}
    conn.close()
    assert sorted(stored) == ["app.py", "lib.c", "old.c"]
    parse_module._local.__dict__.clear()  # no cached tree: a parse from nothing
    for path, parsed in stored.items():
        fresh = parse_source(path, (repo.path / path).read_bytes(), with_references=True)
        assert parsed == fresh and parsed.references, path


# --- the incremental re-parse from diff hunks -------------------------------------------------------

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.M)


def _git_hunks(tmp_path, a: bytes, b: bytes) -> list[tuple[int, int, int, int]]:
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    out = subprocess.run(["git", "diff", "--no-index", "-U0", "a", "b"], cwd=tmp_path,
                         capture_output=True).stdout
    return [(int(w), int(x) if x else 1, int(y), int(z) if z else 1) for w, x, y, z in _HUNK.findall(out)]


_SOURCES = {
    "py": _src("""
        import os


        @dataclass(frozen=True)
        class Shop:
            name: str

            def buy(self, item):
                def inner():
                    return item
                return inner()

            @property
            def size(self):
                return len(self.name)


        class Empty:
            pass


        def top(x):
            if x:
                return Shop(x).buy(1)
            return None


        async def later():
            await top(1)
        """),
    "ts": _src("""
        import { helper } from './util';

        export class Store {
          items: number[] = [];

          add(x: number): void {
            this.items.push(helper(x));
          }

          get size(): number {
            return this.items.length;
          }
        }

        export const run = (n: number): number => {
          const s = new Store();
          s.add(n);
          return s.size;
        };

        function plain() {
          return { handler: () => 1, other: function () { return 2; } };
        }

        abstract class Base {
          abstract go(): void;
        }
        """),
    "js": _src("""
        const fs = require('fs');

        class Reader {
          constructor(path) {
            this.path = path;
          }

          read() {
            return fs.readFileSync(this.path);
          }
        }

        export default function main() {
          return new Reader('x').read();
        }

        module.exports.helper = function (x) {
          return x + 1;
        };
        """),
    "c": _src("""
        #include "x.h"

        struct point {
        \tint x, y;
        };

        static int add(int a, int b)
        {
        \treturn a + b;
        }

        #ifdef FEATURE
        int feature(void)
        {
        \treturn add(1, 2);
        }
        #endif

        SYSCALL_DEFINE1(close, int, fd)
        {
        \treturn add(fd, 0);
        }

        typedef struct node {
        \tstruct inner { int v; } in;
        \tunion { int a; float b; } u;
        } node_t;

        enum color { RED, GREEN };

        #define SQUARE(x) ((x) * (x))
        #if defined(A)
        static void a_only(void) { add(1, 1); }
        #elif defined(B)
        static void b_only(void) { add(2, 2); }
        #else
        static void neither(void) { add(3, 3); }
        #endif
        """),
    "cpp": _src("""
        #include <vector>

        namespace outer {
        namespace inner {

        template <typename T>
        class Box {
         public:
          T get() const { return value_; }
          void set(T v) { value_ = v; }
         private:
          T value_;
        };

        }  // namespace inner

        int Widget::size() const {
          return items_.size();
        }

        template <typename T>
        T twice(T x) {
          return x + x;
        }

        extern "C" {
        int c_entry(void) { return twice(1); }
        }

        using Alias = inner::Box<int>;
        }  // namespace outer
        """),
    "go": _src("""
        package shop

        import "fmt"

        type Item struct {
        \tName string
        }

        type Seller interface {
        \tSell(i Item) error
        }

        type ID int

        func (s *Shop) Sell(i Item) error {
        \treturn fmt.Errorf("no %s", i.Name)
        }

        func New() *Shop {
        \treturn &Shop{}
        }

        type (
        \tA struct{}
        \tB = A
        )
        """),
    "java": _src("""
        package shop;

        import java.util.List;

        public class Shop {
            private List<String> items;

            public Shop() {
                this.items = null;
            }

            public int size() {
                return items.size();
            }

            interface Listener {
                void changed(int n);
            }

            enum Kind {
                A, B;
                int code() { return 1; }
            }

            record Pair(int a, int b) {}
        }
        """),
    "rs": _src("""
        use std::fmt;

        pub struct Shop {
            items: Vec<u32>,
        }

        impl Shop {
            pub fn new() -> Self {
                fn helper() -> u32 { 1 }
                Shop { items: vec![helper()] }
            }

            pub fn size(&self) -> usize {
                self.items.len()
            }
        }

        pub trait Seller {
            fn sell(&self) -> u32;
        }

        mod inner {
            pub enum Kind { A, B }
            macro_rules! twice { ($x:expr) => { $x * 2 }; }
        }

        impl fmt::Display for Shop {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result { write!(f, "shop") }
        }
        """),
}


@pytest.mark.parametrize("how", ["hunks", "line diff"])
@pytest.mark.parametrize("ext", sorted(_SOURCES))
def test_reparse_from_hunks_matches_a_fresh_parse(tmp_path, monkeypatch, ext, how):
    """Random line edits (syntax errors included): the re-parse from the previous version,
    with its definitions re-used where nothing changed, must read as a fresh parse does;
    from the commit's hunks, or (a version far from the one parsed before) from a line diff
    of the two versions."""
    if how == "line diff":
        monkeypatch.setattr("rcahook.codegraph.parse._DIFF_MIN_SPAN", 0)  # these files are small
    rng = random.Random(ext)
    base = _SOURCES[ext].encode().split(b"\n")
    text = b"\n".join(base)
    parse_source(f"inc.{ext}", text)
    for trial in range(120):
        lines = text.split(b"\n")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines) + 1)
            op = rng.random()
            if op < 0.4:
                lines.insert(i, rng.choice(base))
            elif op < 0.7 and len(lines) > 1:
                del lines[min(i, len(lines) - 1)]
            elif lines:
                j = min(i, len(lines) - 1)
                lines[j] = lines[j].replace(b"x", b"renamed_x", 1) if rng.random() < 0.5 else rng.choice(base)
        if rng.random() < 0.1:
            lines = base[:]  # back to the start: a large edit
        new = b"\n".join(lines)
        hunks = _git_hunks(tmp_path, text, new)
        if text != new:
            assert _hunk_edits(text, new, hunks) is not None
        fresh = parse_source(f"fresh{trial}.{ext}", new)
        with_hunks = parse_source(f"inc.{ext}", new, hunks=hunks if how == "hunks" else None,
                                  with_references=trial % 2 == 0)
        assert with_hunks.definitions == fresh.definitions, (trial, new.decode())
        if trial % 2 == 0:
            assert with_hunks == fresh
        text = new


def test_hunk_edits_refuse_hunks_of_another_version():
    old, new = b"a\nb\nc\n", b"a\nB\nc\n"
    assert _hunk_edits(old, new, [(2, 1, 2, 1)]) is not None
    assert _hunk_edits(b"x\nb\nc\n", new, [(2, 1, 2, 1)]) is None  # text outside the hunks differs
    assert _hunk_edits(old, new, [(9, 1, 9, 1)]) is None  # beyond the end


def test_line_offsets_by_split_and_by_numpy_agree(monkeypatch):
    """Small texts are split, large ones scanned by numpy: the same offsets either way."""
    from rcahook.codegraph import parse

    rng = random.Random(7)
    texts = [b"", b"a", b"a\n", b"a\nb", b"\n\n"] + [
        bytes(rng.choice(b"ab \n") for _ in range(rng.randint(0, 60))) for _ in range(200)]
    by_split = [parse._line_starts(t) for t in texts]
    monkeypatch.setattr(parse, "_NUMPY_LINES_FROM", 0)
    assert [parse._line_starts(t) for t in texts] == by_split
    assert by_split[:5] == [[0], [0, 1], [0, 2], [0, 2, 3], [0, 1, 2]]

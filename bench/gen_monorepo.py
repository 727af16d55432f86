"""A synthetic monorepo for the scale benchmarks (issue 11), written with `git fast-import`.

    python bench/gen_monorepo.py /tmp/mono --commits 100000 [--seed 0]

Shape: hundreds of top-level services and libraries (`services/svc-NNN`, `libs/lib-NNN`),
code in Python, C, C++, Go, Java, JS/TS and Rust; side branches merged back (merge commits
whose side commits are older than the mainline ones between), renames, a few independent
roots brought in by subtree-style merges (several root commits), committer clocks that
sometimes go backwards, `Fixes: <sha> ("subject")` trailers and `This reverts commit <sha>.`
reverts at realistic rates, and three very large commits (a licence header added across
the tree). Identifiers are mostly the component's own (`cache_token_svc187`), calls
sometimes name a library's, and 15% come from 400 names shared by the whole tree, as `get`
or `init` are in a real one; `--vocabulary shared` draws every identifier from those 400
(the first version of this generator, whose 100k figures in docs/benchmarks.md were
measured so: every name then had about 90 definitions, which no real tree has). With the
shared vocabulary, at 100k commits (seed 0): 4,016 merges, 4,978 fixes citing a commit, 825
reverts, 2,003 renames, 3 roots, 2,800 to 3,700 files in each large commit. The same
--seed, --commits and --vocabulary give the same repository, sha for sha. A benchmark fixture: generate
it under /tmp, never commit it.

The stream is written by this process and piped to one `git fast-import`; the shas of the
commits a later fix or revert cites are asked of fast-import with `get-mark` as it runs.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LANGS = {  # extension -> (comment, function template, statement template)
    "py": ("#", "def {f}({a}):", "    {v} = {g}({a}, {n})"),
    "c": ("//", "int {f}(int {a}) {{", "\t{v} = {g}({a}, {n});"),
    "cc": ("//", "int {f}(int {a}) {{", "  auto {v} = {g}({a}, {n});"),
    "go": ("//", "func {f}({a} int) int {{", "\t{v} := {g}({a}, {n})"),
    "java": ("//", "static int {f}(int {a}) {{", "    int {v} = {g}({a}, {n});"),
    "ts": ("//", "export function {f}({a}: number) {{", "  const {v} = {g}({a}, {n});"),
    "js": ("//", "function {f}({a}) {{", "  const {v} = {g}({a}, {n});"),
    "rs": ("//", "pub fn {f}({a}: i64) -> i64 {{", "    let {v} = {g}({a}, {n});"),
}
WORDS = ("cache", "token", "route", "parse", "flush", "retry", "quota", "shard", "lease", "index",
         "batch", "queue", "codec", "frame", "probe", "limit", "merge", "state", "epoch", "graph")
BUGS = ("crash", "leak", "deadlock", "off-by-one", "wrong result", "timeout", "panic", "overflow")


@dataclass
class Component:
    root: str
    lang: str
    files: list[str] = field(default_factory=list)
    recent: list[tuple[int, str]] = field(default_factory=list)  # (mark, subject) of its recent commits

    @property
    def tag(self) -> str:  # services/svc-187 -> svc187: the suffix of the component's own names
        return self.root.rsplit("/", 1)[1].replace("-", "")


class Generator:
    def __init__(self, out, ask, rng: random.Random, *, commits: int, services: int, libs: int,
                 vocabulary: str = "component"):
        self.out = out  # binary stream to fast-import
        self.ask = ask  # mark -> sha (get-mark)
        self.rng = rng
        self.target = commits
        self.made = 0
        self.mark = 0
        self.time = 1_400_000_000
        self.files: dict[str, list[str]] = {}  # path -> lines, as on main
        self.comps: list[Component] = []
        langs = list(LANGS)
        for i in range(services):
            self.comps.append(Component(f"services/svc-{i:03d}", langs[i % len(langs)]))
        for i in range(libs):
            self.comps.append(Component(f"libs/lib-{i:03d}", langs[(i * 3) % len(langs)]))
        self.head: int | None = None
        self.vocabulary = vocabulary
        self.libs = [c for c in self.comps if c.root.startswith("libs/")]
        self._comp: Component | None = None  # whose vocabulary _word draws from
        self.authors = [(f"Dev {i}", f"dev{i}@example.com") for i in range(400)]

    # -- content -----------------------------------------------------------------------------
    def _word(self, *, call: bool = False) -> str:
        """An identifier. With the component vocabulary (the default), most names belong to the
        component being written (`cache_token_svc187`), calls sometimes name a library's, and
        the rest come from 400 names shared by the whole tree (the `get`/`init` of a real one).
        `--vocabulary shared` draws every name from the 400 (the first version's shape)."""
        pair = f"{self.rng.choice(WORDS)}_{self.rng.choice(WORDS)}"
        if self.vocabulary == "shared" or self._comp is None:
            return pair
        r = self.rng.random()
        if r < 0.15:
            return pair
        comp = self._comp
        if call and r < 0.30 and self.libs:
            comp = self.rng.choice(self.libs)
        return f"{pair}_{comp.tag}"

    def _lines(self, lang: str, n: int) -> list[str]:
        _, fn, st = LANGS[lang]
        out = [fn.format(f=self._word(), a="x")]
        for _ in range(n):
            out.append(st.format(v=self._word(), g=self._word(call=True), a="x", n=self.rng.randrange(100)))
        if lang not in ("py",):
            out.append("}")
        return out

    def _edit(self, lines: list[str], lang: str) -> list[str]:
        lines = list(lines)
        for _ in range(self.rng.randint(1, 3)):
            at = self.rng.randrange(len(lines) + 1)
            new = self._lines(lang, self.rng.randint(1, 4)) if self.rng.random() < 0.3 else \
                [LANGS[lang][2].format(v=self._word(), g=self._word(call=True), a="x", n=self.rng.randrange(100))]
            drop = self.rng.randint(0, 2) if len(lines) > 40 else 0
            lines[at:at + drop] = new
        return lines[-60:] if len(lines) > 80 else lines  # files stay small: the stream stays small

    # -- stream --------------------------------------------------------------------------------
    def _w(self, text: str) -> None:
        self.out.write(text.encode())

    def _data(self, text: str) -> None:
        raw = text.encode()
        self.out.write(b"data %d\n" % len(raw))
        self.out.write(raw)
        self.out.write(b"\n")

    def _commit(self, ref: str, subject: str, body: str, ops: list[tuple], *, parent: int | None,
                merge: int | None = None, skew: bool = False) -> int:
        self.mark += 1
        self.made += 1
        self.time += self.rng.randint(30, 1200)
        committed = self.time - (86400 * self.rng.randint(1, 3) if skew else 0)  # a clock behind
        authored = committed - self.rng.randint(0, 3 * 86400)
        name, email = self.rng.choice(self.authors)
        self._w(f"commit {ref}\nmark :{self.mark}\n"
                f"author {name} <{email}> {authored} +0000\n"
                f"committer {name} <{email}> {committed} +0000\n")
        self._data(subject + ("\n\n" + body if body else "") + "\n")
        if parent is not None:
            self._w(f"from :{parent}\n")
        if merge is not None:
            self._w(f"merge :{merge}\n")
        for op in ops:
            if op[0] == "M":
                self._w(f"M 100644 inline {op[1]}\n")
                self._data("\n".join(op[2]) + "\n")
            elif op[0] == "R":
                self._w(f"R {op[1]} {op[2]}\n")
            elif op[0] == "D":
                self._w(f"D {op[1]}\n")
        self._w("\n")
        return self.mark

    def _new_file(self, comp: Component) -> tuple:
        self._comp = comp
        ext = "h" if comp.lang == "c" and self.rng.random() < 0.3 else comp.lang
        ext = "tsx" if ext == "ts" and self.rng.random() < 0.2 else ext
        path = f"{comp.root}/src/{self._word()}_{len(comp.files)}.{ext}"
        lines = self._lines(comp.lang, self.rng.randint(5, 25))
        self.files[path] = lines
        comp.files.append(path)
        return ("M", path, lines)

    def _change(self, comp: Component, state: dict[str, list[str]]) -> list[tuple]:
        """A few edits in one component, against `state` (main's files or a side branch's)."""
        self._comp = comp
        ops: list[tuple] = []
        r = self.rng.random()
        if not comp.files or r < 0.06:
            ops.append(self._new_file(comp))
            state[ops[-1][1]] = ops[-1][2]
        elif r < 0.08 and len(comp.files) > 2:  # a rename
            old = self.rng.choice(comp.files)
            new = old.rsplit("/", 1)[0] + f"/{self._word()}_{len(comp.files)}r." + old.rsplit(".", 1)[1]
            comp.files[comp.files.index(old)] = new
            lines = state.pop(old, self.files.get(old, []))
            self.files.pop(old, None)
            self.files[new] = lines
            state[new] = lines
            ops.append(("R", old, new))
            if self.rng.random() < 0.5:
                state[new] = self._edit(lines, comp.lang)
                ops.append(("M", new, state[new]))
        for path in self.rng.sample(comp.files, min(len(comp.files), self.rng.choice((1, 1, 1, 2, 2, 3)))):
            if any(op[-1] == path or op[1] == path for op in ops):
                continue
            lines = self._edit(state.get(path, self.files.get(path, [])) or ["x"], comp.lang)
            state[path] = lines
            ops.append(("M", path, lines))
        return ops

    def _subject(self, comp: Component) -> str:
        name = comp.root.split("/")[1]
        return f"{name}: {self.rng.choice(('add', 'rework', 'speed up', 'clean up', 'handle'))} {self._word()}"

    def _mainline(self) -> None:
        comp = self.rng.choice(self.comps)
        r = self.rng.random()
        body = ""
        if r < 0.06 and comp.recent:  # a fix citing the commit that broke it
            culprit, cited = self.rng.choice(comp.recent)
            subject = f"{comp.root.split('/')[1]}: fix {self.rng.choice(BUGS)} in {self._word()}"
            body = f"Fixes: {self.ask(culprit)[:12]} (\"{cited}\")"
        elif r < 0.07 and comp.recent:  # a revert
            culprit, cited = self.rng.choice(comp.recent)
            subject = f"Revert \"{cited}\""
            body = f"This reverts commit {self.ask(culprit)}."
        else:
            subject = self._subject(comp)
        ops = self._change(comp, self.files)
        mark = self._commit("refs/heads/main", subject, body, ops, parent=self.head,
                            skew=self.rng.random() < 0.01)
        self.head = mark
        comp.recent = (comp.recent + [(mark, subject)])[-30:]

    def _side_branch(self) -> None:
        """A topic branch off main, merged back after a few more mainline commits."""
        base = self.head
        comp = self.rng.choice(self.comps)
        state: dict[str, list[str]] = {}
        tip = base
        for _ in range(self.rng.randint(1, 5)):
            subject = self._subject(comp)
            tip = self._commit("refs/heads/side", subject, "", self._change(comp, state), parent=tip)
            comp.recent = (comp.recent + [(tip, subject)])[-30:]
        for _ in range(self.rng.randint(0, 4)):
            self._mainline()
        self.files.update(state)
        ops = [("M", p, lines) for p, lines in sorted(state.items()) if p in self.files]
        self.head = self._commit("refs/heads/main", f"Merge branch 'topic-{tip}'", "", ops,
                                 parent=self.head, merge=tip)

    def _subtree_import(self) -> None:
        """A project with its own root commit, merged in (git subtree add)."""
        comp = Component(f"libs/imported-{self.made}", self.rng.choice(list(LANGS)))
        self.comps.append(comp)
        tip = None
        for i in range(self.rng.randint(2, 6)):
            ops = [self._new_file(comp) for _ in range(2)]
            tip = self._commit(f"refs/heads/import-{len(self.comps)}", f"initial import {i}", "", ops, parent=tip)
        ops = [("M", p, self.files[p]) for p in comp.files]
        self.head = self._commit("refs/heads/main", f"Add '{comp.root}' from its own history", "", ops,
                                 parent=self.head, merge=tip)

    def _large(self) -> None:
        """A treewide change: a licence header in every file that lacks one (thousands of files)."""
        ops = []
        for path in sorted(self.files):
            lines = self.files[path]
            if not lines or not lines[0].startswith(("#", "//")):
                lines = [f"{'#' if path.endswith('.py') else '//'} SPDX-License-Identifier: Apache-2.0"] + lines
                self.files[path] = lines
                ops.append(("M", path, lines))
        self.head = self._commit("refs/heads/main", "treewide: add SPDX licence headers", "", ops, parent=self.head)

    def run(self) -> None:
        # the first commit: every component starts with a few files
        ops = [self._new_file(c) for c in self.comps for _ in range(3)]
        self.head = self._commit("refs/heads/main", "Initial monorepo layout", "", ops, parent=None)
        larges = sorted({max(2, self.target * k // 4) for k in (1, 2, 3)})
        imports = sorted({max(3, self.target * k // 3 + 7) for k in (1, 2)})
        while self.made < self.target:
            if larges and self.made >= larges[0]:
                larges.pop(0)
                self._large()
            elif imports and self.made >= imports[0]:
                imports.pop(0)
                self._subtree_import()
            elif self.rng.random() < 0.05 and self.target - self.made > 12:
                self._side_branch()
            else:
                self._mainline()


def generate(dest: Path, *, commits: int, seed: int, services: int = 300, libs: int = 150,
             vocabulary: str = "component") -> None:
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} exists and is not empty; give a new directory")
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=dest,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    known: dict[int, str] = {}

    def ask(mark: int) -> str:
        if mark not in known:
            proc.stdin.write(b"get-mark :%d\n" % mark)
            proc.stdin.flush()
            known[mark] = proc.stdout.readline().decode().strip()
        return known[mark]

    gen = Generator(proc.stdin, ask, random.Random(seed), commits=commits, services=services, libs=libs,
                    vocabulary=vocabulary)
    started = time.perf_counter()
    gen.run()
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=dest, check=True)
    print(f"{dest}: {gen.made} commits, {len(gen.files)} files on main, "
          f"{time.perf_counter() - started:.0f}s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--commits", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--services", type=int, default=300)
    ap.add_argument("--libs", type=int, default=150)
    ap.add_argument("--vocabulary", choices=("component", "shared"), default="component",
                    help="identifiers mostly per component (default) or all from 400 shared names")
    args = ap.parse_args(argv)
    generate(args.dest, commits=args.commits, seed=args.seed, services=args.services, libs=args.libs,
             vocabulary=args.vocabulary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Milliseconds per file for rcahook.codegraph.parse on synthetic sources of each language.

Columns: a fresh definitions-only parse, a fresh full parse (calls and imports too), and a
definitions-only parse of the next version of a file already parsed (one line changed), which
re-uses the previous tree. Run: python bench/bench_parse.py [--functions 150] [--repeat 20]
"""
from __future__ import annotations

import argparse
import itertools
import time

from rich.console import Console
from rich.table import Table

from rcahook.codegraph.parse import parse_source

# Per language: a file header, then a function template repeated with {i} replaced; each function is
# ~20 lines with a few calls, so 150 of them make ~3,000 lines.
_TEMPLATES = {
    "c": ('#include <stdio.h>\n#include "util.h"\n\nstruct ctx { int n; const struct ops *ops; };\n\n',
          "static int func_{i}(struct ctx *c, int n)\n{\n\tint r = 0;\n\n"
          + "".join(f"\tif (n > {j}) {{\n\t\tr += helper_{j}(c, n - {j});\n\t\tc->ops->log(c, r);\n\t}}\n"
                    for j in range(4))
          + "\treturn r;\n}\n\n"),
    "cpp": ("#include <vector>\n#include \"util.hpp\"\n\nnamespace app {\n\n",
            "class Worker{i} : public Base {\npublic:\n    int run(int n) {\n        int r = 0;\n"
            + "".join(f"        for (int k = 0; k < n; ++k) {{\n            r += helper_{j}(k);\n"
                      f"            items_.push_back(k);\n        }}\n" for j in range(3))
            + "        return r;\n    }\nprivate:\n    std::vector<int> items_;\n};\n\n"),
    "python": ("import os\nfrom .util import helper_0, helper_1\n\n\n",
               "class Worker{i}(Base):\n    def run(self, n):\n        r = 0\n"
               + "".join(f"        for k in range(n):\n            if k > {j}:\n"
                         f"                r += helper_{j}(k)\n                self.items.append(k)\n"
                         for j in range(4))
               + "        return r\n\n\n"),
    "go": ('package app\n\nimport (\n\t"fmt"\n\t"example.com/app/util"\n)\n\n',
           "func (w *Worker) Run{i}(n int) int {\n\tr := 0\n"
           + "".join(f"\tfor k := 0; k < n; k++ {{\n\t\tif k > {j} {{\n\t\t\tr += util.Helper{j}(k)\n"
                     f"\t\t\tfmt.Println(r)\n\t\t}}\n\t}}\n" for j in range(3))
           + "\treturn r\n}\n\n"),
    "java": ("package app;\n\nimport java.util.List;\n\npublic class Workers {\n",
             "    public int run{i}(int n) {\n        int r = 0;\n"
             + "".join(f"        for (int k = 0; k < n; k++) {{\n            if (k > {j}) {{\n"
                       f"                r += Util.helper{j}(k);\n                items.add(new Item(k));\n"
                       f"            }}\n        }}\n" for j in range(3))
             + "        return r;\n    }\n\n"),
    "javascript": ("import { helper } from './util.js';\nconst fs = require('fs');\n\n",
                   "export function run{i}(n) {\n  let r = 0;\n"
                   + "".join(f"  for (let k = 0; k < n; k++) {{\n    if (k > {j}) {{\n"
                             f"      r += helper(k, {j});\n      this.items.push(new Item(k));\n"
                             f"    }}\n  }}\n"
                             for j in range(3))
                   + "  return r;\n}\n\n"),
    "typescript": ("import { helper } from './util';\n\n",
                   "export const run{i} = (n: number): number => {\n  let r: number = 0;\n"
                   + "".join(f"  for (let k = 0; k < n; k++) {{\n    if (k > {j}) {{\n"
                             f"      r += helper(k, {j});\n      items.push(new Item(k));\n    }}\n  }}\n"
                             for j in range(3))
                   + "  return r;\n};\n\n"),
    "rust": ("use crate::util::{helper, Item};\n\nimpl Worker {\n",
             "    pub fn run_{i}(&mut self, n: usize) -> usize {\n        let mut r = 0;\n"
             + "".join(f"        for k in 0..n {{\n            if k > {j} {{\n"
                       f"                r += helper(k);\n"
                       f"                self.items.push(Item::new(k));\n            }}\n        }}\n"
                       for j in range(3))
             + "        r\n    }\n\n"),
}
_CLOSERS = {"cpp": "}\n", "java": "}\n", "rust": "}\n"}
_EXTENSIONS = {"c": "c", "cpp": "cpp", "python": "py", "go": "go", "java": "java",
               "javascript": "js", "typescript": "ts", "rust": "rs"}


def make_source(lang: str, functions: int) -> bytes:
    header, body = _TEMPLATES[lang]
    functions_text = "".join(body.replace("{i}", str(i)) for i in range(functions))
    return (header + functions_text + _CLOSERS.get(lang, "")).encode()


def _ms(run, repeat: int) -> float:
    """Fastest of `repeat` runs, as timeit does: the least disturbed by other processes."""
    run(0)  # warm up: grammar and query compilation
    best = float("inf")
    for i in range(1, repeat + 1):
        start = time.perf_counter()
        run(i)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    counter = itertools.count()

    title = f"rcahook.codegraph.parse, {args.functions} functions per file (ms, fastest of {args.repeat})"
    table = Table(title=title)
    for column in ("language", "lines", "defs", "calls", "defs only", "full", "next version, defs"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for lang, ext in _EXTENSIONS.items():
        data = make_source(lang, args.functions)
        full = parse_source(f"x.{ext}", data)
        # A new path each time, so no previous tree is re-used.
        defs_ms = _ms(lambda i: parse_source(f"f{next(counter)}.{ext}", data, with_references=False),
                      args.repeat)
        full_ms = _ms(lambda i: parse_source(f"f{next(counter)}.{ext}", data), args.repeat)
        # Alternate two versions of one path, the second with a line inserted in the middle.
        middle = data.find(b"\n", len(data) // 2)
        versions = (data, data[:middle] + b"\n" + data[middle:])
        next_ms = _ms(lambda i: parse_source(f"v.{ext}", versions[i % 2], with_references=False),
                      args.repeat)
        table.add_row(lang, str(data.count(b"\n")), str(len(full.definitions)), str(len(full.references)),
                      f"{defs_ms:.2f}", f"{full_ms:.2f}", f"{next_ms:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()

"""Timing of the embedded model: loads, one long forward pass, both rankers on 40 candidates.

    python bench/bench_llm.py [--threads N] [--candidates 40] [--cache DIR]

The cold row appears only when the de-quantized cache is absent (point --cache at an
empty directory to measure it). Prints a rich table; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SUBSYSTEMS = ["net", "dict", "evict", "persist", "repl", "config", "commands", "slowlog", "expire", "client"]
VERBS = ["fix leak in", "handle EINTR in", "add counters to", "simplify", "validate input of",
         "reuse buffer in", "log errors from", "speed up"]


def synthetic_candidates(n: int, seed: int = 0):
    from rcahook.llm.prompt import CandidateView

    rng = random.Random(seed)
    out = []
    for i in range(n):
        sub = SUBSYSTEMS[i % len(SUBSYSTEMS)]
        func = f"{sub}_{rng.choice(['init', 'free', 'read', 'write', 'cron', 'parse'])}"
        diff = "\n".join(
            f"{rng.choice('+-')}    {rng.choice(['if (', 'ret = ', 'free(', 'len += '])}{func}(c, {j});"
            for j in range(rng.randint(6, 30)))
        out.append(CandidateView(
            key=f"c{i:02d}", subject=f"{sub}: {rng.choice(VERBS)} {func}",
            paths=(f"src/{sub}.c", f"src/{sub}.h", f"tests/test_{sub}.py")[: rng.randint(1, 3)],
            definitions=(func,), diff_excerpt=diff, age=f"{1 + i % 9} days before the incident"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--cache", type=Path, help="model cache directory (RCAHOOK_CACHE)")
    args = parser.parse_args()
    if args.cache:
        os.environ["RCAHOOK_CACHE"] = str(args.cache)

    from rcahook.llm import IncidentView, election_rank, load_backend, logprob_rank
    from rcahook.llm.embedded import cache_dir_for, embedded_gguf, embedded_model_dir
    from rcahook.llm.prompt import LABELS, build_prompt

    rows: list[tuple[str, str, str, str]] = []

    class timed:
        """Wall and CPU seconds of a block: on a shared machine CPU time is the steadier figure."""

        def __enter__(self):
            self.wall, self.cpu = time.perf_counter(), time.process_time()
            return self

        def __exit__(self, *exc):
            self.wall = time.perf_counter() - self.wall
            self.cpu = time.process_time() - self.cpu

        def row(self, measure: str, note: str = "", digits: int = 2) -> None:
            rows.append((measure, f"{self.wall:.{digits}f} s", f"{self.cpu:.{digits}f} s", note))

    with timed() as t:
        import torch
        import transformers  # noqa: F401  (imported by the first load otherwise)

        torch.set_num_threads(args.threads)
    t.row("import torch + transformers", f"{args.threads} threads")

    cache = cache_dir_for(embedded_gguf())
    if (cache / "config.json").is_file():
        rows.append(("cold GGUF load + de-quantize + cache", "skipped", "", f"cache exists: {cache}"))
    else:
        with timed() as t:
            embedded_model_dir()
        t.row("cold GGUF load + de-quantize + cache", str(cache), digits=1)

    with timed() as t:
        backend = load_backend()
    t.row("warm load (tokenizer + weights from cache)", backend.name)

    incident = IncidentView(
        title="kvd crashes with SIGSEGV in evict_free when maxmemory is reached",
        description="backtrace: #0 evict_free (src/evict.c:212) #1 commands_write (src/commands.c:141)",
        impacted=("src/evict.c", "src/commands.c"))
    cands = synthetic_candidates(args.candidates)
    prompt = build_prompt(incident, cands[:20], labels=LABELS, token_budget=1300,
                          count_tokens=backend.count_tokens)
    n_tokens = len(backend.encode(prompt))
    backend.label_logprobs(prompt, prompt.labels)  # warm-up: the first call allocates
    runs = []
    for _ in range(3):
        with timed() as t:
            backend.label_logprobs(prompt, prompt.labels)
        runs.append(t)
    best = min(runs, key=lambda r: r.wall)
    best.row(f"forward pass, {n_tokens} tokens (label logprobs)", "best of 3")

    with timed() as t:
        text = backend.generate(prompt, max_new_tokens=28)
    new = len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    t.row(f"generate after {n_tokens} tokens", f"{new} new tokens (stops at end of line)")

    for name, ranker in (("election", election_rank), ("logprob", logprob_rank)):
        done = []
        with timed() as t:
            ranker(backend, incident, cands, progress=lambda d, total: done.append((d, total)))
        t.row(f"{name} rank, {len(cands)} candidates", f"{done[-1][1]} prompts", digits=1)

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(("peak RSS", f"{peak_mib:.0f} MiB", "", ""))
    load = os.getloadavg()[0]

    table = Table(title="rcahook embedded model (SmolLM2-135M-Instruct, float32, CPU)",
                  caption=f"{os.cpu_count()} CPUs, load average {load:.1f} at the end")
    table.add_column("measure")
    table.add_column("wall", justify="right")
    table.add_column("CPU", justify="right")
    table.add_column("note")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()

"""Seconds per optimiser step and peak memory of each `rcahook train` stage on CPU.

    python bench/bench_train.py [--steps 3] [--data-dir DIR] [--threads N] [--full]

Trains a few steps of each stage (cpt, sft, rank) of the embedded SmolLM2-135M with
LoRA (or --full), each stage in its own process so that its peak RSS is its own. The data
is a `rcahook train data` directory when given (real prompts of a repository), else
synthetic: CPT blocks packed from rcahook's own source, SFT prompts built by
`build_prompt` from synthetic candidates with diffs (~1500 tokens, 20 candidates).
One step = 4 sequences (batch 1 x 4 accumulation steps, the defaults). Prints a rich
table; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def synthetic_sft(n: int, seed: int = 0) -> list[dict]:
    from rcahook.llm.prompt import CandidateView, IncidentView, assign_labels, build_prompt
    from rcahook.train.data import messages

    rng = random.Random(seed)
    rows = []
    for k in range(n):
        cands = []
        for i in range(20):
            sub = rng.choice(["net", "dict", "evict", "persist", "repl", "config"])
            func = f"{sub}_{rng.choice(['init', 'free', 'read', 'write', 'parse'])}"
            diff = "\n".join(f"{rng.choice('+-')}    ret = {func}(c, {j});" for j in range(rng.randint(8, 30)))
            cands.append(CandidateView(key=f"c{i}", subject=f"{sub}: rework {func}", paths=(f"src/{sub}.c",),
                                       definitions=(func,), diff_excerpt=diff))
        labels = assign_labels(20, rng)
        prompt = build_prompt(IncidentView(title=f"crash in evict_free under load ({k})"), cands, labels=labels)
        answer = rng.sample(labels, 5)
        rows.append({"messages": messages(prompt, answer), "meta": {"answer_prefix": prompt.answer_prefix}})
    return rows


def worker(stage_name: str, args) -> dict:
    import torch

    from rcahook.train import lm
    from rcahook.train.card import LoraConfig, StageConfig
    from rcahook.train.data import Document, pack, read_jsonl

    torch.set_num_threads(args.threads)
    base = lm.resolve_base(None)
    tokenizer = lm.load_tokenizer(base.path)
    n = args.steps * 4
    limit = lm.max_length(base.path)  # what `rcahook train` allows
    if stage_name == "cpt":
        if args.data_dir:
            rows = list(islice(read_jsonl(Path(args.data_dir) / "cpt.jsonl"), n))
        else:
            docs = [Document("code", str(p), p.read_text()) for p in sorted((ROOT / "rcahook").rglob("*.py"))]
            rows = pack(docs, tokenizer, block_size=1024, seed=0)[:n]
        examples, skipped = lm.encode_cpt(rows, limit=limit), 0
    else:
        name = "sft.jsonl" if stage_name == "sft" else "ranked.jsonl"
        path = Path(args.data_dir or "") / name
        rows = list(islice(read_jsonl(path), n)) if args.data_dir and path.is_file() else synthetic_sft(n)
        examples, skipped = lm.encode_sft(rows, tokenizer, limit=limit)
    if not examples:
        raise SystemExit(f"{stage_name}: all {len(rows)} sequences are longer than {limit} tokens")
    stage = StageConfig(name=stage_name, learning_rate=1e-4, epochs=1, max_steps=args.steps, save_steps=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = lm.train_stage(stage, examples, base=base, init=None, lora=None if args.full else LoraConfig(),
                                stage_dir=Path(tmp) / stage_name, tokenizer=tokenizer, seed=0, progress=False)
        wall = time.perf_counter() - started
    return {"stage": stage_name, "steps": result.steps, "sequences": len(examples),
            "tokens": result.tokens, "seconds": result.seconds, "wall": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="a `rcahook train data` output directory")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RCAHOOK_QUIET", "1")
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    from rich.console import Console
    from rich.table import Table

    rows = []
    for stage in ("cpt", "sft", "rank"):
        cmd = [sys.executable, __file__, "--worker", stage, "--steps", str(args.steps), "--threads", str(args.threads)]
        cmd += (["--data-dir", args.data_dir] if args.data_dir else []) + (["--full"] if args.full else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()[0]
    table = Table(title=f"rcahook train on CPU: embedded SmolLM2-135M, {'full' if args.full else 'LoRA r=16'}, "
                        f"{args.threads} threads, {args.steps} steps of 4 sequences (load average {load:.1f})")
    for col in ("stage", "sequences", "tokens/sequence", "s/step", "tokens/s", "peak RSS (MB)"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in rows:
        per_step = r["seconds"] / max(r["steps"], 1)
        table.add_row(r["stage"], str(r["sequences"]), f"{r['tokens'] / max(r['sequences'], 1):.0f}",
                      f"{per_step:.1f}", f"{r['tokens'] / max(r['seconds'], 1e-9):.0f}", f"{r['peak_rss_mb']:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()

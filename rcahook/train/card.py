"""What a training run is configured with, and what it leaves beside its weights.

`rcahook_model.json` is the card `rcahook.llm.local` reads (`base`, `adapter`, `name`);
everything else in it makes the checkpoint self-describing: the data cut-off, the stages
with their hyper-parameters and timings, the sha256 of every dataset, the seed and the
library versions. `MODEL_CARD.md` says the same for people, with the evaluation table.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rcahook import __version__

CARD_FILE = "rcahook_model.json"  # the name rcahook.llm.local reads
CARD_FORMAT = "rcahook.model/1"
MARKDOWN_CARD = "MODEL_CARD.md"


# Any, as dataclasses.field is typed: the field's declared type is the one that counts
def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class DataConfig:
    """How the datasets are made (`rcahook train data`)."""

    window: int = _help("protocol v1 window: candidates per mined investigation", 500)
    block_size: int = _help("tokens per packed CPT block (the CPT context length)", 1024)
    max_file_bytes: int = _help("CPT skips files larger than this (generated code, data)", 200_000)
    commit_messages: bool = _help("CPT also reads the commit messages before the cut-off", True)
    min_candidates: int = _help("fewest candidates in an SFT prompt (root cause included)", 2)
    max_candidates: int = _help("most candidates in an SFT prompt (the prompt's 20 labels)", 20)
    llm_top: int = _help("distractors come from the retriever's top this many (as the rankers re-rank)", 40)
    picks: int = _help("labels in the target answer (the election ranker's picks)", 5)
    paths_share: float = _help("share of mined examples that show the fix's paths as impacted paths", 0.5)
    token_budget: int = _help("prompt token budget, as RankerSpec.token_budget", 1800)


@dataclass(frozen=True)
class StageConfig:
    """One training stage: the optimiser schedule for it."""

    name: str = _help("cpt, sft or rank", "sft")
    learning_rate: float = _help("peak learning rate (cosine decay after warm-up)", 2e-4)
    epochs: float = _help("passes over the stage's dataset (unless max_steps stops it first)", 1.0)
    batch_size: int = _help("sequences per device per forward pass", 1)
    grad_accum: int = _help("forward passes per optimiser step", 4)
    warmup: float = _help("share of the steps spent warming up", 0.1)
    max_steps: int | None = _help("stop after this many optimiser steps (--max-steps)", None)
    save_steps: int = _help("checkpoint every this many steps (a rerun resumes from the last)", 50)


@dataclass(frozen=True)
class LoraConfig:
    r: int = _help("LoRA rank", 16)
    alpha: int = _help("LoRA alpha (the update is scaled by alpha / r)", 32)
    dropout: float = _help("dropout on the LoRA input", 0.05)
    target_modules: str = _help("layers that get an adapter; all-linear = every linear but lm_head", "all-linear")


# Learning rates: LoRA updates a small low-rank delta and tolerates ~10x the full rate.
_LORA_LR = {"cpt": 1e-4, "sft": 2e-4, "rank": 1e-4}
_FULL_LR = {"cpt": 2e-5, "sft": 1e-5, "rank": 5e-6}
_EPOCHS = {"cpt": 1.0, "sft": 2.0, "rank": 1.0}


def stage_config(name: str, *, lora: bool, max_steps: int | None) -> StageConfig:
    lr = (_LORA_LR if lora else _FULL_LR)[name]
    return StageConfig(name=name, learning_rate=lr, epochs=_EPOCHS[name], max_steps=max_steps)


@dataclass(frozen=True)
class Cutoff:
    """The end of the training data: nothing committed after it reaches any dataset."""

    rule: str  # "until" (a revision), "before" (a date) or "head" (no cut-off given)
    given: str | None  # the --until / --before value as typed
    sha: str  # newest commit of the training history: the CPT tree is read here
    time: int  # inclusive bound, epoch seconds: a fix committed later is never training data

    def to_json(self) -> dict:
        return {"rule": self.rule, "given": self.given, "sha": self.sha, "time": self.time,
                "iso": iso(self.time)}

    @classmethod
    def from_json(cls, doc: dict) -> Cutoff:
        return cls(doc["rule"], doc.get("given"), doc["sha"], int(doc["time"]))


def default_dir(slug: str, cut: Cutoff) -> Path:
    """models/<repo>-<cut-off date>: where `rcahook train` and `rcahook train data` write by default."""
    return Path("models") / f"{slug}-{datetime.fromtimestamp(cut.time, timezone.utc):%Y%m%d}"


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> dict[str, str]:
    """Library versions, read from package metadata (no heavy import)."""
    from importlib import metadata

    out = {"rcahook": __version__}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def prompt_fingerprint() -> str:
    """A hash of the ranking prompt's wording: a model is trained for one wording, and a
    later rcahook that words the prompt differently shows in a different fingerprint."""
    import hashlib

    from rcahook.llm.prompt import CandidateView, IncidentView, build_prompt

    p = build_prompt(IncidentView("title", "description", ("src/a.c",)),
                     [CandidateView("k1", "one", ("src/a.c",), ("f",), "+x"), CandidateView("k2", "two")],
                     labels=["B", "C"], picks=2)
    return hashlib.sha256(f"{p.system}\n{p.user}\n{p.answer_prefix}".encode()).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    examples: int  # sequences in the stage's dataset
    tokens: int  # tokens in them
    steps: int  # optimiser steps taken
    seconds: float
    loss_first: float | None  # training loss of the first logged step
    loss_last: float | None
    skipped: int = 0  # examples dropped (longer than the model reads)
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> StageResult:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def write_card(out: Path, card: dict) -> Path:
    path = out / CARD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def model_card(*, name: str, base: str, base_name: str, adapter: bool, cutoff: Cutoff, repository: dict,
               stages: list[StageResult], lora: LoraConfig | None, data: DataConfig, datasets: dict,
               seed: int, scorers: dict, evaluation: dict | None) -> dict:
    """The rcahook_model.json document: `base`/`adapter`/`name` as rcahook.llm.local reads them."""
    return {
        "format": CARD_FORMAT,
        "name": base_name,  # the loader shows "<name>+<output dir>"
        "base": base,  # "embedded" or an absolute model directory
        "adapter": adapter,
        "model_name": name,
        "created": iso(int(time.time())),
        "repository": repository,
        "cutoff": cutoff.to_json(),
        "stages": [s.name for s in stages],
        "stage_results": {s.name: s.to_json() for s in stages},
        "hyperparameters": {"lora": asdict(lora) if lora else None, "data": asdict(data),
                            "stages": {s.name: s.config for s in stages}},
        "datasets": datasets,
        "seed": seed,
        "prompt_fingerprint": prompt_fingerprint(),
        "versions": versions(),
        "scorers": scorers,
        "evaluation": evaluation,
    }


def render_markdown(card: dict) -> str:
    """MODEL_CARD.md: what the model is, what it saw, how it was trained and how it does."""
    cut = card["cutoff"]
    repo = card["repository"]
    lines = [
        f"# {card['model_name']}",
        "",
        f"A ranking model for `rcahook investigate --model` / `rcahook backtest --model`, trained by "
        f"`rcahook train` (rcahook {card['versions'].get('rcahook', '?')}) on the history of "
        f"`{repo.get('path', '?')}`.",
        "",
        f"- base model: `{card['base']}` ({card['name']}); "
        + ("a LoRA adapter over it" if card["adapter"] else "full fine-tuned weights"),
        f"- data cut-off: {cut['iso']} (`--{cut['rule']} {cut['given']}`, commit `{cut['sha'][:12]}`)"
        if cut["rule"] != "head" else f"- data cut-off: HEAD `{cut['sha'][:12]}` ({cut['iso']}), no later data",
        f"- stages: {', '.join(card['stages']) or 'none'}; seed {card['seed']}",
        "",
        "## Training",
        "",
        "| stage | examples | tokens | steps | seconds | s/step | loss first → last |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in card["stages"]:
        s = card["stage_results"][name]
        per = s["seconds"] / s["steps"] if s["steps"] else 0.0
        loss = (f"{s['loss_first']:.3f} → {s['loss_last']:.3f}"
                if s["loss_first"] is not None and s["loss_last"] is not None else "-")
        lines.append(f"| {name} | {s['examples']} | {s['tokens']} | {s['steps']} | {s['seconds']:.0f} | "
                     f"{per:.1f} | {loss} |")
    lines += ["", "Datasets (sha256 of each JSONL):", ""]
    for fname, d in sorted(card["datasets"].items()):
        lines.append(f"- `{fname}`: {d.get('rows', '?')} rows, sha256 `{d.get('sha256', '?')[:16]}…`")
    sc = card.get("scorers") or {}
    if sc:
        lines += ["", "## Scorers fitted on the same history", ""]
        for key, value in sc.items():
            lines.append(f"- {key}: {value.get('summary', value)}")
    ev = card.get("evaluation")
    lines += ["", "## Evaluation on the investigations after the cut-off", ""]
    if not ev:
        lines.append("Not run (pass `--eval`).")
    else:
        lines += [
            f"Protocol v1, window {ev['window']}, track {ev['track']}, {ev['n']} investigations whose fix "
            f"was committed after the cut-off (repository HEAD `{ev['head'][:12]}`"
            + (f", a seeded sample of {ev['sample']}" if ev.get("sample") else "") + "). "
            "LLM rankers re-rank the top "
            f"{ev['llm_top']} of the features ranking with the learned weights.",
            "",
            "| ranker | model | n | top-1 | top-5 | top-10 | MRR | s/investigation |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in ev["rows"]:
            lines.append(f"| {row['ranker']} | {row['model']} | {row['n']} | {row['top1']:.3f} | {row['top5']:.3f} "
                         f"| {row['top10']:.3f} | {row['mrr']:.3f} | {row['seconds_mean']:.1f} |")
    lines += [
        "", "## Use", "",
        "```",
        "rcahook investigate --model PATH --ranker logprob --title '...'",
        "rcahook backtest --model PATH --ranker election,logprob",
        "```",
        "",
        "Trained only on data before the cut-off: measure it only on investigations after it.",
        "",
    ]
    return "\n".join(lines)

"""`rcahook train`: fit the features ranker and risk model, then CPT -> SFT -> ranked SFT.

Rerunning with the same --output resumes: finished stages (stage.json) are kept when
nothing they depend on changed, an unfinished one continues from its last checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rcahook.commands.common import index_path, open_history, open_repo, say
from rcahook.errors import BadInputError
from rcahook.progress import Progress, interactive
from rcahook.train import STAGES

if TYPE_CHECKING:
    from rcahook.llm.backend import Backend


def parse_stages(value: str) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        raise BadInputError(f"--stages {value!r}: expected a comma-separated subset of {','.join(STAGES)}")
    return [s for s in STAGES if s in names]  # always in the recipe's order


def run(*, repo: str, db: str | None, base: str | None, stages: str, until: str | None, before: str | None,
        output: str | None, max_steps: int | None, lora: bool, eval_: bool, seed: int, data_dir: str | None,
        features_only: bool, eval_sample: int | None = None) -> int:
    from rcahook.train import data as td
    from rcahook.train import lm
    from rcahook.train.card import default_dir
    from rcahook.train.scorers import fit_scorers, save_scorers

    names = [] if features_only else parse_stages(stages)
    if max_steps is not None and max_steps < 1:
        raise BadInputError(f"--max-steps {max_steps}: expected a positive number of optimiser steps")
    if eval_sample is not None and eval_sample < 1:
        raise BadInputError(f"--eval-sample {eval_sample}: expected a positive number of investigations")
    r = open_repo(repo)
    with lm.main_first():  # one process brings the index up to date
        history = open_history(r, db, update=True, graph=False)
        history.ensure_touched(progress=Progress())  # all of history, once, before any worker reads it
    try:
        cut = _cutoff(r, history, until=until, before=before, data_dir=data_dir)
        slug = r.slug()
        out = Path(output) if output else default_dir(slug, cut)
        index_dir = index_path(r, db).parent
        allowed = td.allowed_commits(history, cut)
        window = td.DataConfig().window
        investigations = td.training_investigations(history, cut, allowed, window=window)
        repository = {"path": str(r.workdir or r.git_dir), "slug": slug, "head": r.resolve("HEAD")}
        scorers: dict = {}
        if lm.is_main():
            fitted = fit_scorers(history, investigations, cut=cut, window=window, repository=repository["path"],
                                 progress=Progress(), graph_at=_graph_at(r, history))
            targets = [index_dir] + ([out] if output or not features_only else [])
            for d in targets:
                d.mkdir(parents=True, exist_ok=True)
            for path in save_scorers(fitted, *targets):
                say(f"wrote {path}")
            for note in fitted.notes:
                say(f"note: {note}")
            scorers = fitted.summary()
        if features_only:
            if eval_ and lm.is_main():
                _evaluate(r, history, cut, out, base=None, trained=None, index_dir=index_dir, llm=False,
                          sample=eval_sample, seed=seed)
            return 0
        card = _train_language_model(r, history, cut, out, names=names, base=base, lora=lora, max_steps=max_steps,
                                     seed=seed, data_dir=data_dir, allowed=allowed, repository=repository,
                                     scorers=scorers)
        if card is None:  # not the main process
            return 0
        if eval_:
            card["evaluation"] = _evaluate(r, history, cut, out, base=card["base"], trained=out, index_dir=index_dir,
                                           llm=True, sample=eval_sample, seed=seed)
            _write_cards(out, card)
    finally:
        history.close()
    _print_summary(out, card)
    return 0


def _graph_at(r, history):
    """The code graph at a revision, as the backtest replays it (parses cached in the index)."""
    from rcahook.codegraph.graph import graph_at

    return lambda rev: graph_at(history.conn, r, rev)


def _cutoff(r, history, *, until, before, data_dir):
    """--until/--before; with neither, a --data-dir's own cut-off, else HEAD."""
    from rcahook.train import data as td
    from rcahook.train.card import Cutoff

    if data_dir and not until and not before:
        made = ((td.read_manifest(Path(data_dir)) or {}).get("key") or {}).get("cutoff")
        if made:
            return Cutoff.from_json(made)
    return td.resolve_cutoff(r, history, until=until, before=before)


def _train_language_model(r, history, cut, out: Path, *, names, base, lora, max_steps, seed, data_dir, allowed,
                          repository, scorers) -> dict | None:
    from rcahook.train import data as td
    from rcahook.train import lm
    from rcahook.train.card import DataConfig, LoraConfig, model_card, stage_config

    base_model = lm.resolve_base(base)
    tokenizer = lm.load_tokenizer(base_model.path)
    limit = lm.max_length(base_model.path)
    config = replace(DataConfig(), block_size=min(DataConfig().block_size, limit))
    lora_config = LoraConfig() if lora else None
    with lm.main_first():
        if data_dir:
            data = td.open_datasets(Path(data_dir), cut)
            td.ensure_packed(data, tokenizer, allowed=allowed, block_size=config.block_size, seed=seed, say=say)
        else:
            data = td.build_datasets(r, history, cut, out / "data", tokenizer=tokenizer, config=config, seed=seed,
                                     progress=Progress(), say=say)
    results = []
    previous: Path | None = None  # the last stage's weights
    chain = hashlib.sha256(json.dumps([base_model.card, asdict(lora_config) if lora_config else None,
                                       seed]).encode()).hexdigest()[:16]
    for name in names:
        stage = stage_config(name, lora=lora, max_steps=max_steps)
        stage_dir = out / "stages" / name
        if name == "rank":
            rows_file = _ranked(data, history, cut, allowed, previous or base_model.path, chain,
                                user_data=bool(data_dir))
        else:
            rows_file = data.path(td.CPT if name == "cpt" else td.SFT)
        if not rows_file.is_file():
            raise BadInputError(f"stage {name}: {rows_file} is missing; write it with `rcahook train data` or leave "
                                f"the stage out (--stages)")
        chain = hashlib.sha256(json.dumps([chain, name, asdict(stage), td.sha256_file(rows_file)]).encode()
                               ).hexdigest()[:16]
        done = _stage_dir(stage_dir, chain)
        if done is None:
            examples, skipped = _examples(name, rows_file, tokenizer, allowed, cut, limit)
            if lm.is_main():
                say(f"stage {name}: {len(examples)} sequences" + (
                    f" ({skipped} longer than {limit} tokens left out)" if skipped else ""))
            done = lm.train_stage(stage, examples, base=base_model, init=previous if lora else None,
                                  lora=lora_config, stage_dir=stage_dir, tokenizer=tokenizer, seed=seed,
                                  skipped=skipped, progress=interactive(), say=say)
        elif lm.is_main():
            say(f"stage {name}: already trained ({stage_dir / lm.STAGE_DONE}); kept")
        results.append(done)
        previous = stage_dir / lm.FINAL
        if not lora:  # full weights: the next stage starts from them
            base_model = lm.BaseModel(previous, base_model.card, base_model.name)
    if not lm.is_main():
        return None
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        lm.install_final(previous.parent, out)
    card = model_card(name=out.name, base=lm.resolve_base(base).card, base_name=lm.resolve_base(base).name,
                      adapter=lora, cutoff=cut, repository=repository, stages=results, lora=lora_config,
                      data=config, datasets=_used(data.files, names), seed=seed, scorers=scorers, evaluation=None)
    _write_cards(out, card)
    return card


def _used(files: dict, names: list[str]) -> dict:
    """The datasets the stages trained on (and what they were made from)."""
    from rcahook.train import data as td

    wanted = {"cpt": (td.CPT_DOCS, td.CPT), "sft": (td.SFT,), "rank": (td.SFT, td.RANKED)}
    keep = {f for name in names for f in wanted[name]}
    return {f: info for f, info in files.items() if f in keep}


def _stage_dir(stage_dir: Path, key: str):
    """The stage's result if it finished with this key; a stale directory is removed."""
    from rcahook.train import lm

    marker = stage_dir / "stage_key.json"
    if lm.is_main():
        if stage_dir.exists() and (not marker.is_file() or json.loads(marker.read_text()).get("key") != key):
            say(f"{stage_dir} was trained from other data, weights or settings; starting it afresh")
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"key": key}) + "\n")
    lm.barrier()
    return lm.stage_done(stage_dir)


def _examples(name: str, path: Path, tokenizer, allowed, cut, limit: int):
    from rcahook.train import data as td
    from rcahook.train import lm

    if name == "cpt":
        rows = list(td.read_jsonl(path))
        return lm.encode_cpt(rows, limit=limit), 0
    rows, dropped = td.load_rows(path, allowed, cut)
    if dropped and lm.is_main():
        say(f"left {dropped} row(s) of {path.name} out: they refer to commits after the cut-off")
    return lm.encode_sft(rows, tokenizer, limit=limit)


def _ranked(data, history, cut, allowed, model: Path, key: str, *, user_data: bool) -> Path:
    """ranked.jsonl: reused when a user supplied it or it was made by this very model, else made now."""
    from rcahook.train import data as td
    from rcahook.train import lm

    path = data.path(td.RANKED)
    if path.is_file() and (user_data or (data.manifest.get("ranked_by") or {}).get("key") == key):
        return path
    with lm.main_first():
        if lm.is_main():
            rows, _ = td.load_rows(data.path(td.SFT), allowed, cut)
            say(f"ranking the {len(rows)} SFT examples with {model} (the rank stage's targets)")
            data.files[td.RANKED] = td.write_jsonl(path, lm.rank_examples(str(model), rows, progress=Progress()))
            data.manifest["ranked_by"] = {"model": str(model), "key": key}
            data.save()
    return path


def _write_cards(out: Path, card: dict) -> None:
    from rcahook.train.card import MARKDOWN_CARD, render_markdown, write_card

    write_card(out, card)
    (out / MARKDOWN_CARD).write_text(render_markdown(card))


def _evaluate(r, history, cut, out: Path, *, base: str | None, trained: Path | None, index_dir: Path, llm: bool,
              sample: int | None, seed: int) -> dict:
    from rcahook.llm.backend import load_backend
    from rcahook.rca.model import WEIGHTS_FILE, Weights
    from rcahook.train.evaluate import RESULTS, EvalSettings, evaluate, investigations_after

    settings = EvalSettings(sample=sample, seed=seed, llm=llm)
    head = r.resolve("HEAD")
    invs = investigations_after(history, head, cut, settings=settings)
    if not invs:
        say("eval: no investigation was fixed after the cut-off; nothing to evaluate (choose an earlier --until)")
        return {"head": head, "window": settings.window, "track": settings.track, "llm_top": settings.llm_top,
                "sample": sample, "seed": seed, "n": 0, "fixes": [], "rows": [], "results": None}
    learned_path = out / WEIGHTS_FILE if (out / WEIGHTS_FILE).is_file() else index_dir / WEIGHTS_FILE
    learned = Weights.load(learned_path) if learned_path.is_file() else None
    models: dict[str, Callable[[], Backend]] = {}
    if llm:
        models = {"base": lambda: load_backend(None if base == "embedded" else base),
                  "trained": lambda: load_backend(str(trained))}
    say(f"eval: {len(invs)} investigations fixed after the cut-off")
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate(history, invs, head=head, cut=cut, settings=settings, learned=learned, models=models,
                      output=out / RESULTS, diff_text=r.diff_text, progress=Progress(),
                      graph_at=_graph_at(r, history))
    for row in result["rows"]:
        say(f"eval: {row['ranker']:9} {row['model']:16} n={row['n']} top-1 {row['top1']:.3f} "
            f"top-5 {row['top5']:.3f} MRR {row['mrr']:.3f}")
    return result


def _print_summary(out: Path, card: dict | None) -> None:
    if card is None:
        return
    print(f"trained {out} ({'LoRA adapter' if card['adapter'] else 'full weights'} over {card['base']}), "
          f"data cut-off {card['cutoff']['sha'][:12]} ({card['cutoff']['iso']})")
    for name in card["stages"]:
        s = card["stage_results"][name]
        print(f"  {name:5} {s['examples']:6} sequences {s['steps']:5} steps {s['seconds']:8.0f} s  "
              f"loss {s['loss_first'] or 0:.3f} -> {s['loss_last'] or 0:.3f}")
    print(f"use it: rcahook investigate --model {out} --ranker logprob ...")

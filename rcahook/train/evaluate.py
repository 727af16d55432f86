"""Base vs trained on the investigations after the cut-off (protocol v1), side by side.

Every outcome goes through `rcahook.backtest.run.Replayer`, i.e. `ranking.rank`, exactly
as `rcahook backtest` replays it; outcomes are appended to a JSONL file as they come, so an
interrupted evaluation resumes where it stopped (`rcahook.jsonl`: one made with other
settings is refused, never overwritten).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcahook.backtest.metrics import Outcome, summarize
from rcahook.backtest.mine import Investigation, mine_investigations
from rcahook.backtest.run import Replayer, select
from rcahook.index.reader import History
from rcahook.jsonl import ResultsFile
from rcahook.progress import Progress
from rcahook.train.card import Cutoff

if TYPE_CHECKING:
    from rcahook.codegraph.graph import CodeGraph
    from rcahook.llm.backend import Backend
    from rcahook.rca.model import Weights

RESULTS = "eval.jsonl"
RESULTS_FORMAT = "rcahook.train.eval/1"
BASELINES = ("bm25", "recency")
LLM = ("election", "logprob")


@dataclass(frozen=True)
class EvalSettings:
    window: int = 500
    track: str = "title"
    llm_top: int = 40
    sample: int | None = None  # a seeded random sample of the investigations after the cut-off
    seed: int = 0
    llm: bool = True  # also the election and logprob rankers, base vs trained model


def investigations_after(history: History, head: str, cut: Cutoff, *, settings: EvalSettings) -> list[Investigation]:
    """Fixes committed after the cut-off (the backtest's own time split), newest first."""
    mined = mine_investigations(history, head, window=settings.window)
    fix_time = {c.sha: c.committer_time for c in history.commits(inv.fix for inv in mined)}
    after = [inv for inv in mined if fix_time[inv.fix] > cut.time]
    return select(after, limit=None, sample=settings.sample, seed=settings.seed)


def evaluate(history: History, investigations: list[Investigation], *, head: str, cut: Cutoff,
             settings: EvalSettings, learned: Weights | None, models: Mapping[str, Callable[[], Backend]],
             output: Path,
             diff_text: Callable[[str], str] | None, progress: Progress | None = None,
             graph_at: Callable[[str], CodeGraph] | None = None) -> dict[str, Any]:
    """Outcomes for every (ranker, model) pair; `models` maps "base"/"trained" to loaders."""
    from rcahook.rca.model import default_weights

    default = default_weights()
    weights = learned or default
    pairs = [(b, "-") for b in BASELINES] + [("features", "default weights")]
    if learned is not None:
        pairs.append(("features", "learned weights"))
    if settings.llm:
        pairs += [(r, m) for m in models for r in LLM]
    results = results_file(output, head=head, cut=cut, settings=settings, pairs=pairs, default=default,
                           weights=weights)
    done = stored_outcomes(results.load())
    culprits = history.culprit_of()
    progress = progress or Progress(enabled=False)
    replayers: dict[str, Replayer] = {}

    def replayer(model: str) -> Replayer:
        if model not in replayers:
            w = default if model == "default weights" else weights
            # the model loads on first use: a resumed evaluation with all its outcomes stored loads none
            replayers[model] = Replayer(history, track=settings.track, weights=w, culprits=culprits, default=default,
                                        load_backend=models.get(model), llm_top=settings.llm_top,
                                        seed=settings.seed, diff_text=diff_text, graph_at=graph_at)
        return replayers[model]

    with results.open(resume=True) as f:
        for ranker, model in pairs:
            missing = [inv for inv in investigations if (inv.fix, ranker, model) not in done]
            if not missing:
                continue
            r = replayer(model)
            with progress.task(f"eval {ranker} ({model})", total=len(missing)) as advance:
                for inv in missing:
                    o = r.outcome(inv, ranker)
                    done[inv.fix, ranker, model] = o
                    f.write({"type": "result", "fix": inv.fix, "ranker": ranker, "model": model, "rank": o.rank,
                             "window": o.window, "retrieved": o.retrieved, "stage1": o.stage1,
                             "seconds": round(o.seconds, 3)})
                    advance(1)
            if model in models and ranker == LLM[-1]:
                replayers.pop(model, None)  # one model in memory at a time
    rows = []
    for ranker, model in pairs:
        s = summarize([done[inv.fix, ranker, model] for inv in investigations])
        rows.append({"ranker": ranker, "model": model, "n": s.n, "top1": s.top[1], "top5": s.top[5],
                     "top10": s.top[10], "mrr": s.mrr, "seconds_mean": s.seconds_mean})
    return {"head": head, "window": settings.window, "track": settings.track, "llm_top": settings.llm_top,
            "sample": settings.sample, "seed": settings.seed, "n": len(investigations),
            "fixes": [inv.fix for inv in investigations], "rows": rows, "results": str(output)}


_CHECKED = ("head", "cutoff", "window", "track", "sample", "seed")


def results_file(output: Path, *, head: str, cut: Cutoff, settings: EvalSettings, pairs: list[tuple[str, str]],
                 default, weights) -> ResultsFile:
    """The settings every outcome depends on are checked on resume; each (ranker, model) pair's
    own (its weights, the LLM re-ranking depth) only when an earlier run measured that pair, so
    an evaluation with the models can follow one of the features rankers alone."""
    def config(ranker: str, model: str) -> dict:
        if ranker in BASELINES:
            return {}
        used = default if model == "default weights" else weights
        fingerprint = hashlib.sha256(json.dumps(used.to_json()["values"]).encode()).hexdigest()[:16]
        return {"weights": fingerprint} | ({"llm_top": settings.llm_top} if ranker in LLM else {})

    header = {"format": RESULTS_FORMAT, "head": head, "cutoff": cut.to_json(), "window": settings.window,
              "track": settings.track, "sample": settings.sample, "seed": settings.seed,
              "pairs": {f"{ranker} ({model})": config(ranker, model) for ranker, model in pairs}}
    return ResultsFile(output, header, checked=_CHECKED, parts="pairs",
                       fix=f"evaluate with the same settings, or pass another --output (or delete {output}) "
                           "to evaluate afresh")


def stored_outcomes(records: list[dict]) -> dict[tuple[str, str, str], Outcome]:
    return {(row["fix"], row["ranker"], row["model"]): Outcome(
        row["fix"], row["ranker"], row["rank"], row["window"], row.get("retrieved"), row.get("stage1"),
        row.get("seconds", 0.0)) for row in records if row.get("type") == "result"}

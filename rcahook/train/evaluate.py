"""Base vs trained on the investigations after the cut-off (protocol v1), side by side.

Every outcome goes through `rcahook.backtest.run.Replayer`, i.e. `ranking.rank`, exactly
as `rcahook backtest` replays it; outcomes are appended to a JSONL file as they come, so an
interrupted evaluation resumes where it stopped.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rcahook.backtest.metrics import Outcome, summarize
from rcahook.backtest.mine import Investigation, mine_investigations
from rcahook.backtest.run import Replayer, select
from rcahook.index.reader import History
from rcahook.progress import Progress
from rcahook.train.card import Cutoff

RESULTS = "eval.jsonl"
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
             settings: EvalSettings, learned, models: dict[str, Callable[[], object]], output: Path,
             diff_text: Callable[[str], str] | None, progress: Progress | None = None,
             graph_at: Callable[[str], object] | None = None) -> dict:
    """Outcomes for every (ranker, model) pair; `models` maps "base"/"trained" to loaders."""
    from rcahook.rca.model import default_weights

    default = default_weights()
    weights = learned or default
    pairs = [(b, "-") for b in BASELINES] + [("features", "default weights")]
    if learned is not None:
        pairs.append(("features", "learned weights"))
    if settings.llm:
        pairs += [(r, m) for m in models for r in LLM]
    header = {"type": "header", "head": head, "cutoff": cut.to_json(), "settings": asdict(settings),
              "weights": weights.to_json()["values"], "models": sorted(models)}
    done = _load(output, header)
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

    fresh = not done
    if not fresh:
        _drop_partial_line(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w" if fresh else "a") as f:
        if fresh:
            f.write(json.dumps(header) + "\n")
        for ranker, model in pairs:
            missing = [inv for inv in investigations if (inv.fix, ranker, model) not in done]
            if not missing:
                continue
            r = replayer(model)
            with progress.task(f"eval {ranker} ({model})", total=len(missing)) as advance:
                for inv in missing:
                    o = r.outcome(inv, ranker)
                    done[inv.fix, ranker, model] = o
                    f.write(json.dumps({"type": "result", "fix": inv.fix, "ranker": ranker, "model": model,
                                        "rank": o.rank, "window": o.window, "retrieved": o.retrieved,
                                        "stage1": o.stage1, "seconds": round(o.seconds, 3)}) + "\n")
                    f.flush()
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


def _drop_partial_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _load(path: Path, header: dict) -> dict[tuple[str, str, str], Outcome]:
    """Outcomes of an earlier run with the same settings; none when they differ."""
    if not path.is_file():
        return {}
    done: dict[tuple[str, str, str], Outcome] = {}
    for n, line in enumerate(path.read_text().splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # cut short by an interruption
        if n == 0 and {k: v for k, v in row.items() if k != "type"} != {k: v for k, v in header.items()
                                                                        if k != "type"}:
            return {}
        if row.get("type") == "result":
            done[row["fix"], row["ranker"], row["model"]] = Outcome(
                row["fix"], row["ranker"], row["rank"], row["window"], row.get("retrieved"), row.get("stage1"),
                row.get("seconds", 0.0))
    return done

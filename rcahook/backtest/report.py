"""A backtest's results as the JSON document (schema in docs/backtest.md), a terminal
table, and a Markdown report with PNG plots (top-k curve, accuracy against coverage)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rcahook.backtest.metrics import (
    HIT_K,
    abstention_table,
    coverage_curve,
    random_summary,
    summarize,
    threshold_for_precision,
)
from rcahook.backtest.mine import PROTOCOL_VERSION, Investigation
from rcahook.backtest.protocol import V1, is_added
from rcahook.backtest.run import FEATURE_RANKERS, BacktestResult
from rcahook.errors import BadInputError
from rcahook.rca.confidence import Calibration, Signals, fit_platt, load_calibration, reliability
from rcahook.rca.retrieve import RetrievalConfig
from rcahook.untrusted import md_text, term_text

SCHEMA = "rcahook.backtest/1"

# Protocol v1.1's figures apart (docs/backtest.md#protocol-v11): v1's investigations stay
# comparable with a v1 run; those v1.1 adds, and those whose fix's subject names the culprit
# (a title with little left in it), are shown on their own.
GROUPS: tuple[tuple[str, str], ...] = (
    ("all", "every investigation"),
    ("v1", "found by v1's patterns: the figures of a v1 run"),
    ("v1.1-added", "found by the wordings v1.1 adds"),
    ("subject-named", "the fix's subject names the culprit's sha"),
    ("not-subject-named", "the rest"),
)


def _in_group(group: str, inv: Investigation) -> bool:
    return {"all": True, "v1": not is_added(inv.rule), "v1.1-added": is_added(inv.rule),
            "subject-named": inv.subject_named, "not-subject-named": not inv.subject_named}[group]


def _groups(result: BacktestResult, calibrated: dict[str, list[float]]) -> dict[str, dict]:
    """Per group: its size, each ranker's metrics and the features rankers' answered share."""
    threshold = default_min_confidence()
    out: dict[str, dict] = {}
    for group, meaning in GROUPS:
        idx = [i for i, inv in enumerate(result.investigations) if _in_group(group, inv)]
        metrics: dict[str, dict] = {}
        for ranker in result.rankers:
            if ranker == "random":
                summary = random_summary([len(result.investigations[i].candidates) for i in idx])
            else:
                summary = summarize([result.outcomes[ranker][i] for i in idx])
            metrics[ranker] = summary.to_json()
        answered = {}
        for ranker, values in calibrated.items():
            n = sum(values[i] >= threshold for i in idx)
            answered[ranker] = {"min_confidence": threshold, "n": n, "share": n / len(idx) if idx else 0.0}
        rules: dict[str, int] = {}
        for i in idx:
            rules[result.investigations[i].rule] = rules.get(result.investigations[i].rule, 0) + 1
        out[group] = {"meaning": meaning, "n": len(idx), "rules": dict(sorted(rules.items())),
                      "metrics": metrics, "answered": answered}
    return out


def default_min_confidence() -> float:
    from rcahook.rca.investigate import DEFAULT_MIN_CONFIDENCE

    return DEFAULT_MIN_CONFIDENCE


def _confidence_block(signals: list[Signals], hits: list[bool], calibration: Calibration) -> dict:
    calibrated = [calibration(s) for s in signals]
    rows = abstention_table(calibrated, hits)
    threshold = default_min_confidence()
    n_answered = sum(c >= threshold for c in calibrated)
    return {
        "calibration": calibration.to_json(),
        # what investigate does by default: answer at or above the default --min-confidence
        "answered": {"min_confidence": threshold, "n": n_answered,
                     "share": n_answered / len(calibrated) if calibrated else 0.0},
        "abstention": [r.to_json() for r in rows],
        "threshold_90": threshold_for_precision(rows),
        "reliability": reliability(calibrated, hits),
        "coverage_curve": [[round(c, 4), round(a, 4)] for c, a in coverage_curve(calibrated, hits)],
    }


def _signals(o) -> Signals:
    if o.signals is not None:
        return Signals.from_json(o.signals)
    # no evidence recorded: nothing to be confident about
    return Signals(mass=o.raw or 0.0, title_match_window=0.0, title_match_first=0.0, unknown_words=1.0)


def build_document(result: BacktestResult) -> dict:
    """Everything the run measured, as JSON-ready data."""
    index_dir = Path(result.index_dir) if result.index_dir else None
    metrics: dict[str, dict] = {}
    for ranker in result.rankers:
        if ranker == "random":
            summary = random_summary([len(inv.candidates) for inv in result.investigations])
        else:
            summary = summarize(result.outcomes[ranker])
        metrics[ranker] = summary.to_json()

    confidence: dict[str, dict] = {}
    calibrated: dict[str, list[float]] = {}
    for ranker in result.rankers:
        if ranker not in FEATURE_RANKERS or not result.outcomes[ranker]:
            continue
        outcomes = result.outcomes[ranker]
        signals = [_signals(o) for o in outcomes]
        hits = [o.hit(HIT_K) for o in outcomes]
        shipped = load_calibration(ranker, index_dir)
        # the mass's scaling refitted on this run; the evidence gate needs null incidents to
        # fit, so it stays the shipped one
        platt = fit_platt([s.mass for s in signals], hits)
        refit = Calibration(platt.a, platt.b, {**platt.info, "source": "refit on this run (in-sample)"},
                            shipped.evidence)
        confidence[ranker] = {"hit_k": HIT_K, **_confidence_block(signals, hits, shipped),
                              "refit": _confidence_block(signals, hits, refit)}
        calibrated[ranker] = [shipped(s) for s in signals]

    results = []
    for i, inv in enumerate(result.investigations):
        results.append({
            "fix": inv.fix, "culprit": inv.culprit, "parent": inv.parent, "title": inv.title,
            "time": inv.time, "window": len(inv.candidates),
            "ranks": {r: result.outcomes[r][i].rank for r in result.rankers if r != "random"},
            "confidence": {r: {"raw": result.outcomes[r][i].raw, "calibrated": calibrated[r][i],
                               "signals": result.outcomes[r][i].signals} for r in calibrated},
            **({"own_title": inv.own_title} if inv.own_title is not None else {}),
            **({"rule": inv.rule, "subject_named": inv.subject_named} if result.protocol != V1 else {}),
        })
    null = None
    if result.settings.track == "null":
        # the root cause is never knowable from these titles: every answer is a false alarm
        null = {"titles": result.settings.null_titles or "own history, half the investigations away",
                "answered": {r: block["answered"] for r, block in confidence.items()}}
    w = result.weights
    return {
        "schema": SCHEMA,
        "repository": result.repository,
        "head": result.head,
        "protocol_version": PROTOCOL_VERSION if result.protocol == V1 else result.protocol,
        "settings": {**dataclasses.asdict(result.settings), "rankers": list(result.rankers),
                     "max_candidates": RetrievalConfig().max_candidates},
        "weights": {"source": w.source, "path": w.path, "fingerprint": w.fingerprint,
                    "cutoff_time": w.cutoff_time, "info": w.info},
        "investigations": {"mined": result.mined, "evaluated": len(result.investigations),
                           "excluded_by_cutoff": result.excluded_by_cutoff},
        "metrics": metrics,
        **({"groups": _groups(result, calibrated)} if result.protocol != V1 else {}),
        "confidence": confidence,
        "null": null,
        "results": results,
        "output": result.output,
        "resumed": result.resumed,
        "notes": result.notes,
    }


def weights_line(doc: dict) -> str:
    w = doc["weights"]
    info = ", ".join(f"{k}={v}" for k, v in w["info"].items()) or "no info"
    if w["source"] == "learned":
        split = f", time split at {w['cutoff_time']}" if w["cutoff_time"] is not None else ", no cut-off recorded"
        return f"learned ({w['path']}; {info}{split})"
    return f"default, shipped with rcahook, used as is ({info})"


def header_lines(doc: dict) -> list[str]:
    s, inv = doc["settings"], doc["investigations"]
    scope = ""
    if s["limit"] is not None or s["sample"] is not None:
        scope = f" (limit {s['limit']}, sample {s['sample']}, seed {s['seed']})"
    null = f" (titles from {s['null_titles'] or 'own history, half the investigations away'})" \
        if s["track"] == "null" else ""
    return [
        f"repository: {doc['repository']}",
        f"HEAD: {doc['head']}",
        f"protocol v{doc['protocol_version']}, window {s['window']}, track {s['track']}{null}",
        f"investigations: {inv['evaluated']} evaluated of {inv['mined']} mined{scope}"
        + (f", {inv['excluded_by_cutoff']} before the weights' cut-off" if inv["excluded_by_cutoff"] else ""),
        f"weights: {weights_line(doc)}",
    ]


_COLUMNS = ("ranker", "n", "top-1", "top-5", "top-10", "MRR", "stage-1 recall", "retrieved", "s/inv", "p90 s")


def metric_rows(doc: dict) -> list[list[str]]:
    rows = []
    for ranker, m in doc["metrics"].items():
        timed = ranker != "random"
        rows.append([
            ranker + (" (expected)" if ranker == "random" else ""), str(m["n"]),
            f"{m['top1']:.3f}", f"{m['top5']:.3f}", f"{m['top10']:.3f}", f"{m['mrr']:.3f}",
            "-" if m["stage1_recall"] is None else f"{m['stage1_recall']:.3f}",
            "-" if m["retrieved_mean"] is None else f"{m['retrieved_mean']:.1f}",
            f"{m['seconds_mean']:.3f}" if timed else "-", f"{m['seconds_p90']:.3f}" if timed else "-",
        ])
    return rows


def group_columns(doc: dict) -> list[str]:
    return ["group", "n", *doc["metrics"], *[f"answered ({r})" for r in doc["confidence"]]]


def group_rows(doc: dict) -> list[list[str]]:
    """Protocol v1.1: the figures of each group of investigations (GROUPS), one row each."""
    rows = []
    for group, g in doc.get("groups", {}).items():
        rules = ", ".join(f"{rule} {n}" for rule, n in g["rules"].items())
        rows.append([f"{group} ({rules})" if group == "all" and len(g["rules"]) > 1 else group, str(g["n"]),
                     *[f"{m['top1']:.3f} / {m['top5']:.3f}" if g["n"] else "-" for m in g["metrics"].values()],
                     *[f"{a['share']:.3f}" if g["n"] else "-" for a in g["answered"].values()]])
    return rows


def ballot_lines(doc: dict) -> list[str]:
    """How much of an election ranker's figures are the model's own (issue 15)."""
    return [f"{ranker}: the model named {m['model_ballots']:.0%} of its ballot slots; the rest were filled in "
            "the features ranking's order, so its figures are partly that ranking's"
            for ranker, m in doc["metrics"].items() if m.get("model_ballots") is not None]


def null_lines(doc: dict) -> list[str]:
    """The null track's metric: the share of null incidents answered (a false alarm each)."""
    if not doc.get("null"):
        return []
    return [f"null incidents answered by {ranker} (confidence >= {a['min_confidence']:g}, the default "
            f"--min-confidence): {a['n']} of {doc['investigations']['evaluated']} ({a['share']:.3f}); "
            "lower is better" for ranker, a in doc["null"]["answered"].items()]


def answered_lines(doc: dict) -> list[str]:
    return [f"{ranker}: {b['answered']['n']} of {doc['investigations']['evaluated']} answered "
            f"({b['answered']['share']:.3f}) at the default --min-confidence {b['answered']['min_confidence']:g}"
            for ranker, b in doc["confidence"].items()]


def confidence_rows(block: dict) -> list[list[str]]:
    rows = []
    for shipped, refit in zip(block["abstention"], block["refit"]["abstention"]):
        rows.append([f"{shipped['threshold']:.1f}",
                     f"{shipped['answered']:.3f}", _acc(shipped["accuracy"]),
                     f"{refit['answered']:.3f}", _acc(refit["accuracy"])])
    return rows


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _threshold(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


def print_text(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:  # a pipe or a file: rich's 80 columns would fold the table
        out = Console(highlight=False, soft_wrap=False, width=150)
    for line in header_lines(doc):  # paths and weights info: shown as written, never obeyed
        out.print(Text(term_text(line)))
    for note in doc["notes"]:
        out.print(Text(term_text(f"note: {note}")))
    table = Table(show_edge=False)
    for i, column in enumerate(_COLUMNS):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in metric_rows(doc):
        table.add_row(*row)
    out.print()
    out.print(table)
    if doc.get("groups"):
        out.print()
        table = Table(title="protocol v1.1, top-1 / top-5 of the investigations apart (v1: what a v1 run measures)",
                      title_justify="left", show_edge=False)
        for i, column in enumerate(group_columns(doc)):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in group_rows(doc):
            table.add_row(*row)
        out.print(table)
    for line in null_lines(doc) or answered_lines(doc):
        out.print(Text(line, style="bold" if doc.get("null") else ""))
    for line in ballot_lines(doc):
        out.print(Text(line))
    for ranker, block in doc["confidence"].items():
        out.print()
        table = Table(title=f"{ranker}: answer only when confidence >= threshold (accuracy = top-{block['hit_k']})",
                      title_justify="left", show_edge=False)
        for column in ("threshold", "answered", "accuracy", "answered (refit)", "accuracy (refit)"):
            table.add_column(column, justify="right")
        for row in confidence_rows(block):
            table.add_row(*row)
        out.print(table)
        refit = block["refit"]
        out.print(Text(f"90% precision from threshold: {_threshold(block['threshold_90'])} "
                       f"(shipped calibration, {block['calibration']['info'].get('source', 'fitted')}); "
                       f"{_threshold(refit['threshold_90'])} (refit: a={refit['calibration']['a']:.3f}, "
                       f"b={refit['calibration']['b']:.3f})"))
    if doc["output"]:
        out.print(Text("\n" + term_text(f"results: {doc['output']}")
                       + (f" ({doc['resumed']} outcome(s) resumed)" if doc["resumed"] else "")))


def _md_table(columns: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(doc: dict, path: Path) -> list[Path]:
    """The Markdown report and its PNGs (beside it); returns the files written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BadInputError(f"--report needs matplotlib ({e}); install it with `pip install 'rcahook[report]'`"
                            " or drop --report") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    topk_png = path.with_name(f"{path.stem}-topk.png")
    coverage_png = path.with_name(f"{path.stem}-abstention.png")
    s = doc["settings"]
    subtitle = f"{Path(doc['repository']).name} {doc['head'][:12]}, window {s['window']}, {s['track']} track"

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for ranker, m in doc["metrics"].items():
        curve = m["topk_curve"]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3,
                linestyle="--" if ranker in ("random", "recency", "bm25", "path-overlap") else "-", label=ranker)
    ax.set(xlabel="k", ylabel="share of investigations with the culprit in the top k", ylim=(0, 1),
           title=f"top-k, {subtitle}")
    ax.set_xticks(range(1, 21, 2))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(topk_png, dpi=120)
    plt.close(fig)
    written = [topk_png]

    if doc["confidence"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for ranker, block in doc["confidence"].items():
            points = block["coverage_curve"]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{ranker}")
            # the thresholds 0.1..0.9 on the curve: dots for the shipped calibration, crosses refit
            for rows, marker in ((block["abstention"], "k."), (block["refit"]["abstention"], "kx")):
                for row in rows:
                    if row["accuracy"] is not None:
                        ax.plot(row["answered"], row["accuracy"], marker, markersize=4)
                        ax.annotate(f"{row['threshold']:.1f}", (row["answered"], row["accuracy"]), fontsize=7)
        ax.axhline(0.9, color="grey", linewidth=0.8, linestyle=":")
        ax.set(xlabel="share of investigations answered", ylabel=f"top-{HIT_K} accuracy of those answered",
               xlim=(0, 1), ylim=(0, 1.02), title=f"abstention, {subtitle}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(coverage_png, dpi=120)
        plt.close(fig)
        written.append(coverage_png)

    # The repository's path and the weights' info and notes are not ours: text, never Markdown.
    parts = ["# rcahook backtest", "", *[f"- {md_text(line)}" for line in header_lines(doc)]]
    parts += [f"- note: {md_text(note)}" for note in doc["notes"]]
    parts += ["", "## Rankers and baselines", "", _md_table(_COLUMNS, metric_rows(doc)), "",
              "Random is the expectation over orders of each window (top-k = k/W, MRR = H_W/W). "
              "MRR counts a culprit missing from the final list as 0.", "",
              f"![top-k curve]({topk_png.name})", ""]
    if doc.get("groups"):
        parts += ["## Protocol v1.1: the investigations apart", "",
                  "v1: found by v1's patterns, the figures of a v1 run; v1.1-added: by the wordings v1.1 adds; "
                  "subject-named: the fix's subject names the culprit's sha (a title with little left in it). "
                  "Top-1 / top-5 per ranker (random: expected).", "",
                  _md_table(group_columns(doc), group_rows(doc)), ""]
    parts += [*[f"- {line}" for line in null_lines(doc) or answered_lines(doc)], ""]
    for ranker, block in doc["confidence"].items():
        parts += [f"## Confidence: {ranker}", "",
                  f"Answer only when the calibrated confidence is at least the threshold; accuracy is the "
                  f"top-{block['hit_k']} hit rate of the investigations answered. Shipped calibration: "
                  f"a={block['calibration']['a']:.3f}, b={block['calibration']['b']:.3f} "
                  f"({md_text(str(block['calibration']['info'].get('source', 'fitted')))}); refit on this run "
                  "(in-sample): "
                  f"a={block['refit']['calibration']['a']:.3f}, b={block['refit']['calibration']['b']:.3f}.", "",
                  _md_table(("threshold", "answered", "accuracy", "answered (refit)", "accuracy (refit)"),
                            confidence_rows(block)), "",
                  f"Lowest threshold with 90% precision: {_threshold(block['threshold_90'])} (shipped), "
                  f"{_threshold(block['refit']['threshold_90'])} (refit).", ""]
    if len(written) > 1:
        parts += [f"![accuracy against coverage]({coverage_png.name})", ""]
    path.write_text("\n".join(parts) + "\n")
    return [path, *written]

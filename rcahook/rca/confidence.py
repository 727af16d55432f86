"""A calibrated probability that the root cause is among the suggestions shown.

    confidence = P(root cause in the top five | the history explains the incident)
               x P(the history explains the incident | the evidence)

The first factor is Platt scaling of the features model's probability mass on its top
five, fitted on real incidents, as before. The mass alone says how sure the ranker is of
its order relative to the other candidates: it is high for a nonsense title too, when one
commit happens to share a word with it. So the second factor, the *evidence gate*, reads
how much of the incident the candidates explain at all (`Signals`): the share of the
title's words (weighted by how rare they are in the repository's history) that any
candidate, or the first one, mentions; the share of its words this history never used;
component prefixes and file names; the best text match; whether a shown change touches
an impacted path, a named definition or an identifier the incident writes. It is a
logistic regression fitted on real incidents against null ones (titles from another
repository: the history cannot explain them), so it learns to abstain when nothing
matches. A null incident's root cause is never in the top five, so the product is the
probability of a hit over a mix of both. Method and figures: docs/confidence.md;
bench/fit_default_weights.py fits the shipped file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from rcahook.errors import ConfigError

CALIBRATION_FILE = "calibration.json"
CALIBRATION_VERSION = 2  # 1: {"a", "b"} per ranker (the mass alone), migrated on load
SIGNALS_VERSION = 1  # bump when a signal's definition changes: stored backtest outcomes go stale
# What the evidence gate may read (a file lists the ones it uses, in its own order).
INPUTS: tuple[str, ...] = ("logit_mass", "title_match_window", "title_match_first", "unknown_words", "component",
                           "same_component", "path_words", "text_best", "located")
TOP = 5  # the confidence is about the top five as a set
# English function words: people write incidents as sentences ("charges are not retried any
# more"), commit subjects are terse, so these would read as words the history never used.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can cannot could did do does doing down during each few for from further had has have
having he her here hers him his how if in into is it its itself just me more most my no nor not now of off
on once only or other our ours out over own same she should since so some still such than that the their
theirs them then there these they this those through to too under until up us very was we were what when
where which while who whom why will with would yet you your
""".split())
_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def raw_confidence(probabilities: Sequence[float]) -> float:
    """Model probability that one of these candidates is the root cause."""
    return min(1.0, max(0.0, float(sum(probabilities))))


# --- the inputs --------------------------------------------------------------------------

@dataclass(frozen=True)
class Signals:
    """What the confidence reads about one investigation, all known at investigation time.
    The defaults describe an incident the candidates explain fully (what a mass alone assumed)."""

    mass: float  # the ranker's probability mass on the five shown
    title_match_window: float = 1.0  # rarity-weighted share of the title's words some candidate mentions
    title_match_first: float = 1.0  # ... that the first suggestion mentions
    unknown_words: float = 0.0  # share of the title's words no commit subject in the history uses
    component: float = 0.0  # best of the five: files that commits with the title's prefix touch
    same_component: float = 0.0  # 1: one of the five has the title's component prefix
    path_words: float = 0.0  # best of the five: share of the title's words naming a changed path
    text_best: float = 0.0  # log(1 + best BM25 of the incident against a candidate's message and paths)
    located: float = 0.0  # 1: one of the five touches an impacted path, a named definition or identifier

    def value(self, name: str) -> float:
        return _logit(self.mass) if name == "logit_mass" else float(getattr(self, name))

    def to_json(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping) -> Signals:
        return cls(**{k: float(data[k]) for k in cls.__dataclass_fields__ if k in data})


def word_rarity(words: Iterable[str], *, n_commits: int, commits_with: Mapping[str, int]) -> dict[str, float]:
    """idf of each word over the subjects of the history before the revision: a word no
    commit uses weighs most, `fix` or `the` almost nothing (no stop-word list needed)."""
    n = max(n_commits, 1)
    return {w: math.log(1 + n / (1 + commits_with.get(w, 0))) for w in set(words)}


def _share(rarity: Mapping[str, float], found: set[str]) -> float:
    total = sum(rarity.values())
    return sum(v for w, v in rarity.items() if w in found) / total if total else 0.0


def compute_signals(*, mass: float, rarity: Mapping[str, float], unknown: set[str],
                    matched: Sequence[Iterable[str]], rows) -> Signals:
    """The signals from per-candidate facts in final order, best first: the incident words
    each mentions (`matched`) and its raw features (`rows`, (K, F) in FEATURE_NAMES order).
    `rarity` weighs the title's words; `unknown` are those the history never used; both
    leave out STOPWORDS."""
    from rcahook.rca.features import FEATURE_NAMES

    col = FEATURE_NAMES.index
    rarity = {w: v for w, v in rarity.items() if w not in STOPWORDS}
    first = set(matched[0]) if len(matched) else set()
    anywhere: set[str] = set()
    for words in matched:
        anywhere.update(words)
    top = rows[:TOP]  # (<=5, F)

    def best(name: str) -> float:
        return float(top[:, col(name)].max()) if len(top) else 0.0

    located = max(best("impacted_overlap"), best("touched_named"), best("exact_ident")) > 0
    return Signals(
        mass=mass, title_match_window=_share(rarity, anywhere), title_match_first=_share(rarity, first),
        unknown_words=len(unknown & set(rarity)) / len(rarity) if rarity else 0.0,
        component=best("component_files"), same_component=best("same_component"), path_words=best("path_tokens"),
        text_best=math.log1p(float(rows[:, col("bm25_text")].max())) if len(rows) else 0.0,
        located=float(located))


def signals_for(candidates: Sequence, *, title: str, background, mass: float | None = None) -> Signals:
    """Signals of a final ranking: `candidates` are rcahook.rca.retrieve.Candidate, best first;
    `background` the retrieval's rcahook.rca.features.Background; `mass` when fewer than five
    are shown (default: the mass of the top five). Only the title's words count: a
    description's narrative would read as words the history cannot explain."""
    import numpy as np

    from rcahook.rca.features import FEATURE_NAMES
    from rcahook.text import tokenize

    words = set(tokenize(title))
    rarity = word_rarity(words, n_commits=background.n_commits, commits_with=background.word_commits)
    unknown = {w for w in words if not background.word_commits.get(w)}
    rows = np.array([c.features for c in candidates]) if candidates else np.zeros((0, len(FEATURE_NAMES)))
    if mass is None:
        mass = raw_confidence([c.probability for c in candidates[:TOP]])
    return compute_signals(mass=mass, rarity=rarity, unknown=unknown,
                           matched=[set(c.evidence.matched_words) & words for c in candidates], rows=rows)


# --- the model ---------------------------------------------------------------------------

@dataclass
class Logistic:
    """sigmoid(bias + sum(weight_k * (input_k - centre_k))). The centres are a typical real
    incident's inputs, so each term reads "more or less evidence than usual"."""

    inputs: tuple[str, ...]
    weights: tuple[float, ...]
    centre: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        unknown = [n for n in self.inputs if n not in INPUTS]
        if unknown or not len(self.inputs) == len(self.weights) == len(self.centre):
            raise ConfigError(f"evidence inputs {list(self.inputs)} with {len(self.weights)} weight(s) and "
                              f"{len(self.centre)} centre(s): expected one weight and one centre per input, "
                              f"inputs among {', '.join(INPUTS)}")

    def __call__(self, signals: Signals) -> float:
        return _sigmoid(self.bias + sum(w * (signals.value(n) - c)
                                        for n, w, c in zip(self.inputs, self.weights, self.centre)))

    def to_json(self) -> dict:
        return {"inputs": list(self.inputs), "weights": list(self.weights), "centre": list(self.centre),
                "bias": self.bias}

    @classmethod
    def from_json(cls, entry: Mapping) -> Logistic:
        return cls(tuple(entry["inputs"]), tuple(float(w) for w in entry["weights"]),
                   tuple(float(c) for c in entry["centre"]), float(entry["bias"]))


@dataclass
class Calibration:
    """sigmoid(a * logit(mass) + b), times the evidence gate when there is one."""

    a: float = 1.0
    b: float = 0.0
    info: dict = field(default_factory=dict)
    evidence: Logistic | None = None

    def __call__(self, signals: Signals | float) -> float:
        if not isinstance(signals, Signals):
            if self.evidence is not None:
                raise TypeError("this calibration reads the evidence too: pass Signals, not a mass")
            signals = Signals(mass=float(signals))
        p = _sigmoid(self.a * _logit(signals.mass) + self.b)
        return p * self.explained(signals)

    def explained(self, signals: Signals) -> float:
        """P(the history explains the incident | the evidence); 1 without a gate."""
        return self.evidence(signals) if self.evidence is not None else 1.0

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "evidence": self.evidence.to_json() if self.evidence else None,
                "info": self.info}

    @classmethod
    def from_json(cls, entry: Mapping) -> Calibration:
        evidence = entry.get("evidence")
        return cls(float(entry["a"]), float(entry["b"]), dict(entry.get("info", {})),
                   Logistic.from_json(evidence) if evidence else None)


def calibration_document(entries: Mapping[str, Calibration]) -> dict:
    """What a calibration file holds: the format version, then one model per ranker."""
    return {"version": CALIBRATION_VERSION, **{name: cal.to_json() for name, cal in entries.items()}}


def _logistic_fit(X, y, *, l2: float, weight=None):
    """L2-regularised logistic regression (numeric.fit_logistic); X (N, K) gets a bias column.
    Returns (K+1,): the weights, then the bias."""
    import numpy as np

    from rcahook.numeric import fit_logistic

    # l2 |w|^2 as before; the bias is (almost) not shrunk: enough to keep one-class data finite
    coef, bias, _ = fit_logistic(X, y, l2=2 * l2, intercept_l2=1e-6, weight=weight, max_iter=100, jitter=0.0)
    return np.append(coef, bias)


def fit_platt(raw: Sequence[float], hit: Sequence[bool], *, l2: float = 1e-3) -> Calibration:
    """Platt scaling: logistic regression of hit on logit(mass)."""
    import numpy as np

    X = np.array([[_logit(r)] for r in raw], dtype=np.float64).reshape(-1, 1)  # (N, 1)
    y = np.array([1.0 if h else 0.0 for h in hit])
    w = _logistic_fit(X, y, l2=l2)
    return Calibration(float(w[0]), float(w[1]), {"n": len(y), "hits": int(y.sum())})


def fit_evidence(signals: Sequence[Signals], explained: Sequence[bool], *, inputs: Sequence[str] = INPUTS,
                 l2: float = 1e-3) -> Logistic:
    """The evidence gate: logistic regression of "a real incident" (True) against a null one,
    inputs centred on the real incidents' mean."""
    import numpy as np

    X = np.array([[s.value(n) for n in inputs] for s in signals], dtype=np.float64)  # (N, K)
    y = np.array([1.0 if e else 0.0 for e in explained])
    real = X[y == 1] if y.any() else X
    centre = real.mean(axis=0) if len(real) else np.zeros(len(inputs))
    w = _logistic_fit(X - centre, y, l2=l2)
    return Logistic(tuple(inputs), tuple(float(v) for v in w[:-1]), tuple(float(c) for c in centre), float(w[-1]))


def reliability(confidence: Sequence[float], hit: Sequence[bool], *, bins: int = 5) -> list[dict]:
    """Per bin of calibrated confidence: mean confidence vs observed hit rate."""
    rows: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, h in zip(confidence, hit):
        rows[min(int(c * bins), bins - 1)].append((c, h))
    out = []
    for i, row in enumerate(rows):
        if row:
            out.append({"bin": f"{i / bins:.1f}-{(i + 1) / bins:.1f}", "n": len(row),
                        "confidence": sum(c for c, _ in row) / len(row),
                        "observed": sum(h for _, h in row) / len(row)})
    return out


# --- the file ----------------------------------------------------------------------------

def parse_calibration(doc: object, ranker: str, *, source: str) -> Calibration | None:
    """The ranker's model in a calibration document (or the features one), None if absent.

    Version 1 (no "version": {"a", "b"} per ranker, what rcahook wrote before the evidence
    gate) reads as a mass-only model; a version this rcahook does not know is refused."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a calibration file must be a JSON object; refit it "
                          "(`rcahook train --features-only`) or delete it to use the shipped one")
    version = doc.get("version", 1)
    if version not in (1, CALIBRATION_VERSION):
        raise ConfigError(f"{source}: calibration format version {version!r}, this rcahook reads versions 1 and "
                          f"{CALIBRATION_VERSION}; upgrade rcahook, or delete the file to use the shipped calibration")
    entry = doc.get(ranker) or doc.get("features")
    if not isinstance(entry, dict):
        return None
    try:
        cal = Calibration.from_json(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{source}: calibration for {ranker} is malformed ({e!r}); refit it "
                          "(`rcahook train --features-only`) or delete it to use the shipped one") from None
    if version == 1:
        cal.info["migrated_from_version"] = 1
    return cal


def shipped_calibration(ranker: str = "features") -> Calibration:
    path = resources.files("rcahook") / "data" / CALIBRATION_FILE
    doc = json.loads(path.read_text())
    return parse_calibration(doc, ranker, source=str(path)) or Calibration(info={"source": "uncalibrated"})


def load_calibration(ranker: str, index_dir: Path | None = None) -> Calibration:
    """The repository's own calibration (written by `rcahook train`) or the shipped one.

    A repository's model without an evidence gate (what `rcahook train` fits: it has no null
    incidents to learn one from; or a version-1 file) keeps its own scaling of the mass and
    takes the shipped gate, so a nonsense incident stays unconfident after training too."""
    shipped = shipped_calibration(ranker)
    if index_dir is None:
        return shipped
    path = index_dir / CALIBRATION_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return shipped
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the repository's calibration ({e}); delete it to use the "
                          "shipped one, or refit it with `rcahook train --features-only`") from None
    own = parse_calibration(doc, ranker, source=str(path))
    if own is None:
        return shipped
    if own.evidence is None and shipped.evidence is not None:
        own.evidence = shipped.evidence
        own.info = {**own.info, "evidence": "the shipped evidence gate"}
    return own

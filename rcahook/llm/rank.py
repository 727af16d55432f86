"""Rank candidate changes with a model, in rounds of prompts of at most 20 candidates.

Both rankers run the same tournament: shuffle the candidates, split them into prompts
(labels drawn at random per prompt), score each prompt, keep the best few per prompt and
play the survivors against each other, until one prompt holds them all; that last prompt
orders the finalists on comparable scores.
- election: the model names its top `picks` labels; Borda points by position.
- logprob: one forward pass per prompt; softmax of the labels' logprobs within the prompt.

Every input key comes back, best first, with a score whose integer part is the round the
candidate reached and whose fraction is its normalised score in that round, so scores never
increase down the list. Pure orchestration over a Backend: no torch here.

An answer the tournament cannot use raises ModelAnswerError rather than being quietly
replaced by the input order (which would pass the caller's ranking off as the model's): an
election answer that names none of the prompt's labels, or logprobs that are missing, NaN,
+inf or -inf for every label. The caller (investigate) then falls back visibly.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from rcahook.errors import ModelAnswerError
from rcahook.llm.backend import Backend
from rcahook.llm.prompt import (
    MAX_CANDIDATES,
    CandidateView,
    IncidentView,
    Prompt,
    assign_labels,
    build_prompt,
    parse_labels,
)

Progress = Callable[[int, int], None]
# Scores one prompt: key -> normalised score in [0, 1] for every key of the prompt.
_ScorePrompt = Callable[[Prompt], dict[str, float]]


def election_rank(backend: Backend, incident: IncidentView, candidates: Sequence[CandidateView], *,
                  prompt_size: int = 20, picks: int = 5, shuffles: int = 1, seed: int = 0,
                  token_budget: int = 1800, progress: Progress | None = None,
                  ballots: list[int] | None = None) -> list[tuple[str, float]]:
    """`candidates` ranked by rounds of elections: prompts of at most `prompt_size`, the model
    names its top `picks` of each, Borda points add up, the rest go to the next round.

    `ballots`, when given, gets [slots the model filled itself, slots in all]: a model
    that names fewer labels than asked has the rest of its ballot filled in the caller's
    order, so its election figures are partly the caller's ranking (issue 15)."""
    order = {c.key: i for i, c in enumerate(candidates)}

    def score(prompt: Prompt) -> dict[str, float]:
        n = min(picks, len(prompt.keys))
        # " K, C, P": two tokens a label; a little slack for "Change K" or a list marker.
        text = backend.generate(prompt, max_new_tokens=3 * n + 2)
        named = [prompt.keys[prompt.labels.index(label)] for label in parse_labels(text, prompt.labels)]
        if not named:
            raise ModelAnswerError(
                f"{backend.name} answered {_quote(text)}, which names none of the labels "
                f"{', '.join(sorted(prompt.labels))}")
        # Some valid labels but fewer than asked for: the rest in the caller's order.
        rest = sorted((k for k in prompt.keys if k not in named), key=order.__getitem__)
        ballot = (named + rest)[:n]
        if ballots is not None:
            ballots[0] += min(len(named), n)
            ballots[1] += n
        points = {key: 0.0 for key in prompt.keys}
        for position, key in enumerate(ballot):
            points[key] = (n - position) / n  # Borda: 1, (n-1)/n, ..., 1/n
        return points

    return _tournament(backend, incident, candidates, score, prompt_size=prompt_size, keep=picks,
                       shuffles=shuffles, seed=seed, token_budget=token_budget, progress=progress)


def logprob_rank(backend: Backend, incident: IncidentView, candidates: Sequence[CandidateView], *,
                 prompt_size: int = 20, keep: int = 5, shuffles: int = 1, seed: int = 0,
                 token_budget: int = 1800, progress: Progress | None = None) -> list[tuple[str, float]]:
    def score(prompt: Prompt) -> dict[str, float]:
        logprobs = _checked(backend, backend.label_logprobs(prompt, prompt.labels), prompt.labels)
        probs = _softmax([logprobs[label] for label in prompt.labels])
        return dict(zip(prompt.keys, probs))

    return _tournament(backend, incident, candidates, score, prompt_size=prompt_size, keep=keep,
                       shuffles=shuffles, seed=seed, token_budget=token_budget, progress=progress)


def label_logprobs(backend: Backend, incident: IncidentView, candidates: Sequence[CandidateView], *,
                   shuffles: int = 1, seed: int = 0, token_budget: int = 1800) -> dict[str, float]:
    """Each candidate's log-probability of being the one, from one prompt of all of them
    (at most MAX_CANDIDATES): the log-softmax of the labels' logprobs, centred so that a
    model with no opinion gives every candidate 0; averaged over `shuffles` orders and label
    draws (position and label bias). The `blend` ranker adds it to the features score."""
    if not 2 <= len(candidates) <= MAX_CANDIDATES:
        raise ValueError(f"label_logprobs takes 2..{MAX_CANDIDATES} candidates, got {len(candidates)}")
    keys = [c.key for c in candidates]
    views = {c.key: c for c in candidates}
    rng = random.Random(f"{seed}\x00{incident.title}\x00" + "\x00".join(sorted(views)))
    count_tokens = getattr(backend, "count_tokens", None)
    totals = dict.fromkeys(keys, 0.0)
    for _ in range(shuffles):
        shuffled = keys[:]
        rng.shuffle(shuffled)
        prompt = build_prompt(incident, [views[k] for k in shuffled], labels=assign_labels(len(shuffled), rng),
                              picks=1, token_budget=token_budget, count_tokens=count_tokens)
        logprobs = _checked(backend, backend.label_logprobs(prompt, prompt.labels), prompt.labels)
        probs = _softmax([logprobs[label] for label in prompt.labels])
        for key, prob in zip(prompt.keys, probs):
            totals[key] += math.log(max(prob, 1e-12) * len(keys)) / shuffles
    return totals


def _tournament(backend: Backend, incident: IncidentView, candidates: Sequence[CandidateView],
                score: _ScorePrompt, *, prompt_size: int, keep: int, shuffles: int, seed: int,
                token_budget: int, progress: Progress | None) -> list[tuple[str, float]]:
    if not 2 <= prompt_size <= MAX_CANDIDATES:
        raise ValueError(f"prompt_size must be 2..{MAX_CANDIDATES}, got {prompt_size}")
    if not 1 <= keep < prompt_size:
        raise ValueError(f"picks/keep must be 1..prompt_size-1 ({prompt_size - 1}), got {keep}")
    if shuffles < 1:
        raise ValueError(f"shuffles must be at least 1, got {shuffles}")
    views = {c.key: c for c in candidates}
    if len(views) != len(candidates):
        raise ValueError("candidate keys must be unique")
    order = {c.key: i for i, c in enumerate(candidates)}
    count_tokens = getattr(backend, "count_tokens", None)
    # Seeded by the investigation too: with one fixed permutation, the stage-1 leader would sit in
    # the same slot of every investigation's prompts, and the model's position bias would turn
    # into a systematic rank for it. Still deterministic for a given seed and investigation.
    rng = random.Random(f"{seed}\x00{incident.title}\x00" + "\x00".join(sorted(views)))
    total = _prompts_needed(len(candidates), prompt_size, keep) * shuffles
    done = 0
    if progress:
        progress(0, total)

    alive = [c.key for c in candidates]
    finished: list[list[tuple[str, float]]] = []  # per round: (key, score) of those it ended
    level = 0
    while len(alive) > 1:
        n_prompts = math.ceil(len(alive) / prompt_size)
        totals = dict.fromkeys(alive, 0.0)
        for _ in range(shuffles):
            shuffled = alive[:]
            rng.shuffle(shuffled)  # against position bias, and new neighbours each round
            for chunk in _split(shuffled, n_prompts):
                prompt = build_prompt(
                    incident, [views[k] for k in chunk], labels=assign_labels(len(chunk), rng),
                    picks=min(keep, len(chunk)), token_budget=token_budget, count_tokens=count_tokens)
                for key, value in score(prompt).items():
                    totals[key] += value / shuffles
                done += 1
                if progress:
                    progress(done, max(total, done))
        ranked = sorted(alive, key=lambda k: (-totals[k], order[k]))
        if n_prompts == 1:
            finished.append([(k, level + totals[k]) for k in ranked])
            alive = []
            break
        # Survivors: `keep` per prompt; always at least one fewer, so rounds terminate.
        target = min(n_prompts * keep, len(alive) - 1)
        finished.append([(k, level + totals[k]) for k in ranked[target:]])
        alive = ranked[:target]
        level += 1
    if alive:  # a single candidate left (or given): nothing to compare it with
        finished.append([(alive[0], float(level))])
    return [pair for round_ in reversed(finished) for pair in round_]


def _prompts_needed(n: int, prompt_size: int, keep: int) -> int:
    """Prompts per shuffle, replaying the tournament's arithmetic (so progress has a total)."""
    prompts = 0
    while n > 1:
        k = math.ceil(n / prompt_size)
        prompts += k
        if k == 1:
            break
        n = min(k * keep, n - 1)
    return prompts


def _split(keys: list[str], parts: int) -> list[list[str]]:
    """`parts` chunks whose sizes differ by at most one (no lonely last prompt)."""
    size, extra = divmod(len(keys), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(keys[start:end])
        start = end
    return out


def _checked(backend: Backend, logprobs: dict[str, float], labels: Sequence[str]) -> dict[str, float]:
    """The label logprobs if a softmax over them means something; else ModelAnswerError.

    -inf for some labels is a model saying "impossible"; NaN (a broken model: NaN logits), +inf,
    or -inf for every label says nothing, and softmax would turn it into the input order.
    """
    missing = [label for label in labels if label not in logprobs]
    if missing:
        raise ModelAnswerError(f"{backend.name} gave no logprob for label(s) {', '.join(missing)}")
    bad = {label: logprobs[label] for label in labels
           if not isinstance(logprobs[label], int | float) or math.isnan(logprobs[label]) or logprobs[label] > 0.001}
    if bad:
        shown = ", ".join(f"{label}={value}" for label, value in list(bad.items())[:3])
        raise ModelAnswerError(f"{backend.name} gave unusable logprobs ({shown}): a broken model or server")
    if not any(math.isfinite(logprobs[label]) for label in labels):
        raise ModelAnswerError(f"{backend.name} gave every label a logprob of -inf")
    return {label: float(logprobs[label]) for label in labels}


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _softmax(values: list[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [1.0 / len(values)] * len(values)
    top = max(finite)
    exps = [math.exp(v - top) if math.isfinite(v) else 0.0 for v in values]
    total = sum(exps)
    return [e / total for e in exps]

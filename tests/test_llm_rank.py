"""Tournament arithmetic of the rankers, over deterministic fake backends (no model)."""
from __future__ import annotations

import math

import pytest

from rcahook.errors import ModelAnswerError
from rcahook.llm.prompt import CandidateView, IncidentView, Prompt
from rcahook.llm.rank import _prompts_needed, _split, election_rank, logprob_rank

INCIDENT = IncidentView(title="crash in parser")


def cands(n: int) -> list[CandidateView]:
    return [CandidateView(key=f"k{i:02d}", subject=f"change {i}") for i in range(n)]


class Oracle:
    """Knows a hidden relevance per key; answers like a perfect model would."""

    name = "oracle"

    def __init__(self, relevance: dict[str, float], *, reply: str | None = None):
        self.relevance = relevance
        self.reply = reply
        self.prompts: list[Prompt] = []

    def _ordered_labels(self, prompt: Prompt) -> list[str]:
        pairs = sorted(zip(prompt.keys, prompt.labels), key=lambda kl: -self.relevance[kl[0]])
        return [label for _, label in pairs]

    def generate(self, prompt: Prompt, *, max_new_tokens: int) -> str:
        self.prompts.append(prompt)
        if self.reply is not None:
            return self.reply
        return " " + ", ".join(self._ordered_labels(prompt)[:5]) + "\n"

    def label_logprobs(self, prompt: Prompt, labels) -> dict[str, float]:
        self.prompts.append(prompt)
        by_label = dict(zip(prompt.labels, prompt.keys))
        return {label: math.log(self.relevance[by_label[label]]) for label in labels}


def relevance(n: int, best: list[int]) -> dict[str, float]:
    """Keys in `best` most relevant in that order; the rest low, decreasing with index."""
    rel = {f"k{i:02d}": 0.001 / (i + 1) for i in range(n)}
    for rank, i in enumerate(best):
        rel[f"k{i:02d}"] = 1.0 / (rank + 1)
    return rel


def check_full_ordering(result, n):
    keys = [k for k, _ in result]
    assert sorted(keys) == sorted(f"k{i:02d}" for i in range(n))
    scores = [s for _, s in result]
    assert all(a >= b for a, b in zip(scores, scores[1:])), scores


@pytest.mark.parametrize("ranker", [election_rank, logprob_rank])
@pytest.mark.parametrize("n", [1, 2, 7, 20, 21, 45, 130])
def test_finds_the_best_and_returns_every_key(ranker, n):
    best = list(dict.fromkeys([n - 1, n // 2, 0]))
    oracle = Oracle(relevance(n, best))
    result = ranker(oracle, INCIDENT, cands(n), seed=3)
    check_full_ordering(result, n)
    assert [k for k, _ in result[: len(best)]] == [f"k{i:02d}" for i in best]
    assert all(len(p.keys) <= 20 for p in oracle.prompts)
    if n == 1:
        assert oracle.prompts == []


@pytest.mark.parametrize("ranker", [election_rank, logprob_rank])
def test_prompts_are_balanced_and_labels_random(ranker):
    oracle = Oracle(relevance(45, [1]))
    ranker(oracle, INCIDENT, cands(45), seed=0)
    first_round = [len(p.keys) for p in oracle.prompts[:3]]
    assert first_round == [15, 15, 15]  # not 20, 20, 5
    assert len({p.labels for p in oracle.prompts}) == len(oracle.prompts)
    assert all(len(set(p.labels)) == len(p.labels) for p in oracle.prompts)


def test_election_rounds_follow_the_published_design():
    oracle = Oracle(relevance(45, [44]))
    result = election_rank(oracle, INCIDENT, cands(45), prompt_size=20, picks=5)
    # 45 -> 3 prompts of 15, 5 picks each -> 15 survivors -> one final prompt
    assert [len(p.keys) for p in oracle.prompts] == [15, 15, 15, 15]
    finalists = set(oracle.prompts[-1].keys)
    assert {k for k, _ in result[:15]} == finalists
    assert result[0][0] == "k44"
    # eliminated in round 0 come after every finalist, with lower scores
    assert all(s < 1 for _, s in result[15:]) and all(s >= 1 for _, s in result[:15])


def test_election_without_valid_answers_is_an_unusable_answer():
    # Filling the ballot in input order would pass the caller's ranking off as the model's.
    oracle = Oracle(relevance(30, [29]), reply="I cannot tell. <|im_end|> Z, A, 42")
    with pytest.raises(ModelAnswerError, match="oracle answered 'I cannot tell.*names none of the labels"):
        election_rank(oracle, INCIDENT, cands(30), seed=1)
    assert len(oracle.prompts) == 1  # the first useless answer ends it: no more prompts paid for


def test_election_partial_answer_is_filled_in_input_order():
    class OneLabel(Oracle):
        def generate(self, prompt, *, max_new_tokens):
            self.prompts.append(prompt)
            return self._ordered_labels(prompt)[0] + " and nothing else"

    oracle = OneLabel(relevance(8, [7]))
    ballots = [0, 0]
    result = election_rank(oracle, INCIDENT, cands(8), picks=3, ballots=ballots)
    assert [k for k, _ in result[:4]] == ["k07", "k00", "k01", "k02"]
    assert ballots == [1, 3]  # one slot the model's, two filled in the caller's order


def test_election_counts_a_full_ballot_as_the_models():
    ballots = [0, 0]
    election_rank(Oracle(relevance(30, [3, 17])), INCIDENT, cands(30), seed=1, ballots=ballots)
    assert ballots[1] > 0 and ballots[0] == ballots[1]


@pytest.mark.parametrize("ranker", [election_rank, logprob_rank])
def test_shuffles_average_and_stay_deterministic(ranker):
    oracle = Oracle(relevance(45, [3, 30]))
    first = ranker(oracle, INCIDENT, cands(45), shuffles=3, seed=5)
    assert len(oracle.prompts) == 3 * _prompts_needed(45, 20, 5)
    check_full_ordering(first, 45)
    assert [k for k, _ in first[:2]] == ["k03", "k30"]
    assert ranker(Oracle(relevance(45, [3, 30])), INCIDENT, cands(45), shuffles=3, seed=5) == first


def test_position_bias_is_averaged_out_by_shuffles():
    class FirstShown(Oracle):
        """A model that always answers the first candidate it sees."""

        def generate(self, prompt, *, max_new_tokens):
            self.prompts.append(prompt)
            return prompt.labels[0]

    wins = {}
    for seed in range(20):
        top = election_rank(FirstShown({}), INCIDENT, cands(6), picks=1, seed=seed)[0][0]
        wins[top] = wins.get(top, 0) + 1
    assert len(wins) >= 4  # any candidate can be first: position is random, not input order


def test_position_bias_is_not_the_same_in_every_investigation():
    """One seed, many incidents: the input leader must not sit in the same prompt slot each time,
    or a model's position bias becomes a systematic rank for the stage-1 leader."""
    class FirstShown(Oracle):
        def generate(self, prompt, *, max_new_tokens):
            self.prompts.append(prompt)
            return prompt.labels[0]

    tops = {election_rank(FirstShown({}), IncidentView(title=f"incident {i}"), cands(6), picks=1, seed=0)[0][0]
            for i in range(20)}
    assert len(tops) >= 4
    again = [election_rank(FirstShown({}), IncidentView(title="incident 3"), cands(6), picks=1, seed=0)
             for _ in range(2)]
    assert again[0] == again[1]  # still deterministic for one incident and seed


@pytest.mark.parametrize("ranker", [election_rank, logprob_rank])
def test_progress_reaches_its_total(ranker):
    calls = []
    ranker(Oracle(relevance(130, [5])), INCIDENT, cands(130), shuffles=2,
           progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, calls[-1][1])
    assert calls[-1][0] == calls[-1][1] == 2 * _prompts_needed(130, 20, 5)
    assert [d for d, _ in calls] == list(range(len(calls)))


def test_logprob_final_order_comes_from_one_prompt():
    oracle = Oracle(relevance(45, [10, 20, 30, 40, 0]))
    result = logprob_rank(oracle, INCIDENT, cands(45), keep=5)
    last = oracle.prompts[-1]
    assert [k for k, _ in result[: len(last.keys)]] == sorted(
        last.keys, key=lambda k: -oracle.relevance[k])
    finals = [s for _, s in result[: len(last.keys)]]
    assert math.isclose(sum(s - math.floor(finals[0]) for s in finals), 1.0)  # one softmax


def test_logprob_tolerates_impossible_labels():
    class SomeImpossible(Oracle):
        def label_logprobs(self, prompt, labels):
            self.prompts.append(prompt)
            return {label: -1.0 if i == 0 else -math.inf for i, label in enumerate(labels)}

    result = logprob_rank(SomeImpossible({}), INCIDENT, cands(25))
    check_full_ordering(result, 25)


@pytest.mark.parametrize("broken, message", [
    (lambda labels: {labels[0]: -1.0}, "no logprob for label"),  # missing labels
    (lambda labels: dict.fromkeys(labels, math.nan), "unusable logprobs .*=nan"),  # NaN logits
    (lambda labels: {**dict.fromkeys(labels, -2.0), labels[1]: math.inf}, "unusable logprobs .*=inf"),
    (lambda labels: dict.fromkeys(labels, -math.inf), "every label a logprob of -inf"),
])
def test_logprob_unusable_answers_raise(broken, message):
    class Broken(Oracle):
        def label_logprobs(self, prompt, labels):
            self.prompts.append(prompt)
            return broken(labels)

    with pytest.raises(ModelAnswerError, match=message):
        logprob_rank(Broken({}), INCIDENT, cands(25))


@pytest.mark.parametrize("kwargs", [
    dict(prompt_size=21), dict(prompt_size=1), dict(picks=20), dict(picks=0), dict(shuffles=0),
])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        election_rank(Oracle({}), INCIDENT, cands(3), **kwargs)


def test_duplicate_keys_rejected():
    with pytest.raises(ValueError):
        logprob_rank(Oracle({}), INCIDENT, cands(3) + cands(1))


def test_degenerate_sizes_still_terminate():
    oracle = Oracle(relevance(60, [59]))
    result = election_rank(oracle, INCIDENT, cands(60), prompt_size=6, picks=5)
    check_full_ordering(result, 60)
    assert result[0][0] == "k59"
    assert _prompts_needed(9, 8, 5) == 3  # 9 -> 2 prompts keep 8 -> 1 prompt


def test_split_is_balanced():
    assert [len(c) for c in _split(list("abcdefghijk"), 3)] == [4, 4, 3]
    assert sum(_split(list("abc"), 1), []) == list("abc")

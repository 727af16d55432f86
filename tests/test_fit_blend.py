"""bench/fit_blend.py: the held-out weight of the model's judgment next to the features score."""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("fit_blend", Path(__file__).parent.parent / "bench" / "fit_blend.py")
assert spec is not None and spec.loader is not None
fit_blend = importlib.util.module_from_spec(spec)
sys.modules["fit_blend"] = fit_blend  # dataclasses look their module up
spec.loader.exec_module(fit_blend)
Case = fit_blend.Case


def cases(n: int, *, informative: bool, seed: int = 0) -> list:
    """Features put the culprit 2nd to 4th; an informative model gives it the highest logp."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        score = tuple(sorted((rng.uniform(0, 3) for _ in range(10)), reverse=True))
        culprit = rng.randrange(1, 4)
        logp = [rng.uniform(-2, 0) for _ in range(10)]
        logp[culprit] = 1.0 if informative else -3.0
        out.append(Case(score, tuple(logp), culprit, culprit + 1))
    return out


def test_an_informative_model_gets_weight_and_moves_the_culprit_up():
    data = cases(50, informative=True)
    w = fit_blend.fit(data)
    assert w > 0
    assert fit_blend.tops(data, w)[0] > fit_blend.tops(data, 0.0)[0] == 0.0


def test_a_misleading_model_is_fitted_to_change_nothing():
    data = cases(50, informative=False)
    assert fit_blend.fit(data) == 0.0
    assert [fit_blend.rank_at(c, 0.0) for c in data] == [c.rank for c in data]


def test_a_culprit_the_model_never_saw_keeps_its_rank():
    case = Case((2.0, 1.0), (0.5, -0.5), None, 31)
    assert fit_blend.rank_at(case, 5.0) == 31

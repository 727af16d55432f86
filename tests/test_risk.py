from __future__ import annotations

import json

import numpy as np
import pytest

import riskrepo as rr
from rcahook.errors import ConfigError
from rcahook.index.reader import History
from rcahook.index.store import default_db_path
from rcahook.risk.model import RiskModel, default_risk_model, hand_set_model, load_risk_model
from rcahook.risk.scan import assess
from rcahook.risk.state import RISK_FEATURES, Decayed, load_state
from rcahook.risk.training import build_data, fit_model, fit_risk, fit_standardized


@pytest.fixture
def indexed(repo, tmp_path):
    shas = rr.published(repo, tmp_path)
    history = History.open(default_db_path(repo.path / ".git"))
    yield repo, shas, history
    history.close()


def col(name: str) -> int:
    return RISK_FEATURES.index(name)


def test_features_use_only_the_past(indexed):
    repo, shas, history = indexed
    data = build_data(history.conn)
    row = {c.sha: x for c, x in zip(data.commits, data.X)}
    # the first root cause is not known when it is made, nor when the fix is made...
    assert row[shas["culprit1"]][col("file_culprits")] == 0
    assert row[shas["fix1"]][col("file_culprits")] == 0
    # ...but is for the next change to the same file
    assert row[shas["culprit2"]][col("file_culprits")] == pytest.approx(np.log1p(1))
    assert row[shas["culprit2"]][col("def_culprits")] > 0
    # experience: the newcomer's first commit to net.c, then their second
    assert row[shas["culprit1"]][col("author_file_exp")] == 0
    assert row[shas["culprit2"]][col("author_file_exp")] == pytest.approx(np.log1p(1))
    labels = dict(zip((c.sha for c in data.commits), data.labels()))
    assert labels[shas["culprit1"]] == 1 and labels[shas["culprit2"]] == 1  # reverts count
    assert sum(labels.values()) == 2
    fix_time = history.commit(shas["fix1"]).committer_time
    known = dict(zip((c.sha for c in data.commits), data.labels(known_by=fix_time)))
    assert known[shas["culprit1"]] == 0  # not named yet at that time


def test_fit_standardized_recovers_the_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    logits = 2.0 * X[:, 0] - 1.0 * X[:, 1] - 1.5
    y = (rng.random(4000) < 1 / (1 + np.exp(-logits))).astype(float)
    coef, intercept, converged = fit_standardized(X, y, l2=0.01)
    assert converged
    assert coef[0] == pytest.approx(2.0, abs=0.25) and coef[1] == pytest.approx(-1.0, abs=0.2)
    assert abs(coef[2]) < 0.2 and intercept == pytest.approx(-1.5, abs=0.2)


def test_model_save_load_and_alignment(tmp_path):
    n = len(RISK_FEATURES)
    X = np.random.default_rng(1).normal(size=(200, n))
    y = (X[:, 0] > 0.5).astype(float)
    model = fit_model(X, y, l2=1.0, info={"source": "test"})
    medium, high = model.thresholds
    assert 0 < medium <= high < 1
    model.save(tmp_path / "risk.json")
    loaded = RiskModel.load(tmp_path / "risk.json")
    assert np.allclose(loaded.probability(X), model.probability(X), atol=1e-5)
    # a file from an older rcahook, without the last feature: it weighs 0
    doc = json.loads((tmp_path / "risk.json").read_text())
    for key in ("names", "mean", "scale", "coef"):
        doc[key] = doc[key][:-1]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = RiskModel.load(tmp_path / "old.json")
    assert old.contributions(X)[:, -1].tolist() == [0.0] * 200
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="rcahook train"):
        RiskModel.load(tmp_path / "bad.json")


def test_default_model_and_repository_model(tmp_path, indexed):
    model = default_risk_model()
    assert model.names == RISK_FEATURES[:len(model.names)]
    assert model.info.get("source") in ("default", "hand-set")
    assert load_risk_model(tmp_path)[1] in ("default", "hand-set")
    _, _, history = indexed
    fitted = fit_risk(history, until_time=2**40)
    fitted.save(tmp_path / "risk.json")
    loaded, source = load_risk_model(tmp_path)
    assert source == str(tmp_path / "risk.json") and loaded.info["source"] == "fitted"
    with pytest.raises(ConfigError, match="culprit links"):
        fit_risk(history, until_time=0)


def test_levels():
    model = hand_set_model()
    medium, high = model.thresholds
    assert model.level(medium / 2) == "low" and model.level(medium) == "medium" and model.level(high) == "high"


def test_decayed_counts_do_not_depend_on_order():
    day = 86400
    a, b = Decayed(10 * day), Decayed(10 * day)
    for t in (0, 5 * day, 30 * day):
        a.add("x", t)
    for t in (30 * day, 0, 5 * day):
        b.add("x", t)
    assert a.get("x", 40 * day) == pytest.approx(b.get("x", 40 * day))
    assert a.get("x", 30 * day) == pytest.approx(1 + 2 ** -2.5 + 2 ** -3)


def test_saved_state_gives_the_same_assessment(indexed):
    repo, _, history = indexed
    history.close()
    a = rr.benign_commit(repo, 1)
    b = rr.risky_commit(repo)
    rr.index(repo)
    history = History.open(default_db_path(repo.path / ".git"))
    index_dir = default_db_path(repo.path / ".git").parent
    model = default_risk_model()
    fresh = assess(history, [a, b], model=model)
    first = assess(history, [b], model=model, index_dir=index_dir)  # saves history without b
    assert load_state(history.conn)[0] is not None  # saved in the index
    cached = assess(history, [a, b], model=model, index_dir=index_dir)  # a was observed: rebuilt
    again = assess(history, [b], model=model, index_dir=index_dir)  # from the saved state
    assert [round(c.probability, 9) for c in fresh] == [round(c.probability, 9) for c in cached]
    assert round(first[0].probability, 9) == round(again[0].probability, 9)
    history.close()

from __future__ import annotations

import json

import numpy as np
import pytest

from rcahook.backtest.risk import default_split, popt, recall_at_effort, roc_auc, run_risk
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from rcahook.index.store import default_db_path

DAY = 86400


def test_roc_auc_by_hand():
    assert roc_auc([3, 2, 1], [1, 0, 0]) == 1.0
    assert roc_auc([1, 2, 3], [1, 0, 0]) == 0.0
    assert roc_auc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5  # ties count half
    # pairs (pos, neg): (0.8, 0.5) win, (0.8, 0.9) lose, (0.4, 0.5) lose, (0.4, 0.9) lose
    assert roc_auc([0.8, 0.5, 0.4, 0.9], [1, 0, 1, 0]) == 0.25
    assert roc_auc([1, 2], [0, 0]) is None


def test_recall_at_effort_by_hand():
    effort = [10, 10, 30, 50]  # 20% of 100 lines = 20
    y = [0, 1, 1, 0]
    assert recall_at_effort([4, 3, 2, 1], y, effort) == 0.5  # reads the first two: one of two found
    assert recall_at_effort([1, 4, 3, 2], y, effort) == 0.5  # reads 10 lines, then 30 would cross 20
    assert recall_at_effort([0, 4, 0, 0], [0, 1, 0, 0], [10, 10, 30, 50]) == 1.0


def test_popt_bounds():
    effort = np.array([10, 20, 30, 40], dtype=float)
    y = np.array([1, 0, 1, 0], dtype=float)
    density = y / effort
    assert popt(density, y, effort) == pytest.approx(1.0)
    assert popt(-density, y, effort) == pytest.approx(0.0)
    assert 0 < popt([4, 3, 2, 1], y, effort) < 1


def test_default_split_is_the_70_percent_point():
    times = np.arange(100) * DAY
    end = 80 * DAY  # 80 commits older than it
    assert default_split(times, end) == 56 * DAY


@pytest.fixture
def long_history(repo):
    """Two years of commits, two root causes early on, one in the test period."""
    start = 1_600_000_000
    shas = []

    def commit(message, files, day, author="Dev <dev@example.com>"):
        when = f"{start + day * DAY} +0000"
        shas.append(repo.commit(message, files, author=author, date=when))
        return shas[-1]

    commit("init", {"core.c": "int a;\n", "doc.md": "x\n"}, 0)
    day = 1
    bad = []
    for i in range(60):
        big = i % 7 == 3
        text = "".join(f"int f{i}_{j};\n" for j in range(80 if big else 2))
        sha = commit(f"core: change {i}", {f"core{i % 5}.c": text}, day,
                     author="New <new@example.com>" if big else "Dev <dev@example.com>")
        commit(f"docs: note {i}", {"doc.md": f"note {i}\n"}, day + 1)
        if bad and bad[-1] is not None:  # the previous big change is fixed ten days later
            commit(f"core: fix it\n\nFixes: {bad[-1][:12]}\n", {"core.c": f"int fix{i};\n"}, day + 2)
            bad.append(None)
        if big:
            bad.append(sha)
        day += 9
    commit("final", {"doc.md": "end\n"}, day + 400)
    bad = [b for b in bad if b]
    return repo, bad


def test_run_risk_reports_every_row(long_history, tmp_path, capsys):
    repo, bad = long_history
    r = Repo(str(repo.path))
    db = default_db_path(r.git_dir)
    index_repository(r, db, graph=False)
    history = History.open(db)
    try:
        code = run_risk(repo=r, history=history, fmt="json", report=str(tmp_path / "risk.md"),
                        output=str(tmp_path / "risk.jsonl"))
    finally:
        history.close()
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["track"] == "risk" and doc["counts"]["test_culprits"] > 0
    assert set(doc["metrics"]) == {"rcahook", "rcahook-default", "lapredict", "manualup"}
    assert doc["metrics"]["lapredict"]["auc"] > 0.9  # big commits are the bad ones here
    assert doc["metrics"]["rcahook"]["auc"] > 0.8
    assert "Recall@20%Effort" in (tmp_path / "risk.md").read_text()
    # Catch rates (issue 15 item 4): every row, shares of root causes, more flagged catches more.
    for name, m in doc["metrics"].items():
        c5, c10, c50 = m["catch_5"], m["catch_10"], m["catch_50"]
        assert all(0.0 <= c <= 1.0 for c in (c5, c10, c50)), name
        assert c5 <= c10 <= c50, name
    assert doc["metrics"]["lapredict"]["catch_50"] == 1.0  # every big commit is among the largest half
    assert "Catch@5%" in (tmp_path / "risk.md").read_text()
    rows = [json.loads(line) for line in (tmp_path / "risk.jsonl").read_text().splitlines()]
    assert len(rows) == doc["counts"]["test"] and any(r["culprit"] for r in rows)


def test_explicit_split(long_history, capsys):
    repo, _ = long_history
    r = Repo(str(repo.path))
    db = default_db_path(r.git_dir)
    index_repository(r, db, graph=False)
    history = History.open(db)
    try:
        run_risk(repo=r, history=history, fmt="json", report=None, output=None, split="2020-12-01")
    finally:
        history.close()
    doc = json.loads(capsys.readouterr().out)
    assert doc["split"]["date"] == "2020-12-01"


def test_text_output_has_catch_columns(long_history, capsys):
    repo, _ = long_history
    r = Repo(str(repo.path))
    db = default_db_path(r.git_dir)
    index_repository(r, db, graph=False)
    history = History.open(db)
    try:
        run_risk(repo=r, history=history, fmt="text", report=None, output=None)
    finally:
        history.close()
    out = capsys.readouterr().out
    assert "Catch@5%" in out and "Catch@50%" in out

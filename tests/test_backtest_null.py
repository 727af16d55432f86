"""`rcahook backtest --track null`: incidents whose title is about something else, on a real
repository with real fixes, through the CLI."""
from __future__ import annotations

import json

import pytest

from rcahook.backtest.mine import Investigation
from rcahook.backtest.run import null_investigations
from rcahook.cli import main
from rcahook.errors import BadInputError, ConfigError
from test_backtest import WINDOW, planted

ELSEWHERE = ["meson: ninja backend regenerates on every build", "libdrgn: python: crash on stack trace of core",
             "# a comment line, skipped", "", "vs2010 backend: wrong pdb path for shared modules"]


def _cli(capsys, *args) -> tuple[int, dict | None, str]:
    capsys.readouterr()
    code = main(["backtest", *args, "--format", "json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


@pytest.fixture
def planted_repo(repo):
    return repo, planted(repo)


def test_null_track_uses_titles_from_the_file_and_reports_the_answered_share(planted_repo, capsys, tmp_path):
    repo, c = planted_repo
    titles = tmp_path / "titles.txt"
    titles.write_text("\n".join(ELSEWHERE) + "\n")
    own = _cli(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--output", str(tmp_path / "t.jsonl"))[1]
    code, doc, err = _cli(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--track", "null",
                          "--null-titles", str(titles), "--output", str(tmp_path / "n.jsonl"))
    assert code == 0, err
    assert doc["settings"]["track"] == "null" and doc["settings"]["null_titles"] == str(titles)
    own_titles = {r["fix"]: r["title"] for r in own["results"]}
    used = [r["title"] for r in doc["results"]]
    # every investigation got a title from the file, never its own, and kept its fix and window
    assert set(used) <= {t for t in ELSEWHERE if t and not t.startswith("#")}
    assert [r["fix"] for r in doc["results"]] == list(own_titles) == [c["fix3"], c["fix2"], c["fix1"]]
    for row in doc["results"]:
        assert row["title"] != own_titles[row["fix"]] and row["own_title"] == own_titles[row["fix"]]
        assert row["window"] == WINDOW
    answered = doc["null"]["answered"]["features"]
    assert answered["min_confidence"] == 0.3 and answered["n"] <= 3
    assert answered["share"] == pytest.approx(answered["n"] / 3)
    # a nonsense title explains nothing: the confidence is low on every one
    assert all(r["confidence"]["features"]["calibrated"] < 0.3 for r in doc["results"])
    assert all(r["confidence"]["features"]["calibrated"] >= 0.3 for r in own["results"])
    # the header records the titles' fingerprint: a resume with other titles is refused
    header = json.loads((tmp_path / "n.jsonl").read_text().splitlines()[0])
    assert header["track"] == "null" and len(header["null_titles"]) == 16
    titles.write_text("ip route: something else entirely\n")
    code, _, err = _cli(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--track", "null",
                        "--null-titles", str(titles), "--output", str(tmp_path / "n.jsonl"), "--resume")
    assert code == ConfigError.exit_code and "null_titles" in err


def test_null_track_without_titles_takes_a_distant_investigation_of_the_same_repository(planted_repo, capsys):
    repo, c = planted_repo
    code, doc, err = _cli(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--track", "null")
    assert code == 0, err
    rows = doc["results"]
    assert len(rows) == 3
    own = [r["own_title"] for r in rows]
    assert all(r["title"] != r["own_title"] for r in rows)
    assert sorted(r["title"] for r in rows) == sorted(own)  # half a rotation: each title used once
    assert "own history" in doc["null"]["titles"]
    assert 0 <= doc["null"]["answered"]["features"]["share"] <= 1


def test_null_titles_need_the_null_track(planted_repo, capsys, tmp_path):
    repo, _ = planted_repo
    titles = tmp_path / "titles.txt"
    titles.write_text("something\n")
    code, _, err = _cli(capsys, "--repo", str(repo.path), "--null-titles", str(titles))
    assert code == BadInputError.exit_code and "--track null" in err
    titles.write_text("# only a comment\n\n")
    code, _, err = _cli(capsys, "--repo", str(repo.path), "--track", "null", "--null-titles", str(titles))
    assert code == BadInputError.exit_code and "no title" in err


def _inv(i: int, title: str) -> Investigation:
    return Investigation(fix=f"f{i}", culprit=f"c{i}", parent=f"p{i}", title=title, time=i,
                         paths=("a.c",), candidates=(f"c{i}",))


def test_null_assignment_is_deterministic_and_never_the_own_title():
    mined = [_inv(i, f"title {i}") for i in range(6)]
    rotated = null_investigations(mined, mined, None)
    assert [n.title for n in rotated] == ["title 3", "title 4", "title 5", "title 0", "title 1", "title 2"]
    assert all(n.paths == () and n.own_title == m.title for n, m in zip(rotated, mined))
    dealt = null_investigations(mined, mined, ["title 2", "x", "y"], seed=0)
    assert dealt == null_investigations(mined, mined, ["title 2", "x", "y"], seed=0)
    assert all(n.title != n.own_title for n in dealt)
    with pytest.raises(BadInputError, match="--null-titles"):
        null_investigations(mined[:1], mined[:1], None)

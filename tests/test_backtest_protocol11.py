"""Protocol v1.1 (docs/backtest.md#protocol-v11): v1's investigations as they are, plus those
named by "Fixes <sha>" (no colon) and "follow-up to <sha>", reported apart, with the
subject-named ones apart too. Real repositories, real index, the real command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rcahook.backtest.mine import mine_investigations
from rcahook.backtest.protocol import added_references, subject_names
from rcahook.cli import main
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History

WINDOW = 20


def _grow(repo, path: str, line: str) -> dict[str, str]:
    p = repo.path / path
    return {path: (p.read_text() if p.exists() else "") + line + "\n"}


def history_with_wordings(repo) -> dict[str, str]:
    """One fix per wording; the last commit is HEAD."""
    c: dict[str, str] = {}
    c["init"] = repo.commit("initial import", {"README": "tool\n"})
    c["culprit_v1"] = repo.commit("parser: accept nested tables",
                                  _grow(repo, "src/parser.c", "int parse_nested(void);"))
    c["culprit_nc"] = repo.commit("reader: buffer whole lines", _grow(repo, "src/reader.c", "int read_line(char *b);"))
    c["culprit_fu"] = repo.commit("config: new defaults file", _grow(repo, "src/config.c", "int load_defaults(void);"))
    c["culprit_sn"] = repo.commit("ui: new icon theme", _grow(repo, "src/icons.c", "int icon_theme(void);"))
    c["culprit_lc"] = repo.commit("math: widen counters", _grow(repo, "src/math.c", "long counter_add(long a);"))
    for i in range(3):
        c[f"filler{i}"] = repo.commit(f"docs: clarify usage ({i})", _grow(repo, "docs/usage.md", f"usage {i}"))
    c["fix_v1"] = repo.commit(
        "parser: fix crash on nested tables\n\n"
        f"Fixes: {c['culprit_v1'][:12]} (\"parser: accept nested tables\")\n",
        _grow(repo, "src/parser.c", "/* depth check */"))
    c["fix_nc"] = repo.commit(
        f"reader: fix leak on long lines\n\nFixes {c['culprit_nc'][:10]}\n",
        _grow(repo, "src/reader.c", "/* free */"))
    c["fix_fu"] = repo.commit(
        f"config: handle a missing defaults file\n\nFollow-up for commit {c['culprit_fu'][:9]}.\n",
        _grow(repo, "src/config.c", "/* missing file */"))
    c["fix_issue"] = repo.commit(  # an issue, not a commit: counted by neither protocol
        "docs: fix typo in usage\n\nFixes #12\n", _grow(repo, "docs/usage.md", "typo"))
    c["fix_sn"] = repo.commit(  # the culprit's sha is in the subject: the title keeps little
        f"Follow-up to {c['culprit_sn'][:9]}: restore the old icon size", _grow(repo, "src/icons.c", "/* size */"))
    c["quoted"] = repo.commit(  # indented: another message quoted, not this commit's own wording
        f"math: note the history\n\nThe original message said:\n\n    Fixes {c['culprit_lc'][:10]}\n",
        _grow(repo, "src/math.c", "/* history */"))
    c["fix_lc"] = repo.commit(  # v1's reference resolves to nothing; v1.1's lower-case one does
        f"math: fix counter overflow\n\nFixes: deadbeefcafe\nfixes {c['culprit_lc'][:12]}\n",
        _grow(repo, "src/math.c", "/* overflow */"))
    c["revert"] = repo.commit(  # a revert names its culprit in the title: skipped, as in v1
        f'Revert "reader: fix leak on long lines"\n\nThis reverts commit {c["fix_nc"]}.\n\n'
        f"Fixes {c['culprit_nc'][:10]}\n", _grow(repo, "src/reader.c", "/* reverted */"))
    return c


@pytest.fixture
def wordings(repo):
    return repo, history_with_wordings(repo)


def _cli_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    code = main(["backtest", *args, "--jobs", "1", "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_added_wordings():
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert added_references("s", f"Fixes {sha[:7]}") == [("fixes", sha[:7])]
    assert added_references("s", f"fixes commit {sha[:12].upper()}") == [("fixes", sha[:12])]
    assert added_references("s", f"Followup to {sha[:8]}\nfollow up of commit {sha[:9]}") == [
        ("follow-up", sha[:8]), ("follow-up", sha[:9])]
    # the body first, then the subject, as v1 searches
    assert added_references(f"Follow-up for {sha[:10]}", f"Fixes {sha[:7]}") == [
        ("fixes", sha[:7]), ("follow-up", sha[:10])]
    for text in ("Fixes #12", f"Fixes: {sha[:7]}", f"  Fixes {sha[:7]}", f"It fixes {sha[:7]}",
                 f"follow-up on {sha[:7]}", f'Reapply "x"\n\nThis reverts commit {sha}.', f"Fixes {sha[:6]}"):
        assert added_references("s", text) == [], text
    assert subject_names(f"Fix build broken by {sha[:9].upper()}", sha)
    assert not subject_names("Fix build broken by 0123456", "f" * 40)
    assert not subject_names("Fix build", sha)


def test_v1_mines_only_v1_and_v11_adds_the_new_wordings(wordings, tmp_path):
    repo, c = wordings
    index_repository(Repo(repo.path), tmp_path / "ix.sqlite", graph=False)
    history = History.open(tmp_path / "ix.sqlite")
    head = c["revert"]
    v1 = mine_investigations(history, head, window=WINDOW)
    assert [(i.fix, i.culprit, i.rule) for i in v1] == [(c["fix_v1"], c["culprit_v1"], "v1")]

    v11 = mine_investigations(history, head, window=WINDOW, protocol="1.1")
    got = [(i.fix, i.culprit, i.rule, i.subject_named) for i in v11]
    assert got == [  # newest first, v1's and the added ones in one order
        (c["fix_lc"], c["culprit_lc"], "v1.1:fixes", False),
        (c["fix_sn"], c["culprit_sn"], "v1.1:follow-up", True),
        (c["fix_fu"], c["culprit_fu"], "v1.1:follow-up", False),
        (c["fix_nc"], c["culprit_nc"], "v1.1:fixes", False),
        (c["fix_v1"], c["culprit_v1"], "v1", False),
    ]
    # v1's investigation is the very same under v1.1
    assert [i for i in v11 if i.rule == "v1"] == v1
    # the added ones follow v1's rules for everything else: F^, the window, the cleaned title
    sn = v11[1]
    assert sn.parent == repo.git("rev-parse", f"{c['fix_sn']}^")
    assert list(sn.candidates) == repo.git("rev-list", "--no-merges", f"--max-count={WINDOW}",
                                           f"{c['fix_sn']}^").split()
    assert c["culprit_sn"][:9] not in sn.title
    # the index stores v1's links only: v1.1 is computed by the backtest
    assert c["fix_nc"] not in history.culprit_of()


def test_cli_v11_reports_the_groups_apart_and_v1_stays_as_it_was(wordings, capsys, tmp_path):
    repo, c = wordings
    v1_out, v11_out = tmp_path / "v1.jsonl", tmp_path / "v11.jsonl"
    base = ["--repo", str(repo.path), "--window", str(WINDOW)]
    v1 = _cli_json(capsys, *base, "--output", str(v1_out))
    v11 = _cli_json(capsys, *base, "--no-update", "--protocol", "1.1", "--output", str(v11_out))

    # v1: one investigation, v1's document and results file, nothing of v1.1's
    assert v1["protocol_version"] == 1 and "groups" not in v1
    assert [r["fix"] for r in v1["results"]] == [c["fix_v1"]]
    assert not {"rule", "subject_named"} & set(v1["results"][0])
    rows = _rows(v1_out)
    assert rows[0]["protocol"] == 1 and all("rule" not in r for r in rows)

    # v1.1: the header says so, each result line says what found it
    assert v11["protocol_version"] == "1.1"
    rows = _rows(v11_out)
    assert rows[0]["type"] == "header" and rows[0]["protocol"] == "1.1"
    lines = {r["fix"]: (r["rule"], r["subject_named"]) for r in rows[1:]}
    assert lines == {c["fix_v1"]: ("v1", False), c["fix_nc"]: ("v1.1:fixes", False),
                     c["fix_fu"]: ("v1.1:follow-up", False), c["fix_sn"]: ("v1.1:follow-up", True),
                     c["fix_lc"]: ("v1.1:fixes", False)}
    assert c["fix_issue"] not in lines and c["quoted"] not in lines and c["revert"] not in lines
    assert {r["fix"]: (r["rule"], r["subject_named"]) for r in v11["results"]} == lines

    groups = v11["groups"]
    assert {g: groups[g]["n"] for g in groups} == {
        "all": 5, "v1": 1, "v1.1-added": 4, "subject-named": 1, "not-subject-named": 4}
    assert groups["all"]["rules"] == {"v1": 1, "v1.1:fixes": 2, "v1.1:follow-up": 2}
    assert groups["all"]["metrics"]["features"]["n"] == v11["metrics"]["features"]["n"] == 5

    # the v1 group is what the v1 run measured, figure for figure (timings aside)
    def figures(metrics: dict) -> dict:
        return {r: {k: v for k, v in m.items() if not k.startswith("seconds")} for r, m in metrics.items()}
    assert figures(groups["v1"]["metrics"]) == figures(v1["metrics"])
    assert {r["fix"]: r["ranks"] for r in v11["results"]}[c["fix_v1"]] == v1["results"][0]["ranks"]
    sn_rank = {r["fix"]: r["ranks"]["features"] for r in v11["results"]}[c["fix_sn"]]
    assert groups["subject-named"]["metrics"]["features"]["top1"] == float(sn_rank == 1)


def test_cli_v11_text_default_output_and_resume_refusal(wordings, capsys, tmp_path):
    repo, c = wordings
    base = ["backtest", "--repo", str(repo.path), "--window", str(WINDOW), "--jobs", "1"]
    capsys.readouterr()
    report = tmp_path / "out" / "bt.md"
    assert main([*base, "--protocol", "1.1", "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "protocol v1.1" in text and "v1.1-added" in text and "subject-named" in text
    cells = [[cell.strip() for cell in line.split("│")] for line in text.splitlines() if "│" in line]
    sizes = {row[0]: row[1] for row in cells if row[0] in ("v1", "v1.1-added", "subject-named")}
    assert sizes == {"v1": "1", "v1.1-added": "4", "subject-named": "1"}
    md = report.read_text()
    assert "## Protocol v1.1" in md and "| v1.1-added | 4 |" in md and "| subject-named | 1 |" in md
    # its own results file beside v1's default one, so a v1 run's file is never overwritten
    index_dir = repo.path / ".git" / "rcahook"
    v11_file = index_dir / f"backtest-{Repo(repo.path).slug()}-title-{WINDOW}-v1.1.jsonl"
    assert _rows(v11_file)[0]["protocol"] == "1.1"
    assert not (index_dir / f"backtest-{Repo(repo.path).slug()}-title-{WINDOW}.jsonl").exists()

    # a v1 results file is not resumed under v1.1 (nor the other way round)
    out = tmp_path / "v1.jsonl"
    assert main([*base, "--no-update", "--output", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    code = main([*base, "--no-update", "--protocol", "1.1", "--output", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 19 and "written with protocol=1," in err and "protocol='1.1'" in err
    assert out.read_bytes() == before


def test_cli_v11_is_for_the_rca_task(wordings, capsys):
    repo, _ = wordings
    capsys.readouterr()
    code = main(["backtest", "--repo", str(repo.path), "--task", "risk", "--protocol", "1.1"])
    err = capsys.readouterr().err
    assert code == 15 and "--protocol 1.1" in err and "--task rca" in err

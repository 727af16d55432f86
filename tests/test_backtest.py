from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from rcahook.backtest.mine import mine_investigations
from rcahook.backtest.run import Replayer, Settings, parse_rankers, query_for, run_backtest, select
from rcahook.cli import main
from rcahook.errors import BadInputError
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from rcahook.rca.features import build_background
from rcahook.rca.model import default_weights

WINDOW = 20

FILLERS = [
    ("ss: print socket memory info", "misc/ss.c", "static void print_skmeminfo(struct rtattr *tb) {}"),
    ("bridge: fdb: add vlan filter option", "bridge/fdb.c", "static int fdb_vlan_filter;"),
    ("man: document ip link altname", "man/man8/ip-link.8", ".B altname NAME"),
    ("lib: add get_u64_hex helper", "lib/utils.c", "int get_u64_hex(unsigned long long *val);"),
    ("devlink: show port function state", "devlink/devlink.c", "static void pr_port_fn_state(void) {}"),
    ("rdma: add resource tracking for qp", "rdma/res-qp.c", "static int res_qp_parse_cb(void);"),
    ("tc: m_action: print action cookie", "tc/m_action.c", "static void print_act_cookie(void) {}"),
    ("ip neigh: add proxy flag", "ip/ipneigh.c", "static int neigh_proxy_flag;"),
    ("misc: nstat: json output for counters", "misc/nstat.c", "static void nstat_json_dump(void) {}"),
    ("dcb: add ets subcommand", "dcb/dcb_ets.c", "static int dcb_cmd_ets(int argc);"),
    ("testsuite: add vrf tests", "testsuite/tests/ip/vrf.t", "ip vrf show"),
    ("ip xfrm: print offload dev", "ip/xfrm_state.c", "static void xfrm_offload_print(void) {}"),
]


def filler(repo, i: int) -> str:
    subject, path, line = FILLERS[i % len(FILLERS)]
    return repo.commit(f"{subject} ({i})", {path: _grow(repo, path, f"{line} /* {i} */")})


def _grow(repo, path: str, line: str) -> str:
    p = repo.path / path
    old = p.read_text() if p.exists() else ""
    return old + line + "\n"


def planted(repo) -> dict[str, str]:
    """A history with real fixes and culprits; the last commit is the `addr` fix."""
    c: dict[str, str] = {}
    c["init"] = repo.commit("initial import", {"ip/iproute.c": "int main(void);\n", "README": "iproute\n"})
    c["old_culprit"] = repo.commit("lib: rework json printer", {
        "lib/json_print.c": "void jsonw_string_field(const char *name);\nvoid jsonw_escape(void);\n"})
    for i in range(WINDOW + 5):  # pushes old_culprit out of a 20-commit window
        c[f"filler{i}"] = filler(repo, i)
    c["culprit1"] = repo.commit("ip route: add multipath nexthop weights", {
        "ip/iproute.c": _grow(repo, "ip/iproute.c", "static int parse_nexthop_weight(char *argv);")})
    c["f1"] = filler(repo, 100)
    c["f2"] = filler(repo, 101)
    c["fix1"] = repo.commit(
        "ip route: fix crash with multipath nexthop weights after 1a2b3c4d (#42)\n\n"
        "A zero weight crashed the parser.\n\n"
        f"Fixes: {c['culprit1'][:12]} (\"ip route: add multipath nexthop weights\")\n",
        {"ip/iproute.c": _grow(repo, "ip/iproute.c", "/* check weight */")})
    c["culprit2"] = repo.commit("tc: flower: rework vlan id parsing", {
        "tc/f_flower.c": "static int flower_parse_vlan_id(char *str);\n"})
    c["f3"] = filler(repo, 102)
    c["fix2"] = repo.commit(
        "tc: flower: vlan id parsing rejects valid ids\n\n"
        f"Regression in {c['culprit2'][:10]}.\n",
        {"tc/f_flower.c": _grow(repo, "tc/f_flower.c", "/* accept 4095 */")})
    c["revert"] = repo.commit(
        f'Revert "{FILLERS[1][0]} (1)"\n\nThis reverts commit {c["filler1"]}.\n\n'
        f"Fixes: {c['filler1'][:12]}\n",
        {"bridge/fdb.c": _grow(repo, "bridge/fdb.c", "/* reverted */")})
    c["unresolved"] = repo.commit(
        "ss: fix column alignment\n\nFixes: deadbeefcafe (\"ss: new columns\")\n",
        {"misc/ss.c": _grow(repo, "misc/ss.c", "/* align */")})
    c["fix_old"] = repo.commit(
        "lib: json printer emits invalid escapes\n\n"
        f"Fixes: {c['old_culprit'][:12]} (\"lib: rework json printer\")\n",
        {"lib/json_print.c": _grow(repo, "lib/json_print.c", "/* escape */")})
    c["culprit3"] = repo.commit("ip address: new label handling", {
        "ip/ipaddress.c": "static int ipaddr_label_parse(const char *label);\n"})
    c["f4"] = filler(repo, 103)
    c["fix3"] = repo.commit(
        "ip address: label handling broken for long labels\n\n"
        f"This was introduced by commit {c['culprit3'][:12]}.\n",
        {"ip/ipaddress.c": _grow(repo, "ip/ipaddress.c", "/* long labels */")})
    return c


def index(repo, db: Path) -> History:
    index_repository(Repo(repo.path), db, graph=False)
    return History.open(db)


@pytest.fixture
def planted_repo(repo):
    return repo, planted(repo)


# --- mining ------------------------------------------------------------------------------------

def test_mining_keeps_the_protocol_investigations(planted_repo, tmp_path):
    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    invs = mine_investigations(history, c["fix3"], window=WINDOW)
    # newest first; the revert, the unresolved reference and the culprit outside the window are out
    assert [(i.fix, i.culprit) for i in invs] == [
        (c["fix3"], c["culprit3"]), (c["fix2"], c["culprit2"]), (c["fix1"], c["culprit1"])]
    # with a large window the old culprit is back in
    wide = mine_investigations(history, c["fix3"], window=500)
    assert (c["fix_old"], c["old_culprit"]) in [(i.fix, i.culprit) for i in wide]
    assert c["revert"] not in [i.fix for i in wide] and c["unresolved"] not in [i.fix for i in wide]


def test_investigation_fields_follow_the_protocol(planted_repo, tmp_path):
    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    inv = {i.fix: i for i in mine_investigations(history, c["fix3"], window=WINDOW)}[c["fix1"]]
    # hex strings and #refs are cleaned out of the title
    assert inv.title == "ip route: fix crash with multipath nexthop weights after"
    assert inv.parent == repo.git("rev-parse", f"{c['fix1']}^")
    assert list(inv.candidates) == repo.git("rev-list", "--no-merges", f"--max-count={WINDOW}",
                                            f"{c['fix1']}^").split()
    assert c["fix1"] not in inv.candidates
    assert inv.paths == ("ip/iproute.c",)
    # the title track sees title and time only; the paths track also the paths F modifies
    q = query_for(inv, "title")
    assert (q.title, q.description, q.impacted_paths, q.time) == (inv.title, "", (), inv.time)
    assert query_for(inv, "paths").impacted_paths == ("ip/iproute.c",)


def test_select_limit_and_seeded_sample():
    items = list(range(10))
    assert select(items, limit=4, sample=None, seed=0) == [0, 1, 2, 3]
    a = select(items, limit=None, sample=3, seed=7)
    assert a == select(items, limit=None, sample=3, seed=7) and len(a) == 3 and a == sorted(a)
    assert select(items, limit=5, sample=9, seed=0) == [0, 1, 2, 3, 4]


def test_parse_rankers():
    assert parse_rankers(("features", "bm25,logprob")) == ("features", "logprob")
    with pytest.raises(BadInputError):
        parse_rankers(("nonsense",))


# --- leakage -----------------------------------------------------------------------------------

def _with_future(repo, c) -> dict[str, str]:
    """Commits after fix3 that would give fix3's culprit away if anything after F^ leaked."""
    inv_title = "ip address: label handling broken for long labels"
    later: dict[str, str] = {}
    # the title, verbatim, on a commit touching the same file
    later["echo"] = repo.commit(inv_title, {
        "ip/ipaddress.c": _grow(repo, "ip/ipaddress.c", "static int ipaddr_label_parse_long(void);")})
    # a later fix naming culprit3 (a culprit link whose fix is not reachable from F^)
    later["refix"] = repo.commit(
        f"ip address: label parsing again\n\nFixes: {c['culprit3'][:12]} (\"ip address: new label handling\")\n",
        {"ip/ipaddress.c": _grow(repo, "ip/ipaddress.c", "/* again */")})
    # a side branch off F^ dated before F, merged after F: not reachable from F^
    repo.git("checkout", "-q", "-b", "side", f"{c['fix3']}^")
    later["side"] = repo.commit(inv_title + " (side)", {
        "ip/ipaddr_label.c": "static int ipaddr_label_parse(const char *label);\n"},
        date="2023-06-01T00:00:00+00:00")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch side", "side")
    return later


def test_nothing_after_the_parent_reaches_the_ranker(make_repo, tmp_path):
    plain, leaky = make_repo("plain"), make_repo("leaky")
    c = planted(plain)
    assert planted(leaky) == c  # same commits, same shas: the histories differ only after fix3
    later = _with_future(leaky, c)
    h_plain, h_leaky = index(plain, tmp_path / "plain.sqlite"), index(leaky, tmp_path / "leaky.sqlite")
    head = leaky.git("rev-parse", "HEAD")
    inv = {i.fix: i for i in mine_investigations(h_leaky, head, window=WINDOW)}[c["fix3"]]
    assert inv == {i.fix: i for i in mine_investigations(h_plain, c["fix3"], window=WINDOW)}[c["fix3"]]
    assert not set(later.values()) & set(inv.candidates)

    weights = default_weights()
    for track in ("title", "paths"):
        r_plain = Replayer(h_plain, track=track, weights=weights, culprits=h_plain.culprit_of())
        r_leaky = Replayer(h_leaky, track=track, weights=weights, culprits=h_leaky.culprit_of())
        a, b = r_plain.ranking(inv, "features"), r_leaky.ranking(inv, "features")
        assert [x.sha for x in a.candidates] == [x.sha for x in b.candidates]
        assert not set(later.values()) & {x.sha for x in b.candidates}
        assert np.array_equal(np.stack([x.features for x in a.candidates]),
                              np.stack([x.features for x in b.candidates]))
        assert [x.score for x in a.candidates] == [x.score for x in b.candidates]
        bg_a, bg_b = a.retrieval.background, b.retrieval.background
        assert (bg_a.n_commits, bg_a.culprit_count, bg_a.culprit_files) == (
            bg_b.n_commits, bg_b.culprit_count, bg_b.culprit_files)
        assert r_plain.outcome(inv, "features").rank == r_leaky.outcome(inv, "features").rank
        assert r_plain.outcome(inv, "bm25").rank == r_leaky.outcome(inv, "bm25").rank
    # the later fix's link exists in the leaky index, and is left out of the statistics
    assert h_leaky.culprit_of()[later["refix"]] == c["culprit3"]
    assert bg_b.culprit_files.get("ip/ipaddress.c", 0) == 0


def test_background_counts_only_links_whose_fix_is_reachable(planted_repo, tmp_path):
    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    parent = repo.git("rev-parse", f"{c['fix2']}^")
    before = history.commits(history.rev_list(parent))
    links = history.culprit_of()
    bg = build_background(before, links)
    reachable = {v.sha for v in before}
    expected = sum(1 for fix, culprit in links.items() if fix in reachable and culprit in reachable)
    assert bg.culprit_count == expected == 1  # fix1 only: fix2, fix3 and fix_old come later
    assert bg.culprit_files == {"ip/iproute.c": 1}


# --- the command -------------------------------------------------------------------------------

def _cli_json(capsys, *args) -> dict:
    capsys.readouterr()
    code = main(["backtest", *args, "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_cli_json_schema_and_features_beat_random(planted_repo, capsys):
    repo, c = planted_repo
    doc = _cli_json(capsys, "--repo", str(repo.path), "--window", str(WINDOW))
    assert set(doc) >= {"schema", "repository", "head", "protocol_version", "settings", "weights",
                        "investigations", "metrics", "confidence", "results", "notes", "output"}
    assert doc["head"] == c["fix3"] and doc["protocol_version"] == 1
    assert doc["settings"]["window"] == WINDOW and doc["settings"]["track"] == "title"
    assert doc["investigations"] == {"mined": 3, "evaluated": 3, "excluded_by_cutoff": 0}
    assert list(doc["metrics"]) == ["features", "random", "recency", "bm25"]
    for m in doc["metrics"].values():
        assert set(m) >= {"n", "top1", "top5", "top10", "mrr", "stage1_recall", "retrieved_mean",
                          "seconds_mean", "seconds_p90", "topk_curve"}
        assert m["n"] == 3
    assert doc["metrics"]["random"]["top5"] == pytest.approx(5 / WINDOW)
    assert doc["metrics"]["features"]["top5"] > doc["metrics"]["random"]["top5"]
    assert doc["metrics"]["features"]["mrr"] > doc["metrics"]["random"]["mrr"]
    assert doc["metrics"]["features"]["stage1_recall"] == 1.0
    assert [r["fix"] for r in doc["results"]] == [c["fix3"], c["fix2"], c["fix1"]]
    row = doc["results"][0]
    assert set(row) >= {"fix", "culprit", "ranks", "confidence"} and row["culprit"] == c["culprit3"]
    assert set(row["ranks"]) == {"features", "recency", "bm25"}
    assert 0 <= row["confidence"]["features"]["calibrated"] <= 1
    conf = doc["confidence"]["features"]
    assert [r["threshold"] for r in conf["abstention"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert "threshold_90" in conf and "refit" in conf and conf["refit"]["calibration"]["info"]["n"] == 3
    assert doc["weights"]["source"] == "default"
    assert Path(doc["output"]).is_file()


def test_cli_paths_track_adds_path_overlap(planted_repo, capsys):
    repo, _ = planted_repo
    doc = _cli_json(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--track", "paths")
    assert "path-overlap" in doc["metrics"]
    assert doc["metrics"]["path-overlap"]["top5"] == 1.0  # each fix edits its culprit's file


def test_cli_resume_after_a_partial_output(planted_repo, capsys, tmp_path):
    repo, c = planted_repo
    out = tmp_path / "results.jsonl"
    args = ["--repo", str(repo.path), "--window", str(WINDOW), "--output", str(out)]
    first = _cli_json(capsys, *args)
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header"
    assert len(lines) == 1 + 3 * 3  # 3 investigations x (features, recency, bm25)
    # an interrupted run: four outcomes written, the fifth cut mid-line
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    second = _cli_json(capsys, *args, "--resume")
    assert second["resumed"] == 4
    assert [r["ranks"] for r in second["results"]] == [r["ranks"] for r in first["results"]]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    results = [(r["fix"], r["ranker"]) for r in rows if r["type"] == "result"]
    assert len(results) == len(set(results)) == 9
    # a third run resumes everything
    assert _cli_json(capsys, *args, "--resume")["resumed"] == 9


def test_cli_resume_with_other_settings_is_refused(planted_repo, capsys, tmp_path):
    repo, _ = planted_repo
    out = tmp_path / "results.jsonl"
    _cli_json(capsys, "--repo", str(repo.path), "--window", str(WINDOW), "--output", str(out))
    before = out.read_bytes()
    code = main(["backtest", "--repo", str(repo.path), "--window", "15", "--output", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 19 and "--resume" in err and "--output" in err
    refusal = [line for line in err.splitlines() if str(out) in line]
    assert len(refusal) == 1 and f"window={WINDOW}" in refusal[0] and "window=15" in refusal[0]
    assert out.read_bytes() == before  # refused before anything was written


def test_cli_text_and_report(planted_repo, capsys, tmp_path):
    repo, c = planted_repo
    report = tmp_path / "out" / "bt.md"
    capsys.readouterr()
    assert main(["backtest", "--repo", str(repo.path), "--window", str(WINDOW), "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert c["fix3"] in text and "protocol v1" in text and "features" in text and "bm25" in text
    md = report.read_text()
    assert "| features |" in md and "bt-topk.png" in md and "bt-abstention.png" in md
    assert (tmp_path / "out" / "bt-topk.png").stat().st_size > 0
    assert (tmp_path / "out" / "bt-abstention.png").stat().st_size > 0


def test_learned_weights_with_a_cutoff_give_a_time_split(planted_repo, tmp_path):
    repo, c = planted_repo
    db = tmp_path / "ix" / "index.sqlite"
    history = index(repo, db)
    cutoff = history.commit(c["fix2"]).committer_time
    w = default_weights()
    w.info = {"source": "rcahook train", "cutoff_time": cutoff}
    w.save(db.parent / "weights.json")
    result = run_backtest(history, repository=str(repo.path), head=c["fix3"], settings=Settings(window=WINDOW),
                          index_dir=db.parent, output=tmp_path / "r.jsonl")
    assert [i.fix for i in result.investigations] == [c["fix3"]]
    assert result.excluded_by_cutoff == 2 and result.weights.source == "learned"
    assert any("time split" in note for note in result.notes)


def test_risk_task_without_its_module_says_so(planted_repo, capsys, monkeypatch):
    repo, _ = planted_repo
    monkeypatch.setitem(sys.modules, "rcahook.backtest.risk", None)
    code = main(["backtest", "--repo", str(repo.path), "--task", "risk"])
    assert code == BadInputError.exit_code and "--task risk" in capsys.readouterr().err


def test_repository_without_investigations(repo, capsys):
    repo.commit("initial import", {"a.c": "int a;\n"})
    repo.commit("add b", {"b.c": "int b;\n"})
    doc = _cli_json(capsys, "--repo", str(repo.path), "--window", str(WINDOW))
    assert doc["investigations"]["evaluated"] == 0 and doc["results"] == []
    assert doc["metrics"]["features"]["n"] == 0 and doc["confidence"] == {}
    capsys.readouterr()
    assert main(["backtest", "--repo", str(repo.path), "--window", str(WINDOW), "--no-update"]) == 0
    assert "0 evaluated" in capsys.readouterr().out


def test_default_weights_naming_the_repository_are_flagged(planted_repo, tmp_path, monkeypatch):
    import rcahook.backtest.run as run_module

    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    fitted = default_weights()
    monkeypatch.setattr(run_module, "default_weights", lambda: fitted)
    monkeypatch.setattr(run_module, "load_weights", lambda index_dir: fitted)

    def notes(info: dict, repository: str) -> list[str]:
        fitted.info = info
        return run_backtest(history, repository=repository, head=c["fix3"], settings=Settings(window=WINDOW),
                            index_dir=tmp_path, output=tmp_path / "r.jsonl").notes

    assert any("in-sample" in n for n in notes({"repositories": ["acme/widget", "x/y"]}, "/src/widget"))
    assert any("in-sample" in n for n in notes({"fitted_on": {"widget": 10, "x": 3}}, "/m/acme+widget/repo"))
    assert not any("in-sample" in n for n in notes({"repositories": ["acme/widgets"]}, "/src/widget"))
    assert not any("in-sample" in n for n in notes({"repositories": ["acme/widget"]}, "/src/repo"))


def incident_title(prompt) -> str:
    """The title line of the prompt's incident block (candidates' subjects come after it)."""
    incident = prompt.user.split("## Recent changes")[0]
    return next(line.split("title: ", 1)[1].strip() for line in incident.splitlines() if "title: " in line)


class CulpritOracle:
    """A fake model that knows each incident's culprit: what an LLM ranker does with a perfect model."""

    name = "oracle"

    def __init__(self, culprit_by_title: dict[str, str]):
        self.culprit_by_title = culprit_by_title
        self.prompts = []

    def _culprit(self, prompt) -> str | None:
        self.prompts.append(prompt)
        return self.culprit_by_title.get(incident_title(prompt))

    def generate(self, prompt, *, max_new_tokens):
        culprit = self._culprit(prompt)
        return " " + ", ".join(label for k, label in zip(prompt.keys, prompt.labels) if k == culprit) + "\n"

    def label_logprobs(self, prompt, labels):
        culprit = self._culprit(prompt)
        return {label: (0.0 if k == culprit else -9.0) for k, label in zip(prompt.keys, prompt.labels)}


def test_llm_rankers_rerank_within_the_window_and_resume_without_loading(planted_repo, tmp_path):
    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    oracle = CulpritOracle({inv.title: inv.culprit for inv in mine_investigations(history, c["fix3"], window=WINDOW)})
    loads = []

    def load():
        loads.append(1)
        return oracle

    kwargs = dict(repository=str(repo.path), head=c["fix3"], index_dir=tmp_path, output=tmp_path / "r.jsonl",
                  settings=Settings(window=WINDOW, rankers=("features", "election", "logprob"), llm_top=10),
                  diff_text=Repo(repo.path).diff_text, load_backend=load)
    result = run_backtest(history, **kwargs)
    assert [o.rank for o in result.outcomes["logprob"]] == [1, 1, 1]
    assert [o.rank for o in result.outcomes["election"]] == [1, 1, 1]
    assert len(loads) == 1 and oracle.prompts
    for prompt in oracle.prompts:
        inv = next(i for i in result.investigations if i.title == incident_title(prompt))
        assert set(prompt.keys) <= set(inv.candidates) and inv.fix not in prompt.keys
        assert "zero weight crashed" not in prompt.user  # F's body is never shown
    # the oracle names one label a prompt: the rest of each ballot took stage 1's order, and
    # the figures say how much of the election was the model's own
    election = result.outcomes["election"]
    assert all(o.ballots is not None and 0 < o.ballots[0] < o.ballots[1] for o in election)
    from rcahook.backtest.metrics import summarize

    share = summarize(election).model_ballots
    assert share == sum(o.ballots[0] for o in election) / sum(o.ballots[1] for o in election) < 0.5
    assert summarize(result.outcomes["logprob"]).model_ballots is None
    resumed = run_backtest(history, resume=True, **kwargs)
    assert resumed.resumed == 3 * 5 and len(loads) == 1
    assert [o.ballots for o in resumed.outcomes["election"]] == [o.ballots for o in election]


class AntiOracle(CulpritOracle):
    """Sure of the wrong answer: puts every candidate but the culprit first."""

    def label_logprobs(self, prompt, labels):
        culprit = self._culprit(prompt)
        return {label: (-9.0 if k == culprit else 0.0) for k, label in zip(prompt.keys, prompt.labels)}


def test_blend_is_features_at_weight_zero_and_records_what_a_fit_needs(planted_repo, tmp_path):
    """The blend ranker adds weight x the model's centred label log-probability to the features
    score: at 0 it is the features ranking exactly (whatever the model says), and each outcome
    records the scores, the log-probabilities and the culprit's place for a held-out fit."""
    repo, c = planted_repo
    history = index(repo, tmp_path / "ix.sqlite")
    titles = {inv.title: inv.culprit for inv in mine_investigations(history, c["fix3"], window=WINDOW)}

    def run(model, weight, name):
        return run_backtest(history, repository=str(repo.path), head=c["fix3"], index_dir=tmp_path,
                            output=tmp_path / f"{name}.jsonl", load_backend=lambda: model,
                            settings=Settings(window=WINDOW, rankers=("features", "blend"), blend_weight=weight))

    neutral = run(AntiOracle(titles), 0.0, "zero")
    assert [o.rank for o in neutral.outcomes["blend"]] == [o.rank for o in neutral.outcomes["features"]]
    for o in neutral.outcomes["blend"]:
        b = o.blend
        assert len(b["score"]) == len(b["logp"]) >= 2 and b["culprit"] == o.rank - 1
        assert b["score"] == sorted(b["score"], reverse=True)  # the features order
        # centred: exp(logp) averages to 1 over the prompt; the culprit is the one the model ruled out
        assert abs(sum(math.exp(x) for x in b["logp"]) / len(b["logp"]) - 1) < 1e-6
        assert b["logp"][b["culprit"]] == min(b["logp"])
    stored = [json.loads(line) for line in (tmp_path / "zero.jsonl").read_text().splitlines()]
    assert all("blend" in row for row in stored if row.get("ranker") == "blend")
    header = stored[0]
    assert header["rankers"]["blend"]["blend_weight"] == 0.0
    # a heavy weight hands the order to the model: the oracle puts the culprit first, the
    # anti-oracle last among those it saw
    assert [o.rank for o in run(CulpritOracle(titles), 50.0, "good").outcomes["blend"]] == [1, 1, 1]
    bad = run(AntiOracle(titles), 50.0, "bad").outcomes["blend"]
    assert all(o.rank == len(o.blend["score"]) for o in bad)

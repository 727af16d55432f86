"""`rcahook train data`: the datasets, their formats, and the leakage rule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from rcahook.cli import main
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from rcahook.llm.prompt import ANSWER_PREFIX, parse_labels
from rcahook.train import data as td
from rcahook.train.card import DataConfig

# Text that exists only after the cut-off: it must appear in no dataset.
LATE_WORD = "zebrafish"
LATE_FILE_TEXT = "LATEMARKER_only_after_the_cutoff"

PAIRS = [  # (component, file, culprit subject, fix subject)
    ("parser", "src/parser.c", "parser: accept quoted keys", "parser: crash on quoted keys"),
    ("cache", "src/cache.c", "cache: evict by size", "cache: eviction frees live entries"),
    ("net", "src/net.py", "net: reuse sockets", "net: reused sockets leak descriptors"),
    ("auth", "src/auth.c", f"auth: {LATE_WORD} tokens", f"auth: {LATE_WORD} tokens expire early"),
    ("log", "src/log.py", f"log: {LATE_WORD} rotation", f"log: {LATE_WORD} rotation loses lines"),
]
CUT_AFTER = 3  # pairs before the cut-off
FILLERS = [
    ("docs: describe the cache settings", "docs/cache.md", "The cache holds entries."),
    ("build: add a lint target", "Makefile", "lint:\n\tflake8"),
    ("tests: cover the parser", "tests/test_parser.py", "def test_parse(): pass"),
    ("server: log the listen address", "src/server.c", "/* listen */"),
    ("tools: widgetctl prints json", "tools/widgetctl.py", "import json"),
]


def grow(repo, path: str, line: str) -> str:
    p = repo.path / path
    return (p.read_text() if p.exists() else "") + line + "\n"


def filler(repo, i: int) -> str:
    subject, path, line = FILLERS[i % len(FILLERS)]
    return repo.commit(f"{subject} ({i})", {path: grow(repo, path, f"{line} /* {i} */")})


def planted_history(repo) -> dict[str, str]:
    """Five culprit/fix pairs among fillers; `cut` is the last commit before the later two."""
    c: dict[str, str] = {}
    c["init"] = repo.commit("initial import", {
        "README.md": "# widget\n\nA small widget server.\n",
        "docs/guide.rst": "Guide\n=====\n\nRun ``widgetd`` to serve widgets.\n",
        "src/server.c": "int main(void) { return 0; }\n",
        "src/util.c": "int add(int a, int b) { return a + b; }\n",
        "src/util_copy.c": "int add(int a, int b) { return a + b; }\n",  # an exact duplicate
        "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
        "src/generated.c": "int table[] = {" + "0," * 150_000 + "};\n",  # too big to learn from
        "data.bin": bytes(range(256)),
    })
    i = 0
    for n, (comp, path, culprit, fix) in enumerate(PAIRS):
        if n == CUT_AFTER:
            c["cut"] = filler(repo, i)
            i += 1
            c["late_file"] = repo.commit(f"{LATE_WORD}: add the late module", {
                "src/late.c": f"/* {LATE_FILE_TEXT} */\n", "README.md": grow(repo, "README.md", LATE_FILE_TEXT)})
        for _ in range(3):
            filler(repo, i)
            i += 1
        c[f"culprit_{comp}"] = repo.commit(culprit, {path: grow(repo, path, f"/* {comp} change */")})
        filler(repo, i)
        i += 1
        c[f"fix_{comp}"] = repo.commit(f"{fix}\n\nFixes: {c[f'culprit_{comp}'][:12]} (\"{culprit}\")\n",
                                       {path: grow(repo, path, f"/* {comp} fix */")})
    c["head"] = filler(repo, i)
    return c


def index(repo, db: Path) -> History:
    index_repository(Repo(repo.path), db, graph=False)
    return History.open(db)


def shared_cache(base: Path) -> Path:
    return base / "rcahook-model-cache"  # the same directory tests/test_llm_local.py uses


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RCAHOOK_CACHE", str(shared_cache(tmp_path_factory.getbasetemp())))


@pytest.fixture(scope="session")
def embedded_tokenizer(tmp_path_factory):
    from rcahook.llm.embedded import embedded_model_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCAHOOK_CACHE", str(shared_cache(tmp_path_factory.getbasetemp())))
        return transformers.AutoTokenizer.from_pretrained(embedded_model_dir())


@pytest.fixture
def planted(make_repo):
    repo = make_repo("widget")
    return repo, planted_history(repo)


def all_text(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.jsonl")))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_train_data_writes_the_three_formats(planted, tmp_path, embedded_tokenizer):
    repo, c = planted
    out = tmp_path / "data"
    code = main(["train", "data", "--repo", str(repo.path), "--db", str(tmp_path / "ix.sqlite"),
                 "--until", c["cut"], "--output", str(out), "--seed", "3"])
    assert code == 0
    manifest = json.loads((out / td.MANIFEST).read_text())
    assert manifest["key"]["cutoff"]["sha"] == c["cut"]
    for name in (td.CPT_DOCS, td.CPT, td.SFT):
        assert manifest["files"][name]["sha256"] == td.sha256_file(out / name)

    docs = rows(out / td.CPT_DOCS)
    sources = {d["source"] for d in docs}
    assert {"README.md", "docs/guide.rst"} <= sources
    assert len({"src/util.c", "src/util_copy.c"} & sources) == 1  # exact duplicates: one is kept
    assert not {"assets/logo.png", "data.bin", "src/generated.c"} & sources  # binary, not text, huge
    assert any(d["kind"] == "commit" and "parser: accept quoted keys" in d["text"] for d in docs)
    counts = manifest["counts"]["cpt"]
    assert counts["duplicates"] >= 1 and counts["huge"] == 1

    blocks = rows(out / td.CPT)
    assert all(len(b["input_ids"]) <= 1024 for b in blocks)
    eos = embedded_tokenizer.eos_token_id
    assert sum(b["input_ids"].count(eos) for b in blocks) >= len(docs) - 1  # EOS between documents
    assert embedded_tokenizer.decode(blocks[0]["input_ids"][:200]).strip()

    sft = rows(out / td.SFT)
    assert {r["meta"]["fix"] for r in sft} == {c[f"fix_{p[0]}"] for p in PAIRS[:CUT_AFTER]}
    for r in sft:
        meta, msgs = r["meta"], r["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert 2 <= meta["n_candidates"] <= 20 and meta["culprit"] in meta["keys"]
        answer = msgs[2]["content"]
        assert answer.startswith(ANSWER_PREFIX + " ")
        named = parse_labels(answer[len(ANSWER_PREFIX):], meta["labels"])
        assert named == meta["answer"] and named[0] == meta["culprit_label"]
        assert len(named) == min(5, meta["n_candidates"])
        assert meta["labels"][meta["keys"].index(meta["culprit"])] == meta["culprit_label"]
        assert f"## Change {meta['culprit_label']}" in msgs[1]["content"]


def test_prompts_are_the_election_rankers(planted, tmp_path, embedded_tokenizer):
    """An SFT prompt is what build_prompt makes for the same incident, candidates and labels."""
    from rcahook.llm.prompt import IncidentView, build_prompt
    from rcahook.rca.ranking import RankerSpec, candidate_views

    repo, c = planted
    history = index(repo, tmp_path / "ix.sqlite")
    r = Repo(repo.path)
    cut = td.resolve_cutoff(r, history, until=c["cut"], before=None)
    allowed = td.allowed_commits(history, cut)
    invs = td.training_investigations(history, cut, allowed, window=500)
    case = td.mined_cases(invs, paths_share=1.0, seed=0)[0]
    count = lambda t: len(embedded_tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    row = td.SftBuilder(r, history, config=DataConfig(), seed=0, count_tokens=count).row(case)
    meta = row["meta"]
    assert meta["paths_shown"] and case.query.impacted_paths
    picks = [td._Pick(k, history.commit(k)) for k in meta["keys"]]
    views = candidate_views(history, picks, r.diff_text, RankerSpec())
    q = case.query
    expected = build_prompt(IncidentView(q.title, q.description[:600], tuple(q.impacted_paths[:6])), views,
                            labels=meta["labels"], picks=len(meta["answer"]), count_tokens=count)
    assert row["messages"][0]["content"] == expected.system
    assert row["messages"][1]["content"] == expected.user


@pytest.mark.parametrize("flag", ["--until", "--before"])
def test_nothing_after_the_cutoff_reaches_any_dataset(planted, tmp_path, flag, embedded_tokenizer):
    repo, c = planted
    db = tmp_path / "ix.sqlite"
    out = tmp_path / "data"
    if flag == "--until":
        value = c["cut"]
    else:  # one second after the cut commit: the late commits are an hour later
        history = index(repo, db)
        from datetime import datetime, timezone

        value = datetime.fromtimestamp(history.commit(c["cut"]).committer_time + 1, timezone.utc).isoformat()
        history.close()
    assert main(["train", "data", "--repo", str(repo.path), "--db", str(db), flag, value,
                 "--output", str(out)]) == 0
    history = History.open(db)
    late = {s for s in history.rev_list(c["head"], no_merges=False)} - {
        s for s in history.rev_list(c["cut"], no_merges=False)}
    assert len(late) > 5
    text = all_text(out)
    assert LATE_WORD not in text and LATE_FILE_TEXT not in text
    assert not any(sha in text for sha in late)
    packed = "".join(embedded_tokenizer.decode(b["input_ids"]) for b in rows(out / td.CPT))
    assert LATE_WORD not in packed and LATE_FILE_TEXT not in packed
    # and without a cut-off the late pairs are there
    assert main(["train", "data", "--repo", str(repo.path), "--db", str(db), "--output", str(tmp_path / "all")]) == 0
    assert len(rows(tmp_path / "all" / td.SFT)) == len(PAIRS)
    assert LATE_FILE_TEXT in all_text(tmp_path / "all")


def test_edited_rows_after_the_cutoff_are_dropped_on_read(planted, tmp_path):
    repo, c = planted
    history = index(repo, tmp_path / "ix.sqlite")
    cut = td.resolve_cutoff(Repo(repo.path), history, until=c["cut"], before=None)
    allowed = td.allowed_commits(history, cut)
    path = tmp_path / "sft.jsonl"
    td.write_jsonl(path, [{"messages": [], "meta": {"fix": c["fix_parser"], "culprit": c["culprit_parser"]}},
                          {"messages": [], "meta": {"fix": c["fix_auth"], "culprit": c["culprit_auth"]}},
                          {"messages": [], "meta": {"source": "instructions"}}])
    kept, dropped = td.load_rows(path, allowed, cut)
    assert dropped == 1 and [r["meta"].get("fix") for r in kept] == [c["fix_parser"], None]


def test_feedback_verdicts_become_examples_before_the_cutoff(planted, tmp_path, embedded_tokenizer):
    from rcahook.rca import feedback as fb

    repo, c = planted
    history = index(repo, tmp_path / "ix.sqlite")
    r = Repo(repo.path)
    conn = fb.open_state(fb.state_path(r.git_dir))
    space = history.rev_list(c["cut"], max_count=30)
    for at, root, title, negative in ((c["cut"], c["culprit_cache"], "widgets vanish from the cache", space[0]),
                                      (c["head"], c["culprit_auth"], "logins fail after an hour", None)):
        candidates = [{"sha": s, "rank": i + 1, "score": 0.0, "probability": 0.0}
                      for i, s in enumerate(history.rev_list(at, max_count=30))]
        inv = fb.save_investigation(conn, repo=str(r.git_dir), at=at, ranker="features",
                                    incident={"title": title, "time": "2024-01-03T00:00:00Z",
                                              "impacted_paths": ["src/cache.c"]},
                                    results={"candidates": candidates})
        fb.record_verdicts(conn, fb.get_investigation(conn, inv), root_cause=root,
                           not_causes=[negative] if negative else [], note=None, resolve=history.resolve)
    conn.close()
    cut = td.resolve_cutoff(r, history, until=c["cut"], before=None)
    out = tmp_path / "data"
    data = td.build_datasets(r, history, cut, out, tokenizer=embedded_tokenizer, config=DataConfig(), seed=0)
    feedback = [x for x in rows(out / td.SFT) if x["meta"]["source"] == "feedback"]
    assert len(feedback) == 1 and data.manifest["counts"]["sft"]["feedback_after_cutoff"] == 1
    meta = feedback[0]["meta"]
    assert meta["culprit"] == c["culprit_cache"] and meta["base"] == c["cut"]
    assert space[0] in meta["keys"]  # the responder's "not the cause" is a distractor
    assert "widgets vanish from the cache" in feedback[0]["messages"][1]["content"]


def test_instructions_are_mixed_in_and_validated(planted, tmp_path, embedded_tokenizer):
    repo, c = planted
    good = tmp_path / "inst.jsonl"
    good.write_text(json.dumps({"messages": [{"role": "user", "content": "What does widgetd do?"},
                                             {"role": "assistant", "content": "It serves widgets."}]}) + "\n")
    out = tmp_path / "data"
    args = ["train", "data", "--repo", str(repo.path), "--db", str(tmp_path / "ix.sqlite"), "--output", str(out)]
    assert main(args + ["--instructions", str(good)]) == 0
    assert [x["meta"]["source"] for x in rows(out / td.SFT)].count("instructions") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    assert main(args + ["--instructions", str(bad)]) == 15


def test_datasets_are_deterministic_and_reused(planted, tmp_path, embedded_tokenizer):
    repo, c = planted
    history = index(repo, tmp_path / "ix.sqlite")
    r = Repo(repo.path)
    cut = td.resolve_cutoff(r, history, until=None, before=None)
    a = td.build_datasets(r, history, cut, tmp_path / "a", tokenizer=embedded_tokenizer, config=DataConfig(), seed=5)
    b = td.build_datasets(r, history, cut, tmp_path / "b", tokenizer=embedded_tokenizer, config=DataConfig(), seed=5)
    assert a.files == b.files
    notes = []
    td.build_datasets(r, history, cut, tmp_path / "a", tokenizer=embedded_tokenizer, config=DataConfig(), seed=5,
                      say=notes.append)
    assert notes and "reusing" in notes[0]
    other = td.build_datasets(r, history, cut, tmp_path / "c", tokenizer=embedded_tokenizer, config=DataConfig(),
                              seed=6)
    assert other.files[td.SFT]["sha256"] != a.files[td.SFT]["sha256"]


def test_ranked_row_puts_the_root_cause_first():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": f"{ANSWER_PREFIX} K, C"}],
           "meta": {"labels": ["C", "K", "P", "D"], "keys": ["c", "k", "p", "d"], "culprit_label": "K",
                    "answer": ["K", "C", "P"], "answer_prefix": ANSWER_PREFIX}}
    out = td.ranked_row(row, {"C": -0.1, "K": -3.0, "P": -1.0, "D": -2.0}, model="m")
    assert out["meta"]["model_order"] == ["C", "P", "D", "K"]
    assert out["meta"]["answer"] == ["K", "C", "P"] and out["meta"]["culprit_model_rank"] == 4
    assert out["messages"][2]["content"] == f"{ANSWER_PREFIX} K, C, P"
    assert row["messages"][2]["content"] == f"{ANSWER_PREFIX} K, C"  # the input is not modified


def test_corpus_leaves_out_the_files_a_partial_clone_lacks(make_repo, tmp_path):
    # a tree entry whose blob is not in the clone has no size: the corpus used to fail on it (TypeError)
    from rcahook.train.card import Cutoff
    from test_partial_clone import big, partial_clone

    src = make_repo("src")
    sha = src.commit("engine: add the engine", {"engine.py": big("v1"), "util.py": "def u():\n    return 1\n"})
    clone = Repo(str(partial_clone(src.path, tmp_path / "bare", "--bare")))
    cut = Cutoff("head", None, sha, clone.commit_time(sha))
    # without commit messages the index is not read
    docs, stats = td.corpus_documents(clone, None, cut, {sha}, config=DataConfig(commit_messages=False))
    assert [d.source for d in docs] == ["util.py"]
    assert stats["missing"] == 1 and stats["files"] == 1


def test_sft_rows_are_the_same_for_any_jobs(planted, tmp_path, embedded_tokenizer):
    # issue 11: worker processes write the examples; the file must not depend on how many
    from rcahook.pool import start_method

    repo, _ = planted
    history = index(repo, tmp_path / "ix.sqlite")
    r = Repo(repo.path)
    cut = td.resolve_cutoff(r, history, until=None, before=None)
    td._stop_tqdm_monitor()  # as build_datasets does before its pool
    assert start_method(3, inherit=True) == "fork"  # so jobs=3 below really runs in workers
    one = td.build_datasets(r, history, cut, tmp_path / "one", tokenizer=embedded_tokenizer, config=DataConfig(),
                            seed=5, jobs=1)
    td.build_datasets(r, history, cut, tmp_path / "three", tokenizer=embedded_tokenizer, config=DataConfig(),
                      seed=5, jobs=3)
    assert one.manifest["counts"]["sft"]["mined"] >= 2
    assert (tmp_path / "one" / td.SFT).read_bytes() == (tmp_path / "three" / td.SFT).read_bytes()


def test_ranked_targets_follow_the_model_not_its_taste_for_a_letter():
    # A small model's label log-probabilities are mostly a letter bias ("C" first, whatever it
    # names); the ranked stage's places after the root cause must come from what is left.
    import random as _random

    rng = _random.Random(0)
    letters = [chr(ord("A") + i) for i in range(12)]
    taste = {x: -0.4 * i for i, x in enumerate(letters)}  # A is always liked best
    taste["C"] = 2.0
    rows, scored = [], []
    for n in range(60):
        labels = rng.sample(letters, 6)
        keys = [f"k{n}-{j}" for j in range(6)]  # keys[1] is the candidate the model really prefers
        row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                            {"role": "assistant", "content": f"{ANSWER_PREFIX} {labels[0]}"}],
               "meta": {"labels": labels, "keys": keys, "culprit_label": labels[0],
                        "answer": labels[:3], "answer_prefix": ANSWER_PREFIX}}
        rows.append(row)
        scored.append({x: taste[x] + (1.0 if j == 1 else 0.0) + rng.gauss(0, 0.05) for j, x in enumerate(labels)})
    bias = td.label_bias(scored)
    assert max(bias, key=bias.get) == "C"
    debiased = [td.ranked_row(r, lp, model="m", bias=bias) for r, lp in zip(rows, scored)]
    raw = [td.ranked_row(r, lp, model="m") for r, lp in zip(rows, scored)]

    def second(out):
        return [o["meta"]["answer"][1] == r["meta"]["labels"][1] for o, r in zip(out, rows)]

    assert sum(second(debiased)) >= 55  # the candidate the model prefers, whatever its letter
    assert sum(second(raw)) <= 40  # without the correction the letters decide
    assert all(o["meta"]["answer"][0] == r["meta"]["culprit_label"] for o, r in zip(debiased, rows))
    assert debiased[0]["meta"]["label_debiased"] and not raw[0]["meta"]["label_debiased"]


def test_label_bias_shrinks_rare_labels_and_skips_missing_scores():
    bias = td.label_bias([{"A": -1.0, "B": -3.0}, {"A": -1.0, "B": float("-inf")}], prior=1.0)
    overall = (-1.0 - 3.0 - 1.0) / 3
    assert bias["A"] == pytest.approx((-2.0 + overall) / 3)
    assert bias["B"] == pytest.approx((-3.0 + overall) / 2)
    assert td.label_bias([]) == {}

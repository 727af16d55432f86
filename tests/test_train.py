"""`rcahook train`: data -> CPT -> SFT -> ranked SFT -> save -> load -> rank, on a tiny
random Llama with the embedded tokenizer; resuming, determinism, --full, --features-only;
and (slow) a few real LoRA steps on the embedded SmolLM2-135M."""
from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
import transformers
from safetensors.torch import load_file  # noqa: E402

from rcahook.cli import main
from rcahook.errors import ConfigError
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.train import data as td
from test_train_data import CUT_AFTER, PAIRS, planted_history, shared_cache
from tinyllama import save_tiny_llama  # noqa: E402


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RCAHOOK_CACHE", str(shared_cache(tmp_path_factory.getbasetemp())))
    monkeypatch.setenv("RCAHOOK_QUIET", "1")


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory) -> Path:
    from rcahook.llm.embedded import embedded_model_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCAHOOK_CACHE", str(shared_cache(tmp_path_factory.getbasetemp())))
        return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_llama(embedded_dir, tmp_path_factory) -> Path:
    """A randomly initialised two-layer Llama with the embedded model's tokenizer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(embedded_dir)
    return save_tiny_llama(tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def widget(tmp_path_factory):
    """The planted repository of test_train_data, shared by this module's tests (read only)."""
    import os

    from conftest import GitRepo

    path = tmp_path_factory.mktemp("widget-repo")
    env = {"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "C",
           "GIT_COMMITTER_EMAIL": "c@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.setenv("HOME", str(path))
        repo = GitRepo(path)
        shas = planted_history(repo)
    assert os.path.isdir(path / ".git")
    return repo, shas


def train_args(repo, tmp: Path, base: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--repo", str(repo.path), "--db", str(tmp / "index" / "ix.sqlite"), "--base", str(base),
            "--output", str(out), *extra]


def test_the_whole_pipeline_on_a_tiny_llama(widget, tmp_path, tiny_llama, capsys):
    repo, c = widget
    out = tmp_path / "model"
    assert main(train_args(repo, tmp_path, tiny_llama, out, "--until", c["cut"], "--max-steps", "2",
                           "--seed", "1", "--eval")) == 0
    # the artifacts: adapter, tokenizer, card, Markdown card, scorers
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "rcahook_model.json", "MODEL_CARD.md", "weights.json", "risk.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "rcahook_model.json").read_text())
    assert card["base"] == str(tiny_llama.resolve()) and card["adapter"] is True
    assert card["stages"] == ["cpt", "sft", "rank"] and card["seed"] == 1
    assert card["cutoff"]["sha"] == c["cut"] and card["cutoff"]["rule"] == "until"
    for name, info in card["datasets"].items():  # the hashes are those of the files used
        assert info["sha256"] == td.sha256_file(out / "data" / name)
    assert {"cpt.jsonl", "sft.jsonl", "ranked.jsonl"} <= set(card["datasets"])
    for stage in card["stages"]:
        result = card["stage_results"][stage]
        assert result["steps"] == 2 and result["examples"] > 0 and result["loss_first"] is not None
    assert set(card["versions"]) >= {"rcahook", "torch", "transformers", "peft"}
    # the ranked dataset: the SFT model's own order, the root cause first
    ranked = [json.loads(line) for line in (out / "data" / "ranked.jsonl").read_text().splitlines()]
    assert len(ranked) == CUT_AFTER
    for row in ranked:
        assert row["meta"]["answer"][0] == row["meta"]["culprit_label"]
        assert sorted(row["meta"]["model_order"]) == sorted(row["meta"]["labels"])
    # the features weights: in the output and in the index directory, with the cut-off
    weights = json.loads((tmp_path / "index" / "weights.json").read_text())
    assert weights["info"]["cutoff_sha"] == c["cut"] and weights["info"]["n_investigations"] == CUT_AFTER
    assert weights == json.loads((out / "weights.json").read_text())
    # the evaluation: the investigations fixed after the cut-off, base vs trained
    ev = card["evaluation"]
    assert ev["n"] == len(PAIRS) - CUT_AFTER
    models = {(r["ranker"], r["model"]) for r in ev["rows"]}
    assert {("logprob", "base"), ("logprob", "trained"), ("election", "trained"),
            ("features", "learned weights"), ("features", "default weights")} <= models
    assert "| logprob | trained |" in (out / "MODEL_CARD.md").read_text()

    # it loads into investigate's backend and ranks
    from rcahook.llm.backend import load_backend
    from rcahook.rca.features import Query
    from rcahook.rca.ranking import RankerSpec, rank

    backend = load_backend(str(out))
    assert isinstance(backend.model, peft.PeftModel) and backend.name.endswith("+model")
    history = History.open(tmp_path / "index" / "ix.sqlite")
    space = history.rev_list(c["head"], max_count=30)
    ranking = rank(history, Query(title="auth tokens expire early"), space, c["head"],
                   spec=RankerSpec("logprob", backend=backend, llm_top=10), diff_text=Repo(repo.path).diff_text)
    assert sorted(x.sha for x in ranking.candidates) == sorted(space)


def test_rerun_resumes_and_same_seed_gives_same_weights(widget, tmp_path, tiny_llama, capsys):
    repo, c = widget
    args = ("--until", c["cut"], "--max-steps", "2", "--stages", "sft,rank")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(train_args(repo, tmp_path, tiny_llama, a, *args)) == 0
    assert main(train_args(repo, tmp_path, tiny_llama, b, *args)) == 0
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(k.endswith("lora_B.weight") and wa[k].abs().sum() > 0 for k in wa)  # it trained
    capsys.readouterr()

    # a finished run: rerunning keeps every stage
    assert main(train_args(repo, tmp_path, tiny_llama, a, *args)) == 0
    assert capsys.readouterr().err.count("already trained") == 2
    # an interrupted stage continues from its last checkpoint
    rank_dir = a / "stages" / "rank"
    assert list(rank_dir.glob("checkpoint-*"))
    (rank_dir / "stage.json").unlink()
    assert main(train_args(repo, tmp_path, tiny_llama, a, *args)) == 0
    assert "resuming from" in capsys.readouterr().err
    # another seed: other weights
    assert main(train_args(repo, tmp_path, tiny_llama, tmp_path / "s2", *args, "--seed", "2")) == 0
    w2 = load_file(tmp_path / "s2" / "adapter_model.safetensors")
    assert not all(torch.equal(wa[k], w2[k]) for k in wa)


def test_full_fine_tuning_saves_full_weights(widget, tmp_path, tiny_llama):
    repo, c = widget
    out = tmp_path / "full"
    assert main(train_args(repo, tmp_path, tiny_llama, out, "--full", "--stages", "sft,rank",
                           "--max-steps", "1")) == 0
    card = json.loads((out / "rcahook_model.json").read_text())
    assert card["adapter"] is False and (out / "config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    from rcahook.llm.backend import load_backend

    backend = load_backend(str(out))
    assert not isinstance(backend.model, peft.PeftModel)
    before = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    after = backend.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_features_only_fits_the_scorers_and_nothing_else(widget, tmp_path):
    repo, c = widget
    out = tmp_path / "feat"
    assert main(["train", "--repo", str(repo.path), "--db", str(tmp_path / "ix" / "ix.sqlite"),
                 "--until", c["cut"], "--features-only", "--output", str(out)]) == 0
    weights = json.loads((tmp_path / "ix" / "weights.json").read_text())
    info = weights["info"]
    history = History.open(tmp_path / "ix" / "ix.sqlite")
    assert info["cutoff_time"] == history.commit(c["cut"]).committer_time
    assert info["n_investigations"] == CUT_AFTER and info["n_examples"] == 2 * CUT_AFTER
    assert (tmp_path / "ix" / "risk.json").is_file()
    assert (out / "weights.json").is_file() and not (out / "rcahook_model.json").exists()
    # the backtest measures learned weights only after their cut-off
    from rcahook.backtest.run import describe_weights
    from rcahook.rca.model import Weights

    assert describe_weights(Weights.load(tmp_path / "ix" / "weights.json"),
                            tmp_path / "ix" / "weights.json").cutoff_time == info["cutoff_time"]


def test_evaluation_resumes_after_a_kill_and_refuses_other_settings(widget, tmp_path, capsys):
    """`rcahook train --eval` appends to <output>/eval.jsonl: a rerun keeps what is there (the
    line a kill cut short is redone), a rerun with other settings is refused, never overwritten."""
    repo, c = widget
    out = tmp_path / "feat"
    args = ["train", "--repo", str(repo.path), "--db", str(tmp_path / "ix" / "ix.sqlite"), "--until", c["cut"],
            "--features-only", "--eval", "--output", str(out)]
    assert main(args) == 0
    path = out / "eval.jsonl"
    lines = path.read_text().splitlines()
    first = [json.loads(line) for line in lines[1:]]
    assert json.loads(lines[0])["type"] == "header" and first and all(r["type"] == "result" for r in first)
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])  # killed while writing the last one
    assert main(args) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["fix"], r["ranker"], r["model"]) for r in rows if r["type"] == "result"]
    assert len(keys) == len(set(keys)) == len(first)  # only the cut record was made again
    assert [r["type"] for r in rows].count("header") == 2
    before = path.read_bytes()
    capsys.readouterr()
    assert main([*args, "--eval-sample", "1"]) == ConfigError.exit_code
    refusal = [line for line in capsys.readouterr().err.splitlines() if "eval.jsonl" in line]
    assert len(refusal) == 1 and "sample=None" in refusal[0] and "sample=1" in refusal[0]
    assert "--output" in refusal[0]
    assert path.read_bytes() == before


def test_bad_stages_and_steps_are_usage_errors(widget, tmp_path, tiny_llama):
    repo, _ = widget
    assert main(train_args(repo, tmp_path, tiny_llama, tmp_path / "x", "--stages", "sft,dpo")) == 15
    assert main(train_args(repo, tmp_path, tiny_llama, tmp_path / "x", "--max-steps", "0")) == 15
    assert main(train_args(repo, tmp_path, tiny_llama, tmp_path / "x", "--eval", "--eval-sample", "0")) == 15
    assert main(train_args(repo, tmp_path, tmp_path, tmp_path / "x")) == 17  # not a model directory


@pytest.mark.slow
def test_real_lora_steps_on_the_embedded_model_lower_the_loss(widget, tmp_path, embedded_dir, capsys):
    """Four LoRA SFT steps on SmolLM2-135M over the mined examples; the adapter ranks in investigate."""
    repo, c = widget
    out = tmp_path / "smol"
    assert main(["train", "--repo", str(repo.path), "--db", str(tmp_path / "ix" / "ix.sqlite"), "--until", c["cut"],
                 "--stages", "sft", "--max-steps", "4", "--output", str(out)]) == 0
    losses = [float(line.rsplit(" ", 1)[1]) for line in capsys.readouterr().err.splitlines() if ": step " in line]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    card = json.loads((out / "rcahook_model.json").read_text())
    assert card["base"] == "embedded" and card["stage_results"]["sft"]["steps"] == 4
    code = main(["investigate", "--repo", str(repo.path), "--db", str(tmp_path / "ix" / "ix.sqlite"),
                 "--model", str(out), "--ranker", "logprob", "--title", "auth tokens expire early",
                 "--window", "20", "--llm-top", "8", "--format", "json", "--no-save"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ranker"]["name"] == "logprob" and doc["ranker"]["model"].endswith("+smol")
    assert len(doc["suggestions"]) == 5


@pytest.mark.slow
def test_two_processes_under_torchrun_train_once_and_write_once(widget, tmp_path, tiny_llama):
    """WORLD_SIZE=2 on CPU (gloo): one process fits, writes and ranks; the Trainer runs DDP."""
    import os
    import subprocess
    import sys

    repo, c = widget
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rcahook",
           *train_args(repo, tmp_path, tiny_llama, out, "--until", c["cut"], "--max-steps", "2")]
    env = {**os.environ, "RCAHOOK_QUIET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr
    assert err.count("wrote ") == 4  # weights.json and risk.json, in the index dir and the output, once
    assert err.count("ranking the 3 SFT examples") == 1 and err.count("sft: step 2/2") == 1
    card = json.loads((out / "rcahook_model.json").read_text())
    assert card["stages"] == ["cpt", "sft", "rank"] and (out / "adapter_model.safetensors").is_file()
    from rcahook.llm.backend import load_backend

    assert load_backend(str(out)).name.endswith("+ddp")

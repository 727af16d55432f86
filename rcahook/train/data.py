"""The training datasets, as JSONL a person can read, edit and extend (docs/train.md).

- `cpt_docs.jsonl`: the corpus as of the cut-off: docs, code and commit messages, one
  deduplicated document a line; `cpt.jsonl`: the same packed into blocks of token ids of
  the base tokenizer (repacked whenever the documents or the tokenizer change).
- `sft.jsonl`: one ranking conversation per investigation, in exactly the prompt the
  election ranker sends (`rcahook.llm.prompt.build_prompt`), the root cause named first.
- `ranked.jsonl`: the SFT examples again, the answer replaced by the SFT model's own
  log-probability order, less each label's bias, with the root cause moved first (made by
  `lm.rank_examples`).

The leakage rule: every commit a row refers to (fix, culprit, revision, commit message)
must belong to the training history, the commits reachable from the cut-off revision and
committed no later than the cut-off time; rows are checked when written and when read.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from rcahook.backtest.mine import Investigation, mine_investigations
from rcahook.backtest.run import query_for
from rcahook.errors import BadInputError, RcahookError
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import CommitView, History
from rcahook.pool import WorkerPool
from rcahook.rca.features import Query
from rcahook.train.card import Cutoff, DataConfig

CPT_DOCS = "cpt_docs.jsonl"
CPT = "cpt.jsonl"
SFT = "sft.jsonl"
RANKED = "ranked.jsonl"
MANIFEST = "datasets.json"
DATA_FORMAT = "rcahook.train.data/1"

DOC_SUFFIXES = {".md", ".markdown", ".rst", ".txt", ".adoc"}
DOC_NAMES = {"readme", "contributing", "hacking", "news", "changelog", "changes", "install", "todo"}
MAX_SOURCES = 16  # per packed block, for inspection only


# --- the cut-off ---------------------------------------------------------------------------

def resolve_cutoff(repo: Repo, history: History, *, until: str | None, before: str | None) -> Cutoff:
    """The cut-off of `--until REV` or `--before DATE` (neither: HEAD, all history)."""
    if until and before:
        raise BadInputError(f"--until {until} and --before {before} both given; pass one: --until for a "
                            "revision, --before for a date")
    if until:
        sha = repo.resolve(until)
        return Cutoff("until", until, sha, history.commit(sha).committer_time)
    head = repo.resolve("HEAD")
    if not before:
        return Cutoff("head", None, head, history.commit(head).committer_time)
    from rcahook.rca.incident import parse_time

    bound = int(parse_time(before).timestamp()) - 1  # --before is exclusive; Cutoff.time inclusive
    for view in history.commits(history.rev_list(head, no_merges=False)):
        if view.committer_time <= bound:
            return Cutoff("before", before, view.sha, bound)
    raise BadInputError(f"--before {before}: no commit reachable from HEAD was committed before it; "
                        "give a later date")


def allowed_commits(history: History, cut: Cutoff) -> set[str]:
    """The training history: reachable from the cut-off revision and committed by its time."""
    shas = history.rev_list(cut.sha, no_merges=False)
    return {c.sha for c in history.commits(shas) if c.committer_time <= cut.time}


def training_investigations(history: History, cut: Cutoff, allowed: set[str], *,
                            window: int) -> list[Investigation]:
    """Protocol-v1 investigations whose fix belongs to the training history, newest first."""
    return [inv for inv in mine_investigations(history, cut.sha, window=window) if inv.fix in allowed]


def row_allowed(meta: dict, allowed: set[str], cut: Cutoff) -> bool:
    """The leakage rule for one dataset row (its `meta`)."""
    for key in ("fix", "culprit", "base"):
        sha = meta.get(key)
        if sha and sha not in allowed:
            return False
    if cut.rule == "before" and meta.get("time") is not None and int(meta["time"]) > cut.time:
        return False
    return True


# --- the CPT corpus ------------------------------------------------------------------------

class Document(NamedTuple):
    kind: str  # doc | code | commit
    source: str  # path at the cut-off, or commit:<sha>
    text: str


def _kind_of(path: str) -> str | None:
    from rcahook.codegraph.grammars import language_for  # plain data, no tree_sitter

    name = path.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    if dot and f".{suffix.lower()}" in DOC_SUFFIXES:
        return "doc"
    if (stem if dot else name).lower() in DOC_NAMES:
        return "doc"
    return "code" if language_for(path) else None


def _text(data: bytes) -> str | None:
    """UTF-8 text, or None for binaries (a NUL byte) and other encodings."""
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def corpus_documents(repo: Repo, history: History, cut: Cutoff, allowed: set[str], *,
                     config: DataConfig) -> tuple[list[Document], dict[str, int]]:
    """Docs and code in the tree at the cut-off, then commit messages, exact duplicates dropped."""
    stats = {"files": 0, "binary": 0, "huge": 0, "duplicates": 0, "commits": 0}
    seen: set[str] = set()
    docs: list[Document] = []

    def add(doc: Document, body: str) -> None:
        digest = hashlib.sha256(body.encode()).hexdigest()
        if digest in seen:
            stats["duplicates"] += 1
            return
        seen.add(digest)
        docs.append(doc)

    for entry in sorted(repo.list_tree(cut.sha), key=lambda e: e.path):
        kind = _kind_of(entry.path)
        if kind is None:
            continue
        if entry.size is None:  # not in this (partial) clone: nothing to read; the count appears only then
            stats["missing"] = stats.get("missing", 0) + 1
            continue
        if entry.size > config.max_file_bytes:
            stats["huge"] += 1
            continue
        body = _text(repo.read_blob(entry.blob))
        if body is None:
            stats["binary"] += 1
            continue
        if not body.strip():
            continue
        stats["files"] += 1
        add(Document(kind, entry.path, f"File: {entry.path}\n\n{body}"), body)
    if config.commit_messages:
        shas = [s for s in history.rev_list(cut.sha) if s in allowed]
        for c in reversed(history.commits(shas)):  # oldest first
            message = f"{c.subject}\n\n{c.body}".strip()
            files = ", ".join(c.paths[:20]) + (f" (+{len(c.paths) - 20} more)" if len(c.paths) > 20 else "")
            stats["commits"] += 1
            add(Document("commit", f"commit:{c.sha}", f"Commit message:\n{message}\n\nFiles: {files}"),
                f"{message}\n{files}")
    return docs, stats


def pack(documents: Sequence[Document], tokenizer, *, block_size: int, seed: int) -> list[dict]:
    """Documents in a seeded order, EOS after each, cut into blocks of `block_size` tokens."""
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    eos = tokenizer.eos_token_id
    assert eos is not None, "the base tokenizer has no EOS token to separate documents"
    limit = tokenizer.model_max_length
    tokenizer.model_max_length = 1 << 30  # documents are longer than the model reads: that is what packing is for
    try:
        return _pack(documents, order, tokenizer, eos=eos, block_size=block_size)
    finally:
        tokenizer.model_max_length = limit


def _pack(documents: Sequence[Document], order: list[int], tokenizer, *, eos: int, block_size: int) -> list[dict]:
    blocks: list[dict] = []
    ids: list[int] = []
    sources: list[str] = []
    for start in range(0, len(order), 256):
        chunk = [documents[i] for i in order[start:start + 256]]
        encoded = tokenizer([d.text for d in chunk], add_special_tokens=False,
                            split_special_tokens=True)["input_ids"]
        for doc, tokens in zip(chunk, encoded, strict=True):
            ids.extend(tokens)
            ids.append(eos)
            sources.append(doc.source)
            while len(ids) >= block_size:
                blocks.append({"input_ids": ids[:block_size], "sources": sources[:MAX_SOURCES]})
                ids = ids[block_size:]
                sources = [doc.source] if ids else []
    if len(ids) >= min(64, block_size):  # a last short block is kept unless it is a scrap
        blocks.append({"input_ids": ids, "sources": sources[:MAX_SOURCES]})
    return blocks


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the SFT examples ----------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One investigation to learn from: an incident, its search space and its root cause."""

    source: str  # mined | feedback
    id: str
    query: Query
    base: str  # the revision the candidates are replayed at (F^, or the investigated `at`)
    space: tuple[str, ...]
    culprit: str
    fix: str | None = None
    negatives: tuple[str, ...] = ()  # commits a responder said were not the cause
    paths_shown: bool = False


def mined_cases(investigations: Iterable[Investigation], *, paths_share: float, seed: int) -> list[Case]:
    out = []
    for inv in investigations:
        # Half of them show the fix's paths (a stand-in for a stack trace), so the model
        # learns to use impacted paths when an incident has them and to do without.
        shown = random.Random(f"{seed}:paths:{inv.fix}").random() < paths_share
        out.append(Case("mined", inv.fix[:12], query_for(inv, "paths" if shown else "title"), inv.parent,
                        inv.candidates, inv.culprit, fix=inv.fix, paths_shown=shown))
    return out


def feedback_cases(repo: Repo, history: History, *, window: int) -> tuple[list[Case], int]:
    """Responders' standing root-cause verdicts from the state database, and how many were unusable."""
    from rcahook.rca import feedback as fb
    from rcahook.rca.incident import parse_time

    path = fb.state_path(repo.common_dir)
    if not path.is_file():
        return [], 0
    conn = fb.open_state(path, create=False)
    try:
        saved = {s.id: s for s in fb.list_investigations(conn)}
        rows = [fb.export_record(saved[v.investigation_id], v) for v in fb.verdicts(conn)]
    finally:
        conn.close()
    known = {c.sha for c in history.commits({r["sha"] for r in rows} | {r["at"] for r in rows})}
    negatives: dict[str, list[str]] = {}
    for r in rows:
        if r["verdict"] == "not" and not r["superseded"]:
            negatives.setdefault(r["investigation_id"], []).append(r["sha"])
    cases, unusable = [], 0
    for r in rows:
        if r["verdict"] != "root_cause" or r["superseded"]:
            continue
        if r["sha"] not in known or r["at"] not in known:
            unusable += 1
            continue
        inc = r["incident"] or {}
        when = parse_time(inc["time"]) if inc.get("time") else None
        query = Query(title=inc.get("title") or "", description=inc.get("description") or "",
                      time=int(when.timestamp()) if when else None,
                      impacted_paths=tuple(inc.get("impacted_paths") or ()))
        space = tuple(c["sha"] for c in r["candidates"] if c.get("sha"))
        space = tuple(s.sha for s in history.commits(space)) or tuple(history.rev_list(r["at"], max_count=window))
        cases.append(Case("feedback", r["investigation_id"], query, r["at"], space, r["sha"],
                          negatives=tuple(s for s in negatives.get(r["investigation_id"], ()) if s in known),
                          paths_shown=bool(query.impacted_paths)))
    return cases, unusable


class _Pick(NamedTuple):
    """What ranking.candidate_views needs of a candidate."""

    sha: str
    commit: CommitView


class SftBuilder:
    """Turns Cases into prompt/answer rows with the real stage-1 retriever and prompt."""

    def __init__(self, repo: Repo, history: History, *, config: DataConfig, seed: int,
                 count_tokens: Callable[[str], int]):
        from rcahook.rca.model import default_weights

        self.repo, self.history, self.config, self.seed = repo, history, config, seed
        self.count_tokens = count_tokens
        # The retriever runs with the default weights: weights fitted on these very
        # investigations would rank their culprits higher than at inference (in-sample).
        self.weights = default_weights()
        self.culprits = history.culprit_of()

    def row(self, case: Case) -> dict:
        from rcahook.llm.prompt import IncidentView, assign_labels, build_prompt
        from rcahook.rca.ranking import RankerSpec, candidate_views
        from rcahook.rca.retrieve import retrieve

        cfg = self.config
        rng = random.Random(f"{self.seed}:sft:{case.source}:{case.id}")
        retrieval = retrieve(self.history, case.query, case.space, case.base, weights=self.weights,
                             culprits=self.culprits)
        ranked = [c.sha for c in retrieval.candidates]
        top = ranked[: cfg.llm_top]
        forced = [s for s in case.negatives if s != case.culprit]
        pool = [s for s in top if s != case.culprit and s not in forced]
        n = rng.randint(cfg.min_candidates, cfg.max_candidates)
        n = max(1, min(n, 1 + len(forced) + len(pool)))
        others = (forced + rng.sample(pool, len(pool)))[: n - 1]
        keys = [case.culprit, *others]
        rng.shuffle(keys)
        views = {c.sha: c for c in self.history.commits(keys)}
        spec = RankerSpec()
        cviews = candidate_views(self.history, [_Pick(k, views[k]) for k in keys], self.repo.diff_text, spec)
        q = case.query
        incident = IncidentView(title=q.title, description=q.description[:600],
                                impacted=tuple(q.impacted_paths[:6]) + tuple(q.functions[:6]))
        picks = min(cfg.picks, len(keys))
        prompt = build_prompt(incident, cviews, labels=assign_labels(len(keys), rng), picks=picks,
                              token_budget=cfg.token_budget, count_tokens=self.count_tokens)
        position = {s: i for i, s in enumerate(ranked)}
        rest = sorted((k for k in keys if k != case.culprit), key=lambda k: position.get(k, len(ranked)))
        label_of = dict(zip(prompt.keys, prompt.labels, strict=True))
        answer = [label_of[k] for k in [case.culprit, *rest][:picks]]
        meta = {
            "source": case.source, "id": case.id, "fix": case.fix, "culprit": case.culprit,
            "base": case.base, "time": q.time, "labels": list(prompt.labels), "keys": list(prompt.keys),
            "culprit_label": label_of[case.culprit], "answer": answer, "answer_prefix": prompt.answer_prefix,
            "retriever_rank": position[case.culprit] + 1 if case.culprit in position else None,
            "paths_shown": case.paths_shown, "n_candidates": len(keys),
        }
        return {"messages": messages(prompt, answer), "meta": meta}


def messages(prompt, answer: Sequence[str]) -> list[dict[str, str]]:
    """The conversation: the answer continues the prefilled `answer_prefix` after a space."""
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user},
            {"role": "assistant", "content": f"{prompt.answer_prefix} {', '.join(answer)}"}]


def label_bias(logprobs: Sequence[Mapping[str, float]], *, prior: float = 3.0) -> dict[str, float]:
    """Each label's mean log-probability over many prompts, whatever candidate it named.

    Labels are drawn at random per prompt, so a label's mean says what the model thinks
    of the letter, not of a change: a small model's strongest opinion ("C" first). Means
    of rarely seen labels are shrunk towards the overall mean (`prior` pseudo-prompts).
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for lp in logprobs:
        for label, v in lp.items():
            if math.isfinite(v):
                sums[label] = sums.get(label, 0.0) + v
                counts[label] = counts.get(label, 0) + 1
    if not counts:
        return {}
    overall = sum(sums.values()) / sum(counts.values())
    return {label: (sums[label] + prior * overall) / (counts[label] + prior) for label in sums}


def ranked_row(row: dict, logprobs: Mapping[str, float], *, model: str,
               bias: Mapping[str, float] | None = None) -> dict:
    """The row's answer replaced by the model's logprob order, the root cause moved first.

    With `bias` (label_bias over the whole set), the order is by log-probability minus the
    label's bias: what the model thinks of this candidate beyond its taste for the letter.
    Ties keep the SFT answer's order (the retriever's), then the prompt's.
    """
    meta = dict(row["meta"])
    bias = bias or {}
    before = {label: i for i, label in enumerate(dict.fromkeys([*meta["answer"], *meta["labels"]]))}

    def key(label: str) -> tuple[float, int]:
        v = logprobs.get(label, float("-inf"))
        return (-(v - bias.get(label, 0.0)) if math.isfinite(v) else math.inf, before[label])

    order = sorted(meta["labels"], key=key)
    culprit = meta["culprit_label"]
    answer = [culprit] + [label for label in order if label != culprit]
    answer = answer[: len(meta["answer"])]
    meta.update(model_order=order, culprit_model_rank=order.index(culprit) + 1, answer=answer, ranked_by=model,
                label_debiased=bool(bias))
    msgs = [dict(m) for m in row["messages"]]
    msgs[-1]["content"] = f"{meta['answer_prefix']} {', '.join(answer)}"
    return {"messages": msgs, "meta": meta}


def read_instructions(path: Path) -> list[dict]:
    """A user's instruction set: JSONL of {"messages": [...]} ending with an assistant turn."""
    rows = []
    for n, row in enumerate(read_jsonl(path), start=1):
        msgs = row.get("messages") if isinstance(row, dict) else None
        ok = (isinstance(msgs, list) and msgs and all(isinstance(m, dict) and m.get("role") in
              ("system", "user", "assistant") and isinstance(m.get("content"), str) for m in msgs)
              and msgs[-1]["role"] == "assistant")
        if not ok:
            raise BadInputError(f"{path} line {n}: expected {{\"messages\": [{{\"role\": \"user\", \"content\": "
                                f"...}}, ..., {{\"role\": \"assistant\", ...}}]}} ending with an assistant turn")
        rows.append({"messages": msgs, "meta": {"source": "instructions", "id": f"{path.name}:{n}"}})
    return rows


# --- files ---------------------------------------------------------------------------------

def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise BadInputError(f"{path} line {n} is not JSON ({e}); fix or delete the line") from None


def write_jsonl(path: Path, rows: Iterable[dict]) -> dict:
    """Atomically; returns {"rows", "sha256"} for the manifest and the model card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return {"rows": n, "sha256": sha256_file(path)}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(directory: Path, manifest: dict) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(directory / MANIFEST)


def data_key(cut: Cutoff, config: DataConfig, *, seed: int, instructions: str | None) -> dict:
    """What decides the datasets' content: a data dir with the same key is reused as it is."""
    return {"cutoff": cut.to_json(), "config": asdict(config), "seed": seed, "instructions": instructions}


# --- building and reading a data directory -------------------------------------------------

@dataclass
class Datasets:
    directory: Path
    manifest: dict

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def files(self) -> dict[str, dict]:
        return self.manifest.setdefault("files", {})

    def save(self) -> None:
        write_manifest(self.directory, self.manifest)


def _intact(directory: Path, manifest: dict) -> bool:
    files = manifest.get("files", {})
    return all(name in files for name in (CPT_DOCS, SFT)) and all(
        (directory / name).is_file() and sha256_file(directory / name) == info.get("sha256")
        for name, info in files.items())


def case_allowed(case: Case, allowed: set[str], cut: Cutoff) -> bool:
    return row_allowed({"fix": case.fix, "culprit": case.culprit, "base": case.base, "time": case.query.time},
                       allowed, cut)


_builder: SftBuilder | None = None  # set before the pool forks its workers


def _builder_start(db_path: str) -> None:
    """In a forked worker: a connection and a repository of its own (neither may cross a fork)."""
    from rcahook.index import store

    assert _builder is not None
    _builder.history.conn = store.open_index(Path(db_path), create=False)
    _builder.history.forget()
    _builder.repo = Repo(_builder.repo.path)


def _worker_row(case: Case) -> dict:
    assert _builder is not None
    return _builder.row(case)


def _stop_tqdm_monitor() -> None:
    """Loading a tokenizer through huggingface_hub starts tqdm's monitor thread, which only
    watches progress bars; the pool forks only while this is the only thread (rcahook.pool),
    so stop it (tqdm starts it again with the next bar that needs it)."""
    import sys
    import threading

    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for thread in threading.enumerate():
        if isinstance(thread, std.TMonitor):  # owned by whichever tqdm subclass started it
            thread.exit()


@contextmanager
def _row_pool(builder: SftBuilder, *, jobs: int) -> Iterator[WorkerPool]:
    """Workers forked now, each inheriting the builder (its tokenizer cannot be pickled). A
    row depends on its case alone (its own seeded generator), so N workers write what one does."""
    global _builder
    _builder = builder
    _stop_tqdm_monitor()
    db_path = builder.history.conn.execute("PRAGMA database_list").fetchone()[2]
    try:
        with WorkerPool(jobs, what="writing an SFT example", error=RcahookError, initializer=_builder_start,
                        initargs=(db_path,), inherit=True) as pool:
            yield pool
    finally:
        _builder = None


def build_datasets(repo: Repo, history: History, cut: Cutoff, directory: Path, *, tokenizer,
                   config: DataConfig, seed: int, instructions: Path | None = None,
                   progress=None, say: Callable[[str], None] = lambda m: None, jobs: int = 1) -> Datasets:
    """Write cpt_docs/cpt/sft.jsonl for this cut-off, or reuse them when nothing changed."""
    from rcahook.progress import Progress

    progress = progress or Progress(enabled=False)
    allowed = allowed_commits(history, cut)
    key = data_key(cut, config, seed=seed, instructions=sha256_file(instructions) if instructions else None)
    previous = read_manifest(directory)
    if previous and previous.get("key") == key and _intact(directory, previous):
        say(f"reusing the datasets in {directory} (same cut-off, settings and seed)")
        data = Datasets(directory, previous)
        ensure_packed(data, tokenizer, allowed=allowed, block_size=config.block_size, seed=seed, say=say)
        return data
    directory.mkdir(parents=True, exist_ok=True)
    for name in (CPT, RANKED):  # stale leftovers of another cut-off must not survive
        (directory / name).unlink(missing_ok=True)
    data = Datasets(directory, {"format": DATA_FORMAT, "key": key, "files": {}, "counts": {}})

    docs, stats = corpus_documents(repo, history, cut, allowed, config=config)
    data.files[CPT_DOCS] = write_jsonl(directory / CPT_DOCS, (d._asdict() for d in docs))
    data.manifest["counts"]["cpt"] = {**stats, "documents": len(docs)}

    investigations = training_investigations(history, cut, allowed, window=config.window)
    cases = mined_cases(investigations, paths_share=config.paths_share, seed=seed)
    feedback, unusable = feedback_cases(repo, history, window=config.window)
    kept_feedback = [c for c in feedback if case_allowed(c, allowed, cut)]
    cases += kept_feedback
    builder = SftBuilder(repo, history, config=config, seed=seed,
                         count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False,
                                                                 split_special_tokens=True)["input_ids"]))
    rows: list[dict] = []
    with _row_pool(builder, jobs=jobs if len(cases) >= 2 else 1) as pool, \
            progress.task(f"SFT examples ({len(cases)} investigations)", total=len(cases)) as advance:
        for row in pool.map(_worker_row, cases):  # in the cases' order, whatever `jobs`
            rows.append(row)
            advance(1)
    extra = read_instructions(instructions) if instructions else []
    data.files[SFT] = write_jsonl(directory / SFT, rows + extra)
    data.manifest["counts"]["sft"] = {
        "mined": len(investigations), "feedback": len(kept_feedback),
        "feedback_after_cutoff": len(feedback) - len(kept_feedback), "feedback_unusable": unusable,
        "instructions": len(extra),
        "culprit_inserted": sum(r["meta"]["retriever_rank"] is None or r["meta"]["retriever_rank"] > config.llm_top
                                for r in rows)}
    ensure_packed(data, tokenizer, allowed=allowed, block_size=config.block_size, seed=seed, say=say)
    data.save()
    return data


def open_datasets(directory: Path, cut: Cutoff) -> Datasets:
    """A data directory given with --data-dir (perhaps edited): used as it is."""
    if not (directory / SFT).is_file() and not (directory / CPT_DOCS).is_file():
        raise BadInputError(f"--data-dir {directory} has neither {SFT} nor {CPT_DOCS}; write them with "
                            f"`rcahook train data --output {directory}`")
    manifest = read_manifest(directory) or {"format": DATA_FORMAT, "key": None, "files": {}, "counts": {}}
    made = (manifest.get("key") or {}).get("cutoff")
    if made and cut.rule != "head" and (made["sha"] != cut.sha or int(made["time"]) != cut.time):
        raise BadInputError(
            f"--data-dir {directory} was made with the cut-off {made['sha'][:12]} ({made['iso']}), this run's "
            f"is {cut.sha[:12]} ({cut.to_json()['iso']}); pass the same --until/--before, or none to adopt it")
    for name in (CPT_DOCS, SFT, RANKED):
        if (directory / name).is_file():
            manifest["files"][name] = {"rows": sum(1 for _ in read_jsonl(directory / name)),
                                       "sha256": sha256_file(directory / name)}
    return Datasets(directory, manifest)


def ensure_packed(data: Datasets, tokenizer, *, allowed: set[str], block_size: int, seed: int,
                  say: Callable[[str], None] = lambda m: None) -> None:
    """(Re)pack cpt.jsonl when the documents, the tokenizer or the block size changed."""
    docs_path = data.path(CPT_DOCS)
    if not docs_path.is_file():
        return
    packing = {"tokenizer": tokenizer_fingerprint(tokenizer), "block_size": block_size, "seed": seed,
               "documents_sha256": sha256_file(docs_path)}
    if data.manifest.get("packing") == packing and data.path(CPT).is_file() \
            and sha256_file(data.path(CPT)) == data.files.get(CPT, {}).get("sha256"):
        return
    docs, dropped = [], 0
    for row in read_jsonl(docs_path):
        source = str(row.get("source", ""))
        if source.startswith("commit:") and source[len("commit:"):] not in allowed:
            dropped += 1  # the leakage rule, again, for edited corpora
            continue
        docs.append(Document(str(row.get("kind", "doc")), source, str(row["text"])))
    if dropped:
        say(f"left {dropped} commit message(s) after the cut-off out of the CPT corpus")
    blocks = pack(docs, tokenizer, block_size=block_size, seed=seed)
    data.files[CPT] = write_jsonl(data.path(CPT), blocks)
    data.manifest["packing"] = packing
    data.manifest.setdefault("counts", {})["cpt_tokens"] = sum(len(b["input_ids"]) for b in blocks)
    data.save()


def load_rows(path: Path, allowed: set[str], cut: Cutoff) -> tuple[list[dict], int]:
    """A dataset's rows that pass the leakage rule, and how many did not."""
    rows, dropped = [], 0
    for row in read_jsonl(path):
        if row_allowed(row.get("meta") or {}, allowed, cut):
            rows.append(row)
        else:
            dropped += 1
    return rows, dropped

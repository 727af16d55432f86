"""`rcahook train data`: write the training datasets as JSONL (docs/train.md)."""
from __future__ import annotations

from pathlib import Path

from rcahook.commands.common import open_history, open_repo, say
from rcahook.errors import BadInputError
from rcahook.pool import default_jobs
from rcahook.progress import Progress


def run(*, repo: str, db: str | None, until: str | None, before: str | None, output: str | None,
        base: str | None, instructions: str | None, seed: int, jobs: int | None = None) -> int:
    from dataclasses import replace

    from rcahook.train import data as td
    from rcahook.train import lm
    from rcahook.train.card import CARD_FILE, DataConfig, default_dir

    if jobs is not None and jobs < 1:
        raise BadInputError(f"--jobs {jobs}: expected a positive number of worker processes")
    if instructions and not Path(instructions).is_file():
        raise BadInputError(f"--instructions {instructions}: no such file; give a JSONL file of "
                            '{"messages": [...]} conversations')
    r = open_repo(repo)
    history = open_history(r, db, update=True, graph=False)
    try:
        # every commit's touched definitions now, in parallel, so the example workers only read
        history.ensure_touched(jobs=jobs or default_jobs(), progress=Progress())
        cut = td.resolve_cutoff(r, history, until=until, before=before)
        out = Path(output) if output else default_dir(r.slug(), cut) / "data"
        tokenizer_dir, config_dir = lm.model_dirs(base)
        tokenizer = lm.load_tokenizer(tokenizer_dir)
        config = replace(DataConfig(), block_size=min(DataConfig().block_size, lm.max_length(config_dir)))
        data = td.build_datasets(r, history, cut, out, tokenizer=tokenizer, config=config, seed=seed,
                                 instructions=Path(instructions) if instructions else None,
                                 progress=Progress(), say=say, jobs=jobs or default_jobs())
        if base and (Path(base) / CARD_FILE).is_file():
            # an rcahook-trained model (the SFT stage): its own ranking of each example
            rows, _ = td.load_rows(data.path(td.SFT), td.allowed_commits(history, cut), cut)
            data.files[td.RANKED] = td.write_jsonl(data.path(td.RANKED),
                                                   lm.rank_examples(base, rows, progress=Progress()))
            data.manifest["ranked_by"] = {"model": str(Path(base).resolve())}
            data.save()
    finally:
        history.close()
    counts = data.manifest.get("counts", {})
    print(f"datasets in {out} (cut-off {cut.sha[:12]}, {cut.to_json()['iso']}):")
    for name, info in sorted(data.files.items()):
        print(f"  {name:15} {info['rows']:7} rows  sha256 {info['sha256'][:16]}")
    sft = counts.get("sft", {})
    print(f"  SFT: {sft.get('mined', 0)} mined investigations, {sft.get('feedback', 0)} verdicts, "
          f"{sft.get('instructions', 0)} instructions; CPT: {counts.get('cpt', {}).get('documents', 0)} documents, "
          f"{counts.get('cpt_tokens', 0)} tokens")
    return 0

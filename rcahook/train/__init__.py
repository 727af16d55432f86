"""`rcahook train`: teach a model a repository's own history (Meta's recipe).

Three stages, in order, each starting from the weights the previous one left:
- `cpt`: continued pre-training on the repository's docs, code and commit messages as of
  the data cut-off (next-token loss on packed blocks);
- `sft`: supervised fine-tuning on investigations mined from history (and responders'
  verdicts), in exactly the prompt the election ranker sends, loss on the answer only;
- `rank`: fine-tuning again on the SFT model's own log-probability ranking of each
  example's candidates, reordered so that the root cause comes first.

The features ranker's weights and the pre-push risk model are fitted on the same
history by every run (`--features-only` fits only them).

Modules: `card` (configuration, the self-describing model card), `data` (the JSONL
datasets), `scorers` (features weights and risk model), `lm` (the training loop, torch
imported lazily), `evaluate` (base vs trained on the investigations after the cut-off).
"""
from __future__ import annotations

STAGES: tuple[str, ...] = ("cpt", "sft", "rank")

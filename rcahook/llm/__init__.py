"""The model stage: prompts, backends (embedded, local directory, server) and rankers.

torch, transformers and peft are imported only inside the functions that load a model,
so importing this package (or `rank`, `prompt`) stays fast.
"""
from __future__ import annotations

from rcahook.llm.backend import Backend, load_backend
from rcahook.llm.embedded import EMBEDDED
from rcahook.llm.prompt import CandidateView, IncidentView, Prompt
from rcahook.llm.rank import election_rank, logprob_rank

__all__ = [
    "EMBEDDED", "Backend", "CandidateView", "IncidentView", "Prompt",
    "election_rank", "load_backend", "logprob_rank",
]

"""What the rankers need from a model, and how rcahook picks one.

`Backend` is the interface; `LocalBackend` (torch, in-process) and `RemoteBackend` (an
OpenAI-compatible server such as vLLM) implement it. Heavy imports happen inside the
loaders, so importing this module stays cheap.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from rcahook.errors import BadInputError
from rcahook.llm.prompt import Prompt


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, prompt: Prompt, *, max_new_tokens: int) -> str:
        """Greedy, deterministic continuation after `prompt.answer_prefix`, one line long.

        Generation ends with the first non-empty line (leading newlines are kept): an
        answer is a single line of labels, and every decode step costs on a CPU.
        """
        ...

    def label_logprobs(self, prompt: Prompt, labels: Sequence[str]) -> dict[str, float]:
        """log P(the answer starts with label | prompt) for each label."""
        ...


def load_backend(model: str | None = None, *, llm_url: str | None = None,
                 llm_model: str | None = None, device: str | None = None,
                 connect_timeout: float | None = None, timeout: float | None = None) -> Backend:
    """The embedded model (`model` None or "embedded"), a model directory, or a server (`llm_url`).

    Nothing leaves the machine unless `llm_url` is given. The timeouts (seconds; None: the
    defaults in `rcahook.llm.remote`) only concern a server.
    """
    if llm_url:
        if model:
            raise BadInputError(
                f"got both a local model ({model}) and a model server ({llm_url}); "
                "pass --model or --llm-url, not both"
            )
        from rcahook.llm.remote import RemoteBackend, user_api_key

        # llm_url is the user's choice (rcahook.config gates a repository's): the key may go to it
        return RemoteBackend(llm_url, model=llm_model, connect_timeout=connect_timeout, timeout=timeout,
                             api_key=user_api_key())
    if llm_model:
        raise BadInputError(
            f"--llm-model {llm_model!r} names a model on a server, but no --llm-url was given; "
            "add --llm-url, or use --model PATH for a local model directory"
        )
    from rcahook.llm.embedded import EMBEDDED
    from rcahook.llm.local import load_local

    if model in (None, "", "embedded", EMBEDDED) and not (model and Path(model).exists()):
        return load_local(None, device=device)
    return load_local(Path(model).expanduser(), device=device)

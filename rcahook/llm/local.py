"""In-process backend: a Hugging Face causal LM (optionally with a PEFT adapter) on torch."""
from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rcahook.errors import BadInputError, ModelUnavailableError
from rcahook.llm.embedded import EMBEDDED, embedded_model_dir, quiet_progress
from rcahook.llm.prompt import Prompt, first_line, render_plain

MODEL_CARD = "rcahook_model.json"  # written by `rcahook train` beside its output
ADAPTER_CONFIG = "adapter_config.json"
_EXPECTED = (
    "expected a Hugging Face causal-LM directory (config.json + weights) or an "
    "`rcahook train` output directory (rcahook_model.json + adapter)"
)


class LocalBackend:
    def __init__(self, model: Any, tokenizer: Any, *, name: str, device: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self._chat = bool(getattr(tokenizer, "chat_template", None))
        self._system_role = True  # cleared if the chat template rejects a system message
        # transformers 5.x renamed forward(past_key_values=) to forward(cache=).
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        forward = inspect.signature(type(base).forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    def _tensor(self, ids: list[int]) -> Any:
        import torch

        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(ids) >= limit:
            raise BadInputError(
                f"the prompt has {len(ids)} tokens but {self.name} reads at most {limit}; "
                "lower the token budget of the ranker"
            )
        return torch.tensor([ids], device=self.device)  # (1, T)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def encode(self, prompt: Prompt, answer: str = "") -> list[int]:
        """Token ids of the prompt, up to and including `answer_prefix + answer`."""
        if not self._chat:
            # split_special_tokens: "<s>" or "<|endoftext|>" inside a commit message stays text.
            return self.tokenizer(render_plain(prompt, answer), split_special_tokens=True)["input_ids"]
        reply = {"role": "assistant", "content": prompt.answer_prefix + answer}
        if self._system_role:
            try:
                return self._chat_ids([{"role": "system", "content": prompt.system},
                                       {"role": "user", "content": prompt.user}, reply])
            except Exception as exc:  # jinja2 TemplateError: "System role not supported"
                if "system" not in str(exc).lower():
                    raise
                self._system_role = False
        return self._chat_ids([{"role": "user", "content": f"{prompt.system}\n\n{prompt.user}"}, reply])

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        # continue_final_message: the reply is prefilled with the answer prefix.
        # sanitize_control_tokens: control tokens inside messages are encoded as plain text,
        # a second line of defence behind prompt.neutralize().
        out = self.tokenizer.apply_chat_template(
            messages, tokenize=True, continue_final_message=True, sanitize_control_tokens=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def generate(self, prompt: Prompt, *, max_new_tokens: int) -> str:
        import torch

        ids = self._tensor(self.encode(prompt))  # (1, T)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                stopping_criteria=[_first_line_done(self.tokenizer, ids.shape[1])],
            )  # (1, T + new)
        return first_line(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))

    def label_logprobs(self, prompt: Prompt, labels: Sequence[str]) -> dict[str, float]:
        import torch

        prefix = self.encode(prompt)
        sep = "" if prompt.answer_prefix[-1:].isspace() else " "
        conts = {label: self._continuation(prompt, prefix, sep + label) for label in labels}
        multi = [label for label in labels if len(conts[label]) > 1]
        ids = self._tensor(prefix)  # (1, T)
        with torch.inference_mode():
            # logits_to_keep=1: only the next-token distribution, not (T, vocab) of them.
            out = self.model(input_ids=ids, use_cache=bool(multi), logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # (vocab,)
            scores = {label: first[conts[label][0]].item() for label in labels}
            if multi:
                cache = out.get("cache")
                self._add_rest(scores, multi, conts, cache if cache is not None else out.past_key_values)
        return scores

    def _continuation(self, prompt: Prompt, prefix: list[int], answer: str) -> list[int]:
        """Tokens that `answer` adds after the prefix, as the model would see them in context."""
        full = self.encode(prompt, answer)
        if full[: len(prefix)] == prefix and len(full) > len(prefix):
            return full[len(prefix):]
        # The label merged with the prefix's last token; score it tokenized on its own.
        alone = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert alone, f"label {answer!r} encodes to no tokens"
        return alone

    def _add_rest(self, scores: dict[str, float], multi: list[str],
                  conts: dict[str, list[int]], cache: Any) -> None:
        """Add log P(tokens 2.. of each multi-token label), all labels in one batch on the cache."""
        import torch

        rest = [conts[label] for label in multi]
        width = max(len(c) for c in rest) - 1
        # Right padding: real tokens never attend to the pads after them, so no mask is needed.
        inputs = torch.tensor([c[:-1] + [c[0]] * (width - len(c) + 1) for c in rest],
                              device=self.device)  # (B, L) where L = width
        cache.batch_repeat_interleave(len(multi))  # (1, T) prefix -> (B, T)
        out = self.model(input_ids=inputs, use_cache=True, **{self._cache_arg: cache})
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B, L, vocab)
        for b, (label, c) in enumerate(zip(multi, rest)):
            targets = torch.tensor(c[1:], device=self.device)  # (len-1,)
            picked = logp[b, : len(c) - 1].gather(-1, targets[:, None])  # (len-1, 1)
            scores[label] += picked.sum().item()


def _first_line_done(tokenizer: Any, start: int) -> Any:
    """Stop generating once a non-empty line has ended; saves most decode steps on CPU."""
    import torch
    from transformers import StoppingCriteria

    class FirstLineDone(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            text = tokenizer.decode(input_ids[0, start:], skip_special_tokens=True)  # (new,) -> str
            done = "\n" in text.lstrip("\n")
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return FirstLineDone()


def load_local(path: Path | None, *, device: str | None = None) -> LocalBackend:
    """The embedded model (path None), a model directory, or an `rcahook train` adapter dir."""
    if path is None:
        return _load(embedded_model_dir(), adapter=None, name=EMBEDDED, device=device)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise ModelUnavailableError(f"model directory {path} {what}; {_EXPECTED}")
    card = _read_card(path)
    has_adapter = (path / ADAPTER_CONFIG).is_file()
    if card.get("adapter", has_adapter and not (path / "config.json").is_file()):
        if not has_adapter:
            raise ModelUnavailableError(
                f"{path / MODEL_CARD} says adapter: true but {path} has no {ADAPTER_CONFIG}; "
                "re-run `rcahook train` or point --model at the base model directory"
            )
        base_name = card.get("base") or _adapter_base(path)
        if base_name == "embedded":
            base, name = embedded_model_dir(), EMBEDDED
        else:
            base = path / Path(str(base_name)).expanduser()  # a relative base is relative to the card
            name = base.name
            if not (base / "config.json").is_file():
                raise ModelUnavailableError(
                    f"the base model {base} of adapter {path} is not a model directory "
                    f"(no config.json); fix \"base\" in {path / MODEL_CARD}"
                )
        return _load(base, adapter=path, name=f"{card.get('name') or name}+{path.name}", device=device)
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(f"{path} has no config.json; {_EXPECTED}")
    return _load(path, adapter=None, name=card.get("name") or path.name, device=device)


def _read_card(path: Path) -> dict[str, Any]:
    card_path = path / MODEL_CARD
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailableError(f"cannot read {card_path} ({exc}); re-run `rcahook train`") from exc
    if not isinstance(card, dict) or not isinstance(card.get("adapter", False), bool):
        raise ModelUnavailableError(
            f"{card_path} is not an rcahook model card; expected an object like "
            '{"base": "embedded", "adapter": true}'
        )
    return card


def _adapter_base(path: Path) -> str:
    """An adapter without a card: trust adapter_config's base only if it is a local dir."""
    try:
        base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailableError(f"cannot read {path / ADAPTER_CONFIG} ({exc})") from exc
    if not base or not Path(base).is_dir():
        raise ModelUnavailableError(
            f"adapter {path} names base model {base!r}, which is not a local directory; "
            f'write {path / MODEL_CARD} with {{"base": "<model dir or embedded>", "adapter": true}}'
        )
    return base


def _load(base: Path, *, adapter: Path | None, name: str, device: str | None) -> LocalBackend:
    with quiet_progress():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        tokenizer_dir = adapter if adapter and (adapter / "tokenizer_config.json").is_file() else base
        try:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
            # Any: a transformers model, or the peft model that wraps it
            model: Any = AutoModelForCausalLM.from_pretrained(
                base, dtype=dtype, device_map=device, local_files_only=True)
            if adapter is not None:
                from peft import PeftModel

                with warnings.catch_warnings():  # peft calls a deprecated transformers API
                    warnings.simplefilter("ignore", FutureWarning)
                    model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailableError(
                f"cannot load the model in {adapter or base} ({first}); {_EXPECTED}") from exc
    return LocalBackend(model, tokenizer, name=name, device=device)

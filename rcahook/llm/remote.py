"""Backend for an OpenAI-compatible server (vLLM, llama.cpp server, ...), standard library only.

Used only when the user passes --llm-url: then and only then do prompts (which contain
commit messages and diffs) leave the machine.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from rcahook.errors import ModelServerError
from rcahook.llm.prompt import Prompt, first_line, render_plain

TOP_LOGPROBS = 20  # vLLM's default --max-logprobs
# A label missing from the top list is less likely than everything listed; how much less
# is unknown, so it gets the smallest listed logprob minus this margin.
MISSING_MARGIN = 1.0
API_KEY_ENV = "RCAHOOK_LLM_API_KEY"
_NO_COMPLETIONS = {404, 405, 501}


class RemoteBackend:
    def __init__(self, url: str, *, model: str | None = None, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self._api = self.url if self.url.endswith("/v1") else self.url + "/v1"
        self.timeout = timeout
        self.model = model or self._served_model()
        self.name = f"{self.model}@{self.url}"
        self._chat = False  # set once the server refuses /completions

    def generate(self, prompt: Prompt, *, max_new_tokens: int) -> str:
        if not self._chat:
            reply = self._completions(prompt, {"max_tokens": max_new_tokens})
            if reply is not None:
                return first_line(_first_choice(reply, self.url).get("text") or "")
        reply = self._post("/chat/completions", {
            "messages": _messages(prompt), "max_tokens": max_new_tokens, "temperature": 0})
        return first_line(_first_choice(reply, self.url).get("message", {}).get("content") or "")

    def label_logprobs(self, prompt: Prompt, labels: Sequence[str]) -> dict[str, float]:
        if not self._chat:
            reply = self._completions(prompt, {"max_tokens": 1, "logprobs": TOP_LOGPROBS})
            if reply is not None:
                try:
                    top = _first_choice(reply, self.url)["logprobs"]["top_logprobs"][0]
                except (KeyError, IndexError, TypeError) as exc:
                    raise self._bad_reply("/completions", "no logprobs.top_logprobs") from exc
                return _label_scores(top.items(), labels)
        reply = self._post("/chat/completions", {
            "messages": _messages(prompt), "max_tokens": 8, "temperature": 0,
            "logprobs": True, "top_logprobs": TOP_LOGPROBS})
        try:
            positions = _first_choice(reply, self.url)["logprobs"]["content"]
            tops = [[(t["token"], t["logprob"]) for t in pos["top_logprobs"]] for pos in positions]
        except (KeyError, TypeError) as exc:
            raise self._bad_reply("/chat/completions", "no logprobs.content[].top_logprobs") from exc
        if not tops:
            raise self._bad_reply("/chat/completions", "an empty logprobs.content")
        # A chat model may open with "Change " before the label: score the first position
        # where a label is among the candidates.
        wanted = set(labels)
        at = next((top for top in tops if any(tok.strip() in wanted for tok, _ in top)), tops[0])
        return _label_scores(at, labels)

    def _completions(self, prompt: Prompt, extra: dict[str, Any]) -> dict[str, Any] | None:
        """POST /completions; None if the server has no such endpoint (then chat is used)."""
        try:
            return self._post("/completions", {"prompt": render_plain(prompt), "temperature": 0, **extra})
        except _HTTPStatus as exc:
            if exc.status in _NO_COMPLETIONS or (exc.status == 400 and "chat" in exc.body.lower()):
                self._chat = True
                return None
            raise exc.as_error(self.url, "/completions") from None

    def _served_model(self) -> str:
        try:
            data = self._request("GET", "/models", None).get("data") or []
        except _HTTPStatus as exc:
            raise exc.as_error(self.url, "/models") from None
        ids = [m.get("id") for m in data if isinstance(m, dict) and m.get("id")]
        if not ids:
            raise ModelServerError(
                f"the model server at {self.url} lists no models under /v1/models; pass --llm-model NAME")
        return ids[0]

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._request("POST", path, {"model": self.model, **payload})
        except _HTTPStatus as exc:
            if path == "/completions":
                raise
            raise exc.as_error(self.url, path) from None

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if os.environ.get(API_KEY_ENV):
            headers["Authorization"] = f"Bearer {os.environ[API_KEY_ENV]}"
        request = urllib.request.Request(self._api + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise _HTTPStatus(exc.code, exc.read(2000).decode("utf-8", "replace")) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, socket.timeout | TimeoutError):
                reason = f"no answer within {self.timeout:g} s"
            raise ModelServerError(
                f"cannot reach the model server at {self.url} ({reason}); "
                "check --llm-url and that the server is running"
            ) from None
        try:
            reply = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._bad_reply(path, "a body that is not JSON") from None
        if not isinstance(reply, dict):
            raise self._bad_reply(path, "JSON that is not an object")
        return reply

    def _bad_reply(self, path: str, what: str) -> ModelServerError:
        return ModelServerError(
            f"the model server at {self.url} answered {path} with {what}; "
            "expected the OpenAI API shape (is it an OpenAI-compatible server such as vLLM?)"
        )


class _HTTPStatus(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(status)
        self.status = status
        self.body = body

    def as_error(self, url: str, path: str) -> ModelServerError:
        try:
            detail = json.loads(self.body).get("error") or self.body
            detail = detail.get("message", detail) if isinstance(detail, dict) else detail
        except (json.JSONDecodeError, AttributeError):
            detail = self.body
        detail = " ".join(str(detail).split())[:200] or "no details"
        return ModelServerError(
            f"the model server at {url} answered {path} with HTTP {self.status} ({detail}); "
            "check --llm-url and --llm-model"
        )


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    # A chat endpoint cannot be prefilled; ask for the answer prefix instead.
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": f"{prompt.user}\nStart your reply with \"{prompt.answer_prefix}\"."},
    ]


def _first_choice(reply: dict[str, Any], url: str) -> dict[str, Any]:
    choices = reply.get("choices")
    if not choices or not isinstance(choices[0], dict):
        raise ModelServerError(
            f"the model server at {url} answered without choices; expected the OpenAI API shape")
    return choices[0]


def _label_scores(top: Any, labels: Sequence[str]) -> dict[str, float]:
    """Label logprobs from (token, logprob) pairs; " K" and "K" both count for label K."""
    pairs = [(str(tok), float(lp)) for tok, lp in top]
    found: dict[str, list[float]] = {}
    for tok, lp in pairs:
        if tok.strip() in labels:
            found.setdefault(tok.strip(), []).append(lp)
    floor = min((lp for _, lp in pairs), default=0.0) - MISSING_MARGIN
    return {label: _logsumexp(found[label]) if label in found else floor for label in labels}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))

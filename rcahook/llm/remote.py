"""Backend for an OpenAI-compatible server (vLLM, llama.cpp server, ...), standard library only.

Used only when the user chose a server (--llm-url, RCAHOOK_LLM_URL, or llm-url in their
own config or in a repository they trust: rcahook/config.py): then and only then do
prompts (which contain commit messages and diffs) leave the machine, and the user's API
key goes to that server and nowhere else.

A server that is slow, silent or confused must cost seconds, not minutes, and must never
pass for a ranking: connecting gives up after `connect_timeout`, waiting for an answer
after `timeout` (per read), a transient failure (refused or reset connection, a timeout
while connecting, HTTP 502/503/504) is retried once, and an answer that cannot be used
(null text, non-finite logprobs, no label among the candidates) raises ModelAnswerError,
on which `rcahook investigate` falls back to the features ranking and says so.
"""
from __future__ import annotations

import functools
import http.client
import json
import math
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from rcahook.errors import BadInputError, ModelAnswerError, ModelServerError
from rcahook.llm.prompt import Prompt, first_line, render_plain
from rcahook.untrusted import term_text

TOP_LOGPROBS = 20  # vLLM's default --max-logprobs
# A label missing from the top list is less likely than everything listed; how much less
# is unknown, so it gets the smallest listed logprob minus this margin.
MISSING_MARGIN = 1.0
API_KEY_ENV = "RCAHOOK_LLM_API_KEY"
_NO_COMPLETIONS = {404, 405, 501}
# Defaults: a silent server is given up on within about 15 s (5 s to connect, twice when the
# connection times out, or 10 s for an answer), where urllib's single 120 s timeout cost minutes.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_TIMEOUT = 600.0  # longer is a typo, not a setting
_TRANSIENT_STATUS = {502, 503, 504}
RETRY_PAUSE = 0.5  # seconds before the one retry
MAX_BODY = 8 << 20  # an answer is a few kB; a server streaming gigabytes must not fill the memory


def user_api_key() -> str | None:
    """The user's key for their model server: RCAHOOK_LLM_API_KEY, never read from a file.

    Give it only to a URL the user chose (a flag, the environment, their own config, or a
    repository they listed in trusted-repositories). rcahook.config keeps every other URL
    out of Config.llm_url: a URL chosen by a repository would otherwise collect the key.
    """
    return os.environ.get(API_KEY_ENV) or None


class RemoteBackend:
    def __init__(self, url: str, *, model: str | None = None, connect_timeout: float | None = None,
                 timeout: float | None = None, api_key: str | None = None):
        self.url = url.rstrip("/")
        # Sent to `url` only (redirects are refused: _NoRedirect); the caller vouches that
        # `url` is the user's choice (see user_api_key), so no key is read here.
        self._api_key = api_key
        self._api = self.url if self.url.endswith("/v1") else self.url + "/v1"
        self.connect_timeout = check_timeout("--llm-connect-timeout", connect_timeout, CONNECT_TIMEOUT)
        self.timeout = check_timeout("--llm-timeout", timeout, READ_TIMEOUT)
        self._opener = _opener(self.timeout)
        self.model = model or self._served_model()
        self.name = term_text(f"{self.model}@{self.url}")  # shown in reports and messages; the id may be the server's
        self._chat = False  # set once the server refuses /completions

    def generate(self, prompt: Prompt, *, max_new_tokens: int) -> str:
        if not self._chat:
            reply = self._completions(prompt, {"max_tokens": max_new_tokens})
            if reply is not None:
                return first_line(self._text(_first_choice(reply, self.url).get("text"), "/completions", "text"))
        reply = self._post("/chat/completions", {
            "messages": _messages(prompt), "max_tokens": max_new_tokens, "temperature": 0})
        message = _first_choice(reply, self.url).get("message")
        content = message.get("content") if isinstance(message, dict) else None
        return first_line(self._text(content, "/chat/completions", "message.content"))

    def label_logprobs(self, prompt: Prompt, labels: Sequence[str]) -> dict[str, float]:
        if not self._chat:
            reply = self._completions(prompt, {"max_tokens": 1, "logprobs": TOP_LOGPROBS})
            if reply is not None:
                try:
                    top = _first_choice(reply, self.url)["logprobs"]["top_logprobs"][0]
                    pairs = list(top.items())
                except (KeyError, IndexError, TypeError, AttributeError) as exc:
                    raise self._unusable("/completions", "no logprobs.top_logprobs") from exc
                return self._label_scores("/completions", pairs, labels)
        reply = self._post("/chat/completions", {
            "messages": _messages(prompt), "max_tokens": 8, "temperature": 0,
            "logprobs": True, "top_logprobs": TOP_LOGPROBS})
        try:
            positions = _first_choice(reply, self.url)["logprobs"]["content"]
            tops = [[(t["token"], t["logprob"]) for t in pos["top_logprobs"]] for pos in positions]
        except (KeyError, TypeError) as exc:
            raise self._unusable("/chat/completions", "no logprobs.content[].top_logprobs") from exc
        if not tops:
            raise self._unusable("/chat/completions", "an empty logprobs.content")
        # A chat model may open with "Change " before the label: score the first position
        # where a label is among the candidates.
        wanted = set(labels)
        at = next((top for top in tops if any(str(tok).strip() in wanted for tok, _ in top)), tops[0])
        return self._label_scores("/chat/completions", at, labels)

    def _text(self, value: Any, path: str, field: str) -> str:
        if not isinstance(value, str):
            raise self._unusable(path, f"{field} {json.dumps(value)[:40]} instead of text")
        return value

    def _label_scores(self, path: str, pairs: list, labels: Sequence[str]) -> dict[str, float]:
        try:
            return _label_scores(pairs, labels)
        except ValueError as exc:
            raise self._unusable(path, str(exc)) from None

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
        ids = [m.get("id") for m in data if isinstance(m, dict) and m.get("id")] if isinstance(data, list) else []
        if not ids:
            raise ModelServerError(
                f"the model server at {self.url} lists no models under /v1/models; pass --llm-model NAME")
        return str(ids[0])

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._request("POST", path, {"model": self.model, **payload})
        except _HTTPStatus as exc:
            if path == "/completions":
                raise
            raise exc.as_error(self.url, path) from None

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """One request, retried once after a transient failure; never a 4xx."""
        try:
            body = self._send(method, path, payload)
        except _Transient:
            time.sleep(RETRY_PAUSE)
            try:
                body = self._send(method, path, payload)
            except _Transient as exc:
                raise exc.error from None
        try:
            reply = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._bad_reply(path, "a body that is not JSON") from None
        if not isinstance(reply, dict):
            raise self._bad_reply(path, "JSON that is not an object")
        return reply

    def _send(self, method: str, path: str, payload: dict[str, Any] | None) -> bytes:
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            request = urllib.request.Request(self._api + path, data=data, headers=headers, method=method)
        except ValueError as exc:  # no scheme: "gpu-box:8000/v1" or a bare host
            raise self._unreachable(f"{exc}; expected http://HOST:PORT or https://...") from None
        try:
            with self._opener.open(request, timeout=self.connect_timeout) as response:
                body = response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            status = _HTTPStatus(exc.code, exc.read(2000).decode("utf-8", "replace"))
            if exc.code in _TRANSIENT_STATUS:
                raise _Transient(status.as_error(self.url, path)) from None
            raise status from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, _ConnectTimeout):
                error = self._unreachable(f"timed out: no connection within {self.connect_timeout:g} s "
                                          "(--llm-connect-timeout)")
            elif isinstance(reason, TimeoutError):
                error = self._unreachable(f"timed out: no answer within {self.timeout:g} s (--llm-timeout)")
            else:
                error = self._unreachable(str(reason))
            # refused, reset, closed without an answer (RemoteDisconnected), or no connection in time
            if isinstance(reason, _ConnectTimeout | ConnectionError):
                raise _Transient(error) from None
            raise error from None
        if len(body) > MAX_BODY:
            raise self._bad_reply(path, f"a body over {MAX_BODY >> 20} MiB")
        return body

    def _unreachable(self, reason: str) -> ModelServerError:
        return ModelServerError(
            f"cannot reach the model server at {self.url} ({reason}); "
            "check --llm-url and that the server is running")

    def _bad_reply(self, path: str, what: str) -> ModelServerError:
        return ModelServerError(
            f"the model server at {self.url} answered {path} with {what}; "
            "expected the OpenAI API shape (is it an OpenAI-compatible server such as vLLM?)"
        )

    def _unusable(self, path: str, what: str) -> ModelAnswerError:
        return ModelAnswerError(f"the model server at {self.url} answered {path} with {what}")


def check_timeout(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 < value <= MAX_TIMEOUT):
        # a bad option, not a server failure: never a quiet fallback to features
        raise BadInputError(f"{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
                            f"got {value!r}")
    return float(value)


class _Transient(Exception):
    """A failure worth one retry; `error` is what the user sees if the retry fails too."""

    def __init__(self, error: ModelServerError):
        super().__init__(str(error))
        self.error = error


class _ConnectTimeout(TimeoutError):
    pass


class _ReadTimeout:
    """Connect within the connection's `timeout`, then wait up to `read_timeout` per read:
    urllib has one timeout for both, and a generation legitimately takes longer than a handshake."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        try:
            # a mixin: super() is the http.client connection class it is mixed into
            super().connect()  # type: ignore[misc]
        except TimeoutError as exc:
            raise _ConnectTimeout(str(exc) or "connect timed out") from None
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]  # the connection's socket, as above


class _HTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_HTTPConnection, read_timeout=self.read_timeout), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        # the default verifying context, kept here: HTTPSHandler's own attribute for it is private
        self.ssl_context = ssl.create_default_context()
        super().__init__(context=self.ssl_context)
        self.read_timeout = read_timeout

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_HTTPSConnection, read_timeout=self.read_timeout), req,
                            context=self.ssl_context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the API key and the prompts to wherever the server points.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        raise ModelServerError(
            f"the model server at {req.full_url} answered HTTP {code}, a redirect to {newurl}; rcahook does "
            "not follow redirects (they would take the prompts and the API key elsewhere): pass the final "
            "URL as --llm-url")


def _opener(read_timeout: float) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout), _NoRedirect())


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
        detail = term_text(" ".join(str(detail).split())[:200]) or "no details"  # the server's text, shown
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
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelServerError(
            f"the model server at {url} answered without choices; expected the OpenAI API shape")
    return choices[0]


def _label_scores(top: Any, labels: Sequence[str]) -> dict[str, float]:
    """Label logprobs from (token, logprob) pairs; " K" and "K" both count for label K.

    ValueError when the pairs cannot be used: a logprob that is not a number, NaN or above 0
    (a probability above 1), or no label at all among the tokens (every label would tie at the
    floor, and the "ranking" would be the input order).
    """
    pairs = []
    for tok, lp in top:
        value = lp if isinstance(lp, int | float) and not isinstance(lp, bool) else math.nan
        if math.isnan(value) or value > 1e-3:
            raise ValueError(f"the logprob {json.dumps(lp)[:20]} for token {json.dumps(str(tok))[:20]}")
        pairs.append((str(tok), float(value)))
    found: dict[str, list[float]] = {}
    for tok, lp in pairs:
        if tok.strip() in labels:
            found.setdefault(tok.strip(), []).append(lp)
    if not found:
        raise ValueError(f"none of the labels {', '.join(sorted(labels))} among its {len(pairs)} most likely "
                         "first tokens")
    finite = [lp for _, lp in pairs if math.isfinite(lp)]
    floor = min(finite, default=0.0) - MISSING_MARGIN
    return {label: _logsumexp(found[label]) if label in found else floor for label in labels}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))

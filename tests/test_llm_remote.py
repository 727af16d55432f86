"""RemoteBackend against a real HTTP server on 127.0.0.1 speaking the OpenAI API shape."""
from __future__ import annotations

import json
import math
import socket
import time

import pytest

from localhttp import JsonHandler, local_server
from rcahook.errors import ModelServerError
from rcahook.llm import load_backend
from rcahook.llm.prompt import ANSWER_PREFIX, Prompt
from rcahook.llm.remote import MISSING_MARGIN, RemoteBackend

PROMPT = Prompt(system="You rank changes.", user="## Change K\n> subject: x\n## Change C\n> subject: y",
                answer_prefix=ANSWER_PREFIX, labels=("K", "C", "P"), keys=("k1", "k2", "k3"))
# What the fake model "believes" about the first answer token.
TOP = {" K": -0.3, " C": -1.6, "K": -2.5, " the": -3.0, "\n": -4.0}


class FakeOpenAI(JsonHandler):
    """vLLM-like: /v1/models, /v1/completions (unless chat_only), /v1/chat/completions."""

    def do_GET(self):
        if self.path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [{"id": "served-model", "object": "model"}]})
        return self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, body, dict(self.headers)))
        if server.delay:
            time.sleep(server.delay)
        if self.path == "/v1/completions":
            if server.chat_only:
                return self.send_json(404, {"error": {"message": "This is a chat model"}})
            if server.fail:
                return self.send_json(500, {"error": {"message": "CUDA out of memory", "type": "InternalError"}})
            choice = {"index": 0, "text": " K, C\nExplanation: ...", "finish_reason": "stop"}
            if body.get("logprobs"):
                first = next(iter(TOP))
                choice = {"index": 0, "text": first, "logprobs": {
                    "tokens": [first], "token_logprobs": [TOP[first]], "top_logprobs": [TOP]}}
            return self.send_json(200, {"id": "cmpl-1", "object": "text_completion", "choices": [choice]})
        if self.path == "/v1/chat/completions":
            message = {"role": "assistant", "content": "Answer: Change C, K"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            if body.get("logprobs"):
                def entry(tok, top):
                    return {"token": tok, "logprob": top[tok],
                            "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}
                opening = {"Answer": -0.01, "Change": -5.0}
                chat_top = {" C": -0.2, " K": -1.9, " P": -2.2, " Q": -3.0}
                choice["logprobs"] = {"content": [entry("Answer", opening), entry(" C", chat_top)]}
            return self.send_json(200, {"id": "chat-1", "object": "chat.completion", "choices": [choice]})
        return self.send_json(404, {"error": {"message": "unknown route"}})


@pytest.fixture
def server():
    with local_server(FakeOpenAI, requests=[], chat_only=False, fail=False, delay=0.0) as httpd:
        yield httpd


def test_completions_generate_and_logprobs(server):
    backend = load_backend(llm_url=server.url, llm_model="my-model")
    assert backend.name == f"my-model@{server.url}"
    assert backend.generate(PROMPT, max_new_tokens=12) == " K, C"  # one line
    path, body, headers = server.requests[-1]
    assert path == "/v1/completions"
    assert body["model"] == "my-model" and body["temperature"] == 0 and body["max_tokens"] == 12
    assert body["prompt"].startswith(PROMPT.system) and body["prompt"].endswith(ANSWER_PREFIX)
    assert "Authorization" not in headers

    scores = backend.label_logprobs(PROMPT, PROMPT.labels)
    _, body, _ = server.requests[-1]
    assert body["max_tokens"] == 1 and body["logprobs"] == 20 and body["temperature"] == 0
    assert scores["K"] == pytest.approx(math.log(math.exp(-0.3) + math.exp(-2.5)))  # " K" and "K"
    assert scores["C"] == pytest.approx(-1.6)
    assert scores["P"] == pytest.approx(min(TOP.values()) - MISSING_MARGIN)  # not in the top list


def test_model_name_is_discovered(server):
    backend = RemoteBackend(server.url + "/v1/")
    assert backend.model == "served-model"


def test_chat_fallback_when_completions_are_refused(server):
    server.chat_only = True
    backend = RemoteBackend(server.url, model="chat-model")
    assert backend.generate(PROMPT, max_new_tokens=12) == "Answer: Change C, K"
    paths = [p for p, _, _ in server.requests]
    assert paths == ["/v1/completions", "/v1/chat/completions"]
    _, body, _ = server.requests[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert ANSWER_PREFIX in body["messages"][1]["content"] and body["temperature"] == 0

    scores = backend.label_logprobs(PROMPT, PROMPT.labels)
    _, body, _ = server.requests[-1]
    assert server.requests[-1][0] == "/v1/chat/completions"  # remembered: no second refusal
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    # the label position is the second token, after "Answer"
    assert scores == pytest.approx({"C": -0.2, "K": -1.9, "P": -2.2})


def test_api_key_from_environment(server, monkeypatch):
    monkeypatch.setenv("RCAHOOK_LLM_API_KEY", "sekrit")
    load_backend(llm_url=server.url, llm_model="m").generate(PROMPT, max_new_tokens=1)
    assert server.requests[-1][2]["Authorization"] == "Bearer sekrit"
    RemoteBackend(server.url, model="m").generate(PROMPT, max_new_tokens=1)  # a key only when given one
    assert "Authorization" not in server.requests[-1][2]


def test_server_error_is_one_line(server):
    server.fail = True
    backend = RemoteBackend(server.url, model="m")
    with pytest.raises(ModelServerError, match="HTTP 500 .CUDA out of memory") as info:
        backend.generate(PROMPT, max_new_tokens=4)
    assert server.url in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 18


def test_timeout(server):
    server.delay = 1.0
    backend = RemoteBackend(server.url, model="m", timeout=0.2)
    with pytest.raises(ModelServerError, match="no answer within 0.2 s") as info:
        backend.label_logprobs(PROMPT, PROMPT.labels)
    assert server.url in str(info.value)


def test_unreachable_url():
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ModelServerError, match="cannot reach the model server") as info:
        load_backend(llm_url=url)  # model discovery is the first request
    assert url in str(info.value) and "\n" not in str(info.value)


def test_not_an_openai_server():
    class Teapot(JsonHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

    with local_server(Teapot) as httpd, pytest.raises(ModelServerError, match="not JSON"):
        RemoteBackend(httpd.url)

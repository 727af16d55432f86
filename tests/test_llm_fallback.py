"""A model server that is silent, flaky or talks nonsense: `rcahook investigate` falls back to
the features ranking and says so (JSON, text, Markdown), within the timeout; a transient
failure is retried once. Real HTTP servers on 127.0.0.1, the real CLI, the demo repository."""
from __future__ import annotations

import json
import socket
import threading
import types
from contextlib import ExitStack

import jsonschema
import pytest

from clirun import rcahook
from localhttp import JsonHandler, local_server
from rcahook.demo import generate
from rcahook.errors import BadInputError, ModelServerError
from rcahook.llm.prompt import ANSWER_PREFIX, Prompt
from rcahook.llm.remote import RemoteBackend
from rcahook.rca.report import JSON_SCHEMA

PROMPT = Prompt(system="You rank changes.", user="## Change K\n> subject: x\n## Change C\n> subject: y",
                answer_prefix=ANSWER_PREFIX, labels=("K", "C", "P"), keys=("k1", "k2", "k3"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    made = generate(tmp_path_factory.mktemp("demo") / "repo")
    result = rcahook("index", "--repo", str(made.repo), "--quiet")
    assert result.code == 0, result.err
    return made


def investigate(demo, *args: str) -> types.SimpleNamespace:
    return rcahook("investigate", "--repo", str(demo.repo), "--incident", str(demo.incident_file),
                   "--no-update", "--no-save", *args)


def as_json(result) -> dict:
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    jsonschema.validate(doc, JSON_SCHEMA)
    return doc


# -- servers --------------------------------------------------------------------------------

class Scripted(JsonHandler):
    """An OpenAI-shaped server that answers each POST with the next scripted (status, body)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(self.path)
        script = self.server.script
        status, body = script.pop(0) if len(script) > 1 else script[0]
        self.send_json(status, body)


@pytest.fixture
def scripted():
    """`serve(*answers)`: the server's URL; answers are (status, JSON body or raw text)."""
    with ExitStack() as servers:
        yield lambda *script: servers.enter_context(local_server(Scripted, requests=[], script=list(script)))


@pytest.fixture
def silent():
    """Accepts connections and reads the request, then never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield types.SimpleNamespace(url=f"http://127.0.0.1:{listener.getsockname()[1]}", held=held)
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def completion(text) -> tuple[int, dict]:
    return 200, {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": text}]}


def features_order(demo) -> list[str]:
    return [s["sha"] for s in as_json(investigate(demo, "--format", "json"))["suggestions"]]


def check_fallback(demo, result, requested: str, reason: str) -> dict:
    doc = as_json(result)
    ranker = doc["ranker"]
    assert ranker["name"] == "features" and ranker["requested"] == requested and ranker["fallback"] is True
    assert reason in ranker["fallback_reason"], ranker["fallback_reason"]
    assert [s["sha"] for s in doc["suggestions"]] == features_order(demo)
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and reason in warnings[0] and "features ranker instead" in warnings[0]
    return doc


# -- the fallbacks --------------------------------------------------------------------------

def test_silent_server_falls_back_within_the_timeout(demo, silent):
    result = investigate(demo, "--ranker", "election", "--llm-url", silent.url, "--llm-model", "m",
                         "--llm-timeout", "1", "--format", "json")
    check_fallback(demo, result, "election", "no answer within 1 s (--llm-timeout)")
    assert len(silent.held) == 1  # a read timeout is not retried: it would double the wait


def test_silent_server_is_an_error_when_strict(demo, silent):
    result = investigate(demo, "--ranker", "logprob", "--llm-url", silent.url, "--llm-model", "m",
                         "--llm-timeout", "1", "--strict")
    assert result.code == 18 and "timed out" in result.err and silent.url in result.err


def test_null_text_falls_back(demo, scripted):
    server = scripted(completion(None))
    result = investigate(demo, "--ranker", "election", "--llm-url", server.url, "--llm-model", "m",
                         "--format", "json")
    check_fallback(demo, result, "election", "answered /completions with text null instead of text")


def test_nan_logprobs_fall_back(demo, scripted):
    choice = {"index": 0, "text": " K", "logprobs": {"tokens": [" K"], "top_logprobs": [
        {" K": float("nan"), " C": float("nan"), " P": -1.0}]}}
    server = scripted((200, json.dumps({"choices": [choice]})))  # json.dumps writes NaN, as a broken server does
    result = investigate(demo, "--ranker", "logprob", "--llm-url", server.url, "--llm-model", "m",
                         "--format", "json")
    check_fallback(demo, result, "logprob", "the logprob NaN for token")


def test_labels_that_do_not_exist_fall_back(demo, scripted):
    server = scripted(completion(" 42, 17, 99 are the culprits"))
    result = investigate(demo, "--ranker", "election", "--llm-url", server.url, "--llm-model", "m",
                         "--format", "json")
    doc = check_fallback(demo, result, "election", "names none of the labels")
    assert "42, 17, 99" in doc["ranker"]["fallback_reason"]
    assert server.requests == ["/v1/completions"]  # the first useless answer ends the tournament


def test_logprobs_without_any_label_fall_back(demo, scripted):
    choice = {"index": 0, "text": "The", "logprobs": {"top_logprobs": [{"The": -0.1, " I": -2.0}]}}
    server = scripted((200, {"choices": [choice]}))
    result = investigate(demo, "--ranker", "logprob", "--llm-url", server.url, "--llm-model", "m",
                         "--format", "json")
    check_fallback(demo, result, "logprob", "none of the labels")


def test_fallback_is_one_line_in_text_and_markdown(demo, scripted):
    server = scripted(completion(None))
    args = ("--ranker", "election", "--llm-url", server.url, "--llm-model", "m")
    text = investigate(demo, *args)
    assert text.code == 0, text.err
    lines = [line for line in text.out.splitlines() if "model ranking not used" in line]
    assert len(lines) == 1 and "text null" in lines[0] and "features" in lines[0]
    md = investigate(demo, *args, "--format", "markdown")
    assert md.code == 0, md.err
    lines = [line for line in md.out.splitlines() if "not used" in line or "text null" in line]
    assert len(lines) == 1 and lines[0].startswith("> **model ranking not used")


def test_a_usable_answer_is_not_a_fallback(demo, scripted):
    # Every prompt gets a valid label (labels are letters; "A, B, ..., Z" names them all).
    server = scripted(completion(" " + ", ".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ")))
    doc = as_json(investigate(demo, "--ranker", "election", "--llm-url", server.url, "--llm-model", "m",
                              "--format", "json"))
    assert doc["ranker"]["name"] == "election" and doc["ranker"]["fallback"] is False
    assert doc["ranker"]["fallback_reason"] is None and len(server.requests) > 1


# -- one retry on a transient failure, none on a client error --------------------------------

def test_503_is_retried_once(scripted):
    server = scripted((503, {"error": {"message": "loading model"}}), completion(" K, C"))
    assert RemoteBackend(server.url, model="m").generate(PROMPT, max_new_tokens=8) == " K, C"
    assert server.requests == ["/v1/completions", "/v1/completions"]


def test_503_twice_is_an_error_after_two_requests(scripted):
    server = scripted((503, {"error": {"message": "overloaded"}}))
    with pytest.raises(ModelServerError, match="HTTP 503 .overloaded"):
        RemoteBackend(server.url, model="m").generate(PROMPT, max_new_tokens=8)
    assert len(server.requests) == 2


def test_a_client_error_is_not_retried(scripted):
    server = scripted((400, {"error": {"message": "max_tokens too large"}}))
    with pytest.raises(ModelServerError, match="HTTP 400"):
        RemoteBackend(server.url, model="m").generate(PROMPT, max_new_tokens=8)
    assert len(server.requests) == 1


def test_a_dropped_connection_is_retried_once():
    """The first connection is closed without an answer (a server restarting), the second answered."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = []

    def serve():
        for i in range(2):
            conn, _ = listener.accept()
            with conn:
                seen.append(conn.recv(65536).split(b"\r\n", 1)[0])
                if i == 1:
                    body = json.dumps(completion(" C")[1]).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        backend = RemoteBackend(f"http://127.0.0.1:{listener.getsockname()[1]}", model="m")
        assert backend.generate(PROMPT, max_new_tokens=4) == " C"
    finally:
        thread.join(timeout=5)
        listener.close()
    assert seen == [b"POST /v1/completions HTTP/1.1"] * 2


def test_timeouts_are_validated(demo):
    with pytest.raises(BadInputError, match="--llm-timeout must be a number of seconds"):
        RemoteBackend("http://127.0.0.1:9", model="m", timeout=0)
    result = investigate(demo, "--ranker", "election", "--llm-url", "http://127.0.0.1:9", "--llm-model", "m",
                         "--llm-connect-timeout", "-1")
    assert result.code == 15 and "--llm-connect-timeout must be a number of seconds" in result.err


def test_timeouts_from_the_config(demo, silent, tmp_path, monkeypatch):
    config = tmp_path / "xdg" / "rcahook" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("llm-timeout = 1\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = investigate(demo, "--ranker", "election", "--llm-url", silent.url, "--llm-model", "m",
                         "--format", "json")
    check_fallback(demo, result, "election", "no answer within 1 s")


# -- model options without a model ranker --------------------------------------------------------

def test_llm_url_with_the_features_ranker_warns(demo, scripted):
    server = scripted(completion(" K"))
    result = investigate(demo, "--llm-url", server.url, "--format", "json")
    doc = as_json(result)
    assert doc["ranker"]["name"] == "features" and doc["ranker"]["fallback"] is False
    line = "--llm-url is ignored with --ranker features; use --ranker election or logprob"
    assert [w for w in result.err.splitlines() if "warning" in w] == [f"rcahook: warning: {line}"]
    assert line in doc["warnings"] and server.requests == []


def test_model_with_the_features_ranker_warns(demo):
    result = investigate(demo, "--model", "some/dir", "--ranker", "features")
    assert result.code == 0, result.err
    assert "--model is ignored with --ranker features" in result.err


def test_connect_timeout_is_retried_once_then_reported():
    """A listener whose accept queue is full drops new SYNs: the connection never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    try:
        for _ in range(16):  # fill the accept queue until a connection attempt hangs
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                probe.close()
                break
            queued.append(probe)
        else:
            pytest.skip("this kernel never left a connection attempt hanging")
        backend = RemoteBackend(f"http://127.0.0.1:{port}", model="m", connect_timeout=0.3)
        with pytest.raises(ModelServerError, match=r"no connection within 0.3 s \(--llm-connect-timeout\)"):
            backend.generate(PROMPT, max_new_tokens=4)
    finally:
        for s in queued:
            s.close()
        listener.close()


def test_backtest_measures_an_unusable_answer_as_the_features_ranking(demo, scripted, tmp_path):
    server = scripted(completion(" 42, 17"))
    result = rcahook("backtest", "--repo", str(demo.repo), "--no-update", "--ranker", "features,election",
                     "--llm-url", server.url, "--llm-model", "m", "--limit", "2", "--window", "60",
                     "--format", "json", "--output", str(tmp_path / "results.jsonl"))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["investigations"]["evaluated"] == 2
    assert any(n.startswith("election: 2 investigation(s) in this run fell back to the features ranking")
               and "names none of the labels" in n for n in doc["notes"])
    ranks = [r["ranks"] for r in doc["results"]]
    assert all(r["election"] == r["features"] for r in ranks)


def test_backtest_warns_about_model_options_without_an_llm_ranker(demo, tmp_path):
    result = rcahook("backtest", "--repo", str(demo.repo), "--no-update", "--llm-url", "http://127.0.0.1:9",
                     "--limit", "1", "--window", "60", "--format", "json", "--output", str(tmp_path / "r.jsonl"))
    assert result.code == 0, result.err
    assert "--llm-url is ignored without an LLM ranker; add --ranker election, logprob or blend" in result.err


def test_redirects_are_not_followed(scripted, monkeypatch):
    """A redirect would take the prompts and the API key to another server."""
    target = scripted(completion(" K"))

    class Redirecting(JsonHandler):
        def do_POST(self):
            self.server.requests.append(self.path)
            self.send_response(307)
            self.send_header("Location", target.url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with local_server(Redirecting, requests=[]) as httpd:
        backend = RemoteBackend(httpd.url, model="m", api_key="sekrit")
        with pytest.raises(ModelServerError, match="a redirect to .*does not follow redirects"):
            backend.generate(PROMPT, max_new_tokens=4)
    assert httpd.requests == ["/v1/completions"] and target.requests == []

"""Config trust: a repository's config cannot send data anywhere; the user's config, the
environment and flags can, in that order of strength. Real repositories, the real CLI and
real HTTP servers on 127.0.0.1 that record what they receive."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from clirun import rcahook
from localhttp import JsonHandler, local_server
from rcahook.config import load_config, tomllib, user_config_path
from rcahook.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEY = "sekrit-user-key"


class OpenAIish(JsonHandler):
    """Records every request; answers like an OpenAI-compatible server, every capital letter
    a likely first token, so any change labels the prompt uses get a score."""

    def do_GET(self):
        self.server.requests.append(("GET", self.path, dict(self.headers)))
        self.send_json(200, {"object": "list", "data": [{"id": "served-model", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(("POST", self.path, dict(self.headers)))
        top = {f" {chr(c)}": -0.1 * (c - 64) for c in range(65, 91)}
        if self.path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "A"}, "logprobs": {"content": [
                {"token": " A", "logprob": -0.1,
                 "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}]}}
        else:
            choice = {"index": 0, "text": " A", "logprobs": {"tokens": [" A"], "token_logprobs": [-0.1],
                                                            "top_logprobs": [top]}}
        self.send_json(200, {"id": "x", "object": "text_completion", "choices": [choice]})


@pytest.fixture
def servers():
    """`servers()` starts one more recording server; all are stopped at the end."""
    with ExitStack() as started:
        yield lambda: started.enter_context(local_server(OpenAIish, requests=[]))


def project(make_repo, name: str, config: str):
    """A repository whose committed `.rcahook.toml` is `config`, with a few commits to rank."""
    g = make_repo(name)
    g.commit("parser: first version", {"src/parser.py": "def parse(text):\n    return text.split()\n"})
    g.commit("cache: add an LRU cache", {"src/cache.py": "def get(key):\n    return None\n"})
    g.commit("parser: handle empty input", {"src/parser.py": "def parse(text):\n    return (text or '').split()\n"})
    g.commit("config for rcahook", {".rcahook.toml": config})
    return g


def user_config(text: str) -> Path:
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def investigate(g, *args: str):
    return rcahook("investigate", "--repo", str(g.path), "--title", "parser crashes on empty input",
                   "--window", "10", "--no-save", "--format", "json", *args)


def warnings(result) -> list[str]:
    return [line for line in result.err.splitlines() if "ignored" in line]


def posts(server) -> list[tuple]:
    return [r for r in server.requests if r[0] == "POST"]


def test_a_repository_config_cannot_send_diffs_to_its_server(make_repo, servers, monkeypatch):
    evil, mine = servers(), servers()
    g = project(make_repo, "hostile", f'llm-url = "{evil.url}"\nranker = "logprob"\n')
    monkeypatch.setenv("RCAHOOK_LLM_API_KEY", KEY)
    path = user_config(f'llm-url = "{mine.url}"\n')

    result = investigate(g)

    assert result.code == 0, result.err
    assert evil.requests == []  # not one request, so neither diffs nor the key
    assert posts(mine) and all(r[2].get("Authorization") == f"Bearer {KEY}" for r in mine.requests)
    assert json.loads(result.out)["ranker"]["requested"] == "logprob"  # ranker is shareable
    [line] = warnings(result)  # once, one line
    assert "llm-url" in line and str(g.path / ".rcahook.toml") in line
    assert f'trusted-repositories = ["{g.path.resolve()}"]' in line and str(path) in line


def test_a_trusted_repository_config_is_honoured(make_repo, servers, monkeypatch):
    server = servers()
    g = project(make_repo, "ours", f'llm-url = "{server.url}"\nranker = "logprob"\n')
    monkeypatch.setenv("RCAHOOK_LLM_API_KEY", KEY)
    # the line the warning tells the user to add, with a path spelled through a symlink
    link = g.path.parent / "ours-link"
    link.symlink_to(g.path)
    user_config(f'trusted-repositories = ["{link}"]\n')

    result = investigate(g)

    assert result.code == 0, result.err
    assert posts(server) and server.requests[0][2].get("Authorization") == f"Bearer {KEY}"
    assert warnings(result) == []


def test_trusting_a_checkout_trusts_its_linked_worktrees(make_repo, servers):
    server = servers()
    g = project(make_repo, "main-checkout", f'llm-url = "{server.url}"\nranker = "logprob"\n')
    worktree = g.path.parent / "feature-worktree"
    g.git("worktree", "add", "-q", str(worktree))
    user_config(f'trusted-repositories = ["{g.path}"]\n')

    result = rcahook("investigate", "--repo", str(worktree), "--title", "parser crashes", "--window", "10",
                     "--no-save", "--format", "json")

    assert result.code == 0, result.err
    assert posts(server) and warnings(result) == []


def test_a_repository_cannot_trust_itself(make_repo, servers):
    evil = servers()
    g = make_repo("self-trusting")
    g.commit("parser", {"src/parser.py": "def parse(t):\n    return t\n"})
    g.commit("cfg", {".rcahook.toml": f'trusted-repositories = ["{g.path}"]\nllm-url = "{evil.url}"\n'
                                      'ranker = "logprob"\n'})

    result = investigate(g, "--model", "/nonexistent/model")  # a user model: nothing may go to evil

    assert evil.requests == []
    lines = warnings(result)
    assert any("trusted-repositories" in line and "only your own config" in line for line in lines)


def test_flag_beats_environment_beats_user_config(make_repo, servers, monkeypatch):
    from_file, from_env, from_flag = servers(), servers(), servers()
    g = project(make_repo, "plain", 'ranker = "logprob"\n')
    user_config(f'llm-url = "{from_file.url}"\n')

    assert investigate(g).code == 0
    assert posts(from_file) and not from_env.requests and not from_flag.requests

    from_file.requests.clear()
    monkeypatch.setenv("RCAHOOK_LLM_URL", from_env.url)
    assert investigate(g).code == 0
    assert posts(from_env) and not from_file.requests and not from_flag.requests

    from_env.requests.clear()
    assert investigate(g, "--llm-url", from_flag.url).code == 0
    assert posts(from_flag) and not from_file.requests and not from_env.requests


def test_user_config_model_name_and_tool_table(make_repo, servers):
    server = servers()
    g = project(make_repo, "named", 'ranker = "logprob"\n')
    user_config(f'[tool.rcahook]\nllm-url = "{server.url}"\nllm-model = "my-model"\n')

    result = investigate(g)

    assert result.code == 0, result.err
    assert posts(server) and not [r for r in server.requests if r[0] == "GET"]  # named: no discovery
    assert json.loads(result.out)["ranker"]["model"] == f"my-model@{server.url}"


def test_repository_thresholds_still_apply_when_its_server_is_ignored(make_repo, servers):
    evil = servers()
    g = project(make_repo, "strict", f'llm-url = "{evil.url}"\nmin-confidence = 0.99\nmax-candidates = 2\n'
                                     '[services]\nparsing = ["src/"]\n')

    result = investigate(g, "--service", "parsing")

    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["confidence"]["min_confidence"] == 0.99
    assert {"path": "src/", "source": "service parsing"} in doc["query"]["impacted"]
    assert evil.requests == [] and len(warnings(result)) == 1


def test_scan_reads_fail_above_from_the_repository_and_stays_quiet_about_servers(make_repo):
    g = make_repo("scanned")
    g.commit("a", {"a.py": "x = 1\n"})
    g.commit("cfg", {".rcahook.toml": 'fail-above = 0.25\nllm-url = "http://127.0.0.1:9"\n'})
    config = load_config(g.path)
    assert config.fail_above == 0.25 and config.llm_url is None and len(config.ignored) == 1


# -- the user's config file ------------------------------------------------------------------

def test_user_config_location_follows_xdg(tmp_path):
    assert user_config_path({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/h"}) == tmp_path / "rcahook/config.toml"
    assert user_config_path({"HOME": "/h"}) == Path("/h/.config/rcahook/config.toml")
    # the XDG spec: a relative value is ignored
    assert user_config_path({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path("/h/.config/rcahook/config.toml")


def test_tests_never_see_the_developers_config():
    assert Path(os.environ["XDG_CONFIG_HOME"]) != Path.home() / ".config"
    assert not user_config_path().exists()
    assert "RCAHOOK_LLM_URL" not in os.environ and "RCAHOOK_LLM_API_KEY" not in os.environ


@pytest.mark.parametrize("text, message", [
    ("llm-url = [1]\n", "llm-url must be a non-empty string"),
    ("api-key = 'x'\n", "unknown rcahook setting(s) api-key"),
    ('trusted-repositories = ["src/app"]\n', "not an absolute path"),
    ("llm-url = \n", "is not valid TOML"),
])
def test_a_bad_user_config_names_the_file_and_the_problem(tmp_path, text, message):
    path = user_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_a_bad_user_config_is_one_line_from_the_cli(make_repo):
    g = project(make_repo, "any", "min-confidence = 0.3\n")
    path = user_config("min-confidence = 7\n")
    result = investigate(g)
    assert result.code == 19 and result.out == ""
    [line] = result.err.strip().splitlines()
    assert str(path) in line and "min-confidence" in line


# -- the Python floor ------------------------------------------------------------------------

def test_python_floor_declares_the_toml_parser_it_needs():
    project_table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = re.search(r">=\s*3\.(\d+)", project_table["requires-python"])
    assert floor, project_table["requires-python"]
    if int(floor.group(1)) < 11:  # tomllib is 3.11+: below, tomli must be declared for those versions
        assert any(re.match(r'tomli>=2;\s*python_version\s*<\s*"3\.11"', d) for d in project_table["dependencies"])


def _python310() -> str | None:
    import pwd

    home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # the real home: HOME points at a tmp dir in tests
    for exe in ["python3.10", *map(str, sorted(home.glob(".pyenv/versions/3.10*/bin/python")))]:
        try:
            done = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"],
                                  check=False, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == "(3, 10)":
            return exe
    return None


def test_the_package_parses_on_the_python_floor():
    exe = _python310()
    if exe is None:
        pytest.skip("no Python 3.10 interpreter here")
    # compile() only, nothing written: a 3.11+ syntax anywhere in the package fails here
    script = ("import pathlib, sys\n"
              "for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.py')):\n"
              "    compile(p.read_bytes(), str(p), 'exec')\n")
    done = subprocess.run([exe, "-c", script, str(ROOT / "rcahook")], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert sys.version_info >= (3, 10)


def test_the_config_docs_list_every_key_where_the_code_reads_it():
    from rcahook.config import ENVIRONMENT, KEYS, SHARED_KEYS, TRUST_KEY, UNSAFE_KEYS

    rows = {m.group(1): line for line in (ROOT / "docs" / "config.md").read_text().splitlines()
            if (m := re.match(r"\| `([a-z-]+)`", line))}
    assert set(rows) == {*KEYS, TRUST_KEY}
    for key in SHARED_KEYS:
        assert "yes (shared)" in rows[key]
    for key in UNSAFE_KEYS:
        assert "only if trusted" in rows[key]
    for key, variable in ENVIRONMENT.items():
        assert f"`{variable}`" in rows[key]


def test_a_config_linked_out_of_the_repository_is_refused(make_repo, tmp_path):
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("min-confidence = 0.5\n")
    g = make_repo("linked")
    (g.path / ".rcahook.toml").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="outside the repository"):
        load_config(g.path)

"""The investigation pipeline on small throw-away repositories with a planted culprit."""
from __future__ import annotations

import types
from datetime import datetime, timedelta, timezone

import pytest

from rcahook.config import Config, parse_config
from rcahook.errors import BadInputError, EmptySearchSpaceError, NotFoundError, UnknownRevisionError
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from rcahook.rca.incident import Incident
from rcahook.rca.investigate import Options, _simple_name, investigate, options_from
from rcahook.rca.reasons import human_age, relative_age
from rcahook.rca.report import to_json

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
INCIDENT_TIME = T0 + timedelta(days=5)

CACHE_PY = '''"""A small LRU cache."""


def make_cache(size):
    return {"size": size, "items": {}}


def evict_entries(cache, *, keep=100):
    items = cache["items"]
    while len(items) > keep:
        items.pop(next(iter(items)))
'''
CULPRIT_CACHE_PY = CACHE_PY.replace(
    '''    while len(items) > keep:
        items.pop(next(iter(items)))''',
    '''    by_size = sorted(items, key=lambda k: cache_entry_size(items[k]))
    while len(items) > keep:
        items.pop(by_size.pop())''')
SERVER_PY = '''from app.cache import evict_entries


def handle_request(cache, request):
    evict_entries(cache)
    return request
'''
TRACE = '''Traceback (most recent call last):
  File "/srv/app/app/server.py", line 5, in handle_request
    evict_entries(cache)
  File "/srv/app/app/cache.py", line 12, in evict_entries
    items.pop(by_size.pop())
KeyError: 'session:42'
'''


def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


@pytest.fixture
def planted(make_repo, tmp_path):
    """~25 commits over ten days in three components; the culprit breaks app/cache.py."""
    g = make_repo("planted")
    g.commit("Initial import", {"app/cache.py": CACHE_PY, "app/server.py": SERVER_PY,
                                "net/socket.c": "int open_socket(void) { return 0; }\n",
                                "docs/guide.md": "# guide\n", "lib/util.py": "def clamp(x):\n    return x\n",
                                ".rcahook.toml": '[services]\napi = ["app/"]\nnet = ["net/"]\n'},
             author="Ann <ann@example.com>", date=_at(0))
    fillers = [("net: retry socket setup on EINTR", "net/socket.c", "int open_socket(void) { return 1; }\n"),
               ("docs: explain the configuration file", "docs/guide.md", "# guide\n\nconfig\n"),
               ("util: clamp negative values", "lib/util.py", "def clamp(x):\n    return max(x, 0)\n"),
               ("net: log socket errors", "net/socket.c", "int open_socket(void) { log(); return 1; }\n"),
               ("docs: add a FAQ", "docs/faq.md", "# faq\n"),
               ("util: document clamp", "lib/util.py", "def clamp(x):\n    # never negative\n    return max(x, 0)\n")]
    shas = {}
    hour = 1.0
    for round_ in range(3):
        for subject, path, content in fillers:
            hour += 6
            shas[subject] = g.commit(f"{subject} ({round_})", {path: content + f"// {round_}\n" * (round_ > 0)},
                                     author="Bob <bob@example.com>", date=_at(hour))
        if round_ == 1:
            hour += 3
            culprit = g.commit("cache: evict the largest entries first", {"app/cache.py": CULPRIT_CACHE_PY},
                               author="Cat <cat@example.com>", date=_at(hour))
    late = g.commit("docs: note written after the incident", {"docs/late.md": "late\n"},
                    author="Bob <bob@example.com>", date=(INCIDENT_TIME + timedelta(hours=2)).isoformat())
    repo = Repo(g.path)
    db = g.path / ".git" / "rcahook" / "index.sqlite"
    index_repository(repo, db)
    history = History.open(db)
    yield types.SimpleNamespace(git=g, repo=repo, history=history, db=db, culprit=culprit, late=late,
                                config=parse_config({".rcahook.toml": (g.path / ".rcahook.toml").read_bytes()}))
    history.close()


def incident(**kw) -> Incident:
    kw.setdefault("title", "cache: KeyError in evict_entries under load")
    kw.setdefault("time", INCIDENT_TIME)
    return Incident(**kw)


def run(p, inc: Incident, **options):
    return investigate(p.repo, p.history, inc, Options(**options), config=p.config, index_dir=p.db.parent)


def test_planted_culprit_ranks_first_with_reasons(planted):
    result = run(planted, incident(stack_trace=TRACE, services=("api",)))
    top = result.suggestions[0]
    assert top.candidate.sha == planted.culprit
    kinds = {r.kind for r in top.reasons}
    assert {"impacted_path", "text_match", "same_component", "recent"} <= kinds
    assert any("app/cache.py (stack frame)" in r.text for r in top.reasons)
    assert top.age.endswith("before")
    assert len(result.suggestions) == 5
    assert 0 < result.confidence <= 1
    assert abs(sum(s.share for s in result.suggestions) - result.confidence) < 1e-9


def test_commits_after_the_incident_time_are_not_suspects(planted):
    result = run(planted, incident(), top=50)
    shas = {s.candidate.sha for s in result.suggestions}
    assert planted.late not in shas and planted.culprit in shas
    assert planted.late not in result.space.shas
    windowed = run(planted, incident(window=5), top=50)
    assert len(windowed.space.shas) == 5 and planted.late not in windowed.space.shas


def test_since_narrows_the_search_space(planted):
    wide = run(planted, incident())
    narrow = run(planted, incident(since=timedelta(days=1)))
    assert 0 < len(narrow.space.shas) < len(wide.space.shas)
    assert planted.culprit not in narrow.space.shas  # it landed 44 hours before


def test_empty_search_space_names_the_window_and_what_to_widen(planted):
    with pytest.raises(EmptySearchSpaceError) as e:
        run(planted, incident(time=T0 - timedelta(days=30)))
    message = str(e.value)
    assert "14 days before" in message and "--since" in message and "--window" in message


def test_unknown_revision_and_unindexed_revision(planted):
    with pytest.raises(UnknownRevisionError):
        run(planted, incident(at="no-such-branch"))
    planted.git.commit("later, not indexed", {"x.txt": "x"}, date=_at(300))
    with pytest.raises(NotFoundError, match="rcahook index"):
        run(planted, incident(at="HEAD"))


def test_stack_trace_becomes_impacted_paths_and_functions(planted):
    result = run(planted, incident(stack_trace=TRACE))
    q = result.prepared.query
    assert q.impacted_paths[:2] == ("app/cache.py", "app/server.py")
    assert q.functions == ("evict_entries", "handle_request")
    assert result.prepared.sources["app/cache.py"] == "stack frame"


def test_trace_outside_the_repository_warns_and_continues(planted):
    seen = []
    trace = ('Traceback (most recent call last):\n  File "/usr/lib/python3/json/decoder.py", line 3, in decode\n'
             "ValueError\n")
    result = investigate(planted.repo, planted.history, incident(stack_trace=trace), Options(),
                         config=planted.config, index_dir=planted.db.parent, warn=seen.append)
    assert len(seen) == 1 and "none of the 1 stack frame(s) is in this repository" in seen[0] and "\n" not in seen[0]
    assert result.suggestions and result.warnings == seen


def test_services_expand_to_prefixes_and_unknown_ones_are_named(planted):
    result = run(planted, incident(title="requests time out", services=("net",), since=timedelta(days=4)), top=3)
    assert result.prepared.sources == {"net/": "service net"}
    top = result.suggestions[0]
    assert top.candidate.commit.paths == ("net/socket.c",)
    assert any(r.kind == "impacted_path" and "net/socket.c (in net/: service net)" in r.text for r in top.reasons)
    with pytest.raises(BadInputError, match="known services: api, net"):
        run(planted, incident(services=("nope",)))


def test_impacted_directory_gets_a_trailing_slash(planted):
    result = run(planted, incident(impacted_paths=("app",)))
    assert result.prepared.query.impacted_paths == ("app/",)


def test_min_confidence_abstains_but_lists_leads_newest_first(planted):
    result = run(planted, incident(), min_confidence=1.0)
    assert not result.confident
    doc = to_json(result, inv_id=None, created=0)
    assert doc["order"] == "newest_first"
    assert doc["headline"].startswith("no confident suggestion")
    assert all(s["rank"] is None for s in doc["suggestions"])
    times = [s["committed"] for s in doc["suggestions"]]
    assert times == sorted(times, reverse=True) and len(times) == 5


def test_bisect_range_runs_from_at_to_the_parent_of_the_oldest_suggestion(planted):
    result = run(planted, incident(since=timedelta(days=4)))  # not back to the root commit
    doc = to_json(result, inv_id=None, created=0)
    position = {sha: i for i, sha in enumerate(result.space.shas)}
    oldest = max(result.suggestions, key=lambda s: position[s.candidate.sha]).candidate.sha
    assert doc["bisect"]["good"] == planted.history.parents(oldest)[0]
    assert doc["bisect"]["bad"] == result.space.at
    assert doc["bisect"]["command"] == f"git bisect start {result.space.at[:12]} {doc['bisect']['good'][:12]}"
    for s in doc["suggestions"]:
        assert s["verify"]["show"] == f"git show {s['sha'][:12]}"
        assert s["verify"]["revert"] == f"git revert --no-commit {s['sha'][:12]}"


def test_code_graph_hops_become_a_feature_and_a_reason(planted):
    # server.handle_request calls cache.evict_entries (imported): one call step away
    result = run(planted, incident(title="server: requests fail in handle_request", since=timedelta(days=4)))
    top = result.suggestions[0]
    assert top.candidate.sha == planted.culprit
    assert top.candidate.evidence.graph_hops == 1
    assert any(r.kind == "graph" and "1 call/import step" in r.text for r in top.reasons)



def test_options_take_config_defaults_unless_flags_say_otherwise():
    config = Config(min_confidence=0.5, ranker="logprob", max_candidates=50, model="/m", source=".rcahook.toml")
    flags = dict(ranker=None, model=None, llm_url=None, llm_model=None, llm_top=40, max_candidates=None,
                 min_confidence=None, strict=False, top=5)
    o = options_from(config, **flags)
    assert (o.ranker, o.min_confidence, o.max_candidates, o.model) == ("logprob", 0.5, 50, "/m")
    o = options_from(config, **{**flags, "ranker": "features", "min_confidence": 0.1, "llm_url": "http://x"})
    assert (o.ranker, o.min_confidence, o.model, o.llm_url) == ("features", 0.1, None, "http://x")
    with pytest.raises(BadInputError):
        options_from(Config(), **{**flags, "min_confidence": 1.5})


@pytest.mark.parametrize("raw, name", [("pkg.mod.Class.method", "method"), ("ns::fn", "fn"),
                                        ("main.(*Server).Serve", "Serve"), ("<module>", None), ("run", "run")])
def test_frame_function_names(raw, name):
    assert _simple_name(raw) == name


def test_ages_read_at_a_glance():
    assert [human_age(s) for s in (30, 600, 3 * 3600, 50 * 3600, 12 * 86400)] == ["<1m", "10m", "3h", "2d 2h", "12d"]
    assert relative_age(1000, 1000 + 7200) == "2h before"
    assert relative_age(1000 + 7200, 1000) == "2h after"

"""`rcahook serve`'s HTTP API in process: the CLI's JSON, the CLI's feedback store, deploys,
security (token, limits, CSP, escaping), and concurrency on a real SQLite file."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading

import fastapi  # noqa: F401 (the serve extra is part of `make setup`: a missing one fails here)
import jsonschema
import pytest

from clirun import rcahook
from rcahook.rca import feedback as fb
from rcahook.rca.report import JSON_SCHEMA
from serveapp import TOKEN, client, indexed_demo, service, verdicts_in_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return indexed_demo(tmp_path_factory.mktemp("serve-api") / "repo")


@pytest.fixture
def api(demo):
    with client(service(demo.path)) as c:
        yield c


def git(path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


def test_creating_an_investigation_returns_the_cli_json_with_id_and_url(api, demo):
    r = api.post("/api/investigations", json=demo.incident)
    assert r.status_code == 201, r.text
    doc = r.json()
    jsonschema.validate(doc, JSON_SCHEMA)
    assert doc["url"] == f"http://127.0.0.1:8340/investigations/{doc['id']}" and doc["repository"] == "demo"
    assert doc["suggestions"][0]["sha"] == demo.culprit and doc["order"] == "ranked"
    cli = rcahook("investigate", "--repo", str(demo.path), "--incident", str(demo.demo.incident_file),
                  "--format", "json", "--no-save", "--no-update")
    assert cli.code == 0, cli.err
    expected = json.loads(cli.out)
    assert [s["sha"] for s in doc["suggestions"]] == [s["sha"] for s in expected["suggestions"]]
    assert doc["confidence"]["value"] == expected["confidence"]["value"]
    assert doc["search_space"]["commits"] == expected["search_space"]["commits"]


def test_the_openapi_schema_documents_the_api_and_the_webhooks(api):
    schema = api.get("/openapi.json").json()
    assert {"/api/health", "/api/investigations", "/api/investigations/{inv_id}",
            "/api/investigations/{inv_id}/feedback", "/api/deploys", "/webhooks/alertmanager",
            "/webhooks/pagerduty", "/webhooks/sentry"} <= set(schema["paths"])
    assert {"AlertmanagerWebhook", "PagerDutyWebhook", "SentryWebhook", "FeedbackIn", "DeployIn"} <= set(
        schema["components"]["schemas"])
    assert "/investigations/{inv_id}" not in schema["paths"] and "/login" not in schema["paths"]


def test_investigations_are_listed_and_fetched_with_the_saved_report(api, demo):
    created = api.post("/api/investigations", json=demo.incident).json()
    listed = api.get("/api/investigations").json()["investigations"]
    assert created["id"] in [i["id"] for i in listed]
    row = next(i for i in listed if i["id"] == created["id"])
    assert row["top"]["sha"] == demo.culprit and row["url"] == created["url"]
    fetched = api.get(f"/api/investigations/{created['id']}").json()
    assert fetched["incident"] == created["incident"] and fetched["verdicts"] == []
    assert [s["sha"] for s in fetched["suggestions"]] == [s["sha"] for s in created["suggestions"]]
    assert api.get("/api/investigations/inv-20000101-0000").status_code == 404
    assert api.get("/api/investigations/../../etc/passwd").status_code == 404


def test_feedback_goes_to_the_store_rcahook_feedback_reads(api, demo):
    doc = api.post("/api/investigations", json=demo.incident).json()
    second = doc["suggestions"][1]["sha"]
    r = api.post(f"/api/investigations/{doc['id']}/feedback",
                 json={"root_cause": demo.culprit[:10], "not": [second], "note": "reverted at 10:05"})
    assert r.status_code == 201, r.text
    stored = verdicts_in_store(demo.state, doc["id"])
    assert [(v.verdict, v.sha, v.rank) for v in stored] == [("root_cause", demo.culprit, 1), ("not", second, 2)]
    shown = rcahook("feedback", doc["id"], "--repo", str(demo.path))
    assert shown.code == 0 and f"{demo.culprit[:12]} root cause" in shown.out
    assert api.post(f"/api/investigations/{doc['id']}/feedback", json={}).status_code == 422
    bad = api.post(f"/api/investigations/{doc['id']}/feedback", json={"root_cause": "HEAD~1"})
    assert bad.status_code == 422 and "root_cause" in bad.json()["error"]


def test_a_malformed_incident_is_422_naming_the_field(api):
    r = api.post("/api/investigations", json={"title": "checkout broken", "time": "yesterday"})
    assert r.status_code == 422 and "field 'time'" in r.json()["error"]
    r = api.post("/api/investigations", json={"description": "no title"})
    assert r.status_code == 422 and "'title' is required" in r.json()["error"]
    r = api.post("/api/investigations", json={"title": "x", "llm_url": "http://evil.example"})
    assert r.status_code == 422 and "unknown field 'llm_url'" in r.json()["error"]
    r = api.post("/api/investigations", json=["not", "a", "mapping"])
    assert r.status_code == 422
    assert api.post("/api/investigations?repository=other", json={"title": "x"}).status_code == 404


def test_below_the_threshold_the_page_abstains_and_lists_leads_newest_first(demo):
    from rcahook.serve.repos import ServeOptions

    with client(service(demo.path, options=ServeOptions(min_confidence=1.0))) as api:
        doc = api.post("/api/investigations", json={"title": "landing page logo renders in the wrong colour",
                                                    "time": "2024-05-02T09:50:00Z"}).json()
        page = api.get(f"/investigations/{doc['id']}").text
    assert doc["order"] == "newest_first" and all(s["rank"] is None for s in doc["suggestions"])
    times = [s["committed"] for s in doc["suggestions"]]
    assert times == sorted(times, reverse=True)
    assert "rcahook abstains" in page and "<h2>Leads</h2>" in page and "<h2>Suspects</h2>" not in page


def test_request_paths_are_never_read_from_disk(api, demo, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    incident = {**demo.incident, "impacted_paths": [str(secret), "../../../../etc/passwd"],
                "stack_trace": f'Traceback (most recent call last):\n  File "{secret}", line 1, in x\nError: boom'}
    r = api.post("/api/investigations", json=incident)
    assert r.status_code == 201, r.text
    page = api.get(f"/investigations/{r.json()['id']}")
    assert "TOP-SECRET-CONTENT" not in r.text + page.text and "root:x:" not in r.text + page.text


def test_deploys_bound_the_search_space_to_what_the_last_deploy_shipped(api, demo):
    log = git(demo.path, "log", "--format=%H %ct", "--first-parent", "main").splitlines()
    shas = [line.split()[0] for line in log]
    previous, last = shas[12], shas[3]  # last went live 1h before the incident; previous the day before
    incident_time = "2024-05-02T09:50:00Z"
    assert api.post("/api/deploys", json={"environment": "prod", "sha": previous[:10],
                                          "time": "2024-05-01T08:00:00Z"}).status_code == 201
    r = rcahook("deploy", "record", "--repo", str(demo.path), "--environment", "prod", "--sha", last,
                "--time", "2024-05-02T08:50:00Z")
    assert r.code == 0, r.err
    listed = api.get("/api/deploys?environment=prod").json()["deploys"]
    assert [d["sha"] for d in listed] == [last, previous]
    cli = rcahook("deploy", "list", "--repo", str(demo.path), "--environment", "prod", "--format", "json")
    assert [d["sha"] for d in json.loads(cli.out)] == [last, previous]
    doc = api.post("/api/investigations?environment=prod", json=demo.incident).json()
    shipped = git(demo.path, "rev-list", "--no-merges", last, "--not", previous).split()
    assert doc["search_space"]["commits"] == len(shipped) and doc["search_space"]["at"] == last
    assert doc["search_space"]["deploys"]["previous"]["sha"] == previous
    assert {s["sha"] for s in doc["suggestions"]} <= set(shipped)
    assert all(s["deployed_at"]["time"] == "2024-05-02T08:50:00Z" for s in doc["suggestions"])
    assert doc["incident"]["time"] == incident_time
    # the incident's service names an environment too; no deploys known there: the usual window
    plain = api.post("/api/investigations?environment=staging", json=demo.incident).json()
    assert plain["search_space"]["deploys"] is None and plain["search_space"]["commits"] > len(shipped)
    assert all(s["deployed_at"] is None for s in plain["suggestions"])
    page = api.get(f"/investigations/{doc['id']}").text
    assert "deployed to prod at 2024-05-02 08:50 UTC" in page and "deploy " + last[:7] in page
    unknown = api.post("/api/deploys", json={"environment": "prod", "sha": "f" * 40})
    assert unknown.status_code == 422 and "f" * 12 in unknown.json()["error"]
    assert api.post("/api/deploys", json={"environment": "prod", "sha": "HEAD"}).status_code == 422


def test_the_state_database_gains_the_deploys_table_and_keeps_its_verdicts(tmp_path):
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    v1 = fb._SCHEMA.split("-- Deploy events")[0]
    conn.executescript(f"{v1}\nINSERT INTO meta VALUES ('schema_version', '1');")
    conn.execute("INSERT INTO investigations VALUES ('inv-20240501-abcd', 1, 'r', 'a', 'features', '{}', '{}')")
    conn.close()
    conn = fb.open_state(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert conn.execute("SELECT COUNT(*) FROM deploys").fetchone()[0] == 0
    assert fb.get_investigation(conn, "inv-20240501-abcd").ranker == "features"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("INSERT INTO deploys (environment, sha, time, recorded) VALUES ('p', 'a', 1, 1)")
        conn.execute("DELETE FROM deploys")
    conn.close()


# -- security -------------------------------------------------------------------------------

def test_a_token_guards_every_api_call_and_the_pages(demo):
    with client(service(demo.path, token=TOKEN)) as api:
        assert api.get("/api/health").status_code == 401
        assert api.get("/api/health", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        ok = api.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["repositories"][0]["head"]
        assert api.post("/api/investigations", json=demo.incident).status_code == 401
        assert api.post("/api/deploys", json={"environment": "p", "sha": demo.culprit}).status_code == 401
        page = api.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
        assert api.post("/login", data={"token": "nope"}).status_code == 401
        signed_in = api.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        assert "httponly" in signed_in.headers["set-cookie"].lower()
        assert "samesite=strict" in signed_in.headers["set-cookie"].lower()
        assert api.get("/").status_code == 200  # the cookie now
        created = api.post("/api/investigations", json=demo.incident, headers={"Origin": "http://127.0.0.1:8340"})
        assert created.status_code == 201
        cross = api.post(f"/api/investigations/{created.json()['id']}/feedback", json={"root_cause": demo.culprit},
                         headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403


def test_binding_beyond_loopback_needs_a_token_file(demo, tmp_path):
    r = rcahook("serve", "--repo", f"demo={demo.path}", "--host", "0.0.0.0")
    assert r.code == 15 and "--token-file" in r.err
    short = tmp_path / "token"
    short.write_text("abc\n")
    r = rcahook("serve", "--repo", f"demo={demo.path}", "--host", "0.0.0.0", "--token-file", str(short))
    assert r.code == 15 and "at least 16" in r.err


def test_oversized_bodies_are_refused_with_413(api):
    r = api.post("/api/investigations", content=b"{" + b" " * (1 << 20) + b"}",
                 headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]


def test_pages_send_a_csp_and_escape_untrusted_text(make_repo):
    repo = make_repo("hostile")
    repo.commit("init", {"app/main.py": "def main():\n    return 1\n",
                         ".rcahook.toml": 'commit-url = "https://forge.example/acme/app/commit/{sha}"\n'})
    evil = repo.commit('app: <img src=x onerror=alert(1)> "quoted" & <script>alert(2)</script>',
                       {"app/main.py": "def main():\n    return '<script>alert(3)</script>'\n"},
                       author="<b>Mallory</b> <m@example.com>")
    for i in range(4):
        repo.commit(f"app: tweak {i}", {f"app/f{i}.py": f"x = {i}\n"})
    assert rcahook("index", "--repo", str(repo.path), "-q").code == 0
    with client(service(repo.path, name="hostile")) as api:
        doc = api.post("/api/investigations", json={
            "title": "main returns <script>alert(4)</script>", "time": "2024-01-02T00:00:00Z",
            "impacted_paths": ["app/main.py"]}).json()
        page = api.get(f"/investigations/{doc['id']}")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    html = page.text
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>Mallory" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(4)&lt;/script&gt;" in html
    assert f'href="https://forge.example/acme/app/commit/{evil}"' in html
    assert '<script src="/static/rcahook.js" defer></script>' in html
    assert html.count("<script") == 1  # only the file the CSP allows


def test_the_operator_alone_chooses_the_model_server(demo, monkeypatch, tmp_path):
    from rcahook.index.gitrepo import Repo
    from rcahook.serve.repos import operator_config

    (demo.path / ".rcahook.toml").write_text(  # top-level keys before the [services] table
        'llm-url = "http://repo-chosen.example:8000"\n' + (demo.path / ".rcahook.toml").read_text())
    user = tmp_path / "xdg" / "rcahook"
    user.mkdir(parents=True)
    (user / "config.toml").write_text(f'trusted-repositories = ["{demo.path}"]\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    try:
        config = operator_config(Repo(demo.path), None)
        assert config.llm_url is None and config.model is None
        assert set(config.services) == {"billing", "auth", "search", "http"}
        monkeypatch.setenv("RCAHOOK_LLM_URL", "http://operator.example:8000")
        assert operator_config(Repo(demo.path), None).llm_url == "http://operator.example:8000"
    finally:
        git(demo.path, "checkout", "--", ".rcahook.toml")


# -- concurrency -----------------------------------------------------------------------------

def test_twenty_concurrent_investigations_all_complete_with_the_right_result(demo):
    import httpx

    from rcahook.serve.app import create_app

    app = create_app(service(demo.path))
    expected = None

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8340", timeout=300) as c:
            first = await c.post("/api/investigations", json=demo.incident)
            nonlocal expected
            expected = [s["sha"] for s in first.json()["suggestions"]]
            return await asyncio.gather(*(c.post("/api/investigations", json=demo.incident) for _ in range(20)))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    docs = [r.json() for r in responses]
    assert all([s["sha"] for s in d["suggestions"]] == expected for d in docs)
    assert expected[0] == demo.culprit and len({d["id"] for d in docs}) == 20
    conn = fb.open_state(demo.state, create=False)
    try:
        saved = {s.id for s in fb.list_investigations(conn)}
    finally:
        conn.close()
    assert {d["id"] for d in docs} <= saved


def test_two_feedback_requests_at_once_are_both_kept(api, demo):
    doc = api.post("/api/investigations", json=demo.incident).json()
    shas = [s["sha"] for s in doc["suggestions"]]
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def send(body: dict) -> None:
        barrier.wait()
        codes.append(api.post(f"/api/investigations/{doc['id']}/feedback", json=body).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in ({"root_cause": shas[0]}, {"not": [shas[1]]})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [201, 201]
    assert {(v.verdict, v.sha) for v in verdicts_in_store(demo.state, doc["id"])} == {
        ("root_cause", shas[0]), ("not", shas[1])}


def test_an_index_update_during_reads_serves_the_old_or_the_new_state(make_repo):
    """Investigations keep running while the background update indexes new commits: each
    answer is exactly the one before the update or the one after it."""
    from rcahook.serve.repos import Updater

    repo = make_repo("moving")
    repo.commit("init", {"svc/pay.py": "def pay(amount):\n    return charge(amount)\n",
                         "svc/util.py": "def charge(amount):\n    return amount\n"})
    for i in range(6):
        repo.commit(f"svc: tidy helper {i}", {f"svc/h{i}.py": f"def helper{i}():\n    return {i}\n"})
    assert rcahook("index", "--repo", str(repo.path), "-q").code == 0
    incident = {"title": "pay charges the wrong amount", "time": "2024-01-04T00:00:00Z",
                "impacted_paths": ["svc/pay.py"]}
    svc = service(repo.path, name="moving")
    served = svc.repos["moving"]
    with client(svc) as api:
        errors: list[tuple[int, str]] = []

        def answer() -> tuple:
            r = api.post("/api/investigations", json=incident)
            if r.status_code != 201:  # kept, then asserted on: a thread's exception would only warn
                errors.append((r.status_code, r.text[:500]))
                return ()
            d = r.json()
            return d["search_space"]["at"], d["search_space"]["commits"], tuple(s["sha"] for s in d["suggestions"])

        before = answer()
        for i in range(40):  # enough new history that the update takes several transactions
            repo.commit(f"svc: pay rounding {i}",
                        {"svc/pay.py": f"def pay(amount):\n    return charge(amount) + {i}\n"})
        seen: list[tuple] = []
        stop = threading.Event()

        def keep_reading() -> None:
            while not stop.is_set():
                seen.append(answer())

        readers = [threading.Thread(target=keep_reading) for _ in range(2)]
        for t in readers:
            t.start()
        Updater([served], interval=0).update(served)  # what the background thread runs, waited for here
        stop.set()
        for t in readers:
            t.join()
        after = answer()
    assert not errors
    assert served.last_error is None and after != before and after[1] == before[1] + 40
    assert seen and set(seen) <= {before, after}

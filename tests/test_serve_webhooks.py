"""Alert webhooks: payloads as Alertmanager, PagerDuty (v3) and Sentry (issue alerts) document
them, their signatures, and 422 naming the field of a malformed one."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json

import fastapi  # noqa: F401 (the serve extra is part of `make setup`: a missing one fails here)
import pytest

from serveapp import TOKEN, client, indexed_demo, service

PD_SECRET = "pd-subscription-secret-0123456789abcdef"
SENTRY_SECRET = "sentry-client-secret-fedcba9876543210"

# https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (version 4)
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}/{service="billing"}:{alertname="CheckoutChargeErrors"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "rcahook",
    "groupLabels": {"alertname": "CheckoutChargeErrors"},
    "commonLabels": {"alertname": "CheckoutChargeErrors", "service": "billing", "env": "prod",
                     "severity": "page"},
    "commonAnnotations": {"summary": "card charges failing with RetryExhausted",
                          "description": "8% of POST /v1/charges give up after 1 attempt since the 09:30 deploy"},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "CheckoutChargeErrors", "service": "billing", "env": "prod", "severity": "page",
                   "instance": "billing-7f9c:9102", "job": "billing"},
        "annotations": {"summary": "card charges failing with RetryExhausted",
                        "description": "8% of POST /v1/charges give up after 1 attempt since the 09:30 deploy"},
        "startsAt": "2024-05-02T09:47:12.739266876Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate%28charge_errors%5B5m%5D%29",
        "fingerprint": "c6eadffa33fcdf37",
    }],
}

# https://developer.pagerduty.com/docs/webhooks/v3-overview (incident.triggered, data.type incident)
PAGERDUTY = {
    "event": {
        "id": "01DEN2UL8RWPXVEDYKLHSQ2YAN",
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "occurred_at": "2024-05-02T09:50:02.169Z",
        "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
                  "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": "Alertmanager",
                  "type": "user_reference"},
        "client": {"name": "PagerDuty"},
        "data": {
            "id": "PGR0VU2", "type": "incident", "self": "https://api.pagerduty.com/incidents/PGR0VU2",
            "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2", "number": 2, "status": "triggered",
            "incident_key": "d3640fbd41094207a1c11e58e46b1662", "created_at": "2024-05-02T09:50:00Z",
            "title": "billing: card charges failing with RetryExhausted since the morning deploy",
            "service": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH", "id": "PF9KMXH",
                        "self": "https://api.pagerduty.com/services/PF9KMXH", "summary": "Billing",
                        "type": "service_reference"},
            "assignees": [{"html_url": "https://acme.pagerduty.com/users/PTUXL6G", "id": "PTUXL6G",
                           "self": "https://api.pagerduty.com/users/PTUXL6G", "summary": "Alice Moreau",
                           "type": "user_reference"}],
            "escalation_policy": {"html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE",
                                  "id": "PUS0KTE", "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE",
                                  "summary": "Default", "type": "escalation_policy_reference"},
            "teams": [{"html_url": "https://acme.pagerduty.com/teams/PFCVPS0", "id": "PFCVPS0",
                       "self": "https://api.pagerduty.com/teams/PFCVPS0", "summary": "Payments",
                       "type": "team_reference"}],
            "priority": {"html_url": "https://acme.pagerduty.com/account/incident_priorities", "id": "PSO75BM",
                         "self": "https://api.pagerduty.com/priorities/PSO75BM", "summary": "P1",
                         "type": "priority_reference"},
            "urgency": "high",
            "conference_bridge": {"conference_number": "+1 1234123412,,987654321#",
                                  "conference_url": "https://example.com"},
            "resolve_reason": None,
        },
    },
}


def sentry_payload() -> dict:
    """docs.sentry.io: integration platform, webhooks, issue alerts (Sentry-Hook-Resource:
    event_alert); frames oldest call first, the exception where the last one raised it."""
    frames = [
        {"abs_path": "/srv/acme/services/billing/checkout.py", "filename": "services/billing/checkout.py",
         "function": "complete_checkout", "module": "services.billing.checkout", "lineno": 30, "in_app": True,
         "context_line": "    charge = charge_customer(order.customer_id, total)"},
        {"abs_path": "/srv/acme/services/billing/charge.py", "filename": "services/billing/charge.py",
         "function": "charge_customer", "module": "services.billing.charge", "lineno": 19, "in_app": True},
        {"abs_path": "/srv/acme/services/billing/client.py", "filename": "services/billing/client.py",
         "function": "post_charge", "module": "services.billing.client", "lineno": 24, "in_app": True},
        {"abs_path": "/srv/acme/libs/http/retry.py", "filename": "libs/http/retry.py",
         "function": "request_with_retry", "module": "libs.http.retry", "lineno": 43, "in_app": True},
    ]
    return {
        "action": "triggered",
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {
            "event": {
                "_ref": 1, "_ref_version": 2,
                "contexts": {"runtime": {"name": "CPython", "type": "runtime", "version": "3.11.7"}},
                "culprit": "libs.http.retry in request_with_retry",
                "datetime": "2024-05-02T09:49:30.677000Z",
                "dist": None,
                "environment": "production",
                "event_id": "e4874d664c3540c1a32eab185f12c5ab",
                "exception": {"values": [{
                    "mechanism": {"handled": False, "type": "excepthook"},
                    "module": "libs.http.errors",
                    "stacktrace": {"frames": frames},
                    "type": "RetryExhausted",
                    "value": "POST https://gateway.payments.example/v1/charges gave up after 1 attempt(s)",
                }]},
                "fingerprint": ["{{ default }}"],
                "grouping_config": {"enhancements": "eJybzDRxY3J", "id": "newstyle:2023-01-11"},
                "hashes": ["29f68e6bd10b4b1b8a5cb7d4fc9a6b4a"],
                "issue_url": "https://sentry.io/api/0/issues/1117540176/",
                "issue_id": "1117540176",
                "key_id": "667532",
                "level": "error",
                "location": "libs/http/retry.py",
                "logger": "",
                "message": "",
                "metadata": {"type": "RetryExhausted", "value": "POST ... gave up after 1 attempt(s)"},
                "platform": "python",
                "project": 1,
                "received": 1714643370.82,
                "release": "billing@2024.05.02-1",
                "sdk": {"name": "sentry.python", "version": "2.1.1"},
                "tags": [["environment", "production"], ["level", "error"], ["service", "billing"],
                         ["release", "billing@2024.05.02-1"]],
                "timestamp": 1714643370.677,
                "title": "RetryExhausted: POST https://gateway.payments.example/v1/charges gave up after 1 attempt(s)",
                "type": "error",
                "url": "https://sentry.io/api/0/projects/acme/billing/events/e4874d664c3540c1a32eab185f12c5ab/",
                "web_url": "https://sentry.io/organizations/acme/issues/1117540176/events/"
                           "e4874d664c3540c1a32eab185f12c5ab/",
                "version": "7",
            },
            "triggered_rule": "Page on new billing errors",
        },
        "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
    }


def body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return indexed_demo(tmp_path_factory.mktemp("serve-webhooks") / "repo")


@pytest.fixture
def hooks(demo):
    svc = service(demo.path, token=TOKEN, pagerduty_secrets=["an-old-secret-being-rotated", PD_SECRET],
                  sentry_secret=SENTRY_SECRET)
    with client(svc) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def saved(hooks, inv_id: str) -> dict:
    return hooks.get(f"/api/investigations/{inv_id}", headers=AUTH).json()


def count(hooks) -> int:
    return len(hooks.get("/api/investigations", headers=AUTH).json()["investigations"])


# -- Alertmanager -----------------------------------------------------------------------------

def test_a_firing_alertmanager_group_becomes_an_investigation(hooks, demo):
    r = hooks.post("/webhooks/alertmanager", json=ALERTMANAGER, headers=AUTH)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["url"] == f"http://127.0.0.1:8340/investigations/{answer['id']}"
    doc = saved(hooks, answer["id"])
    assert doc["incident"]["title"] == "CheckoutChargeErrors: card charges failing with RetryExhausted"
    assert doc["incident"]["services"] == ["billing"]  # service="billing" and job="billing", once
    assert doc["incident"]["time"] == "2024-05-02T09:47:12Z"
    assert "give up after 1 attempt" in doc["incident"]["description"]
    assert doc["source"] == {"provider": "alertmanager", "url": ALERTMANAGER["alerts"][0]["generatorURL"]}
    assert demo.culprit in [s["sha"] for s in doc["suggestions"]]
    assert hooks.get(answer["url"].replace("http://127.0.0.1:8340", ""), follow_redirects=False).status_code == 303


def test_alertmanager_needs_the_token_and_ignores_resolved_groups(hooks):
    assert hooks.post("/webhooks/alertmanager", json=ALERTMANAGER).status_code == 401
    resolved = {**ALERTMANAGER, "status": "resolved",
                "alerts": [{**ALERTMANAGER["alerts"][0], "status": "resolved", "endsAt": "2024-05-02T10:30:00Z"}]}
    before = count(hooks)
    r = hooks.post("/webhooks/alertmanager", json=resolved, headers=AUTH)
    assert r.status_code == 200 and "resolved" in r.json()["ignored"] and count(hooks) == before


@pytest.mark.parametrize("change, field", [
    (lambda p: p.pop("alerts"), "alerts: Field required"),
    (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
    (lambda p: p.update(version="3"), "version"),
    (lambda p: p["alerts"][0].pop("labels"), "alerts.0.labels: Field required"),
])
def test_a_malformed_alertmanager_payload_is_422_naming_the_field(hooks, change, field):
    payload = copy.deepcopy(ALERTMANAGER)
    change(payload)
    r = hooks.post("/webhooks/alertmanager", json=payload, headers=AUTH)
    assert r.status_code == 422 and field in r.json()["error"], r.text


# -- PagerDuty --------------------------------------------------------------------------------

def test_a_signed_pagerduty_incident_triggered_becomes_an_investigation(hooks, demo):
    data = body(PAGERDUTY)
    # two signatures while a secret rotates: one of them matching is enough
    header = f"v1={sign('not-our-secret', data)},v1={sign(PD_SECRET, data)}"
    r = hooks.post("/webhooks/pagerduty", content=data,
                   headers={"Content-Type": "application/json", "X-PagerDuty-Signature": header})
    assert r.status_code == 201, r.text
    doc = saved(hooks, r.json()["id"])
    assert doc["incident"]["title"] == PAGERDUTY["event"]["data"]["title"]
    assert doc["incident"]["services"] == ["billing"]  # the PagerDuty service "Billing"
    assert doc["incident"]["time"] == "2024-05-02T09:50:00Z"
    assert "urgency high" in doc["incident"]["description"] and "priority P1" in doc["incident"]["description"]
    assert doc["source"]["url"] == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert {"path": "services/billing/", "source": "service billing"} in doc["query"]["impacted"]
    assert len(r.json()["suggestions"]) == 5


def test_a_bad_pagerduty_signature_is_rejected_and_nothing_is_investigated(hooks):
    data = body(PAGERDUTY)
    before = count(hooks)
    for header in (f"v1={sign('wrong', data)}", "", f"v1={sign(PD_SECRET, data + b' ')}"):
        r = hooks.post("/webhooks/pagerduty", content=data,
                       headers={"Content-Type": "application/json", "X-PagerDuty-Signature": header})
        assert r.status_code == 401 and "X-PagerDuty-Signature" in r.json()["error"]
    # the token does not stand in for a provider's signature once its secret is configured
    r = hooks.post("/webhooks/pagerduty", content=data, headers={"Content-Type": "application/json", **AUTH})
    assert r.status_code == 401
    assert count(hooks) == before


def pd_post(hooks, payload: dict):
    data = body(payload)
    return hooks.post("/webhooks/pagerduty", content=data, headers={
        "Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={sign(PD_SECRET, data)}"})


def test_other_pagerduty_events_are_acknowledged_and_ignored(hooks):
    acknowledged = copy.deepcopy(PAGERDUTY)
    acknowledged["event"]["event_type"] = "incident.acknowledged"
    r = pd_post(hooks, acknowledged)
    assert r.status_code == 200 and "incident.acknowledged" in r.json()["ignored"]
    ping = {"event": {"id": "01BRB6ZP4M6T8ZG4X6BP63ZB9O", "event_type": "pagey.ping", "resource_type": "pagey",
                      "occurred_at": "2024-05-02T09:00:00.000Z", "agent": None, "client": None,
                      "data": {"message": "Hello from your friend Pagey!", "type": "ping"}}}
    assert pd_post(hooks, ping).status_code == 200


def test_a_malformed_pagerduty_payload_is_422_naming_the_field(hooks):
    untitled = copy.deepcopy(PAGERDUTY)
    del untitled["event"]["data"]["title"]
    r = pd_post(hooks, untitled)
    assert r.status_code == 422 and "event.data.title: Field required" in r.json()["error"]
    r = pd_post(hooks, {"incident": {"title": "not a v3 payload"}})
    assert r.status_code == 422 and "event: Field required" in r.json()["error"]
    bad_time = copy.deepcopy(PAGERDUTY)
    bad_time["event"]["data"]["created_at"] = "soon"
    r = pd_post(hooks, bad_time)
    assert r.status_code == 422 and "event.data.created_at" in r.json()["error"]


# -- Sentry -----------------------------------------------------------------------------------

def sentry_post(hooks, payload: dict, *, secret: str = SENTRY_SECRET, resource: str = "event_alert"):
    data = body(payload)
    return hooks.post("/webhooks/sentry", content=data, headers={
        "Content-Type": "application/json", "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": "1714643371", "Sentry-Hook-Signature": sign(secret, data)})


def test_a_sentry_issue_alert_becomes_an_investigation_with_its_stack_trace(hooks, demo):
    r = sentry_post(hooks, sentry_payload())
    assert r.status_code == 201, r.text
    doc = saved(hooks, r.json()["id"])
    assert doc["incident"]["title"].startswith("RetryExhausted: POST")
    assert doc["incident"]["services"] == ["billing"]
    assert doc["incident"]["time"] == "2024-05-02T09:49:30Z"
    frames = [(f["path"], f["line"], f["function"]) for f in doc["query"]["frames"]]
    assert frames[0] == ("libs/http/retry.py", 43, "request_with_retry")  # innermost first
    assert ("services/billing/checkout.py", 30, "complete_checkout") in frames
    assert {"path": "libs/http/retry.py", "source": "stack frame"} in doc["query"]["impacted"]
    assert doc["suggestions"][0]["sha"] == demo.culprit
    assert doc["source"]["url"].startswith("https://sentry.io/organizations/acme/issues/1117540176/")


def test_sentry_uses_the_deploys_of_the_events_environment(hooks, demo):
    import subprocess

    shas = subprocess.run(["git", "rev-list", "--first-parent", "main"], cwd=demo.path, check=True,
                          capture_output=True, text=True).stdout.split()
    for sha, when in ((shas[20], "2024-05-01T06:00:00Z"), (shas[1], "2024-05-02T09:30:00Z")):
        assert hooks.post("/api/deploys", json={"environment": "production", "sha": sha, "time": when},
                          headers=AUTH).status_code == 201
    doc = saved(hooks, sentry_post(hooks, sentry_payload()).json()["id"])
    assert doc["search_space"]["deploys"]["environment"] == "production"
    assert doc["search_space"]["deploys"]["last"]["sha"] == shas[1]
    assert doc["suggestions"][0]["sha"] == demo.culprit
    assert doc["suggestions"][0]["deployed_at"]["time"] == "2024-05-02T09:30:00Z"


def test_a_bad_sentry_signature_is_rejected(hooks):
    before = count(hooks)
    r = sentry_post(hooks, sentry_payload(), secret="someone-elses-secret")
    assert r.status_code == 401 and "Sentry-Hook-Signature" in r.json()["error"]
    data = body(sentry_payload())
    r = hooks.post("/webhooks/sentry", content=data, headers={"Content-Type": "application/json",
                                                              "Sentry-Hook-Resource": "event_alert", **AUTH})
    assert r.status_code == 401
    assert count(hooks) == before


def test_other_sentry_resources_are_ignored_and_malformed_alerts_are_422(hooks):
    installed = {"action": "created", "data": {"installation": {"uuid": "a8e5d37a"}}, "actor": {"type": "user"}}
    r = sentry_post(hooks, installed, resource="installation")
    assert r.status_code == 200 and "event_alert" in r.json()["ignored"]
    untitled = sentry_payload()
    del untitled["data"]["event"]["title"]
    r = sentry_post(hooks, untitled)
    assert r.status_code == 422 and "data.event.title: Field required" in r.json()["error"]
    frames = sentry_payload()
    frames["data"]["event"]["exception"]["values"][0]["stacktrace"]["frames"][0]["lineno"] = "thirty"
    r = sentry_post(hooks, frames)
    assert r.status_code == 422 and "data.event.exception.values.0.stacktrace.frames.0.lineno" in r.json()["error"]


def test_webhooks_without_secrets_fall_back_to_the_token(demo):
    with client(service(demo.path, token=TOKEN)) as hooks:
        data = body(PAGERDUTY)
        assert hooks.post("/webhooks/pagerduty", content=data,
                          headers={"Content-Type": "application/json"}).status_code == 401
        assert hooks.post("/webhooks/pagerduty", content=data,
                          headers={"Content-Type": "application/json", **AUTH}).status_code == 201

"""Alert webhooks -> incidents.

Each provider's payload is declared as pydantic models of the fields rcahook reads, as the
provider documents them (other fields are ignored: providers add fields over time); a
payload missing one, or with one of the wrong type, is answered 422 naming the field.

- Prometheus Alertmanager's webhook_config (version "4"): a group of alerts.
- PagerDuty v3 webhooks: `incident.triggered` (other event types, and the subscription's
  `pagey.ping`, are acknowledged and ignored).
- Sentry's integration-platform issue alert (`Sentry-Hook-Resource: event_alert`): the event
  that fired the rule, whose exception frames become the incident's stack trace.

The incident then goes through rcahook.rca.incident.incident_from_mapping, the validation every
incident file gets. Labels, tags and service names become `services` when they name one in
`[tool.rcahook.services]`; the environment (for deploys) comes from an `environment`/`env`
label or tag, or Sentry's event environment. Stack traces are text: nothing here is a path
the service would open.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rcahook.rca.incident import Incident, incident_from_mapping

MAX_TITLE = 300
MAX_DESCRIPTION = 8_000
ENVIRONMENT_KEYS = ("environment", "env")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")  # providers add fields; these are the ones read


# -- Alertmanager -----------------------------------------------------------------------------

class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerWebhook(_Payload):
    """https://prometheus.io/docs/alerting/latest/configuration/#webhook_config"""
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


# -- PagerDuty v3 -----------------------------------------------------------------------------

class PagerDutyReference(_Payload):
    id: str
    type: str
    summary: str = ""
    html_url: str | None = None


class PagerDutyIncident(_Payload):
    """`event.data` of an incident.* event (data.type "incident")."""
    id: str
    type: Literal["incident"]
    title: str
    created_at: datetime
    service: PagerDutyReference
    html_url: str = ""
    number: int | None = None
    status: str = ""
    urgency: str | None = None
    priority: PagerDutyReference | None = None
    teams: list[PagerDutyReference] = []


class PagerDutyEvent(_Payload):
    id: str
    event_type: str
    resource_type: str
    occurred_at: datetime
    data: dict[str, Any] | None = None  # its shape depends on event_type: read as PagerDutyIncident


class PagerDutyWebhook(_Payload):
    """https://developer.pagerduty.com/docs/webhooks/v3-overview"""
    event: PagerDutyEvent


# -- Sentry -----------------------------------------------------------------------------------

class SentryFrame(_Payload):
    filename: str | None = None
    abs_path: str | None = None
    module: str | None = None
    function: str | None = None
    lineno: int | None = None
    in_app: bool | None = None


class SentryStacktrace(_Payload):
    frames: list[SentryFrame] = []  # oldest call first, the crash site last (Sentry's order)


class SentryException(_Payload):
    type: str | None = None
    value: str | None = None
    module: str | None = None
    stacktrace: SentryStacktrace | None = None


class SentryExceptions(_Payload):
    values: list[SentryException] = []


class SentryEvent(_Payload):
    event_id: str
    title: str
    datetime: datetime
    culprit: str | None = None
    message: str | None = None
    environment: str | None = None
    release: str | None = None
    platform: str | None = None
    exception: SentryExceptions | None = None
    stacktrace: SentryStacktrace | None = None  # a message event with attach_stacktrace
    tags: list[list[Any]] = []  # [[key, value], ...]
    web_url: str | None = None
    issue_id: str | None = None


class SentryData(_Payload):
    event: SentryEvent
    triggered_rule: str = ""


class SentryWebhook(_Payload):
    """https://docs.sentry.io/organization/integrations/integration-platform/webhooks/issue-alerts/"""
    action: Literal["triggered"]
    data: SentryData


# -- to incidents -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    incident: Incident
    environment: str | None  # for deploys (rcahook/serve/deploys.py)
    source: dict[str, str]  # provider, and the alert's own link when it has one


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def known_services(values: Iterable[str], services: Mapping[str, object]) -> list[str]:
    """The configured service names that `values` (label values, tag values, a service
    name) name, exactly or once lower-cased with punctuation as dashes ("Billing API" ->
    "billing-api")."""
    by_slug = {_slug(name): name for name in services}
    found: list[str] = []
    for value in values:
        name = value if value in services else by_slug.get(_slug(value))
        if name and name not in found:
            found.append(name)
    return found


def _cap(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _iso(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _incident(source: str, *, title: str, description: str, time: datetime, services: list[str],
              stack_trace: str | None = None) -> Incident:
    data: dict[str, object] = {"title": _cap(title, MAX_TITLE), "description": _cap(description, MAX_DESCRIPTION),
                               "time": _iso(time), "services": services}
    if stack_trace:
        data["stack_trace"] = stack_trace
    return incident_from_mapping(data, source=source)


def from_alertmanager(payload: AlertmanagerWebhook, services: Mapping[str, object]) -> Alert:
    firing = [a for a in payload.alerts if a.status == "firing"] or payload.alerts
    common, common_labels = payload.commonAnnotations, payload.commonLabels
    name = common_labels.get("alertname") or firing[0].labels.get("alertname") or payload.receiver
    summary = common.get("summary") or firing[0].annotations.get("summary", "")
    title = f"{name}: {summary}" if summary and summary != name else name
    descriptions = list(dict.fromkeys(
        d for d in [common.get("description", "")] + [a.annotations.get("description", "") for a in firing] if d))
    labels = [common_labels] + [a.labels for a in firing]
    environment = next((lab[k] for lab in labels for k in ENVIRONMENT_KEYS if lab.get(k)), None)
    values = [v for lab in labels for k, v in lab.items() if k not in ("alertname", *ENVIRONMENT_KEYS)]
    incident = _incident("alertmanager payload", title=title, description="\n".join(descriptions),
                         time=min(a.startsAt for a in firing), services=known_services(values, services))
    link = next((a.generatorURL for a in firing if a.generatorURL), payload.externalURL)
    return Alert(incident, environment, {"provider": "alertmanager", "url": link})


def from_pagerduty(incident: PagerDutyIncident, services: Mapping[str, object]) -> Alert:
    details = [f"PagerDuty incident #{incident.number}" if incident.number else "PagerDuty incident",
               f"on service {incident.service.summary}" if incident.service.summary else "",
               f"urgency {incident.urgency}" if incident.urgency else "",
               f"priority {incident.priority.summary}" if incident.priority and incident.priority.summary else ""]
    names = [incident.service.summary] + [t.summary for t in incident.teams]
    inc = _incident("pagerduty payload", title=incident.title, description=", ".join(d for d in details if d),
                    time=incident.created_at, services=known_services([n for n in names if n], services))
    return Alert(inc, None, {"provider": "pagerduty", "url": incident.html_url})


def sentry_trace(event: SentryEvent) -> str | None:
    """The event's exceptions as a Python-style traceback (the one format that carries
    path, line and function for every platform): rcahook.rca.stacktrace reads it back."""
    blocks = []
    chains = [(e.type, e.value, e.stacktrace) for e in (event.exception.values if event.exception else [])]
    if not chains and event.stacktrace:
        chains = [(None, event.message, event.stacktrace)]
    for kind, value, trace in chains:
        frames = [f for f in (trace.frames if trace else []) if f.filename or f.abs_path]
        if not frames:
            continue
        lines = ["Traceback (most recent call last):"]
        for f in frames:  # Sentry: oldest call first, as Python prints them
            where = f'  File "{f.filename or f.abs_path}", line {f.lineno or 0}'
            lines.append(where + (f", in {f.function}" if f.function else ""))
        lines.append(f"{kind or 'Error'}: {value or ''}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\nDuring handling of the above exception, another exception occurred:\n\n".join(blocks) or None


def from_sentry(payload: SentryWebhook, services: Mapping[str, object]) -> Alert:
    event = payload.data.event
    tags = {str(t[0]): str(t[1]) for t in event.tags if len(t) == 2 and t[1] is not None}
    environment = event.environment or next((tags[k] for k in ENVIRONMENT_KEYS if tags.get(k)), None)
    description = "\n".join(x for x in (
        f"culprit: {event.culprit}" if event.culprit else "",
        *(f"{e.type}: {e.value}" for e in (event.exception.values if event.exception else []) if e.value),
        event.message or "", f"release: {event.release}" if event.release else "",
        f"alert rule: {payload.data.triggered_rule}" if payload.data.triggered_rule else "") if x)
    values = [v for k, v in tags.items() if k not in ENVIRONMENT_KEYS]
    incident = _incident("sentry payload", title=event.title, description=description, time=event.datetime,
                         services=known_services(values, services), stack_trace=sentry_trace(event))
    return Alert(incident, environment, {"provider": "sentry", "url": event.web_url or ""})

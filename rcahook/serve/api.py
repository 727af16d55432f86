"""The JSON API and the alert webhooks (documented in docs/serve.md; schema at /openapi.json).

Handlers are plain functions: FastAPI runs them in its worker threads, so investigations
run side by side and never hold up the event loop. Authentication is a dependency: the
token (when the service has one), or a provider's signature for PagerDuty and Sentry.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rcahook import __version__
from rcahook.index.gitrepo import Repo
from rcahook.rca import feedback as fb
from rcahook.rca.incident import incident_from_mapping
from rcahook.serve import deploys as dp
from rcahook.serve import repos as rp
from rcahook.serve import webhooks as wh
from rcahook.serve.security import TOKEN_COOKIE, bearer, pagerduty_signed, same_secret, sentry_signed

if TYPE_CHECKING:
    from rcahook.serve.app import Service

ID_PATTERN = r"^inv-[0-9]{8}-[0-9a-f]{4}$"
SHA_PATTERN = r"^[0-9a-fA-F]{4,64}$"  # what a pipeline or a button sends: a sha or its prefix, never a rev expression
INCIDENT_EXAMPLE = {
    "title": "billing: card charges failing with RetryExhausted since the morning deploy",
    "description": "About 8% of checkouts fail at the payment step since the 09:30 deploy.",
    "time": "2024-05-02T09:50:00Z",
    "services": ["billing"],
    "stack_trace": ["Traceback (most recent call last):",
                    '  File "/srv/acme/libs/http/retry.py", line 43, in request_with_retry',
                    "libs.http.errors.RetryExhausted: POST /v1/charges gave up after 1 attempt(s)"],
}


class Ignored(Exception):
    """A delivery the service acknowledges without acting on (a resolved alert, a ping)."""


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    root_cause: str | None = Field(None, pattern=SHA_PATTERN, description="The commit that caused it.")
    not_: list[str] = Field([], alias="not", description="Suggested commits that did not cause it.",
                            max_length=100)
    note: str | None = Field(None, max_length=2000, description="Free text kept with the verdict.")


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository: str | None = Field(None, description="Name given to --repo (default: the only one served).")
    environment: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._/:-]+$",
                             description="An environment or a service, as the pipeline names it (prod, prod/billing).")
    sha: str = Field(..., pattern=SHA_PATTERN, description="The deployed commit (full or abbreviated sha).")
    time: datetime | None = Field(None, description="When it went live (ISO 8601; default: now).")


def _investigation_summary(served: rp.ServedRepo, saved: fb.SavedInvestigation, verdicts: list[fb.Verdict],
                           base_url: str) -> dict[str, Any]:
    results = saved.results
    top = (results.get("suggestions") or [None])[0]
    current = fb.current_root_cause(verdicts)
    return {"id": saved.id, "repository": served.name, "created": fb.iso(saved.created),
            "title": saved.incident.get("title"), "headline": results.get("headline"),
            "confidence": (results.get("confidence") or {}).get("value"),
            "confident": (results.get("confidence") or {}).get("confident"),
            "top": {k: top[k] for k in ("sha", "short_sha", "subject")} if top else None,
            "root_cause": current.sha if current else None, "verdicts": len(verdicts),
            "url": f"{base_url}/investigations/{saved.id}"}


def _verdict_json(v: fb.Verdict) -> dict[str, Any]:
    return {"seq": v.seq, "created": fb.iso(v.created), "verdict": v.verdict, "sha": v.sha,
            "in_candidates": v.in_candidates, "rank": v.rank, "note": v.note, "superseded": v.superseded}


def base_url(service: Service, request: Request) -> str:
    return service.base_url or str(request.base_url).rstrip("/")


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 whose `error` names each field that is missing or wrong (`event.data.title: Field
    required`); `detail` keeps FastAPI's usual list."""
    def where(loc: Sequence[str | int]) -> str:
        parts = [str(p) for p in loc]
        return ".".join(parts[1:] if parts and parts[0] == "body" else parts) or "body"

    lines = [f"{where(e['loc'])}: {e['msg']}" for e in errors]
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    return JSONResponse(status_code=422, content={"error": "; ".join(lines), "detail": detail})


def _field_errors(e: ValidationError, prefix: str) -> JSONResponse:
    return validation_response([{**err, "loc": ["body", *prefix.split("."), *err["loc"]]}
                                for err in e.errors(include_url=False)])


def build_router(service: Service) -> APIRouter:
    router = APIRouter()

    async def token(request: Request) -> None:
        """The service's token, as `Authorization: Bearer` or the pages' cookie."""
        if service.token is None:
            return
        given = bearer(request.headers.get("authorization"))
        if given is None and request.cookies.get(TOKEN_COOKIE):
            given = request.cookies[TOKEN_COOKIE]
            origin = request.headers.get("origin")
            # a cookie rides along with any request the browser makes: unsafe methods must
            # come from this service's own pages (SameSite=Strict says the same; belt and braces)
            cross = origin is not None and origin.split("://", 1)[-1] != request.headers.get("host")
            if request.method not in ("GET", "HEAD") and cross:
                raise HTTPException(403, "cross-origin request refused")
        if not same_secret(given, service.token):
            raise HTTPException(401, "missing or wrong token: send `Authorization: Bearer <token>` "
                                     "(the content of the file given to --token-file)",
                                headers={"WWW-Authenticate": "Bearer"})

    async def pagerduty_auth(request: Request,
                             signature: str | None = Header(None, alias="X-PagerDuty-Signature")) -> None:
        if not service.pagerduty_secrets:
            return await token(request)
        if not pagerduty_signed(await request.body(), signature, service.pagerduty_secrets):
            raise HTTPException(401, "X-PagerDuty-Signature missing or not matching any --pagerduty-secret-file")

    async def sentry_auth(request: Request, signature: str | None = Header(None, alias="Sentry-Hook-Signature"),
                          resource: str | None = Header(None, alias="Sentry-Hook-Resource")) -> None:
        if service.sentry_secret is None:
            await token(request)
        elif not sentry_signed(await request.body(), signature, service.sentry_secret):
            raise HTTPException(401, "Sentry-Hook-Signature missing or not matching --sentry-secret-file")
        if resource is not None and resource != "event_alert":
            raise Ignored(f"Sentry-Hook-Resource {resource}: only issue alerts (event_alert) start investigations")

    api = [Depends(token)]

    @router.get("/api/health", dependencies=api, tags=["service"])
    def health() -> dict[str, Any]:
        """Whether each repository's index is ready (`head` set) and being updated."""
        states = [s.status() for s in service.repos.values()]
        return {"status": "ok" if all(s["head"] for s in states) else "starting", "version": __version__,
                "repositories": states}

    @router.post("/api/investigations", status_code=201, dependencies=api, tags=["investigations"])
    def create_investigation(
            request: Request,
            incident: Annotated[dict[str, Any], Body(description="An incident as in docs/incident.md.",
                                                     examples=[INCIDENT_EXAMPLE])],
            repository: str | None = Query(None, description="Name given to --repo (default: the only one)."),
            environment: str | None = Query(None, description="Environment whose deploys bound the search."),
    ) -> dict[str, Any]:
        """Investigate an incident: the JSON of `rcahook investigate --format json` (docs/investigate.md),
        with its id, `url` (its page) and `repository`; saved for feedback."""
        served = service.pick(repository)
        parsed = incident_from_mapping(incident, source="request body")
        return rp.run_investigation(served, parsed, service.options, environment=environment,
                                    base_url=base_url(service, request))

    @router.get("/api/investigations", dependencies=api, tags=["investigations"])
    def list_investigations(request: Request, repository: str | None = None,
                            limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        """Saved investigations, newest first (those of `rcahook investigate` too)."""
        repos = [service.pick(repository)] if repository else list(service.repos.values())
        url = base_url(service, request)
        return {"investigations": [_investigation_summary(served, saved, verdicts, url)
                                   for served, saved, verdicts in rp.list_saved(repos, limit=limit)]}

    @router.get("/api/investigations/{inv_id}", dependencies=api, tags=["investigations"])
    def get_investigation(request: Request, inv_id: str = Path(..., pattern=ID_PATTERN),
                          repository: str | None = None) -> dict[str, Any]:
        """One saved investigation as it was reported, with its verdicts."""
        served, saved, verdicts = rp.find_saved(list(service.repos.values()), inv_id, repository)
        doc = rp.with_links(rp.saved_document(saved), served, base_url(service, request))
        return {**doc, "verdicts": [_verdict_json(v) for v in verdicts]}

    @router.post("/api/investigations/{inv_id}/feedback", status_code=201, dependencies=api,
                 tags=["investigations"])
    def record_feedback(body: FeedbackIn, inv_id: str = Path(..., pattern=ID_PATTERN),
                        repository: str | None = None) -> dict[str, Any]:
        """Record the responder's verdict (the store `rcahook feedback` writes; never overwritten)."""
        served, saved, _ = rp.find_saved(list(service.repos.values()), inv_id, repository)
        conn = fb.open_state(served.state_path)
        try:
            recorded = fb.record_verdicts(conn, saved, root_cause=body.root_cause, not_causes=body.not_,
                                          note=body.note, resolve=lambda given: rp.resolve_commit(served, given))
        finally:
            conn.close()
        return {"id": saved.id, "recorded": [_verdict_json(v) for v in recorded]}

    @router.post("/api/deploys", status_code=201, dependencies=api, tags=["deploys"])
    def create_deploy(body: DeployIn) -> dict[str, Any]:
        """Record that a commit went live in an environment (what `rcahook deploy record` does)."""
        served = service.pick(body.repository)
        sha = Repo(served.path).resolve(body.sha)  # a hex string: nothing but an object lookup
        when = body.time or datetime.now(timezone.utc)
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        conn = fb.open_state(served.state_path)
        try:
            deploy = dp.record_deploy(conn, environment=body.environment, sha=sha, time=int(when.timestamp()))
        finally:
            conn.close()
        if service.updater is not None and not rp.indexed(served, sha):
            service.updater.wake()  # index what was deployed soon, not at the next interval
        return {"repository": served.name, **deploy.to_json()}

    @router.get("/api/deploys", dependencies=api, tags=["deploys"])
    def list_deploys(repository: str | None = None, environment: str | None = None,
                     limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        served = service.pick(repository)
        if not served.state_path.exists():
            return {"repository": served.name, "deploys": []}
        conn = fb.open_state(served.state_path, create=False)
        try:
            found = dp.deploys(conn, dp.check_environment(environment) if environment else None, limit=limit)
        finally:
            conn.close()
        return {"repository": served.name, "deploys": [d.to_json() for d in found]}

    # -- webhooks -----------------------------------------------------------------------------

    def investigate_alert(request: Request, alert: wh.Alert, repository: str | None) -> JSONResponse:
        served = service.pick(repository)
        doc = rp.run_investigation(served, alert.incident, service.options, environment=alert.environment,
                                   base_url=base_url(service, request), source=alert.source)
        return JSONResponse(status_code=201, content={
            "id": doc["id"], "url": doc["url"], "repository": served.name, "headline": doc["headline"],
            "confidence": doc["confidence"]["value"], "confident": doc["confidence"]["confident"],
            "suggestions": [{k: s[k] for k in ("rank", "sha", "short_sha", "subject")} for s in doc["suggestions"]]})

    @router.post("/webhooks/alertmanager", dependencies=api, tags=["webhooks"], status_code=201)
    def alertmanager(request: Request, payload: wh.AlertmanagerWebhook, repository: str | None = None,
                     ) -> JSONResponse:
        """Prometheus Alertmanager `webhook_config`: a firing group becomes an investigation."""
        if payload.status != "firing":
            raise Ignored("status resolved: nothing to investigate")
        served = service.pick(repository)
        return investigate_alert(request, wh.from_alertmanager(payload, _services(served)), repository)

    @router.post("/webhooks/pagerduty", dependencies=[Depends(pagerduty_auth)], tags=["webhooks"], status_code=201)
    def pagerduty(request: Request, payload: wh.PagerDutyWebhook, repository: str | None = None,
                  ) -> JSONResponse:
        """PagerDuty v3 webhook subscription: `incident.triggered` becomes an investigation."""
        if payload.event.event_type != "incident.triggered":
            raise Ignored(f"event_type {payload.event.event_type}: only incident.triggered starts an investigation")
        try:
            incident = wh.PagerDutyIncident.model_validate(payload.event.data or {})
        except ValidationError as e:
            return _field_errors(e, "event.data")
        served = service.pick(repository)
        return investigate_alert(request, wh.from_pagerduty(incident, _services(served)), repository)

    @router.post("/webhooks/sentry", dependencies=[Depends(sentry_auth)], tags=["webhooks"], status_code=201)
    def sentry(request: Request, payload: wh.SentryWebhook, repository: str | None = None) -> JSONResponse:
        """Sentry integration issue alert (`Sentry-Hook-Resource: event_alert`): the event, its stack
        trace included, becomes an investigation."""
        served = service.pick(repository)
        return investigate_alert(request, wh.from_sentry(payload, _services(served)), repository)

    return router


def _services(served: rp.ServedRepo) -> dict[str, Any]:
    """The repository's `[tool.rcahook.services]`, for mapping labels onto service names."""
    repo = Repo(served.path)
    return dict(rp.operator_config(repo, served.head).services)


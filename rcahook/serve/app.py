"""The app factory: the service's state, the pages, error mapping and middleware.

`create_app(Service(...))` is what `rcahook serve` hands to uvicorn and what the tests
drive in process. Errors keep rcahook's one-line messages: RcahookError subclasses map to
HTTP statuses (bad input 422, not found 404, index not ready 503, model server 502), JSON
for /api and /webhooks, an HTML page elsewhere.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from rcahook import __version__
from rcahook.config import load_config
from rcahook.errors import (
    BadInputError,
    ConfigError,
    EmptySearchSpaceError,
    IndexLockedError,
    IndexMissingError,
    ModelServerError,
    ModelUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RcahookError,
    UnknownRevisionError,
)
from rcahook.index.gitrepo import Repo
from rcahook.rca import feedback as fb
from rcahook.serve import pages
from rcahook.serve import repos as rp
from rcahook.serve.api import ID_PATTERN, Ignored, build_router, validation_response
from rcahook.serve.security import TOKEN_COOKIE, BodyLimit, SecurityHeaders, bearer, local_path, same_secret

log = logging.getLogger("rcahook.serve")

STATUS = [  # most specific first
    (ModelServerError, 502), (ModelUnavailableError, 503), (rp.NotReadyError, 503), (IndexLockedError, 503),
    (IndexMissingError, 503), (PermissionDeniedError, 503), (NotFoundError, 404), (BadInputError, 422),
    (UnknownRevisionError, 422), (EmptySearchSpaceError, 422), (ConfigError, 500), (RcahookError, 500),
]


@dataclass
class Service:
    repos: dict[str, rp.ServedRepo]
    options: rp.ServeOptions = field(default_factory=rp.ServeOptions)
    token: str | None = None  # None: loopback only, no authentication
    pagerduty_secrets: list[str] = field(default_factory=list)
    sentry_secret: str | None = None
    base_url: str | None = None  # how clients reach the service; None: from each request's Host
    update_interval: float | None = 60.0  # seconds between index updates; None: never update
    updater: rp.Updater | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        for served in self.repos.values():
            rp.initial_head(served)
        if self.update_interval is not None:
            self.updater = rp.Updater(list(self.repos.values()), interval=self.update_interval)

    def pick(self, name: str | None) -> rp.ServedRepo:
        if name is None:
            if len(self.repos) == 1:
                return next(iter(self.repos.values()))
            raise BadInputError(f"several repositories are served ({', '.join(self.repos)}): add "
                                "?repository=NAME (or \"repository\" in the body)")
        if name not in self.repos:
            raise NotFoundError(f"repository {name!r} is not served here; served: {', '.join(self.repos)}")
        return self.repos[name]


def _status(e: RcahookError) -> int:
    return next(code for cls, code in STATUS if isinstance(e, cls))


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/webhooks/"))


def run_server(service: Service, *, host: str, port: int, log_level: str) -> None:
    """Serve until interrupted (uvicorn: imported here, so that only serve/ imports it)."""
    import uvicorn

    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                server_header=False)


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.updater is not None:
            service.updater.start()
        yield
        if service.updater is not None:
            service.updater.stop()

    app = FastAPI(title="rcahook", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Which recent change caused this incident: investigations, feedback, deploy "
                              "events and alert webhooks. See docs/serve.md.")
    app.state.service = service
    app.include_router(build_router(service))
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RcahookError)
    async def rcahook_error(request: Request, e: RcahookError) -> Response:
        status = _status(e)
        if status >= 500 and not isinstance(e, (rp.NotReadyError, IndexLockedError)):
            log.warning("%s %s: %s", request.method, request.url.path, e)
        headers = {"Retry-After": "30"} if status == 503 else None
        if _wants_json(request):
            return JSONResponse({"error": str(e)}, status_code=status, headers=headers)
        return HTMLResponse(pages.render("error.html", status=status, message=str(e)), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        if _wants_json(request) or e.status_code == 401:
            return JSONResponse({"error": e.detail}, status_code=e.status_code, headers=e.headers)
        return HTMLResponse(pages.render("error.html", status=e.status_code, message=e.detail),
                            status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        return validation_response(list(e.errors()))

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> Response:
        # a bug: the traceback goes to the service's log, the client gets one line
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(e).__name__}: {e} (the traceback is in the "
                                      "service's log; please report it)"}, status_code=500)

    @app.exception_handler(Ignored)
    async def ignored(request: Request, e: Ignored) -> Response:
        return JSONResponse({"ignored": str(e)}, status_code=200)

    # -- pages ------------------------------------------------------------------------------

    class _SignIn(Exception):
        pass

    @app.exception_handler(_SignIn)
    async def sign_in(request: Request, e: _SignIn) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    async def page_token(request: Request) -> None:
        if service.token is None:
            return
        given = request.cookies.get(TOKEN_COOKIE) or bearer(request.headers.get("authorization"))
        if not same_secret(given, service.token):
            raise _SignIn()

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(page_token)], include_in_schema=False)
    def index_page() -> HTMLResponse:
        rows = []
        for served, saved, verdicts in rp.list_saved(list(service.repos.values()), limit=200):
            confidence = saved.results.get("confidence") or {}
            current = fb.current_root_cause(verdicts)
            rows.append({"id": saved.id, "repository": served.name, "created": fb.iso(saved.created),
                         "title": saved.incident.get("title", ""),
                         "top": (saved.results.get("suggestions") or [None])[0],
                         "confidence": confidence.get("value"), "confident": confidence.get("confident"),
                         "verdict": f"root cause {current.sha[:12]}" if current else ""})
        return HTMLResponse(pages.render("list.html", rows=rows,
                                         repos=[s.status() for s in service.repos.values()]))

    @app.get("/investigations/{inv_id}", response_class=HTMLResponse, dependencies=[Depends(page_token)],
             include_in_schema=False)
    def investigation_page(inv_id: str = Path(..., pattern=ID_PATTERN)) -> HTMLResponse:
        served, saved, verdicts = rp.find_saved(list(service.repos.values()), inv_id)
        return HTMLResponse(render_investigation(served, saved, verdicts))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(pages.render("login.html", next=local_path(next), failed=False))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given, target = form.get("token", [""])[0], local_path(form.get("next", ["/"])[0])
        if service.token is None or not same_secret(given, service.token):
            return HTMLResponse(pages.render("login.html", next=target, failed=service.token is not None),
                                status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict", max_age=7 * 86400,
                            secure=request.url.scheme == "https")
        return response

    return app


def render_investigation(served: rp.ServedRepo, saved: fb.SavedInvestigation, verdicts: list[fb.Verdict]) -> str:
    doc = rp.saved_document(saved)
    repo = Repo(served.path)
    try:
        commit_url = load_config(repo.workdir, read_head=lambda name: repo.read_path(saved.at, name),
                                 git_dir=repo.git_dir).commit_url
    except RcahookError:
        commit_url = None  # a broken config costs the links, not the page
    standing = {v.sha: v for v in verdicts if not v.superseded}
    suspects = []
    for s in doc.get("suggestions", []):
        try:
            diff = pages.diff_lines(repo.diff_text(s["sha"], max_bytes=6000))
        except RcahookError:
            diff = []
        verdict = standing.get(s["sha"])
        suspects.append({**s, "diff": diff, "link": pages.commit_link(commit_url, s["sha"]),
                         "verdict": ("recorded: root cause" if verdict.verdict == "root_cause" else "recorded: not it")
                         if verdict else ""})
    source = doc.get("source") or {}
    return pages.render(
        "investigation.html", doc=doc, repository=served.name, suspects=suspects,
        confident=doc.get("order") == "ranked", impacted=doc.get("query", {}).get("impacted", []),
        deploys=doc["search_space"].get("deploys"), timeline=pages.timeline(doc),
        verdicts=pages.verdict_rows(verdicts), current=fb.current_root_cause(verdicts),
        source=source.get("provider"))

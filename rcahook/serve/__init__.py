"""`rcahook serve`: investigations where on-call already works (issue 12).

A long-running service (FastAPI on uvicorn) for one or more repositories: an HTTP API
(investigations, feedback, deploy events, health; OpenAPI at /openapi.json), alert
webhooks (Alertmanager, PagerDuty v3, Sentry issue alerts) that become investigations,
and server-rendered pages with "root cause" / "not it" buttons. The pipeline is the
CLI's: rcahook.rca.investigate, rcahook.rca.report's JSON, rcahook.rca.feedback's store.

    app.py       the app factory: routes, middleware, error mapping
    api.py       the JSON API and the webhook routes
    repos.py     the served repositories: investigations, background index updates
    webhooks.py  provider payloads (pydantic) -> incidents
    deploys.py   deploy events -> the search space, "deployed at"
    pages.py     HTML pages (Jinja2, autoescaped) and the timeline picture
    security.py  token, webhook signatures, body limit, CSP
"""
from __future__ import annotations

from rcahook.errors import ConfigError

INSTALL_HINT = "pip install -e '.[serve]' (or `make setup`)"


def require() -> None:
    """One clear line when the optional web stack is missing, instead of an ImportError."""
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"rcahook serve needs {e.name}, which is not installed: {INSTALL_HINT}") from None

"""`rcahook serve`: the HTTP API, alert webhooks and pages (rcahook/serve/)."""
from __future__ import annotations

import os

from rcahook.commands.common import say
from rcahook.errors import BadInputError


def run(*, repos: tuple[str, ...], host: str, port: int, token_file: str | None,
        pagerduty_secret_files: tuple[str, ...], sentry_secret_file: str | None, base_url: str | None,
        update_interval: float, no_update: bool, ranker: str | None, model: str | None, llm_url: str | None,
        llm_model: str | None, min_confidence: float | None, max_candidates: int | None,
        log_level: str) -> int:
    from rcahook.serve import require

    require()
    from rcahook.serve.app import Service, run_server
    from rcahook.serve.repos import ServedRepo, ServeOptions
    from rcahook.serve.security import check_bind, read_secret

    warn = lambda m: say(f"warning: {m}")  # noqa: E731
    token = read_secret(token_file, "--token-file", warn=warn) if token_file else None
    check_bind(host, token)
    if update_interval <= 0:
        raise BadInputError(f"--update-interval must be a positive number of seconds, got {update_interval:g}; "
                            "pass --no-update to never update the indexes")
    served = {}
    for spec in repos or (".",):
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.abspath(spec).rstrip("/")).removesuffix(".git"), spec
        if not name or name in served or not all(c.isalnum() or c in "._-" for c in name):
            raise BadInputError(f"--repo {spec}: give each repository a distinct NAME of letters, digits, . _ - "
                                "as NAME=PATH (e.g. --repo app=/srv/app)")
        served[name] = ServedRepo.open(name, path)
    service = Service(
        served, options=ServeOptions(ranker=ranker, model=model, llm_url=llm_url, llm_model=llm_model,
                                     min_confidence=min_confidence, max_candidates=max_candidates),
        token=token,
        pagerduty_secrets=[read_secret(f, "--pagerduty-secret-file", warn=warn) for f in pagerduty_secret_files],
        sentry_secret=(read_secret(sentry_secret_file, "--sentry-secret-file", warn=warn)
                       if sentry_secret_file else None),
        base_url=base_url.rstrip("/") if base_url else None, update_interval=None if no_update else update_interval)
    for s in served.values():
        state = f"index at {s.head[:12]}" if s.head else "no index yet: building it (investigations wait)"
        say(f"serving {s.name} = {s.path} ({state})")
    say(f"http://{host}:{port}/ (API: /api, OpenAPI: /openapi.json){'; token required' if token else ''}")
    run_server(service, host=host, port=port, log_level=log_level)
    return 0

"""Who may call the service, and what a request may be.

- Loopback by default; any other address needs a token (`--token-file`), compared in
  constant time on every API call, page and webhook that has no provider signature.
- PagerDuty v3 (`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>]`) and Sentry
  (`Sentry-Hook-Signature: <hex>`) sign the raw body with HMAC-SHA256; with a secret
  configured, the signature is required and replaces the token.
- Bodies are read whole, up to MAX_BODY (413 beyond); nothing in a body is a path.
- Every response carries a Content-Security-Policy: scripts and styles only from the
  service itself, no inline script, nothing framed, no form posting elsewhere.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from rcahook.errors import BadInputError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1 << 20  # 1 MiB: an alert group or a Sentry event with its stack trace fits many times over
TOKEN_COOKIE = "rcahook_token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def read_secret(path: str, flag: str, *, warn: Callable[[str], None] = lambda m: None) -> str:
    """A token or signing secret from a file the operator gave: the first line, stripped."""
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as f:
            text = f.readline().strip()
    except FileNotFoundError:
        raise BadInputError(f"{flag} {path}: no such file; write the secret on its first line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{flag} {path}: cannot read it ({e}); it must be a readable UTF-8 text file") from None
    if not text:
        raise BadInputError(f"{flag} {path}: the first line is empty; write the secret on it")
    if flag == "--token-file" and len(text) < 16:
        raise BadInputError(f"{flag} {path}: the token is {len(text)} characters; use at least 16 "
                            "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`)")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        # not fatal (a container may mount it so), but worth one line
        warn(f"{path} ({flag}) is readable by other users; `chmod 600 {path}`")
    return text


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise BadInputError(f"--host {host} is not a loopback address: anyone who can reach it could read "
                            "investigations and record verdicts; pass --token-file FILE (a secret every "
                            "client sends as `Authorization: Bearer <token>`), or bind to 127.0.0.1")


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison (the time taken says nothing about how much matched)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def pagerduty_signed(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """At least one `v1=` signature in the header matches one of the secrets (several may be
    current while PagerDuty rotates a subscription's secret)."""
    if not header:
        return False
    given = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    return any(hmac.compare_digest(_hmac_hex(secret, body), g) for secret in secrets for g in given)


def sentry_signed(body: bytes, header: str | None, secret: str) -> bool:
    return header is not None and hmac.compare_digest(_hmac_hex(secret, body), header.strip())


class BodyLimit:
    """ASGI middleware: read a request's body whole, answer 413 past `limit` (whatever the
    Content-Length claims), then hand the app the buffered body."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._too_large(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        payload = json.dumps({"error": f"request body larger than {self.limit} bytes; send less "
                                       "(a stack trace is cut to its first and last frames anyway)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": payload})


class SecurityHeaders:
    """ASGI middleware: the CSP and friends on every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in SECURITY_HEADERS if h[0] not in names)]}
            await send(message)

        return await self.app(scope, receive, with_headers)


def local_path(target: str | None) -> str:
    """Where to send the browser after logging in: only a path on this service."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target

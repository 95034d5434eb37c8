"""Who may use the studio: the token it prints (kept under the root, so a bookmark survives a restart), the
cookie a tokened visit leaves, and the bounds on what a request may send."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from .registry import STATE_DIR

COOKIE = "imgtrain_studio"
TOKEN_FILE = "token"
TOKEN_ENV = "IMGTRAIN_STUDIO_TOKEN"
MAX_REQUEST_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 20 << 20
UPLOAD_PATHS = ("/predict",)

NO_TOKEN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>imgtrain studio</title>
<link rel="icon" href="/favicon.ico"></head><body style="font: 16px system-ui; margin: 4em auto; max-width: 40em">
<h1>imgtrain studio</h1><p>This page needs the studio's token. Open the address <code>imgtrain studio</code>
printed when it started (it ends in <code>?token=…</code>); after that this browser remembers it.</p>
<p>The token is also in <code>{path}</code> on the machine running the studio.</p></body></html>"""


def studio_token(root: Path, given: str | None = None) -> str:
    """The studio's token: `given`, else $IMGTRAIN_STUDIO_TOKEN (which `ps` does not show, unlike an option), else
    the one kept under the root, else a new one kept there (owner-only)."""
    path = root / STATE_DIR / TOKEN_FILE
    given = given or os.environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""
    if kept:
        return kept
    token = secrets.token_urlsafe(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".token.", dir=path.parent)  # owner-only from the start (atomic_file publishes)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    return token


def token_of(headers: Any, cookies: Any, query: Any) -> str:
    """The token a request carries: ?token=, 'Authorization: Bearer', or the cookie."""
    return query.get("token") or headers.get("authorization", "").removeprefix("Bearer ") or cookies.get(COOKIE, "")


def is_valid(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


class BodyLimit:
    """ASGI middleware: a request body over its bound (an upload's, or any other's) is refused with 413 as soon
    as it is read past the bound, whatever Content-Length says."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_UPLOAD_BYTES if scope["path"].endswith(UPLOAD_PATHS) else MAX_REQUEST_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return await _answer_413(send, limit)
        seen = 0

        async def bounded_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except _TooLarge as exc:
            await _answer_413(send, exc.limit)


class _TooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


async def _answer_413(send: Any, limit: int) -> None:
    body = json.dumps({"error": f"the request is over {limit:,} bytes."}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

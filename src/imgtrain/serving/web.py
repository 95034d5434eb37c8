"""What serve and the studio share as web servers: which Host headers they answer (against DNS rebinding), and
uvicorn run so that connections cannot be held for nothing (a deadline for each request's head, a bound on open
connections below the descriptor limit)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import resource
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

#: A connection that has not sent a whole request head this long after it opened (or after its last answer) is
#: closed: idle and slow-header ("slowloris") connections no longer pile up until descriptors run out.
HEAD_TIMEOUT_SECONDS = 10.0
#: Connections beyond the descriptor limit less this many are answered 503 at once (files, the model, logs).
SPARE_DESCRIPTORS = 128
#: Host names every server answers to: this machine's own.
LOOPBACK_NAMES = ("localhost",)
ALLOWED_HOSTS_HELP = (
    "other Host names this server answers to, comma-separated ('*.example.com' for a domain, '*' for any): "
    "by default only this machine's names and IP addresses, so that a web page cannot reach it through DNS "
    "rebinding"
)

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def host_allowed(header: str, allowed: Iterable[str]) -> bool:
    """Whether a Host header names this server: an IP address (DNS rebinding needs a name), localhost or a name
    under it, the --host it listens on, or one of `allowed` ('*' any, '*.example.com' that domain)."""
    name = _host_name(header)
    if name is None:
        return False
    if _is_address(name):
        return True
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    for pattern in (_host_name(p) or "" for p in allowed):  # "gpu-box:8000" means gpu-box
        if pattern == "*" or pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def _host_name(header: str) -> str | None:
    """The name of a Host header without its port, lower case; None when it is not one."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 address, with or without a port
        end = header.find("]")
        return header[1:end] if end > 0 else None
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


class HostCheck:
    """ASGI middleware answering 400 to a request whose Host header this server was not started for."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]):
        self.app, self.allowed = app, tuple(allowed)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            header = headers.get(b"host", b"").decode("latin-1")
            if not host_allowed(header, self.allowed):
                await _refuse(send, header)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Callable[[Any], Awaitable[None]], header: str) -> None:
    body = json.dumps(
        {
            "error": f"this server does not answer to the host {header[:100]!r}; start it with "
            "--allowed-hosts NAME to let clients reach it by that name."
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The names a server listening on `host` answers to besides IP addresses and localhost: `host` itself when it
    is a name, and `extra`."""
    names = [h for h in extra if h.strip()]
    return names + ([host] if _host_name(host) and not _is_address(host) else [])


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def connection_limit() -> int:
    """uvicorn's bound on connections and requests at once: the descriptor limit (raised to its hard limit where the
    system allows) less SPARE_DESCRIPTORS; past it requests are answered 503 (connections are still accepted, and
    those that send nothing are closed at the head deadline)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    for raised in (min(wanted, 1 << 20), 10240):  # 10240: macOS's OPEN_MAX, where the hard limit is unlimited
        if soft == resource.RLIM_INFINITY or soft >= raised:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
            break
        except (ValueError, OSError):
            continue
    limit = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    return max(16, limit - SPARE_DESCRIPTORS)


def server_config(app: ASGIApp, host: str, port: int) -> Any:
    """uvicorn's configuration for `app`: the request-head deadline, the connection bound, quiet logs."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=_with_head_deadline(),
        limit_concurrency=connection_limit(),
    )


def run_server(app: ASGIApp, host: str, port: int) -> None:
    """Serve `app` until interrupted."""
    import uvicorn

    uvicorn.Server(server_config(app, host, port)).run()


def _with_head_deadline() -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection that sends no whole request head within HEAD_TIMEOUT_SECONDS
    of opening or of its last answer (uvicorn's own keep-alive timeout starts only after a first answer)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadline(H11Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def _arm(self) -> None:
            self._seen_cycle = self.cycle
            self._deadline = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._check)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()  # the next head has the whole deadline from this answer
            self._arm()

        def _check(self) -> None:
            started = self.cycle is not self._seen_cycle  # a new request head arrived
            busy = self.cycle is not None and not self.cycle.response_complete  # one is being answered
            if started or busy:
                self._arm()
            elif not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return HeadDeadline

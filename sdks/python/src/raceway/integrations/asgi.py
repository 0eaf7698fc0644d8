"""Pure ASGI middleware (works with FastAPI/Starlette; streaming and contextvars safe)."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ..core import Raceway, ServerSpan, get_default

__all__ = ["RacewayMiddleware", "RacewayASGIMiddleware"]

log = logging.getLogger("raceway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _route_of(scope: Scope) -> Optional[str]:
    """Best effort: the Starlette/FastAPI route template matching this request."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not routes:
        return None
    try:
        from starlette.routing import Match

        for r in routes:
            match, _ = r.matches(scope)
            if match == Match.FULL:
                path = getattr(r, "path", None)
                return str(path) if path is not None else None
    except Exception:  # noqa: BLE001
        return None
    return None


class RacewayMiddleware:
    """``app.add_middleware(RacewayMiddleware, raceway=sdk)`` or ``RacewayMiddleware(app, raceway=sdk)``."""

    def __init__(self, app: ASGIApp, raceway: Optional[Raceway] = None) -> None:
        self.app = app
        self.raceway = raceway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sdk = self.raceway if self.raceway is not None else get_default()
        if scope.get("type") != "http" or not sdk.config.propagation_enabled:
            await self.app(scope, receive, send)
            return
        span: Optional[ServerSpan] = None
        try:
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
            qs = scope.get("query_string", b"").decode("latin-1")
            path = scope.get("path", "/")
            target = path + ("?" + qs if qs else "")
            span = sdk.server_span(headers, scope.get("method", "GET"), target, _route_of(scope))
            span.start()
        except Exception:  # noqa: BLE001
            log.debug("raceway: asgi span start failed", exc_info=True)
            span = None
        if span is None:
            await self.app(scope, receive, send)
            return
        s = span

        async def send_wrapper(message: Message) -> None:
            mtype = message.get("type")
            if mtype == "http.response.start":
                try:
                    value = s.response_started(int(message.get("status", 200)))
                    hdrs = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"raceway-clock"
                    ]
                    hdrs.append((b"raceway-clock", value.encode("ascii")))
                    message["headers"] = hdrs
                except Exception:  # noqa: BLE001
                    log.debug("raceway: asgi response header failed", exc_info=True)
                await send(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            s.finish(s.status if s.status is not None else 500, True)
            raise
        finally:
            s.finish()


RacewayASGIMiddleware = RacewayMiddleware

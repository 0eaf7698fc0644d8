"""``httpx`` integration: sync and async transports that inject headers and record the call."""

from __future__ import annotations

from typing import Optional

import httpx

from ..core import Raceway, get_default

__all__ = ["RacewayTransport", "AsyncRacewayTransport", "Client", "AsyncClient"]


class RacewayTransport(httpx.BaseTransport):
    """``httpx.Client(transport=RacewayTransport())``; wraps ``httpx.HTTPTransport()`` by default."""

    def __init__(self, transport: Optional[httpx.BaseTransport] = None, raceway: Optional[Raceway] = None) -> None:
        self.inner = transport if transport is not None else httpx.HTTPTransport()
        self.raceway = raceway

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sdk = self.raceway if self.raceway is not None else get_default()
        call = sdk.begin_outbound(request.method, str(request.url))
        if call is not None:
            for k, v in call.headers.items():
                request.headers[k] = v
        try:
            resp = self.inner.handle_request(request)
        except Exception as e:
            if call is not None:
                call.finish(error=f"{type(e).__name__}: {e}")
            raise
        if call is not None:
            call.finish(resp.status_code, resp.headers.get("raceway-clock"))
        return resp

    def close(self) -> None:
        self.inner.close()


class AsyncRacewayTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AsyncRacewayTransport())``."""

    def __init__(
        self, transport: Optional[httpx.AsyncBaseTransport] = None, raceway: Optional[Raceway] = None
    ) -> None:
        self.inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.raceway = raceway

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sdk = self.raceway if self.raceway is not None else get_default()
        call = sdk.begin_outbound(request.method, str(request.url))
        if call is not None:
            for k, v in call.headers.items():
                request.headers[k] = v
        try:
            resp = await self.inner.handle_async_request(request)
        except Exception as e:
            if call is not None:
                call.finish(error=f"{type(e).__name__}: {e}")
            raise
        if call is not None:
            call.finish(resp.status_code, resp.headers.get("raceway-clock"))
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


def Client(raceway: Optional[Raceway] = None, **kwargs: object) -> httpx.Client:  # noqa: N802
    """An ``httpx.Client`` using :class:`RacewayTransport`."""
    return httpx.Client(transport=RacewayTransport(raceway=raceway), **kwargs)  # type: ignore[arg-type]


def AsyncClient(raceway: Optional[Raceway] = None, **kwargs: object) -> httpx.AsyncClient:  # noqa: N802
    """An ``httpx.AsyncClient`` using :class:`AsyncRacewayTransport`."""
    return httpx.AsyncClient(transport=AsyncRacewayTransport(raceway=raceway), **kwargs)  # type: ignore[arg-type]

"""``requests`` integration: a transport adapter that injects headers and records the call."""

from __future__ import annotations

import logging
from typing import Any, Optional

import requests
from requests.adapters import HTTPAdapter

from ..core import Raceway, get_default

__all__ = ["RacewayAdapter", "instrument_session", "Session"]

log = logging.getLogger("raceway")


class RacewayAdapter(HTTPAdapter):
    """Mount on a session (``instrument_session(s)``) to propagate context on every request."""

    def __init__(self, raceway: Optional[Raceway] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raceway = raceway

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        sdk = self.raceway if self.raceway is not None else get_default()
        call = sdk.begin_outbound(request.method or "GET", request.url or "")
        if call is not None:
            for k, v in call.headers.items():
                request.headers[k] = v
        try:
            resp = super().send(request, *args, **kwargs)
        except Exception as e:
            if call is not None:
                call.finish(error=f"{type(e).__name__}: {e}")
            raise
        if call is not None:
            call.finish(resp.status_code, resp.headers.get("raceway-clock"))
        return resp


def instrument_session(session: requests.Session, raceway: Optional[Raceway] = None) -> requests.Session:
    adapter = RacewayAdapter(raceway)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Session(requests.Session):
    """A ``requests.Session`` with the Raceway adapter mounted."""

    def __init__(self, raceway: Optional[Raceway] = None) -> None:
        super().__init__()
        instrument_session(self, raceway)

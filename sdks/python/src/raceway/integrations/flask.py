"""Flask extension: ``Raceway(...).init_app(app)`` or ``raceway.integrations.flask.init_app(app)``."""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

from flask import Flask, Response, g, request

from ..core import Raceway, ServerSpan, get_default

__all__ = ["init_app", "RacewayFlask"]

log = logging.getLogger("raceway")
_KEY = "_raceway_span"


def init_app(app: Flask, raceway: Optional[Raceway] = None) -> Flask:
    """Instrument ``app``: extract on request, run the view in context, answer ``raceway-clock``."""
    sdk = raceway if raceway is not None else get_default()
    app.extensions["raceway"] = sdk

    def before() -> None:
        if not sdk.config.propagation_enabled:
            return
        try:
            rule = request.url_rule.rule if request.url_rule is not None else None
            qs = request.query_string.decode("latin-1")
            target = request.path + ("?" + qs if qs else "")
            span = sdk.server_span(list(request.headers.items()), request.method, target, rule)
            span.start()
            setattr(g, _KEY, span)
        except Exception:  # noqa: BLE001 - never fail a request because of tracing
            log.debug("raceway: flask before_request failed", exc_info=True)

    def after(response: Response) -> Response:
        span: Optional[ServerSpan] = getattr(g, _KEY, None)
        if span is not None:
            try:
                error = sys.exc_info()[0] is not None or response.status_code >= 500
                response.headers["raceway-clock"] = span.response_started(response.status_code, error)
            except Exception:  # noqa: BLE001
                log.debug("raceway: flask after_request failed", exc_info=True)
        return response

    def teardown(exc: Optional[BaseException]) -> None:
        span: Optional[ServerSpan] = getattr(g, _KEY, None)
        if span is not None:
            status = span.status if span.status is not None else (500 if exc is not None else None)
            err = exc is not None or (status is not None and status >= 500)
            span.finish(status, err)

    # Run first, before any user hook that might short-circuit the request.
    app.before_request_funcs.setdefault(None, []).insert(0, before)
    app.after_request_funcs.setdefault(None, []).insert(0, after)  # run in reverse: ours last
    app.teardown_request_funcs.setdefault(None, []).append(teardown)
    return app


class RacewayFlask:
    """Flask-extension style: ``RacewayFlask(app, raceway)`` or ``ext = RacewayFlask(); ext.init_app(app)``."""

    def __init__(self, app: Optional[Flask] = None, raceway: Optional[Raceway] = None) -> None:
        self.raceway = raceway
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Any:
        return init_app(app, self.raceway)

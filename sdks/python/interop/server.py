"""Raceway Python interop server (Flask + requests, all propagation through the SDK).

    PORT=8081 RACEWAY_SERVICE=py-svc [RACEWAY_ENDPOINT=http://...] python interop/server.py

GET /health            -> 200 "ok"
GET /hop?next=<url>    -> JSON {service, trace_id, span_id, parent_id, received, clock_status, clock, downstream}
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

try:
    import raceway
except ImportError:  # not installed: use the SDK source next to this file
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import raceway
from raceway.integrations.flask import init_app
from raceway.integrations.requests import Session


def create_app() -> tuple[Flask, raceway.Raceway]:
    sdk = raceway.init(
        raceway.Config(
            service_name=os.environ.get("RACEWAY_SERVICE") or "python-interop",
            endpoint=os.environ.get("RACEWAY_ENDPOINT") or None,
        )
    )
    app = Flask("raceway-interop")
    session = Session(sdk)

    @app.get("/health")
    def health() -> Any:
        return "ok", 200, {"Content-Type": "text/plain"}

    @app.get("/hop")
    def hop() -> Any:
        nxt = request.args.get("next")
        downstream = None
        if nxt:
            r = session.get(nxt, timeout=10)
            downstream = r.json()
        t = raceway.current()
        assert t is not None
        span = t.span
        up = span.upstream
        received = up.received if up is not None else {}
        return jsonify(
            service=sdk.service,
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_id=span.received_parent_id,
            received={
                "traceparent": received.get("traceparent"),
                "tracestate": received.get("tracestate"),
                "raceway_clock": received.get("raceway_clock"),
            },
            clock_status=up.clock_status if up is not None else "absent",
            clock=t.clock_list(),
            downstream=downstream,
        )

    init_app(app, sdk)
    return app, sdk


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    app, sdk = create_app()
    server = make_server("127.0.0.1", port, app, threaded=True)

    def stop(*_: Any) -> None:
        sdk.shutdown(2.0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"raceway python interop server on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()

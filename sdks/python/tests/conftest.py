from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import raceway

SDK_DIR = Path(__file__).resolve().parent.parent
SPEC_DIR = (SDK_DIR / "../../spec").resolve()
VECTORS = SPEC_DIR / "vectors"


def load_vector(name: str) -> Any:
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Capture:
    """Collects every event an SDK instance records."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, ev: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(json.loads(json.dumps(ev)))

    def kinds(self, span_id: str | None = None) -> list[str]:
        return [e["kind"]["type"] for e in self.events if span_id is None or e["span_id"] == span_id]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"]["type"] == type_]


@pytest.fixture
def make_sdk() -> Iterator[Callable[..., tuple[raceway.Raceway, Capture]]]:
    made: list[raceway.Raceway] = []

    def make(service: str = "svc", **kw: Any) -> tuple[raceway.Raceway, Capture]:
        kw.setdefault("endpoint", None)
        sdk = raceway.Raceway(raceway.Config(service_name=service, instance_id=f"{service}-1", **kw))
        cap = Capture()
        sdk.add_listener(cap)
        made.append(sdk)
        return sdk, cap

    yield make
    for s in made:
        s.shutdown(0.5)


@pytest.fixture(scope="session")
def event_validator() -> Any:
    import jsonschema

    schema = json.loads((SPEC_DIR / "events.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


class ServerThread:
    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url = url
        self.stop = stop


def serve_wsgi(app: Any) -> ServerThread:
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()

    def stop() -> None:
        srv.shutdown()
        th.join(5)

    return ServerThread(f"http://127.0.0.1:{srv.server_port}", stop)


def serve_asgi(app: Any) -> ServerThread:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        th.join(5)

    return ServerThread(f"http://127.0.0.1:{port}", stop)

"""SDK configuration. Every field is optional; an empty config works in propagation-only mode."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Config", "default_instance_id"]


def default_instance_id() -> str:
    env = os.environ.get("RACEWAY_INSTANCE_ID")
    if env:
        return env
    try:
        host = socket.gethostname() or "localhost"
    except Exception:  # noqa: BLE001
        host = "localhost"
    return f"{host}-{os.getpid()}"


def _truncate_utf8(s: str, limit: int = 256) -> str:
    b = s.encode("utf-8", "replace")
    if len(b) <= limit:
        return s
    return b[:limit].decode("utf-8", "ignore")


def _env(name: str) -> Optional[str]:
    v = os.environ.get(name)
    return v if v else None


@dataclass
class Config:
    service_name: str = field(default_factory=lambda: os.environ.get("RACEWAY_SERVICE") or "unknown_service")
    instance_id: str = field(default_factory=default_instance_id)
    #: Backend base URL; ``None`` = propagation-only (no exporter). Default: env RACEWAY_ENDPOINT.
    endpoint: Optional[str] = field(default_factory=lambda: _env("RACEWAY_ENDPOINT"))
    #: Sent as ``Authorization: Bearer <key>``. Default: env RACEWAY_API_KEY.
    api_key: Optional[str] = field(default_factory=lambda: _env("RACEWAY_API_KEY"))
    #: False: middleware and clients pass requests through untouched.
    propagation_enabled: bool = True
    #: Log received/sent propagation headers through the ``raceway`` logger at DEBUG.
    propagation_headers_debug: bool = False
    #: Insert ``raceway=<parent-id>`` into outgoing tracestate.
    tracestate_entry: bool = True
    batch_size: int = 100
    flush_interval: float = 1.0  # seconds
    queue_capacity: int = 10_000
    max_clock_components: int = 64
    clock_component_ttl: float = 15 * 60.0  # seconds
    #: HTTP timeout of one export request (seconds).
    export_timeout: float = 5.0
    #: Attempts per batch on retryable failures (connection error, 5xx, 429).
    max_retries: int = 5
    #: Initial / maximum backoff between retries (seconds).
    retry_backoff: float = 0.1
    retry_backoff_max: float = 5.0

    def __post_init__(self) -> None:
        # Never throw at construction: clamp silly values instead.
        if not self.service_name:
            self.service_name = "unknown_service"
        self.service_name = _truncate_utf8(str(self.service_name))
        if not self.instance_id:
            self.instance_id = default_instance_id()
        self.instance_id = _truncate_utf8(str(self.instance_id))
        self.batch_size = max(1, int(self.batch_size or 100))
        self.queue_capacity = max(1, int(self.queue_capacity or 10_000))
        self.max_clock_components = max(1, min(256, int(self.max_clock_components or 64)))
        self.flush_interval = max(0.01, float(self.flush_interval or 1.0))
        if self.endpoint is not None:
            self.endpoint = self.endpoint.rstrip("/") or None

    @property
    def own_key(self) -> str:
        """The own clock component ``service#instance`` (at most 256 UTF-8 bytes, as the wire requires)."""
        return _truncate_utf8(f"{self.service_name}#{self.instance_id}")

"""Writes spec/events.schema.json (JSON Schema 2020-12) for the Raceway event wire model."""
import json
import pathlib

HEX16 = {"type": "string", "pattern": "^[0-9a-f]{16}$", "not": {"const": "0000000000000000"}}
UUID = {"type": "string", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}
NAME = {"type": "string", "minLength": 1, "maxLength": 256}
U53 = {"type": "integer", "minimum": 0, "maximum": 9007199254740991}
MODE = {"enum": ["exclusive", "shared"]}


def kind(type_, props, required=()):
    return {
        "type": "object",
        "properties": {"type": {"const": type_}, **props},
        "required": ["type", *required],
    }


kinds = [
    kind("span_start", {
        "operation": NAME,
        "span_kind": {"enum": ["server", "internal", "client", "producer", "consumer"]},
        "http": {"type": "object", "properties": {
            "method": {"type": "string"}, "route": {"type": ["string", "null"]}, "target": {"type": "string"}}},
        "upstream": {"type": "object", "properties": {
            "traceparent": {"enum": ["valid", "absent", "invalid"]},
            "clock": {"enum": ["ok", "reparented", "conflict", "absent", "ignored", "too_long",
                               "unsupported_version", "malformed", "too_large", "too_many_components"]}}},
    }, ["operation", "span_kind"]),
    kind("span_end", {"operation": NAME, "status_code": {"type": "integer"}, "error": {"type": "boolean"}},
         ["operation"]),
    kind("http_request", {"method": {"type": "string", "minLength": 1}, "route": {"type": ["string", "null"]},
                          "target": {"type": "string"}}, ["method", "target"]),
    kind("http_response", {"status": {"type": "integer", "minimum": 100, "maximum": 999}}, ["status"]),
    kind("outbound_call", {"child_span_id": HEX16, "protocol": NAME, "method": {"type": "string"},
                           "url": {"type": "string"}}, ["child_span_id", "protocol"]),
    kind("outbound_response", {
        "child_span_id": HEX16, "status": {"type": "integer"}, "error": {"type": "string"},
        "callee": {"type": "object", "properties": {"trace_id": UUID, "span_id": HEX16, "service": NAME,
                                                      "instance": NAME},
                   "required": ["trace_id", "span_id"]}}, ["child_span_id"]),
    kind("function_call", {"function": NAME, "module": {"type": "string"}}, ["function"]),
    kind("async_spawn", {"child_thread_id": {"type": "string", "minLength": 1, "maxLength": 128}},
         ["child_thread_id"]),
    kind("async_await", {"child_thread_id": {"type": "string", "minLength": 1, "maxLength": 128}},
         ["child_thread_id"]),
    kind("state_change", {"variable": NAME,
                          "access": {"enum": ["read", "write", "atomic_read", "atomic_write", "atomic_rmw"]},
                          "old_value": {}, "new_value": {}}, ["variable", "access"]),
    kind("lock_acquire", {"lock": NAME, "mode": MODE}, ["lock", "mode"]),
    kind("lock_release", {"lock": NAME, "mode": MODE}, ["lock", "mode"]),
    kind("database_query", {"query": {"type": "string"}, "database": {"type": "string"}}, ["query"]),
    kind("database_result", {"rows": {"type": "integer", "minimum": 0}, "error": {"type": "string"}}),
    kind("error", {"error_type": NAME, "message": {"type": "string"}}, ["error_type", "message"]),
    kind("custom", {"name": NAME, "data": {}}, ["name"]),
]

event = {
    "type": "object",
    "properties": {
        "id": UUID,
        "trace_id": UUID,
        "span_id": HEX16,
        "parent_span_id": {"oneOf": [HEX16, {"type": "null"}]},
        "thread_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "seq": U53,
        "service": NAME,
        "instance": NAME,
        "timestamp": {"type": "string",
                      "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$"},
        "duration_ns": U53,
        "vector_clock": {"type": "array", "maxItems": 256, "items": {
            "type": "array", "prefixItems": [NAME, U53], "minItems": 2, "maxItems": 2}},
        "locks_held": {"type": "array", "maxItems": 64, "items": {
            "type": "object", "properties": {"lock": NAME, "mode": MODE}, "required": ["lock", "mode"]}},
        "location": {"type": "string", "maxLength": 1024},
        "tags": {"type": "object", "maxProperties": 64,
                 "additionalProperties": {"type": "string", "maxLength": 4096}},
        "kind": {"oneOf": kinds},
    },
    "required": ["id", "trace_id", "span_id", "thread_id", "seq", "service", "instance", "timestamp",
                 "vector_clock", "kind"],
}

schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://raceway.dev/spec/events.schema.json",
    "title": "Raceway event batch",
    "type": "object",
    "properties": {"events": {"type": "array", "items": {"$ref": "#/$defs/event"}}},
    "required": ["events"],
    "$defs": {"event": event},
}

out = pathlib.Path(__file__).resolve().parent.parent / "events.schema.json"
out.write_text(json.dumps(schema, indent=2) + "\n")
print("wrote", out)

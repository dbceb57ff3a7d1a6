"""The OpenAPI 3.1 document served at ``/openapi.json``, derived from the endpoint registry.

Each operation's request body is the schema its endpoint declares (``Endpoint.body``, proven
equal to what ``accept`` takes by tests/unit/test_ingest_schemas.py); the ``/events`` items
are :data:`contract.items.SCHEMAS`, the table both sides validate with. Credentials are
security schemes (the ``/events`` bearer key, RevenueCat's ``Authorization``), signature
headers required header parameters, path tokens path parameters. What a schema cannot say
is in the descriptions: signatures and tokens are checked against the configuration, a body
nests at most ``MAX_DEPTH`` containers, each endpoint has its own body cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from contract.items import SCHEMAS
from contract.values import ref
from ingest.endpoint import Endpoint
from ingest.exchange import REQUEST_ID_HEADER, RETRY_AFTER_S
from ingest.fields import MAX_DEPTH

Schema = dict[str, Any]

SECURITY_SCHEMES: Mapping[str, Schema] = {
    "eventsBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <EVENTS_API_KEY>",
    },
    "revenuecatAuthorization": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "the exact value of REVENUECAT_AUTHORIZATION, as set in RevenueCat",
    },
}

# status -> (error codes, when); the codes are those of ingest.errors and ingest.protocol.
_ERRORS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "400": (("bad_request",), "The body is not JSON or lacks what a record needs"),
    "401": (("unauthorized",), "Missing or wrong credentials, token or signature"),
    "404": (("not_found",), "The endpoint's secret is not configured"),
    "408": (("request_timeout",), "Head not within HEADER_TIMEOUT_S or body not in time"),
    "413": (("payload_too_large",), "Body over the endpoint's cap, or one event over 1 MB"),
    "431": (("headers_too_large",), "Head over MAX_HEADER_BYTES or MAX_HEADERS"),
    "503": (
        ("unavailable", "overloaded"),
        "Kafka did not acknowledge within PRODUCE_TIMEOUT_S, or the process or endpoint is "
        "over its admission; retry after Retry-After",
    ),
}
# Refused in the HTTP protocol, before any endpoint: these carry no X-Request-Id.
_BEFORE_THE_APP = ("408", "431")
_REQUEST_ID = {
    "description": "The caller's X-Request-Id when it is a sane token, else a fresh one",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "required": True,
    "schema": {"type": "integer", "const": RETRY_AFTER_S},
}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _error(status: str) -> Schema:
    codes, description = _ERRORS[status]
    headers: Schema = {REQUEST_ID_HEADER: {**_REQUEST_ID, "required": True}}
    if status in _BEFORE_THE_APP:
        headers = {REQUEST_ID_HEADER: {**_REQUEST_ID, "required": False}}
    if status == "503":
        headers["Retry-After"] = _RETRY_AFTER
    body = {"allOf": [ref("Error"), {"properties": {"error": {"enum": list(codes)}}}]}
    return {"description": description, "headers": headers, "content": _json(body)}


def _parameters(endpoint: Endpoint[Any]) -> list[Schema]:
    in_path = re.findall(r"{(\w+)}", endpoint.path)
    declared = [p.name for p in endpoint.params if p.location == "path"]
    if declared != in_path:
        raise ValueError(f"{endpoint.name}: path parameters {declared} are not {in_path}")
    params = []
    for param in endpoint.params:
        schema: Schema = {"type": "string"}
        if param.pattern is not None:
            schema["pattern"] = param.pattern
        params.append(
            {
                "name": param.name,
                "in": param.location,
                "required": param.required or param.location == "path",
                "description": param.description,
                "schema": schema,
            }
        )
    return params


def _operation(endpoint: Endpoint[Any]) -> Schema:
    success = {
        "description": "Every record was acknowledged by Kafka",
        "headers": {REQUEST_ID_HEADER: {**_REQUEST_ID, "required": True}},
        "content": _json(ref("Accepted")),
    }
    limits = endpoint.limits
    notes = [f"Authentication: {endpoint.security}."]
    if limits.max_body_bytes is not None:
        notes.append(f"Body at most {limits.max_body_bytes} bytes (and MAX_BODY_BYTES).")
    notes.append(f"A body nests at most {MAX_DEPTH} levels of arrays and objects.")
    operation: Schema = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "description": " ".join(notes),
        "parameters": _parameters(endpoint),
        "requestBody": {"required": True, "content": _json(dict(endpoint.body))},
        "responses": {
            str(endpoint.success_status): success,
            **{status: _error(status) for status in _ERRORS},
        },
    }
    if endpoint.scheme is not None:
        operation["security"] = [{endpoint.scheme: []}]
    return operation


def _probe(summary: str, ok: Schema, *, not_ready: bool = False) -> Schema:
    responses: Schema = {"200": {"description": "OK", "content": ok}}
    if not_ready:
        responses["503"] = {
            "description": "The Kafka producer is not connected",
            "content": _json(ref("Error")),
        }
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def _status(value: str) -> Schema:
    return _json(
        {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": value}},
        }
    )


COMPONENT_SCHEMAS: Mapping[str, Schema] = {
    **SCHEMAS,
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["status", "records"],
        "properties": {
            "status": {"const": "accepted"},
            "records": {"type": "integer", "minimum": 0},
        },
    },
}


def document(endpoints: Iterable[Endpoint[Any]], version: str) -> Schema:
    paths: Schema = {e.path: {"post": _operation(e)} for e in endpoints}
    paths["/healthz"] = _probe("200 while the process runs", _status("ok"))
    paths["/readyz"] = _probe(
        "200 while the Kafka producer is connected, else 503", _status("ready"), not_ready=True
    )
    paths["/metrics"] = _probe(
        "Prometheus metrics (text format)", {"text/plain": {"schema": {"type": "string"}}}
    )
    paths["/openapi.json"] = _probe("This document", _json({"type": "object"}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Webhook ingester",
            "version": version,
            "description": "Verifies provider webhooks and first-party events and publishes "
            "one CloudEvents record per event to Kafka (docs/contract.md, docs/topics.md).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(COMPONENT_SCHEMAS),
            "securitySchemes": dict(SECURITY_SCHEMES),
        },
    }

"""The OpenAPI document served at ``/openapi.json``, derived from the endpoint registry."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ingest.endpoint import Endpoint

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
_ERRORS = {
    "400": "Body is not JSON or lacks what is needed to build a record",
    "401": "Missing or wrong credentials, token or signature, or a stale timestamp",
    "404": "The endpoint's secret is not configured",
    "408": "Headers not within HEADER_TIMEOUT_S or body not within BODY_TIMEOUT_S",
    "413": "Body over MAX_BODY_BYTES",
    "431": "Request line and headers over MAX_HEADER_BYTES, or more than MAX_HEADERS",
    "503": "Kafka did not acknowledge within PRODUCE_TIMEOUT_S, or the process is over "
    "MAX_CONCURRENT_REQUESTS or MAX_INFLIGHT_BYTES; retry after Retry-After",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(endpoint: Endpoint[Any]) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    responses: dict[str, Any] = {
        str(endpoint.success_status): {
            "description": "Every record was acknowledged by Kafka",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        }
    }
    responses.update({code: _error(text) for code, text in _ERRORS.items()})
    return {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "description": f"Authentication: {endpoint.security}.",
        "parameters": params,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": responses,
    }


def _probe(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}


def document(endpoints: Iterable[Endpoint[Any]], version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {e.path: {"post": _operation(e)} for e in endpoints}
    paths["/healthz"] = _probe("200 while the process runs")
    paths["/readyz"] = _probe("200 while the Kafka producer is connected, else 503")
    paths["/metrics"] = _probe("Prometheus metrics (text format)")
    paths["/openapi.json"] = _probe("This document")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Webhook ingester",
            "version": version,
            "description": "Verifies provider webhooks and first-party events and publishes "
            "one CloudEvents record per event to Kafka (see docs/topics.md).",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "const": "accepted"},
                        "records": {"type": "integer"},
                    },
                },
            }
        },
    }

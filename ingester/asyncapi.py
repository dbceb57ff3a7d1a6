"""The AsyncAPI 3 document of the topics (docs/asyncapi.yaml), generated from the code.

Channels are the streams of ``contract.topics``; the headers those of ``contract.headers``
(and the dead-letter headers of ``consumers.dlq``); each payload the schema ingest checks the
event against before publishing it -- the same declarations ``/openapi.json`` is built
from (``contract.items``, ``ingest/providers/*.py``). ``python -m ingester.asyncapi --write
docs/asyncapi.yaml`` (part of ``make docs``) writes it; ``tests/unit/test_asyncapi.py``
keeps the file equal to this and has the AsyncAPI project's parser validate it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consumers import dlq
from contract import headers as h
from contract.items import SCHEMAS
from contract.topics import DLQ, SOURCE_OF_STREAM, STREAM_OF_SOURCE, STREAMS, topic_name
from contract.values import ref
from ingest.providers import kit, kit_legacy, klaviyo, klaviyo_flow, revenuecat

Schema = dict[str, Any]
DOCUMENT = Path("docs/asyncapi.yaml")
USAGE = "usage: python -m ingester.asyncapi --yaml | --write FILE"

_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_TRACEPARENT = {
    "type": "string",
    "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
    "description": "W3C trace context of the request that published the record",
}


def cloudevent_headers() -> Schema:
    """The headers of every record (contract.headers), as written by encode_headers."""
    properties: Schema = {
        h.CE_SPECVERSION: {"const": h.SPECVERSION},
        h.CE_ID: {**_TEXT, "description": "idempotency key: deduplicate on (ce_source, ce_id)"},
        h.CE_SOURCE: {"enum": list(STREAM_OF_SOURCE)},
        h.CE_TYPE: {**_TEXT, "description": "<ce_source>.<the provider's event type>"},
        h.CE_TIME: {**_TIME, "description": "the provider's event time, RFC 3339 UTC, ms"},
        h.CE_PARTITIONKEY: {**_TEXT, "description": "the record key: one user, one partition"},
        h.CONTENT_TYPE: {"const": "application/json"},
        h.RECEIVED_AT: {**_TIME, "description": "when ingest received the request"},
        h.CE_TRACEPARENT: {**_TRACEPARENT, "description": "CloudEvents distributed tracing"},
        h.TRACEPARENT: _TRACEPARENT,
    }
    required = [h.CE_SPECVERSION, h.CE_ID, h.CE_SOURCE, h.CE_TYPE, h.CE_TIME, h.CE_PARTITIONKEY]
    return {"type": "object", "required": [*required, h.CONTENT_TYPE], "properties": properties}


def _legacy_kit_event() -> Schema:
    """The value kit_legacy.build_records makes of a legacy hook."""
    return {
        "type": "object",
        "required": ["id", "type", "created", "data", "legacy"],
        "properties": {
            "id": {"type": "string", "pattern": "^legacy-[0-9a-f]{32}$"},
            "type": {"type": "string", "pattern": kit_legacy.EVENT_NAME_PATTERN},
            "created": _TIME,
            "data": {"type": "object", "description": "the hook's body, keyed by its resource"
                     " (the event name's first part): {\"subscriber\": {...}}, {\"purchase\":"
                     " {...}}"},
            "legacy": {"const": True},
        },
    }  # fmt: skip


# message name -> (source, ce_type prefix or value, summary, payload schema name)
MESSAGES: Mapping[str, tuple[str, str, str, str]] = {
    "revenuecatEvent": (
        "revenuecat", "revenuecat.", "One RevenueCat event; ce_id = event.id.", "RevenueCatEvent",
    ),
    "klaviyoSystemEvent": (
        "klaviyo", "klaviyo.event:", "One element of a system-webhook delivery; ce_id = "
        "external_id; key = the profile id.", "KlaviyoEvent",
    ),
    "klaviyoFlowProfile": (
        "klaviyo", klaviyo_flow.EVENT_TYPE, "The flow-webhook body as posted; ce_id = event_id;"
        " key = profile.id.", "KlaviyoFlowProfile",
    ),
    "kitEvent": (
        "kit", "kit.", "One Kit event; ce_id = id; key = the subscriber's case-folded email, else"
        " <resource>:<id> (tag:12), else the event id.", "KitEvent",
    ),
    "kitLegacyEvent": (
        "kit", "kit.", "A legacy Kit hook of any event name; ce_id derived from its body.",
        "KitLegacyEvent",
    ),
    "appEvent": (
        "app", "app.", "One validated first-party item; ce_id = id; key = user_id.", "EventItem",
    ),
}  # fmt: skip
PAYLOADS: Mapping[str, Schema] = {
    "RevenueCatEvent": revenuecat.EVENT,
    "KlaviyoEvent": klaviyo.EVENT,
    "KlaviyoFlowProfile": klaviyo_flow.BODY,
    "KitEvent": kit.EVENT,
    "KitLegacyEvent": _legacy_kit_event(),
}


def _message(name: str) -> Schema:
    source, ce_type, summary, payload = MESSAGES[name]
    exact = not ce_type.endswith((".", ":"))
    type_schema = {"const": ce_type} if exact else {"type": "string", "pattern": f"^{ce_type}"}
    return {
        "name": name,
        "summary": summary,
        "contentType": "application/json",
        "headers": {
            "allOf": [
                ref("CloudEventHeaders"),
                {"properties": {h.CE_SOURCE: {"const": source}, h.CE_TYPE: type_schema}},
            ]
        },
        "payload": ref(payload),
        "traits": [{"$ref": "#/components/messageTraits/kafkaKey"}],
    }


def _dead_letter() -> Schema:
    names = (
        dlq.SOURCE_TOPIC, dlq.SOURCE_PARTITION, dlq.SOURCE_OFFSET, dlq.ERROR_CLASS, dlq.ERROR,
        dlq.ATTEMPTS, dlq.DEAD_AT, dlq.CONSUMER_GROUP,
    )  # fmt: skip
    return {
        "name": "deadLetter",
        "summary": "A record no consumer could apply: its key, value and headers as read, "
        "plus where it came from and why (docs/consumers.md#dead-letters).",
        "headers": {
            "type": "object",
            "required": list(names),
            "properties": {
                **{name: _TEXT for name in names},
                dlq.REPLAY_COUNT: {**_TEXT, "description": "times `ingester dlq replay` sent it"},
            },
        },
        "payload": {},
        "traits": [{"$ref": "#/components/messageTraits/kafkaKey"}],
    }


def _channels() -> tuple[Schema, Schema]:
    channels: Schema = {}
    operations: Schema = {}
    by_stream: dict[str, list[str]] = {stream: [] for stream in STREAMS}
    for name, (message_source, *_) in MESSAGES.items():
        by_stream[STREAM_OF_SOURCE[message_source]].append(name)
    by_stream[DLQ] = ["deadLetter"]
    for stream, names in by_stream.items():
        source = SOURCE_OF_STREAM.get(stream)
        channels[stream] = {
            "address": topic_name("", stream),
            "description": f"ce_source {source}" if source else "dead letters of every topic",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        operations[f"receive{stream.capitalize()}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{stream}"},
            "messages": [{"$ref": f"#/channels/{stream}/messages/{n}"} for n in names],
        }
    return channels, operations


def document(version: str = "1.0.0") -> Schema:
    channels, operations = _channels()
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "Webhook ingester topics",
            "version": version,
            "description": "Generated by `python -m ingester.asyncapi` (make docs) from the "
            "code; do not edit. One CloudEvents 1.0 record (Kafka binary mode) per provider "
            "event: the value is the event's JSON, the attributes are headers, the key is "
            "the partition key. Delivery is at least once: deduplicate on (ce_source, "
            "ce_id). Topic names carry the deployment's TOPIC_PREFIX in front. "
            "See docs/topics.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The cluster named by KAFKA_BOOTSTRAP_SERVERS.",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {
                "CloudEventHeaders": cloudevent_headers(),
                **SCHEMAS,
                **PAYLOADS,
            },
            "messageTraits": {
                "kafkaKey": {
                    "bindings": {
                        "kafka": {
                            "bindingVersion": "0.5.0",
                            "key": {"type": "string", "description": "ce_partitionkey"},
                        }
                    }
                }
            },
            "messages": {
                **{name: _message(name) for name in MESSAGES},
                "deadLetter": _dead_letter(),
            },
        },
    }


def render() -> str:
    import yaml  # a dev dependency: `make docs` runs in the dev environment

    # Through JSON first: a schema used twice becomes two copies, not a YAML alias.
    plain = json.loads(json.dumps(document()))
    header = "# Generated by `python -m ingester.asyncapi` (make docs); do not edit.\n"
    return header + yaml.safe_dump(plain, sort_keys=False, width=100, allow_unicode=True)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--yaml"]:
        print(render(), end="")
        return 0
    if argv[:1] == ["--write"] and len(argv) == 2:
        Path(argv[1]).write_text(render())
        print(f"AsyncAPI document written to {argv[1]}")
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

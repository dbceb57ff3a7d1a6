"""Reading provider bodies: small pure accessors that fail with a 400 naming the field.

:func:`parse` is the one decoder every endpoint uses. Besides JSON syntax it refuses what
would pass the door and then fail downstream (docs/topics.md, "What the door refuses"):
- nesting deeper than :data:`MAX_DEPTH` (the JSON decoder takes 1,024 levels, the encoder
  that writes records and database rows only 254);
- U+0000 in a string or key, which PostgreSQL text and jsonb cannot hold: replaced by
  U+FFFD in provider bodies (``nul="replace"``), refused naming the field otherwise.
Both are one pass: NUL is a scan of the raw bytes, depth a walk over the decoded containers
(skipped when the body holds fewer brackets than the limit); only a refusal walks again, to
name the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from contract.fields import dig as dig
from contract.values import BLANK_PATTERN
from ingest.errors import BadRequest

MAX_DEPTH = 128  # containers inside containers, the body itself being level 1
# Ids, types and partition keys: enough for any provider's, and short enough for the
# consumers' unique indexes (a B-tree entry must fit in a third of a page, ~2,700 bytes).
MAX_TEXT = 256

Schema = dict[str, Any]
# The JSON Schemas of what the accessors below accept, declared beside them; a provider's
# body schema is built from these and the same bounds its code passes to them.
NON_BLANK: Schema = {"type": "string", "not": {"pattern": BLANK_PATTERN}}  # text_or_none
TEXT: Schema = {**NON_BLANK, "maxLength": MAX_TEXT}  # require_text
# Integer ids within 64 bits (beyond them the parser gives a float, which require_id refuses).
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**64 - 1
ID: Schema = {  # require_id
    "anyOf": [{"type": "integer", "minimum": MIN_INTEGER, "maximum": MAX_INTEGER}, TEXT]
}
ANY: Schema = {}  # read leniently, never refused


def obj(properties: dict[str, Schema], **keywords: Any) -> Schema:
    """An object that must have ``properties`` (require_object, then each one required)."""
    return {"type": "object", "required": list(properties), "properties": properties, **keywords}


def array(items: Schema, *, minimum: int, maximum: int) -> Schema:
    """What :func:`require_list` accepts with these bounds, each item ``items``."""
    return {"type": "array", "minItems": minimum, "maxItems": maximum, "items": items}


def nested(path: str, leaf: Schema) -> Schema:
    """``{"a": {"b": leaf}}`` for ``"a.b"``: objects down to a required leaf (:func:`dig`)."""
    schema = leaf
    for key in reversed(path.split(".")):
        schema = obj({key: schema})
    return schema


_NUL_ESCAPE = b"\\u0000"
# \u0000 preceded by an even number of backslashes (an odd number escapes the backslash).
_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_PATH_SEGMENTS = 4


@dataclass(frozen=True, slots=True)
class Parsed:
    body: dict[str, Any]
    raw: bytes  # the bytes decoded: the received ones, or with each NUL replaced


def parse(raw: bytes, *, nul: Literal["replace", "reject"] = "replace") -> Parsed:
    """Decode the raw body; it must be one JSON object within :data:`MAX_DEPTH`, and hold
    no U+0000 (replaced or refused, see the module docstring)."""
    has_nul = _NUL_ESCAPE in raw
    if has_nul and nul == "replace":
        raw = _NUL.sub(rb"\1\\ufffd", raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    if deeper_than(body, MAX_DEPTH, raw):
        where = _path(_first(body, lambda depth, _: depth > MAX_DEPTH))
        raise BadRequest(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if has_nul and nul == "reject":
        found = _first(body, lambda _, node: isinstance(node, str) and "\x00" in node)
        if found is not None:
            raise BadRequest(f"{_path(found)}: must not contain U+0000")
    return Parsed(body, raw)


def parse_object(raw: bytes) -> dict[str, Any]:
    """:func:`parse` for provider bodies, when only the decoded object is needed."""
    return parse(raw).body


def deeper_than(value: Any, limit: int, raw: bytes = b"") -> bool:
    """Whether decoded JSON ``value`` nests containers more than ``limit`` deep; ``raw``,
    its bytes, lets a body with few brackets skip the walk."""
    if raw and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    level = [value]
    for _ in range(limit):
        deeper = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True


Segment = str | int


def _first(value: Any, wanted: Any) -> list[Segment] | None:
    """The path to the first node (a key counts as a node) for which
    ``wanted(depth, node)`` holds; an explicit stack, as the value may nest 1,024 deep."""
    stack: list[tuple[Any, int, list[Segment]]] = [(value, 1, [])]
    while stack:
        node, depth, path = stack.pop()
        if wanted(depth, node):
            return path
        if isinstance(node, dict):
            for key, child in reversed(node.items()):
                if wanted(depth, key):
                    return [*path, key]
                stack.append((child, depth + 1, [*path, key]))
        elif isinstance(node, list):
            indexed = reversed(list(enumerate(node)))
            stack.extend((child, depth + 1, [*path, i]) for i, child in indexed)
    return None


def _path(path: list[Segment] | None) -> str:
    """``events[3].data.subscriber``, at most a few segments; ``body`` for the root."""
    if not path:
        return "body"
    text = ""
    for segment in path[:_PATH_SEGMENTS]:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += ("." if text else "") + segment[:64].replace("\x00", "\\u0000")
    return text + ("..." if len(path) > _PATH_SEGMENTS else "")


def require_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{path}: must be an object")
    return value


def require_list(value: Any, path: str, *, minimum: int, maximum: int) -> list[Any]:
    if not isinstance(value, list) or not minimum <= len(value) <= maximum:
        raise BadRequest(f"{path}: must be an array of {minimum} to {maximum} items")
    return value


def require_text(value: Any, path: str) -> str:
    """A non-empty string of at most :data:`MAX_TEXT` characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{path}: is required (a non-empty string)")
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{path}: must be at most {MAX_TEXT} characters")
    return value


def require_id(value: Any, path: str) -> str:
    """An identifier given as a non-empty string or an integer (Kit uses both); JSON has one
    number type, so 42.0 is the integer 42 (as in JSON Schema)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        # orjson reads every integer within 64 bits as an int; one beyond them becomes the
        # nearest float, and those just below -2**63 round to -2**63 itself: a float equal
        # to the lower bound came from beyond it (or from "-9223372036854775808.0").
        if not MIN_INTEGER < value <= MAX_INTEGER:
            raise BadRequest(f"{path}: must be an integer within 64 bits or a string")
        return str(int(value))
    return require_text(value, path)


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def dumps(value: Any) -> bytes:
    """One event's JSON bytes (the record value).

    orjson returns its output in a bytes object that keeps the capacity of its write buffer
    (about 8 KiB for a 500-byte event); a record value lives until Kafka acknowledged it, so
    it is copied into an object of its own size (docs/benchmarks.md, memory per request).
    """
    return bytes(memoryview(orjson.dumps(value)))

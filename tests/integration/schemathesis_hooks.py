"""Hooks schemathesis loads when it fuzzes the live server (test_openapi_live.py).

A generated request to a signed webhook can only be accepted if it is signed, so each
positive case (schema-valid in every part) is signed here with the secrets of the settings
under test, read from the environment the test gives schemathesis, and its path token set.
Negative cases and the checks that drop a header (``missing_required_header``) are left as
generated: the server must refuse them, and does. The body is serialised here once and sent
as those exact bytes, since the signature covers them.
"""

from __future__ import annotations

import json
import os
import time
from email.utils import formatdate
from typing import Any

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from contract.fields import dig
from core.settings import from_mapping
from ingest.providers import kit, klaviyo
from ingest.verify import sign_timestamped

SETTINGS = from_mapping(dict(os.environ))


def _raw(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    return b"" if isinstance(body, NotSet) else json.dumps(body).encode()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return
    path, headers = case.operation.path, case.headers if case.headers is not None else {}
    if "{token}" in path:
        token = SETTINGS.kit_legacy_token if "/kit/" in path else SETTINGS.klaviyo_flow_token
        case.path_parameters["token"] = token
    now = int(time.time())
    if path == "/webhooks/kit" and kit.SIGNATURE_HEADER in headers:
        raw = kwargs["data"] = _raw(case.body)
        headers[kit.SIGNATURE_HEADER] = sign_timestamped(SETTINGS.kit_webhook_secrets, now, raw)
    elif path == "/webhooks/klaviyo" and klaviyo.SIGNATURE_HEADER in headers:
        raw = kwargs["data"] = _raw(case.body)
        sent = formatdate(now, usegmt=True)
        claimed = dig(case.body, "meta", "klaviyo_webhook_id")
        if isinstance(claimed, str) and klaviyo.WEBHOOK_ID_HEADER in headers:
            headers[klaviyo.WEBHOOK_ID_HEADER] = claimed
        if klaviyo.TIMESTAMP_HEADER in headers:
            headers[klaviyo.TIMESTAMP_HEADER] = sent
        secret = SETTINGS.klaviyo_webhook_secret or ""
        headers[klaviyo.SIGNATURE_HEADER] = klaviyo.signature(secret, raw, sent)

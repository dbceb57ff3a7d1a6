"""Failures of the ingest boundary, each carrying the HTTP status and error code it answers with.

Error bodies are ``{"error": <code>, "detail": <detail>}`` (docs/contract.md §4). Verification
failures also carry a short machine ``reason`` used as the label of
``ingest_signature_failures_total``; details never contain a secret or a signature.
"""

from __future__ import annotations

from typing import ClassVar


class IngestError(Exception):
    """Base of every error the HTTP layer turns into a response."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class BadRequest(IngestError):
    """The body is not JSON or lacks what is needed to build a record (400)."""

    status = 400
    code = "bad_request"


class NotConfigured(IngestError):
    """The endpoint's secret is not configured: it answers as if it did not exist (404)."""

    status = 404
    code = "not_found"


class PayloadTooLarge(IngestError):
    """The request body, or one record built from it, is over the limit (413)."""

    status = 413
    code = "payload_too_large"


class RequestTimeout(IngestError):
    """The body did not arrive within ``BODY_TIMEOUT_S`` (408); the connection is closed."""

    status = 408
    code = "request_timeout"


class Overloaded(IngestError):
    """Over ``MAX_CONCURRENT_REQUESTS`` or ``MAX_INFLIGHT_BYTES`` (503 + Retry-After)."""

    status = 503
    code = "overloaded"


class PublishError(IngestError):
    """Kafka did not acknowledge every record; the provider should retry (503)."""

    status = 503
    code = "unavailable"


class PublishTimeout(PublishError):
    """Kafka did not acknowledge within ``PRODUCE_TIMEOUT_S``."""


class VerificationError(IngestError):
    """Credentials, token or signature are missing or wrong (401)."""

    status = 401
    code = "unauthorized"
    reason: ClassVar[str] = "invalid"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.reason.replace("_", " "))


class MissingHeader(VerificationError):
    reason = "missing_header"

    def __init__(self, header: str) -> None:
        super().__init__(f"missing {header} header")
        self.header = header


class MalformedHeader(VerificationError):
    reason = "malformed_header"

    def __init__(self, header: str, why: str = "") -> None:
        super().__init__(f"malformed {header} header" + (f": {why}" if why else ""))
        self.header = header


class BadCredentials(VerificationError):
    """An Authorization value, API key or path token does not match."""

    reason = "bad_credentials"


class BadSignature(VerificationError):
    reason = "bad_signature"

    def __init__(self) -> None:
        super().__init__("signature does not match")


class StaleTimestamp(VerificationError):
    reason = "stale_timestamp"

    def __init__(self, skew_s: float) -> None:
        super().__init__(f"signed timestamp is {skew_s:.0f} s old, over the tolerance")
        self.skew_s = skew_s


class FutureTimestamp(VerificationError):
    reason = "future_timestamp"

    def __init__(self, skew_s: float) -> None:
        super().__init__(f"signed timestamp is {skew_s:.0f} s in the future, over the tolerance")
        self.skew_s = skew_s


class WebhookIdMismatch(VerificationError):
    reason = "webhook_id_mismatch"

    def __init__(self) -> None:
        super().__init__("meta.klaviyo_webhook_id does not match the Klaviyo-Webhook-Id header")

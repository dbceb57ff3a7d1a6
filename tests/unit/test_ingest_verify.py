"""Request verification of every provider, table-driven.

The ``*_VECTOR`` digests were computed with openssl, independently of the code under test:
    printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac test-rc-hmac -hex
    printf '%s' "${BODY}Thu, 04 Jan 2024 18:05:25 GMT" | openssl dgst -sha256 \
        -hmac test-klaviyo-secret -hex
    printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac test-kit-new -hex   (and -old)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.errors import (
    BadCredentials,
    BadSignature,
    FutureTimestamp,
    MalformedHeader,
    MissingHeader,
    StaleTimestamp,
    VerificationError,
    WebhookIdMismatch,
)
from ingest.providers import events, kit, klaviyo, revenuecat
from ingest.verify import Signing, check_path_token

T = 1700000000
TOLERANCE = 300

RC_BODY = (
    b'{"api_version":"1.0","event":{"id":"evt-rc-1","type":"INITIAL_PURCHASE",'
    b'"app_user_id":"u_rc_1"}}'
)
RC_VECTOR = "20848dd649230a0aa49eadbe7162f9cc58250db6110da725c33c4959e2af3e67"

KL_BODY = b'{"data":[],"meta":{"klaviyo_webhook_id":"wh_1"}}'
KL_DATE = "Thu, 04 Jan 2024 18:05:25 GMT"
KL_T = 1704391525  # KL_DATE as unix seconds
KL_VECTOR = "bc0ce780ee5a9d04e0340a25fe7968a17d8741f56ad199910c121f717606e2ff"

KIT_BODY = b'{"delivery_id":1,"events":[]}'
KIT_NEW_VECTOR = "692b5718972e3d5d015e12dbbb0cdd2911a70d3b7b11de5b293fee5380686cba"
KIT_OLD_VECTOR = "2ecfe556d036fd294626ea2b9a246bb35f49ed83426db3c1455e385d307f82cd"
KIT_SECRETS = ("test-kit-old", "test-kit-new")


def tamper(raw: bytes) -> bytes:
    """The same body with one byte changed."""
    return raw[:-2] + bytes([raw[-2] ^ 0x01]) + raw[-1:]


def rc_headers(signature: str | None = f"t={T},v1={RC_VECTOR}") -> dict[str, str]:
    headers = {"authorization": "Bearer test-rc-auth"}
    if signature is not None:
        headers["x-revenuecat-webhook-signature"] = signature
    return headers


def check(call: Callable[[], object], expected: type[VerificationError] | None) -> None:
    if expected is None:
        call()
    else:
        with pytest.raises(expected):
            call()


@pytest.mark.parametrize(
    ("headers", "raw", "now", "secret", "expected"),
    [
        pytest.param(rc_headers(), RC_BODY, T + 10, "test-rc-hmac", None, id="openssl vector"),
        pytest.param(
            rc_headers(f"t={T},v1={RC_VECTOR.upper()}"),
            RC_BODY,
            T,
            "test-rc-hmac",
            None,
            id="upper-case hex",
        ),
        pytest.param(
            rc_headers(f"t={T}, v0=abc, v1={RC_VECTOR}"),
            RC_BODY,
            T,
            "test-rc-hmac",
            None,
            id="unknown scheme ignored",
        ),
        pytest.param(rc_headers(None), RC_BODY, T, None, None, id="hmac not configured"),
        pytest.param({}, RC_BODY, T, None, MissingHeader, id="no authorization"),
        pytest.param(
            {"authorization": "Bearer wrong"}, RC_BODY, T, None, BadCredentials, id="wrong auth"
        ),
        pytest.param(
            {"authorization": "Bearer test-rc-auth "},
            RC_BODY,
            T,
            None,
            None,
            id="surrounding whitespace of a header is not part of it",
        ),
        pytest.param(
            rc_headers(None), RC_BODY, T, "test-rc-hmac", MissingHeader, id="no signature"
        ),
        pytest.param(
            rc_headers(), tamper(RC_BODY), T, "test-rc-hmac", BadSignature, id="tampered body"
        ),
        pytest.param(rc_headers(), RC_BODY, T, "other-secret", BadSignature, id="wrong secret"),
        pytest.param(
            rc_headers(), RC_BODY, T + TOLERANCE + 1, "test-rc-hmac", StaleTimestamp, id="stale"
        ),
        pytest.param(
            rc_headers(), RC_BODY, T - TOLERANCE - 1, "test-rc-hmac", FutureTimestamp, id="future"
        ),
        pytest.param(
            rc_headers(), RC_BODY, T + TOLERANCE, "test-rc-hmac", None, id="at the tolerance"
        ),
        pytest.param(
            rc_headers("garbage"), RC_BODY, T, "test-rc-hmac", MalformedHeader, id="garbage"
        ),
        pytest.param(
            rc_headers(f"v1={RC_VECTOR}"), RC_BODY, T, "test-rc-hmac", MalformedHeader, id="no t"
        ),
        pytest.param(rc_headers(f"t={T}"), RC_BODY, T, "test-rc-hmac", MalformedHeader, id="no v1"),
        pytest.param(
            rc_headers(f"t=soon,v1={RC_VECTOR}"),
            RC_BODY,
            T,
            "test-rc-hmac",
            MalformedHeader,
            id="t not a number",
        ),
        pytest.param(
            rc_headers(f"t={T},t={T},v1={RC_VECTOR}"),
            RC_BODY,
            T,
            "test-rc-hmac",
            MalformedHeader,
            id="two t",
        ),
        pytest.param(
            rc_headers(f"t={T},v1=abc"), RC_BODY, T, "test-rc-hmac", MalformedHeader, id="short v1"
        ),
    ],
)
def test_revenuecat_verify(
    headers: dict[str, str],
    raw: bytes,
    now: float,
    secret: str | None,
    expected: type[VerificationError] | None,
) -> None:
    credentials = revenuecat.Credentials(
        "Bearer test-rc-auth", None if secret is None else Signing((secret,), TOLERANCE)
    )
    check(lambda: revenuecat.verify(headers, raw, credentials, now=now), expected)


def kl_headers(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "klaviyo-webhook-id": "wh_1",
        "klaviyo-timestamp": KL_DATE,
        "klaviyo-signature": KL_VECTOR,
    }
    headers.update({k.replace("_", "-"): v for k, v in changes.items()})
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize(
    ("headers", "raw", "now", "expected"),
    [
        pytest.param(kl_headers(), KL_BODY, KL_T + 5, None, id="openssl vector"),
        pytest.param(
            kl_headers(klaviyo_signature=KL_VECTOR.upper()), KL_BODY, KL_T, None, id="upper hex"
        ),
        pytest.param(kl_headers(), tamper(KL_BODY), KL_T, BadSignature, id="tampered body"),
        pytest.param(
            kl_headers(klaviyo_timestamp="Thu, 04 Jan 2024 18:05:26 GMT"),
            KL_BODY,
            KL_T,
            BadSignature,
            id="timestamp is signed",
        ),
        pytest.param(kl_headers(), KL_BODY, KL_T + TOLERANCE + 1, StaleTimestamp, id="stale"),
        pytest.param(kl_headers(), KL_BODY, KL_T - TOLERANCE - 1, FutureTimestamp, id="future"),
        pytest.param(
            kl_headers(klaviyo_timestamp="yesterday"), KL_BODY, KL_T, MalformedHeader, id="date"
        ),
        pytest.param(
            kl_headers(klaviyo_signature="xyz"), KL_BODY, KL_T, MalformedHeader, id="not hex"
        ),
        pytest.param(
            kl_headers(klaviyo_webhook_id=None), KL_BODY, KL_T, MissingHeader, id="no webhook id"
        ),
        pytest.param(
            kl_headers(klaviyo_timestamp=None), KL_BODY, KL_T, MissingHeader, id="no timestamp"
        ),
        pytest.param(
            kl_headers(klaviyo_signature=None), KL_BODY, KL_T, MissingHeader, id="no signature"
        ),
    ],
)
def test_klaviyo_verify(
    headers: dict[str, str], raw: bytes, now: float, expected: type[VerificationError] | None
) -> None:
    secrets = Signing(("test-klaviyo-secret",), TOLERANCE)
    check(lambda: klaviyo.verify(headers, raw, secrets, now=now), expected)


def test_klaviyo_signature_helper_matches_openssl() -> None:
    assert klaviyo.signature("test-klaviyo-secret", KL_BODY, KL_DATE) == KL_VECTOR


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        pytest.param({"klaviyo_webhook_id": "wh_1"}, None, id="equal"),
        pytest.param({"klaviyo_webhook_id": "wh_2"}, WebhookIdMismatch, id="different"),
        pytest.param({}, WebhookIdMismatch, id="absent"),
        pytest.param({"klaviyo_webhook_id": 1}, WebhookIdMismatch, id="not a string"),
    ],
)
def test_klaviyo_webhook_id(
    meta: dict[str, object], expected: type[VerificationError] | None
) -> None:
    check(lambda: klaviyo.check_webhook_id({"meta": meta}, "wh_1"), expected)


@pytest.mark.parametrize(
    ("signature", "raw", "now", "expected"),
    [
        pytest.param(f"t={T},v1={KIT_NEW_VECTOR}", KIT_BODY, T, None, id="new secret"),
        pytest.param(f"t={T},v1={KIT_OLD_VECTOR}", KIT_BODY, T, None, id="old secret"),
        pytest.param(
            f"t={T},v1={'0' * 64},v1={KIT_NEW_VECTOR}", KIT_BODY, T, None, id="second v1 matches"
        ),
        pytest.param(f"t={T},v1={'0' * 64}", KIT_BODY, T, BadSignature, id="no v1 matches"),
        pytest.param(
            f"t={T},v1={KIT_NEW_VECTOR}", tamper(KIT_BODY), T, BadSignature, id="tampered body"
        ),
        pytest.param(
            f"t={T},v1={KIT_NEW_VECTOR}", KIT_BODY, T + TOLERANCE + 1, StaleTimestamp, id="stale"
        ),
        pytest.param(
            f"t={T},v1={KIT_NEW_VECTOR}", KIT_BODY, T - TOLERANCE - 1, FutureTimestamp, id="future"
        ),
        pytest.param(f"{KIT_NEW_VECTOR}", KIT_BODY, T, MalformedHeader, id="bare digest"),
        pytest.param(None, KIT_BODY, T, MissingHeader, id="no header"),
        pytest.param("", KIT_BODY, T, MissingHeader, id="empty header"),
    ],
)
def test_kit_verify(
    signature: str | None, raw: bytes, now: float, expected: type[VerificationError] | None
) -> None:
    headers = {} if signature is None else {"x-kit-signature": signature}
    check(lambda: kit.verify(headers, raw, Signing(KIT_SECRETS, TOLERANCE), now=now), expected)


def test_kit_rotation_needs_a_configured_secret() -> None:
    with pytest.raises(BadSignature):
        kit.verify(
            {"x-kit-signature": f"t={T},v1={KIT_OLD_VECTOR}"},
            KIT_BODY,
            Signing(("test-kit-new",), TOLERANCE),
            now=T,
        )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"token": "tok-123"}, None, id="equal"),
        pytest.param({"token": "tok-124"}, BadCredentials, id="different"),
        pytest.param({"token": "tok-12"}, BadCredentials, id="prefix"),
        pytest.param({"token": ""}, BadCredentials, id="empty"),
        pytest.param({}, BadCredentials, id="absent"),
    ],
)
def test_path_tokens(params: dict[str, str], expected: type[VerificationError] | None) -> None:
    """The one check of the flow and legacy Kit hooks' ``{token}`` path segment."""
    check(lambda: check_path_token(params, "tok-123"), expected)


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param("Bearer k-1", None, id="bearer"),
        pytest.param("bearer k-1", None, id="scheme is case-insensitive"),
        pytest.param("Basic k-1", BadCredentials, id="other scheme"),
        pytest.param("Bearer k-2", BadCredentials, id="wrong key"),
        pytest.param("k-1", BadCredentials, id="no scheme"),
        pytest.param(None, MissingHeader, id="missing"),
    ],
)
def test_events_verify(authorization: str | None, expected: type[VerificationError] | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    check(lambda: events.verify(headers, "k-1"), expected)

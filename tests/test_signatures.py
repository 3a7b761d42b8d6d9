"""Shared signature helpers against published vectors (RFC 4231, Standard Webhooks)."""

import base64
import time

import pytest
import standardwebhooks

from providers.base import SignatureError
from providers.signatures import (
    sign_hmac,
    sign_standard_webhook,
    standard_webhook_headers,
    standard_webhook_key,
    verify_hmac,
    verify_standard_webhook,
)

# RFC 4231 test case 2 — https://www.rfc-editor.org/rfc/rfc4231#section-4.3
RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_SHA256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
RFC4231_SHA512 = (
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
)

# Standard Webhooks reference vector — github.com/standard-webhooks/standard-webhooks
# libraries/python/tests/test_webhooks.py::test_sign_function (commit b2fa7b8719fb75d326b591077f5d1b385cfcdfae)
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SW_RAW_KEY_SIGNATURE = "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg="


def test_rfc4231_case2() -> None:
    assert sign_hmac(RFC4231_KEY, RFC4231_DATA, "sha256", "hex") == RFC4231_SHA256
    assert sign_hmac(RFC4231_KEY, RFC4231_DATA, "sha512", "hex") == RFC4231_SHA512
    verify_hmac([RFC4231_KEY], RFC4231_DATA, RFC4231_SHA256.upper())
    b64 = base64.b64encode(bytes.fromhex(RFC4231_SHA256)).decode()
    verify_hmac([RFC4231_KEY], RFC4231_DATA, b64, encoding="base64")


def test_hmac_failures_name_the_reason() -> None:
    with pytest.raises(SignatureError, match="missing x-signature"):
        verify_hmac([RFC4231_KEY], RFC4231_DATA, None, header="x-signature")
    with pytest.raises(SignatureError, match="malformed"):
        verify_hmac([RFC4231_KEY], RFC4231_DATA, "zz-not-hex")
    with pytest.raises(SignatureError, match="does not match"):
        verify_hmac([b"other"], RFC4231_DATA, RFC4231_SHA256)
    with pytest.raises(SignatureError, match="does not match"):
        verify_hmac([RFC4231_KEY], RFC4231_DATA + b" ", RFC4231_SHA256)


def test_hmac_rotation_accepts_any_key() -> None:
    verify_hmac([b"new-secret", RFC4231_KEY], RFC4231_DATA, RFC4231_SHA256)


def test_standard_webhooks_vector() -> None:
    key = standard_webhook_key(SW_SECRET)
    assert sign_standard_webhook(key, SW_ID, SW_TS, SW_BODY) == SW_SIGNATURE
    headers = {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS), "webhook-signature": SW_SIGNATURE}
    verify_standard_webhook([key], headers, SW_BODY, now=SW_TS)
    # the prefix is optional in the spec
    assert standard_webhook_key(SW_SECRET.removeprefix("whsec_")) == key


def test_raw_key_variant_vector() -> None:
    key = standard_webhook_key(SW_SECRET, "raw")
    assert sign_standard_webhook(key, SW_ID, SW_TS, SW_BODY) == SW_RAW_KEY_SIGNATURE
    headers = {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS), "webhook-signature": SW_SIGNATURE}
    with pytest.raises(SignatureError):
        verify_standard_webhook([key], headers, SW_BODY, now=SW_TS)


def test_standard_webhooks_multiple_entries_and_failures() -> None:
    key = standard_webhook_key(SW_SECRET)
    bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    headers = {
        "webhook-id": SW_ID,
        "webhook-timestamp": str(SW_TS),
        "webhook-signature": f"v1,Ym9ndXM= v2,other {SW_SIGNATURE} {bad}",
    }
    verify_standard_webhook([key], headers, SW_BODY, now=SW_TS)
    with pytest.raises(SignatureError, match="does not match"):
        verify_standard_webhook([key], {**headers, "webhook-signature": bad}, SW_BODY, now=SW_TS)
    with pytest.raises(SignatureError, match="timestamp"):
        verify_standard_webhook([key], headers, SW_BODY, now=SW_TS + 301)
    with pytest.raises(SignatureError, match="timestamp"):
        verify_standard_webhook([key], headers, SW_BODY, now=SW_TS - 301)
    with pytest.raises(SignatureError, match="missing webhook-id"):
        verify_standard_webhook([key], {k: v for k, v in headers.items() if k != "webhook-id"}, SW_BODY, SW_TS)
    for junk in ("soon", "9" * 400, "-1614265330", "".join(chr(0xFF10 + int(d)) for d in "1614265330"), " 1614265330"):
        with pytest.raises(SignatureError, match="malformed"):
            verify_standard_webhook([key], {**headers, "webhook-timestamp": junk}, SW_BODY, now=SW_TS)


def test_empty_or_broken_secrets_refused() -> None:
    with pytest.raises(ValueError):
        standard_webhook_key("whsec_")
    with pytest.raises(ValueError):
        standard_webhook_key("whsec_!!!not base64!!!")


def test_agrees_with_the_reference_library() -> None:
    """The PyPI `standardwebhooks` package is the oracle for sign and verify."""
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    oracle = standardwebhooks.Webhook(secret)
    now = int(time.time())
    for index, body in enumerate([b"{}", b'{"type":"order.paid","data":{"id":"x"}}', '{"name":"é€"}'.encode()]):
        msg_id = f"msg_{index}"
        ours = standard_webhook_headers(standard_webhook_key(secret), msg_id, now, body)
        assert ours["webhook-signature"] == oracle.sign(msg_id, _dt(now), body.decode())
        oracle.verify(body, ours)


def _dt(ts: int):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC)

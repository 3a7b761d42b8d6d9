"""Shared signature helpers against published vectors (RFC 4231, Standard Webhooks)."""

import base64
import time

import pytest
import standardwebhooks

from providers.base import SignatureError, WebhookRequest
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


# --- bounded work: a header of thousands of entries costs what a header of one does ----------------------

FLOOD = 5000


def _junk_b64(n: int) -> str:
    return base64.b64encode(n.to_bytes(32, "big")).decode()


def _count_hmacs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import providers.signatures as signatures

    calls: list[int] = []
    real = signatures.hmac_digest

    def counted(key: bytes, message: bytes, algorithm: signatures.Algorithm = "sha256") -> bytes:
        calls.append(len(message))
        return real(key, message, algorithm)

    monkeypatch.setattr(signatures, "hmac_digest", counted)
    return calls


def _standard_flood(genuine: str, at: int) -> str:
    entries = [f"v1,{_junk_b64(i)}" for i in range(FLOOD)]
    entries.insert(at, genuine)
    return " ".join(entries)


@pytest.mark.parametrize("provider", ["standardwebhooks", "polar", "dodopayments", "whop"])
def test_standard_webhooks_flood_costs_one_hmac_per_key(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fuzz_kit import NOW, subject

    case = subject(provider)
    genuine = case.headers["webhook-signature"]
    calls = _count_hmacs(monkeypatch)
    case.adapter.verify(case.request(), NOW)
    one_entry = len(calls)
    calls.clear()
    flooded = {**case.headers, "webhook-signature": _standard_flood(genuine, FLOOD)}
    with pytest.raises(SignatureError, match="does not match"):
        case.adapter.verify(case.request(headers=flooded), NOW)
    # one HMAC per key (Polar's auto scheme derives two keys from one secret), not one per entry
    assert 0 < len(calls) <= max(one_entry, 2)


def test_only_the_first_sixteen_entries_are_considered() -> None:
    from providers.signatures import MAX_SIGNATURE_ENTRIES

    key = standard_webhook_key(SW_SECRET)
    headers = {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS)}
    in_reach = {**headers, "webhook-signature": _standard_flood(SW_SIGNATURE, MAX_SIGNATURE_ENTRIES - 1)}
    verify_standard_webhook([key], in_reach, SW_BODY, SW_TS)
    # entries that do not decode count towards the cap too: otherwise junk would buy unbounded parsing
    past_junk = {**headers, "webhook-signature": "v1,!! " * MAX_SIGNATURE_ENTRIES + SW_SIGNATURE}
    with pytest.raises(SignatureError, match="does not match"):
        verify_standard_webhook([key], past_junk, SW_BODY, SW_TS)
    out_of_reach = {**headers, "webhook-signature": _standard_flood(SW_SIGNATURE, MAX_SIGNATURE_ENTRIES)}
    with pytest.raises(SignatureError, match="does not match"):
        verify_standard_webhook([key], out_of_reach, SW_BODY, SW_TS)


def test_whop_legacy_and_mollie_floods_cost_one_hmac_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.mollie import MollieAdapter, MollieOptions
    from providers.whop import LEGACY_HEADER, WhopAdapter, WhopOptions

    calls = _count_hmacs(monkeypatch)
    whop = WhopAdapter(["ws_" + "ab" * 32], WhopOptions(scheme="legacy"))
    now = 1_735_689_600
    legacy = f"t={now}," + ",".join(f"v1={i:064x}" for i in range(FLOOD))
    request = WebhookRequest("POST", "/webhooks/whop", {LEGACY_HEADER: legacy}, b"{}")
    with pytest.raises(SignatureError, match="does not match"):
        whop.verify(request, now)
    assert len(calls) == 1

    calls.clear()
    mollie = MollieAdapter(["t" * 32], MollieOptions(api_key="test_" + "x" * 30, signing_secret="s" * 32))
    header = ",".join(f"sha256={i:064x}" for i in range(FLOOD))
    event = b'{"resource":"event","id":"event_1","type":"payment-link.paid"}'
    request = WebhookRequest("POST", "/webhooks/m", {"x-mollie-signature": header}, event, f"token={'t' * 32}")
    with pytest.raises(SignatureError, match="does not match"):
        mollie.verify(request, now)
    assert len(calls) == 1

"""Shared signature schemes: plain HMAC (hex/base64) and Standard Webhooks, `sign` beside `verify`.

Every check compares digests with `hmac.compare_digest` over bytes computed from the raw body, and
accepts any of several keys so a secret can be rotated without dropping deliveries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Literal

from providers.base import SignatureError

Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]

STANDARD_TOLERANCE_SECONDS = 300
# A rotation needs two or three entries; an attacker can send thousands in one header. Only the first
# this many are considered, and each key's digest is computed once, so the work per request is bounded
# by the body size times the configured keys, whatever the header holds.
MAX_SIGNATURE_ENTRIES = 16


def hmac_digest(key: bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    # the one-shot C digest: `hmac.new` builds two Python-level hash objects per call, which under load
    # was most of a webhook's signature check
    return hmac.digest(key, message, algorithm)


def encode_digest(digest: bytes, encoding: Encoding) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")


def decode_signature(value: str, encoding: Encoding) -> bytes | None:
    """The raw digest a provider sent, or None when it is not valid hex/base64 (a mismatch)."""
    try:
        if encoding == "hex":
            return bytes.fromhex(value.strip())
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None


def sign_hmac(key: bytes, message: bytes, algorithm: Algorithm = "sha256", encoding: Encoding = "hex") -> str:
    return encode_digest(hmac_digest(key, message, algorithm), encoding)


def verify_hmac(
    keys: Sequence[bytes],
    message: bytes,
    signature: str | None,
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    header: str = "signature",
) -> None:
    """Raise `SignatureError` unless `signature` is the HMAC of `message` under one of `keys`."""
    if not signature:
        raise SignatureError.missing(header)
    sent = decode_signature(signature, encoding)
    if sent is None:
        raise SignatureError.malformed(header)
    if not any_digest_matches(keys, message, sent, algorithm):
        raise SignatureError.mismatch(header)


def any_digest_matches(keys: Sequence[bytes], message: bytes, sent: bytes, algorithm: Algorithm) -> bool:
    return any_sent_digest_matches(keys, message, [sent], algorithm)


def any_sent_digest_matches(
    keys: Sequence[bytes], message: bytes, sent: Iterable[bytes | None], algorithm: Algorithm
) -> bool:
    """True when one of the first `MAX_SIGNATURE_ENTRIES` sent digests is the HMAC of `message` under a key.

    `None` entries (values that did not decode) count towards the cap and never match.
    """
    considered = [digest for digest in islice(sent, MAX_SIGNATURE_ENTRIES) if digest is not None]
    if not considered:
        return False
    # no early exit: every pair is compared so timing does not reveal which key or entry matched
    matched = False
    for key in keys:
        expected = hmac_digest(key, message, algorithm)
        for digest in considered:
            matched |= hmac.compare_digest(expected, digest)
    return matched


def signature_entries(header: str, separator: str) -> Iterator[str]:
    """The first `MAX_SIGNATURE_ENTRIES` non-empty parts of a header, without splitting all of it."""
    count = 0
    start = 0
    while count < MAX_SIGNATURE_ENTRIES and start <= len(header):
        end = header.find(separator, start)
        part = header[start:] if end < 0 else header[start:end]
        if part.strip():
            count += 1
            yield part.strip()
        if end < 0:
            return
        start = end + len(separator)


# --- Standard Webhooks (https://www.standardwebhooks.com) -------------------------------------------

KeyScheme = Literal["standard", "raw"]


def standard_webhook_key(secret: str, scheme: KeyScheme = "standard") -> bytes:
    """The HMAC key behind a `whsec_` secret.

    `standard`: the spec's base64-decoded part after `whsec_` (padding optional).
    `raw`: the UTF-8 bytes of the whole string, prefix included (Polar's older secrets, Whop).
    """
    if scheme == "raw":
        if not secret:
            raise ValueError("empty secret")
        return secret.encode("utf-8")
    encoded = secret.removeprefix("whsec_")
    if not encoded:
        raise ValueError("empty secret")
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("secret is not base64 after whsec_") from None


def sign_standard_webhook(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + sign_hmac(key, signed, "sha256", "base64")


def standard_webhook_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(key, msg_id, timestamp, body),
    }


def verify_standard_webhook(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_seconds: int = STANDARD_TOLERANCE_SECONDS,
) -> None:
    """Check `webhook-id/-timestamp/-signature` (or their `svix-` twins); any `v1` entry may match."""
    msg_id = headers.get("webhook-id") or headers.get("svix-id")
    timestamp = headers.get("webhook-timestamp") or headers.get("svix-timestamp")
    signature = headers.get("webhook-signature") or headers.get("svix-signature")
    if not msg_id:
        raise SignatureError.missing("webhook-id")
    if not timestamp:
        raise SignatureError.missing("webhook-timestamp")
    if not signature:
        raise SignatureError.missing("webhook-signature")
    if "." in msg_id:
        raise SignatureError.malformed("webhook-id")
    # Unix seconds have 10 digits for centuries; refusing longer strings keeps int() and the
    # subtraction below away from absurd values sent to crash the check
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError.malformed("webhook-timestamp")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance_seconds:
        raise SignatureError.timestamp()
    signed = f"{msg_id}.{sent_at}.".encode() + body
    candidates = (_standard_entry_digest(entry) for entry in signature_entries(signature, " "))
    if not any_sent_digest_matches(keys, signed, candidates, "sha256"):
        raise SignatureError.mismatch("webhook-signature")


def _standard_entry_digest(entry: str) -> bytes | None:
    version, _, value = entry.partition(",")
    if version != "v1" or not value:
        return None
    return decode_signature(value, "base64")


# --- "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>" (Whop's legacy header, RevenueCat) ---------


def sign_timestamped_hmac(key: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign_hmac(key, f'{timestamp}.'.encode() + body)}"


def verify_timestamped_hmac(
    keys: Sequence[bytes], header: str | None, body: bytes, now: float, tolerance_seconds: int, name: str
) -> None:
    """Check a `t=…,v1=…` header (several `v1` during a rotation) against `keys`; `name` is the header's."""
    if not header:
        raise SignatureError.missing(name)
    timestamp: str | None = None
    sent: list[bytes | None] = []
    for part in signature_entries(header, ","):
        field, _, value = part.partition("=")
        if field == "t":
            timestamp = value
        elif field == "v1":
            sent.append(decode_signature(value, "hex"))
    # ASCII digits only, and few of them: int() would accept "²" or overflow float arithmetic
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise SignatureError.malformed(name)
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise SignatureError.timestamp()
    if not any(digest is not None for digest in sent):
        raise SignatureError.malformed(name)
    if not any_sent_digest_matches(keys, f"{int(timestamp)}.".encode() + body, sent, "sha256"):
        raise SignatureError.mismatch(name)

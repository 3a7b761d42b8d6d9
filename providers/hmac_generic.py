"""Generic HMAC signatures in one header, for providers without an adapter; the payload read by a field map.

The endpoint says which header carries the signature, the hash (`sha1`, `sha256`, `sha512`), the
encoding (`hex`, `base64`), an optional value prefix (`sha256=`) and whether the signed bytes are the
body alone or `<timestamp><separator><body>` with the timestamp in its own header. The key is the
UTF-8 bytes of the secret. The body's layout is the endpoint's `fields` / `events` map (see
providers/_fields.py); keys are `<key_prefix>:<payment id>`, the prefix defaulting to `hmac`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from bridge.events import NormalizedEvent
from providers._fields import DotPath, MappingOptions, PayloadMapper, delivery_id_at
from providers.base import AdapterOptions, ProviderAdapter, SignatureError, SignedRequest, WebhookRequest, body_hash
from providers.signatures import STANDARD_TOLERANCE_SECONDS, Algorithm, Encoding, sign_hmac, verify_hmac

_MAX_TIMESTAMP_DIGITS = 12


class HmacOptions(MappingOptions):
    header: str
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    # text before the digest in the header value, e.g. `sha256=`
    prefix: str = ""
    signed_bytes: Literal["body", "timestamp_body"] = "body"
    timestamp_header: str | None = None
    separator: str = "."
    tolerance_seconds: int = Field(default=STANDARD_TOLERANCE_SECONDS, ge=1)
    delivery_id_header: str | None = None
    delivery_id_path: DotPath | None = None

    @field_validator("header", "timestamp_header", "delivery_id_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower()
        if not name or any(c.isspace() or c == ":" for c in name):
            raise ValueError(f"{value!r} is not an HTTP header name")
        return name

    @model_validator(mode="after")
    def _timestamp_settings(self) -> HmacOptions:
        if self.signed_bytes == "timestamp_body" and self.timestamp_header is None:
            raise ValueError("signed_bytes: timestamp_body needs timestamp_header")
        if self.signed_bytes == "body" and self.timestamp_header is not None:
            raise ValueError("timestamp_header is only read with signed_bytes: timestamp_body")
        return self


class HmacAdapter(ProviderAdapter):
    name: ClassVar[str] = "hmac"
    sample_note: ClassVar[str] = "the payload layout is your own `fields` map; send a test payment from your system"
    Options: ClassVar[type[AdapterOptions]] = HmacOptions

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if not isinstance(options, HmacOptions):
            raise TypeError("hmac needs HmacOptions (header, fields and events)")
        self._options = options
        self._keys = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._mapper = PayloadMapper(options, self.name)
        # the map decides whether lost/won ever arrive, so the class default cannot
        self.reports_dispute_outcome = self._mapper.reports_dispute_outcome  # type: ignore[misc]

    def verify(self, request: WebhookRequest, now: float) -> None:
        options = self._options
        value = (request.header(options.header) or "").strip()
        if not value:
            raise SignatureError.missing(options.header)
        if not value.startswith(options.prefix):
            raise SignatureError.malformed(options.header)
        message = request.body
        if options.timestamp_header is not None:
            timestamp = self._timestamp(request, now, options.timestamp_header)
            message = f"{timestamp}{options.separator}".encode() + request.body
        verify_hmac(
            self._keys,
            message,
            value.removeprefix(options.prefix),
            algorithm=options.algorithm,
            encoding=options.encoding,
            header=options.header,
        )

    def _timestamp(self, request: WebhookRequest, now: float, header: str) -> str:
        # signed as sent: the digits of the header, not a re-formatted number
        timestamp = (request.header(header) or "").strip()
        if not timestamp:
            raise SignatureError.missing(header)
        # Unix seconds have 10 digits for centuries; longer strings would make int() and the float
        # subtraction below fail on absurd values
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
            raise SignatureError.malformed(header)
        if abs(now - int(timestamp)) > self._options.tolerance_seconds:
            raise SignatureError.timestamp()
        return timestamp

    def delivery_id(self, request: WebhookRequest) -> str:
        options = self._options
        if options.delivery_id_header is not None:
            sent = (request.header(options.delivery_id_header) or "").strip()
            if sent:
                return sent
        if options.delivery_id_path is not None:
            found = delivery_id_at(request.body, options.delivery_id_path)
            if found is not None:
                return found
        return body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        options = self._options
        headers: dict[str, str] = {}
        message = body
        if options.timestamp_header is not None:
            timestamp = str(int(now))
            headers[options.timestamp_header] = timestamp
            message = f"{timestamp}{options.separator}".encode() + body
        digest = sign_hmac(secret.encode("utf-8"), message, options.algorithm, options.encoding)
        headers[options.header] = options.prefix + digest
        if options.delivery_id_header is not None:
            headers[options.delivery_id_header] = "dlv_" + hashlib.sha256(message).hexdigest()[:24]
        return SignedRequest(headers=headers)

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        return self._mapper.parse(request.body)

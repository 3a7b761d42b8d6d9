"""Standard Webhooks, any sender: `webhook-*` signatures checked, the payload read by a configured field map.

For providers that sign with the Standard Webhooks scheme (standardwebhooks.com) and have no adapter
of their own. The key behind a `whsec_` secret is the spec's base64-decoded part, or with
`key_encoding: raw` the UTF-8 bytes of the whole string (Polar's older secrets, Whop). The body's
layout is the endpoint's `fields` / `events` map (see providers/_fields.py); keys are
`<key_prefix>:<payment id>`, the prefix defaulting to `standardwebhooks`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from bridge.events import NormalizedEvent
from providers._fields import MappingOptions, PayloadMapper
from providers.base import AdapterOptions, ProviderAdapter, SignedRequest, WebhookRequest, body_hash
from providers.signatures import (
    STANDARD_TOLERANCE_SECONDS,
    KeyScheme,
    standard_webhook_headers,
    standard_webhook_key,
    verify_standard_webhook,
)


class StandardWebhooksOptions(MappingOptions):
    key_encoding: Literal["base64", "raw"] = "base64"
    tolerance_seconds: int = Field(default=STANDARD_TOLERANCE_SECONDS, ge=1)


class StandardWebhooksAdapter(ProviderAdapter):
    name: ClassVar[str] = "standardwebhooks"
    Options: ClassVar[type[AdapterOptions]] = StandardWebhooksOptions

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if not isinstance(options, StandardWebhooksOptions):
            raise TypeError("standardwebhooks needs StandardWebhooksOptions (fields and events)")
        self._scheme: KeyScheme = "raw" if options.key_encoding == "raw" else "standard"
        self._keys = tuple(self._key(secret) for secret in self.secrets)
        self._tolerance = options.tolerance_seconds
        self._mapper = PayloadMapper(options, self.name)
        # the map decides whether lost/won ever arrive, so the class default cannot
        self.reports_dispute_outcome = self._mapper.reports_dispute_outcome  # type: ignore[misc]

    def verify(self, request: WebhookRequest, now: float) -> None:
        verify_standard_webhook(self._keys, request.headers, request.body, now, self._tolerance)

    def delivery_id(self, request: WebhookRequest) -> str:
        # the spec keeps `webhook-id` across every retry of one message
        return request.header("webhook-id") or request.header("svix-id") or body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        timestamp = int(now)
        msg_id = "msg_" + hashlib.sha256(str(timestamp).encode() + b"." + body).hexdigest()[:27]
        return SignedRequest(headers=standard_webhook_headers(self._key(secret), msg_id, timestamp, body))

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        return self._mapper.parse(request.body)

    def _key(self, secret: str) -> bytes:
        try:
            return standard_webhook_key(secret, self._scheme)
        except ValueError as exc:
            # the message names the expected format, never the secret itself
            hint = "whsec_<base64> (or set key_encoding: raw)" if self._scheme == "standard" else "non-empty"
            raise ValueError(f"standardwebhooks secret must be {hint}: {exc}") from None

"""Mollie: id-only webhook pings and signed next-gen events, each answered by fetching the payment.

A classic Mollie webhook is an unsigned form post carrying one field, `id=tr_…`: it says that the
payment changed, not how. The adapter reads the payment from the Mollie API with the merchant's API
key and reports its *current* state — paid, refunded so far, charged back — and the core's payment
ledger turns that into only what is new. That fetch is also what makes an unsigned ping safe: an id
that is not a payment of the merchant's own account answers 404 and books nothing, and the state
comes from Mollie, never from the caller. `verify` checks the URL token the merchant put in the
`webhookUrl` (the endpoint secret) and the shape of the ping.

Next-gen webhooks (the Webhooks API) post signed JSON events (`X-Mollie-Signature: sha256=<hex>`,
HMAC-SHA256 of the raw body with the webhook's signing secret). They are checked, then handled like a
ping for the payment they concern, so both kinds of webhook can run side by side without counting a
refund twice.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx
from pydantic import Field, SecretStr, field_validator

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units, normalize_currency
from providers import _api
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignatureError,
    SignedRequest,
    WebhookRequest,
    body_hash,
)
from providers.signatures import any_sent_digest_matches, decode_signature, sign_hmac, signature_entries

KEY_PREFIX = "mollie:payment:"
DEFAULT_API_BASE_URL = "https://api.mollie.com/v2"
TOKEN_PARAM = "token"
SIGNATURE_HEADER = "x-mollie-signature"
SIGNATURE_PREFIX = "sha256="

# Mollie ids are a type prefix and base62 characters (`tr_WDqYK6vllg`); anything else in a ping is not
# a payment of the Payments API (orders `ord_` are not supported) and never reaches the API or a URL path
PAYMENT_ID = re.compile(r"tr_[A-Za-z0-9]{1,64}")
CUSTOMER_ID = re.compile(r"cst_[A-Za-z0-9]{1,64}")

# Payment statuses that are not a sale, and why (https://docs.mollie.com/payments/status-changes)
_STATUS_REASONS = {
    "open": "payment not completed yet (open)",
    "pending": "payment not completed yet (pending)",
    "authorized": "authorized, not captured: the sale is booked when the payment becomes paid",
    "canceled": "payment canceled: no money moved",
    "expired": "payment expired: no money moved",
    "failed": "payment failed: no money moved",
}
# Next-gen events that cannot change what was paid or refunded: not worth an API call
_NO_MONEY_EVENTS = {
    "payment.authorized": "authorized, not captured: the sale is booked when the payment becomes paid",
    "payment.pending": "payment not completed yet (pending)",
    "payment.canceled": "payment canceled: no money moved",
    "payment.expired": "payment expired: no money moved",
    "payment.failed": "payment failed: no money moved",
    "refund.failed": "refund failed: no money moved",
    "refund.canceled": "refund canceled before it was processed",
}
_IGNORED_PREFIXES = {
    "payment-link.": "payment link event; its payment arrives as payment.paid or the payment's own webhook",
    "sales-invoice.": "sales invoice, not a payment",
    "balance-transaction.": "balance movement, not a payment",
    "profile.": "profile change, not a payment",
}


class MollieOptions(AdapterOptions):
    """Endpoint settings for Mollie; the endpoint `secret` is the URL token, see the module docstring."""

    # a `live_…`/`test_…` API key, or an organization access token with payments.read
    api_key: SecretStr
    api_base_url: str = DEFAULT_API_BASE_URL
    # the next-gen webhook's signing secret; two during a rotation
    signing_secret: SecretStr | list[SecretStr] | None = None
    # the payment carries only `customerId`; its email needs GET /customers/{id} (customers.read)
    fetch_customer_email: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("api_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        # `${MOLLIE_API_KEY}` of an unset variable interpolates to ""
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    def signing_keys(self) -> tuple[bytes, ...]:
        value = self.signing_secret
        secrets = [] if value is None else value if isinstance(value, list) else [value]
        return tuple(s.get_secret_value().encode("utf-8") for s in secrets if s.get_secret_value())


class MollieAdapter(ProviderAdapter):
    name = "mollie"
    Options = MollieOptions
    sample_note: ClassVar[str] = (
        "Mollie's webhooks only name a payment the bridge then fetches from Mollie; make a test-mode payment"
    )
    # Mollie reports a chargeback once the money is taken back: there is no open phase to wait through
    reports_dispute_outcome: ClassVar[bool] = True

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        super().__init__(secrets, options)
        if not isinstance(options, MollieOptions):
            raise ValueError("mollie: api_key is required")
        if any(not secret for secret in self.secrets):
            raise ValueError("mollie: empty URL token")
        self.settings = options
        self._tokens = tuple(secret.encode("utf-8") for secret in self.secrets)
        self._signing_keys = options.signing_keys()
        self._client: httpx.AsyncClient | None = None

    # --- authenticity --------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        self._check_token(request)
        if is_event(request.body):
            self._check_signature(request)
        elif ping_payment_id(request.body) is None:
            # authenticity of a ping comes from the API fetch; here only its shape is checked
            raise SignatureError.malformed("ping (expected id=tr_…)")

    def _check_token(self, request: WebhookRequest) -> None:
        token = request.query.get(TOKEN_PARAM)
        if token is None:
            raise SignatureError.missing(TOKEN_PARAM)
        sent = token.encode("utf-8")
        # no early exit: every token is compared so timing does not reveal which one matched
        matched = False
        for expected in self._tokens:
            matched |= hmac.compare_digest(sent, expected)
        if not matched:
            raise SignatureError.mismatch(TOKEN_PARAM)

    def _check_signature(self, request: WebhookRequest) -> None:
        if not self._signing_keys:
            raise SignatureError("signed webhook event, but the endpoint has no signing_secret")
        header = request.header(SIGNATURE_HEADER)
        if not header:
            raise SignatureError.missing(SIGNATURE_HEADER)
        # during a rotation Mollie sends the header twice; some proxies join the copies with commas
        digests = [
            decode_signature(part.removeprefix(SIGNATURE_PREFIX), "hex") for part in signature_entries(header, ",")
        ]
        if not any(digest is not None for digest in digests):
            raise SignatureError.malformed(SIGNATURE_HEADER)
        if not any_sent_digest_matches(self._signing_keys, request.body, digests, "sha256"):
            raise SignatureError.mismatch(SIGNATURE_HEADER)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        headers = {}
        if is_event(body) and self._signing_keys:
            headers[SIGNATURE_HEADER] = SIGNATURE_PREFIX + sign_hmac(self._signing_keys[0], body)
        return SignedRequest(headers=headers, query_string=urlencode({TOKEN_PARAM: secret}))

    def content_type(self) -> str:
        return "application/x-www-form-urlencoded"

    def delivery_id(self, request: WebhookRequest) -> str:
        """A next-gen event's id; for a ping, a new id for every receipt.

        The same `id=tr_…` ping is sent for every change of the payment (paid, each refund, a
        chargeback), so deduplicating on the body would drop the later changes. Every ping is stored
        and read; reading the same state twice changes nothing, because the ledger ignores a state it
        has already applied.
        """
        if is_event(request.body):
            try:
                event_id = json.loads(request.body).get("id")
            except (ValueError, AttributeError, RecursionError):
                return body_hash(request.body)
            return event_id if isinstance(event_id, str) and event_id else body_hash(request.body)
        payment_id = ping_payment_id(request.body)
        if payment_id is None:
            return body_hash(request.body)
        return f"{payment_id}:{uuid.uuid4().hex}"

    # --- reading -------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Events that need no API call; a notification about a payment raises (use `read`)."""
        target = notification_target(request.body)
        if isinstance(target, list):
            return target
        raise PayloadError(f"{target}: the payment's state is only known from the Mollie API")

    async def read(self, request: WebhookRequest) -> list[NormalizedEvent]:
        target = notification_target(request.body)
        if isinstance(target, list):
            return target
        # embed=refunds: each refund with its status, so only settled refunds take commission off
        path = f"payments/{target}?embed=refunds"
        payment = await self._get(path, f"{target} is not a payment of this Mollie account")
        if payment.get("id") != target:
            raise PayloadError(f"the Mollie API answered another payment for {target}")
        customer = None
        if self.settings.fetch_customer_email:
            customer = await self._customer(payment.get("customerId"))
        try:
            return payment_events(payment, customer)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise PayloadError(f"unreadable Mollie payment {target}: {exc}") from None

    async def _customer(self, customer_id: object) -> Mapping[str, Any] | None:
        if not isinstance(customer_id, str) or not CUSTOMER_ID.fullmatch(customer_id):
            return None
        try:
            return await self._get(f"customers/{customer_id}", "")
        except PayloadError:
            # a deleted customer or a key without customers.read: the payment still books, without email
            return None

    async def _get(self, path: str, not_found: str) -> dict[str, Any]:
        answer = await _api.read_object(self._http(), "Mollie", path)
        if answer == 404:
            raise PayloadError(not_found or f"Mollie API: {path} not found")
        if isinstance(answer, int):
            raise PayloadError(f"Mollie API answered {answer} for {path}")
        return answer

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.settings.api_base_url.rstrip("/") + "/",
                headers={
                    "authorization": f"Bearer {self.settings.api_key.get_secret_value()}",
                    "user-agent": "partnero-bridge",
                    "accept": "application/hal+json",
                },
                timeout=self.settings.timeout_seconds,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# --- notifications -------------------------------------------------------------------------------


def is_event(body: bytes) -> bool:
    """A next-gen event (JSON); a classic ping is a form post."""
    return body.lstrip()[:1] == b"{"


def ping_payment_id(body: bytes) -> str | None:
    """The payment id of a classic ping (`id=tr_…`), or None when the body is not one."""
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    # fields Mollie might add one day are left alone; the id must be there exactly once
    ids = [value for key, value in fields if key == "id"]
    if len(ids) != 1 or not PAYMENT_ID.fullmatch(ids[0]):
        return None
    return ids[0]


def notification_target(body: bytes) -> str | list[NormalizedEvent]:
    """The payment a notification is about, or the events it resolves to without the API."""
    if not is_event(body):
        payment_id = ping_payment_id(body)
        if payment_id is None:
            raise PayloadError("not a Mollie ping (expected id=tr_…)")
        return payment_id
    try:
        event = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(event, dict):
        raise PayloadError("body is not a JSON object")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("missing event type")
    if event_type in _NO_MONEY_EVENTS:
        return [ignored(event_type, _NO_MONEY_EVENTS[event_type])]
    if event_type.startswith("payment."):
        return _payment_id(event.get("entityId"), event_type)
    if event_type.startswith("refund."):
        embedded = event.get("_embedded")
        refund = embedded.get("refund") if isinstance(embedded, dict) else None
        if not isinstance(refund, dict):
            reason = "refund event without the refund: subscribe with full payloads (or use the payment's webhookUrl)"
            return [ignored(event_type, reason)]
        return _payment_id(refund.get("paymentId"), event_type)
    for prefix, reason in _IGNORED_PREFIXES.items():
        if event_type.startswith(prefix):
            return [ignored(event_type, reason)]
    return [ignored(event_type, "event type not used by the bridge")]


def _payment_id(value: object, event_type: str) -> str:
    if not isinstance(value, str) or not PAYMENT_ID.fullmatch(value):
        raise PayloadError(f"{event_type}: no payment id (tr_…)")
    return value


# --- a payment's state as events -----------------------------------------------------------------


def payment_events(payment: Mapping[str, Any], customer: Mapping[str, Any] | None = None) -> list[NormalizedEvent]:
    """What a payment *is* now: its sale, its cumulative refunds, its chargeback.

    Every read reports the whole state; the ledger books a sale once, a cumulative refund total only
    when it grew, and a chargeback once.
    """
    payment_id = payment["id"]
    if not isinstance(payment_id, str) or not PAYMENT_ID.fullmatch(payment_id):
        raise ValueError("payment id is not tr_…")
    status = payment.get("status")
    amount, currency = _money(payment["amount"])
    common: dict[str, Any] = {
        "transaction_key": KEY_PREFIX + payment_id,
        "currency": currency,
        "customer": customer_facts(payment, customer),
        "test_mode": payment.get("mode") == "test",
    }
    events: list[NormalizedEvent] = []
    if status == "paid":
        if amount == 0:
            events.append(ignored("payment.paid", "amount is 0 (a first payment that only sets up a mandate)"))
        else:
            occurred_at = _timestamp(payment.get("paidAt"))
            events.append(
                NormalizedEvent(
                    kind=EventKind.SALE, event_type="payment.paid", amount=amount, occurred_at=occurred_at, **common
                )
            )
    events += _refund_events(payment, amount, currency, common)
    charged_back = _optional_money(payment, "amountChargedBack", currency)
    if charged_back:
        # the payment stays `paid`; the chargeback is only visible here, and the money is already gone
        events.append(
            NormalizedEvent(
                kind=EventKind.DISPUTE,
                event_type="payment.charged_back",
                amount=charged_back,
                sale_amount=amount,
                dispute_state=DisputeState.LOST,
                **common,
            )
        )
    if events:
        return events
    status_text = status if isinstance(status, str) else "unknown"
    reason = _STATUS_REASONS.get(status_text, f"payment status {status_text!r} is not a sale")
    return [ignored(f"payment.{status_text}", reason)]


def _refund_events(
    payment: Mapping[str, Any], amount: Decimal, currency: str, common: Mapping[str, Any]
) -> list[NormalizedEvent]:
    """Settled refunds, one by one when the payment embeds them, else the cumulative `amountRefunded`.

    `amountRefunded` already counts refunds that are queued or pending, which the merchant can still
    cancel and which can fail; only a refund whose `status` is `refunded` has given money back.
    """
    embedded = payment.get("_embedded")
    refunds = embedded.get("refunds") if isinstance(embedded, dict) else None
    if isinstance(refunds, list):
        events = []
        for refund in refunds:
            if not isinstance(refund, dict) or refund.get("status") != "refunded":
                continue
            value, its_currency = _money(refund["amount"])
            events.append(
                NormalizedEvent(
                    kind=EventKind.REFUND,
                    event_type="payment.refunded",
                    amount=value,
                    sale_amount=amount,
                    refund_id=_text(refund.get("id")),
                    **{**common, "currency": its_currency},
                )
            )
        return events
    refunded = _optional_money(payment, "amountRefunded", currency)
    if not refunded:
        return []
    # cumulative, and it may exceed the amount (Mollie lets merchants refund return shipping too)
    event = NormalizedEvent(
        kind=EventKind.REFUND,
        event_type="payment.refunded",
        refunded_total=refunded,
        sale_amount=amount,
        full_refund=refunded >= amount,
        **common,
    )
    return [event]


def customer_facts(payment: Mapping[str, Any], customer: Mapping[str, Any] | None) -> CustomerFacts:
    customer = customer or {}
    billing = payment.get("billingAddress")
    billing_email = billing.get("email") if isinstance(billing, dict) else None
    return CustomerFacts(
        email=_text(customer.get("email")) or _text(billing_email),
        customer_id=_text(payment.get("customerId")),
        name=_text(customer.get("name")),
        metadata=metadata(payment.get("metadata")),
    )


def metadata(value: object) -> dict[str, str]:
    """Mollie keeps whatever JSON the merchant passed: an object's scalar values, as text.

    Integrations that pass a JSON-encoded string (`"{\\"user_id\\":1}"`) get the object inside it.
    """
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value, parse_float=Decimal)
        except (ValueError, RecursionError):
            return {}
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | Decimal):
            out[str(key)] = str(item)
    return out


def _money(value: object) -> tuple[Decimal, str]:
    """An amount object `{"value": "10.00", "currency": "EUR"}`: a decimal string in major units."""
    if not isinstance(value, dict):
        raise ValueError("amount is not an object")
    raw, code = value.get("value"), value.get("currency")
    if not isinstance(raw, str) or not isinstance(code, str):
        raise ValueError("amount needs a string value and currency")
    currency = normalize_currency(code)
    amount = from_major_units(raw, currency)
    if amount < 0:
        raise ValueError("negative amount")
    return amount, currency


def _optional_money(payment: Mapping[str, Any], field: str, currency: str) -> Decimal | None:
    value = payment.get(field)
    if value is None:
        return None
    amount, its_currency = _money(value)
    if its_currency != currency:
        raise ValueError(f"{field} is in {its_currency}, the payment in {currency}")
    return amount or None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None

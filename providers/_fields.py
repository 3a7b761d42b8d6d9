"""Configured field mapping for the generic adapters: where a JSON body keeps each payment fact.

The `standardwebhooks` and `hmac` adapters know no provider's payload. The endpoint's YAML says, as
dot paths (`data.customer.email`, list items by index: `items.0.id`), where the event type, the
payment id, the amount and the customer facts live, and which event types are sales, refunds and
disputes. `PayloadMapper` reads a body with that map into normalized events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units, from_minor_units, normalize_currency
from bridge.redact import describe
from providers.base import AdapterOptions, PayloadError

_SEGMENT = re.compile(r"[^\s.]+")
_PLAIN_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_SIGNED_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _check_path(value: str) -> str:
    if not all(_SEGMENT.fullmatch(segment) for segment in value.split(".")):
        raise ValueError(f"{value!r} is not a dot path such as data.customer.email or items.0.id")
    return value


DotPath = Annotated[str, AfterValidator(_check_path)]


def _check_event_types(values: list[str]) -> list[str]:
    for value in values:
        if not value.strip():
            raise ValueError("an event type must not be empty")
    return values


EventTypeList = Annotated[list[str], AfterValidator(_check_event_types)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldPaths(_Settings):
    """Where each fact lives in the body; unset paths are facts the payload does not carry."""

    event_type: DotPath = "type"
    transaction_id: DotPath
    amount: DotPath
    amount_unit: Literal["minor", "major"] = "minor"
    # the tax inside `amount`, when the payload names it (the ledger then books without it by default)
    tax: DotPath | None = None
    currency: DotPath | None = None
    email: DotPath | None = None
    customer_id: DotPath | None = None
    external_id: DotPath | None = None
    name: DotPath | None = None
    metadata: DotPath | None = None
    product_id: DotPath | None = None
    # the discount code the buyer redeemed, for the `coupon` partner source
    coupon_code: DotPath | None = None
    occurred_at: DotPath | None = None
    test_flag: DotPath | None = None
    test_values: tuple[str, ...] = ("true",)
    refund_target_id: DotPath | None = None
    refund_amount: DotPath | None = None
    refunded_total: DotPath | None = None
    refund_id: DotPath | None = None
    sale_amount: DotPath | None = None
    dispute_target_id: DotPath | None = None
    dispute_amount: DotPath | None = None
    dispute_state: DotPath | None = None

    @field_validator("test_values", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        # YAML turns `[true, 1, test]` into bool, int and str; the payload is compared as text
        if isinstance(value, str | bool | int):
            value = [value]
        if isinstance(value, list | tuple):
            return tuple(_flag_text(v) if isinstance(v, str | bool | int) else v for v in value)
        return value

    @model_validator(mode="after")
    def _refunds_counted_once(self) -> FieldPaths:
        if self.refund_amount is not None and self.refund_id is None:
            raise ValueError(
                "refund_amount needs refund_id, so a refund announced twice is counted once"
                " (or map refunded_total, the cumulative refunded amount, instead)"
            )
        if not self.test_values:
            raise ValueError("test_values must list at least one value")
        return self


class EventTypes(_Settings):
    """Which event types mean what; every type not listed is ignored with a reason."""

    sale: EventTypeList = Field(min_length=1)
    refund: EventTypeList = Field(default_factory=list)
    dispute_opened: EventTypeList = Field(default_factory=list)
    dispute_lost: EventTypeList = Field(default_factory=list)
    dispute_won: EventTypeList = Field(default_factory=list)
    # disputes whose state is read from `fields.dispute_state` through `dispute_states`
    dispute: EventTypeList = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_type_once(self) -> EventTypes:
        seen: dict[str, str] = {}
        for group, types in self.groups().items():
            for event_type in types:
                if event_type in seen:
                    raise ValueError(f"{event_type!r} is listed under both {seen[event_type]} and {group}")
                seen[event_type] = group
        return self

    def groups(self) -> dict[str, list[str]]:
        return {
            "sale": self.sale,
            "refund": self.refund,
            "dispute_opened": self.dispute_opened,
            "dispute_lost": self.dispute_lost,
            "dispute_won": self.dispute_won,
            "dispute": self.dispute,
        }


class DisputeStates(_Settings):
    """Values of `fields.dispute_state` and the dispute state each one means."""

    opened: list[str] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list)
    won: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_value_once(self) -> DisputeStates:
        listed = [*self.opened, *self.lost, *self.won]
        repeated = sorted({value for value in listed if listed.count(value) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed under more than one state")
        return self

    def table(self) -> dict[str, DisputeState]:
        return {
            **dict.fromkeys(self.opened, DisputeState.OPENED),
            **dict.fromkeys(self.lost, DisputeState.LOST),
            **dict.fromkeys(self.won, DisputeState.WON),
        }


class MappingOptions(AdapterOptions):
    """Endpoint settings shared by the generic adapters: the field map, event types, key prefix."""

    fields: FieldPaths
    events: EventTypes
    dispute_states: DisputeStates = Field(default_factory=DisputeStates)
    # `<key_prefix>:<payment id>`; unset → the provider name (`hmac`, `standardwebhooks`)
    key_prefix: str | None = None
    # the currency of every amount, for payloads that carry none (or as a fallback)
    currency: str | None = None

    @field_validator("key_prefix")
    @classmethod
    def _plain_prefix(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value) or value.endswith(":")):
            raise ValueError("must be non-empty text without spaces and without a trailing ':' (e.g. mystore:pay)")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        return None if value is None else normalize_currency(value)

    @model_validator(mode="after")
    def _complete(self) -> MappingOptions:
        if self.fields.currency is None and self.currency is None:
            raise ValueError("set fields.currency (where the body names it) or currency (a fixed ISO code)")
        if self.events.dispute:
            if self.fields.dispute_state is None:
                raise ValueError("events.dispute needs fields.dispute_state (where the body says the state)")
            if not self.dispute_states.table():
                raise ValueError("events.dispute needs dispute_states (which values mean opened, lost, won)")
        return self


class PayloadMapper:
    """Reads bodies with one endpoint's field map; built once per adapter."""

    def __init__(self, options: MappingOptions, default_prefix: str) -> None:
        self.fields = options.fields
        self.prefix = options.key_prefix or default_prefix
        self.fixed_currency = options.currency
        self.dispute_values = options.dispute_states.table()
        self.test_values = frozenset(v.lower() for v in options.fields.test_values)
        self.kinds: dict[str, str] = {}
        for group, types in options.events.groups().items():
            self.kinds.update(dict.fromkeys(types, group))

    @property
    def reports_dispute_outcome(self) -> bool:
        """Whether this map can ever say a dispute was lost or won."""
        groups = set(self.kinds.values())
        mapped = {DisputeState.LOST, DisputeState.WON} & set(self.dispute_values.values())
        return bool({"dispute_lost", "dispute_won"} & groups) or ("dispute" in groups and bool(mapped))

    def parse(self, body: bytes) -> list[NormalizedEvent]:
        document = load_json(body)
        event_type = text_at(document, self.fields.event_type)
        if event_type is None:
            raise PayloadError(f"missing event type at {self.fields.event_type}")
        group = self.kinds.get(event_type)
        if group is None:
            return [ignored(event_type, "event type not listed in the endpoint's events")]
        try:
            if group == "sale":
                return [self._sale(event_type, document)]
            if group == "refund":
                return [self._refund(event_type, document)]
            return [self._dispute(event_type, group, document)]
        # ArithmeticError: decimal.Overflow from an absurd exponent is not a ValueError
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: {exc}") from None

    def _sale(self, event_type: str, document: Any) -> NormalizedEvent:
        currency = self._currency(document)
        if currency is None:
            raise ValueError(f"missing currency at {self.fields.currency}")
        amount = self._amount(document, self.fields.amount, currency)
        if amount is None:
            raise ValueError(f"missing amount at {self.fields.amount}")
        return NormalizedEvent(
            kind=EventKind.SALE,
            event_type=event_type,
            transaction_key=self._key(document, self.fields.transaction_id),
            amount=amount,
            tax=self._amount(document, self.fields.tax, currency),
            currency=currency,
            customer=self._customer(document),
            product_id=self._text(document, self.fields.product_id),
            test_mode=self._test_mode(document),
            occurred_at=self._occurred_at(document),
            coupon_code=self._text(document, self.fields.coupon_code),
        )

    def _refund(self, event_type: str, document: Any) -> NormalizedEvent:
        fields = self.fields
        currency = self._currency(document)
        # PayPal v1 and WooCommerce report refunds as negative amounts: the sign only says "money back"
        amount = self._amount(document, fields.refund_amount, currency, negative_ok=True)
        refunded_total = self._amount(document, fields.refunded_total, currency, negative_ok=True)
        mapped = [path for path in (fields.refund_amount, fields.refunded_total) if path is not None]
        if mapped and amount is None and refunded_total is None:
            # without it a partial refund would be taken for a full one
            raise ValueError(f"missing refund amount at {' / '.join(mapped)}")
        sale_amount = self._amount(document, fields.sale_amount, currency)
        refunded = refunded_total if refunded_total is not None else amount
        return NormalizedEvent(
            kind=EventKind.REFUND,
            event_type=event_type,
            transaction_key=self._key(document, fields.refund_target_id or fields.transaction_id),
            amount=amount,
            currency=currency,
            customer=self._customer(document),
            product_id=self._text(document, fields.product_id),
            test_mode=self._test_mode(document),
            occurred_at=self._occurred_at(document),
            full_refund=None if refunded is None or sale_amount is None else refunded >= sale_amount,
            refunded_total=refunded_total,
            sale_amount=sale_amount,
            refund_id=self._text(document, fields.refund_id),
        )

    def _dispute(self, event_type: str, group: str, document: Any) -> NormalizedEvent:
        fields = self.fields
        if group == "dispute":
            path = fields.dispute_state or ""
            value = text_at(document, path)
            state = self.dispute_values.get(value or "")
            if state is None:
                return ignored(event_type, f"dispute state {value!r} at {path} is not listed in dispute_states")
        else:
            state = DisputeState(group.removeprefix("dispute_"))
        currency = self._currency(document)
        # amounts only inform on a dispute (it acts on the whole payment by key): no currency, no amounts
        amount = sale_amount = None
        if currency is not None:
            amount = self._amount(document, fields.dispute_amount, currency)
            sale_amount = self._amount(document, fields.sale_amount, currency)
        return NormalizedEvent(
            kind=EventKind.DISPUTE,
            event_type=event_type,
            transaction_key=self._key(document, fields.dispute_target_id or fields.transaction_id),
            amount=amount,
            currency=currency,
            customer=self._customer(document),
            product_id=self._text(document, fields.product_id),
            test_mode=self._test_mode(document),
            occurred_at=self._occurred_at(document),
            sale_amount=sale_amount,
            dispute_state=state,
        )

    def _key(self, document: Any, path: str) -> str:
        payment_id = text_at(document, path)
        if payment_id is None:
            raise ValueError(f"missing payment id at {path}")
        return f"{self.prefix}:{payment_id}"

    def _currency(self, document: Any) -> str | None:
        if self.fields.currency is not None:
            value = lookup(document, self.fields.currency)
            if value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"{self.fields.currency} is not a currency code ({describe(value)})")
                return normalize_currency(value)
        return self.fixed_currency

    def _amount(
        self, document: Any, path: str | None, currency: str | None, *, negative_ok: bool = False
    ) -> Decimal | None:
        if path is None:
            return None
        value = lookup(document, path)
        if value is None:
            return None
        if currency is None:
            raise ValueError(f"no currency for the amount at {path}")
        number = _SIGNED_NUMBER if negative_ok else _PLAIN_NUMBER
        if isinstance(value, str) and number.fullmatch(value.strip()):
            value = value.strip()
        elif isinstance(value, bool) or not isinstance(value, int | Decimal) or (value < 0 and not negative_ok):
            raise ValueError(f"{path} is not a non-negative amount ({describe(value)})")
        if self.fields.amount_unit == "minor":
            return abs(from_minor_units(value, currency))
        return abs(from_major_units(value, currency))

    def _customer(self, document: Any) -> CustomerFacts:
        return CustomerFacts(
            email=self._text(document, self.fields.email),
            customer_id=self._text(document, self.fields.customer_id),
            external_id=self._text(document, self.fields.external_id),
            name=self._text(document, self.fields.name),
            metadata=self._metadata(document),
        )

    def _metadata(self, document: Any) -> dict[str, str]:
        source = lookup(document, self.fields.metadata) if self.fields.metadata else None
        if not isinstance(source, dict):
            # some providers send 0 or "" where no metadata was given
            return {}
        flat: dict[str, str] = {}
        for key, value in source.items():
            if isinstance(value, bool):
                flat[str(key)] = "true" if value else "false"
            elif isinstance(value, str | int | Decimal):
                flat[str(key)] = str(value)
        return flat

    def _test_mode(self, document: Any) -> bool:
        if self.fields.test_flag is None:
            return False
        value = lookup(document, self.fields.test_flag)
        if isinstance(value, Decimal):
            value = str(value)
        return isinstance(value, str | bool | int) and _flag_text(value).lower() in self.test_values

    def _occurred_at(self, document: Any) -> datetime | None:
        if self.fields.occurred_at is None:
            return None
        value = lookup(document, self.fields.occurred_at)
        try:
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value.strip())
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            if isinstance(value, int) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            pass
        return None

    @staticmethod
    def _text(document: Any, path: str | None) -> str | None:
        return None if path is None else text_at(document, path)


def load_json(body: bytes) -> Any:
    """The body as JSON (`Decimal` for every fractional number), or `PayloadError`."""
    try:
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(document, dict | list):
        raise PayloadError("body is not a JSON object")
    return document


def lookup(document: Any, path: str) -> Any:
    """The value at a dot path, or None when any step is missing or of the wrong kind."""
    current = document
    for segment in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(segment)
        elif isinstance(current, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            current = current[index] if index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def text_at(document: Any, path: str) -> str | None:
    """An id or a name at `path` as text: integer ids become strings, empty text becomes None."""
    value = lookup(document, path)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def delivery_id_at(body: bytes, path: str) -> str | None:
    """The id at `path` of a body that may be junk; never raises."""
    try:
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
    return text_at(document, path)


def _flag_text(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()

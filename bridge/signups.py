"""The sign-up relay: a merchant's sign-up call to Partnero, made durable and delivered like a sale.

The merchant's backend posts the seed's customer fields to `POST /signups` (or an operator runs
`partnero-bridge signup`); the bridge stores the call, answers 202 and creates the Partnero customer
through the same delivery machinery as transactions (retries, dead letters, replay). A sale for that
customer waits, bounded by `signups.wait_seconds`, while the sign-up is still on its way.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bridge import memory
from bridge.config import Config
from bridge.events import CustomerFacts
from bridge.store.base import (
    Customer,
    CustomerState,
    EventStatus,
    NewEvent,
    NewOperation,
    OpStatus,
    StoredCall,
    Transaction,
)

SIGNUP_ENDPOINT = "_signups"  # never a configured endpoint name: those must start with a letter or digit
CUSTOMER = "customer"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PartnerRef(_Strict):
    key: str | None = None
    email: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_given(self) -> PartnerRef:
        if not (self.key or self.email or self.id):
            raise ValueError("give partner.key, partner.email or partner.id")
        return self


class SignupOptions(_Strict):
    referral_url: str | None = Field(default=None, max_length=2048)


class SignupRequest(_Strict):
    """The fields of Partnero's `POST /v1/customers` that a sign-up carries (affiliate programs)."""

    key: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=255)
    surname: str | None = Field(default=None, max_length=255)
    tags: list[str] = Field(default_factory=list, max_length=50)
    partner: PartnerRef | None = None
    options: SignupOptions | None = None

    @field_validator("email")
    @classmethod
    def _looks_like_email(cls, value: str | None) -> str | None:
        if value and ("@" not in value or value.startswith("@") or value.endswith("@")):
            raise ValueError("not an email address")
        return value or None

    def partnero_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=False)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first problem, for a 422 that names the field."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "(body)"
    message = "required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
    if error["type"] == "json_invalid":
        where, message = "(body)", "not valid JSON"
    return where, message


def record_signup(tx: Transaction, call: StoredCall, config: Config, now: float) -> int:
    """Record a stored sign-up as an event and, unless the customer is known already, its operation."""
    signup = SignupRequest.model_validate_json(call.body)
    scope = config.signup_partnero.scope
    existing = tx.get_customer(scope, signup.key)
    op_key = f"{CUSTOMER}:{signup.key}"
    known = existing is not None and existing.state in (CustomerState.CREATED, CustomerState.PENDING)
    operation = tx.get_operation(scope, op_key)
    status = EventStatus.DUPLICATE if known or operation is not None else EventStatus.QUEUED
    warning = memory.learn(tx, scope, None, CustomerFacts(email=signup.email), signup.key, now, SIGNUP_ENDPOINT, now)
    event_id = tx.insert_event(
        NewEvent(
            call_id=call.id,
            endpoint=SIGNUP_ENDPOINT,
            seq=0,
            kind="signup",
            event_type="signup",
            transaction_key=None,
            data=json.loads(call.body),
            customer_key=signup.key,
            status=status,
            reason="customer already created or on its way" if status is EventStatus.DUPLICATE else None,
            operation_id=operation.id if operation is not None else None,
            warning=warning,
        ),
        now,
    )
    if status is EventStatus.DUPLICATE:
        return event_id
    body = signup.partnero_body()
    op = NewOperation(
        scope,
        CUSTOMER,
        f"signup:{signup.key}",
        signup.key,
        SIGNUP_ENDPOINT,
        body,
        event_id=event_id,
        customer_key=signup.key,
    )
    if signup.partner is None:
        # an affiliate program refuses a customer without a partner; the sign-up is simply not a referral,
        # but its key and email are kept for `signup:email`
        op = replace(op, status=OpStatus.SKIPPED, reason="not referred: no partner in the sign-up")
    elif config.signup_partnero.effective_dry_run:
        op = replace(op, status=OpStatus.SKIPPED, reason="dry run: recorded, not sent")
    tx.insert_operation(op, now)
    partner_key = signup.partner.key if signup.partner else None
    if op.status is OpStatus.PENDING:
        state = CustomerState.PENDING
    elif signup.partner is None:
        state = CustomerState.NOT_REFERRED
    else:
        state = CustomerState.FAILED
    tx.put_customer(Customer(scope, signup.key, state, op_key, signup.email, partner_key), now)
    return event_id

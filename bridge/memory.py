"""The customer memory: which Partnero customer key goes with a buyer's email or provider customer id.

Every sale recorded under a customer key and every relayed sign-up teach it; the `known:email` and
`known:customer_id` sources read it. That is how a referral survives a move between providers: a buyer
who paid on Lemon Squeezy under the merchant's key U and later pays on Creem with the same email and
no custom data is booked to U again, so the renewal earns the same partner.

`known:email` is per Partnero program, across every endpoint; `known:customer_id` per program and
provider (a customer id means nothing at another provider). When one email meets two keys, the
earliest use wins — by when the payment or sign-up happened, so history learned later by a backfill
still counts as earliest — and the event that met the second key carries a warning for the operator.
`signup:email` stays what it was: the subset the sign-up relay (and first referred sales) created as
Partnero customers, newest first.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.events import CustomerFacts
from bridge.mapping import Recall
from bridge.store.base import Remembered, Transaction

EMAIL = "email"


def customer_id_fact(provider: str) -> str:
    return f"customer_id:{provider}"


def normalize_email(email: str | None) -> str | None:
    text = (email or "").strip().lower()
    return text or None


def recall(tx: Transaction, scope: str, provider: str | None) -> Recall:
    """The recorded sources for one Partnero program, as `resolve_customer_key` asks them."""

    def answer(source: str, customer: CustomerFacts) -> str | None:
        if source == "signup:email":
            return tx.customer_key_by_email(scope, customer.email) if customer.email else None
        fact, value = _fact_for(source, customer, provider)
        if fact is None or value is None:
            return None
        found = tx.recall(scope, fact, value)
        return found.customer_key if found is not None else None

    return answer


def learn(
    tx: Transaction,
    scope: str,
    provider: str | None,
    customer: CustomerFacts,
    customer_key: str,
    used_at: datetime | float | None,
    source: str,
    now: float,
) -> str | None:
    """Remember the buyer's email (and provider customer id) under `customer_key`; a warning when a fact
    was already known under another key (the earlier use keeps it)."""
    when = used_at.timestamp() if isinstance(used_at, datetime) else used_at if used_at is not None else now
    warnings = []
    for fact, value in _facts(customer, provider):
        warning = _learn_one(tx, Remembered(scope, fact, value, customer_key, when, source), now)
        if warning:
            warnings.append(warning)
    return "; ".join(warnings) or None


def _learn_one(tx: Transaction, entry: Remembered, now: float) -> str | None:
    known = tx.recall(entry.scope, entry.fact, entry.value)
    if known is None:
        tx.remember(entry, now)
        return None
    what = "the buyer's email" if entry.fact == EMAIL else "this provider customer id"
    if known.customer_key == entry.customer_key:
        if entry.first_used_at < known.first_used_at:
            tx.remember(replace(known, first_used_at=entry.first_used_at), now)
        return None
    if entry.first_used_at < known.first_used_at:
        tx.remember(entry, now)
        return (
            f"{what} was known under customer key {known.customer_key!r}; this earlier payment makes "
            f"{entry.customer_key!r} the key known:{_source_name(entry.fact)} finds"
        )
    return (
        f"{what} is already known under customer key {known.customer_key!r} (earlier); "
        f"known:{_source_name(entry.fact)} keeps it"
    )


def _source_name(fact: str) -> str:
    return EMAIL if fact == EMAIL else "customer_id"


def _facts(customer: CustomerFacts, provider: str | None) -> list[tuple[str, str]]:
    facts = []
    email = normalize_email(customer.email)
    if email is not None:
        facts.append((EMAIL, email))
    if provider is not None and customer.customer_id and customer.customer_id.strip():
        facts.append((customer_id_fact(provider), customer.customer_id.strip()))
    return facts


def _fact_for(source: str, customer: CustomerFacts, provider: str | None) -> tuple[str | None, str | None]:
    if source == "known:email":
        return EMAIL, normalize_email(customer.email)
    if source == "known:customer_id" and provider is not None:
        customer_id = (customer.customer_id or "").strip()
        return customer_id_fact(provider), customer_id or None
    return None, None

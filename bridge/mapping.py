"""Customer-key resolution: the endpoint's configured sources, tried in order, first non-empty wins.

The same source syntax names where a payment carries the referring partner's key (`partner_key`).
Most sources read the payment itself; the recorded ones (`signup:email`, `known:email`,
`known:customer_id`) ask what the bridge has learned before, through the `recall` it is given. Where a
partner is looked for one more source exists: `coupon`, the partner a redeemed discount code belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.events import CustomerFacts, NormalizedEvent
from bridge.suggest import did_you_mean

_PLAIN_SOURCES = {"external_id", "email", "customer_id"}
# answered from the bridge's own records (bridge.memory), not from the payment
RECORDED_SOURCES = frozenset({"signup:email", "known:email", "known:customer_id"})
# only where a partner is looked for: a discount code names a partner, never a buyer
PARTNER_SOURCES = frozenset({"coupon"})

# (source, the buyer's facts) -> the customer key recorded for them, if any
Recall = Callable[[str, CustomerFacts], str | None]
# a redeemed discount code -> the partner it belongs to, if it belongs to exactly one
CodeLookup = Callable[[str], str | None]


def validate_sources(sources: Sequence[str], *, partner: bool = False) -> None:
    """Raise ValueError naming the first source that is not `metadata.<name>` or a known field
    (`coupon` too where a partner is looked for)."""
    for source in sources:
        if source in _PLAIN_SOURCES or source in RECORDED_SOURCES or (partner and source in PARTNER_SOURCES):
            continue
        if source in PARTNER_SOURCES:
            raise ValueError(f"{source!r} names a partner, not a customer: use it in partner_key")
        if source.startswith("metadata.") and len(source) > len("metadata."):
            continue
        known = _PLAIN_SOURCES | RECORDED_SOURCES | (PARTNER_SOURCES if partner else frozenset())
        allowed = "metadata.<name>, " + ", ".join(sorted(known))
        hint = did_you_mean(source, known)
        raise ValueError(f"unknown source {source!r}{hint} (use {allowed})")


def resolve_customer_key(
    event: NormalizedEvent,
    sources: Sequence[str],
    recall: Recall | None = None,
    coupon_partner: CodeLookup | None = None,
) -> str | None:
    """The first non-empty source; recorded sources answer nothing without a `recall`, `coupon`
    nothing without a `coupon_partner`."""
    customer = event.customer
    for source in sources:
        value: str | None
        if source.startswith("metadata."):
            value = customer.metadata.get(source.removeprefix("metadata."))
        elif source == "email":
            value = customer.email
        elif source == "external_id":
            value = customer.external_id
        elif source == "customer_id":
            value = customer.customer_id
        elif source in RECORDED_SOURCES:
            value = recall(source, customer) if recall is not None else None
        elif source == "coupon":
            value = coupon_partner(event.coupon_code) if coupon_partner and event.coupon_code else None
        else:
            value = None
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def resolve_partner(
    event: NormalizedEvent, sources: Sequence[str], coupon_partner: CodeLookup | None = None
) -> tuple[str, str] | None:
    """(source, partner) of the first partner source that names one, so the ledger can say which
    rule attributed the sale."""
    for source in sources:
        value = resolve_customer_key(event, [source], coupon_partner=coupon_partner)
        if value is not None:
            return source, value
    return None

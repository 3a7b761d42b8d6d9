"""Customer-key resolution: the endpoint's configured sources, tried in order, first non-empty wins.

The same source syntax names where a payment carries the referring partner's key (`partner_key`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.events import NormalizedEvent
from bridge.suggest import did_you_mean

_PLAIN_SOURCES = {"external_id", "email", "customer_id", "signup:email"}

EmailLookup = Callable[[str], str | None]


def validate_sources(sources: Sequence[str]) -> None:
    """Raise ValueError naming the first source that is not `metadata.<name>` or a known field."""
    for source in sources:
        if source in _PLAIN_SOURCES:
            continue
        if source.startswith("metadata.") and len(source) > len("metadata."):
            continue
        allowed = "metadata.<name>, " + ", ".join(sorted(_PLAIN_SOURCES))
        hint = did_you_mean(source, _PLAIN_SOURCES)
        raise ValueError(f"unknown source {source!r}{hint} (use {allowed})")


def resolve_customer_key(
    event: NormalizedEvent, sources: Sequence[str], signup_by_email: EmailLookup | None = None
) -> str | None:
    """The first non-empty source. `signup:email` asks the sign-up relay's records which key the
    merchant used for the buyer's email, for providers that carry nothing but the email."""
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
        elif source == "signup:email":
            value = signup_by_email(customer.email) if signup_by_email and customer.email else None
        else:
            value = None
        if value is not None and str(value).strip():
            return str(value).strip()
    return None

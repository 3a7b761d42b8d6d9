"""Customer-key resolution: the endpoint's configured sources, tried in order, first non-empty wins."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.events import NormalizedEvent

_PLAIN_SOURCES = {"external_id", "email", "customer_id"}


def validate_sources(sources: Sequence[str]) -> None:
    """Raise ValueError naming the first source that is not `metadata.<name>` or a known field."""
    for source in sources:
        if source in _PLAIN_SOURCES:
            continue
        if source.startswith("metadata.") and len(source) > len("metadata."):
            continue
        allowed = "metadata.<name>, " + ", ".join(sorted(_PLAIN_SOURCES))
        raise ValueError(f"unknown source {source!r} (use {allowed})")


def resolve_customer_key(event: NormalizedEvent, sources: Sequence[str]) -> str | None:
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
        else:
            value = None
        if value is not None and str(value).strip():
            return str(value).strip()
    return None

"""Backfill and reconcile: the provider's API as the safety net behind its webhooks.

The adapter lists the payments of a time window (`list_payments`) and reads each one with its own
webhook rules, so a payment from the API gets the transaction key its webhook would have. Each becomes a
stored call (`GET api:<object>`) recorded through the same ledger as a webhook's: a payment already
delivered by webhook is a duplicate and is never posted again, a missed one is queued once and the
worker delivers it. Payments the ledger already knows leave no new event behind (the work is rolled
back), but still teach the customer memory. A dry run records nothing and says what would happen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge import memory
from bridge.config import Config, Endpoint
from bridge.events import EventKind, NormalizedEvent
from bridge.outbox import record_events, sale_customer_key
from bridge.store.base import CallStatus, Store, Transaction
from providers._api import (
    ApiBudgetSpent,
    ApiError,
    ApiRateLimited,
    HistoryUnavailable,
    HistoryWindow,
    PaymentRecord,
)

log = logging.getLogger("bridge.backfill")


@dataclass
class Summary:
    """What a run found: payments seen, already known, new (queued), skipped or ignored with reasons."""

    seen: int = 0
    known: int = 0
    new: list[str] = field(default_factory=list)  # what the webhooks missed: `<transaction key> (<kind>)`
    skipped: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    api_requests: int = 0
    stopped: str | None = None  # why the run ended before the window was read whole

    def lines(self) -> list[str]:
        out = [
            f"seen {self.seen}, already known {self.known}, new {len(self.new)}, "
            f"skipped {sum(self.skipped.values())}, ignored {sum(self.ignored.values())} "
            f"({self.api_requests} API requests)"
        ]
        out += [f"  skipped {n}: {reason}" for reason, n in self.skipped.most_common()]
        out += [f"  ignored {n}: {reason}" for reason, n in self.ignored.most_common()]
        out += [f"  warning: {w}" for w in self.warnings]
        if self.stopped:
            out.append(f"stopped early: {self.stopped}")
        return out


# what recording one payment did: was its call new, and per event (status, reason, warning)
Outcome = tuple[bool, list[tuple[str, str | None, str | None]]]


class _Undo(Exception):
    """Roll the recording back (a dry run, or nothing new) and carry its outcome out of the store."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("rolled back")
        self.outcome = outcome


async def run(
    config: Config,
    store: Store,
    endpoint: Endpoint,
    since: datetime,
    until: datetime | None = None,
    dry_run: bool = False,
    max_requests: int | None = None,
    on_page: Callable[[int], object] | None = None,
    on_record: Callable[[], object] | None = None,
) -> Summary:
    """Read the window from the provider's API and record what the ledger does not know yet."""
    summary = Summary()
    window = HistoryWindow(since, until or datetime.now(UTC), max_requests, on_page)
    try:
        records = await endpoint.adapter.list_payments(window)
    except (ApiBudgetSpent, ApiRateLimited, ApiError) as exc:
        summary.api_requests = window.requests
        summary.stopped = str(exc)
        return summary
    summary.api_requests = window.requests
    # oldest first: a payment's history in order, and the memory's earliest use is the first one seen
    epoch = datetime.min.replace(tzinfo=UTC)
    for record in sorted(records, key=lambda r: r.occurred_at or epoch):
        outcome = await _record(store, endpoint, record, dry_run, time.time())
        _count(summary, record, outcome)
        if on_record is not None:
            on_record()
    return summary


async def _record(store: Store, endpoint: Endpoint, record: PaymentRecord, dry_run: bool, now: float) -> Outcome:
    body = json.dumps({"source": record.source, "object": record.api_object}, default=str, sort_keys=True).encode()
    facts = json.dumps([e.to_json() for e in record.events], sort_keys=True).encode()
    # the same facts read again are the same call: a second run over a window changes nothing
    delivery_id = "api:" + hashlib.sha256(facts).hexdigest()

    def record_call(tx: Transaction) -> Outcome:
        call_id, new = tx.insert_call(endpoint.name, delivery_id, now, "GET", f"api:{record.source}", "", {}, body)
        call = tx.get_call(call_id)
        if not new or call is None:
            raise _Undo((False, []))
        events = []
        for event_id in record_events(tx, call, endpoint, record.events, now):
            found = tx.get_event(event_id)
            assert found is not None
            events.append((found[0].status, found[0].reason, found[0].warning))
        tx.finish_call(call_id, CallStatus.PROCESSED, None, now)
        if dry_run or all(status in ("duplicate", "ignored") for status, _, _ in events):
            raise _Undo((True, events))
        return True, events

    try:
        return await store.run(record_call)
    except _Undo as undo:
        if not dry_run:
            await store.run(lambda tx: _learn(tx, endpoint, record.events, now))
        return undo.outcome


def _learn(tx: Transaction, endpoint: Endpoint, events: list[NormalizedEvent], now: float) -> None:
    """What a known payment still teaches: its buyer's email and customer id go with its key."""
    for event in events:
        if event.kind is not EventKind.SALE or (event.test_mode and endpoint.settings.test_mode == "skip"):
            continue
        payment = tx.get_payment(endpoint.partnero.scope, event.transaction_key or "")
        key = sale_customer_key(tx, endpoint, event, payment)
        if key is not None:
            scope = endpoint.partnero.scope
            memory.learn(tx, scope, endpoint.provider, event.customer, key, event.occurred_at, endpoint.name, now)


def _count(summary: Summary, record: PaymentRecord, outcome: Outcome) -> None:
    summary.seen += 1
    new_call, events = outcome
    if not new_call:
        summary.known += 1
        return
    summary.warnings += [f"{record.source}: {warning}" for _, _, warning in events if warning]
    fresh = [
        event
        for event, (status, _, _) in zip(record.events, events, strict=True)
        if status not in ("duplicate", "ignored", "skipped")
    ]
    if fresh:
        summary.new += [f"{event.transaction_key} ({event.kind.value})" for event in fresh]
    elif any(status == "duplicate" for status, _, _ in events):
        summary.known += 1
    elif skipped := [reason or "skipped" for status, reason, _ in events if status == "skipped"]:
        summary.skipped[skipped[0]] += 1
    else:
        summary.ignored[next((reason for _, reason, _ in events if reason), "nothing to record")] += 1


__all__ = ["HistoryUnavailable", "Summary", "run"]

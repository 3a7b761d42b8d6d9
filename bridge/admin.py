"""Operator queries and replays over the store: what happened to each event, and doing it again.

Replays go through the same exactly-once path as first deliveries: a dead operation is set pending with
its maybe-sent mark kept (so its first new attempt looks before it sends), a failed call is parsed again
(and its events meet the payment ledger, which turns what was already applied into duplicates).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.outbox import reopen
from bridge.store.base import EventFilter, Store, Transaction

CALL_PREFIX = "call:"
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AdminError(Exception):
    """A mistake in an operator command; the message says which value is wrong."""


def parse_since(text: str, now: float | None = None) -> float:
    """`2026-11-01`, `2026-11-01T12:00`, or relative `90m`, `36h`, `7d` → Unix time."""
    match = _RELATIVE.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now if now is not None else time.time()) - delta.total_seconds()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(
            f"--since {text!r}: use a date (2026-11-01), a time (2026-11-01T12:00) or 7d/36h/90m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def list_rows(store: Store, flt: EventFilter) -> list[dict[str, Any]]:
    """Events (and, where the status and kind filters allow, calls kept unparsed) as plain rows, newest
    first; `flt.offset` rows skipped, at most `flt.limit` returned."""
    # both sources are read from their start so the merged order is right on every page
    window = replace(flt, limit=flt.offset + flt.limit, offset=0)

    def read(tx: Transaction) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if flt.status != "failed" and flt.kind != "unparsed":
            for e in tx.list_events(window):
                rows.append(
                    {
                        "id": str(e.id),
                        "time": iso(e.created_at),
                        "endpoint": e.endpoint,
                        "kind": e.kind,
                        "event": e.event_type,
                        "transaction_key": e.transaction_key,
                        "customer_key": e.customer_key,
                        "status": e.status,
                        "reason": e.reason,
                        "email": e.email,
                        "warning": e.warning,
                        "attributed": e.attributed,
                        "_ts": e.created_at,
                    }
                )
        if flt.status in (None, "failed") and flt.kind in (None, "unparsed"):
            for c in tx.failed_calls(window):
                rows.append(
                    {
                        "id": f"{CALL_PREFIX}{c.id}",
                        "time": iso(c.received_at),
                        "endpoint": c.endpoint,
                        "kind": "unparsed",
                        "event": None,
                        "transaction_key": None,
                        "customer_key": None,
                        "status": "failed",
                        "reason": c.error,
                        "email": None,
                        "attributed": None,
                        "_ts": c.received_at,
                    }
                )
        rows.sort(key=lambda r: r["_ts"], reverse=True)
        for row in rows:
            del row["_ts"]
        return rows[flt.offset : flt.offset + flt.limit]

    return await store.read(read)


async def show(store: Store, ident: str) -> dict[str, Any]:
    """One event with its normalized data and the timeline of every Partnero attempt."""
    if ident.startswith(CALL_PREFIX):
        call_id = _number(ident.removeprefix(CALL_PREFIX), ident)
        call = await store.read(lambda tx: tx.get_call(call_id))
        if call is None:
            raise AdminError(f"no call {ident}")
        return {
            "id": ident,
            "endpoint": call.endpoint,
            "delivery_id": call.delivery_id,
            "received": iso(call.received_at),
            "status": call.status.value,
            "error": call.error,
            "body_bytes": len(call.body),
        }
    event_id = _number(ident, ident)

    def read(tx: Transaction) -> dict[str, Any] | None:
        found = tx.get_event(event_id)
        if found is None:
            return None
        view, data = found
        operations = []
        for op in tx.operations_of_event(event_id):
            operations.append(
                {
                    "id": op.id,
                    "action": op.action,
                    "partnero_key": op.target_key,
                    "status": op.status.value,
                    "reason": op.reason,
                    "program": op.scope,
                    "attempts": [
                        {
                            "time": iso(a.at),
                            "outcome": a.outcome,
                            "http_status": a.status_code,
                            "detail": a.detail,
                            "latency_seconds": a.latency_seconds,
                        }
                        for a in tx.attempts_of(op.id)
                    ],
                }
            )
        return {
            "id": str(view.id),
            "call": f"{CALL_PREFIX}{view.call_id}",
            "time": iso(view.created_at),
            "endpoint": view.endpoint,
            "kind": view.kind,
            "event": view.event_type,
            "transaction_key": view.transaction_key,
            "customer_key": view.customer_key,
            "attribution": data.get("attribution"),
            "status": view.status,
            "reason": view.reason,
            "warning": view.warning,
            "duplicate_of_operation": view.operation_id if view.status == "duplicate" else None,
            "normalized": data,
            "operations": operations,
        }

    detail = await store.read(read)
    if detail is None:
        raise AdminError(f"no event {ident}")
    return detail


@dataclass(frozen=True)
class ReplayResult:
    ident: str
    replayed: bool
    detail: str


async def replay_targets(store: Store, status: str, flt: EventFilter) -> list[str]:
    """Every event (status dead) or unparsed call (status failed) that a bulk replay would take."""
    if status not in ("dead", "failed"):
        raise AdminError(f"--status {status!r}: replay takes dead or failed")
    flt.status = status
    flt.limit = 1_000_000
    return [row["id"] for row in await list_rows(store, flt)]


async def replay_one(store: Store, ident: str) -> ReplayResult:
    now = time.time()
    if ident.startswith(CALL_PREFIX):
        call_id = _number(ident.removeprefix(CALL_PREFIX), ident)
        done = await store.run(lambda tx: tx.replay_call(call_id))
        return ReplayResult(ident, done, "to be parsed again" if done else "not a failed call with a body")
    event_id = _number(ident, ident)

    def replay(tx: Transaction) -> ReplayResult:
        if tx.get_event(event_id) is None:
            return ReplayResult(ident, False, "no such event")
        dead = [op for op in tx.operations_of_event(event_id) if op.status.value == "dead"]
        for op in dead:
            tx.replay_operation(op.id, now)
            reopen(tx, op, now)
        if not dead:
            return ReplayResult(ident, False, "nothing to replay (no dead operation): nothing is sent again")
        return ReplayResult(ident, True, f"{len(dead)} operation(s) pending again")

    return await store.run(replay)


def _number(text: str, ident: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AdminError(f"{ident!r} is not an event id (12) or a call id (call:5)") from None

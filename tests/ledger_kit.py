"""Apply normalized events to a payment ledger on a real SQLite store, without a worker or Partnero.

`LedgerHarness.live()` is what Partnero would hold once every operation enqueued so far is delivered:
the outbox's own answer, read from its operations in order.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from bridge.config import Endpoint, EndpointSettings, PartneroSettings
from bridge.events import NormalizedEvent
from bridge.outbox import CREATE, DELETE, record_events
from bridge.store.base import EventFilter, EventView, OpStatus, Payment, Transaction
from bridge.store.sqlite import SQLiteStore
from providers.base import AdapterOptions, ProviderAdapter, WebhookRequest


class _Unused(ProviderAdapter):
    """The ledger never calls an adapter; only its class facts matter."""

    name: ClassVar[str] = ""
    reports_dispute_outcome: ClassVar[bool] = True

    def verify(self, request: WebhookRequest, now: float) -> None:
        pass


class LedgerHarness:
    def __init__(self, path: Path, adapter: ProviderAdapter | None = None, **settings: Any) -> None:
        self.store = SQLiteStore(str(path))
        endpoint_settings = EndpointSettings.model_validate({"provider": "x", "secret": "s", **settings})
        program = PartneroSettings(api_key="k", base_url="http://127.0.0.1:9")
        self.endpoint = Endpoint("shop", endpoint_settings, program, adapter or _Unused(["s"], AdapterOptions()))
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.store.open())
        self.event_ids: list[int] = []
        self.calls = 0

    def apply(self, *events: NormalizedEvent) -> list[EventView]:
        """Record `events` as one stored call; returns their events as the operator sees them."""
        self.calls += 1

        def body(tx: Transaction) -> list[int]:
            call_id, _ = tx.insert_call("shop", f"d{self.calls}", time.time(), "POST", "/webhooks/shop", "", {}, b"")
            call = tx.get_call(call_id)
            assert call is not None
            return record_events(tx, call, self.endpoint, list(events), time.time())

        ids = self._run(body)
        self.event_ids += ids
        views = {v.id: v for v in self._run(lambda tx: tx.list_events(EventFilter(limit=100_000)))}
        return [views[i] for i in ids]

    def events(self) -> list[EventView]:
        return list(self._run(lambda tx: tx.list_events(EventFilter(limit=100_000))))

    def live(self) -> dict[str, Decimal]:
        """Partnero's transactions after every pending operation is delivered, key → amount."""

        def body(tx: Transaction) -> dict[str, Decimal]:
            ops = sorted((op for i in self.event_ids for op in tx.operations_of_event(i)), key=lambda op: op.id)
            live: dict[str, Decimal] = {}
            for op in ops:
                if op.status is not OpStatus.PENDING:
                    continue
                if op.action == CREATE:
                    live[op.target_key] = Decimal(op.request["amount"])
                elif op.action == DELETE:
                    live.pop(op.target_key, None)
            return live

        return self._run(body)

    def live_amount(self) -> Decimal:
        """The one payment's booked amount in Partnero (0 when nothing is live)."""
        live = self.live()
        assert len(live) <= 1, live
        return next(iter(live.values()), Decimal(0))

    def payment(self, key: str) -> Payment | None:
        return self._run(lambda tx: tx.get_payment(self.endpoint.partnero.scope, key))

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def _run(self, fn: Any) -> Any:
        return self.loop.run_until_complete(self.store.run(fn))

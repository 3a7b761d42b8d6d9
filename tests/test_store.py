"""The store contract, run against every engine (SQLite now; PostgreSQL joins this parametrisation)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from bridge.store.base import (
    Attempt,
    CallStatus,
    DayRow,
    EventFilter,
    NewOperation,
    OpStatus,
    Payment,
    PaymentState,
    Store,
    Transaction,
)
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SQLiteStore, path_from_url
from tests.partnero_server import PartneroServer
from tests.postgres_kit import throwaway_schema

T = TypeVar("T")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores on one fresh database of each engine: one contract, both engines."""
    if request.param == "sqlite":
        yield lambda: SQLiteStore(str(tmp_path / "s.db"))
        return
    with throwaway_schema() as url:
        yield lambda: PostgresStore(url, pool_size=4)


async def _with_store(engine: StoreFactory, body: Callable[[Store], Any]) -> Any:
    store = engine()
    await store.open()
    try:
        return await body(store)
    finally:
        await store.close()


def test_url_paths() -> None:
    assert path_from_url("sqlite:///./data/bridge.db") == "./data/bridge.db"
    assert path_from_url("sqlite:////var/lib/bridge.db") == "/var/lib/bridge.db"


def test_inbound_dedup_on_endpoint_and_delivery_id(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        def insert(endpoint: str, delivery: str) -> Callable[[Transaction], tuple[int, bool]]:
            return lambda tx: tx.insert_call(endpoint, delivery, time.time(), "POST", "/", "", {}, b"{}")

        first = await store.run(insert("a", "d1"))
        again = await store.run(insert("a", "d1"))
        other = await store.run(insert("b", "d1"))
        assert first[1] and not again[1] and other[1]
        assert first[0] == again[0] != other[0]

    run(_with_store(engine, body))


def test_concurrent_writes_are_group_committed_and_all_durable(engine: StoreFactory) -> None:
    async def body(store: Store) -> list[tuple[int, bool]]:
        return list(
            await asyncio.gather(
                *(
                    store.run(
                        lambda tx, i=i: tx.insert_call("e", f"d{i % 150}", time.time(), "POST", "/", "", {}, b"x")
                    )
                    for i in range(300)
                )
            )
        )

    results = run(_with_store(engine, body))
    assert sum(1 for _, new in results if new) == 150
    # a new process sees every call: it was committed, not only acknowledged

    async def count(store: Store) -> int:
        return len(await store.run(lambda tx: tx.received_calls(1000)))

    assert run(_with_store(engine, count)) == 150


def test_a_failing_piece_of_work_does_not_undo_its_batch_neighbours(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        def bad(tx: Transaction) -> None:
            tx.insert_call("e", "bad", time.time(), "POST", "/", "", {}, b"")
            raise RuntimeError("boom")

        good = store.run(lambda tx: tx.insert_call("e", "good", time.time(), "POST", "/", "", {}, b""))
        results = await asyncio.gather(store.run(bad), good, return_exceptions=True)
        assert isinstance(results[0], RuntimeError)
        calls = await store.run(lambda tx: tx.received_calls(10))
        assert [c.delivery_id for c in calls] == ["good"]

    run(_with_store(engine, body))


def test_run_each_keeps_order_and_rolls_back_only_the_piece_that_fails(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        def insert(name: str) -> Callable[[Transaction], int]:
            return lambda tx: tx.insert_call("e", name, time.time(), "POST", "/", "", {}, b"")[0]

        def bad(tx: Transaction) -> int:
            tx.insert_call("e", "bad", time.time(), "POST", "/", "", {}, b"")
            raise RuntimeError("boom")

        first, failed, last = await store.run_each([insert("first"), bad, insert("last")])
        assert isinstance(failed, RuntimeError)
        assert isinstance(first, int) and isinstance(last, int) and first < last
        calls = await store.run(lambda tx: tx.received_calls(10))
        assert [c.delivery_id for c in calls] == ["first", "last"]

    run(_with_store(engine, body))


def test_a_caller_that_stops_waiting_leaves_its_batch_neighbours_answered(tmp_path: Path) -> None:
    """The writer answers a whole batch in one pass of the event loop; a waiter that was cancelled (the
    client hung up) must not keep the pieces after it in that batch from being answered."""
    import threading

    store = SQLiteStore(str(tmp_path / "c.db"))
    gate = threading.Event()

    def blocked(tx: Transaction) -> bool:
        gate.wait(timeout=10)
        return tx.ping()

    def insert(delivery: str) -> Callable[[Transaction], tuple[int, bool]]:
        return lambda tx: tx.insert_call("a", delivery, time.time(), "POST", "/", "", {}, b"{}")

    async def scenario() -> list[Any]:
        await store.open()
        try:
            holding = asyncio.create_task(store.run(blocked))
            await asyncio.sleep(0.05)  # the writer is inside `blocked`: the next three queue as one batch
            first = asyncio.create_task(store.run(insert("d1")))
            hung_up = asyncio.create_task(store.run(insert("d2")))
            last = asyncio.create_task(store.run(insert("d3")))
            await asyncio.sleep(0.05)
            hung_up.cancel()
            gate.set()
            answers = await asyncio.wait_for(asyncio.gather(holding, first, last), timeout=10)
            stored = await store.run(lambda tx: tx.insert_call("a", "d2", 0.0, "POST", "/", "", {}, b"{}"))
            return [*answers, stored]
        finally:
            gate.set()
            await store.close()

    holding, first, last, stored = run(scenario())
    assert holding is True and first[1] and last[1]
    assert stored[1] is False  # the cancelled caller's insert was committed all the same


def test_calls_keep_bytes_and_status(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        raw = b'{"a": 1.10}\n\xff'
        call_id, _ = await store.run(
            lambda tx: tx.insert_call("e", "d", 1.5, "POST", "/webhooks/e", "x=1", {"h": "v"}, raw)
        )
        await store.run(lambda tx: tx.finish_call(call_id, CallStatus.FAILED, "cannot parse", 2.0))
        call = await store.run(lambda tx: tx.get_call(call_id))
        assert call is not None
        assert (call.body, call.headers, call.query_string, call.status, call.error) == (
            raw,
            {"h": "v"},
            "x=1",
            CallStatus.FAILED,
            "cannot parse",
        )
        assert await store.run(lambda tx: tx.received_calls(10)) == []

    run(_with_store(engine, body))


def _op(action: str, key: str, scope: str = "p", target: str | None = None) -> NewOperation:
    return NewOperation(scope, action, key, target or key, "e", {"key": target or key})


def test_claims_respect_order_per_transaction_key(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()

        def setup(tx: Transaction) -> None:
            tx.insert_operation(_op("create", "k1"), now)
            tx.insert_operation(_op("delete", "k1"), now)
            tx.insert_operation(_op("delete", "k2"), now)

        await store.run(setup)
        first = await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10))
        # a payment's operations run in order: the delete of k1 waits; k2 has no earlier work and may go
        assert sorted(o.op_key for o in first) == ["create:k1", "delete:k2"]
        assert all(o.attempts == 0 and not o.maybe_sent for o in first)
        again = await store.run(lambda tx: tx.claim_operations("w2", now + 1, now + 60, 10))
        assert again == []
        create = next(o for o in first if o.action == "create")
        await store.run(
            lambda tx: tx.update_operation(
                create.id, now, status=OpStatus.DELIVERED, lease_owner=None, lease_until=None
            )
        )
        after = await store.run(lambda tx: tx.claim_operations("w2", now + 1, now + 60, 10))
        assert [o.op_key for o in after] == ["delete:k1"]
        stored = await store.run(lambda tx: tx.get_operation("p", "create:k1"))
        assert stored is not None and stored.attempts == 1 and stored.maybe_sent

    run(_with_store(engine, body))


def test_a_claim_leases_exactly_the_operations_it_returns(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()
        await store.run(lambda tx: [tx.insert_operation(_op("create", f"k{n}"), now + n / 100) for n in range(5)])
        claimed = await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 3))
        assert [o.op_key for o in claimed] == ["create:k0", "create:k1", "create:k2"]
        stored = await store.run(lambda tx: [tx.get_operation("p", f"create:k{n}") for n in range(5)])
        assert [(o.attempts, o.maybe_sent) if o else None for o in stored] == [(1, True)] * 3 + [(0, False)] * 2
        # leased to w: another claimer gets only the two left, and w may renew only its own
        rest = await store.run(lambda tx: tx.claim_operations("w2", now + 1, now + 60, 10))
        assert [o.op_key for o in rest] == ["create:k3", "create:k4"]
        assert await store.run(lambda tx: tx.renew_operation_lease(claimed[2].id, "w", now + 2, now + 90))
        assert not await store.run(lambda tx: tx.renew_operation_lease(rest[0].id, "w", now + 2, now + 90))

    run(_with_store(engine, body))


def test_a_dead_operation_holds_the_rest_of_its_payment(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()

        def setup(tx: Transaction) -> None:
            first = tx.insert_operation(_op("delete", "k"), now)
            tx.insert_operation(_op("create", "k", target="k~adj1"), now)
            tx.update_operation(first, now, status=OpStatus.DEAD)

        await store.run(setup)
        assert await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10)) == []
        dead = await store.run(lambda tx: tx.get_operation("p", "delete:k"))
        assert dead is not None
        await store.run(lambda tx: tx.update_operation(dead.id, now, status=OpStatus.DELIVERED))
        [op] = await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10))
        assert (op.op_key, op.transaction_key, op.target_key) == ("create:k~adj1", "k", "k~adj1")

    run(_with_store(engine, body))


def test_payments_ledger_round_trip(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        payment = Payment(
            "p",
            "k",
            "e",
            PaymentState.ACTIVE,
            "k~adj2",
            2,
            {"amount": "9.99"},
            Decimal("1.50"),
            {"by_id": {"re_1": None}},
        )
        await store.run(lambda tx: tx.put_payment(payment, 1.0))
        assert await store.run(lambda tx: tx.get_payment("p", "k")) == payment
        moved = replace(payment, state=PaymentState.REFUNDED, current_key=None)
        await store.run(lambda tx: tx.put_payment(moved, 2.0))
        assert await store.run(lambda tx: tx.get_payment("p", "k")) == moved
        assert moved.sale_amount == Decimal("9.99")
        assert await store.run(lambda tx: tx.get_payment("other", "k")) is None

    run(_with_store(engine, body))


def test_expired_and_released_leases_make_work_claimable_again(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()
        await store.run(lambda tx: tx.insert_operation(_op("create", "k"), now))
        assert len(await store.run(lambda tx: tx.claim_operations("a", now, now + 5, 10))) == 1
        assert await store.run(lambda tx: tx.claim_operations("b", now + 1, now + 5, 10)) == []
        assert len(await store.run(lambda tx: tx.claim_operations("b", now + 6, now + 10, 10))) == 1
        assert await store.run(lambda tx: tx.release_leases("b")) == 1
        [op] = await store.run(lambda tx: tx.claim_operations("c", now + 7, now + 10, 10))
        assert op.attempts == 2 and op.maybe_sent

    run(_with_store(engine, body))


def test_operations_are_unique_per_program(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()
        await store.run(lambda tx: tx.insert_operation(_op("create", "k", "p1"), now))
        await store.run(lambda tx: tx.insert_operation(_op("create", "k", "p2"), now))
        with pytest.raises(Exception, match=r"(?i)unique|duplicate key"):
            await store.run(lambda tx: tx.insert_operation(_op("create", "k", "p1"), now))

    run(_with_store(engine, body))


def test_attempt_timeline(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        op_id = await store.run(lambda tx: tx.insert_operation(_op("create", "k"), 1.0))
        await store.run(lambda tx: tx.add_attempt(Attempt(op_id, 2.0, "retry", 503, "Partnero error 503")))
        await store.run(lambda tx: tx.add_attempt(Attempt(op_id, 3.0, "delivered", 200, "created")))
        timeline = await store.run(lambda tx: tx.attempts_of(op_id))
        assert [(a.outcome, a.status_code) for a in timeline] == [("retry", 503), ("delivered", 200)]
        assert await store.run(lambda tx: tx.next_due_at()) == 1.0

    run(_with_store(engine, body))


def test_ping_and_closed_store(engine: StoreFactory) -> None:
    async def body() -> None:
        store = engine()
        await store.open()
        assert await store.ping()
        await store.close()
        with pytest.raises(RuntimeError):
            await store.run(lambda tx: tx.ping())

    run(body())


def test_a_sqlite_store_belongs_to_one_process_at_a_time(tmp_path: Path) -> None:
    from bridge.store.base import StoreInUse

    path = str(tmp_path / "data" / "bridge.db")
    first, second = SQLiteStore(path), SQLiteStore(path)

    async def scenario() -> None:
        await first.hold_exclusive()
        with pytest.raises(StoreInUse, match=r"in use by another partnero-bridge process.*PostgreSQL"):
            await second.hold_exclusive()
        await first.close()  # the owner goes away: the lock goes with it
        await second.hold_exclusive()
        await second.close()

    run(scenario())


def test_a_second_serve_process_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.bridge_process import ROOT, BridgeProcess

    first = BridgeProcess(tmp_path, {"endpoints": {}, "partnero": {"dry_run": True}})
    try:
        first.start()
        second = subprocess.run(
            [sys.executable, "-m", "bridge", "serve", "--config", str(first.config_path), "--port", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        # refused at once, before serving: the 30 s above bounds only the interpreter's start
        assert second.returncode == 2
        assert "in use by another partnero-bridge process" in second.stderr and "PostgreSQL" in second.stderr
        # the first one is untouched and still serving
        assert first.proc is not None and first.proc.poll() is None
    finally:
        first.kill()


def _wait_until_blocked(url: str) -> None:
    """Until a transaction on this PostgreSQL server really waits for a lock another one holds."""
    import psycopg

    deadline = time.monotonic() + 10
    with psycopg.connect(url) as conn:
        while conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone() == (0,):
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_cancelling_an_unsent_operation_loses_to_a_claim_committing_at_the_same_moment() -> None:
    """Found by the scale-out run: a partial refund recorded by one process cancelled a sale another
    process had just claimed and was sending, so the sale stayed live at full price."""
    import threading

    with throwaway_schema() as url:
        store = PostgresStore(url, pool_size=4)
        run(store.open())
        try:
            now = time.time()
            op_id = store.run_sync(lambda tx: tx.insert_operation(_op("create", "k"), now))
            claimed, release = threading.Event(), threading.Event()
            cancelled: list[bool] = []

            def claim(tx: Transaction) -> None:
                tx.claim_operations("w", now + 1, now + 60, 10)
                claimed.set()
                release.wait(10)  # the claim's transaction is still open

            claimer = threading.Thread(target=store.run_sync, args=(claim,))
            claimer.start()
            assert claimed.wait(10)
            canceller = threading.Thread(
                target=lambda: cancelled.append(store.run_sync(lambda tx: tx.cancel_unsent_operation(op_id, now, "x")))
            )
            canceller.start()
            _wait_until_blocked(url)  # the cancel, on the claim's row lock
            release.set()
            claimer.join(10)
            canceller.join(10)
            assert cancelled == [False]
            stored = store.run_sync(lambda tx: tx.get_operation_by_id(op_id))
            assert stored is not None and stored.status is OpStatus.PENDING and stored.attempts == 1
        finally:
            run(store.close())


def test_an_operator_pause_holds_a_program_for_every_claimer_until_resumed(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()
        await store.run(lambda tx: tx.insert_operation(_op("create", "k1", scope="p"), now))
        await store.run(lambda tx: tx.insert_operation(_op("create", "k2", scope="q"), now))
        assert await store.run(lambda tx: tx.set_program_paused("p", True, now)) is True
        assert await store.run(lambda tx: tx.set_program_paused("p", True, now + 5)) is False
        assert await store.run(lambda tx: tx.paused_programs()) == {"p": now}
        claimed = await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10))
        assert [op.scope for op in claimed] == ["q"]
        assert await store.run(lambda tx: tx.set_program_paused("p", False, now)) is True
        assert await store.run(lambda tx: tx.paused_programs()) == {}
        claimed = await store.run(lambda tx: tx.claim_operations("w", now + 2, now + 60, 10))
        assert [op.transaction_key for op in claimed] == ["k1"]

    run(_with_store(engine, body))


def test_attempt_latency_round_trip(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        op_id = await store.run(lambda tx: tx.insert_operation(_op("create", "k"), 1.0))
        await store.run(lambda tx: tx.add_attempt(Attempt(op_id, 2.0, "delivered", 201, "created", 0.125)))
        await store.run(lambda tx: tx.add_attempt(Attempt(op_id, 3.0, "retry", None, "timeout")))
        assert [a.latency_seconds for a in await store.run(lambda tx: tx.attempts_of(op_id))] == [0.125, None]

    run(_with_store(engine, body))


def _console_events(tx: Transaction) -> None:
    from bridge.store.base import EventStatus, NewEvent

    def event(n: int, kind: str, key: str | None, email: str | None, status: OpStatus | None, at: float) -> None:
        call_id, _ = tx.insert_call("shop", f"dlv-{n}", at, "POST", "/", "", {}, b"{}")
        tx.finish_call(call_id, CallStatus.PROCESSED, None, at)
        data = {"amount": "10.50", "currency": "EUR", "customer": {"email": email}}
        queued = EventStatus.QUEUED if status else EventStatus.IGNORED
        event_id = tx.insert_event(NewEvent(call_id, "shop", 0, kind, "t", key, data, f"cust-{n}", queued), at)
        if status is not None and key is not None:
            tx.insert_operation(
                NewOperation(
                    "p", "create" if kind == "sale" else "delete", key, key, "shop", {}, status, None, event_id
                ),
                at,
            )

    event(1, "sale", "lemonsqueezy:order:101", "Jane@Example.com", OpStatus.DELIVERED, 1000.0)
    event(2, "sale", "lemonsqueezy:order:102", "bob@example.com", OpStatus.DEAD, 2000.0)
    event(3, "refund", "lemonsqueezy:order:101", "jane@example.com", OpStatus.PENDING, 3000.0)
    event(4, "ignored", None, None, None, 4000.0)
    call_id, _ = tx.insert_call("shop", "dlv-bad", 5000.0, "POST", "/", "", {}, b"junk")
    tx.finish_call(call_id, CallStatus.FAILED, "cannot parse", 5000.0)


def test_event_search_filters_and_pages(engine: StoreFactory) -> None:
    from bridge.store.base import EventFilter

    async def body(store: Store) -> None:
        await store.run(_console_events)

        async def keys(**filters: Any) -> list[str | None]:
            found = await store.run(lambda tx: tx.list_events(EventFilter(**filters)))
            return [e.customer_key for e in found]

        assert await keys(q="jane@example.com") == ["cust-3", "cust-1"]
        assert await keys(q="lemonsqueezy:order:102") == ["cust-2"]
        assert await keys(q="102") == ["cust-2"]  # the provider's payment id
        assert await keys(q="cust-3") == ["cust-3"]
        assert await keys(q="dlv-1") == ["cust-1"]
        assert await keys(q="10_") == [] and await keys(q="%") == []  # LIKE wildcards are literal
        assert await keys(q="nobody@example.com") == []
        assert await keys(kind="sale", status="dead") == ["cust-2"]
        assert await keys(since=1500.0, until=3500.0) == ["cust-3", "cust-2"]
        assert await keys(limit=2, offset=1) == ["cust-3", "cust-2"]
        [failed] = await store.run(lambda tx: tx.failed_calls(EventFilter(q="dlv-bad")))
        assert failed.error == "cannot parse"
        assert await store.run(lambda tx: tx.failed_calls(EventFilter(q="dlv-1"))) == []

    run(_with_store(engine, body))


def test_overview_counts_queue_and_day_rows(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        await store.run(_console_events)
        counts = await store.run(lambda tx: tx.status_counts(1500.0))
        assert counts == {
            ("sale", "dead"): 1,
            ("refund", "pending"): 1,
            ("ignored", "ignored"): 1,
            ("unparsed", "failed"): 1,
        }
        assert sum((await store.run(lambda tx: tx.status_counts(None))).values()) == 5
        stats = await store.run(lambda tx: tx.queue_stats())
        assert (stats.pending_operations, stats.received_calls, stats.dead_operations, stats.failed_calls) == (
            1,
            0,
            1,
            1,
        )
        assert stats.oldest_pending_at == 3000.0
        rows = await store.run(lambda tx: tx.day_rows(0.0))
        # per day; the amount only where the chart books it (delivered sales)
        assert rows == [
            DayRow(0.0, "shop", "sale", "delivered", "10.50", "EUR", 1),
            DayRow(0.0, "shop", "sale", "dead", None, None, 1),
            DayRow(0.0, "shop", "refund", "pending", None, None, 1),
        ]

    run(_with_store(engine, body))


def test_the_chart_counted_per_day_equals_the_chart_counted_event_by_event(engine: StoreFactory) -> None:
    """The overview's chart from `day_rows` (grouped in the engine) must be what it was when every event of
    the fortnight came back as a row of its own: counts, booked amounts (exact, in the order the currencies
    first appear), events on the window's edges and at midnight, amounts the chart cannot read."""
    import random

    from bridge.console.chart import per_endpoint
    from bridge.store.base import EventStatus, NewEvent
    from bridge.store.sql import SQLTransaction

    rng = random.Random(14)
    now = 1_780_000_000.0
    midnights = [(int(now // 86400) - d) * 86400.0 for d in range(15)]

    def fill(tx: Transaction) -> None:
        for n in range(400):
            at = rng.choice([now - rng.uniform(0, 16 * 86400), rng.choice(midnights) + rng.choice((-1e-6, 0.0, 1e-6))])
            call_id, _ = tx.insert_call(rng.choice(("a", "b")), f"d{n}", at, "POST", "/", "", {}, b"{}")
            data: dict[str, Any] = {
                "amount": rng.choice(["19.99", "20", "20.00", "0.10", None, "bad", 7, 19.5]),
                "currency": rng.choice(["USD", "EUR", "EUR", None, ""]),
            }
            kind = rng.choice(("sale", "sale", "sale", "refund", "dispute", "ignored"))
            own = rng.choice((EventStatus.QUEUED, EventStatus.QUEUED, EventStatus.DUPLICATE))
            event = NewEvent(call_id, rng.choice(("a", "b")), 0, kind, "t", f"k{n}", data, None, own)
            event_id = tx.insert_event(event, at)
            if own is EventStatus.QUEUED:
                status = rng.choice((OpStatus.DELIVERED, OpStatus.DELIVERED, OpStatus.DEAD, OpStatus.PENDING))
                tx.insert_operation(replace(_op("create", f"k{n}"), status=status, event_id=event_id), at)
        # one day on which the currency met first sorts last, by name and by amount
        for n, (amount, currency) in enumerate((("9.99", "USD"), ("1.00", "EUR"))):
            at = midnights[1] + 3600 * (n + 1)
            call_id, _ = tx.insert_call("c", f"c{n}", at, "POST", "/", "", {}, b"{}")
            data = {"amount": amount, "currency": currency}
            event_id = tx.insert_event(
                NewEvent(call_id, "c", 0, "sale", "t", f"c{n}", data, None, EventStatus.QUEUED), at
            )
            tx.insert_operation(replace(_op("create", f"c{n}"), status=OpStatus.DELIVERED, event_id=event_id), at)

    def event_by_event(tx: Transaction, since: float) -> list[DayRow]:
        # the overview's query before it counted per day: one row per event, oldest first
        amount, currency = _json(tx, "amount"), _json(tx, "currency")
        sql = cast(SQLTransaction, tx)
        rows = sql._x(
            f"SELECT e.created_at, e.endpoint, e.kind, e.shown_status, {amount}, {currency} FROM events e"
            " WHERE e.created_at >= ? AND e.kind IN ('sale', 'refund', 'dispute') ORDER BY e.created_at, e.id",
            (since,),
        ).fetchall()
        return [DayRow(float(r[0]), r[1], r[2], r[3], None if r[4] is None else str(r[4]), r[5]) for r in rows]

    async def body(store: Store) -> None:
        await store.run(fill)
        for days in (14, 3):
            since = now - days * 86400
            grouped = await store.run(lambda tx, since=since: tx.day_rows(since))
            single = await store.run(lambda tx, since=since: event_by_event(tx, since))
            assert len(grouped) < len(single)
            expected = [s.as_json() for s in per_endpoint(single, now, days)]
            # as the JSON twin writes it: in its order of keys (dicts compare equal in any order)
            assert json.dumps([s.as_json() for s in per_endpoint(grouped, now, days)]) == json.dumps(expected)
            assert any(s["booked"] for s in expected)

    run(_with_store(engine, body))


def _json(tx: Transaction, field: str) -> str:
    from bridge.store.sql import SQLTransaction

    return cast(SQLTransaction, tx).dialect.json_text("e.data", (field,))


def test_a_new_sqlite_store_is_private_to_its_user(tmp_path: Path) -> None:
    import os
    import stat

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    path = shared / "new" / "deeper" / "bridge.db"
    previous = os.umask(0o022)
    try:
        store = SQLiteStore(str(path))
        asyncio.run(store.open())
        store.run_sync(lambda tx: tx.insert_call("shop", "d1", 1.0, "POST", "/", "", {}, b"{}"))
        asyncio.run(store.close())
    finally:
        os.umask(previous)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(path) == 0o600
    assert all(mode(f) == 0o600 for f in shared.glob("new/deeper/bridge.db*"))
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    # a directory the operator made is theirs to set
    assert mode(shared) == 0o755


def test_the_operators_searches_are_index_look_ups_on_sqlite(tmp_path: Path) -> None:
    """At a million events a search that reads every event takes seconds (bench/bigstore.py); each way
    `q` matches and the dead/pending filters must be answered from an index (migration 5)."""
    import sqlite3

    from bridge.store.base import EventFilter
    from bridge.store.sql import SQLITE, SQLTransaction

    conn = sqlite3.connect(tmp_path / "plan.db")
    SQLiteStore.migrate(conn)
    tx = SQLTransaction(conn, SQLITE)
    captured: list[tuple[str, Any]] = []
    execute = tx._x

    def capture(sql: str, params: Any = ()) -> Any:
        captured.append((sql, params))
        return execute(sql, params)

    tx._x = capture  # type: ignore[method-assign]
    searches = [EventFilter(q="lemonsqueezy:order:102")]
    # every status, also those computed from the operations (delivered, skipped): the stored status's index
    searches += [EventFilter(status=s) for s in ("dead", "pending", "delivered", "skipped", "duplicate", "ignored")]
    for flt in searches:
        captured.clear()
        tx.list_events(flt)
        [(sql, params)] = captured
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SCAN e" not in plan and "SCAN events" not in plan, plan
    # the overview: its counts and chart read the days shown, by the creation time's index, and compute no
    # event's status from its operations (migration 6 stores it)
    captured.clear()
    tx.status_counts(1000.0)
    tx.day_rows(1000.0)
    for sql, params in captured:
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SCAN" not in plan and "operations" not in plan, plan
        # the window, not every sale by the (kind, status) index (migration 7)
        assert "FROM events" not in sql or "events_created" in plan, plan
    # a metrics scrape counts every event: from the (kind, shown_status) index alone, not every row
    # (migration 7; 0.9 s -> 0.18 s at 1,000,000 events)
    captured.clear()
    tx.status_counts(None)
    events_sql, params = captured[0]
    plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {events_sql}", params))
    assert "COVERING INDEX events_kind_status" in plan, plan
    conn.close()


def test_urgent_work_goes_ahead_of_the_queued_rest_on_sqlite(tmp_path: Path) -> None:
    """A webhook's insert (`urgent=True`) must not wait behind a long queue of recording work."""
    import threading

    store = SQLiteStore(str(tmp_path / "u.db"))
    gate = threading.Event()
    ran: list[str] = []

    def blocked(tx: Transaction) -> None:
        gate.wait(timeout=10)

    def piece(name: str) -> Callable[[Transaction], None]:
        return lambda tx: ran.append(name)

    async def scenario() -> None:
        await store.open()
        try:
            holding = asyncio.create_task(store.run(blocked))
            await asyncio.sleep(0.05)  # the writer is inside `blocked`: the rest queues behind it
            queued = asyncio.create_task(store.run_each([piece(f"queued-{n}") for n in range(50)]))
            await asyncio.sleep(0)
            urgent = asyncio.create_task(store.run(piece("urgent"), urgent=True))
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.wait_for(asyncio.gather(holding, queued, urgent), timeout=10)
        finally:
            gate.set()
            await store.close()

    run(scenario())
    assert ran[0] == "urgent" and ran[1:] == [f"queued-{n}" for n in range(50)]


def test_urgent_work_is_committed_in_groups_and_a_failing_piece_fails_alone(engine: StoreFactory) -> None:
    """A burst of webhooks' inserts shares transactions (PostgreSQL: one per insert was most of ingest's
    cost), yet a piece that fails takes none of its group with it: the rest are stored and answered."""

    def insert(n: int) -> Callable[[Transaction], tuple[int, bool]]:
        return lambda tx: tx.insert_call("ep", f"d{n}", time.time(), "POST", "/", "", {}, b"{}")

    def failing(tx: Transaction) -> tuple[int, bool]:
        insert(-1)(tx)  # written, then undone with the failure
        raise RuntimeError("this piece fails")

    def transaction_id(tx: Transaction) -> str:
        conn: Any = tx.conn  # type: ignore[attr-defined]
        if isinstance(conn, sqlite3.Connection):
            return "sqlite"  # one writer: every batch is one transaction by construction
        return str(conn.execute("SELECT txid_current()").fetchone()[0])

    async def body(store: Store) -> tuple[list[Any], list[str], int]:
        pieces: list[Callable[[Transaction], Any]] = [insert(n) for n in range(200)]
        pieces.insert(100, failing)
        outcomes = await asyncio.gather(*(store.run(p, urgent=True) for p in pieces), return_exceptions=True)
        ids = await asyncio.gather(*(store.run(transaction_id, urgent=True) for _ in range(100)))
        stored = await store.run(lambda tx: len(tx.received_calls(1000)))
        return outcomes, ids, stored

    outcomes, ids, stored = run(_with_store(engine, body))
    assert isinstance(outcomes[100], RuntimeError)
    rest = outcomes[:100] + outcomes[101:]
    assert all(isinstance(o, tuple) and o[1] is True for o in rest), rest
    assert stored == 200  # every insert but the failing piece's own
    assert len(set(ids)) < len(ids) / 2, "urgent work ran one transaction per piece"


def test_a_claim_leases_every_call_it_returns(engine: StoreFactory) -> None:
    async def body(store: Store) -> tuple[int, int, int]:
        for n in range(5):
            await store.run(lambda tx, d=f"d{n}": tx.insert_call("ep", d, time.time(), "POST", "/", "", {}, b"{}"))
        now = time.time()
        first = await store.run(lambda tx: tx.claim_calls("a", now, now + 60, 3))
        second = await store.run(lambda tx: tx.claim_calls("b", now, now + 60, 10))
        after_lease = await store.run(lambda tx: tx.claim_calls("c", now + 61, now + 120, 10))
        return len(first), len(second), len(after_lease)

    # the 2 left to "b"; once the leases ran out, all 5 are free again
    assert run(_with_store(engine, body)) == (3, 2, 5)


# --- the status an operator sees, stored on the event (migration 6) -------------------------------------------


def _shown_statuses_match_the_operations(tx: Transaction) -> dict[int, str]:
    """Every event's stored status against the one computed from scratch — its own unless queued, else its
    operations': dead wins, then pending, then delivered, else skipped — in the list, in every status filter
    and in the overview's counts. Returns the computed statuses."""
    from bridge.store.sql import SQLTransaction

    own = dict(cast(SQLTransaction, tx)._x("SELECT id, status FROM events").fetchall())
    computed: dict[int, str] = {}
    for event_id, status in own.items():
        if status == "queued":
            ops = {op.status.value for op in tx.operations_of_event(event_id)}
            status = next((s for s in ("dead", "pending", "delivered") if s in ops), "skipped")
        computed[event_id] = status
    assert {e.id: e.status for e in tx.list_events(EventFilter(limit=100_000))} == computed
    for status in {*computed.values(), "dead", "pending", "delivered", "skipped", "duplicate", "ignored"}:
        found = {e.id for e in tx.list_events(EventFilter(status=status, limit=100_000))}
        assert found == {event_id for event_id, shown in computed.items() if shown == status}, status
    counts = {key: n for key, n in tx.status_counts(None).items() if key[0] != "unparsed"}
    assert sum(counts.values()) == len(computed)
    assert {status for _, status in counts} == set(computed.values())
    return computed


def test_the_stored_status_follows_every_change_of_an_operation(engine: StoreFactory) -> None:
    """A random walk over the primitives that insert operations or change their status — several operations
    per event, every order — checking after each step that no event's stored status drifted."""
    import random

    from bridge.store.base import EventStatus, NewEvent

    rng = random.Random(6)
    own_statuses = [EventStatus.QUEUED] * 4 + [EventStatus.DUPLICATE, EventStatus.IGNORED, EventStatus.SKIPPED]

    def new_event(tx: Transaction, n: int) -> None:
        call_id, _ = tx.insert_call("shop", f"d{n}", 1.0, "POST", "/", "", {}, b"{}")
        tx.finish_call(call_id, CallStatus.PROCESSED, None, 1.0)
        own = rng.choice(own_statuses)
        event_id = tx.insert_event(NewEvent(call_id, "shop", 0, "sale", "t", f"k{n}", {}, None, own), 1.0)
        for m in range(rng.choice((0, 1, 1, 2, 3))):
            status = rng.choice(list(OpStatus))
            tx.insert_operation(
                replace(_op("create", f"k{n}", target=f"k{n}~{m}"), status=status, event_id=event_id), 1.0
            )

    def step(tx: Transaction, n: int) -> None:
        ids = [row[0] for row in cast(Any, tx)._x("SELECT id FROM operations").fetchall()]
        choice = rng.randrange(7)
        if choice == 0 or not ids:
            new_event(tx, n)
            return
        op_id = rng.choice(ids)
        if choice == 1:
            tx.update_operation(op_id, 2.0, status=rng.choice(list(OpStatus)), reason=f"step {n}")
        elif choice == 2:
            tx.update_operation(op_id, 2.0, attempts=n, next_attempt_at=3.0)  # a retry: the status stays
        elif choice == 3:
            tx.cancel_unsent_operation(op_id, 2.0, "superseded")
        elif choice == 4:
            tx.replay_operation(op_id, 2.0)
        elif choice == 5:
            tx.claim_operations("w", 10.0, 20.0, 5)
            tx.release_leases("w")
        else:
            tx.purge_bodies(10.0)

    async def body(store: Store) -> None:
        for n in range(12):
            await store.run(lambda tx, n=n: new_event(tx, n))
        seen: set[str] = set()
        for n in range(12, 160):
            await store.run(lambda tx, n=n: step(tx, n))
            seen |= set((await store.run(_shown_statuses_match_the_operations)).values())
        assert seen == {"dead", "pending", "delivered", "skipped", "duplicate", "ignored"}

    run(_with_store(engine, body))


def test_two_operations_of_one_event_finished_at_once_on_postgresql() -> None:
    """Two processes finishing two operations of one event at the same moment: the second must compute the
    event's status from the first's committed operation, not from what it saw before it waited."""
    import threading

    from bridge.store.base import EventStatus, NewEvent

    with throwaway_schema() as url:
        store = PostgresStore(url, pool_size=4)
        run(store.open())
        try:

            def setup(tx: Transaction) -> tuple[int, int, int]:
                call_id, _ = tx.insert_call("shop", "d", 1.0, "POST", "/", "", {}, b"{}")
                event_id = tx.insert_event(
                    NewEvent(call_id, "shop", 0, "refund", "t", "k", {}, None, EventStatus.QUEUED), 1.0
                )
                first = tx.insert_operation(replace(_op("delete", "k"), event_id=event_id), 1.0)
                second = tx.insert_operation(replace(_op("create", "k", target="k~adj1"), event_id=event_id), 1.0)
                return event_id, first, second

            event_id, first, second = store.run_sync(setup)
            finished, release = threading.Event(), threading.Event()

            def finish_first(tx: Transaction) -> None:
                tx.update_operation(first, 2.0, status=OpStatus.DELIVERED)
                finished.set()
                release.wait(10)  # its transaction is still open

            holder = threading.Thread(target=store.run_sync, args=(finish_first,))
            holder.start()
            assert finished.wait(10)
            other = threading.Thread(
                target=store.run_sync, args=(lambda tx: tx.update_operation(second, 2.0, status=OpStatus.DELIVERED),)
            )
            other.start()
            _wait_until_blocked(url)  # the second finish, on the event the first one moved
            release.set()
            holder.join(10)
            other.join(10)
            [shown] = store.run_sync(lambda tx: [e.status for e in tx.list_events(EventFilter()) if e.id == event_id])
            assert shown == "delivered"
            store.run_sync(_shown_statuses_match_the_operations)
        finally:
            run(store.close())


def test_the_stored_status_matches_the_computed_one_through_a_bridges_life(
    store_url: str, partnero: PartneroServer
) -> None:
    """The same check on what the worker, the ledger and the console really do: deliveries, a retry, a dead
    letter requeued from the console, refunds (one superseding an unsent sale), a duplicate, sign-ups, and
    the retention purge."""
    from bridge import admin
    from tests.inprocess_kit import LedgerBridge, fixture

    def order(order_id: str, refunded: str | None = None, amount: int | None = None) -> dict[str, Any]:
        # tests/fixtures/lemonsqueezy (SOURCES.md there): the id edited, a refund's amount when partial
        body = fixture("lemonsqueezy", f"order_{refunded or 'created'}.json")
        body["data"]["id"] = order_id
        if amount is not None:
            body["data"]["attributes"].update(refunded_amount=amount, refunded_amount_usd=amount)
        return body

    partnero.unknown_customer = "accept"
    endpoints = {"lemon": {"provider": "lemonsqueezy", "secret": "s" * 16, "customer_key": ["email"]}}
    with LedgerBridge(store_url, partnero, endpoints, signups={"token": "t" * 20}) as bridge:

        def check() -> dict[int, str]:
            return bridge.tx(_shown_statuses_match_the_operations)

        bridge.receive("lemon", order("1"))
        partnero.fail_next(1, status=500, method="POST", path="/v1/transactions")  # retried, then delivered
        bridge.receive("lemon", order("2"))
        bridge.receive("_signups", b'{"key": "acct-1", "email": "s@example.com"}', path="/signups")
        bridge.drain()
        assert sorted(check().values()) == ["delivered", "delivered", "skipped"]

        partnero.fail_next(1, status=422, body={"message": "The amount field is required."}, method="POST")
        bridge.receive("lemon", order("3"))
        bridge.drain()
        [dead] = [event_id for event_id, status in check().items() if status == "dead"]
        assert bridge.run(admin.replay_one(bridge.store, str(dead))).replayed  # what the console's button does
        assert check()[dead] == "pending"
        bridge.drain()
        assert check()[dead] == "delivered"

        bridge.receive("lemon", order("1"))  # the provider sends the sale again: a duplicate
        bridge.receive("lemon", order("1", "refunded"))
        bridge.receive("lemon", order("2", "refunded_partial", 1000))
        bridge.receive("lemon", order("4"))  # refunded before it was ever sent: the sale is superseded
        bridge.receive("lemon", order("4", "refunded"))
        bridge.run(bridge.worker.process_received())  # recorded, nothing delivered yet
        check()
        bridge.drain()
        statuses = check()
        assert {"delivered", "duplicate", "skipped"} <= set(statuses.values()) and "pending" not in statuses.values()

        assert bridge.tx(lambda tx: tx.purge_bodies(time.time() + 1)) > 0
        assert check() == statuses


def test_a_long_read_never_holds_up_a_webhooks_insert(engine: StoreFactory) -> None:
    """An operator's page or a metrics scrape over a large store reads for a while (0.8 s to count a
    million events for /metrics on SQLite before this): on SQLite that read went through the one writer,
    and every webhook's insert waited behind it. Reads now have connections of their own."""
    import threading

    gate = threading.Event()

    def long_read(tx: Transaction) -> int:
        gate.wait(timeout=10)
        return len(tx.received_calls(10))

    async def body(store: Store) -> tuple[bool, int]:
        await store.run(lambda tx: tx.insert_call("ep", "before", time.time(), "POST", "/", "", {}, b"{}"))
        reading = asyncio.create_task(store.read(long_read))
        await asyncio.sleep(0.1)  # the read has begun and waits on the gate
        insert = store.run(lambda tx: tx.insert_call("ep", "d1", time.time(), "POST", "/", "", {}, b"{}"), urgent=True)
        try:
            await asyncio.wait_for(insert, timeout=5)
            stored_while_reading = not gate.is_set()
        finally:
            gate.set()
        return stored_while_reading, await reading

    stored_while_reading, seen = run(_with_store(engine, body))
    assert stored_while_reading
    assert seen == 2  # the read's first statement came after the insert's commit, and saw it

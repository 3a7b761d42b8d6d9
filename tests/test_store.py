"""The store contract, run against every engine (SQLite now; PostgreSQL joins this parametrisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge.store.base import (
    Attempt,
    CallStatus,
    NewOperation,
    OpStatus,
    Payment,
    PaymentState,
    Store,
    Transaction,
)
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SQLiteStore, path_from_url
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


def test_a_dead_operation_holds_the_rest_of_its_payment(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        now = time.time()

        def setup(tx: Transaction) -> None:
            first = tx.insert_operation(_op("delete", "k"), now)
            tx.insert_operation(_op("create", "k", target="k:adj1"), now)
            tx.update_operation(first, now, status=OpStatus.DEAD)

        await store.run(setup)
        assert await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10)) == []
        dead = await store.run(lambda tx: tx.get_operation("p", "delete:k"))
        assert dead is not None
        await store.run(lambda tx: tx.update_operation(dead.id, now, status=OpStatus.DELIVERED))
        [op] = await store.run(lambda tx: tx.claim_operations("w", now + 1, now + 60, 10))
        assert (op.op_key, op.transaction_key, op.target_key) == ("create:k:adj1", "k", "k:adj1")

    run(_with_store(engine, body))


def test_payments_ledger_round_trip(engine: StoreFactory) -> None:
    async def body(store: Store) -> None:
        payment = Payment(
            "p",
            "k",
            "e",
            PaymentState.ACTIVE,
            "k:adj2",
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

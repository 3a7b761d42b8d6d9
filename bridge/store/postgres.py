"""The PostgreSQL engine: several bridge processes share one truth.

Each `run` takes a pooled connection in a worker thread and is one READ COMMITTED transaction. Claims
use `FOR UPDATE SKIP LOCKED` plus a lease, so processes never claim the same call or operation; a
process that dies mid-delivery loses its lease when it expires and another takes the operation over
through the look-up-before-resend path. Work on one payment or one customer is serialized across
processes by transaction-scoped advisory locks; inbound and outbound dedup are unique constraints.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from psycopg_pool import ConnectionPool

from bridge.store.base import Transaction
from bridge.store.migrations import (
    CUSTOMER_MEMORY,
    EVENT_STATUS_COUNTS,
    POSTGRES_EVENT_EMAIL,
    POSTGRES_KEY_TAIL,
    POSTGRES_SHOWN_STATUS,
    SEARCH_INDEXES,
    pending,
    record,
    statements,
)
from bridge.store.sql import POSTGRES, SQLTransaction
from bridge.store.waiters import Waiter, resolve

T = TypeVar("T")

V1_INITIAL = """
CREATE TABLE calls (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query_string TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA,
    status TEXT NOT NULL,
    error TEXT,
    processed_at DOUBLE PRECISION,
    not_before DOUBLE PRECISION,
    read_attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (endpoint, delivery_id)
);
CREATE INDEX calls_received ON calls (status, id);
CREATE TABLE operations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope TEXT NOT NULL,
    op_key TEXT NOT NULL,
    action TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    target_key TEXT NOT NULL,
    event_id BIGINT,
    customer_key TEXT,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (scope, op_key)
);
CREATE INDEX operations_due ON operations (status, next_attempt_at);
CREATE INDEX operations_tx ON operations (scope, transaction_key, id);
CREATE INDEX operations_event ON operations (event_id);
CREATE TABLE customers (
    scope TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    state TEXT NOT NULL,
    creator_op_key TEXT,
    email TEXT,
    partner_key TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, customer_key)
);
CREATE TABLE payments (
    scope TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    current_key TEXT,
    revision INTEGER NOT NULL,
    sale_request TEXT,
    refunded TEXT NOT NULL,
    refund_ids TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, transaction_key)
);
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id BIGINT NOT NULL REFERENCES calls (id),
    endpoint TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    event_type TEXT NOT NULL,
    transaction_key TEXT,
    data TEXT NOT NULL,
    customer_key TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    operation_id BIGINT REFERENCES operations (id),
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX events_call ON events (call_id);
CREATE TABLE attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation_id BIGINT NOT NULL REFERENCES operations (id),
    at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX attempts_op ON attempts (operation_id);
"""

V2_CALL_LEASES = """
ALTER TABLE calls ADD COLUMN lease_owner TEXT;
ALTER TABLE calls ADD COLUMN lease_until DOUBLE PRECISION;
CREATE INDEX customers_email ON customers (scope, lower(email));
"""

V3_CONSOLE = """
CREATE TABLE program_pauses (
    scope TEXT PRIMARY KEY,
    paused_at DOUBLE PRECISION NOT NULL
);
ALTER TABLE attempts ADD COLUMN latency_seconds DOUBLE PRECISION;
"""

# migration 4 (the customer memory) seeded with the emails of earlier sales and
# sign-ups (earliest use per email wins); events gain the warning an operator sees when one email met two keys
V4_CUSTOMER_MEMORY = (
    CUSTOMER_MEMORY
    + """
INSERT INTO customer_memory (scope, fact, value, customer_key, first_used_at, source, updated_at)
SELECT DISTINCT ON (scope, value) scope, 'email', value, customer_key, used_at, source, used_at FROM (
    SELECT o.scope AS scope, lower(trim(e.data::jsonb #>> '{customer,email}')) AS value,
           e.customer_key AS customer_key, e.created_at AS used_at, e.endpoint AS source
    FROM events e JOIN operations o ON o.event_id = e.id AND o.action = 'create'
    WHERE e.kind = 'sale' AND e.customer_key IS NOT NULL
    UNION ALL
    SELECT scope, lower(trim(email)), customer_key, updated_at, '_signups' FROM customers WHERE email IS NOT NULL
) AS seen WHERE value IS NOT NULL AND value <> '' ORDER BY scope, value, used_at
"""
)

V5_SEARCH_INDEXES = SEARCH_INDEXES.format(email=POSTGRES_EVENT_EMAIL, tail=POSTGRES_KEY_TAIL)

# forward only: a released migration is never edited, a change is a new entry
MIGRATIONS: tuple[str, ...] = (
    V1_INITIAL,
    V2_CALL_LEASES,
    V3_CONSOLE,
    V4_CUSTOMER_MEMORY,
    V5_SEARCH_INDEXES,
    POSTGRES_SHOWN_STATUS,
    EVENT_STATUS_COUNTS,
)
_MIGRATION_LOCK = 0x7062_6D69_6772  # advisory lock id: one migrating process at a time
# threads (and connections) kept for urgent work, a webhook's insert, beside the pool's others: with 2,
# ingest on PostgreSQL was 940 req/s under wrk, with 6 1,240 (each insert is its own transaction)
URGENT_THREADS = 4
# urgent work committed together at most: a group is one transaction instead of one per webhook
URGENT_GROUP = 64


class PostgresStore:
    single_process = False

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        # the urgent threads have connections of their own: at most `pool_size` are ever taken by the rest
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size + URGENT_THREADS, open=False, timeout=10)
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="postgres")
        self._urgent_threads = ThreadPoolExecutor(max_workers=URGENT_THREADS, thread_name_prefix="postgres-urgent")
        self._urgent: collections.deque[tuple[Callable[[Transaction], Any], Waiter]] = collections.deque()
        self._urgent_lock = threading.Lock()
        self._urgent_committers = 0

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url.replace("postgres://", "postgresql://", 1))

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, lambda: self._pool.open(wait=True, timeout=10))
        await loop.run_in_executor(self._threads, self.migrate)

    async def migrate_async(self) -> list[int]:
        """`partnero-bridge migrate`: open the pool and apply what is pending."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, lambda: self._pool.open(wait=True, timeout=10))
        return await loop.run_in_executor(self._threads, self.migrate)

    def migrate(self, migrations: Sequence[str] = MIGRATIONS) -> list[int]:
        applied: list[int] = []
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            for version, script in pending(conn, migrations):
                for statement in statements(script):
                    conn.execute(statement)
                record(conn, version, "%s")
                applied.append(version)
        return applied

    async def hold_exclusive(self) -> None:
        """Several processes share a PostgreSQL store: leases and row locks keep them apart."""

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._pool.close)
        self._threads.shutdown(wait=False)
        self._urgent_threads.shutdown(wait=False)

    async def ping(self) -> bool:
        try:
            return await self.run(lambda tx: tx.ping())
        except Exception:
            return False

    async def run(self, work: Callable[[Transaction], T], *, urgent: bool = False) -> T:
        loop = asyncio.get_running_loop()
        if not urgent:
            return await loop.run_in_executor(self._threads, self.run_sync, work)
        future: asyncio.Future[T] = loop.create_future()
        with self._urgent_lock:
            self._urgent.append((work, (loop, future)))
            start = self._urgent_committers < URGENT_THREADS
            if start:
                self._urgent_committers += 1
        if start:
            self._urgent_threads.submit(self._commit_urgent)
        return await future

    def _commit_urgent(self) -> None:
        """Commit urgent work in groups until none waits: under a burst each transaction carries what queued
        while the previous one committed — one BEGIN/COMMIT (and one wake of the loop) for many webhooks
        instead of one each, which was most of PostgreSQL's cost per webhook."""
        while True:
            with self._urgent_lock:
                if not self._urgent:
                    self._urgent_committers -= 1
                    return
                group = [self._urgent.popleft() for _ in range(min(len(self._urgent), URGENT_GROUP))]
            resolve(self._run_group(group))

    def _run_group(
        self, group: list[tuple[Callable[[Transaction], Any], Waiter]]
    ) -> list[tuple[Waiter, Any, BaseException | None]]:
        if len(group) > 1:
            try:
                with self._pool.connection() as conn, conn.transaction():
                    tx = SQLTransaction(conn, POSTGRES)
                    values = [work(tx) for work, _ in group]
            except Exception:
                # any failure aborts the whole transaction in PostgreSQL (a deadlock between two groups
                # inserting the same redelivered ids in another order, too): nothing of the group was
                # committed, so each piece runs again alone and only the piece at fault fails
                pass
            else:
                return [(waiter, value, None) for (_, waiter), value in zip(group, values, strict=True)]
        results: list[tuple[Waiter, Any, BaseException | None]] = []
        for work, waiter in group:
            try:
                results.append((waiter, self.run_sync(work), None))
            except Exception as exc:
                results.append((waiter, None, exc))
        return results

    async def read(self, work: Callable[[Transaction], T]) -> T:
        return await self.run(work)  # the pool's connections already read beside each other and the writers

    async def run_each(self, works: Sequence[Callable[[Transaction], T]]) -> list[T | Exception]:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._run_each_sync, works)

    def _run_each_sync(self, works: Sequence[Callable[[Transaction], T]]) -> list[T | Exception]:
        # one transaction each, not one for the round: the per-payment and per-customer advisory locks
        # last until commit, so a round holding many of them while another process's round takes the
        # same ones in another order deadlocked, and PostgreSQL failed one of the calls
        results: list[T | Exception] = []
        for work in works:
            try:
                results.append(self.run_sync(work))
            except Exception as exc:
                results.append(exc)
        return results

    def run_sync(self, work: Callable[[Transaction], T]) -> T:
        with self._pool.connection() as conn, conn.transaction():
            return work(SQLTransaction(conn, POSTGRES))

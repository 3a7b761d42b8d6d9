"""The embedded SQLite engine: one writer thread, WAL, `synchronous=FULL`, group commit.

Every `run` is queued to the writer thread, which takes everything queued so far into one
`BEGIN IMMEDIATE … COMMIT` (each piece of work in its own savepoint, so one failure does not undo its
neighbours) and resolves all of them after the single fsync'd commit. Durability then costs one fsync
per batch, not per request. Exactly one process may write a SQLite store: several processes need the
PostgreSQL engine.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from bridge.store.base import (
    Attempt,
    CallStatus,
    Customer,
    CustomerState,
    EventFilter,
    EventView,
    NewEvent,
    NewOperation,
    Operation,
    OpStatus,
    Payment,
    PaymentState,
    StoredCall,
    Transaction,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query_string TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB,
    status TEXT NOT NULL,
    error TEXT,
    processed_at REAL,
    not_before REAL,
    read_attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (endpoint, delivery_id)
);
CREATE INDEX IF NOT EXISTS calls_received ON calls (status, id);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    op_key TEXT NOT NULL,
    action TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    target_key TEXT NOT NULL,
    event_id INTEGER,
    customer_key TEXT,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (scope, op_key)
);
CREATE INDEX IF NOT EXISTS operations_due ON operations (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS operations_tx ON operations (scope, transaction_key, id);
CREATE INDEX IF NOT EXISTS operations_event ON operations (event_id);
CREATE TABLE IF NOT EXISTS customers (
    scope TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    state TEXT NOT NULL,
    creator_op_key TEXT,
    email TEXT,
    partner_key TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, customer_key)
);
CREATE INDEX IF NOT EXISTS customers_email ON customers (scope, email COLLATE NOCASE, updated_at);
CREATE TABLE IF NOT EXISTS payments (
    scope TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    current_key TEXT,
    revision INTEGER NOT NULL,
    sale_request TEXT,
    refunded TEXT NOT NULL,
    refund_ids TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, transaction_key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls (id),
    endpoint TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    event_type TEXT NOT NULL,
    transaction_key TEXT,
    data TEXT NOT NULL,
    customer_key TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    operation_id INTEGER REFERENCES operations (id),
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations (id),
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_op ON attempts (operation_id);
"""


def path_from_url(url: str) -> str:
    """`sqlite:///./data/bridge.db` → `./data/bridge.db`; `sqlite:////abs/path.db` → `/abs/path.db`."""
    rest = url.removeprefix("sqlite://")
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[tuple[Callable[[Transaction], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(path_from_url(url))

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._writer, name="sqlite-writer", daemon=True)
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self._opened.wait)
        if self._open_error is not None:
            raise self._open_error

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    async def ping(self) -> bool:
        try:
            return await self.run(lambda tx: tx.ping())
        except Exception:
            return False

    async def run(self, work: Callable[[Transaction], T]) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("store is not open")
        future: Future[T] = Future()
        self._queue.put((work, future))
        return await asyncio.wrap_future(future)

    def run_sync(self, work: Callable[[Transaction], T]) -> T:
        """For CLI commands outside an event loop."""
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future.result()

    def _writer(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # builds differ in their default: durability is the product, say it explicitly
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
        except BaseException as exc:
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        tx = _SQLiteTransaction(conn)
        stop = False
        while not stop:
            first = self._queue.get()
            batch = []
            if first is None:
                break
            batch.append(first)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(conn, tx, batch)
        conn.close()

    @staticmethod
    def _run_batch(
        conn: sqlite3.Connection,
        tx: _SQLiteTransaction,
        batch: list[tuple[Callable[[Transaction], Any], Future[Any]]],
    ) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work, future in batch:
                conn.execute("SAVEPOINT work")
                try:
                    value = work(tx)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO work")
                    conn.execute("RELEASE work")
                    results.append((future, None, exc))
                else:
                    conn.execute("RELEASE work")
                    results.append((future, value, None))
            conn.execute("COMMIT")
        except BaseException as exc:
            # the commit itself failed: nothing in this batch is durable, so nobody may be told it is
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value, error in results:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)


def _call(row: sqlite3.Row | tuple[Any, ...]) -> StoredCall:
    (id_, endpoint, delivery_id, received_at, method, path, qs, headers, body, status, error, reads) = row
    return StoredCall(
        id_,
        endpoint,
        delivery_id,
        received_at,
        method,
        path,
        qs,
        json.loads(headers),
        bytes(body) if body is not None else b"",
        CallStatus(status),
        error,
        reads,
    )


_CALL_COLUMNS = (
    "id, endpoint, delivery_id, received_at, method, path, query_string, headers, body, status, error, read_attempts"
)
_OP_COLUMNS = (
    "id, scope, op_key, action, transaction_key, target_key, event_id, customer_key, endpoint, request, status,"
    " reason, attempts, next_attempt_at, maybe_sent, created_at, updated_at"
)
_OP_UPDATABLE = {
    "status",
    "reason",
    "attempts",
    "next_attempt_at",
    "maybe_sent",
    "lease_owner",
    "lease_until",
}


def _operation(row: tuple[Any, ...]) -> Operation:
    (id_, scope, op_key, action, tx_key, target, event_id, customer, endpoint, request, status, reason, *rest) = row
    attempts, nxt, maybe, created, updated = rest
    return Operation(
        id_,
        scope,
        op_key,
        action,
        tx_key,
        target,
        event_id,
        customer,
        endpoint,
        json.loads(request),
        OpStatus(status),
        reason,
        attempts,
        nxt,
        bool(maybe),
        created,
        updated,
    )


class _SQLiteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def ping(self) -> bool:
        return bool(self.conn.execute("SELECT 1").fetchone() == (1,))

    def insert_call(
        self,
        endpoint: str,
        delivery_id: str,
        received_at: float,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, bool]:
        cur = self.conn.execute(
            "INSERT INTO calls (endpoint, delivery_id, received_at, method, path, query_string, headers, body,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, delivery_id) DO NOTHING",
            (
                endpoint,
                delivery_id,
                received_at,
                method,
                path,
                query_string,
                json.dumps(headers),
                body,
                CallStatus.RECEIVED.value,
            ),
        )
        if cur.rowcount == 1:
            return int(cur.lastrowid or 0), True
        row = self.conn.execute(
            "SELECT id FROM calls WHERE endpoint = ? AND delivery_id = ?", (endpoint, delivery_id)
        ).fetchone()
        return int(row[0]), False

    def received_calls(self, limit: int, now: float | None = None) -> list[StoredCall]:
        rows = self.conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE status = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY id LIMIT ?",
            (CallStatus.RECEIVED.value, now if now is not None else float("inf"), limit),
        ).fetchall()
        return [_call(r) for r in rows]

    def defer_call(self, call_id: int, until: float, error: str) -> int:
        self.conn.execute(
            "UPDATE calls SET not_before = ?, error = ?, read_attempts = read_attempts + 1 WHERE id = ?",
            (until, error, call_id),
        )
        row = self.conn.execute("SELECT read_attempts FROM calls WHERE id = ?", (call_id,)).fetchone()
        return int(row[0])

    def get_call(self, call_id: int) -> StoredCall | None:
        row = self.conn.execute(f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ?", (call_id,)).fetchone()
        return _call(row) if row else None

    def finish_call(self, call_id: int, status: CallStatus, error: str | None, at: float) -> None:
        self.conn.execute(
            "UPDATE calls SET status = ?, error = ?, processed_at = ? WHERE id = ?",
            (status.value, error, at, call_id),
        )

    def insert_event(self, event: NewEvent, at: float) -> int:
        cur = self.conn.execute(
            "INSERT INTO events (call_id, endpoint, seq, kind, event_type, transaction_key, data, customer_key,"
            " status, reason, operation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.call_id,
                event.endpoint,
                event.seq,
                event.kind,
                event.event_type,
                event.transaction_key,
                json.dumps(event.data),
                event.customer_key,
                event.status.value,
                event.reason,
                event.operation_id,
                at,
            ),
        )
        return int(cur.lastrowid or 0)

    def get_operation(self, scope: str, op_key: str) -> Operation | None:
        row = self.conn.execute(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE scope = ? AND op_key = ?", (scope, op_key)
        ).fetchone()
        return _operation(row) if row else None

    def get_operation_by_id(self, operation_id: int) -> Operation | None:
        row = self.conn.execute(f"SELECT {_OP_COLUMNS} FROM operations WHERE id = ?", (operation_id,)).fetchone()
        return _operation(row) if row else None

    def insert_operation(self, op: NewOperation, at: float) -> int:
        cur = self.conn.execute(
            "INSERT INTO operations (scope, op_key, action, transaction_key, target_key, event_id, customer_key,"
            " endpoint, request, status, reason, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                op.scope,
                op.op_key,
                op.action,
                op.transaction_key,
                op.target_key,
                op.event_id,
                op.customer_key,
                op.endpoint,
                json.dumps(op.request),
                op.status.value,
                op.reason,
                at,
                at,
                at,
            ),
        )
        return int(cur.lastrowid or 0)

    def get_customer(self, scope: str, customer_key: str) -> Customer | None:
        row = self.conn.execute(
            "SELECT scope, customer_key, state, creator_op_key, email, partner_key FROM customers"
            " WHERE scope = ? AND customer_key = ?",
            (scope, customer_key),
        ).fetchone()
        if row is None:
            return None
        return Customer(row[0], row[1], CustomerState(row[2]), row[3], row[4], row[5])

    def put_customer(self, customer: Customer, at: float) -> None:
        self.conn.execute(
            "INSERT INTO customers (scope, customer_key, state, creator_op_key, email, partner_key, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, customer_key) DO UPDATE SET state = excluded.state,"
            " creator_op_key = excluded.creator_op_key, email = excluded.email,"
            " partner_key = excluded.partner_key, updated_at = excluded.updated_at",
            (
                customer.scope,
                customer.customer_key,
                customer.state.value,
                customer.creator_op_key,
                customer.email,
                customer.partner_key,
                at,
            ),
        )

    def customer_key_by_email(self, scope: str, email: str) -> str | None:
        row = self.conn.execute(
            "SELECT customer_key FROM customers WHERE scope = ? AND email = ? COLLATE NOCASE"
            " ORDER BY updated_at DESC LIMIT 1",
            (scope, email.strip()),
        ).fetchone()
        return None if row is None else str(row[0])

    def get_payment(self, scope: str, transaction_key: str) -> Payment | None:
        row = self.conn.execute(
            "SELECT scope, transaction_key, endpoint, state, current_key, revision, sale_request, refunded, refund_ids"
            " FROM payments WHERE scope = ? AND transaction_key = ?",
            (scope, transaction_key),
        ).fetchone()
        if row is None:
            return None
        scope_, key, endpoint, state, current, revision, sale_request, refunded, refund_ids = row
        return Payment(
            scope_,
            key,
            endpoint,
            PaymentState(state),
            current,
            revision,
            json.loads(sale_request) if sale_request else None,
            Decimal(refunded),
            tuple(json.loads(refund_ids)),
        )

    def put_payment(self, payment: Payment, at: float) -> None:
        self.conn.execute(
            "INSERT INTO payments (scope, transaction_key, endpoint, state, current_key, revision, sale_request,"
            " refunded, refund_ids, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, transaction_key) DO UPDATE SET endpoint = excluded.endpoint,"
            " state = excluded.state, current_key = excluded.current_key, revision = excluded.revision,"
            " sale_request = excluded.sale_request, refunded = excluded.refunded, refund_ids = excluded.refund_ids,"
            " updated_at = excluded.updated_at",
            (
                payment.scope,
                payment.transaction_key,
                payment.endpoint,
                payment.state.value,
                payment.current_key,
                payment.revision,
                json.dumps(payment.sale_request) if payment.sale_request is not None else None,
                str(payment.refunded),
                json.dumps(list(payment.refund_ids)),
                at,
            ),
        )

    def update_operation(self, operation_id: int, at: float, **fields: Any) -> None:
        unknown = set(fields) - _OP_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = [v.value if isinstance(v, OpStatus) else v for v in fields.values()]
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.conn.execute(
            f"UPDATE operations SET {assignments}, updated_at = ? WHERE id = ?", (*values, at, operation_id)
        )

    def claim_operations(
        self,
        owner: str,
        now: float,
        lease_until: float,
        limit: int,
        exclude_scopes: Sequence[str] = (),
        customer_wait_seconds: float = 0.0,
    ) -> list[Operation]:
        placeholders = ", ".join(f":x{i}" for i in range(len(exclude_scopes)))
        excluded = f"AND o.scope NOT IN ({placeholders})" if exclude_scopes else ""
        params: dict[str, object] = {"now": now, "limit": limit, "waited": now - customer_wait_seconds}
        params.update({f"x{i}": scope for i, scope in enumerate(exclude_scopes)})
        rows = self.conn.execute(
            f"""
            SELECT {_OP_COLUMNS} FROM operations o
            WHERE o.status = 'pending' AND o.next_attempt_at <= :now {excluded}
              AND (o.lease_until IS NULL OR o.lease_until < :now)
              AND NOT EXISTS (
                SELECT 1 FROM operations p
                WHERE p.scope = o.scope AND p.transaction_key = o.transaction_key AND p.id < o.id
                  AND p.status IN ('pending', 'dead'))
              AND NOT EXISTS (
                SELECT 1 FROM customers c
                WHERE c.scope = o.scope AND c.customer_key = o.customer_key AND c.state = 'pending'
                  AND c.creator_op_key <> o.op_key AND o.created_at > :waited)
            ORDER BY o.next_attempt_at, o.id
            LIMIT :limit
            """,
            params,
        ).fetchall()
        claimed = [_operation(row) for row in rows]
        self.conn.executemany(
            "UPDATE operations SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, maybe_sent = 1"
            " WHERE id = ?",
            [(owner, lease_until, op.id) for op in claimed],
        )
        return claimed

    def release_leases(self, owner: str | None) -> int:
        if owner is None:
            cur = self.conn.execute(
                "UPDATE operations SET lease_owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL"
            )
        else:
            cur = self.conn.execute(
                "UPDATE operations SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
            )
        return cur.rowcount

    def next_due_at(self) -> float | None:
        row = self.conn.execute(
            "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM operations WHERE status = 'pending'"
            " UNION ALL SELECT MIN(COALESCE(not_before, received_at)) FROM calls WHERE status = 'received')"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def add_attempt(self, attempt: Attempt) -> None:
        self.conn.execute(
            "INSERT INTO attempts (operation_id, at, outcome, status_code, detail) VALUES (?, ?, ?, ?, ?)",
            (attempt.operation_id, attempt.at, attempt.outcome, attempt.status_code, attempt.detail),
        )

    def attempts_of(self, operation_id: int) -> list[Attempt]:
        rows = self.conn.execute(
            "SELECT operation_id, at, outcome, status_code, detail FROM attempts WHERE operation_id = ? ORDER BY id",
            (operation_id,),
        ).fetchall()
        return [Attempt(*r) for r in rows]

    def list_events(self, flt: EventFilter) -> list[EventView]:
        where: list[str] = []
        params: list[object] = []
        if flt.status:
            where.append("status = ?")
            params.append(flt.status)
        if flt.endpoint:
            where.append("endpoint = ?")
            params.append(flt.endpoint)
        if flt.since is not None:
            where.append("created_at >= ?")
            params.append(flt.since)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self.conn.execute(
            f"""SELECT * FROM ({_EVENT_VIEW}) {clause} ORDER BY id DESC LIMIT ?""", (*params, flt.limit)
        ).fetchall()
        return [EventView(*r) for r in rows]

    def get_event(self, event_id: int) -> tuple[EventView, dict[str, Any]] | None:
        row = self.conn.execute(f"SELECT * FROM ({_EVENT_VIEW}) WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        data = self.conn.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()[0]
        return EventView(*row), json.loads(data)

    def operations_of_event(self, event_id: int) -> list[Operation]:
        rows = self.conn.execute(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE event_id = ? ORDER BY id", (event_id,)
        ).fetchall()
        return [_operation(r) for r in rows]

    def failed_calls(self, flt: EventFilter) -> list[StoredCall]:
        where: list[str] = ["status = 'failed'"]
        params: list[object] = []
        if flt.endpoint:
            where.append("endpoint = ?")
            params.append(flt.endpoint)
        if flt.since is not None:
            where.append("received_at >= ?")
            params.append(flt.since)
        rows = self.conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, flt.limit),
        ).fetchall()
        return [_call(r) for r in rows]

    def replay_operation(self, operation_id: int, now: float) -> bool:
        cur = self.conn.execute(
            "UPDATE operations SET status = 'pending', attempts = 0, next_attempt_at = ?, reason = 'replayed',"
            " lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'dead'",
            (now, now, operation_id),
        )
        return cur.rowcount == 1

    def replay_call(self, call_id: int) -> bool:
        cur = self.conn.execute(
            "UPDATE calls SET status = 'received', error = NULL, not_before = NULL, read_attempts = 0"
            " WHERE id = ? AND status = 'failed' AND body IS NOT NULL",
            (call_id,),
        )
        return cur.rowcount == 1

    def purge_bodies(self, before: float) -> int:
        cur = self.conn.execute(
            """UPDATE calls SET body = NULL, headers = '{}', query_string = ''
               WHERE received_at < ? AND status = 'processed' AND body IS NOT NULL
                 AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN operations o ON o.event_id = e.id
                   WHERE e.call_id = calls.id AND o.status IN ('pending', 'dead'))""",
            (before,),
        )
        return cur.rowcount


# An event that became operations shows theirs: dead wins, then pending, then delivered, else skipped.
_EVENT_VIEW = """
SELECT e.id, e.call_id, e.endpoint, e.kind, e.event_type, e.transaction_key, e.customer_key,
       CASE WHEN e.status <> 'queued' THEN e.status ELSE (
            SELECT CASE WHEN SUM(o.status = 'dead') > 0 THEN 'dead'
                        WHEN SUM(o.status = 'pending') > 0 THEN 'pending'
                        WHEN SUM(o.status = 'delivered') > 0 THEN 'delivered'
                        ELSE 'skipped' END
            FROM operations o WHERE o.event_id = e.id) END AS status,
       CASE WHEN e.status <> 'queued' THEN e.reason ELSE (
            SELECT o.reason FROM operations o WHERE o.event_id = e.id ORDER BY o.id DESC LIMIT 1) END AS reason,
       e.operation_id, e.created_at
FROM events e
"""

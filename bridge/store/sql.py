"""The store primitives in SQL shared by the SQLite and PostgreSQL engines.

Queries are written once with `?` and `:name` placeholders; `Dialect.convert` rewrites them for
psycopg. Where the engines differ in meaning — row locks for claims, locks that serialize the work on
one payment or customer across processes — the dialect says what to add.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bridge.store.base import (
    Attempt,
    CallStatus,
    Customer,
    CustomerState,
    DayRow,
    EventFilter,
    EventStatus,
    EventView,
    NewEvent,
    NewOperation,
    Operation,
    OpStatus,
    Payment,
    PaymentState,
    QueueStats,
    Remembered,
    StoredCall,
    UnstorableText,
    storable,
)
from bridge.store.migrations import POSTGRES_EVENT_EMAIL, POSTGRES_KEY_TAIL, SQLITE_EVENT_EMAIL, SQLITE_KEY_TAIL


@dataclass(frozen=True)
class Dialect:
    name: str
    # appended to claim queries: row locks so concurrent claimers skip each other's rows
    claim_lock: str = ""
    # SQL taking one text parameter that serializes transactions on that key until commit (None: the
    # engine has a single writer, nothing to serialize)
    key_lock: str | None = None
    convert: Callable[[str], str] = field(default=lambda sql: sql)
    # SQL of one text field inside a JSON text column: (column, path) → expression
    json_text: Callable[[str, tuple[str, ...]], str] = field(
        default=lambda column, path: f"json_extract({column}, '$.{'.'.join(path)}')"
    )
    # indexed expressions of `events` (migration 5), written exactly as indexed so the engine uses the index
    event_email: str = SQLITE_EVENT_EMAIL
    key_tail: str = SQLITE_KEY_TAIL
    # the UTC day (days since 1970) of an event's `created_at`, as Python's `created_at // 86400` counts it
    # (PostgreSQL's cast rounds: floor first)
    event_day: str = "CAST(e.created_at AS INTEGER) / 86400"
    # after `FROM events`, for counts over a recent window: read the window by its creation-time index.
    # Without statistics SQLite would rather scan the (kind, shown_status) index for the GROUP BY
    # (migration 7), every event of the store; PostgreSQL's planner weighs the window from its statistics
    recent_events: str = "INDEXED BY events_created"


@lru_cache(maxsize=512)
def _psycopg_params(sql: str) -> str:
    # no query here contains a literal ?, % or :: cast, so the rewrite is purely mechanical
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", sql).replace("?", "%s")


SQLITE = Dialect("sqlite")
POSTGRES = Dialect(
    "postgresql",
    claim_lock="FOR UPDATE SKIP LOCKED",
    key_lock="SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
    convert=_psycopg_params,
    json_text=lambda column, path: f"({column}::json #>> '{{{','.join(path)}}}')",
    event_email=POSTGRES_EVENT_EMAIL,
    key_tail=POSTGRES_KEY_TAIL,
    event_day="CAST(floor(e.created_at) AS BIGINT) / 86400",
    recent_events="",
)


def _call(row: Sequence[Any]) -> StoredCall:
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


def _amounts(stored: Any) -> dict[str, Any]:
    # the column held a list of refund ids before the ledger kept the reported figures
    return {"ids": stored} if isinstance(stored, list) else dict(stored)


def _operation(row: Sequence[Any]) -> Operation:
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


class SQLTransaction:
    """Every store primitive as SQL both engines understand; the dialect supplies the few differences."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def _x(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        values = params.values() if isinstance(params, Mapping) else params
        if not all(storable(v) for v in values if isinstance(v, str)):
            raise UnstorableText()
        return self.conn.execute(self.dialect.convert(sql), params)

    def ping(self) -> bool:
        return bool(self._x("SELECT 1").fetchone() == (1,))

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
        cur = self._x(
            "INSERT INTO calls (endpoint, delivery_id, received_at, method, path, query_string, headers, body,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, delivery_id) DO NOTHING RETURNING id",
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
        inserted = cur.fetchone()
        if inserted is not None:
            return int(inserted[0]), True
        row = self._x("SELECT id FROM calls WHERE endpoint = ? AND delivery_id = ?", (endpoint, delivery_id)).fetchone()
        return int(row[0]), False

    def received_calls(self, limit: int, now: float | None = None) -> list[StoredCall]:
        rows = self._x(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE status = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY id LIMIT ?",
            (CallStatus.RECEIVED.value, now if now is not None else float("inf"), limit),  # unix seconds
        ).fetchall()
        return [_call(r) for r in rows]

    def claim_calls(self, owner: str, now: float, lease_until: float, limit: int) -> list[StoredCall]:
        rows = self._x(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE status = ? AND (not_before IS NULL OR not_before <= ?)"
            f" AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ? {self.dialect.claim_lock}",
            (CallStatus.RECEIVED.value, now, now, limit),
        ).fetchall()
        calls = [_call(r) for r in rows]
        if calls:
            # one statement for the whole claim, as `claim_operations` does (a round trip each on PostgreSQL)
            ids = ", ".join("?" * len(calls))
            self._x(
                f"UPDATE calls SET lease_owner = ?, lease_until = ? WHERE id IN ({ids})",
                (owner, lease_until, *(call.id for call in calls)),
            )
        return calls

    def defer_call(self, call_id: int, until: float, error: str) -> int:
        self._x(
            "UPDATE calls SET not_before = ?, error = ?, read_attempts = read_attempts + 1, lease_owner = NULL,"
            " lease_until = NULL WHERE id = ?",
            (until, error, call_id),
        )
        row = self._x("SELECT read_attempts FROM calls WHERE id = ?", (call_id,)).fetchone()
        return int(row[0])

    def get_call(self, call_id: int) -> StoredCall | None:
        row = self._x(f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ?", (call_id,)).fetchone()
        return _call(row) if row else None

    def finish_call(self, call_id: int, status: CallStatus, error: str | None, at: float) -> None:
        self._x(
            "UPDATE calls SET status = ?, error = ?, processed_at = ?, lease_owner = NULL, lease_until = NULL"
            " WHERE id = ?",
            (status.value, error, at, call_id),
        )

    def insert_event(self, event: NewEvent, at: float) -> int:
        # a queued event shows its operations' status, and has none yet: skipped, until migration 6's
        # triggers follow the first operation inserted for it
        shown = OpStatus.SKIPPED.value if event.status is EventStatus.QUEUED else event.status.value
        cur = self._x(
            "INSERT INTO events (call_id, endpoint, seq, kind, event_type, transaction_key, data, customer_key,"
            " status, reason, operation_id, created_at, warning, shown_status, amount, currency)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
                event.warning,
                shown,
                _data_text(event.data.get("amount")),
                _data_text(event.data.get("currency")),
            ),
        )
        return int(cur.fetchone()[0])

    def get_operation(self, scope: str, op_key: str) -> Operation | None:
        row = self._x(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE scope = ? AND op_key = ?", (scope, op_key)
        ).fetchone()
        return _operation(row) if row else None

    def get_operation_by_id(self, operation_id: int) -> Operation | None:
        row = self._x(f"SELECT {_OP_COLUMNS} FROM operations WHERE id = ?", (operation_id,)).fetchone()
        return _operation(row) if row else None

    def insert_operation(self, op: NewOperation, at: float) -> int:
        cur = self._x(
            "INSERT INTO operations (scope, op_key, action, transaction_key, target_key, event_id, customer_key,"
            " endpoint, request, status, reason, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        return int(cur.fetchone()[0])

    def lock(self, *parts: str) -> None:
        """Serialize, until commit, every transaction that works on this payment or customer."""
        if self.dialect.key_lock is not None:
            self._x(self.dialect.key_lock, ("\x1f".join(parts),))

    def get_customer(self, scope: str, customer_key: str) -> Customer | None:
        self.lock("customer", scope, customer_key)
        row = self._x(
            "SELECT scope, customer_key, state, creator_op_key, email, partner_key FROM customers"
            " WHERE scope = ? AND customer_key = ?",
            (scope, customer_key),
        ).fetchone()
        if row is None:
            return None
        return Customer(row[0], row[1], CustomerState(row[2]), row[3], row[4], row[5])

    def put_customer(self, customer: Customer, at: float) -> None:
        self._x(
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
        row = self._x(
            "SELECT customer_key FROM customers WHERE scope = ? AND lower(email) = lower(?)"
            " ORDER BY updated_at DESC LIMIT 1",
            (scope, email.strip()),
        ).fetchone()
        return None if row is None else str(row[0])

    def recall(self, scope: str, fact: str, value: str) -> Remembered | None:
        self.lock("memory", scope, fact, value)
        row = self._x(
            "SELECT scope, fact, value, customer_key, first_used_at, source FROM customer_memory"
            " WHERE scope = ? AND fact = ? AND value = ?",
            (scope, fact, value),
        ).fetchone()
        return None if row is None else Remembered(*row)

    def remember(self, entry: Remembered, at: float) -> None:
        self._x(
            "INSERT INTO customer_memory (scope, fact, value, customer_key, first_used_at, source, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, fact, value) DO UPDATE SET"
            " customer_key = excluded.customer_key, first_used_at = excluded.first_used_at,"
            " source = excluded.source, updated_at = excluded.updated_at",
            (entry.scope, entry.fact, entry.value, entry.customer_key, entry.first_used_at, entry.source, at),
        )

    def get_payment(self, scope: str, transaction_key: str) -> Payment | None:
        self.lock("payment", scope, transaction_key)
        row = self._x(
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
            _amounts(json.loads(refund_ids)),
        )

    def put_payment(self, payment: Payment, at: float) -> None:
        self._x(
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
                json.dumps(payment.amounts),
                at,
            ),
        )

    def update_operation(self, operation_id: int, at: float, **fields: Any) -> None:
        unknown = set(fields) - _OP_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = [v.value if isinstance(v, OpStatus) else v for v in fields.values()]
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._x(f"UPDATE operations SET {assignments}, updated_at = ? WHERE id = ?", (*values, at, operation_id))

    def cancel_unsent_operation(self, operation_id: int, at: float, reason: str) -> bool:
        # PostgreSQL re-checks this WHERE against a row a concurrent claim has just committed
        cur = self._x(
            "UPDATE operations SET status = 'skipped', reason = ?, updated_at = ? WHERE id = ? AND status = 'pending'"
            " AND attempts = 0 AND maybe_sent = 0 AND lease_until IS NULL",
            (reason, at, operation_id),
        )
        return bool(cur.rowcount == 1)

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
        rows = self._x(
            f"""
            SELECT {_OP_COLUMNS} FROM operations o
            WHERE o.status = 'pending' AND o.next_attempt_at <= :now {excluded}
              AND (o.lease_until IS NULL OR o.lease_until < :now)
              AND o.scope NOT IN (SELECT scope FROM program_pauses)
              AND NOT EXISTS (
                SELECT 1 FROM operations p
                WHERE p.scope = o.scope AND p.transaction_key = o.transaction_key AND p.id < o.id
                  AND p.status IN ('pending', 'dead'))
              AND NOT EXISTS (
                SELECT 1 FROM customers c
                WHERE c.scope = o.scope AND c.customer_key = o.customer_key AND c.state = 'pending'
                  AND c.creator_op_key <> o.op_key AND o.created_at > :waited)
            ORDER BY o.next_attempt_at, o.id
            LIMIT :limit {self.dialect.claim_lock}
            """,
            params,
        ).fetchall()
        claimed = [_operation(row) for row in rows]
        if claimed:
            # one statement for the whole claim, not one per operation (a round trip each on PostgreSQL);
            # the rows are this transaction's (SQLite's one writer, PostgreSQL's row locks above)
            ids = ", ".join("?" * len(claimed))
            self._x(
                "UPDATE operations SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, maybe_sent = 1"
                f" WHERE id IN ({ids})",
                (owner, lease_until, *(op.id for op in claimed)),
            )
        return claimed

    def renew_operation_lease(self, operation_id: int, owner: str, now: float, until: float) -> bool:
        # PostgreSQL re-checks this WHERE against a row another process's claim has just committed
        cur = self._x(
            "UPDATE operations SET lease_until = ? WHERE id = ? AND status = 'pending' AND lease_owner = ?"
            " AND lease_until >= ?",
            (until, operation_id, owner, now),
        )
        return bool(cur.rowcount == 1)

    def release_leases(self, owner: str | None) -> int:
        released = 0
        for table in ("operations", "calls"):
            if owner is None:
                cur = self._x(
                    f"UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL"
                )
            else:
                cur = self._x(
                    f"UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
                )
            released += cur.rowcount
        return released

    def release_call_leases(self, call_ids: Sequence[int]) -> int:
        released = 0
        for call_id in call_ids:
            cur = self._x("UPDATE calls SET lease_owner = NULL, lease_until = NULL WHERE id = ?", (call_id,))
            released += cur.rowcount
        return released

    def next_due_at(self) -> float | None:
        row = self._x(
            "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM operations WHERE status = 'pending'"
            " UNION ALL SELECT MIN(COALESCE(not_before, received_at)) FROM calls WHERE status = 'received') AS due"
        ).fetchone()
        return None if row[0] is None else float(row[0])  # unix seconds

    def add_attempt(self, attempt: Attempt) -> None:
        self._x(
            "INSERT INTO attempts (operation_id, at, outcome, status_code, detail, latency_seconds)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                attempt.operation_id,
                attempt.at,
                attempt.outcome,
                attempt.status_code,
                attempt.detail,
                attempt.latency_seconds,
            ),
        )

    def attempts_of(self, operation_id: int) -> list[Attempt]:
        rows = self._x(
            "SELECT operation_id, at, outcome, status_code, detail, latency_seconds FROM attempts"
            " WHERE operation_id = ? ORDER BY id",
            (operation_id,),
        ).fetchall()
        return [Attempt(*r) for r in rows]

    def list_events(self, flt: EventFilter) -> list[EventView]:
        where: list[str] = []
        params: list[object] = []
        # `status` is the stored status the operator sees (migration 6): any status, however few events
        # have it, is a look-up in its index, newest first
        for column, value in (("status", flt.status), ("endpoint", flt.endpoint), ("kind", flt.kind)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.since is not None:
            where.append("created_at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            where.append("created_at < ?")
            params.append(flt.until)
        if flt.q:
            # each way of matching is its own indexed look-up (migration 5): an OR across the view's columns
            # read every event. A provider payment id is the key's last part: the indexed tail narrows,
            # the LIKE keeps the exact meaning (the key ends with `:q`) when q itself holds a colon.
            where.append(
                "id IN (SELECT id FROM events WHERE transaction_key = ?"
                " UNION ALL SELECT id FROM events WHERE customer_key = ?"
                f" UNION ALL SELECT id FROM events WHERE {self.dialect.key_tail} = ?"
                " AND transaction_key LIKE ? ESCAPE '!'"
                f" UNION ALL SELECT id FROM events WHERE {self.dialect.event_email} = lower(?)"
                " UNION ALL SELECT e.id FROM calls c JOIN events e ON e.call_id = c.id WHERE c.delivery_id = ?)"
            )
            params += [flt.q, flt.q, flt.q.rsplit(":", 1)[-1], "%:" + _like_literal(flt.q), flt.q, flt.q]
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self._x(
            f"SELECT * FROM ({self._event_view()}) AS v {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, flt.limit, flt.offset),
        ).fetchall()
        return [EventView(*r) for r in rows]

    def _event_view(self) -> str:
        email = self.dialect.json_text("e.data", ("customer", "email"))
        signup_email = self.dialect.json_text("e.data", ("email",))
        attributed = self.dialect.json_text("e.data", ("attribution", "rule"))
        return _EVENT_VIEW.replace("{email}", f"COALESCE({email}, {signup_email})").replace("{attributed}", attributed)

    def get_event(self, event_id: int) -> tuple[EventView, dict[str, Any]] | None:
        row = self._x(f"SELECT * FROM ({self._event_view()}) AS v WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        data = self._x("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()[0]
        return EventView(*row), json.loads(data)

    def operations_of_event(self, event_id: int) -> list[Operation]:
        rows = self._x(f"SELECT {_OP_COLUMNS} FROM operations WHERE event_id = ? ORDER BY id", (event_id,)).fetchall()
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
        if flt.until is not None:
            where.append("received_at < ?")
            params.append(flt.until)
        if flt.q:
            where.append("delivery_id = ?")
            params.append(flt.q)
        rows = self._x(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, flt.limit, flt.offset),
        ).fetchall()
        return [_call(r) for r in rows]

    def set_program_paused(self, scope: str, paused: bool, at: float) -> bool:
        if paused:
            cur = self._x(
                "INSERT INTO program_pauses (scope, paused_at) VALUES (?, ?) ON CONFLICT (scope) DO NOTHING",
                (scope, at),
            )
        else:
            cur = self._x("DELETE FROM program_pauses WHERE scope = ?", (scope,))
        return bool(cur.rowcount == 1)

    def paused_programs(self) -> dict[str, float]:
        rows = self._x("SELECT scope, paused_at FROM program_pauses ORDER BY scope").fetchall()
        return {str(scope): float(at) for scope, at in rows}  # unix seconds

    def status_counts(self, since: float | None) -> dict[tuple[str, str], int]:
        floor = since if since is not None else float("-inf")  # unix seconds
        if since is None:  # all of them (a metrics scrape): from the (kind, shown_status) index alone
            rows = self._x("SELECT kind, shown_status, COUNT(*) FROM events GROUP BY kind, shown_status").fetchall()
        else:
            rows = self._x(
                f"SELECT kind, shown_status, COUNT(*) FROM events {self.dialect.recent_events}"
                " WHERE created_at >= ? GROUP BY kind, shown_status",
                (floor,),
            ).fetchall()
        counts = {(str(kind), str(status)): int(n) for kind, status, n in rows}
        failed = self._x("SELECT COUNT(*) FROM calls WHERE status = 'failed' AND received_at >= ?", (floor,))
        unparsed = int(failed.fetchone()[0])
        if unparsed:
            counts["unparsed", "failed"] = unparsed
        return counts

    def queue_stats(self) -> QueueStats:
        # each figure from the status indexes: sums over every row read the whole table at millions of rows
        pending, oldest_op = self._x(
            "SELECT COUNT(*), MIN(created_at) FROM operations WHERE status = 'pending'"
        ).fetchone()
        dead = self._x("SELECT COUNT(*) FROM operations WHERE status = 'dead'").fetchone()[0]
        received, oldest_call = self._x(
            "SELECT COUNT(*), MIN(received_at) FROM calls WHERE status = 'received'"
        ).fetchone()
        failed = self._x("SELECT COUNT(*) FROM calls WHERE status = 'failed'").fetchone()[0]
        oldest = [float(t) for t in (oldest_op, oldest_call) if t is not None]  # unix seconds
        return QueueStats(int(pending), int(received), min(oldest, default=None), int(dead), int(failed))

    def day_rows(self, since: float) -> list[DayRow]:
        # counted in the engine: tens of thousands of events a fortnight made as many Python rows, which cost
        # more than the query; amounts only where the chart books them, from the columns (migration 6), not
        # the JSON. Ordered by each group's first event, so the chart meets the currencies in the order it
        # met them event by event.
        booked = "e.kind = 'sale' AND e.shown_status = 'delivered'"
        rows = self._x(
            f"SELECT {self.dialect.event_day}, e.endpoint, e.kind, e.shown_status,"
            f" CASE WHEN {booked} THEN e.amount END, CASE WHEN {booked} THEN e.currency END, COUNT(*)"
            f" FROM events e {self.dialect.recent_events}"
            " WHERE e.created_at >= ? AND e.kind IN ('sale', 'refund', 'dispute')"
            " GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY MIN(e.created_at), MIN(e.id)",
            (since,),
        ).fetchall()
        return [
            DayRow(float(r[0]) * 86400, r[1], r[2], r[3], None if r[4] is None else str(r[4]), r[5], int(r[6]))
            for r in rows
        ]

    def replay_operation(self, operation_id: int, now: float) -> bool:
        cur = self._x(
            "UPDATE operations SET status = 'pending', attempts = 0, next_attempt_at = ?, reason = 'replayed',"
            " lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'dead'",
            (now, now, operation_id),
        )
        return bool(cur.rowcount == 1)

    def replay_call(self, call_id: int) -> bool:
        cur = self._x(
            "UPDATE calls SET status = 'received', error = NULL, not_before = NULL, read_attempts = 0"
            " WHERE id = ? AND status = 'failed' AND body IS NOT NULL",
            (call_id,),
        )
        return bool(cur.rowcount == 1)

    def purge_bodies(self, before: float) -> int:
        cur = self._x(
            """UPDATE calls SET body = NULL, headers = '{}', query_string = ''
               WHERE received_at < ? AND status = 'processed' AND body IS NOT NULL
                 AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN operations o ON o.event_id = e.id
                   WHERE e.call_id = calls.id AND o.status IN ('pending', 'dead'))""",
            (before,),
        )
        return int(cur.rowcount)


# An event that became operations shows theirs (dead wins, then pending, then delivered, else skipped), kept
# stored in `shown_status` by migration 6's triggers; the reason shown is its newest operation's.
_EVENT_VIEW = """
SELECT e.id, e.call_id, e.endpoint, e.kind, e.event_type, e.transaction_key, e.customer_key,
       e.shown_status AS status,
       CASE WHEN e.status <> 'queued' THEN e.reason ELSE (
            SELECT o.reason FROM operations o WHERE o.event_id = e.id ORDER BY o.id DESC LIMIT 1) END AS reason,
       e.operation_id, e.created_at, {email} AS email, e.warning, {attributed} AS attributed
FROM events e
"""


def _data_text(value: Any) -> str | None:
    """A field of an event's data as the JSON readers of both engines give it as text: a string as it is,
    anything else as its JSON (numbers as written), missing or null as NULL."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _like_literal(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")

"""Copying one store into another (SQLite ↔ PostgreSQL): every table, ids kept, counts verified.

The ledger is what stops a re-announced payment from being paid twice, so moving the bridge to
another engine must take all of it along: stored calls (inbound dedup), events, operations and their
attempts, payments, customers, sign-ups and the customer memory. Rows keep their ids, so events still
point at their calls and operations; PostgreSQL's identity sequences are moved past the copied ids.
Run it with the bridge stopped: a call stored during the copy would be missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from bridge.store.base import Store, Transaction
from bridge.store.sql import SQLTransaction

# in an order that satisfies the foreign keys: events name calls and operations, attempts operations
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls", ("id",)),
    ("operations", ("id",)),
    ("events", ("id",)),
    ("attempts", ("id",)),
    ("payments", ("scope", "transaction_key")),
    ("customers", ("scope", "customer_key")),
    ("customer_memory", ("scope", "fact", "value")),
    ("program_pauses", ("scope",)),
)
BATCH = 500


class CopyError(Exception):
    """The copy cannot start or did not arrive whole; the message says which table."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int

    @property
    def matches(self) -> bool:
        return self.source == self.target


def _sql(tx: Transaction) -> SQLTransaction:
    # both engines run their transactions as SQLTransaction; copying needs the rows themselves
    return cast(SQLTransaction, tx)


def counts(tx: Transaction) -> dict[str, int]:
    return {table: int(_sql(tx)._x(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table, _ in TABLES}


def _columns(tx: Transaction, table: str) -> list[str]:
    cursor = _sql(tx)._x(f"SELECT * FROM {table} WHERE 1 = 0")
    return [str(d[0]) for d in cursor.description]


def _read(
    tx: Transaction, table: str, columns: Sequence[str], key: Sequence[str], offset: int
) -> list[tuple[Any, ...]]:
    order = ", ".join(key)
    if key == ("id",):
        # keyset on the id: constant cost per batch however large the table
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
    else:
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order} LIMIT ? OFFSET ?"
    params = (offset, BATCH) if key == ("id",) else (BATCH, offset)
    rows = _sql(tx)._x(sql, params).fetchall()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def _write(tx: Transaction, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    sql_tx = _sql(tx)
    overriding = " OVERRIDING SYSTEM VALUE" if sql_tx.dialect.name == "postgresql" and "id" in columns else ""
    placeholders = ", ".join("?" for _ in columns)
    statement = f"INSERT INTO {table} ({', '.join(columns)}){overriding} VALUES ({placeholders})"
    for row in rows:
        sql_tx._x(statement, row)


def _after_copy(tx: Transaction, table: str) -> None:
    sql_tx = _sql(tx)
    if sql_tx.dialect.name == "postgresql":
        # the next call, event or operation stored after the switch gets an id past the copied ones
        sql_tx._x(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
        )


def _empty(tx: Transaction) -> None:
    for table, _ in reversed(TABLES):
        _sql(tx)._x(f"DELETE FROM {table}")


async def copy_store(
    source: Store, target: Store, replace: bool = False, progress: Callable[[str, int], None] | None = None
) -> list[TableCount]:
    """Copy every table of `source` (both open) into `target`; returns both counts of each table."""
    held = await target.run(counts)
    if any(held.values()) and not replace:
        filled = ", ".join(f"{table} ({n})" for table, n in held.items() if n)
        raise CopyError(f"the target store is not empty: {filled}; pass --replace to empty it first")
    if any(held.values()):
        await target.run(_empty)
    for table, key in TABLES:
        source_columns = await source.run(partial(_columns, table=table))
        target_columns = set(await target.run(partial(_columns, table=table)))
        missing = [c for c in source_columns if c not in target_columns]
        if missing:
            raise CopyError(f"{table}: the target has no column {missing[0]!r} (are both at the same version?)")
        position = 0
        while True:
            rows = await source.run(partial(_read, table=table, columns=source_columns, key=key, offset=position))
            if not rows:
                break
            await target.run(partial(_write, table=table, columns=source_columns, rows=rows))
            position = rows[-1][source_columns.index("id")] if key == ("id",) else position + len(rows)
            if progress is not None:
                progress(table, len(rows))
        if key == ("id",):
            await target.run(partial(_after_copy, table=table))
    copied, arrived = await source.run(counts), await target.run(counts)
    return [TableCount(table, copied[table], arrived[table]) for table, _ in TABLES]

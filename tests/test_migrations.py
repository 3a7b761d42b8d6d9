"""Schema migrations on both engines: from an empty database, from the previous version, never backwards."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bridge.store import postgres, sqlite
from bridge.store.base import EventFilter, OpStatus, Store
from bridge.store.migrations import MigrationError, statements
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SQLiteStore
from tests.bridge_process import ROOT
from tests.postgres_kit import throwaway_schema

OLD_CALL = (
    "INSERT INTO calls (endpoint, delivery_id, received_at, method, path, query_string, headers, body, status)"
    " VALUES ('shop', 'd-old', 1.0, 'POST', '/webhooks/shop', '', '{}', ?, 'received')"
)


def test_sqlite_from_empty_then_nothing_pending(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "m.db"))
    assert asyncio.run(store.migrate_async()) == list(range(1, len(sqlite.MIGRATIONS) + 1))
    assert asyncio.run(store.migrate_async()) == []


def test_sqlite_from_the_previous_version_keeps_data(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    assert SQLiteStore.migrate(conn, sqlite.MIGRATIONS[:-1]) == list(range(1, len(sqlite.MIGRATIONS)))
    conn.execute(OLD_CALL, (b"old body",))
    conn.close()

    async def upgrade() -> None:
        store = SQLiteStore(path)
        await store.open()  # migrates at start
        try:
            [call] = await store.run(lambda tx: tx.claim_calls("w", time.time(), time.time() + 60, 10))
            assert (call.delivery_id, call.body) == ("d-old", b"old body")
            assert await store.run(lambda tx: tx.claim_calls("w2", time.time(), time.time() + 60, 10)) == []
        finally:
            await store.close()

    asyncio.run(upgrade())


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "new.db"), isolation_level=None)
    SQLiteStore.migrate(conn, (*sqlite.MIGRATIONS, "CREATE TABLE from_the_future (x INTEGER)"))
    with pytest.raises(MigrationError, match="upgrade the bridge"):
        SQLiteStore.migrate(conn)


def test_postgres_from_empty_and_from_the_previous_version() -> None:
    with throwaway_schema() as url:
        store = PostgresStore(url, pool_size=2)
        assert asyncio.run(store.migrate_async()) == list(range(1, len(postgres.MIGRATIONS) + 1))
        asyncio.run(store.close())
        store = PostgresStore(url, pool_size=2)
        assert asyncio.run(store.migrate_async()) == []
        asyncio.run(store.close())

    with throwaway_schema() as url:

        async def scenario() -> None:
            old = PostgresStore(url, pool_size=2)
            await asyncio.get_running_loop().run_in_executor(None, lambda: old._pool.open(wait=True))
            assert old.migrate(postgres.MIGRATIONS[:-1]) == list(range(1, len(postgres.MIGRATIONS)))
            old.run_sync(lambda tx: tx.conn.execute(OLD_CALL.replace("?", "%s"), (b"old body",)))  # type: ignore[attr-defined]
            await old.close()
            store = PostgresStore(url, pool_size=2)
            await store.open()
            try:
                [call] = await store.run(lambda tx: tx.claim_calls("w", time.time(), time.time() + 60, 10))
                assert (call.delivery_id, call.body) == ("d-old", b"old body")
            finally:
                await store.close()

        asyncio.run(scenario())


def test_migrate_command(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'cli.db'}"}))

    def migrate() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "migrate", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert migrate() == f"applied migrations {list(range(1, len(sqlite.MIGRATIONS) + 1))}"
    assert migrate() == "the store is at the current schema version"


# events stored by a bridge before migration 6, each with the status the console computed for it then
OLD_EVENTS = {
    "delivered": ("queued", ["delivered"]),
    "dead": ("queued", ["delivered", "dead"]),
    "pending": ("queued", ["delivered", "pending"]),
    "skipped": ("queued", ["skipped"]),
    "no operation yet": ("queued", []),
    "duplicate": ("duplicate", []),
    "ignored": ("ignored", ["skipped"]),
}
SHOWN_AFTER_MIGRATION_6 = {
    "delivered": "delivered",
    "dead": "dead",
    "pending": "pending",
    "skipped": "skipped",
    "no operation yet": "skipped",
    "duplicate": "duplicate",
    "ignored": "ignored",
}


def _old_events(execute: Callable[[str], object]) -> None:
    """The rows of OLD_EVENTS, written as migration 5's schema holds them (literal SQL for both engines)."""
    execute(OLD_CALL.replace("?", "NULL"))
    op = 0
    for n, (name, (own, operations)) in enumerate(OLD_EVENTS.items(), start=1):
        data = json.dumps({"amount": f"1.{n}", "currency": "EUR"})
        execute(
            "INSERT INTO events (call_id, endpoint, seq, kind, event_type, transaction_key, data, status, created_at)"
            f" VALUES (1, 'shop', {n}, 'sale', '{name}', 'k{n}', '{data}', '{own}', 1.0)"
        )
        for status in operations:
            op += 1
            execute(
                "INSERT INTO operations (scope, op_key, action, transaction_key, target_key, event_id, endpoint,"
                f" request, status, next_attempt_at, created_at, updated_at) VALUES ('p', 'create:k{n}~{op}',"
                f" 'create', 'k{n}', 'k{n}~{op}', {n}, 'shop', '{{}}', '{status}', 1.0, 1.0, 1.0)"
            )


async def _shown_after_the_upgrade(store: Store) -> dict[str, str]:
    await store.open()  # migrates at start
    try:
        shown = {e.event_type: e.status for e in await store.run(lambda tx: tx.list_events(EventFilter()))}
        # the amount the overview books (the delivered sale's), copied from the event's data
        booked = [(r.amount, r.currency) for r in await store.run(lambda tx: tx.day_rows(0.0)) if r.amount]
        assert booked == [("1.1", "EUR")]
        # and from now on the triggers keep it: the skipped sale's operation is sent after all
        [op] = await store.run(lambda tx: tx.operations_of_event(4))
        await store.run(lambda tx: tx.update_operation(op.id, 2.0, status=OpStatus.DELIVERED))
        [moved] = await store.run(lambda tx: tx.list_events(EventFilter(status="delivered", q="k4")))
        assert moved.event_type == "skipped"
        return shown
    finally:
        await store.close()


def test_migration_6_stores_the_status_each_event_showed_on_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    SQLiteStore.migrate(conn, sqlite.MIGRATIONS[:5])
    _old_events(conn.execute)
    conn.close()
    assert asyncio.run(_shown_after_the_upgrade(SQLiteStore(path))) == SHOWN_AFTER_MIGRATION_6


def test_migration_6_stores_the_status_each_event_showed_on_postgresql() -> None:
    with throwaway_schema() as url:
        old = PostgresStore(url, pool_size=2)
        old._pool.open(wait=True)
        old.migrate(postgres.MIGRATIONS[:5])
        old.run_sync(lambda tx: _old_events(tx.conn.execute))  # type: ignore[attr-defined]
        asyncio.run(old.close())
        assert asyncio.run(_shown_after_the_upgrade(PostgresStore(url, pool_size=2))) == SHOWN_AFTER_MIGRATION_6


def test_released_migrations_split_into_the_same_statements_as_before() -> None:
    """Migration 6 brought trigger and function bodies, whose `;` end no statement; the scripts already
    released must still run statement for statement as they did."""
    for script in (*sqlite.MIGRATIONS[:5], *postgres.MIGRATIONS[:5]):
        assert statements(script) == [part for part in script.split(";") if part.strip()]

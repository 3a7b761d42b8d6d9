"""Schema migrations on both engines: from an empty database, from the previous version, never backwards."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bridge.store import postgres, sqlite
from bridge.store.migrations import MigrationError
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

"""`copy-store`: the whole ledger moves between engines, so a retried sale stays a duplicate after a switch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.store.base import EventFilter
from bridge.store.copy import TABLES
from tests.bridge_process import ROOT
from tests.inprocess_kit import LedgerBridge, fixture
from tests.partnero_server import PartneroServer
from tests.postgres_kit import throwaway_schema

ENDPOINTS = {"lemon": {"provider": "lemonsqueezy", "secret": "s" * 16, "customer_key": ["known:email", "email"]}}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_schema() as url:
        yield url


def copy_store(source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "copy-store", "--from", source, "--to", target, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def order(order_id: str, email: str) -> dict[str, Any]:
    # tests/fixtures/lemonsqueezy/order_created.json (SOURCES.md there), id and email edited
    body = fixture("lemonsqueezy", "order_created.json")
    body["data"]["id"] = order_id
    body["data"]["attributes"]["user_email"] = email
    return body


def test_a_sale_delivered_before_the_copy_is_a_duplicate_after_it_both_ways(
    tmp_path: Path, postgres_url: str, partnero: PartneroServer
) -> None:
    partnero.unknown_customer = "accept"
    sqlite_url = f"sqlite:///{tmp_path}/before.db"
    with LedgerBridge(sqlite_url, partnero, ENDPOINTS) as bridge:
        bridge.receive("lemon", order("1", "a@example.com"))
        bridge.receive("_signups", b'{"key": "acct-1", "email": "s@example.com"}', path="/signups")
        bridge.drain()
    assert [t.key for t in partnero.live_transactions()] == ["lemonsqueezy:order:1"]

    result = copy_store(sqlite_url, postgres_url)
    assert result.returncode == 0, result.stderr
    assert "MISMATCH" not in result.stdout and "copied SQLite → PostgreSQL" in result.stdout
    assert "calls" in result.stdout and postgres_url not in result.stdout + result.stderr

    with LedgerBridge(postgres_url, partnero, ENDPOINTS) as bridge:
        # the provider retries the sale (a new delivery of the same order) after the switch
        bridge.receive("lemon", order("1", "a@example.com"))
        # what the old store learned answers on the new one: the sign-up's key for its email
        bridge.receive("lemon", order("2", "S@example.com"))
        bridge.drain()
        retried, learned = bridge.events()[-2:]
        assert learned.customer_key == "acct-1"
        # new rows get ids past the copied ones
        assert retried.id > 2 and retried.call_id > 2
    assert (retried.status, retried.reason) == ("duplicate", "same payment already recorded")
    assert {t.key: t.customer_key for t in partnero.live_transactions()} == {
        "lemonsqueezy:order:1": "a@example.com",
        "lemonsqueezy:order:2": "acct-1",
    }

    back = f"sqlite:///{tmp_path}/after.db"
    assert copy_store(postgres_url, back).returncode == 0
    with LedgerBridge(back, partnero, ENDPOINTS) as bridge:
        bridge.receive("lemon", order("2", "S@example.com"))
        bridge.drain()
        assert bridge.events()[-1].status == "duplicate"
        statuses = [e.status for e in bridge.tx(lambda tx: tx.list_events(EventFilter(limit=100)))]
    assert len(statuses) == 5  # 2 before the first copy, 2 on PostgreSQL, 1 after the copy back
    assert len(partnero.transactions) == 2


def test_a_non_empty_target_is_refused_unless_replaced(tmp_path: Path, partnero: PartneroServer) -> None:
    source, target = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    for url, order_id in ((source, "1"), (target, "9")):
        with LedgerBridge(url, partnero, ENDPOINTS) as bridge:
            bridge.receive("lemon", order(order_id, "x@example.com"))
    refused = copy_store(source, target)
    assert refused.returncode == 2
    assert "the target store is not empty: calls (1)" in refused.stderr and "--replace" in refused.stderr
    replaced = copy_store(source, target, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with LedgerBridge(target, partnero, ENDPOINTS) as bridge:
        [call] = [bridge.tx(lambda tx: tx.get_call(1))]
        assert call is not None and b'"id": "1"' in call.body
        assert bridge.tx(lambda tx: tx.get_call(2)) is None


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    same = f"sqlite:///{tmp_path}/a.db"
    assert "name the same store" in copy_store(same, same).stderr
    assert "--to must start with sqlite://" in copy_store(same, "mysql://x").stderr


def test_every_table_of_the_schema_is_copied(tmp_path: Path, partnero: PartneroServer) -> None:
    import sqlite3

    with LedgerBridge(f"sqlite:///{tmp_path}/s.db", partnero, ENDPOINTS):
        pass
    conn = sqlite3.connect(tmp_path / "s.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    # a table added by a later migration must join the copy (schema_migrations is written by `migrate`)
    assert tables - {"schema_migrations"} == {table for table, _ in TABLES}


def test_a_store_a_running_bridge_owns_is_refused(tmp_path: Path, partnero: PartneroServer) -> None:
    from bridge.store.sqlite import SQLiteStore

    source = f"sqlite:///{tmp_path}/busy.db"
    with LedgerBridge(source, partnero, ENDPOINTS) as bridge:
        bridge.run(bridge.store.hold_exclusive())  # as `serve` does
        assert isinstance(bridge.store, SQLiteStore)
        refused = copy_store(source, f"sqlite:///{tmp_path}/copy.db")
    assert refused.returncode == 2 and "is in use by another partnero-bridge process" in refused.stderr

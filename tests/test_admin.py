"""Operator commands against a running bridge: events, events show, replay; and body retention."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.admin import AdminError, parse_since
from bridge.store.base import CallStatus, EventStatus, NewEvent, NewOperation, OpStatus
from bridge.store.sqlite import SQLiteStore
from tests.bridge_process import ROOT, BridgeProcess
from tests.e2e_kit import provider_cases
from tests.partnero_server import PartneroServer

LS = next(c for c in provider_cases() if c.provider == "lemonsqueezy")


def cli(bridge: BridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args, "--config", str(bridge.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_event_listed_shown_replayed_once(
    partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    sale = LS.spec["sale"]
    partnero.add_customer(sale["customer_key"])
    partnero.fail_next(1, status=422, body={"message": "The amount units field is invalid."}, method="POST")
    bridge = bridge_factory({"shop": LS.endpoint_settings})
    body, headers, query = LS.signed(sale["file"])
    assert bridge.post("shop", body, headers, query).status_code == 200
    partnero.wait_for(lambda s: len(s.requests) == 1)
    bridge.wait_settled()

    listed = cli(bridge, "events", "--status", "dead", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["status"], row["transaction_key"]) == ("dead", sale["key"])
    assert "amount units field is invalid" in row["reason"]

    shown = cli(bridge, "events", "show", row["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"create {sale['key']} — dead" in shown.stdout
    assert "dead      422" in shown.stdout

    table = cli(bridge, "events")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "TIME",
        "ENDPOINT",
        "KIND",
        "EVENT",
        "TRANSACTION_KEY",
        "CUSTOMER_KEY",
        "ATTRIBUTED",
        "STATUS",
        "REASON",
    ]

    replayed = cli(bridge, "replay", row["id"])
    assert replayed.returncode == 0, replayed.stderr
    assert "1 operation(s) pending again" in replayed.stdout
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    # replaying a delivered event sends nothing
    again = cli(bridge, "replay", row["id"])
    assert "nothing to replay" in again.stdout
    bridge.wait_settled()
    assert len(partnero.transactions) == 1
    shown = json.loads(cli(bridge, "events", "show", row["id"], "--json").stdout)
    assert [a["outcome"] for a in shown["operations"][0]["attempts"]] == ["dead", "delivered"]


def test_unparsed_calls_are_listed_and_replayable(
    partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_factory({"shop": LS.endpoint_settings})
    junk = b'{"meta": {"event_name": "order_created"}, "data": 7}'
    signed = LS.endpoint().adapter.sign(junk, LS.secret, time.time())
    assert bridge.post("shop", junk, dict(signed.headers)).status_code == 200
    bridge.wait_settled()
    failed = json.loads(cli(bridge, "events", "--status", "failed", "--json").stdout)
    assert [r["id"] for r in failed] == ["call:1"]
    assert failed[0]["reason"].startswith("cannot parse")
    result = cli(bridge, "replay", "--status", "failed", "--since", "1h")
    assert "call:1: to be parsed again" in result.stdout
    assert "replayed 1 of 1" in result.stdout


def test_operator_mistakes_are_sentences(bridge_factory: Callable[..., BridgeProcess]) -> None:
    bridge = bridge_factory({"shop": LS.endpoint_settings})
    bad = cli(bridge, "events", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since 'last tuesday'" in bad.stderr and "Traceback" not in bad.stderr
    assert "no event 999" in cli(bridge, "events", "show", "999").stderr
    both = cli(bridge, "replay", "5", "--status", "dead")
    assert both.returncode == 2


def test_parse_since() -> None:
    assert parse_since("2026-11-01") == 1793491200.0
    assert parse_since("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    with pytest.raises(AdminError):
        parse_since("soon")


def test_retention_purges_finished_bodies_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "r.db"))
        await store.open()
        try:

            def setup(tx):  # type: ignore[no-untyped-def]
                ids = []
                for n, status in enumerate([OpStatus.DELIVERED, OpStatus.PENDING]):
                    call_id, _ = tx.insert_call("e", f"d{n}", 100.0, "POST", "/", "", {"h": "v"}, b"PII body")
                    tx.finish_call(call_id, CallStatus.PROCESSED, None, 101.0)
                    event_id = tx.insert_event(
                        NewEvent(call_id, "e", 0, "sale", "x", f"k{n}", {}, "c", EventStatus.QUEUED), 101.0
                    )
                    tx.insert_operation(
                        NewOperation("p", "create", f"k{n}", f"k{n}", "e", {}, status, None, event_id), 101.0
                    )
                    ids.append(call_id)
                return ids

            finished, pending = await store.run(setup)
            assert await store.run(lambda tx: tx.purge_bodies(50.0)) == 0
            assert await store.run(lambda tx: tx.purge_bodies(200.0)) == 1
            done = await store.run(lambda tx: tx.get_call(finished))
            waiting = await store.run(lambda tx: tx.get_call(pending))
            assert (done.body, done.headers, done.status) == (b"", {}, CallStatus.PROCESSED)
            assert waiting.body == b"PII body"
        finally:
            await store.close()

    asyncio.run(scenario())

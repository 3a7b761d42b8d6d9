"""Poison isolation (bridge/recorder.py): one odd stored call fails alone, on both engines, and the
calls claimed with it are recorded and delivered."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from bridge import admin
from bridge.store.base import EventFilter, StoredCall
from tests import test_delivery
from tests.partnero_server import PartneroServer

make = test_delivery.make  # the two-engine harness fixture

UNSTORABLE = "a value holds a NUL character or a lone UTF-16 surrogate, which no store can keep"


@pytest.mark.parametrize("odd", ["user-\ud800", "user-\x00-1"], ids=["lone-surrogate", "nul"])
def test_text_no_store_can_hold_fails_that_call_alone(make: Any, partnero: PartneroServer, odd: str) -> None:
    h = make(customer_key=["metadata.user_id", "email"])
    h.receive({"key": "t:before"})
    h.receive({"key": "t:odd", "metadata": {"user_id": odd}})
    h.receive({"key": "t:after"})
    h.drain()
    assert sorted(t.key for t in partnero.live_transactions()) == ["t:after", "t:before"]
    odd_call = h.call(2)
    assert (odd_call.status.value, odd_call.error) == ("failed", f"cannot record: {UNSTORABLE}")
    # the operator sees it with the other failures and can replay it once the adapter is fixed
    rows = h.run(admin.list_rows(h.store, EventFilter(status="failed")))
    assert [row["id"] for row in rows] == ["call:2"]


def test_a_sign_up_key_no_store_can_hold_fails_that_sign_up_alone(make: Any, partnero: PartneroServer) -> None:
    from bridge.signups import SIGNUP_ENDPOINT

    h = make()
    partnero.add_partner("ptr_1")
    for n, key in enumerate(["good-1", "bad-\x00", "good-2"]):
        body = json.dumps({"key": key, "partner": {"key": "ptr_1"}}).encode()
        h.run(
            h.store.run(
                lambda tx, n=n, body=body: tx.insert_call(
                    SIGNUP_ENDPOINT, f"s{n}", time.time(), "POST", "/signups", "", {}, body
                )
            )
        )
    h.drain()
    assert sorted(partnero.customers) == ["buyer@example.com", "good-1", "good-2"]
    assert h.call(2).error == f"cannot record: {UNSTORABLE}"


def test_a_payment_id_that_spells_a_re_booking_key_cannot_collide(make: Any, partnero: PartneroServer) -> None:
    h = make()
    # a provider id ending in what a re-booking of t:9 would be called, then a partial refund of t:9
    h.receive({"key": "t:9~adj1", "amount": "10.00"})
    h.receive({"key": "t:9", "amount": "100.00"})
    h.receive({"kind": "refund", "key": "t:9", "amount": "40.00", "refund_id": "r1"})
    h.drain()
    assert partnero.ledger() == {"t:9%7Eadj1": [Decimal("10.00")], "t:9~adj1": [Decimal("60.00")]}
    assert all(h.call(n).status.value == "processed" for n in (1, 2, 3))


def test_an_unexpected_error_while_recording_fails_that_call_alone(
    make: Any, partnero: PartneroServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.recorder

    h = make()
    real = bridge.recorder.record_events

    def flaky(tx: Any, call: StoredCall, *args: Any) -> list[int]:
        if call.id == 2:
            raise KeyError("a bug in the ledger")
        return real(tx, call, *args)

    monkeypatch.setattr(bridge.recorder, "record_events", flaky)
    for n in range(4):
        h.receive({"key": f"t:k{n}"})
    h.drain()
    assert sorted(t.key for t in partnero.live_transactions()) == ["t:k0", "t:k2", "t:k3"]
    assert h.call(2).error == "cannot record: KeyError"


def test_a_round_that_cannot_finish_hands_back_the_calls_it_did_not_reach(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make()
    for n in range(5):
        h.receive({"key": f"t:r{n}"})
    recorder = h.worker.recorder
    real = recorder.process_call
    seen: list[int] = []

    async def store_goes_away(call: StoredCall) -> None:
        seen.append(call.id)
        if call.id == 2:
            raise ConnectionError("store unreachable")
        await real(call)

    monkeypatch.setattr(recorder, "process_call", store_goes_away)
    with pytest.raises(ConnectionError):
        h.run(recorder.process_received())
    assert seen == [1, 2]
    # another worker can take calls 2..5 at once, not after their lease runs out
    now = time.time()
    again = h.run(h.store.run(lambda tx: tx.claim_calls("other", now, now + 60, 100)))
    assert [c.id for c in again] == [2, 3, 4, 5]

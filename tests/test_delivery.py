"""The worker and the outbox rules against a real SQLite store and the Partnero test server over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest

from bridge.config import Config, DeliverySettings, Endpoint, EndpointSettings, PartneroSettings, ServerSettings
from bridge.delivery import Worker
from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent
from bridge.partnero import Outcome, Result
from bridge.store.base import EventFilter, EventView, NewOperation, Operation, OpStatus, Store, StoredCall
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SQLiteStore
from providers.base import AdapterOptions, PayloadError, ProviderAdapter, ProviderUnavailable, WebhookRequest
from tests.partnero_server import PartneroServer
from tests.postgres_kit import throwaway_schema


class ScriptedAdapter(ProviderAdapter):
    """Test double: the body lists the normalized events to produce, so each rule is easy to state."""

    name: ClassVar[str] = ""  # never registered
    reports_dispute_outcome: ClassVar[bool] = True

    def verify(self, request: WebhookRequest, now: float) -> None:
        pass

    unavailable_reads = 0

    async def read(self, request: WebhookRequest) -> list[NormalizedEvent]:
        if request.body == b'"later"':
            if ScriptedAdapter.unavailable_reads > 0:
                ScriptedAdapter.unavailable_reads -= 1
                raise ProviderUnavailable("503 from the provider API")
            return [_event({"key": "t:later"})]
        return self.parse(request)

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        data = json.loads(request.body)
        if data == "boom":
            raise RuntimeError("adapter bug")
        if data == "junk":
            raise PayloadError("junk")
        return [_event(e) for e in data]


def _event(spec: dict[str, Any]) -> NormalizedEvent:
    return NormalizedEvent(
        kind=EventKind(spec.get("kind", "sale")),
        event_type=spec.get("type", "test.event"),
        transaction_key=spec.get("key", "t:1"),
        amount=Decimal(spec["amount"])
        if spec.get("amount") is not None
        else None
        if "amount" in spec
        else Decimal("10.00"),
        currency=spec.get("currency", "USD"),
        customer=CustomerFacts(email=spec.get("email", "buyer@example.com"), metadata=spec.get("metadata", {})),
        test_mode=spec.get("test_mode", False),
        full_refund=spec.get("full_refund"),
        refunded_total=Decimal(spec["refunded_total"]) if "refunded_total" in spec else None,
        refund_id=spec.get("refund_id"),
        dispute_state=DisputeState(spec["dispute"]) if "dispute" in spec else None,
        reason=spec.get("reason"),
    )


class Harness:
    def __init__(self, store: Store, partnero: PartneroServer, **endpoint: Any) -> None:
        self.partnero = partnero
        self.store = store
        settings = EndpointSettings.model_validate({"provider": "scripted", "secret": "s", **endpoint})
        program = PartneroSettings(api_key=partnero.api_key, base_url=partnero.url, max_requests_per_second=1000)
        if "dry_run" in endpoint:
            program = program.model_copy(update={"dry_run": endpoint["dry_run"]})
        self.endpoint = Endpoint("shop", settings, program, ScriptedAdapter(["s"], AdapterOptions()))
        self.config = Config(
            program,
            "sqlite://",
            ServerSettings(),
            DeliverySettings(
                max_attempts=4, initial_backoff_seconds=0.01, max_backoff_seconds=0.05, timeout_seconds=0.5
            ),
            {"shop": self.endpoint},
        )
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.store.open())
        self.worker = Worker(self.config, self.store)
        self.calls = 0

    def receive(self, *events: dict[str, Any] | str) -> None:
        self.calls += 1
        body = json.dumps(events[0] if len(events) == 1 and isinstance(events[0], str) else list(events)).encode()
        self.run(
            self.store.run(
                lambda tx: tx.insert_call("shop", f"d{self.calls}", time.time(), "POST", "/webhooks/shop", "", {}, body)
            )
        )

    def drain(self) -> None:
        self.run(self.worker.drain(timeout=20))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def events(self, status: str | None = None) -> list[EventView]:
        return list(self.run(self.store.run(lambda tx: tx.list_events(EventFilter(status=status)))))

    def operation(self, op_key: str) -> Operation:
        op = self.run(self.store.run(lambda tx: tx.get_operation(self.endpoint.partnero.scope, op_key)))
        assert op is not None
        return op  # type: ignore[no-any-return]

    def call(self, call_id: int) -> StoredCall:
        return self.run(self.store.run(lambda tx: tx.get_call(call_id)))  # type: ignore[no-any-return]

    def methods(self) -> Sequence[str]:
        return [r.method for r in self.partnero.requests if r.path.startswith("/v1/transactions")]

    def close(self) -> None:
        self.run(self.worker.aclose())
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def make(request: pytest.FixtureRequest, tmp_path: Path, partnero: PartneroServer) -> Iterator[Any]:
    """Harnesses on a fresh store of each engine: the outbox rules must hold on both."""
    partnero.add_customer("buyer@example.com")
    made: list[Harness] = []
    with contextlib.ExitStack() as stack:

        def factory(**endpoint: Any) -> Harness:
            store: Store
            if request.param == "sqlite":
                store = SQLiteStore(str(tmp_path / f"bridge{len(made)}.db"))
            else:
                store = PostgresStore(stack.enter_context(throwaway_schema()), pool_size=4)
            harness = Harness(store, partnero, **endpoint)
            made.append(harness)
            return harness

        yield factory
        for harness in made:
            harness.close()


def test_a_payment_announced_many_times_is_posted_once(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:1", "amount": "19.99"}, {"key": "t:1", "type": "other.announcement"})
    h.receive({"key": "t:1"})
    h.drain()
    assert h.methods() == ["POST"]
    [tx] = partnero.live_transactions()
    assert (tx.key, tx.amount, tx.amount_units, tx.customer_key) == (
        "t:1",
        Decimal("19.99"),
        "USD",
        "buyer@example.com",
    )
    statuses = sorted(e.status for e in h.events())
    assert statuses == ["delivered", "duplicate", "duplicate"]


def test_full_refund_deletes_the_same_key_after_the_sale(make: Any, partnero: PartneroServer) -> None:
    h = make()
    partnero.fail_next(2, status=503, method="POST")
    h.receive({"key": "t:9"})
    h.drain()
    h.receive({"kind": "refund", "key": "t:9", "full_refund": True})
    h.receive({"kind": "refund", "key": "t:9", "full_refund": True})
    h.drain()
    assert h.methods() == ["POST", "POST", "POST", "DELETE"]
    assert partnero.ledger() == {}
    assert h.operation("delete:t:9").status is OpStatus.DELIVERED


def test_refund_of_a_sale_never_sent_cancels_both(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:2"})
    h.receive({"kind": "refund", "key": "t:2"})
    h.drain()
    assert h.methods() == []
    assert h.operation("create:t:2").status is OpStatus.SKIPPED
    assert h.operation("delete:t:2").reason == "its sale was never sent"


def test_refund_of_unknown_size_before_its_sale_books_only_the_net(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"kind": "refund", "key": "t:3a", "amount": "4.00"}, {"kind": "refund", "key": "t:3b", "amount": "9"})
    h.drain()
    assert h.methods() == []
    h.receive({"key": "t:3a", "amount": "10.00"}, {"key": "t:3b", "amount": "9.00"})
    h.drain()
    assert partnero.ledger() == {"t:3a": [Decimal("6.00")]}
    assert h.operation("create:t:3b").reason == "fully refunded before it was delivered"


def test_refund_arriving_before_its_sale(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"kind": "refund", "key": "t:3", "full_refund": True})
    h.drain()
    h.receive({"key": "t:3"})
    h.drain()
    assert h.methods() == ["DELETE"]
    assert partnero.transactions == []
    assert h.operation("delete:t:3").status is OpStatus.SKIPPED
    assert "the reversal came first" in (h.operation("create:t:3").reason or "")


def test_partial_refunds_rebook_the_net_amount_under_derived_keys(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:4", "amount": "50.00"})
    h.drain()
    h.receive({"kind": "refund", "key": "t:4", "amount": "10.00"})
    h.drain()
    assert h.methods() == ["POST", "DELETE", "POST"]
    assert partnero.ledger() == {"t:4~adj1": [Decimal("40.00")]}
    # a provider reporting a cumulative total repeats it: nothing moves
    h.receive({"kind": "refund", "key": "t:4", "amount": None, "refunded_total": "10.00"})
    h.drain()
    assert len(h.methods()) == 3
    h.receive({"kind": "refund", "key": "t:4", "amount": None, "refunded_total": "25.00"})
    h.drain()
    assert partnero.ledger() == {"t:4~adj2": [Decimal("25.00")]}
    # the rest is refunded: the sale is gone entirely (a total counts the single refunds it adds up)
    h.receive({"kind": "refund", "key": "t:4", "amount": None, "refunded_total": "50.00"})
    h.drain()
    assert partnero.ledger() == {}
    assert h.methods()[-1] == "DELETE"
    assert [t.key for t in partnero.transactions] == ["t:4", "t:4~adj1", "t:4~adj2"]


def test_the_same_refund_announced_twice_is_applied_once(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:4r", "amount": "50.00"})
    h.drain()
    h.receive({"kind": "refund", "key": "t:4r", "amount": "5.00", "refund_id": "re_1", "type": "refund.created"})
    h.receive({"kind": "refund", "key": "t:4r", "amount": "5.00", "refund_id": "re_1", "type": "refund.updated"})
    h.drain()
    assert partnero.ledger() == {"t:4r~adj1": [Decimal("45.00")]}


def test_partial_refund_policy_ignore_records_only(make: Any, partnero: PartneroServer) -> None:
    h = make(partial_refunds="ignore")
    h.receive({"key": "t:4i", "amount": "50.00"})
    h.drain()
    h.receive({"kind": "refund", "key": "t:4i", "amount": "10.00"})
    h.drain()
    assert h.methods() == ["POST"]
    [skipped] = h.events("skipped")
    assert skipped.reason == "partial refund recorded, refunded 10.00 (partial_refunds: ignore)"
    # a refund of the rest still reverses fully
    h.receive({"kind": "refund", "key": "t:4i", "amount": "40.00"})
    h.drain()
    assert partnero.ledger() == {}


def test_partial_refund_policy_full_reverses(make: Any, partnero: PartneroServer) -> None:
    h = make(partial_refunds="full")
    h.receive({"key": "t:5", "amount": "50.00"})
    h.drain()
    h.receive({"kind": "refund", "key": "t:5", "amount": "10.00", "full_refund": False})
    h.drain()
    assert partnero.ledger() == {}


def test_disputes_reverse_on_lost_by_default(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:6"})
    h.drain()
    h.receive({"kind": "dispute", "key": "t:6", "dispute": "opened"})
    h.drain()
    assert h.methods() == ["POST"]
    h.receive({"kind": "dispute", "key": "t:6", "dispute": "lost"})
    h.drain()
    assert h.methods() == ["POST", "DELETE"]


def test_unknown_customer_is_skipped_not_failed(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:7", "email": "stranger@example.com"})
    h.drain()
    op = h.operation("create:t:7")
    assert op.status is OpStatus.SKIPPED
    assert "customer" in (op.reason or "")


def test_validation_error_is_dead_with_partneros_message(make: Any, partnero: PartneroServer) -> None:
    h = make()
    partnero.fail_next(1, status=422, body={"message": "The amount field is required."}, method="POST")
    h.receive({"key": "t:8"})
    h.drain()
    op = h.operation("create:t:8")
    assert op.status is OpStatus.DEAD
    assert "amount field is required" in (op.reason or "")


def test_gives_up_after_max_attempts(make: Any, partnero: PartneroServer) -> None:
    h = make()
    # Partnero refuses this one payment while it is otherwise up (its key check answers)
    partnero.fail_next(100, status=500, method="POST", path="/v1/transactions")
    partnero.fail_next(100, status=500, method="GET", path="/v1/transactions")
    h.receive({"key": "t:10"})
    h.drain()
    # a 500 may come after a commit, so every retry first looks the key up (a flaky look-up is asked
    # three times within one attempt) and never posts blindly; the third failed attempt opens the
    # breaker, whose probe finds Partnero up, so that attempt was not the payment's own and is not counted
    assert h.methods() == ["POST"] + ["GET"] * 3 * 4
    assert [r.path for r in partnero.requests].count("/v1/test") == 1
    op = h.operation("create:t:10")
    assert op.status is OpStatus.DEAD
    assert op.reason and op.reason.startswith("gave up after 4 attempts")


def test_rate_limit_honours_retry_after(make: Any, partnero: PartneroServer) -> None:
    h = make()
    partnero.rate_limit_next(1, retry_after=1)
    h.receive({"key": "t:11"})
    h.run(h.worker.step())
    h.run(asyncio.wait(h.worker._inflight))  # the one attempt, answered 429
    op = h.operation("create:t:11")
    assert op.status is OpStatus.PENDING
    assert op.next_attempt_at - op.updated_at >= 1.0
    h.drain()
    assert h.operation("create:t:11").status is OpStatus.DELIVERED
    assert len(partnero.transactions) == 1


@pytest.mark.parametrize("fault", ["hang", "break"])
def test_uncertain_attempt_is_looked_up_not_reposted(make: Any, partnero: PartneroServer, fault: str) -> None:
    h = make()
    if fault == "hang":
        partnero.hang_next(1, seconds=3, commit=True, method="POST")
    else:
        partnero.break_next(1, commit=True, method="POST")
    h.receive({"key": "t:12"})
    h.drain()
    assert h.methods() == ["POST", "GET"]
    assert len(partnero.transactions) == 1
    assert h.operation("create:t:12").reason == "found at Partnero after an uncertain attempt"


def test_uncertain_attempt_that_did_not_commit_is_sent_again(make: Any, partnero: PartneroServer) -> None:
    h = make()
    partnero.break_next(1, commit=False, method="POST")
    h.receive({"key": "t:13"})
    h.drain()
    assert h.methods() == ["POST", "GET", "POST"]
    assert len(partnero.transactions) == 1


def test_dry_run_sends_nothing(make: Any, partnero: PartneroServer) -> None:
    h = make(dry_run=True)
    h.receive({"key": "t:14"})
    h.drain()
    assert h.methods() == []
    assert h.operation("create:t:14").reason == "dry run: recorded, not sent"


def test_test_mode_skip_and_deliver(make: Any, partnero: PartneroServer) -> None:
    skip = make()
    skip.receive({"key": "t:15", "test_mode": True})
    skip.drain()
    assert skip.events("skipped")[0].reason == "test mode (endpoint test_mode: skip)"
    deliver = make(test_mode="deliver")
    deliver.receive({"key": "t:16", "test_mode": True})
    deliver.drain()
    assert [t.key for t in partnero.transactions] == ["t:16"]


def test_customer_key_cascade_and_missing_key(make: Any, partnero: PartneroServer) -> None:
    partnero.add_customer("u-42")
    h = make(customer_key=["metadata.user_id", "email"])
    h.receive({"key": "t:17", "metadata": {"user_id": "u-42"}}, {"key": "t:18", "email": None})
    h.drain()
    assert [t.customer_key for t in partnero.transactions] == ["u-42"]
    [skipped] = h.events("skipped")
    assert skipped.reason == "no customer key (tried metadata.user_id, email)"


def test_unparseable_calls_are_kept_with_the_error(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive("junk")
    h.receive("boom")
    h.receive({"key": "t:19"})
    h.drain()
    assert h.call(1).status.value == "failed" and h.call(1).error == "cannot parse: junk"
    assert h.call(2).error == "adapter error: RuntimeError"
    assert h.call(1).body == b'"junk"'
    assert len(partnero.transactions) == 1


def test_ignored_events_keep_their_reason(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"kind": "ignored", "key": None, "reason": "subscription.updated moves no money"})
    h.drain()
    [event] = h.events()
    assert (event.status, event.reason) == ("ignored", "subscription.updated moves no money")


def test_won_dispute_after_reversal_restores_the_sale(make: Any, partnero: PartneroServer) -> None:
    h = make(disputes="reverse_on_open")
    h.receive({"key": "t:20", "amount": "30.00"})
    h.drain()
    h.receive({"kind": "dispute", "key": "t:20", "dispute": "opened"})
    h.drain()
    assert partnero.ledger() == {}
    h.receive({"kind": "dispute", "key": "t:20", "dispute": "lost"})
    h.drain()
    assert h.methods() == ["POST", "DELETE"]
    h.receive({"kind": "dispute", "key": "t:20", "dispute": "won"})
    h.drain()
    assert partnero.ledger() == {"t:20~adj1": [Decimal("30.00")]}


def test_disputes_ignore_policy(make: Any, partnero: PartneroServer) -> None:
    h = make(disputes="ignore")
    h.receive({"key": "t:21"}, {"kind": "dispute", "key": "t:21", "dispute": "lost"})
    h.drain()
    assert list(partnero.ledger()) == ["t:21"]


def test_provider_api_down_defers_the_read_then_gives_up(make: Any, partnero: PartneroServer) -> None:
    h = make()
    ScriptedAdapter.unavailable_reads = 2
    h.receive("later")
    h.drain()
    assert h.call(1).status.value == "processed"
    assert [t.key for t in partnero.transactions] == ["t:later"]
    ScriptedAdapter.unavailable_reads = 100
    h.receive("later")
    h.drain()
    call = h.call(2)
    assert call.status.value == "failed"
    assert call.error == "gave up after 4 reads: provider API unavailable: 503 from the provider API"


def test_partnero_down_pauses_the_whole_program_instead_of_hammering(make: Any, partnero: PartneroServer) -> None:
    h = make()
    breaker = h.worker._breakers[h.endpoint.partnero.scope]
    breaker.initial_pause = breaker.pause = 0.3
    breaker.max_pause = 0.6
    partnero.fail_next(10_000, status=503)
    h.receive(*({"key": f"t:down{i}"} for i in range(10)))
    h.run(h.worker.process_received())

    async def run_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await h.worker.step()
            await asyncio.sleep(0.01)

    h.run(run_for(1.5))
    # per-operation backoff alone would allow ~10 operations x ~30 attempts each in 1.5 s
    assert 3 <= len(partnero.requests) <= 20
    partnero.reset()
    partnero.add_customer("buyer@example.com")
    h.drain()
    assert len(partnero.live_transactions()) == 10


def test_rate_limit_pauses_the_program_for_retry_after(make: Any, partnero: PartneroServer) -> None:
    h = make()
    partnero.rate_limit_next(1, retry_after=1)
    h.receive({"key": "t:rl0"})
    h.run(h.worker.drain(timeout=0.5))
    assert [r.status for r in partnero.requests] == [429]
    # new work for the same program arrives during the pause: it waits too
    h.receive({"key": "t:rl1"}, {"key": "t:rl2"})
    h.drain()
    assert len(partnero.live_transactions()) == 3
    first, *rest = [r for r in partnero.requests if r.method == "POST"]
    assert first.status == 429
    assert len(rest) == 3
    assert all(r.time - first.time >= 0.95 for r in rest), [
        (r.status, r.time - first.time, r.transaction_key) for r in rest
    ]


def test_a_failed_look_up_keeps_the_attempt_uncertain(make: Any, partnero: PartneroServer) -> None:
    """Found by the fault-injection run: a 429 on the look-up must not clear the maybe-sent mark."""
    h = make()
    partnero.break_next(1, commit=True, method="POST")
    partnero.rate_limit_next(1, retry_after=0, method="GET", path="/v1/transactions")
    partnero.break_next(1, commit=False, method="GET", path="/v1/transactions")
    h.receive({"key": "t:lookup"})
    h.drain()
    assert h.methods() == ["POST", "GET", "GET", "GET"]
    assert len(partnero.transactions) == 1


def test_sales_that_are_not_positive_are_skipped(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:zero", "amount": "0.00"}, {"key": "t:neg", "amount": "-5.00"})
    h.drain()
    assert h.methods() == []
    assert sorted(e.reason or "" for e in h.events("skipped")) == [
        "sale amount -5.00 is not positive",
        "sale amount 0.00 is not positive",
    ]


def test_replaying_an_operation_that_may_have_been_sent_looks_it_up_first(make: Any, partnero: PartneroServer) -> None:
    from bridge import admin

    h = make()
    # Partnero committed the sale but every answer was lost, and every look-up failed: dead, maybe sent
    partnero.break_next(1, commit=True, method="POST", path="/v1/transactions")
    partnero.fail_next(100, status=500, method="GET", path="/v1/transactions")
    h.receive({"key": "t:replayed"})
    h.drain()
    op = h.operation("create:t:replayed")
    assert op.status is OpStatus.DEAD and op.maybe_sent
    partnero.reset()
    partnero.add_customer("buyer@example.com")
    partnero.add_transaction("t:replayed", "buyer@example.com")
    [event] = h.events("dead")
    assert h.run(admin.replay_one(h.store, str(event.id))).replayed
    h.drain()
    # the replay asked first and found the sale: nothing is posted a second time
    assert h.methods() == ["GET"]
    assert h.operation("create:t:replayed").status is OpStatus.DELIVERED
    assert len(partnero.transactions) == 1


@pytest.mark.parametrize("ignore_filter", [False, True], ids=["filter-honoured", "filter-ignored"])
@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
def test_the_look_up_reads_the_key_exactly_whether_or_not_partnero_filters(
    make: Any, partnero: PartneroServer, ignore_filter: bool, committed: bool
) -> None:
    h = make()
    partnero.ignore_key_filter = ignore_filter
    # many other sales, so that a list ignoring its filter spans several pages; one key shares a prefix
    for n in range(230):
        partnero.add_transaction(f"t:other{n}", "buyer@example.com")
    partnero.add_transaction("t:lk-1", "buyer@example.com")
    partnero.break_next(1, commit=committed, method="POST", path="/v1/transactions")
    h.receive({"key": "t:lk"})
    h.drain()
    assert [t.key for t in partnero.live_transactions()].count("t:lk") == 1
    posts = [r for r in partnero.requests if r.method == "POST" and r.path == "/v1/transactions"]
    assert len(posts) == (1 if committed else 2)
    pages = [
        parse_qs(r.query)["page"][0] for r in partnero.requests if r.method == "GET" and r.path == "/v1/transactions"
    ]
    assert pages == (["1", "2", "3"] if ignore_filter else ["1"])


def test_the_soak_would_catch_a_worker_sending_one_key_twice_at_once(make: Any, partnero: PartneroServer) -> None:
    """The fault-injection run asserts no overlap; this shows that assertion can fail."""
    from tests.test_faults import in_flight_overlaps

    h = make()
    partnero.latency = 0.2
    h.receive({"key": "t:twice"})
    h.run(h.worker.process_received())
    op = _claim(h, h.worker, time.time() + 60)

    async def a_worker_that_overlaps() -> None:
        await asyncio.gather(h.worker._send(op), h.worker._send(op))

    h.run(a_worker_that_overlaps())
    assert [r.transaction_key for r in in_flight_overlaps(partnero)] == ["t:twice"]


def test_the_worker_records_and_delivers_while_webhooks_never_stop(make: Any, partnero: PartneroServer) -> None:
    """`run` records and delivers side by side; the recorder gives way to webhooks being answered, but
    only for a bounded moment: a stream of webhooks that never pauses slows it down, never stops it."""
    h = make()
    h.receive(*({"key": f"t:busy{i}"} for i in range(5)))
    h.receive(*({"key": f"t:busy{i}"} for i in range(5, 30)))

    async def scenario() -> int:
        stopping = asyncio.Event()
        with h.worker.answering():  # a webhook is being answered for the whole run
            running = asyncio.create_task(h.worker.run(stopping))
            deadline = time.monotonic() + 20
            while len(partnero.live_transactions()) < 30 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stopping.set()
            h.worker.wake()
            await asyncio.wait_for(running, timeout=10)
        return len(partnero.live_transactions())

    assert h.run(scenario()) == 30
    assert {e.status for e in h.events()} == {"delivered"}


# --- a lease that runs out before the request starts ------------------------------------------------------


def _claim(h: Harness, worker: Worker, lease_until: float) -> Operation:
    [op] = h.run(h.store.run(lambda tx: tx.claim_operations(worker.owner, time.time(), lease_until, 1)))
    worker._lease_until[op.id] = lease_until
    return op  # type: ignore[no-any-return]


def test_a_worker_whose_lease_ran_out_does_not_send_what_another_has_taken_over(
    make: Any, partnero: PartneroServer
) -> None:
    """The scale-out run's double post: A claimed the sale, its lease ran out before its POST started
    (look-ups, rate-limit waits, a loaded loop), B claimed it, looked it up, found nothing and posted;
    then A posted the same key."""
    h = make()
    h.receive({"key": "t:lease"})
    h.run(h.worker.process_received())
    a, b = h.worker, Worker(h.config, h.store)
    slow = _claim(h, a, time.time() - 0.001)  # A's lease is already over
    taken = _claim(h, b, time.time() + 60)
    assert taken.id == slow.id
    h.run(b._deliver(taken, None))
    h.run(a._deliver(slow, None))
    assert h.methods() == ["GET", "POST"]  # B's look-up and post; nothing from A
    assert len(partnero.transactions) == 1
    assert h.operation("create:t:lease").status is OpStatus.DELIVERED
    h.run(b.aclose())


def test_a_lease_too_short_for_the_request_is_renewed_before_it_starts(make: Any, partnero: PartneroServer) -> None:
    h = make()
    h.receive({"key": "t:renew"})
    h.run(h.worker.process_received())
    op = _claim(h, h.worker, time.time() + 0.2)  # shorter than the request may take
    h.run(h.worker._deliver(op, None))
    assert h.methods() == ["POST"]
    assert h.operation("create:t:renew").status is OpStatus.DELIVERED


def _finishing(h: Harness, *ops: NewOperation) -> tuple[list[Operation], list[str]]:
    """`ops` inserted and claimed by the harness's worker; and a log of the store calls made after."""
    now = time.time()
    h.run(h.store.run(lambda tx: [tx.insert_operation(op, now) for op in ops]))
    claimed = h.run(h.store.run(lambda tx: tx.claim_operations(h.worker.owner, now + 1, now + 60, len(ops))))
    calls: list[str] = []
    run, run_each = h.store.run, h.store.run_each

    async def counted_run(work: Any, **kw: Any) -> Any:
        calls.append("run")
        return await run(work, **kw)

    async def counted_run_each(works: Any) -> Any:
        calls.append(f"run_each({len(works)})")
        return await run_each(works)

    h.store.run = counted_run  # type: ignore[method-assign]
    h.store.run_each = counted_run_each  # type: ignore[method-assign]
    return sorted(claimed, key=lambda op: op.id), calls


def _sale_op(h: Harness, key: str, **kw: Any) -> NewOperation:
    return NewOperation(h.endpoint.partnero.scope, "create", key, key, "shop", {"key": key}, **kw)


def test_operations_finishing_together_are_written_in_one_store_call(make: Any) -> None:
    h = make()
    ops, calls = _finishing(h, *(_sale_op(h, f"t:b{n}") for n in range(5)))

    async def finish_all() -> None:
        await asyncio.gather(
            *(h.worker._finish(op, Outcome(Result.DELIVERED, "created", 200), False, None) for op in ops)
        )

    h.run(finish_all())
    assert calls == ["run"]
    for n, op in enumerate(ops):
        stored = h.operation(f"create:t:b{n}")
        assert (stored.status, stored.reason, stored.attempts, stored.maybe_sent) == (
            OpStatus.DELIVERED,
            "created",
            1,
            False,
        )
        [attempt] = h.run(h.store.run(lambda tx, op=op: tx.attempts_of(op.id)))
        assert (attempt.outcome, attempt.status_code) == ("delivered", 200)


def test_a_finish_that_cannot_be_stored_fails_alone(make: Any) -> None:
    """One finish of a batch fails (Partnero's message holds a NUL): its neighbours are written."""
    h = make()
    ops, calls = _finishing(h, _sale_op(h, "t:ok1"), _sale_op(h, "t:bad"), _sale_op(h, "t:ok2"))
    created, unstorable = Outcome(Result.DELIVERED, "created", 200), Outcome(Result.DEAD, "rejected 422: \x00", 422)
    outcomes = [created, unstorable, created]

    async def finish_all() -> list[Any]:
        finishes = (h.worker._finish(op, outcome, False, None) for op, outcome in zip(ops, outcomes, strict=True))
        return list(await asyncio.gather(*finishes, return_exceptions=True))

    results = h.run(finish_all())
    assert [type(r).__name__ for r in results] == ["NoneType", "UnstorableText", "NoneType"]
    assert calls == ["run", "run_each(3)"]
    assert h.operation("create:t:ok1").status is h.operation("create:t:ok2").status is OpStatus.DELIVERED
    bad = h.operation("create:t:bad")
    assert (bad.status, bad.maybe_sent) == (OpStatus.PENDING, True)  # left leased, looked up when claimed again


def test_a_finish_that_settles_a_customer_is_written_alone(make: Any) -> None:
    """Its customer lock is never held together with others' (a batch would take them in no fixed order)."""
    h = make()
    creator = NewOperation(h.endpoint.partnero.scope, "customer", "c9", "c9", "shop", {"key": "c9"}, customer_key="c9")
    ops, calls = _finishing(h, _sale_op(h, "t:s1"), creator, _sale_op(h, "t:s2"))

    async def finish_all() -> None:
        await asyncio.gather(*(h.worker._finish(op, Outcome(Result.DELIVERED, "ok", 200), False, None) for op in ops))

    h.run(finish_all())
    assert sorted(calls) == ["run", "run"]  # the creator alone, the two sales together
    assert {h.operation(k).status for k in ("create:t:s1", "customer:c9", "create:t:s2")} == {OpStatus.DELIVERED}

"""The customer memory: `known:email` and `known:customer_id` across providers, earliest key wins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bridge import memory
from bridge.config import ConfigError, parse_config
from bridge.store.base import Remembered
from tests.inprocess_kit import LedgerBridge, fixture
from tests.partnero_server import PartneroServer

AFTER_THE_MOVE = 1_775_000_000_000  # Creem's event time (ms): April 2026, after every Lemon Squeezy order here
KEYS = ["metadata.user_id", "known:customer_id", "known:email", "email"]


@pytest.fixture
def bridge(store_url: str, partnero: PartneroServer) -> Iterator[LedgerBridge]:
    # every customer key is booked as given: which key a sale got is what these tests read
    partnero.unknown_customer = "accept"
    endpoints = {
        "lemon": {"provider": "lemonsqueezy", "secret": "s" * 16, "customer_key": KEYS},
        "creem": {"provider": "creem", "secret": "whsec_" + "c" * 20, "customer_key": KEYS},
    }
    with LedgerBridge(store_url, partnero, endpoints) as made:
        yield made


def ls_order(order_id: str, email: str, user_id: str | None, customer_id: int = 1, at: str = "2026-01-10") -> Any:
    # tests/fixtures/lemonsqueezy/order_created.json (SOURCES.md there), ids, email and custom data edited
    body = fixture("lemonsqueezy", "order_created.json")
    body["data"]["id"] = order_id
    body["data"]["attributes"].update(user_email=email, customer_id=customer_id, created_at=f"{at}T10:00:00.000000Z")
    body["meta"]["custom_data"] = {"user_id": user_id} if user_id else {}
    return body


def creem_checkout(transaction: str, email: str, customer: str = "cust_A", metadata: Any = None) -> Any:
    # tests/fixtures/creem/checkout_completed.json (SOURCES.md there): no custom data at the new provider
    body = fixture("creem", "checkout_completed.json")
    body["created_at"] = AFTER_THE_MOVE
    obj = body["object"]
    obj["order"]["transaction"] = transaction
    obj["order"]["id"] = "ord_" + transaction
    obj["order"]["customer"] = customer
    obj["customer"].update(email=email, id=customer)
    obj["metadata"] = metadata or {}
    obj["subscription"]["metadata"] = metadata or {}
    obj.pop("request_id", None)
    return body


def creem_renewal(transaction: str, email: str, customer: str = "cust_A") -> Any:
    # tests/fixtures/creem/subscription_paid.json (SOURCES.md there): a later period's payment
    body = fixture("creem", "subscription_paid.json")
    body["created_at"] = AFTER_THE_MOVE + 30 * 86_400_000
    obj = body["object"]
    obj["last_transaction_id"] = transaction
    # the paid amount, as SubscriptionEntity.last_transaction carries it (tests/test_creem.py)
    obj["last_transaction"] = {
        "id": transaction,
        "object": "transaction",
        "amount": 1000,
        "amount_paid": 1210,
        "currency": "EUR",
        "tax_amount": 210,
    }
    obj["customer"].update(email=email, id=customer)
    obj["metadata"] = {}
    obj["mode"] = "prod"  # the fixture is a local-mode delivery
    return body


def customers_of(partnero: PartneroServer) -> dict[str, str | None]:
    return {t.key: t.customer_key for t in partnero.live_transactions()}


def test_a_lemon_squeezy_buyer_paying_on_creem_is_booked_to_the_same_customer(
    bridge: LedgerBridge, partnero: PartneroServer
) -> None:
    partnero.add_partner("ptr_anna")
    partnero.add_customer("U-42", partner_key="ptr_anna")
    bridge.receive("lemon", ls_order("501", "Moving@Example.com", "U-42"))
    bridge.drain()
    # the new checkout carries nothing of the merchant's: only the email, in another case
    bridge.receive("creem", creem_checkout("tran_first", "moving@example.com "))
    bridge.drain()
    bridge.receive("creem", creem_renewal("tran_second", "moving@example.com"))
    bridge.drain()
    assert customers_of(partnero) == {
        "lemonsqueezy:order:501": "U-42",
        "creem:tran:tran_first": "U-42",
        "creem:tran:tran_second": "U-42",
    }
    # the same referred customer, so the partner earns on the renewal at the new provider
    assert {t.partner_key for t in partnero.live_transactions()} == {"ptr_anna"}
    assert [e.warning for e in bridge.events()] == [None, None, None]


def test_known_customer_id_is_per_provider(bridge: LedgerBridge, partnero: PartneroServer) -> None:
    bridge.receive("creem", creem_checkout("tran_1", "first@example.com", customer="cust_7", metadata={"user_id": "K"}))
    bridge.drain()
    # the buyer changed email at Creem: the provider's customer id still knows them
    bridge.receive("creem", creem_renewal("tran_2", "changed@example.com", customer="cust_7"))
    # a Lemon Squeezy customer whose id happens to be the same text is someone else
    bridge.receive("lemon", ls_order("77", "other@example.com", None))
    bridge.drain()
    assert customers_of(partnero) == {
        "creem:tran:tran_1": "K",
        "creem:tran:tran_2": "K",
        "lemonsqueezy:order:77": "other@example.com",
    }
    scope = bridge.config.endpoints["creem"].partnero.scope
    found = bridge.tx(lambda tx: tx.recall(scope, memory.customer_id_fact("creem"), "cust_7"))
    assert found is not None and found.customer_key == "K"
    assert bridge.tx(lambda tx: tx.recall(scope, memory.customer_id_fact("lemonsqueezy"), "cust_7")) is None


def test_two_keys_for_one_email_earliest_wins_with_a_warning(bridge: LedgerBridge, partnero: PartneroServer) -> None:
    bridge.receive("lemon", ls_order("1", "two@example.com", "U-1", customer_id=11, at="2026-02-01"))
    bridge.drain()
    # the merchant's own key on a later sale is what that sale is booked to, but the memory keeps U-1
    bridge.receive("lemon", ls_order("2", "two@example.com", "V-2", customer_id=12, at="2026-03-01"))
    bridge.receive("creem", creem_checkout("tran_x", "two@example.com", customer="cust_new"))
    bridge.drain()
    assert customers_of(partnero) == {
        "lemonsqueezy:order:1": "U-1",
        "lemonsqueezy:order:2": "V-2",
        "creem:tran:tran_x": "U-1",
    }
    first, second, third = bridge.events()
    assert first.warning is None and third.warning is None
    assert second.warning is not None and "'U-1'" in second.warning and "keeps it" in second.warning
    assert "two@example.com" not in second.warning  # personal data stays out of what operators read
    # history learned later (a backfill of an older sale) is still the earliest use
    bridge.receive("lemon", ls_order("0", "two@example.com", "W-0", customer_id=10, at="2025-12-01"))
    bridge.drain()
    assert "earlier payment makes 'W-0'" in (bridge.events()[-1].warning or "")
    bridge.receive("creem", creem_renewal("tran_y", "two@example.com", customer="cust_other"))
    bridge.drain()
    assert customers_of(partnero)["creem:tran:tran_y"] == "W-0"


def test_a_relayed_signup_teaches_known_email(store_url: str, partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_bo")
    endpoints = {"creem": {"provider": "creem", "secret": "whsec_" + "c" * 20, "customer_key": ["known:email"]}}
    with LedgerBridge(store_url, partnero, endpoints, signups={"token": "t" * 20}) as bridge:
        signup = b'{"key": "acct-5", "email": "Sign@Example.com", "partner": {"key": "ptr_bo"}}'
        bridge.tx(lambda tx: tx.insert_call("_signups", "s1", 1.0, "POST", "/signups", "", {}, signup))
        bridge.drain()
        bridge.receive("creem", creem_checkout("tran_s", "sign@example.com"))
        bridge.drain()
    assert customers_of(partnero) == {"creem:tran:tran_s": "acct-5"}


def test_without_memory_sources_nothing_is_recalled(bridge: LedgerBridge, partnero: PartneroServer) -> None:
    endpoint = bridge.config.endpoints["creem"]
    settings = endpoint.settings.model_copy(update={"customer_key": ["metadata.user_id"]})
    bridge.config.endpoints["creem"] = type(endpoint)(endpoint.name, settings, endpoint.partnero, endpoint.adapter)  # type: ignore[index]
    bridge.receive("lemon", ls_order("9", "nomem@example.com", "U-9"))
    bridge.receive("creem", creem_checkout("tran_n", "nomem@example.com"))
    bridge.drain()
    assert customers_of(partnero) == {"lemonsqueezy:order:9": "U-9"}
    assert bridge.events()[-1].reason == "no customer key (tried metadata.user_id)"


def test_the_sources_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown source 'known:phone'"):
        parse_config({"endpoints": {"e": {"provider": "creem", "secret": "x" * 12, "customer_key": ["known:phone"]}}})


def test_memory_keeps_the_earliest_use(store_url: str, partnero: PartneroServer) -> None:
    with LedgerBridge(store_url, partnero, {}) as bridge:

        def learn(key: str, at: float) -> str | None:
            facts = memory.CustomerFacts(email="A@b.c", customer_id="c1")
            return bridge.tx(lambda tx: memory.learn(tx, "p", "prov", facts, key, at, "e", 100.0))

        assert learn("k1", 50.0) is None
        assert learn("k1", 40.0) is None  # the same key seen earlier moves the first use back
        assert learn("k2", 45.0) is not None
        found = bridge.tx(lambda tx: tx.recall("p", memory.EMAIL, "a@b.c"))
        assert found == Remembered("p", memory.EMAIL, "a@b.c", "k1", 40.0, "e")


_V2_ROWS = [
    # fresh tables: the first row of each gets id 1
    "INSERT INTO calls (endpoint, delivery_id, received_at, method, path, query_string, headers, body, status)"
    " VALUES ('lemon', 'd1', 10.0, 'POST', '/webhooks/lemon', '', '{}', NULL, 'processed')",
    "INSERT INTO events (call_id, endpoint, seq, kind, event_type, transaction_key, data, customer_key, status,"
    " created_at) VALUES (1, 'lemon', 0, 'sale', 'order_created', 'ls:1',"
    " '{\"customer\": {\"email\": \" Old@Example.com\"}}', 'U-old', 'queued', 10.0)",
    "INSERT INTO operations (scope, op_key, action, transaction_key, target_key, event_id, endpoint, request,"
    " status, next_attempt_at, created_at, updated_at) VALUES"
    " ('p', 'create:ls:1', 'create', 'ls:1', 'ls:1', 1, 'lemon', '{}', 'delivered', 10.0, 10.0, 10.0)",
    # the same email signed up later under another key: the earlier sale keeps the email
    "INSERT INTO customers (scope, customer_key, state, creator_op_key, email, updated_at)"
    " VALUES ('p', 'S-later', 'created', NULL, 'old@example.com', 20.0)",
    "INSERT INTO customers (scope, customer_key, state, creator_op_key, email, updated_at)"
    " VALUES ('p', 'S-only', 'created', NULL, 'Signed@Example.com', 30.0)",
]


def test_the_upgrade_teaches_the_memory_what_the_store_already_holds(store_url: str) -> None:
    import asyncio
    import sqlite3

    from bridge.store import open_store, postgres, sqlite
    from bridge.store.postgres import PostgresStore
    from bridge.store.sqlite import SQLiteStore, path_from_url

    async def scenario() -> list[Remembered | None]:
        if store_url.startswith("sqlite"):
            conn = sqlite3.connect(path_from_url(store_url), isolation_level=None)
            SQLiteStore.migrate(conn, sqlite.MIGRATIONS[:2])
            for statement in _V2_ROWS:
                conn.execute(statement)
            conn.close()
        else:
            old = PostgresStore(store_url, pool_size=2)
            await asyncio.get_running_loop().run_in_executor(None, lambda: old._pool.open(wait=True))
            old.migrate(postgres.MIGRATIONS[:2])
            for statement in _V2_ROWS:
                old.run_sync(lambda tx, s=statement: tx.conn.execute(s))  # type: ignore[attr-defined,misc]
            await old.close()
        store = open_store(store_url)
        await store.open()
        try:
            return [
                await store.run(lambda tx: tx.recall("p", memory.EMAIL, "old@example.com")),
                await store.run(lambda tx: tx.recall("p", memory.EMAIL, "signed@example.com")),
            ]
        finally:
            await store.close()

    sale, signup = asyncio.run(scenario())
    assert sale == Remembered("p", memory.EMAIL, "old@example.com", "U-old", 10.0, "lemon")
    assert signup == Remembered("p", memory.EMAIL, "signed@example.com", "S-only", 30.0, "_signups")

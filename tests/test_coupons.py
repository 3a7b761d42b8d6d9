"""Coupon attribution: a partner's discount code, read from the payment, credits that partner.

Resolution (bridge.coupons) against the Partnero test server in process, then end to end over real HTTP
for every provider whose webhook reports the code.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from bridge.config import ConfigError, Endpoint, parse_config
from bridge.coupons import CodeBook, CodePartner, CodesUnavailable, partner_of
from bridge.events import EventKind, NormalizedEvent
from providers.base import WebhookRequest
from tests.bridge_process import BridgeProcess
from tests.e2e_kit import ProviderCase, provider_cases
from tests.partnero_server import PartneroServer
from tests.provider_api_server import ProviderApiServer
from tests.test_admin import cli

BridgeFactory = Callable[..., BridgeProcess]
PARTNER_SOURCES = ["metadata.partnero_partner", "coupon"]

# every provider whose payment webhook reports the redeemed code, with a sale that carries one
CODE_SALES = {
    "gumroad": ("sale_offer_code.txt", "podcast20"),
    "polar": ("order_paid.json", "LAUNCH10"),
    "revenuecat": ("initial_purchase_offer_code.json", "podcast20"),
    "whop": ("payment_succeeded_promo_code.json", "PODCAST20"),
    "woocommerce": ("order_paid_coupon.json", "podcast20"),
}
CASES = {c.provider: c for c in provider_cases()}

SIGNUP_TOKEN = "sign-up-token-0123456789"
# providers whose payment names the discount but not its code: the code is read from their API
# (provider, sale fixture, edits that make it discounted, API object path, object fixture, id, code)
API_CODE_SALES = {
    "creem": (
        "checkout_completed.json",
        {"object.order.discount": "dis_4Ma9KJ7d3TnRmVhgSz1mQK"},
        "/v1/discounts",
        "api/discount.json",
        "PODCAST20",
    ),
    "dodopayments": (
        "payment_succeeded.json",
        {"data.discount_id": "dsc_qxxEmg5PuM1uNTE0LgkP9"},
        "/discounts",
        "api/discount.json",
        "PODCAST20",
    ),
    "lemonsqueezy": (
        "order_created.json",
        {"data.attributes.discount_total": 100},
        "/v1/discount-redemptions",
        "api/discount_redemption.json",
        "10PERC",
    ),
}


def _endpoint(partnero: PartneroServer, codes: dict[str, str] | None = None, **settings: Any) -> Endpoint:
    config = parse_config(
        {
            "partnero": {"api_key": partnero.api_key, "base_url": partnero.url},
            "coupons": {"codes": codes or {}},
            "endpoints": {
                "shop": {"provider": "gumroad", "secret": "t0ken-for-tests", "partner_key": PARTNER_SOURCES, **settings}
            },
        }
    )
    return config.endpoints["shop"]


def _sale(code: str | None) -> NormalizedEvent:
    return NormalizedEvent(kind=EventKind.SALE, event_type="sale", transaction_key="k", coupon_code=code)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _resolve(book: CodeBook, endpoint: Endpoint, *codes: str | None) -> dict[str, CodePartner]:
    return asyncio.run(_resolve_and_close(book, endpoint, [_sale(c) for c in codes]))


async def _resolve_and_close(
    book: CodeBook, endpoint: Endpoint, events: list[NormalizedEvent]
) -> dict[str, CodePartner]:
    try:
        return await book.resolve(endpoint, events)
    finally:
        await book.aclose()


def _code_reads(partnero: PartneroServer) -> int:
    return len([r for r in partnero.requests if r.path == "/v1/promotion-codes"])


def test_a_code_limited_to_one_partner_names_it_and_an_open_or_shared_one_nobody(partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_partner("ptr_other", id="prt_other")
    partnero.add_promotion_code("PODCAST20", "ptr_host")
    partnero.add_promotion_code("EVERYONE10")
    partnero.add_promotion_code("SHARED15", "ptr_host", "ptr_other")
    book = CodeBook(parse_config({}).coupons, 2.0, _Clock())
    found = _resolve(book, _endpoint(partnero), "podcast20", " PodCast20 ", "everyone10", "shared15", "unknown", None)
    # codes match case-insensitively, as buyers type them; Partnero names the partner by its id
    assert found == {"podcast20": CodePartner("id", "prt_host", "partnero")}


def test_the_yaml_map_wins_over_partneros_codes(partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_promotion_code("PODCAST20", "ptr_host")
    endpoint = _endpoint(partnero, {"Podcast20": "ptr_map"})
    found = _resolve(
        CodeBook(parse_config({"coupons": {"codes": {"Podcast20": "ptr_map"}}}).coupons, 2.0), endpoint, "PODCAST20"
    )
    assert found == {"podcast20": CodePartner("key", "ptr_map", "config")}
    assert _code_reads(partnero) == 0


def test_a_miss_reads_the_codes_again_at_most_once_a_minute(partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_host", id="prt_host")
    clock = _Clock()
    book = CodeBook(parse_config({}).coupons, 2.0, clock)
    endpoint = _endpoint(partnero)

    async def scenario() -> list[dict[str, CodePartner]]:
        results = [await book.resolve(endpoint, [_sale("NEW5")])]
        partnero.add_promotion_code("NEW5", "ptr_host")
        clock.now += 30
        results.append(await book.resolve(endpoint, [_sale("NEW5")]))  # within the minute: cache only
        clock.now += 31
        results.append(await book.resolve(endpoint, [_sale("NEW5")]))  # a minute on: read again
        results.append(await book.resolve(endpoint, [_sale("NEW5")]))  # a hit: no read
        await book.aclose()
        return results

    results = asyncio.run(scenario())
    assert results[:2] == [{}, {}]
    assert results[2] == results[3] == {"new5": CodePartner("id", "prt_host", "partnero")}
    assert _code_reads(partnero) == 2


def test_partners_missing_from_the_list_are_read_from_the_single_code(partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_promotion_code("PODCAST20", "ptr_host")
    partnero.add_promotion_code("EVERYONE10")
    partnero.list_omits_partners = True
    found = _resolve(CodeBook(parse_config({}).coupons, 2.0), _endpoint(partnero), "podcast20", "everyone10")
    assert found == {"podcast20": CodePartner("id", "prt_host", "partnero")}
    # only the limited code needed its own get, by its exact spelling
    assert [r.path for r in partnero.requests if r.path.startswith("/v1/promotion-codes/")] == [
        "/v1/promotion-codes/PODCAST20"
    ]


def test_the_partner_restriction_shapes() -> None:
    assert partner_of({"limit_to_specific_partner": False, "coupon_specific_partners": [{"id": "p"}]}) is None
    assert partner_of({"limit_to_specific_partner": True, "coupon_specific_partners": {"id": "p1", "full_name": "A"}})
    assert partner_of({"limit_to_specific_partner": True, "coupon_specific_partners": []}) is None


def test_partnero_unavailable_defers_instead_of_losing_the_code(partnero: PartneroServer) -> None:
    partnero.fail_next(1, status=503, path="/v1/promotion-codes")
    with pytest.raises(CodesUnavailable):
        _resolve(CodeBook(parse_config({}).coupons, 2.0), _endpoint(partnero), "PODCAST20")


def test_no_reads_without_the_coupon_source_or_in_dry_run(partnero: PartneroServer) -> None:
    book = CodeBook(parse_config({}).coupons, 2.0)
    assert _resolve(book, _endpoint(partnero, partner_key=["metadata.partnero_partner"]), "PODCAST20") == {}
    dry = replace(_endpoint(partnero), partnero=_endpoint(partnero).partnero.model_copy(update={"dry_run": True}))
    assert _resolve(CodeBook(parse_config({}).coupons, 2.0), dry, "PODCAST20") == {}
    assert _code_reads(partnero) == 0


def test_config_refuses_coupon_as_a_customer_key_and_codes_that_differ_only_in_case() -> None:
    with pytest.raises(ConfigError, match="names a partner"):
        parse_config(
            {"endpoints": {"e": {"provider": "gumroad", "secret": "t0ken-for-tests", "customer_key": ["coupon"]}}}
        )
    with pytest.raises(ConfigError, match="same code"):
        parse_config({"coupons": {"codes": {"PODCAST20": "a", "podcast20": "b"}}})


# --- end to end -------------------------------------------------------------------------------------


@pytest.fixture
def code_case(request: pytest.FixtureRequest) -> Iterator[ProviderCase]:
    with CASES[request.param].provider_server() as running:
        yield running


def _settings(case: ProviderCase, **extra: Any) -> dict[str, Any]:
    endpoint = {**case.spec.get("endpoint", {}), "partner_key": PARTNER_SOURCES, **extra}
    return replace(case, spec={**case.spec, "endpoint": endpoint}).endpoint_settings


def _attributions(bridge: BridgeProcess) -> list[dict[str, Any] | None]:
    with sqlite3.connect(bridge.workdir / "bridge.db") as db:
        rows = db.execute("SELECT data FROM events WHERE kind = 'sale' ORDER BY id").fetchall()
    return [json.loads(data).get("attribution") for (data,) in rows]


def _host_code(partnero: PartneroServer, *other_partners: str) -> None:
    """PODCAST20 at Partnero, limited to the podcast host; other partners known too."""
    for key in other_partners:
        partnero.add_partner(key)
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_promotion_code("PODCAST20", "ptr_host")


def _post(bridge: BridgeProcess, case: ProviderCase, name: str) -> None:
    body, headers, query = case.signed(name)
    assert bridge.post("shop", body, headers, query).status_code == 200


@pytest.mark.parametrize("code_case", sorted(CODE_SALES), indirect=True)
def test_a_sale_with_a_partners_code_credits_that_partner(
    code_case: ProviderCase, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    file, code = CODE_SALES[code_case.provider]
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_promotion_code(code.upper(), "ptr_host")
    bridge = bridge_factory({"shop": _settings(code_case)})
    _post(bridge, code_case, file)
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    bridge.wait_settled()
    sale = partnero.live_transactions()[0]
    assert sale.partner_key == "ptr_host", bridge.logs()
    assert partnero.customers[sale.customer_key or ""].partner_key == "ptr_host"
    assert _attributions(bridge) == [{"rule": "code", "source": "coupon", "partner": "id:prt_host", "code": code}]


@pytest.mark.parametrize("provider", sorted(API_CODE_SALES))
def test_a_code_read_from_the_providers_api_credits_its_partner_once_even_after_a_failed_look_up(
    provider: str, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    case = CASES[provider]
    file, edits, path, discount, code = API_CODE_SALES[provider]
    partnero.add_partner("ptr_host", id="prt_host")
    partnero.add_promotion_code(code, "ptr_host")
    with ProviderApiServer(provider) as api:
        found = json.loads(case.body(discount))
        if path == "/v1/discount-redemptions":
            api.add(path, found)
        else:
            api.put(path, found.get("discount_id") or found["id"], found)
        api.fail_next(1, status=503)  # the first read of the call fails: it is read again, not lost
        base_url = api.url + ("" if provider == "dodopayments" else "/v1")
        bridge = bridge_factory({"shop": _settings(case, api_key=api.api_key, api_base_url=base_url)})
        body, headers, query = case.signed(file, edits=edits)
        assert bridge.post("shop", body, headers, query).status_code == 200
        partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
        bridge.wait_settled()
        assert [r.status for r in api.requests] == [503, 200]
    [sale] = partnero.live_transactions()
    assert sale.partner_key == "ptr_host", bridge.logs()
    assert _attributions(bridge) == [{"rule": "code", "source": "coupon", "partner": "id:prt_host", "code": code}]


def test_later_sales_need_no_code_and_the_map_wins(partnero: PartneroServer, bridge_factory: BridgeFactory) -> None:
    case = CASES["gumroad"]
    _host_code(partnero, "ptr_map")
    settings = _settings(case, customer_key=["email"])
    bridge = bridge_factory(
        {"shop": settings}, coupons={"codes": {"PODCAST20": "ptr_map"}}, admin={"token": "admin-token-0123456789"}
    )
    _post(bridge, case, "sale_offer_code.txt")
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    _post(bridge, case, "recurring_charge.txt")  # the renewal carries no code
    partnero.wait_for(lambda s: len(s.live_transactions()) == 2)
    bridge.wait_settled()
    assert {t.partner_key for t in partnero.live_transactions()} == {"ptr_map"}
    assert partnero.customers["ada@example.com"].partner_key == "ptr_map"
    first, renewal = _attributions(bridge)
    assert first == {"rule": "code", "source": "coupon", "partner": "ptr_map", "code": "podcast20"}
    assert renewal == {"rule": "memory", "partner": "ptr_map"}
    # the operator sees the rule in the console and in `events`
    bearer = {"authorization": "Bearer admin-token-0123456789"}
    rows = httpx.get(f"{bridge.url}/admin/events", params={"format": "json"}, headers=bearer).json()["rows"]
    assert [r["attributed"] for r in rows] == ["memory", "code"]
    page = httpx.get(f"{bridge.url}/admin/events/{rows[1]['id']}", headers=bearer).text
    assert 'code: partner <span class="key">ptr_map</span> (code <span class="key">podcast20</span>)' in page
    table = cli(bridge, "events").stdout.splitlines()
    assert "ATTRIBUTED" in table[0].split() and " memory " in table[1] and " code " in table[2]
    shown = cli(bridge, "events", "show", rows[1]["id"]).stdout
    assert "attributed: code: partner ptr_map (code podcast20)" in shown


@pytest.mark.parametrize("overrides", [False, True])
def test_the_cookie_keeps_its_referral_unless_the_endpoint_lets_the_code_override(
    overrides: bool, partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    case = CASES["gumroad"]
    _host_code(partnero, "ptr_cookie")
    settings = _settings(case, customer_key=["email"], coupon_overrides=overrides)
    bridge = bridge_factory({"shop": settings})
    _post(bridge, case, "sale_offer_code_cookie.txt")
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    bridge.wait_settled()
    winner = "ptr_host" if overrides else "ptr_cookie"
    assert partnero.live_transactions()[0].partner_key == winner
    assert [a["rule"] if a else None for a in _attributions(bridge)] == ["code" if overrides else "cookie"]


def test_a_code_does_not_steal_a_customer_the_relay_created(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    case = CASES["gumroad"]
    _host_code(partnero, "ptr_anna")
    settings = _settings(case, customer_key=["email"], coupon_overrides=True)
    bridge = bridge_factory({"shop": settings}, signups={"token": SIGNUP_TOKEN})
    signup = {"key": "ada@example.com", "email": "ada@example.com", "partner": {"key": "ptr_anna"}}
    answer = httpx.post(f"{bridge.url}/signups", json=signup, headers={"Authorization": f"Bearer {SIGNUP_TOKEN}"})
    assert answer.status_code == 202
    partnero.wait_for(lambda s: "ada@example.com" in s.customers)
    _post(bridge, case, "sale_offer_code.txt")
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    bridge.wait_settled()
    assert partnero.live_transactions()[0].partner_key == "ptr_anna"
    assert _attributions(bridge) == [{"rule": "sign-up", "partner": "ptr_anna", "code": "podcast20"}]


def test_a_sign_up_without_a_partner_is_attributed_by_its_first_code(
    partnero: PartneroServer, bridge_factory: BridgeFactory
) -> None:
    case = CASES["gumroad"]
    _host_code(partnero)
    bridge = bridge_factory({"shop": _settings(case, customer_key=["email"])}, signups={"token": SIGNUP_TOKEN})
    signup = {"key": "ada@example.com", "email": "ada@example.com"}
    answer = httpx.post(f"{bridge.url}/signups", json=signup, headers={"Authorization": f"Bearer {SIGNUP_TOKEN}"})
    assert answer.status_code == 202
    _post(bridge, case, "sale_offer_code.txt")
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    bridge.wait_settled()
    assert partnero.customers["ada@example.com"].partner_key == "ptr_host"
    assert partnero.live_transactions()[0].partner_key == "ptr_host"


def test_the_generic_adapters_read_the_code_where_fields_coupon_code_points() -> None:
    case = CASES["standardwebhooks"]
    settings = case.endpoint_settings
    settings["fields"] = {**settings["fields"], "coupon_code": "data.discount_code"}
    endpoint = parse_config({"endpoints": {"e": settings}}).endpoints["e"]
    document = json.loads(case.body("dodo_payment_succeeded.json"))
    document["data"]["discount_code"] = "PODCAST20"
    request = WebhookRequest("POST", "/webhooks/e", {}, json.dumps(document).encode())
    [sale] = endpoint.adapter.parse(request)
    assert (sale.kind, sale.coupon_code) == (EventKind.SALE, "PODCAST20")

"""The checkout script in a real browser: headless Chromium opens a merchant page on one loopback origin
that includes /partnero-checkout.js from a running bridge app on another, with and without the cookie.

Chromium resolves no host name at all here (`--host-resolver-rules`), so the provider URLs on the page
(and the iframe) never leave the machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bridge.app import create_app
from bridge.config import Config, DeliverySettings, PartneroSettings, ServerSettings
from bridge.store.sqlite import SQLiteStore
from tests.browser_kit import browser_mark, chromium, skip_reason

if skip_reason() is None:
    from selenium.webdriver.support.wait import WebDriverWait

pytestmark = browser_mark()

# the partner key as PartneroJS stores it: URI-encoded
COOKIE_VALUE = "ptr%2042%2F%C3%A9"
ENCODED_KEY = "ptr%2042%2F%C3%A9"  # what the script writes back: encodeURIComponent("ptr 42/é")

LINKS = {
    "ls": "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e?embed=1",
    "ls-short": "https://shop.lemonsqueezy.com/buy/6c1f0b4e",
    "ls-custom": "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e?checkout[custom][user_id]=42&checkout[email]=a%40b.c",
    "ls-ours": "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e?checkout[custom][partnero_partner]=set-by-merchant",
    "ls-hash": "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e#pay",
    "gumroad": "https://gumroad.com/l/demo",
    "gumroad-seller": "https://seller.gumroad.com/l/demo?wanted=true",
    "polar": "https://buy.polar.sh/polar_cl_AbC123",
    "polar-ref": "https://buy.polar.sh/polar_cl_AbC123?reference_id=merchant-own",
    "polar-sandbox": "https://sandbox-api.polar.sh/v1/checkout-links/polar_cl_AbC123/redirect",
    "creem": "https://www.creem.io/payment/prod_6tW66i0oZM7w1qXReHJrwg",
    "creem-test": "https://www.creem.io/test/payment/prod_6tW66i0oZM7w1qXReHJrwg?metadata[campaign]=x",
    "dodo": "https://checkout.dodopayments.com/buy/pdt_0NofQ?quantity=1",
    "dodo-test": "https://test.checkout.dodopayments.com/buy/pdt_0NofQ",
    # never touched: other sites, look-alike hosts, non-checkout paths, relative and non-http links
    "other": "https://example.com/checkout/buy/1",
    "lookalike": "https://evillemonsqueezy.com/checkout/buy/6c1f0b4e",
    "ls-dashboard": "https://app.lemonsqueezy.com/settings/general",
    "gumroad-profile": "https://seller.gumroad.com/",
    "relative": "/pricing",
    "mailto": "mailto:sales@example.com",
}

DECORATED = {
    "ls": LINKS["ls"] + "&checkout[custom][partnero_partner]=" + ENCODED_KEY,
    "ls-short": LINKS["ls-short"] + "?checkout[custom][partnero_partner]=" + ENCODED_KEY,
    "ls-custom": LINKS["ls-custom"] + "&checkout[custom][partnero_partner]=" + ENCODED_KEY,
    "ls-ours": LINKS["ls-ours"],
    "ls-hash": "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e?checkout[custom][partnero_partner]="
    + ENCODED_KEY
    + "#pay",
    "gumroad": LINKS["gumroad"] + "?partnero_partner=" + ENCODED_KEY,
    "gumroad-seller": LINKS["gumroad-seller"] + "&partnero_partner=" + ENCODED_KEY,
    "polar": LINKS["polar"] + "?reference_id=" + ENCODED_KEY,
    "polar-ref": LINKS["polar-ref"],
    "polar-sandbox": LINKS["polar-sandbox"] + "?reference_id=" + ENCODED_KEY,
    "creem": LINKS["creem"] + "?metadata[partnero_partner]=" + ENCODED_KEY,
    "creem-test": LINKS["creem-test"] + "&metadata[partnero_partner]=" + ENCODED_KEY,
    "dodo": LINKS["dodo"] + "&metadata_partnero_partner=" + ENCODED_KEY,
    "dodo-test": LINKS["dodo-test"] + "?metadata_partnero_partner=" + ENCODED_KEY,
}
UNTOUCHED = {
    name: LINKS[name] for name in ("other", "lookalike", "ls-dashboard", "gumroad-profile", "relative", "mailto")
}

IFRAME = "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e?embed=1"
FORM = "https://shop.lemonsqueezy.com/checkout/buy/6c1f0b4e"

READ_PAGE = """
const links = {};
for (const a of document.querySelectorAll("a[id]")) links[a.id] = a.getAttribute("href");
const fields = (id) => [...document.getElementById(id).querySelectorAll("input")].map((i) => [i.name, i.value]);
return {links, iframe: document.getElementById("frame").getAttribute("src"),
        form: fields("form"), formOwn: fields("form-own"), ready: !!window.PartneroCheckout};
"""


def merchant_page(bridge_url: str) -> str:
    anchors = "\n".join(f'<a id="{name}" href="{href}">{name}</a>' for name, href in LINKS.items())
    script = f'<script src="{bridge_url}/partnero-checkout.js" defer></script>'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title>
{script}
{script}
<script>
  // the test page never navigates: the script's capture listeners still run first
  document.addEventListener("click", function (e) {{ e.preventDefault(); }});
  document.addEventListener("submit", function (e) {{ e.preventDefault(); }});
</script>
</head><body>
{anchors}
<iframe id="frame" src="{IFRAME}"></iframe>
<form id="form" action="{FORM}" method="get"><input name="quantity" value="1"></form>
<form id="form-own" action="https://gumroad.com/l/demo"><input type="hidden" name="partnero_partner" value="x"></form>
</body></html>"""


class ThreadServer:
    """An ASGI app on an ephemeral loopback port, served by uvicorn in a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve(),), daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)


@pytest.fixture(scope="module")
def bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = Config(PartneroSettings(), "sqlite://", ServerSettings(), DeliverySettings(), {})
    store = SQLiteStore(str(tmp_path_factory.mktemp("bridge") / "unused.db"))  # never opened: no route needs it
    with ThreadServer(create_app(config, store, None)) as url:
        yield url


@pytest.fixture(scope="module")
def shop_url(bridge_url: str) -> Iterator[str]:
    async def page(request: Request) -> Response:
        return HTMLResponse(merchant_page(bridge_url))

    async def blank(request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>blank</title>")

    with ThreadServer(Starlette(routes=[Route("/", page), Route("/blank", blank)])) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def open_shop(browser: Any, shop_url: str, cookie: str | None) -> dict[str, Any]:
    browser.get(shop_url + "/blank")
    browser.delete_all_cookies()
    if cookie is not None:
        browser.add_cookie({"name": "partnero_partner", "value": cookie, "path": "/"})
    browser.get(shop_url + "/")
    WebDriverWait(browser, 5).until(lambda d: d.execute_script("return !!window.PartneroCheckout"))
    page: dict[str, Any] = browser.execute_script(READ_PAGE)
    return page


def test_with_the_cookie_every_provider_link_carries_the_key(browser: Any, shop_url: str) -> None:
    page = open_shop(browser, shop_url, COOKIE_VALUE)
    assert page["links"] == DECORATED | UNTOUCHED
    assert page["iframe"] == IFRAME + "&checkout[custom][partnero_partner]=" + ENCODED_KEY
    assert page["form"] == [["quantity", "1"], ["checkout[custom][partnero_partner]", "ptr 42/é"]]
    # the form already had the field: kept as the merchant set it, nothing added
    assert page["formOwn"] == [["partnero_partner", "x"]]


def test_without_the_cookie_nothing_changes(browser: Any, shop_url: str) -> None:
    page = open_shop(browser, shop_url, None)
    assert page["ready"] is True
    assert page["links"] == LINKS
    assert page["iframe"] == IFRAME
    assert page["form"] == [["quantity", "1"]]
    assert (
        browser.execute_script("return PartneroCheckout.decorate(arguments[0])", LINKS["gumroad"]) == (LINKS["gumroad"])
    )


@pytest.mark.parametrize("cookie", ["", "%20%20", "%20"])
def test_an_empty_cookie_is_no_key(browser: Any, shop_url: str, cookie: str) -> None:
    assert open_shop(browser, shop_url, cookie)["links"] == LINKS


def test_links_added_or_changed_after_load_are_decorated(browser: Any, shop_url: str) -> None:
    open_shop(browser, shop_url, COOKIE_VALUE)
    browser.execute_script(
        """
        const box = document.createElement("div");
        box.innerHTML = '<a id="late" href="https://seller.gumroad.com/l/late">late</a>'
          + '<a id="late-other" href="https://example.org/l/late">other</a>';
        document.body.appendChild(box);
        document.getElementById("other").setAttribute("href", "https://www.creem.io/payment/prod_late");
        """
    )
    wait = WebDriverWait(browser, 5)
    wait.until(lambda d: "partnero_partner" in d.execute_script("return document.getElementById('late').href"))
    late = browser.execute_script("return document.getElementById('late').getAttribute('href')")
    assert late == "https://seller.gumroad.com/l/late?partnero_partner=" + ENCODED_KEY
    wait.until(lambda d: "partnero" in d.execute_script("return document.getElementById('other').href"))
    assert browser.execute_script("return document.getElementById('other').getAttribute('href')") == (
        "https://www.creem.io/payment/prod_late?metadata[partnero_partner]=" + ENCODED_KEY
    )
    assert browser.execute_script("return document.getElementById('late-other').getAttribute('href')") == (
        "https://example.org/l/late"
    )


def test_a_cookie_written_after_load_is_used_at_click_time(browser: Any, shop_url: str) -> None:
    page = open_shop(browser, shop_url, None)
    assert page["links"]["dodo"] == LINKS["dodo"]
    # PartneroJS writes the cookie late on the visit that carries the referral
    browser.execute_script("document.cookie = 'partnero_partner=' + encodeURIComponent('late key') + '; path=/'")
    browser.find_element("id", "dodo").click()
    assert browser.execute_script("return document.getElementById('dodo').getAttribute('href')") == (
        LINKS["dodo"] + "&metadata_partnero_partner=late%20key"
    )
    assert browser.execute_script("return PartneroCheckout.decorate(arguments[0])", LINKS["polar"]) == (
        LINKS["polar"] + "?reference_id=late%20key"
    )
    browser.execute_script("document.getElementById('form').requestSubmit()")
    fields = browser.execute_script("return [...document.forms.form.elements].map((i) => i.name)")
    assert fields == ["quantity", "checkout[custom][partnero_partner]"]

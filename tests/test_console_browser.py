"""The console in a real browser: headless Chromium against the real bridge process and the Partnero test
server. Log in, find a sale by email, open its detail, replay dead letters and see them delivered, pause
and resume a program; a page on another origin cannot change anything, with or without the session.

With BRIDGE_SCREENSHOTS=<dir> each page is also saved as a PNG (docs/console.md shows them).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.bridge_process import BridgeProcess
from tests.browser_kit import browser_mark, chromium, skip_reason
from tests.e2e_kit import provider_cases
from tests.loopback import LoopbackServer
from tests.partnero_server import PartneroServer

if skip_reason() is None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

pytestmark = [*browser_mark(), pytest.mark.timeout(120)]

LS = next(c for c in provider_cases() if c.provider == "lemonsqueezy")
SALE = LS.spec["sale"]
TOKEN = "console-test-token-42"
SIGNUP_TOKEN = "signup-test-token-42"
SHOTS = os.environ.get("BRIDGE_SCREENSHOTS")


@pytest.fixture
def bridge(bridge_factory: Callable[..., BridgeProcess], partnero: PartneroServer) -> BridgeProcess:
    partnero.add_customer(SALE["customer_key"])
    return bridge_factory(
        {"shop": LS.endpoint_settings},
        admin={"token": TOKEN},
        signups={"token": SIGNUP_TOKEN},
    )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium") as driver:
        yield driver


def shot(browser: Any, name: str) -> None:
    """The whole page as a PNG, when BRIDGE_SCREENSHOTS names a folder."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    capture = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    (Path(SHOTS) / f"{name}.png").write_bytes(base64.b64decode(capture["data"]))


def api(bridge: BridgeProcess, path: str) -> Any:
    answer = httpx.get(f"{bridge.url}{path}", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def post_sale(bridge: BridgeProcess, unique: str) -> str:
    """A genuine signed sale with its own payment id; returns its transaction key."""
    body = LS.body(SALE["file"]).replace(b'"id": "1"', f'"id": "{unique}"'.encode(), 1)
    signed = LS.endpoint().adapter.sign(body, LS.secret, time.time())
    headers = {"content-type": "application/json", **signed.headers}
    assert bridge.post("shop", body, headers).status_code == 200
    return f"lemonsqueezy:order:{unique}"


def log_in(browser: Any, bridge: BridgeProcess, page: str = "/admin/events") -> None:
    browser.get(bridge.url + page)
    assert "/admin/login" in browser.current_url
    shot(browser, "login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(browser, 10).until(lambda d: "/admin/login" not in d.current_url)
    assert browser.current_url == bridge.url + page


def test_log_in_find_a_sale_by_email_and_open_its_detail(
    bridge: BridgeProcess, partnero: PartneroServer, browser: Any
) -> None:
    key = post_sale(bridge, "1")
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    email = LS.endpoint().adapter.parse(_request(LS.body(SALE["file"])))[0].customer.email
    assert email
    log_in(browser, bridge)
    search = browser.find_element(By.ID, "q")
    search.send_keys(email)
    search.submit()
    WebDriverWait(browser, 10).until(lambda d: "q=" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")
    assert len(rows) == 1 and key in rows[0].text and "delivered" in rows[0].text
    shot(browser, "events")
    rows[0].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 10).until(lambda d: "/admin/events/" in d.current_url)
    page = browser.find_element(By.TAG_NAME, "main").text
    assert key in page and "Partnero operations" in page and "created" in page and " ms" in page
    assert "Stored call" in page and '"event_name": "order_created"' in page
    shot(browser, "event")

    browser.get(bridge.url + "/admin/events?q=nobody%40example.com")
    assert "Nothing matches." in browser.find_element(By.TAG_NAME, "main").text


def test_replay_dead_letters_one_and_in_bulk(bridge: BridgeProcess, partnero: PartneroServer, browser: Any) -> None:
    refused = {"message": "The amount units field is invalid."}
    partnero.fail_next(3, status=422, body=refused, method="POST", path="/v1/transactions")
    keys = [post_sale(bridge, unique) for unique in ("11", "12", "13")]
    wait_until(lambda: len(api(bridge, "/admin/dead?format=json")["rows"]) == 3)
    assert partnero.live_transactions() == []

    log_in(browser, bridge, "/admin/dead")
    shot(browser, "dead")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "main tbody tr") if keys[0] in r.text)
    row.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 10).until(lambda d: "notice=replayed" in d.current_url)
    assert "Replay queued for 1 event(s)." in browser.page_source
    partnero.wait_for(lambda s: [t.key for t in s.live_transactions()] == [keys[0]])
    browser.refresh()
    assert "delivered" in browser.find_element(By.CSS_SELECTOR, "main h1").text

    browser.get(bridge.url + "/admin/dead")
    browser.find_element(By.CSS_SELECTOR, "form.bulk button").click()
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading == "Replay 2 events?"
    shot(browser, "confirm")
    assert len(partnero.live_transactions()) == 1  # nothing happens before the confirmation
    browser.find_element(By.CSS_SELECTOR, "main form button").click()
    WebDriverWait(browser, 10).until(lambda d: "notice=replayed" in d.current_url)
    partnero.wait_for(lambda s: sorted(t.key for t in s.live_transactions()) == sorted(keys))
    assert len(partnero.transactions) == 3  # each sale exactly once


def test_pause_and_resume_a_program(bridge: BridgeProcess, partnero: PartneroServer, browser: Any) -> None:
    log_in(browser, bridge, "/admin")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label^='Pause delivery to shop']").click()
    WebDriverWait(browser, 10).until(lambda d: "notice=paused" in d.current_url)
    assert "paused" in browser.find_element(By.ID, "h-programs").find_element(By.XPATH, "..").text
    key = post_sale(bridge, "21")
    wait_until(lambda: api(bridge, "/admin/events?format=json")["rows"][:1] != [])
    assert api(bridge, "/admin/events?format=json")["rows"][0]["status"] == "pending"
    # a paused program gets nothing, however many worker rounds pass (poll interval 0.05 s)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert partnero.requests == []
        time.sleep(0.05)
    _signup(bridge)
    browser.refresh()
    shot(browser, "overview")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label^='Resume delivery to shop']").click()
    WebDriverWait(browser, 10).until(lambda d: "notice=resumed" in d.current_url)
    partnero.wait_for(lambda s: [t.key for t in s.live_transactions()] == [key])
    browser.get(bridge.url + "/admin/signups")
    assert "cust-browser-1" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "signups")
    browser.set_window_size(390, 844)
    browser.get(bridge.url + "/admin")
    shot(browser, "overview-phone")


def test_no_token_or_a_cross_site_post_changes_nothing(
    bridge: BridgeProcess, partnero: PartneroServer, browser: Any
) -> None:
    [program] = api(bridge, "/admin?format=json")["programs"]
    pause = f"{bridge.url}/admin/programs/{program['program']}/pause"
    assert httpx.post(pause, timeout=10).status_code == 401
    assert httpx.post(pause, headers={"authorization": "Bearer wrong"}, timeout=10).status_code == 401

    async def evil(request: Request) -> Response:
        # another port of 127.0.0.1: the same *site* (the session cookie goes along), another origin
        return HTMLResponse(
            f'<!doctype html><form id="f" method="post" action="{pause}"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )

    server = LoopbackServer(Starlette(routes=[Route("/", evil)]), "evil page")
    server.start()
    try:
        for logged_in in (False, True):
            if logged_in:
                log_in(browser, bridge, "/admin")
            browser.get(f"http://127.0.0.1:{server.port}/")
            WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(bridge.url))
            text = browser.find_element(By.TAG_NAME, "body").text
            assert "cross-origin request refused" in text if logged_in else "log in" in text.lower()
            assert api(bridge, "/admin?format=json")["programs"][0]["state"] != "paused"
    finally:
        server.stop()


def _signup(bridge: BridgeProcess) -> None:
    answer = httpx.post(
        f"{bridge.url}/signups",
        json={"key": "cust-browser-1", "email": "ann@example.com", "partner": {"key": "ptr-1"}},
        headers={"authorization": f"Bearer {SIGNUP_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 202


def _request(body: bytes) -> Any:
    from providers.base import WebhookRequest

    return WebhookRequest("POST", "/", {"content-type": "application/json"}, body)

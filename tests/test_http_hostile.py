"""Random requests to every route of the real bridge process, over HTTP through its own server limits.

tests/test_fuzz.py drives the application in-process; this file sends what hypothesis draws (any
method, every route, junk and oversized headers, each provider's junk bodies) to `partnero-bridge
serve` on loopback and checks, after each: no 5xx, nothing stored that was not verified, the process
still up and `/healthz` still answering.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bridge_process import BridgeProcess
from tests.fuzz_kit import Blob, junk_requests
from tests.test_fuzz import HttpCall, http_providers

SIGNUP_TOKEN = "relay-token-0123456789abcdef"
ROUTES = ("/signups", "/healthz", "/readyz", "/partnero-checkout.js", "/webhooks/unknown", "/", "/webhooks/")


class Attack(HttpCall):
    """test_fuzz's request shape, written as raw bytes so that only the server decides what is valid."""

    def __repr__(self) -> str:
        # megabyte headers and bodies: a failure report shows their shape, not their bytes
        shown = [(n[:40], v[:80] + (b"..." if len(v) > 80 else b"")) for n, v in self.headers]
        return f"Attack({self.method} {self.url[:200]!r}, headers={shown!r}, body={len(self.body)} bytes)"

    def wire(self) -> bytes:
        head = [f"{self.method} {self.url} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
        head += [name + b": " + value for name, value in self.headers if name.lower() != b"content-length"]
        head.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    from tests.e2e_kit import provider_cases

    cases = {case.provider: case for case in provider_cases()}
    config: dict[str, Any] = {
        "server": {"request_timeout_seconds": 5},
        "signups": {"token": SIGNUP_TOKEN},
        "endpoints": {p: cases[p].endpoint_settings for p in http_providers()},
    }
    process = BridgeProcess(tmp_path_factory.mktemp("hostile"), config)
    try:
        yield process.start()
    finally:
        process.kill()


def stored(bridge: BridgeProcess) -> int:
    with sqlite3.connect(bridge.workdir / "bridge.db") as db:
        return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])


def _wire(value: str) -> bytes:
    # any bytes a client can put in a header value: not the line breaks and NUL that end or break it
    return value.encode("utf-8").replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")


@st.composite
def attacks(draw: st.DrawFn) -> Attack:
    provider = draw(st.sampled_from(http_providers()))
    request, _ = draw(junk_requests(provider))
    path = draw(st.one_of(st.sampled_from([f"/webhooks/{p}" for p in http_providers()]), st.sampled_from(ROUTES)))
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS", "HEAD"]))
    headers = [(name.encode(), _wire(value)) for name, value in request.headers.items()]
    extra = st.tuples(st.from_regex(r"[A-Za-z0-9-]{1,30}", fullmatch=True), st.text(max_size=300))
    headers += [(name.encode(), _wire(value)) for name, value in draw(st.lists(extra, max_size=4))]
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        # past the 64 KiB header cap: refused with 431 before any work
        headers.append((b"x-pad", b"a" * draw(st.integers(min_value=60_000, max_value=80_000))))
    authorization = draw(st.sampled_from([None, f"Bearer {SIGNUP_TOKEN}", f"bearer {SIGNUP_TOKEN}x", SIGNUP_TOKEN]))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    body = request.body
    if draw(st.integers(min_value=0, max_value=15)) == 0:
        body = Blob(b"x" * draw(st.integers(min_value=1_048_577, max_value=1_100_000)))
    query = quote(request.query_string, safe="=&%+")[:2048]
    return Attack(method, f"{path}?{query}" if query else path, headers, body)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
    database=None,
)
@given(attack=attacks())
def test_random_requests_to_every_route_never_fail_store_nothing_and_leave_the_bridge_up(
    bridge: BridgeProcess, attack: Attack
) -> None:
    before = stored(bridge)
    status, reply = send(bridge, attack.wire())
    # no answer at all: the server refused (431, 408, 413) and closed while the client still sent
    assert status < 500, (status, reply[:300])
    if status == 200 and "/webhooks/" in attack.url:
        assert b'"status":"acknowledged' in reply, reply[:300]
    # a sign-up with the right token and a valid body is stored; nothing drawn here is one
    assert stored(bridge) == before, "an unverified request was stored"
    assert bridge.proc is not None and bridge.proc.poll() is None, bridge.logs()[-2000:]
    status, _ = send(bridge, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200


def send(bridge: BridgeProcess, request: bytes) -> tuple[int, bytes]:
    """(status, whole answer) of one request on its own connection; status 0 when none came back."""
    reply = b""
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
    return (int(match.group(1)) if match else 0), reply


def test_a_genuine_request_is_still_stored_after_the_attacks(bridge: BridgeProcess) -> None:
    from tests.e2e_kit import provider_cases

    before = stored(bridge)
    case = next(c for c in provider_cases() if c.provider == http_providers()[0])
    body, headers, query = case.signed(case.spec["sale"]["file"], time.time())
    response = httpx.post(f"{bridge.url}/webhooks/{case.provider}?{query}", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "stored"
    assert stored(bridge) == before + 1
    assert "Traceback" not in bridge.logs()

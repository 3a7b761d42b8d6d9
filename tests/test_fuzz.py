"""Property-based tests of every adapter with an e2e.json, and of ingest over in-process HTTP.

Per adapter: junk never verifies; any change to a genuinely signed sample that touches what the scheme
signs is refused; parse raises nothing but PayloadError and returns well-formed events; delivery_id
never raises. Per app: random requests never answer 5xx and store nothing unless authentic.
Fixed corpora (every field of the sample swept through bad values, every signature field set to each
trouble value) run beside the random properties, so the rare cases are hit on every run. The default run
is small; `-m slow` runs the same properties on many more examples.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import parse_config
from bridge.store.base import StoredCall
from bridge.store.sqlite import SQLiteStore
from providers.base import AcknowledgeOnly, PayloadError, ProviderAdapter, SignatureError, WebhookRequest
from tests.e2e_kit import ProviderCase
from tests.fuzz_kit import (
    CASES,
    NOW,
    Blob,
    Mutation,
    Subject,
    accepts,
    assert_well_formed,
    field_sweep,
    header_names,
    junk_requests,
    junk_values,
    mutations,
    overrides,
    payload_bodies,
    subject,
    trouble_mutations,
    trouble_requests,
)

T = TypeVar("T")

FAST, SLOW = 60, 1000
BUDGETS = [
    pytest.param(FAST, id="fast"),
    pytest.param(SLOW, id="slow", marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
]
PROVIDERS = [case.provider for case in CASES]
# adapters that override `authenticate` (PayPal's certificate fetch) or read through an API (Mollie)
NEEDS_NETWORK = {
    case.provider: bool(case.spec.get("server"))
    or type(case.endpoint().adapter).authenticate is not ProviderAdapter.authenticate
    for case in CASES
}
MAX_BODY = 65_536
MAX_QUERY = 4_096
# declared lengths a client may send: past the int() digit limit, non-ASCII digits, signs, exponents
TROUBLE_LENGTHS = (b"9" * 5000, b"9" * 400, b"-1", b"+5", b"1e3", b" 12", b"", b"0x10", b"\xd9\xa1")


def holds(budget: int, strategy: st.SearchStrategy[T], check: Callable[[T], None]) -> None:
    """Run `check` on `budget` examples of `strategy`; hypothesis shrinks and prints any failure."""

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(strategy)
    def run(example: T) -> None:
        check(example)

    run()


def test_every_wave_one_provider_is_fuzzed() -> None:
    assert {"lemonsqueezy", "polar", "gumroad", "creem", "dodopayments"} <= set(PROVIDERS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_sample_verifies_and_something_guards_it(provider: str) -> None:
    """The baseline of the verify properties: sign() and verify() are inverses on the e2e sale sample."""
    s = subject(provider)
    skip_unless_verifiable(s)
    assert s.genuine_verifies, f"{provider}: the signed sale sample does not verify"
    # a scheme where no header or parameter is needed would let any request through
    assert s.guarded_headers or s.guarded_params, f"{provider}: nothing in the signed request guards it"


def verify_refuses(s: Subject, request: WebhookRequest, now: float = NOW) -> None:
    try:
        s.adapter.verify(request, now)
    except (SignatureError, AcknowledgeOnly):
        return
    raise AssertionError(f"{s.provider}: verify accepted a request nobody signed")


def verify_answers(s: Subject, mutation: Mutation) -> None:
    accepted = accepts(s.adapter, mutation.request, mutation.now)
    if mutation.expect == "reject":
        assert not accepted, f"{s.provider}: verify accepted a tampered sample ({mutation.label})"
    elif mutation.expect == "accept":
        assert accepted, f"{s.provider}: verify refused the genuine sample with harmless changes ({mutation.label})"


def parse_is_well_formed(s: Subject, request: WebhookRequest) -> None:
    if not overrides(s.adapter, "parse"):
        # everything happens in `read`, against the provider's API (not fuzzed: it needs the server)
        return
    try:
        events = s.adapter.parse(request)
    except PayloadError:
        return
    assert_well_formed(events)


def delivery_id_is_text(s: Subject, request: WebhookRequest) -> None:
    # not necessarily stable: Mollie's pings repeat the payment id, so each must count as a new delivery
    delivery_id = s.adapter.delivery_id(request)
    assert isinstance(delivery_id, str) and delivery_id, f"{s.provider}: delivery_id gave {delivery_id!r}"


def all_pass(title: str, checks: Iterable[tuple[str, Callable[[], None]]]) -> None:
    """Run every check of a fixed corpus and report all failures at once: one run shows all that is wrong."""
    failures = []
    for label, check in checks:
        try:
            check()
        except Exception as exc:
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, f"{title}: {len(failures)} failures\n" + "\n".join(failures[:25])


def skip_unless_verifiable(s: Subject) -> None:
    if not s.genuine_verifies and s.needs_network:
        pytest.skip(f"{s.provider}: verification needs the provider's API")


# --- verify ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_verify_on_trouble_values(provider: str) -> None:
    s = subject(provider)
    skip_unless_verifiable(s)
    checks: list[tuple[str, Callable[[], None]]] = []
    for label, request in trouble_requests(provider):
        checks.append((label, functools.partial(verify_refuses, s, request)))
        checks.append((f"delivery_id of {label}", functools.partial(delivery_id_is_text, s, request)))
    for mutation in trouble_mutations(provider):
        checks.append((mutation.label, functools.partial(verify_answers, s, mutation)))
    all_pass(provider, checks)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_verify_refuses_junk(provider: str, budget: int) -> None:
    s = subject(provider)
    skip_unless_verifiable(s)
    holds(budget, junk_requests(provider), lambda example: verify_refuses(s, *example))


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_verify_refuses_tampered_samples(provider: str, budget: int) -> None:
    s = subject(provider)
    skip_unless_verifiable(s)
    assert s.genuine_verifies, f"{provider}: the signed sale sample does not verify"
    holds(budget, mutations(provider), lambda mutation: verify_answers(s, mutation))


# --- parse and delivery_id ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_parse_and_delivery_id_on_field_sweep(provider: str) -> None:
    s = subject(provider)
    checks: list[tuple[str, Callable[[], None]]] = []
    for label, body in field_sweep(provider):
        request = s.request(body)
        checks.append((f"parse, {label}", functools.partial(parse_is_well_formed, s, request)))
        checks.append((f"delivery_id, {label}", functools.partial(delivery_id_is_text, s, request)))
    all_pass(provider, checks)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_parse_raises_only_payload_error(provider: str, budget: int) -> None:
    s = subject(provider)
    headers = st.one_of(
        st.just(dict(s.headers)),
        st.fixed_dictionaries({name: junk_values() for name in s.headers}),
    )
    examples = st.builds(s.request, payload_bodies(provider), headers)
    holds(budget, examples, lambda request: parse_is_well_formed(s, request))


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_delivery_id_never_raises(provider: str, budget: int) -> None:
    s = subject(provider)
    requests = st.one_of(
        junk_requests(provider).map(lambda example: example[0]),
        payload_bodies(provider).map(s.request),
    )
    holds(budget, requests, lambda request: delivery_id_is_text(s, request))


# --- ingest over HTTP -----------------------------------------------------------------------------------


@functools.cache
def http_providers() -> tuple[str, ...]:
    """Providers whose verification runs in-process: default authenticate, no provider API involved."""
    return tuple(p for p in PROVIDERS if not subject(p).needs_network)


@dataclass(frozen=True)
class Ingest:
    client: TestClient
    store: SQLiteStore

    def stored(self) -> dict[int, StoredCall]:
        return {call.id: call for call in self.store.run_sync(lambda tx: tx.received_calls(1_000_000))}


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    """One app with an endpoint per provider (named after it), a real SQLite store and no worker."""
    if not http_providers():
        pytest.skip("no provider verifies in-process")
    raw: dict[str, Any] = {
        "server": {"max_body_bytes": MAX_BODY},
        "endpoints": {p: _case(p).endpoint_settings for p in http_providers()},
    }
    store = SQLiteStore(str(tmp_path_factory.mktemp("fuzz") / "bridge.db"))
    asyncio.run(store.open())
    with TestClient(create_app(parse_config(raw), store, None)) as client:
        yield Ingest(client, store)
    asyncio.run(store.close())


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _wire(value: str) -> bytes:
    # what a client can put on the wire: any bytes but the line breaks and NUL that end or break a header
    return value.encode("utf-8").replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")


def _http_call(request: WebhookRequest, method: str = "POST", path: str | None = None) -> HttpCall:
    # clients and servers refuse URLs past a few kB; headers carry the huge values
    query = quote(request.query_string, safe="=&%+")[:MAX_QUERY]
    path = request.path if path is None else path
    headers = [(name.encode(), _wire(value)) for name, value in request.headers.items()]
    return HttpCall(method, f"{path}?{query}" if query else path, headers, request.body)


@st.composite
def junk_calls(draw: st.DrawFn, provider: str) -> HttpCall:
    """The adapter's junk request, mostly POSTed to its endpoint, else any method to any path, sometimes
    oversized or with a false content-length."""
    request, _ = draw(junk_requests(provider))
    method = draw(
        st.one_of(
            st.just("POST"),
            st.just("POST"),
            st.just("POST"),
            st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
            st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
        )
    )
    segment = st.text(min_size=1, max_size=20).map(lambda t: quote(t, safe=""))
    path = draw(
        st.one_of(
            st.just(request.path),
            st.just(request.path),
            st.just(request.path),
            st.sampled_from(["/webhooks/unknown", "/webhooks/", "/healthz", "/readyz", "/", "/webhooks//x"]),
            segment.map(lambda seg: f"{request.path}/{seg}"),
            segment.map(lambda seg: f"/webhooks/{seg}"),
        )
    )
    call = _http_call(request, method, path)
    if draw(st.integers(min_value=0, max_value=15)) == 0:
        call = replace(call, body=Blob(b"x" * (MAX_BODY + draw(st.integers(min_value=1, max_value=1000)))))
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        length = draw(st.one_of(st.integers(min_value=0, max_value=10**12).map(str), junk_values()))
        call = replace(call, headers=[*call.headers, (b"content-length", _wire(length))])
    return call


def answers_without_storing(ingest: Ingest, call: HttpCall) -> None:
    before = ingest.stored().keys()
    response = ingest.client.request(call.method, call.url, content=call.body, headers=call.headers)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 200 and call.url.startswith("/webhooks/"):
        status = response.json()["status"]
        assert status.startswith("acknowledged"), f"an unsigned request was taken in: {status}"
    assert ingest.stored().keys() == before, "an unsigned request was stored"


def test_http_genuine_sample_is_stored(ingest: Ingest) -> None:
    """The baseline the junk properties lean on: each genuine sale sample is stored through this app."""
    for provider in http_providers():
        case = _case(provider)
        body, headers, query = case.signed(case.spec["sale"]["file"], time.time())
        response = ingest.client.post(f"/webhooks/{provider}?{query}", content=body, headers=headers)
        assert response.status_code == 200, (provider, response.text)
        assert response.json()["status"] in ("stored", "duplicate")


def test_http_trouble_values_never_fail_and_are_never_stored(ingest: Ingest) -> None:
    checks = [
        (f"{provider}: {label}", functools.partial(answers_without_storing, ingest, _http_call(request)))
        for provider in http_providers()
        for label, request in trouble_requests(provider)
    ]
    for provider in http_providers():
        unsigned = _http_call(subject(provider).request(headers={}, query=""))
        for length in TROUBLE_LENGTHS:
            call = replace(unsigned, headers=[(b"content-length", length)])
            check = functools.partial(answers_without_storing, ingest, call)
            checks.append((f"{provider}: content-length {length[:20]!r}", check))
    all_pass("ingest", checks)


@pytest.mark.parametrize("budget", BUDGETS)
# PayPal and Mollie authenticate through their provider's API; their verify/parse properties run above
@pytest.mark.parametrize("provider", [p for p in PROVIDERS if not NEEDS_NETWORK.get(p)])
def test_http_junk_never_fails_and_is_never_stored(ingest: Ingest, provider: str, budget: int) -> None:
    holds(budget, junk_calls(provider), lambda call: answers_without_storing(ingest, call))


@dataclass(frozen=True)
class GenuineVariant:
    provider: str
    fixture: str
    # replaces the signed body where the scheme does not sign it
    body: bytes | None
    extra_headers: dict[str, str]
    extra_params: list[tuple[str, str]]


@st.composite
def genuine_variants(draw: st.DrawFn) -> GenuineVariant:
    """One of a provider's e2e fixtures with harmless extras (and any body, where the body is unsigned)."""
    provider = draw(st.sampled_from(http_providers()))
    spec = _case(provider).spec
    fixture = draw(
        st.sampled_from([f for f in (spec["sale"]["file"], spec["refund"]["file"], spec["test_mode_file"]) if f])
    )
    body = None
    if not subject(provider).body_signed and draw(st.booleans()):
        body = draw(payload_bodies(provider).filter(lambda b: len(b) <= MAX_BODY))
    extra_headers = draw(st.dictionaries(header_names().map(lambda n: "x-fuzz-" + n), st.text(max_size=20).map(quote)))
    extra_params = draw(st.lists(st.tuples(st.from_regex(r"fuzz_[a-z]{1,8}", fullmatch=True), st.text(max_size=10))))
    return GenuineVariant(provider, fixture, body, extra_headers, extra_params)


@pytest.mark.parametrize("budget", BUDGETS)
def test_http_genuine_requests_are_stored_once(ingest: Ingest, budget: int) -> None:
    def check(variant: GenuineVariant) -> None:
        body, headers, query = _case(variant.provider).signed(variant.fixture, time.time())
        body = body if variant.body is None else variant.body
        query = "&".join(part for part in (query, urlencode(variant.extra_params)) if part)
        before = ingest.stored()
        response = ingest.client.post(
            f"/webhooks/{variant.provider}?{query}", content=body, headers={**variant.extra_headers, **headers}
        )
        assert response.status_code == 200, (response.status_code, response.text)
        status = response.json()["status"]
        assert status in ("stored", "duplicate"), status
        new = [call for call_id, call in ingest.stored().items() if call_id not in before]
        assert len(new) == (1 if status == "stored" else 0)
        assert all(call.body == body and call.method == "POST" for call in new)

    holds(budget, genuine_variants(), check)


def _case(provider: str) -> ProviderCase:
    return next(case for case in CASES if case.provider == provider)

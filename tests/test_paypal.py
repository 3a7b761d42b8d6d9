"""PayPal adapter: PayPal's SDK vectors and real deliveries, certificate rules, the API mode, parsing of fixtures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from bridge.config import ConfigError, parse_config
from bridge.events import DisputeState, EventKind, NormalizedEvent
from providers import get_adapter_class
from providers.base import PayloadError, SignatureError, WebhookRequest, body_hash
from providers.paypal import (
    NOT_VERIFIED,
    CertificateError,
    CertificateStore,
    PayPalAdapter,
    PayPalOptions,
    fetch_certificate,
    is_certificate_url,
    load_pem_certificates,
    signed_message,
    simulator_url,
)
from tests.bridge_process import BridgeProcess
from tests.ledger_kit import LedgerHarness
from tests.partnero_server import PartneroServer
from tests.paypal_server import PayPalServer

FIXTURES = Path(__file__).parent / "fixtures" / "paypal"
SIMULATOR = str(FIXTURES / "simulator.pem")
VECTORS = json.loads((FIXTURES / "vectors.json").read_text())
WEBHOOK_ID = "5GP028458E2496506"
NOW = 1_790_000_000.0  # 2026-09-21; any "now" works for the simulator, whose certificate runs to 2125
LIVE_CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb"
E2E_KEY = "paypal:capture:12A34567BC123456S"


@contextlib.contextmanager
def not_verified(caplog: pytest.LogCaptureFixture, reason: str) -> Iterator[None]:
    """The 401 says only "signature not verified"; why (which fetch failed, how) goes to the log."""
    caplog.set_level(logging.INFO, logger="providers.paypal")
    caplog.clear()
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        yield
    assert reason in caplog.text


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", path="/webhooks/x", headers=headers or {}, body=body)


def simulated(*secrets: str, **options: Any) -> PayPalAdapter:
    """An endpoint that signs and verifies with the test simulator (tests/fixtures/paypal/simulator.pem)."""
    return PayPalAdapter(
        secrets or (WEBHOOK_ID,), PayPalOptions.model_validate({"simulator_file": SIMULATOR, **options})
    )


def signed(body: bytes, secret: str = WEBHOOK_ID, now: float = NOW) -> WebhookRequest:
    return request(body, simulated(secret).sign(body, secret, now).headers)


def epoch(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339).timestamp()


def parse(body: bytes, headers: dict[str, str] | None = None) -> list[NormalizedEvent]:
    return PayPalAdapter([WEBHOOK_ID], PayPalOptions()).parse(request(body, headers))


def parse_one(body: bytes) -> NormalizedEvent:
    events = parse(body)
    assert len(events) == 1
    return events[0]


@dataclass
class FakeFetch:
    """A certificate fetcher that never reaches the network: it answers from a dict and counts calls."""

    answers: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    delay: float = 0.0

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.delay:
            await asyncio.sleep(self.delay)
        if url not in self.answers:
            raise CertificateError("the certificate URL answered 404")
        return self.answers[url]


# --- PayPal's SDK vectors (reference/providers/paypal.md "Public test vectors") ----------------------------
# P1: paypal/PayPal-Java-SDK rest-api-sample/.../ValidateCert.java; P2: paypal/PayPal-node-SDK test/notification.js;
# P3, P4: paypal/PayPal-Java-SDK rest-api-sdk/src/test/java/com/paypal/base/ValidateCertTest.java (two versions).
# Commits and copies: tests/fixtures/paypal/SOURCES.md.


def sdk_vector(name: str) -> dict[str, Any]:
    return next(v for v in VECTORS["sdk"] if v["name"] == name)


def pinned_adapter(vector: dict[str, Any], *secrets: str) -> PayPalAdapter:
    store = CertificateStore()
    store.pin(vector["headers"]["paypal-cert-url"], load_pem_certificates(fixture(vector["certificate"]))[0])
    return PayPalAdapter(secrets or (vector["webhook_id"],), PayPalOptions(), certificates=store)


@pytest.mark.parametrize("name", ["P1", "P2", "P3", "P4"])
def test_sdk_vectors_verify_with_their_certificate(name: str) -> None:
    vector = sdk_vector(name)
    body = fixture(vector["file"])
    assert zlib.crc32(body) == vector["crc32"]
    now = epoch(vector["headers"]["paypal-transmission-time"])
    pinned_adapter(vector).verify(request(body, vector["headers"]), now)


def test_p1_signed_message_is_the_documented_string() -> None:
    vector = sdk_vector("P1")
    message = signed_message(
        vector["headers"]["paypal-transmission-id"],
        vector["headers"]["paypal-transmission-time"],
        vector["webhook_id"],
        zlib.crc32(fixture(vector["file"])),
    )
    assert message == b"b2384410-f8d2-11e4-8bf3-77339302725b|2015-05-12T18:14:14Z|3RN13029J36659323|2487599788"


@pytest.mark.parametrize("name", ["P1", "P3"])
def test_sdk_vectors_refuse_another_webhook_id_and_a_changed_byte(name: str) -> None:
    vector = sdk_vector(name)
    body = fixture(vector["file"])
    now = epoch(vector["headers"]["paypal-transmission-time"])
    # the negative control of ValidateCertTest.testInvalidWebhookId
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        pinned_adapter(vector, "NotToBeFound").verify(request(body, vector["headers"]), now)
    changed = body.replace(b'"USD"', b'"EUR"', 1)
    assert changed != body
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        pinned_adapter(vector).verify(request(changed, vector["headers"]), now)


@pytest.mark.parametrize("name", ["P1", "P3", "P4"])
def test_sdk_certificates_chain_to_digicert_on_their_day_and_not_today(name: str) -> None:
    """The production check (certifi + the shipped DigiCert EV root and intermediate), clock pinned."""
    vector = sdk_vector(name)
    url = vector["headers"]["paypal-cert-url"]
    store = CertificateStore()
    store.add(url, fixture(vector["certificate"]), epoch(vector["headers"]["paypal-transmission-time"]))
    assert store.public_key(url, epoch(vector["headers"]["paypal-transmission-time"])) is not None
    with pytest.raises(CertificateError, match="expired"):
        store.public_key(url, NOW)
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        CertificateStore().add(url, fixture(vector["certificate"]), NOW)


# --- real live deliveries, 2024 (PayPal's webhook simulator; see SOURCES.md) ------------------------------


LIVE = VECTORS["live"]


def live_adapter(fetch: FakeFetch, *secrets: str) -> PayPalAdapter:
    return PayPalAdapter(secrets or (LIVE["webhook_id"],), PayPalOptions(), certificates=CertificateStore(fetch=fetch))


def test_live_deliveries_verify_through_fetch_chain_and_cache() -> None:
    # tests/fixtures/paypal/live_*.json: recorded deliveries, signed by PayPal's live certificate of 2024
    fetch = FakeFetch({LIVE_CERT_URL: fixture(LIVE["certificate"])})
    adapter = live_adapter(fetch)

    async def scenario() -> None:
        for delivery in LIVE["deliveries"]:
            now = epoch(delivery["headers"]["paypal-transmission-time"]) + 2
            await adapter.authenticate(request(fixture(delivery["file"]), delivery["headers"]), now)

    asyncio.run(scenario())
    assert len(LIVE["deliveries"]) == 6
    assert fetch.calls == [LIVE_CERT_URL]


def test_simulator_deliveries_do_not_verify_for_a_merchant_webhook_id() -> None:
    """PayPal's simulator signs for the webhook id WEBHOOK_ID: anyone can make it post to any URL."""
    delivery = LIVE["deliveries"][0]
    adapter = live_adapter(FakeFetch({LIVE_CERT_URL: fixture(LIVE["certificate"])}), WEBHOOK_ID)
    now = epoch(delivery["headers"]["paypal-transmission-time"])
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        asyncio.run(adapter.authenticate(request(fixture(delivery["file"]), delivery["headers"]), now))


def test_live_certificate_is_refused_once_expired(caplog: pytest.LogCaptureFixture) -> None:
    delivery = LIVE["deliveries"][0]
    adapter = live_adapter(FakeFetch({LIVE_CERT_URL: fixture(LIVE["certificate"])}))
    headers = {**delivery["headers"], "paypal-transmission-time": "2026-09-21T14:13:20Z"}
    with not_verified(caplog, "not a valid PayPal message-verification certificate"):
        asyncio.run(adapter.authenticate(request(fixture(delivery["file"]), headers), NOW))


# --- certificate rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
    ],
)
def test_paypal_certificate_urls_are_allowed(url: str) -> None:
    assert is_certificate_url(url)


REFUSED_URLS = [
    "http://api.paypal.com/v1/notifications/certs/CERT-1",
    "https://evil.example/v1/notifications/certs/CERT-1",
    "https://api.paypal.com.evil.example/cert",
    "https://evilapi.paypal.com/cert",
    "https://www.paypal.com/cert",
    "https://api.paypal.com:8443/cert",
    "https://api.paypal.com:443/cert",
    "https://user:pw@api.paypal.com/cert",
    "https://api.paypal.com@evil.example/cert",
    "https://API.PAYPAL.COM/cert",
    "https://api.paypal.com./cert",
    "https://169.254.169.254/latest/meta-data",
    "https://127.0.0.1/cert",
    "https://api.paypal.com/cert?x=1",
    "https://api.paypal.com/cert#x",
    "https://api.paypal.com\\@evil.example/cert",
    "https://api.paypal.com/cert\r\nX: y",
    "file:///etc/passwd",
    "//api.paypal.com/cert",
    "https://[::1/cert",
    "",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_other_certificate_urls_are_refused_before_any_fetch(url: str) -> None:
    assert not is_certificate_url(url)
    fetch = FakeFetch()
    adapter = PayPalAdapter([WEBHOOK_ID], PayPalOptions(), certificates=CertificateStore(fetch=fetch))
    body = fixture("e2e_capture_completed.json")
    headers = {**simulated().sign(body, WEBHOOK_ID, NOW).headers, "paypal-cert-url": url}
    with pytest.raises(SignatureError):
        asyncio.run(adapter.authenticate(request(body, headers), NOW))
    assert fetch.calls == []


# A throwaway CA, intermediate and leaf, to drive the chain check the way PayPal's DigiCert chain does.


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Issued:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


_KEYS = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def issue(
    common_name: str,
    key: rsa.RSAPrivateKey,
    issuer: Issued | None,
    *,
    ca: bool,
    days: int = 365,
    dns: str | None = None,
) -> Issued:
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(START + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, critical=False)
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns or common_name)]), critical=False)
    return Issued(key, builder.sign(signer, hashes.SHA256()))


@pytest.fixture(scope="module")
def chain() -> dict[str, Issued]:
    root = issue("Test Root CA", _KEYS[0], None, ca=True, days=3650)
    intermediate = issue("Test Intermediate CA", _KEYS[1], root, ca=True, days=3000)
    leaf = issue("messageverificationcerts.paypal.com", _KEYS[2], intermediate, ca=False, days=30)
    stranger = issue("Unknown Root CA", _KEYS[1], None, ca=True, days=3650)
    return {"root": root, "intermediate": intermediate, "leaf": leaf, "stranger": stranger}


AT = (START + dt.timedelta(days=1)).timestamp()
URL = "https://api.paypal.com/v1/notifications/certs/CERT-test"


def test_a_leaf_served_with_its_intermediate_chains_to_a_trusted_root(chain: dict[str, Issued]) -> None:
    store = CertificateStore(roots=[chain["root"].certificate])
    store.add(URL, chain["leaf"].pem + chain["intermediate"].pem, AT)
    assert store.public_key(URL, AT).public_numbers() == chain["leaf"].key.public_key().public_numbers()


def test_untrusted_chains_and_foreign_names_are_refused(chain: dict[str, Issued]) -> None:
    store = CertificateStore(roots=[chain["root"].certificate])
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        store.add(URL, chain["leaf"].pem, AT)  # intermediate missing
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        CertificateStore(roots=[chain["stranger"].certificate]).add(
            URL, chain["leaf"].pem + chain["intermediate"].pem, AT
        )
    other = issue("shop.example", _KEYS[2], chain["intermediate"], ca=False)
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        store.add(URL, other.pem + chain["intermediate"].pem, AT)
    self_signed = issue("messageverificationcerts.paypal.com", _KEYS[2], None, ca=False)
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        store.add(URL, self_signed.pem, AT)
    with pytest.raises(CertificateError, match="not a valid PayPal"):
        store.add(URL, chain["leaf"].pem + chain["intermediate"].pem, (START + dt.timedelta(days=31)).timestamp())
    with pytest.raises(CertificateError, match="PEM"):
        store.add(URL, b"<html>not found</html>", AT)
    with pytest.raises(CertificateError, match="no certificate authority"):
        CertificateStore(roots=[]).add(URL, chain["leaf"].pem, AT)


def chain_signed(chain: dict[str, Issued], body: bytes, now: float, url: str = URL) -> WebhookRequest:
    """A delivery signed by the throwaway chain's leaf, as PayPal would sign with its own."""
    transmission_time = dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = signed_message("7a6f0c10-0000-11f0-8bf3-77339302725b", transmission_time, WEBHOOK_ID, zlib.crc32(body))
    signature = chain["leaf"].key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    headers = {
        "paypal-transmission-id": "7a6f0c10-0000-11f0-8bf3-77339302725b",
        "paypal-transmission-time": transmission_time,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": url,
        "paypal-auth-algo": "SHA256withRSA",
    }
    return request(body, headers)


def chain_adapter(chain: dict[str, Issued], fetch: FakeFetch) -> PayPalAdapter:
    store = CertificateStore(fetch=fetch, roots=[chain["root"].certificate])
    return PayPalAdapter([WEBHOOK_ID], PayPalOptions(), certificates=store)


def test_a_fetched_certificate_is_cached_until_it_expires(
    chain: dict[str, Issued], caplog: pytest.LogCaptureFixture
) -> None:
    fetch = FakeFetch({URL: chain["leaf"].pem + chain["intermediate"].pem})
    adapter = chain_adapter(chain, fetch)
    body = fixture("e2e_capture_completed.json")

    async def scenario() -> None:
        await adapter.authenticate(chain_signed(chain, body, AT), AT)
        await adapter.authenticate(chain_signed(chain, body, AT + 3600), AT + 3600)
        assert fetch.calls == [URL]
        expired = (START + dt.timedelta(days=31)).timestamp()
        with not_verified(caplog, "not a valid PayPal message-verification certificate"):
            await adapter.authenticate(chain_signed(chain, body, expired), expired)
        assert fetch.calls == [URL, URL]  # past notAfter the cache entry is gone and the URL fetched again

    asyncio.run(scenario())


def test_concurrent_deliveries_fetch_a_certificate_once(chain: dict[str, Issued]) -> None:
    fetch = FakeFetch({URL: chain["leaf"].pem + chain["intermediate"].pem}, delay=0.05)
    adapter = chain_adapter(chain, fetch)
    body = fixture("e2e_capture_completed.json")

    async def scenario() -> None:
        await asyncio.gather(*(adapter.authenticate(chain_signed(chain, body, AT), AT) for _ in range(5)))

    asyncio.run(scenario())
    assert fetch.calls == [URL]


def test_a_failed_fetch_is_not_repeated_at_once(chain: dict[str, Issued], caplog: pytest.LogCaptureFixture) -> None:
    fetch = FakeFetch()
    adapter = chain_adapter(chain, fetch)
    body = fixture("e2e_capture_completed.json")
    with not_verified(caplog, "404"):
        asyncio.run(adapter.authenticate(chain_signed(chain, body, AT), AT))
    with not_verified(caplog, "failed moments ago"):
        asyncio.run(adapter.authenticate(chain_signed(chain, body, AT), AT))
    assert fetch.calls == [URL]


def test_new_certificate_urls_are_fetched_a_bounded_number_of_times_per_minute(
    chain: dict[str, Issued], caplog: pytest.LogCaptureFixture
) -> None:
    """Unsigned requests naming a new path on PayPal's host each cost a fetch; a minute allows a few."""
    from providers.paypal import NEW_CERTIFICATE_URLS_PER_MINUTE

    body, genuine_pem = fixture("e2e_capture_completed.json"), chain["leaf"].pem + chain["intermediate"].pem
    fetch = FakeFetch({URL: genuine_pem})
    adapter = chain_adapter(chain, fetch)
    for n in range(3 * NEW_CERTIFICATE_URLS_PER_MINUTE):
        forged = chain_signed(chain, body, AT, url=f"{URL}-{n}")
        with not_verified(caplog, "certificate unusable"):
            asyncio.run(adapter.authenticate(forged, AT))
    assert len(fetch.calls) == NEW_CERTIFICATE_URLS_PER_MINUTE
    assert "too many new certificate URLs this minute" in caplog.text
    # the genuine URL, already cached, is not held up by the flood
    fetch_calls = list(fetch.calls)
    adapter.certificates.add(URL, genuine_pem, AT)
    asyncio.run(adapter.authenticate(chain_signed(chain, body, AT), AT))
    assert fetch.calls == fetch_calls


def test_the_synchronous_check_uses_loaded_certificates_only(
    chain: dict[str, Issued], caplog: pytest.LogCaptureFixture
) -> None:
    adapter = chain_adapter(chain, FakeFetch({URL: chain["leaf"].pem + chain["intermediate"].pem}))
    delivery = chain_signed(chain, fixture("e2e_capture_completed.json"), AT)
    with not_verified(caplog, "not loaded"):
        adapter.verify(delivery, AT)
    asyncio.run(adapter.authenticate(delivery, AT))
    adapter.verify(delivery, AT)


def test_ca_file_adds_trust_anchors(chain: dict[str, Issued], tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(chain["root"].pem)
    adapter = PayPalAdapter([WEBHOOK_ID], PayPalOptions(ca_file=str(ca_file)))
    adapter.certificates.add(URL, chain["leaf"].pem + chain["intermediate"].pem, AT)
    with pytest.raises(CertificateError):
        PayPalAdapter([WEBHOOK_ID], PayPalOptions()).certificates.add(
            URL, chain["leaf"].pem + chain["intermediate"].pem, AT
        )


def _fetch_with(handler: Callable[[httpx.Request], httpx.Response]) -> Coroutine[Any, Any, bytes]:
    async def run() -> bytes:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=False) as client:
            return await fetch_certificate(client, URL)

    return run()


def test_the_certificate_fetch_takes_one_200_answer_under_the_size_cap(chain: dict[str, Issued]) -> None:
    assert asyncio.run(_fetch_with(lambda r: httpx.Response(200, content=chain["leaf"].pem))) == chain["leaf"].pem
    with pytest.raises(CertificateError, match="answered 404"):
        asyncio.run(_fetch_with(lambda r: httpx.Response(404)))
    with pytest.raises(CertificateError, match="answered 302"):
        asyncio.run(_fetch_with(lambda r: httpx.Response(302, headers={"location": "http://169.254.169.254/"})))
    with pytest.raises(CertificateError, match="more than a certificate"):
        asyncio.run(_fetch_with(lambda r: httpx.Response(200, content=b"A" * (64 * 1024 + 1))))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(CertificateError, match="ConnectTimeout"):
        asyncio.run(_fetch_with(refuse))


# --- sign and verify with the simulator -----------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    body = fixture("e2e_capture_completed.json")
    delivery = signed(body)
    simulated().verify(delivery, NOW)
    asyncio.run(simulated().authenticate(delivery, NOW))
    assert delivery.headers["paypal-cert-url"] == simulator_url(sandbox=False)
    assert delivery.headers["paypal-transmission-time"] == "2026-09-21T14:13:20Z"


def test_a_sandbox_event_is_signed_with_the_sandbox_certificate_url() -> None:
    delivery = signed(fixture("e2e_capture_completed_sandbox.json"))
    assert delivery.headers["paypal-cert-url"] == simulator_url(sandbox=True)
    simulated().verify(delivery, NOW)


def test_wrong_webhook_id_tampered_body_and_rotation() -> None:
    body = fixture("e2e_capture_completed.json")
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        simulated("1JE4291016473214C").verify(signed(body), NOW)
    with pytest.raises(SignatureError, match=f"^{NOT_VERIFIED}$"):
        delivery = signed(body)
        simulated().verify(request(body + b" ", dict(delivery.headers)), NOW)
    # two webhook ids (sandbox and live, or old and new) are both accepted
    rotating = simulated("1JE4291016473214C", WEBHOOK_ID)
    rotating.verify(signed(body, WEBHOOK_ID), NOW)
    rotating.verify(signed(body, "1JE4291016473214C"), NOW)


@pytest.mark.parametrize(
    "header",
    [
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    ],
)
def test_each_signature_header_is_required(header: str) -> None:
    body = fixture("e2e_capture_completed.json")
    headers = dict(signed(body).headers)
    del headers[header]
    with pytest.raises(SignatureError, match=f"missing {header}"):
        simulated().verify(request(body, headers), NOW)


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("paypal-transmission-sig", "not base64!", "malformed paypal-transmission-sig"),
        ("paypal-transmission-sig", "AAAA", "signature not verified"),
        ("paypal-transmission-time", "yesterday", "malformed paypal-transmission-time"),
        ("paypal-auth-algo", "SHA1withRSA", "unsupported paypal-auth-algo"),
        ("paypal-cert-url", "https://evil.example/cert.pem", "not a PayPal certificate URL"),
        ("paypal-cert-url", "https://api.paypal.com/v1/notifications/certs/CERT-other", "signature not verified"),
    ],
)
def test_malformed_headers_are_refused(header: str, value: str, message: str) -> None:
    body = fixture("e2e_capture_completed.json")
    headers = {**signed(body).headers, header: value}
    with pytest.raises(SignatureError, match=message):
        simulated().verify(request(body, headers), NOW)


def test_transmission_time_tolerance() -> None:
    body = fixture("e2e_capture_completed.json")
    delivery = signed(body)
    simulated().verify(delivery, NOW + 300)
    simulated().verify(delivery, NOW - 300)
    for now in (NOW + 301, NOW - 301):
        with pytest.raises(SignatureError, match="timestamp outside tolerance"):
            simulated().verify(delivery, now)
    simulated(tolerance_seconds=3600).verify(delivery, NOW + 3000)


def test_a_simulator_endpoint_fetches_nothing_and_accepts_only_the_simulator(caplog: pytest.LogCaptureFixture) -> None:
    vector = sdk_vector("P1")
    adapter = simulated(vector["webhook_id"])
    now = epoch(vector["headers"]["paypal-transmission-time"])
    with not_verified(caplog, "fetches none"):
        asyncio.run(adapter.authenticate(request(fixture(vector["file"]), vector["headers"]), now))


def test_sign_needs_a_simulator() -> None:
    with pytest.raises(NotImplementedError, match="simulator_file"):
        PayPalAdapter([WEBHOOK_ID], PayPalOptions()).sign(b"{}", WEBHOOK_ID, NOW)


# --- parsing --------------------------------------------------------------------------------------------


def test_capture_completed_is_a_sale_keyed_on_the_capture() -> None:
    # live_capture_completed.json: real live delivery (SOURCES.md); no custom_id was set on it
    event = parse_one(fixture("live_capture_completed.json"))
    assert event.kind is EventKind.SALE
    assert event.event_type == "PAYMENT.CAPTURE.COMPLETED"
    assert event.transaction_key == "paypal:capture:12A34567BC123456S"
    assert event.amount == Decimal("30.00")
    assert event.currency == "USD"
    assert dict(event.customer.metadata) == {"invoice_id": "5840243-146"}
    assert event.customer.email is None
    assert event.test_mode is False
    assert event.occurred_at == dt.datetime(2019, 2, 14, 21, 50, 7, 940000, tzinfo=dt.UTC)


def test_custom_id_is_the_customer_key_in_metadata() -> None:
    # e2e_capture_completed.json: the live capture with custom_id "usr_1337" (SOURCES.md)
    event = parse_one(fixture("e2e_capture_completed.json"))
    assert event.transaction_key == E2E_KEY
    assert dict(event.customer.metadata) == {"custom_id": "usr_1337", "invoice_id": "5840243-146"}
    assert event.test_mode is False


def test_a_json_custom_id_also_offers_its_fields() -> None:
    body = fixture("e2e_capture_completed.json").replace(
        b'"usr_1337"', b'"{\\"user_id\\":\\"42\\",\\"seats\\":3,\\"x\\":{}}"'
    )
    metadata = dict(parse_one(body).customer.metadata)
    assert metadata == {
        "user_id": "42",
        "seats": "3",
        "custom_id": '{"user_id":"42","seats":3,"x":{}}',
        "invoice_id": "5840243-146",
    }


def test_sandbox_events_are_test_mode() -> None:
    # e2e_capture_completed_sandbox.json: the same capture shape on api.sandbox.paypal.com links
    assert parse_one(fixture("e2e_capture_completed_sandbox.json")).test_mode is True
    # P1 is a real sandbox delivery
    assert parse_one(fixture("vector_p1_sale_completed.json")).test_mode is True
    # the certificate URL's host alone also says sandbox
    headers = {"paypal-cert-url": "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1"}
    assert parse(fixture("live_capture_completed.json"), headers)[0].test_mode is True


def test_order_completed_announces_the_same_capture_with_the_payer() -> None:
    # order_completed.json: invoiceninja/invoiceninja tests/Feature/PayPal/WebhookTest.php (sandbox delivery)
    event = parse_one(fixture("order_completed.json"))
    assert event.kind is EventKind.SALE
    assert event.transaction_key == "paypal:capture:40A1323403146010F"
    assert event.amount == Decimal("1285.13")
    assert event.customer.email == "sb-0kvkf26397832@personal.example.com"
    assert event.customer.customer_id == "4X5WHWAP5GQ3Y"
    assert event.customer.name == "John Doe"
    assert dict(event.customer.metadata) == {"custom_id": "xLqrlFTUHJONFhSDhSUZBp0ckeZnpdFq", "invoice_id": "fq30028"}
    assert event.test_mode is True
    # its PAYMENT.CAPTURE.COMPLETED twin resolves to the same key, so the payment is booked once
    capture = json.loads(fixture("order_completed.json"))["resource"]["purchase_units"][0]["payments"]["captures"][0]
    twin = json.dumps({"event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": capture}).encode()
    assert parse_one(twin).transaction_key == event.transaction_key


def test_an_order_without_a_completed_capture_is_ignored() -> None:
    order = json.loads(fixture("order_completed.json"))
    order["resource"]["purchase_units"][0]["payments"]["captures"][0]["status"] = "PENDING"
    event = parse_one(json.dumps(order).encode())
    assert event.kind is EventKind.IGNORED
    assert event.reason == "order has no completed capture yet"


def test_sale_completed_is_a_sale_keyed_on_the_sale() -> None:
    # live_sale_completed.json: real live delivery (SOURCES.md)
    event = parse_one(fixture("live_sale_completed.json"))
    assert (event.kind, event.transaction_key) == (EventKind.SALE, "paypal:sale:80021663DE681814L")
    assert (event.amount, event.currency, event.test_mode) == (Decimal("0.48"), "USD", False)
    assert dict(event.customer.metadata) == {}
    # P2: PayPal-node-SDK's sandbox delivery
    p2 = parse_one(fixture("vector_p2_sale_completed.json"))
    assert (p2.transaction_key, p2.amount, p2.test_mode) == ("paypal:sale:4EU7004268015634R", Decimal("20.00"), True)


def test_subscription_sale_carries_custom_and_the_agreement() -> None:
    # sale_completed_subscription.json: live_sale_completed.json plus billing_agreement_id and custom (SOURCES.md)
    event = parse_one(fixture("sale_completed_subscription.json"))
    assert event.transaction_key == "paypal:sale:80021663DE681814L"
    assert dict(event.customer.metadata) == {"custom_id": "usr_1337", "billing_agreement_id": "I-BW452GLLEP1G"}


def test_capture_refund_is_this_refund_with_the_cumulative_total() -> None:
    # live_capture_refunded.json: real live delivery; a second partial refund of its capture
    event = parse_one(fixture("live_capture_refunded.json"))
    assert event.kind is EventKind.REFUND
    assert event.transaction_key == "paypal:capture:0JF852973C016714D"
    assert event.amount == Decimal("0.99")
    assert event.refunded_total == Decimal("1.98")
    assert event.refund_id == "1Y107995YT783435V"
    assert event.full_refund is None
    assert event.test_mode is False


def test_full_refund_of_the_e2e_sale() -> None:
    # e2e_capture_refunded.json: the live refund rewritten as a full refund of the e2e capture
    event = parse_one(fixture("e2e_capture_refunded.json"))
    assert (event.transaction_key, event.amount, event.refunded_total) == (E2E_KEY, Decimal("30.00"), Decimal("30.00"))


def test_a_refund_names_its_capture_by_related_ids_too() -> None:
    refund = json.loads(fixture("live_capture_refunded.json"))
    refund["resource"]["links"] = [refund["resource"]["links"][0]]
    refund["resource"]["supplementary_data"] = {"related_ids": {"capture_id": "7TK53561YB803214S"}}
    assert parse_one(json.dumps(refund).encode()).transaction_key == "paypal:capture:7TK53561YB803214S"
    del refund["resource"]["supplementary_data"]
    with pytest.raises(PayloadError, match="names no capture"):
        parse(json.dumps(refund).encode())


def test_sale_refund_amount_is_positive_and_names_the_sale() -> None:
    # live_sale_refunded.json: real live delivery, amount "-0.01"
    event = parse_one(fixture("live_sale_refunded.json"))
    assert (event.kind, event.transaction_key) == (EventKind.REFUND, "paypal:sale:9T0916710M1105906")
    assert (event.amount, event.refund_id, event.refunded_total) == (Decimal("0.01"), "6YX43824R4443062K", None)


def test_a_pending_refund_is_ignored() -> None:
    refund = json.loads(fixture("live_capture_refunded.json"))
    refund["resource"]["status"] = "PENDING"
    event = parse_one(json.dumps(refund).encode())
    assert event.kind is EventKind.IGNORED
    assert event.reason == "refund status is 'PENDING'; only a completed refund moves money"


def test_capture_reversal_is_a_lost_dispute() -> None:
    # live_capture_reversed.json: real live delivery
    event = parse_one(fixture("live_capture_reversed.json"))
    assert event.kind is EventKind.DISPUTE
    assert event.dispute_state is DisputeState.LOST
    assert (event.transaction_key, event.amount) == ("paypal:capture:4L335234718889942", Decimal("2.51"))


def test_sale_reversal_without_a_sale_id_needs_attention_and_with_one_is_lost(tmp_path: Path) -> None:
    # live_sale_reversed.json: real live delivery, which names no sale
    event = parse_one(fixture("live_sale_reversed.json"))
    assert (event.kind, event.transaction_key) == (EventKind.DISPUTE, None)
    h = LedgerHarness(tmp_path / "l.db")
    try:
        [seen] = h.apply(event)
        assert (seen.status, seen.reason) == (
            "skipped",
            "needs attention: the reversal names no sale (no sale_id); reverse its sale by hand",
        )
    finally:
        h.close()
    reversal = json.loads(fixture("live_sale_reversed.json"))
    reversal["resource"]["sale_id"] = "80021663DE681814L"
    lost = parse_one(json.dumps(reversal).encode())
    assert (lost.kind, lost.dispute_state, lost.transaction_key) == (
        EventKind.DISPUTE,
        DisputeState.LOST,
        "paypal:sale:80021663DE681814L",
    )
    assert lost.amount == Decimal("0.49")


def test_dispute_created_opens_on_both_possible_keys() -> None:
    # dispute_created.json: PayPal's simulate-event example (SOURCES.md)
    events = parse(fixture("dispute_created.json"))
    assert [(e.kind, e.transaction_key, e.dispute_state) for e in events] == [
        (EventKind.DISPUTE, "paypal:capture:00D10444LD479031K", DisputeState.OPENED),
        (EventKind.DISPUTE, "paypal:sale:00D10444LD479031K", DisputeState.OPENED),
    ]
    assert {(e.amount, e.currency, e.test_mode) for e in events} == {(Decimal("3.00"), "USD", True)}


@pytest.mark.parametrize(
    ("name", "state"),
    [("dispute_resolved_lost.json", DisputeState.LOST), ("dispute_resolved_won.json", DisputeState.WON)],
)
def test_dispute_resolution_reports_the_outcome(name: str, state: DisputeState) -> None:
    events = parse(fixture(name))
    assert [e.dispute_state for e in events] == [state, state]
    assert events[0].transaction_key == "paypal:capture:00D10444LD479031K"


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        ({"outcome_code": "ACCEPTED"}, DisputeState.LOST),
        ({"outcome_code": "ACCEPTED", "amount_refunded": {"currency_code": "USD", "value": "3.00"}}, DisputeState.LOST),
        ({"outcome_code": "CANCELED_BY_BUYER"}, DisputeState.WON),
        ({"outcome_code": "DENIED"}, DisputeState.WON),
        ({"outcome_code": "RESOLVED_WITH_PAYOUT"}, DisputeState.WON),
    ],
)
def test_dispute_outcome_codes(outcome: dict[str, Any], state: DisputeState) -> None:
    dispute = json.loads(fixture("dispute_resolved_won.json"))
    dispute["resource"]["dispute_outcome"] = outcome
    assert {e.dispute_state for e in parse(json.dumps(dispute).encode())} == {state}


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ({"outcome_code": "NONE"}, "dispute resolved with outcome 'NONE', which moves no sale"),
        (
            {"outcome_code": "ACCEPTED", "amount_refunded": {"currency_code": "USD", "value": "1.00"}},
            "claim accepted for part of the amount; its refund arrives as a refund event",
        ),
    ],
)
def test_dispute_outcomes_that_move_no_sale_are_ignored(outcome: dict[str, Any], reason: str) -> None:
    dispute = json.loads(fixture("dispute_resolved_won.json"))
    dispute["resource"]["dispute_outcome"] = outcome
    event = parse_one(json.dumps(dispute).encode())
    assert (event.kind, event.reason) == (EventKind.IGNORED, reason)


def test_adapter_reports_dispute_outcomes() -> None:
    assert get_adapter_class("paypal") is PayPalAdapter
    assert PayPalAdapter.reports_dispute_outcome is True


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (fixture("vector_p3_plan_created.json"), "plan setup, not a payment"),
        (fixture("vector_p4_payment_created.json"), "v1 payment created; the money arrives as PAYMENT.SALE.COMPLETED"),
        (b'{"event_type":"CHECKOUT.ORDER.APPROVED","resource":{}}', "buyer approved the order; no money has moved yet"),
        (
            b'{"event_type":"BILLING.SUBSCRIPTION.ACTIVATED","resource":{}}',
            "subscription lifecycle; each payment arrives as PAYMENT.SALE.COMPLETED",
        ),
        (
            b'{"event_type":"CUSTOMER.DISPUTE.UPDATED","resource":{}}',
            "dispute update; its outcome arrives as CUSTOMER.DISPUTE.RESOLVED",
        ),
        (b'{"event_type":"PAYMENT.CAPTURE.DECLINED"}', "capture declined; no money moved"),
        (b'{"event_type":"VAULT.PAYMENT-TOKEN.CREATED"}', "event type not used by the bridge"),
    ],
)
def test_ignored_events_carry_a_reason(body: bytes, reason: str) -> None:
    event = parse_one(body)
    assert event.kind is EventKind.IGNORED
    assert event.reason == reason


def test_a_pending_capture_is_ignored() -> None:
    capture = json.loads(fixture("live_capture_completed.json"))
    capture["resource"]["status"] = "PENDING"
    assert parse_one(json.dumps(capture).encode()).reason == (
        "capture status is 'PENDING'; only a completed capture moves money"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"event_type": 7}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED"}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":[]}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"X"}}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"X","amount":{"currency_code":"USD","value":"ab"}}}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"X","amount":{"currency_code":"XYZ","value":"1"}}}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"X","amount":{"currency_code":"USD","value":true}}}',
        b'{"event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"amount":{"currency_code":"USD","value":"1"}}}',
        b'{"event_type":"PAYMENT.SALE.COMPLETED","resource":{"id":"X","amount":{"total":"1e999999","currency":"USD"}}}',
        b'{"event_type":"PAYMENT.SALE.REFUNDED","resource":{"id":"R","amount":{"total":"-1","currency":"USD"}}}',
        b'{"event_type":"CUSTOMER.DISPUTE.CREATED","resource":{"disputed_transactions":[]}}',
    ],
)
def test_unreadable_bodies_are_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse(body)


def test_delivery_id_is_the_event_id() -> None:
    adapter = simulated()
    body = fixture("live_capture_completed.json")
    assert adapter.delivery_id(request(body)) == "WH-58D329510W468432D-8HN650336L201105X"
    # retries of one event carry new transmission ids but the same event id
    assert adapter.delivery_id(signed(body, now=NOW)) == adapter.delivery_id(signed(body, now=NOW + 60))
    for junk in (b"junk", b"[1]", b'{"id": 5}', b'{"id": ""}', b"\xff"):
        assert adapter.delivery_id(request(junk)) == body_hash(junk)


# --- options --------------------------------------------------------------------------------------------


def test_options() -> None:
    with pytest.raises(ValidationError, match="needs client_id and client_secret"):
        PayPalOptions(verification="api")
    with pytest.raises(ValidationError, match="cannot read"):
        PayPalOptions(simulator_file="/nonexistent/simulator.pem")
    with pytest.raises(ValidationError, match="holds no PEM certificate"):
        PayPalOptions(ca_file=str(FIXTURES / "e2e.json"))
    with pytest.raises(ValidationError, match="http"):
        PayPalOptions(api_base_url="api-m.paypal.com")
    options = PayPalOptions.model_validate({"verification": "api", "client_id": "id", "client_secret": "hush"})
    assert "hush" not in repr(options)


def test_configuration_errors_name_the_option() -> None:
    raw: dict[str, Any] = {
        "endpoints": {"pp": {"provider": "paypal", "secret": WEBHOOK_ID, "simulator_file": "missing.pem"}}
    }
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert "endpoints.pp.simulator_file" in str(error.value)
    raw = {"endpoints": {"pp": {"provider": "paypal", "secret": WEBHOOK_ID, "certificate_hosts": ["evil.example"]}}}
    with pytest.raises(ConfigError, match="certificate_hosts"):
        parse_config(raw)


# --- verification through PayPal's API (tests/paypal_server.py) -----------------------------------------


@pytest.fixture
def paypal_api() -> Iterator[PayPalServer]:
    with PayPalServer() as server:
        yield server


def api_adapter(server: PayPalServer, *secrets: str, client_secret: str | None = None) -> PayPalAdapter:
    options = {
        "verification": "api",
        "api_base_url": server.url,
        "client_id": server.client_id,
        "client_secret": client_secret or server.client_secret,
        "simulator_file": SIMULATOR,
    }
    return PayPalAdapter(secrets or (WEBHOOK_ID,), PayPalOptions.model_validate(options))


def run_with(adapter: PayPalAdapter, scenario: Callable[[], Awaitable[None]]) -> None:
    async def wrapped() -> None:
        try:
            await scenario()
        finally:
            await adapter.aclose()

    asyncio.run(wrapped())


def test_api_mode_asks_paypal_with_the_event_as_an_object(paypal_api: PayPalServer) -> None:
    adapter = api_adapter(paypal_api)
    body = fixture("e2e_capture_completed.json")
    delivery = signed(body, now=time.time())

    async def scenario() -> None:
        await adapter.authenticate(delivery, time.time())
        await adapter.authenticate(signed(fixture("e2e_capture_refunded.json"), now=time.time()), time.time())

    run_with(adapter, scenario)
    assert len(paypal_api.calls_to("/v1/oauth2/token")) == 1  # the token is reused
    call = paypal_api.calls_to("/v1/notifications/verify-webhook-signature")[0]
    assert call.authorization is not None and call.authorization.startswith("Bearer A21AA")
    assert call.json == {
        "auth_algo": "SHA256withRSA",
        "cert_url": delivery.headers["paypal-cert-url"],
        "transmission_id": delivery.headers["paypal-transmission-id"],
        "transmission_sig": delivery.headers["paypal-transmission-sig"],
        "transmission_time": delivery.headers["paypal-transmission-time"],
        "webhook_id": WEBHOOK_ID,
        "webhook_event": json.loads(body),
    }


def test_api_mode_failure_is_a_mismatch(paypal_api: PayPalServer) -> None:
    adapter = api_adapter(paypal_api)
    body = fixture("e2e_capture_completed.json")
    delivery = signed(body, now=time.time())
    forged = body.replace(b'"value":"30.00"', b'"value":"3000.00"', 1)

    async def scenario() -> None:
        with pytest.raises(SignatureError, match="does not match"):
            await adapter.authenticate(request(forged, dict(delivery.headers)), time.time())
        with pytest.raises(SignatureError, match="malformed body"):
            await adapter.authenticate(request(b"[]", dict(delivery.headers)), time.time())

    run_with(adapter, scenario)


def test_api_mode_tries_each_webhook_id(paypal_api: PayPalServer) -> None:
    adapter = api_adapter(paypal_api, "1JE4291016473214C", WEBHOOK_ID)
    run_with(
        adapter,
        lambda: adapter.authenticate(signed(fixture("e2e_capture_completed.json"), now=time.time()), time.time()),
    )
    ids = [c.json["webhook_id"] for c in paypal_api.calls_to("/v1/notifications/verify-webhook-signature")]
    assert ids == ["1JE4291016473214C", WEBHOOK_ID]


def test_api_mode_renews_a_revoked_token_once(paypal_api: PayPalServer) -> None:
    adapter = api_adapter(paypal_api)
    body = fixture("e2e_capture_completed.json")

    async def scenario() -> None:
        await adapter.authenticate(signed(body, now=time.time()), time.time())
        paypal_api.revoke_tokens()
        await adapter.authenticate(signed(body, now=time.time()), time.time())

    run_with(adapter, scenario)
    assert len(paypal_api.calls_to("/v1/oauth2/token")) == 2


def test_api_mode_failures_of_paypal_are_signature_errors(paypal_api: PayPalServer) -> None:
    body = fixture("e2e_capture_completed.json")
    adapter = api_adapter(paypal_api)
    paypal_api.fail_next(1, status=503)
    with pytest.raises(SignatureError, match="verification API answered 503"):
        run_with(adapter, lambda: adapter.authenticate(signed(body, now=time.time()), time.time()))
    wrong = api_adapter(paypal_api, client_secret="wrong-secret")
    with pytest.raises(SignatureError, match="OAuth API answered 401"):
        run_with(wrong, lambda: wrong.authenticate(signed(body, now=time.time()), time.time()))
    options = {"verification": "api", "api_base_url": "http://127.0.0.1:9", "client_id": "i", "client_secret": "s"}
    unreachable = PayPalAdapter([WEBHOOK_ID], PayPalOptions.model_validate({**options, "simulator_file": SIMULATOR}))
    with pytest.raises(SignatureError, match="unreachable"):
        run_with(unreachable, lambda: unreachable.authenticate(signed(body, now=time.time()), time.time()))


def test_api_mode_end_to_end(
    paypal_api: PayPalServer, partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    """The bridge process asks the PayPal test server, books the sale once, and removes it on the refund."""
    partnero.add_customer("usr_1337")
    endpoint = {
        "provider": "paypal",
        "secret": WEBHOOK_ID,
        "customer_key": ["metadata.custom_id", "email"],
        "verification": "api",
        "api_base_url": paypal_api.url,
        "client_id": paypal_api.client_id,
        "client_secret": paypal_api.client_secret,
        "simulator_file": SIMULATOR,
    }
    bridge = bridge_factory({"shop": endpoint})
    body = fixture("e2e_capture_completed.json")
    delivery = signed(body, now=time.time())
    forged = body.replace(b'"value":"30.00"', b'"value":"3000.00"', 1)
    assert bridge.post("shop", forged, dict(delivery.headers)).status_code == 401
    assert bridge.post("shop", body, dict(delivery.headers)).status_code == 200
    assert bridge.post("shop", body, dict(signed(body, now=time.time()).headers)).status_code == 200
    partnero.wait_for(lambda s: len(s.live_transactions()) == 1)
    refund = fixture("e2e_capture_refunded.json")
    assert bridge.post("shop", refund, dict(signed(refund, now=time.time()).headers)).status_code == 200
    partnero.wait_for(lambda s: s.live_transactions() == [])
    assert [(t.key, t.amount) for t in partnero.transactions] == [(E2E_KEY, Decimal("30.00"))]


def test_a_v1_sale_names_the_tax_inside_its_total() -> None:
    # live_sale_reversed.json's resource shows the v1 amount object: total with details.subtotal/tax/shipping
    sale = json.loads(fixture("live_sale_completed.json"))
    sale["resource"]["amount"] = {"total": "12.10", "currency": "EUR", "details": {"subtotal": "10.00", "tax": "2.10"}}
    event = parse_one(json.dumps(sale).encode())
    assert (event.amount, event.tax) == (Decimal("12.10"), Decimal("2.10"))
    # the recorded live sale has no details: no tax reported
    assert parse_one(fixture("live_sale_completed.json")).tax is None

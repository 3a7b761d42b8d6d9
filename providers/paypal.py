"""PayPal REST webhooks: RSA-SHA256 over `id|time|webhook_id|crc32`, checked with PayPal's own certificate.

PayPal signs `<transmission id>|<transmission time>|<webhook id>|<CRC-32 of the raw body>` with the key of
a certificate whose URL it sends in `PAYPAL-CERT-URL`. There is no shared secret: the endpoint's `secret`
is the merchant's webhook id (what PayPal signs). The certificate is fetched only from PayPal's API hosts
over HTTPS, checked against a CA chain and PayPal's certificate names, and cached by URL until it expires
(`CertificateStore`). With `verification: api` PayPal's verify-webhook-signature endpoint decides instead.

A Checkout (Orders v2) capture is the payment `paypal:capture:<capture id>`, a subscription's (v1) sale
`paypal:sale:<sale id>`; refunds, reversals and disputes name the same keys. The merchant passes the
Partnero customer key as `custom_id`, which comes back as `metadata.custom_id`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import time
import uuid
import warnings
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import certifi
import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.events import CustomerFacts, DisputeState, EventKind, NormalizedEvent, ignored
from bridge.money import from_major_units, normalize_currency
from providers.base import (
    AdapterOptions,
    PayloadError,
    ProviderAdapter,
    SignatureError,
    SignedRequest,
    WebhookRequest,
    body_hash,
)

CAPTURE_KEY = "paypal:capture:"
SALE_KEY = "paypal:sale:"
AUTH_ALGO = "SHA256withRSA"
DEFAULT_TOLERANCE_SECONDS = 300
LIVE_API_BASE_URL = "https://api-m.paypal.com"

# PAYPAL-CERT-URL comes from the request: certificates are fetched from these hosts only, never elsewhere
CERTIFICATE_HOSTS = frozenset(
    {"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}
)
SANDBOX_HOSTS = frozenset({"api.sandbox.paypal.com", "api-m.sandbox.paypal.com"})
CERTIFICATE_NAMES = ("messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com")
MAX_CERTIFICATE_BYTES = 64 * 1024
# a certificate URL that failed is not fetched again for this long, however many requests name it
FAILED_FETCH_PAUSE_SECONDS = 60.0
SIMULATOR_CERT_PATH = "/v1/notifications/certs/CERT-partnero-bridge-simulator"

_ID = "paypal-transmission-id"
_TIME = "paypal-transmission-time"
_SIG = "paypal-transmission-sig"
_CERT_URL = "paypal-cert-url"
_ALGO = "paypal-auth-algo"

# PayPal's message-verification certificates have been issued under this DigiCert chain (2015-2025; see
# tests/fixtures/paypal/SOURCES.md). PayPal serves the leaf alone, so the intermediate ships here, and the
# root ships too because current certifi bundles no longer carry it.
_DIGICERT_SHA2_EV_SERVER_CA = b"""-----BEGIN CERTIFICATE-----
MIIEtjCCA56gAwIBAgIQDHmpRLCMEZUgkmFf4msdgzANBgkqhkiG9w0BAQsFADBs
MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMRkwFwYDVQQLExB3
d3cuZGlnaWNlcnQuY29tMSswKQYDVQQDEyJEaWdpQ2VydCBIaWdoIEFzc3VyYW5j
ZSBFViBSb290IENBMB4XDTEzMTAyMjEyMDAwMFoXDTI4MTAyMjEyMDAwMFowdTEL
MAkGA1UEBhMCVVMxFTATBgNVBAoTDERpZ2lDZXJ0IEluYzEZMBcGA1UECxMQd3d3
LmRpZ2ljZXJ0LmNvbTE0MDIGA1UEAxMrRGlnaUNlcnQgU0hBMiBFeHRlbmRlZCBW
YWxpZGF0aW9uIFNlcnZlciBDQTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoC
ggEBANdTpARR+JmmFkhLZyeqk0nQOe0MsLAAh/FnKIaFjI5j2ryxQDji0/XspQUY
uD0+xZkXMuwYjPrxDKZkIYXLBxA0sFKIKx9om9KxjxKws9LniB8f7zh3VFNfgHk/
LhqqqB5LKw2rt2O5Nbd9FLxZS99RStKh4gzikIKHaq7q12TWmFXo/a8aUGxUvBHy
/Urynbt/DvTVvo4WiRJV2MBxNO723C3sxIclho3YIeSwTQyJ3DkmF93215SF2AQh
cJ1vb/9cuhnhRctWVyh+HA1BV6q3uCe7seT6Ku8hI3UarS2bhjWMnHe1c63YlC3k
8wyd7sFOYn4XwHGeLN7x+RAoGTMCAwEAAaOCAUkwggFFMBIGA1UdEwEB/wQIMAYB
Af8CAQAwDgYDVR0PAQH/BAQDAgGGMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEF
BQcDAjA0BggrBgEFBQcBAQQoMCYwJAYIKwYBBQUHMAGGGGh0dHA6Ly9vY3NwLmRp
Z2ljZXJ0LmNvbTBLBgNVHR8ERDBCMECgPqA8hjpodHRwOi8vY3JsNC5kaWdpY2Vy
dC5jb20vRGlnaUNlcnRIaWdoQXNzdXJhbmNlRVZSb290Q0EuY3JsMD0GA1UdIAQ2
MDQwMgYEVR0gADAqMCgGCCsGAQUFBwIBFhxodHRwczovL3d3dy5kaWdpY2VydC5j
b20vQ1BTMB0GA1UdDgQWBBQ901Cl1qCt7vNKYApl0yHU+PjWDzAfBgNVHSMEGDAW
gBSxPsNpA/i/RwHUmCYaCALvY2QrwzANBgkqhkiG9w0BAQsFAAOCAQEAnbbQkIbh
hgLtxaDwNBx0wY12zIYKqPBKikLWP8ipTa18CK3mtlC4ohpNiAexKSHc59rGPCHg
4xFJcKx6HQGkyhE6V6t9VypAdP3THYUYUN9XR3WhfVUgLkc3UHKMf4Ib0mKPLQNa
2sPIoc4sUqIAY+tzunHISScjl2SFnjgOrWNoPLpSgVh5oywM395t6zHyuqB8bPEs
1OG9d4Q3A84ytciagRpKkk47RpqF/oOi+Z6Mo8wNXrM9zwR4jxQUezKcxwCmXMS1
oVWNWlZopCJwqjyBcdmdqEU79OX2olHdx3ti6G8MdOu42vi/hw15UJGQmxg7kVkn
8TUoE6smftX3eg==
-----END CERTIFICATE-----
"""

_DIGICERT_HIGH_ASSURANCE_EV_ROOT = b"""-----BEGIN CERTIFICATE-----
MIIDxTCCAq2gAwIBAgIQAqxcJmoLQJuPC3nyrkYldzANBgkqhkiG9w0BAQUFADBs
MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMRkwFwYDVQQLExB3
d3cuZGlnaWNlcnQuY29tMSswKQYDVQQDEyJEaWdpQ2VydCBIaWdoIEFzc3VyYW5j
ZSBFViBSb290IENBMB4XDTA2MTExMDAwMDAwMFoXDTMxMTExMDAwMDAwMFowbDEL
MAkGA1UEBhMCVVMxFTATBgNVBAoTDERpZ2lDZXJ0IEluYzEZMBcGA1UECxMQd3d3
LmRpZ2ljZXJ0LmNvbTErMCkGA1UEAxMiRGlnaUNlcnQgSGlnaCBBc3N1cmFuY2Ug
RVYgUm9vdCBDQTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMbM5XPm
+9S75S0tMqbf5YE/yc0lSbZxKsPVlDRnogocsF9ppkCxxLeyj9CYpKlBWTrT3JTW
PNt0OKRKzE0lgvdKpVMSOO7zSW1xkX5jtqumX8OkhPhPYlG++MXs2ziS4wblCJEM
xChBVfvLWokVfnHoNb9Ncgk9vjo4UFt3MRuNs8ckRZqnrG0AFFoEt7oT61EKmEFB
Ik5lYYeBQVCmeVyJ3hlKV9Uu5l0cUyx+mM0aBhakaHPQNAQTXKFx01p8VdteZOE3
hzBWBOURtCmAEvF5OYiiAhF8J2a3iLd48soKqDirCmTCv2ZdlYTBoSUeh10aUAsg
EsxBu24LUTi4S8sCAwEAAaNjMGEwDgYDVR0PAQH/BAQDAgGGMA8GA1UdEwEB/wQF
MAMBAf8wHQYDVR0OBBYEFLE+w2kD+L9HAdSYJhoIAu9jZCvDMB8GA1UdIwQYMBaA
FLE+w2kD+L9HAdSYJhoIAu9jZCvDMA0GCSqGSIb3DQEBBQUAA4IBAQAcGgaX3Nec
nzyIZgYIVyHbIUf4KmeqvxgydkAQV8GK83rZEWWONfqe/EW1ntlMMUu4kehDLI6z
eM7b41N5cdblIZQB2lWHmiRk9opmzN6cN82oNLFpmyPInngiK3BD41VHMWEZ71jF
hS9OMPagMRYjyOfiZRYzy78aG6A9+MpeizGLYAiJLQwGXFK3xPkKmNEVX58Svnw2
Yzi9RKR/5CYrCsSXaQ3pjOLAEFe4yHYSkVXySGnYvCoCWw9E1CAx2/S6cCZdkGCe
vEsXCS+0yx5DaMkHJ8HSXPfqIbloEpw8nL+e/IBcm2PN7EeqJSdnoDfzAIJ9VNep
+OkuE6N36B9K
-----END CERTIFICATE-----
"""


# --- certificates -------------------------------------------------------------------------------------


class CertificateError(Exception):
    """A PayPal certificate could not be obtained, or is not one PayPal's CA issued for message signing."""


Fetch = Callable[[str], Awaitable[bytes]]


def is_certificate_url(url: str) -> bool:
    """True only for `https://<PayPal API host>/<path>` with no port, user info, query or fragment."""
    if not url or any(ch.isspace() or ch == "\\" or not ch.isprintable() for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.netloc in CERTIFICATE_HOSTS
        and parts.path.startswith("/")
        and not parts.query
        and not parts.fragment
    )


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        # a few roots in public bundles carry non-positive serials; they still load, and warn each time
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificates(data)


@functools.cache
def default_roots() -> tuple[x509.Certificate, ...]:
    """The CAs a fetched certificate may chain to: certifi's Mozilla bundle plus DigiCert's EV root."""
    bundled = load_pem_certificates(Path(certifi.where()).read_bytes())
    return (*bundled, *load_pem_certificates(_DIGICERT_HIGH_ASSURANCE_EV_ROOT))


def load_ca_file(path: str) -> tuple[x509.Certificate, ...]:
    """Extra trust anchors from a PEM file (the `ca_file` option); ValueError with a readable reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tuple(load_pem_certificates(data))
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate") from None


@dataclass(frozen=True)
class _Trusted:
    key: rsa.RSAPublicKey
    not_before: float
    not_after: float


class CertificateStore:
    """PayPal's signing certificates by URL: fetched from PayPal only, chain-checked, kept until they expire.

    `fetch` gets the PEM text of an allowed URL (raising `CertificateError` when it cannot); None means
    nothing is ever fetched, so only `pin`ned or `add`ed certificates verify. Tests and the simulator
    pre-seed a store this way instead of reaching the network.
    """

    def __init__(
        self,
        fetch: Fetch | None = None,
        roots: Sequence[x509.Certificate] | None = None,
        intermediates: Sequence[x509.Certificate] = (),
    ) -> None:
        self._fetch = fetch
        self._roots = tuple(roots) if roots is not None else None
        self._intermediates = (*intermediates, *load_pem_certificates(_DIGICERT_SHA2_EV_SERVER_CA))
        self._store: Store | None = None
        self._trusted: dict[str, _Trusted] = {}
        self._failed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def pin(self, url: str, certificate: x509.Certificate) -> None:
        """Trust `certificate` for `url` as it is, without a chain (expired SDK vectors, the simulator)."""
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise CertificateError("not an RSA certificate")
        window = (certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp())
        self._trusted[url] = _Trusted(key, *window)

    def add(self, url: str, pem: bytes, now: float) -> None:
        """Check a certificate (leaf first, then any intermediates) at `now` and cache it for `url`."""
        try:
            leaf, *chain = load_pem_certificates(pem)
        except ValueError:
            raise CertificateError("the certificate URL did not return a PEM certificate") from None
        key = leaf.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise CertificateError("not an RSA certificate")
        at = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
        verified = None
        for name in CERTIFICATE_NAMES:
            verifier = PolicyBuilder().store(self._trust_store()).time(at).build_server_verifier(x509.DNSName(name))
            try:
                verified = verifier.verify(leaf, [*chain, *self._intermediates])
                break
            except VerificationError:
                continue
        if verified is None:
            raise CertificateError("certificate is not a valid PayPal message-verification certificate")
        not_after = min(cert.not_valid_after_utc for cert in verified).timestamp()
        self._trusted[url] = _Trusted(key, leaf.not_valid_before_utc.timestamp(), not_after)

    def public_key(self, url: str, now: float) -> rsa.RSAPublicKey:
        trusted = self._trusted.get(url)
        if trusted is None:
            raise CertificateError("certificate not loaded")
        if not trusted.not_before <= now <= trusted.not_after:
            raise CertificateError("certificate expired or not yet valid")
        return trusted.key

    async def load(self, url: str, now: float) -> None:
        """Make `url`'s certificate usable at `now`, fetching it once however many requests wait for it."""
        if self._usable(url, now):
            return
        if not is_certificate_url(url):
            raise CertificateError("not a PayPal certificate URL")
        if self._fetch is None:
            raise CertificateError("certificate not loaded (this endpoint fetches none)")
        lock = self._locks.setdefault(url, asyncio.Lock())
        try:
            async with lock:
                if self._usable(url, now):
                    return
                failed_at = self._failed.get(url)
                if failed_at is not None and time.monotonic() - failed_at < FAILED_FETCH_PAUSE_SECONDS:
                    raise CertificateError("fetching this certificate failed moments ago")
                try:
                    self.add(url, await self._fetch(url), now)
                except CertificateError:
                    if len(self._failed) > 1024:
                        self._failed.clear()
                    self._failed[url] = time.monotonic()
                    raise
                self._failed.pop(url, None)
        finally:
            self._locks.pop(url, None)

    def _usable(self, url: str, now: float) -> bool:
        trusted = self._trusted.get(url)
        return trusted is not None and trusted.not_before <= now <= trusted.not_after

    def _trust_store(self) -> Store:
        if self._store is None:
            roots = list(self._roots if self._roots is not None else default_roots())
            if not roots:
                raise CertificateError("no certificate authority is trusted")
            self._store = Store(roots)
        return self._store


async def fetch_certificate(client: httpx.AsyncClient, url: str) -> bytes:
    """GET one certificate, refusing redirects, non-200 answers and anything over the size cap."""
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise CertificateError(f"the certificate URL answered {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_CERTIFICATE_BYTES:
                    raise CertificateError("the certificate URL answered more than a certificate")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise CertificateError(f"the certificate could not be fetched ({type(exc).__name__})") from None


# --- simulator ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulator:
    """A throwaway signing identity: `sign()` uses its key, verification trusts its certificate as is."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


def load_simulator(path: str) -> Simulator:
    """A PEM file with an RSA private key and its certificate (the `simulator_file` option)."""
    try:
        changed = Path(path).stat().st_mtime_ns
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return _read_simulator(path, changed)


# loading an RSA key checks it, which takes a noticeable fraction of a second; each file is read once
@functools.lru_cache(maxsize=16)
def _read_simulator(path: str, changed: int) -> Simulator:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
        certificates = load_pem_certificates(data)
    except (ValueError, TypeError):
        raise ValueError(f"{path} needs an unencrypted PEM private key and its certificate") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: the private key is not an RSA key")
    matching = [c for c in certificates if c.public_key() == key.public_key()]
    if not matching:
        raise ValueError(f"{path}: no certificate matches the private key")
    return Simulator(key, matching[0])


def simulator_url(sandbox: bool) -> str:
    host = "api.sandbox.paypal.com" if sandbox else "api.paypal.com"
    return f"https://{host}{SIMULATOR_CERT_PATH}"


# --- options and adapter --------------------------------------------------------------------------------


class PayPalOptions(AdapterOptions):
    """Endpoint settings for PayPal."""

    # offline: check the RSA signature here; api: ask PayPal's verify-webhook-signature (needs credentials)
    verification: Literal["offline", "api"] = "offline"
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE_SECONDS, gt=0)
    # for the certificate fetch and the API calls
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # PEM file of further CAs PayPal's certificate may chain to (added to certifi's bundle)
    ca_file: str | None = None
    api_base_url: str = LIVE_API_BASE_URL
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # tests and `simulate` only: sign with this throwaway key and accept nothing else (never in production)
    simulator_file: str | None = None

    @field_validator("ca_file")
    @classmethod
    def _readable_ca_file(cls, value: str | None) -> str | None:
        if value is not None:
            load_ca_file(value)
        return value

    @field_validator("simulator_file")
    @classmethod
    def _readable_simulator(cls, value: str | None) -> str | None:
        if value is not None:
            load_simulator(value)
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("must be an http(s) URL such as https://api-m.paypal.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_needs_credentials(self) -> PayPalOptions:
        if self.verification == "api" and not (self.client_id and self.client_secret):
            raise ValueError("verification: api needs client_id and client_secret")
        return self


@dataclass(frozen=True)
class _Transmission:
    """The signature headers of one delivery, already checked for shape and freshness."""

    transmission_id: str
    transmission_time: str
    cert_url: str
    auth_algo: str
    signature_text: str
    signature: bytes


class PayPalAdapter(ProviderAdapter):
    name: ClassVar[str] = "paypal"
    sample_note: ClassVar[str] = "PayPal signs with its own certificate; use the sandbox's webhook simulator"
    Options: ClassVar[type[AdapterOptions]] = PayPalOptions
    reports_dispute_outcome: ClassVar[bool] = True

    def __init__(
        self, secrets: Sequence[str], options: AdapterOptions, *, certificates: CertificateStore | None = None
    ) -> None:
        super().__init__(secrets, options)
        self.settings = options if isinstance(options, PayPalOptions) else PayPalOptions()
        self._http: httpx.AsyncClient | None = None
        self._token: tuple[str, float] | None = None
        self._simulator = load_simulator(self.settings.simulator_file) if self.settings.simulator_file else None
        if certificates is None:
            certificates = self._default_certificates()
        if self._simulator is not None:
            for sandbox in (False, True):
                certificates.pin(simulator_url(sandbox), self._simulator.certificate)
        self.certificates = certificates

    def _default_certificates(self) -> CertificateStore:
        if self._simulator is not None:
            return CertificateStore(fetch=None)
        extra = load_ca_file(self.settings.ca_file) if self.settings.ca_file else ()
        roots = (*default_roots(), *extra) if extra else None
        return CertificateStore(fetch=self._fetch_certificate, roots=roots)

    # --- authenticity ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float) -> None:
        """The offline check against certificates already loaded; `authenticate` loads them first."""
        transmission = self._transmission(request, now)
        self._check_signature(transmission, request.body, now)

    async def authenticate(self, request: WebhookRequest, now: float) -> None:
        transmission = self._transmission(request, now)
        if self.settings.verification == "api":
            await self._verify_with_api(transmission, request.body)
            return
        try:
            await self.certificates.load(transmission.cert_url, now)
        except CertificateError as exc:
            raise SignatureError(f"PayPal certificate unusable: {exc}") from None
        self._check_signature(transmission, request.body, now)

    def _transmission(self, request: WebhookRequest, now: float) -> _Transmission:
        values = {}
        for header in (_ID, _TIME, _SIG, _CERT_URL, _ALGO):
            value = request.header(header)
            if not value:
                raise SignatureError.missing(header)
            values[header] = value
        if values[_ALGO].lower() != AUTH_ALGO.lower():
            raise SignatureError(f"unsupported {_ALGO} (only {AUTH_ALGO})")
        try:
            sent_at = datetime.fromisoformat(values[_TIME])
            timestamp = (sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            raise SignatureError.malformed(_TIME) from None
        if abs(now - timestamp) > self.settings.tolerance_seconds:
            raise SignatureError.timestamp()
        if not is_certificate_url(values[_CERT_URL]):
            raise SignatureError(f"{_CERT_URL} is not a PayPal certificate URL")
        try:
            signature = base64.b64decode(values[_SIG].strip(), validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError.malformed(_SIG) from None
        if not signature:
            raise SignatureError.malformed(_SIG)
        return _Transmission(values[_ID], values[_TIME], values[_CERT_URL], values[_ALGO], values[_SIG], signature)

    def _check_signature(self, transmission: _Transmission, body: bytes, now: float) -> None:
        try:
            key = self.certificates.public_key(transmission.cert_url, now)
        except CertificateError as exc:
            raise SignatureError(f"PayPal certificate unusable: {exc}") from None
        crc = zlib.crc32(body)
        for webhook_id in self.secrets:
            message = signed_message(transmission.transmission_id, transmission.transmission_time, webhook_id, crc)
            try:
                key.verify(transmission.signature, message, padding.PKCS1v15(), hashes.SHA256())
                return
            except InvalidSignature:
                continue
        raise SignatureError.mismatch(_SIG)

    async def _fetch_certificate(self, url: str) -> bytes:
        return await fetch_certificate(self._client(), url)

    # --- verification through PayPal's API -----------------------------------------------------------

    async def _verify_with_api(self, transmission: _Transmission, body: bytes) -> None:
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            raise SignatureError.malformed("body (not JSON)") from None
        if not isinstance(event, dict):
            raise SignatureError.malformed("body (not a JSON object)")
        for webhook_id in self.secrets:
            request = {
                "auth_algo": transmission.auth_algo,
                "cert_url": transmission.cert_url,
                "transmission_id": transmission.transmission_id,
                "transmission_sig": transmission.signature_text,
                "transmission_time": transmission.transmission_time,
                "webhook_id": webhook_id,
                # PayPal checks its own serialisation of the parsed event, so the event goes as an object
                "webhook_event": event,
            }
            if await self._verification_status(request) == "SUCCESS":
                return
        raise SignatureError.mismatch(_SIG)

    async def _verification_status(self, request: Mapping[str, Any]) -> str:
        url = self.settings.api_base_url + "/v1/notifications/verify-webhook-signature"
        for attempt in range(2):
            token = await self._access_token()
            try:
                response = await self._client().post(url, json=request, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError:
                raise SignatureError("PayPal verification API unreachable") from None
            if response.status_code == 401 and attempt == 0:
                # a token PayPal revoked or expired early: fetch a fresh one once
                self._token = None
                continue
            if response.status_code != 200:
                raise SignatureError(f"PayPal verification API answered {response.status_code}")
            try:
                status = response.json().get("verification_status")
            except (ValueError, AttributeError):
                raise SignatureError("PayPal verification API answered no verification_status") from None
            return str(status)
        raise SignatureError("PayPal verification API refused a fresh access token")

    async def _access_token(self) -> str:
        if self._token is not None and self._token[1] > time.monotonic():
            return self._token[0]
        secret = self.settings.client_secret.get_secret_value() if self.settings.client_secret else ""
        try:
            response = await self._client().post(
                self.settings.api_base_url + "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self.settings.client_id or "", secret),
            )
        except httpx.HTTPError:
            raise SignatureError("PayPal OAuth API unreachable") from None
        if response.status_code != 200:
            raise SignatureError(f"PayPal OAuth API answered {response.status_code} (check client_id/client_secret)")
        try:
            answer = response.json()
            token = answer["access_token"]
            lifetime = int(answer.get("expires_in", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SignatureError("PayPal OAuth API answered no access_token") from None
        if not isinstance(token, str) or not token:
            raise SignatureError("PayPal OAuth API answered no access_token")
        # renew a minute early so a token never expires between the check and the call
        self._token = (token, time.monotonic() + max(lifetime - 60, 0))
        return token

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.timeout_seconds, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- delivery id and signing -----------------------------------------------------------------------

    def delivery_id(self, request: WebhookRequest) -> str:
        # the event id (WH-...) stays the same across PayPal's retries; each transmission id is new
        try:
            payload = json.loads(request.body)
        except (ValueError, RecursionError):
            return body_hash(request.body)
        event_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(event_id, str) and 0 < len(event_id) <= 200:
            return event_id
        return body_hash(request.body)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        """What PayPal would send, signed with the simulator key (PayPal's own key is PayPal's)."""
        if self._simulator is None:
            raise NotImplementedError("PayPal signs with its own key; set simulator_file to sign test deliveries")
        transmission_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"paypal:{hashlib.sha256(body).hexdigest()}:{int(now)}"))
        transmission_time = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = signed_message(transmission_id, transmission_time, secret, zlib.crc32(body))
        signature = self._simulator.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return SignedRequest(
            headers={
                _ID: transmission_id,
                _TIME: transmission_time,
                _SIG: base64.b64encode(signature).decode("ascii"),
                _CERT_URL: simulator_url(_sandbox_links(_lenient_json(body))),
                _ALGO: AUTH_ALGO,
                "paypal-auth-version": "v2",
            }
        )

    # --- parsing ---------------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        payload = _json_object(request.body)
        event_type = payload.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("missing event_type")
        handler = _HANDLERS.get(event_type)
        if handler is None:
            return [ignored(event_type, _ignored_reason(event_type))]
        resource = payload.get("resource")
        if not isinstance(resource, dict):
            raise PayloadError(f"{event_type}: missing resource object")
        sandbox = _is_sandbox_host(request.header(_CERT_URL)) or _sandbox_links(payload)
        context = _Context(event_type, _timestamp(payload.get("create_time")), sandbox)
        try:
            return handler(context, resource)
        except (KeyError, TypeError, ValueError, InvalidOperation, ArithmeticError) as exc:
            raise PayloadError(f"{event_type}: unreadable field ({exc})") from None


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, crc32: int) -> bytes:
    """The exact bytes PayPal signs; `crc32` is the unsigned CRC-32 of the raw body."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc32}".encode("utf-8", "surrogatepass")


# --- event handlers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    event_type: str
    occurred_at: datetime | None
    test_mode: bool


def _capture_completed(ctx: _Context, resource: Mapping[str, Any]) -> list[NormalizedEvent]:
    return [_capture_sale(ctx, resource, CustomerFacts(metadata=_merchant_metadata(resource)))]


def _order_completed(ctx: _Context, order: Mapping[str, Any]) -> list[NormalizedEvent]:
    # the same captures as PAYMENT.CAPTURE.COMPLETED, same keys, but with the payer's email and name
    payer = _mapping(order.get("payer"))
    name = _mapping(payer.get("name"))
    full_name = " ".join(part for part in (_optional(name.get("given_name")), _optional(name.get("surname"))) if part)
    events = []
    for unit in _list(order.get("purchase_units")):
        unit = _mapping(unit)
        for capture in _list(_mapping(unit.get("payments")).get("captures")):
            capture = _mapping(capture)
            if capture.get("status") != "COMPLETED":
                continue
            customer = CustomerFacts(
                email=_optional(payer.get("email_address")),
                customer_id=_optional(payer.get("payer_id")),
                name=full_name or None,
                metadata=_merchant_metadata(unit) | _merchant_metadata(capture),
            )
            events.append(_capture_sale(ctx, capture, customer))
    return events or [ignored(ctx.event_type, "order has no completed capture yet")]


def _capture_sale(ctx: _Context, capture: Mapping[str, Any], customer: CustomerFacts) -> NormalizedEvent:
    status = capture.get("status")
    if status not in (None, "COMPLETED"):
        return ignored(ctx.event_type, f"capture status is {status!r}; only a completed capture moves money")
    amount, currency = _money(capture["amount"], "value", "currency_code")
    if amount <= 0:
        return ignored(ctx.event_type, "capture amount is 0")
    return NormalizedEvent(
        kind=EventKind.SALE,
        event_type=ctx.event_type,
        transaction_key=CAPTURE_KEY + _text(capture, "id"),
        amount=amount,
        currency=currency,
        customer=customer,
        test_mode=ctx.test_mode,
        occurred_at=ctx.occurred_at,
    )


def _sale_completed(ctx: _Context, sale: Mapping[str, Any]) -> list[NormalizedEvent]:
    state = sale.get("state")
    if state not in (None, "completed"):
        return [ignored(ctx.event_type, f"sale state is {state!r}; only a completed sale moves money")]
    amount, currency = _money(sale["amount"], "total", "currency")
    if amount <= 0:
        return [ignored(ctx.event_type, "sale amount is 0")]
    metadata = _merchant_metadata({"custom_id": sale.get("custom"), "invoice_id": sale.get("invoice_number")})
    agreement = _optional(sale.get("billing_agreement_id"))
    if agreement:
        metadata["billing_agreement_id"] = agreement
    event = NormalizedEvent(
        kind=EventKind.SALE,
        event_type=ctx.event_type,
        transaction_key=SALE_KEY + _text(sale, "id"),
        amount=amount,
        currency=currency,
        customer=CustomerFacts(metadata=metadata),
        test_mode=ctx.test_mode,
        occurred_at=ctx.occurred_at,
    )
    return [event]


def _capture_refunded(ctx: _Context, refund: Mapping[str, Any]) -> list[NormalizedEvent]:
    status = refund.get("status")
    if status not in (None, "COMPLETED"):
        return [ignored(ctx.event_type, f"refund status is {status!r}; only a completed refund moves money")]
    capture_id = _capture_of(refund)
    amount, currency = _money(refund["amount"], "value", "currency_code")
    breakdown = _mapping(refund.get("seller_payable_breakdown"))
    refunded_total = _optional_money(breakdown.get("total_refunded_amount"), "value", "currency_code", currency)
    event = NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=ctx.event_type,
        transaction_key=CAPTURE_KEY + capture_id,
        amount=abs(amount),
        currency=currency,
        customer=CustomerFacts(metadata=_merchant_metadata(refund)),
        test_mode=ctx.test_mode,
        occurred_at=ctx.occurred_at,
        refunded_total=refunded_total,
        refund_id=_text(refund, "id"),
    )
    return [event]


def _sale_refunded(ctx: _Context, refund: Mapping[str, Any]) -> list[NormalizedEvent]:
    state = refund.get("state")
    if state not in (None, "completed"):
        return [ignored(ctx.event_type, f"refund state is {state!r}; only a completed refund moves money")]
    sale_id = _sale_of(refund)
    if sale_id is None:
        raise ValueError("the refund names no sale (no sale_id)")
    amount, currency = _money(refund["amount"], "total", "currency")
    refunded_total = _optional_money(refund.get("total_refunded_amount"), "value", "currency", currency)
    event = NormalizedEvent(
        kind=EventKind.REFUND,
        event_type=ctx.event_type,
        transaction_key=SALE_KEY + sale_id,
        # v1 refunds carry the amount negated ("-0.01")
        amount=abs(amount),
        currency=currency,
        test_mode=ctx.test_mode,
        occurred_at=ctx.occurred_at,
        refunded_total=refunded_total,
        refund_id=_text(refund, "id"),
    )
    return [event]


def _capture_reversed(ctx: _Context, reversal: Mapping[str, Any]) -> list[NormalizedEvent]:
    # PayPal pulled the money back (chargeback or bank reversal): the sale is lost like a lost dispute
    amount, currency = _money(reversal["amount"], "value", "currency_code")
    return [_dispute_event(ctx, CAPTURE_KEY + _capture_of(reversal), DisputeState.LOST, abs(amount), currency)]


def _sale_reversed(ctx: _Context, reversal: Mapping[str, Any]) -> list[NormalizedEvent]:
    sale_id = _sale_of(reversal)
    if sale_id is None:
        return [ignored(ctx.event_type, "the reversal names no sale (no sale_id); reverse its sale by hand")]
    amount, currency = _money(reversal["amount"], "total", "currency")
    return [_dispute_event(ctx, SALE_KEY + sale_id, DisputeState.LOST, abs(amount), currency)]


# how a resolved dispute ends for the merchant; NONE and unknown codes are not acted on
_DISPUTE_OUTCOMES = {
    "RESOLVED_BUYER_FAVOUR": DisputeState.LOST,
    # the merchant accepted the claim: the buyer gets the money back
    "ACCEPTED": DisputeState.LOST,
    "RESOLVED_SELLER_FAVOUR": DisputeState.WON,
    "CANCELED_BY_BUYER": DisputeState.WON,
    "DENIED": DisputeState.WON,
    # PayPal paid the buyer itself; the merchant keeps the sale
    "RESOLVED_WITH_PAYOUT": DisputeState.WON,
}


def _dispute_created(ctx: _Context, dispute: Mapping[str, Any]) -> list[NormalizedEvent]:
    return _dispute_events(ctx, dispute, DisputeState.OPENED)


def _dispute_resolved(ctx: _Context, dispute: Mapping[str, Any]) -> list[NormalizedEvent]:
    outcome = _mapping(dispute.get("dispute_outcome"))
    code = outcome.get("outcome_code")
    state = _DISPUTE_OUTCOMES.get(code) if isinstance(code, str) else None
    if state is None:
        return [ignored(ctx.event_type, f"dispute resolved with outcome {code!r}, which moves no sale")]
    if code == "ACCEPTED" and _partial_acceptance(dispute, outcome):
        return [ignored(ctx.event_type, "claim accepted for part of the amount; its refund arrives as a refund event")]
    return _dispute_events(ctx, dispute, state)


def _dispute_events(ctx: _Context, dispute: Mapping[str, Any], state: DisputeState) -> list[NormalizedEvent]:
    transaction_ids = []
    for transaction in _list(dispute.get("disputed_transactions")):
        seller_id = _optional(_mapping(transaction).get("seller_transaction_id"))
        if seller_id and seller_id not in transaction_ids:
            transaction_ids.append(seller_id)
    if not transaction_ids:
        raise ValueError("the dispute names no seller_transaction_id")
    amount: Decimal | None = None
    currency: str | None = None
    if dispute.get("dispute_amount") is not None:
        amount, currency = _money(dispute["dispute_amount"], "value", "currency_code")
        if amount < 0:
            raise ValueError(f"dispute amount {amount} is negative")
    # a dispute names PayPal's transaction id but not whether it was a Checkout capture or a subscription
    # sale: both keys are named, and the one the bridge never booked ends as a no-op
    return [
        _dispute_event(ctx, prefix + transaction_id, state, amount, currency)
        for transaction_id in transaction_ids
        for prefix in (CAPTURE_KEY, SALE_KEY)
    ]


def _dispute_event(
    ctx: _Context, key: str, state: DisputeState, amount: Decimal | None, currency: str | None
) -> NormalizedEvent:
    return NormalizedEvent(
        kind=EventKind.DISPUTE,
        event_type=ctx.event_type,
        transaction_key=key,
        amount=amount,
        currency=currency,
        test_mode=ctx.test_mode,
        occurred_at=ctx.occurred_at,
        dispute_state=state,
    )


def _partial_acceptance(dispute: Mapping[str, Any], outcome: Mapping[str, Any]) -> bool:
    if outcome.get("amount_refunded") is None or dispute.get("dispute_amount") is None:
        return False
    refunded, _ = _money(outcome["amount_refunded"], "value", "currency_code")
    disputed, _ = _money(dispute["dispute_amount"], "value", "currency_code")
    return refunded < disputed


Handler = Callable[[_Context, Mapping[str, Any]], list[NormalizedEvent]]

_HANDLERS: dict[str, Handler] = {
    "PAYMENT.CAPTURE.COMPLETED": _capture_completed,
    "CHECKOUT.ORDER.COMPLETED": _order_completed,
    "PAYMENT.SALE.COMPLETED": _sale_completed,
    "PAYMENT.CAPTURE.REFUNDED": _capture_refunded,
    "PAYMENT.SALE.REFUNDED": _sale_refunded,
    "PAYMENT.CAPTURE.REVERSED": _capture_reversed,
    "PAYMENT.SALE.REVERSED": _sale_reversed,
    "CUSTOMER.DISPUTE.CREATED": _dispute_created,
    "CUSTOMER.DISPUTE.RESOLVED": _dispute_resolved,
}

# Why each event we do not act on is skipped; the operator sees these reasons.
_IGNORED_REASONS = {
    "CHECKOUT.ORDER.APPROVED": "buyer approved the order; no money has moved yet",
    "PAYMENT.CAPTURE.PENDING": "capture pending; the sale is taken from PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.DECLINED": "capture declined; no money moved",
    "PAYMENT.CAPTURE.DENIED": "capture denied; no money moved",
    "PAYMENT.SALE.PENDING": "sale pending; the sale is taken from PAYMENT.SALE.COMPLETED",
    "PAYMENT.SALE.DENIED": "sale denied; no money moved",
    "CUSTOMER.DISPUTE.UPDATED": "dispute update; its outcome arrives as CUSTOMER.DISPUTE.RESOLVED",
}
_IGNORED_PREFIXES = {
    "BILLING.SUBSCRIPTION.": "subscription lifecycle; each payment arrives as PAYMENT.SALE.COMPLETED",
    "BILLING.PLAN.": "plan setup, not a payment",
    "CATALOG.": "catalog change, not a payment",
    "PAYMENT.AUTHORIZATION.": "authorization only; the sale is taken from its capture",
    "PAYMENTS.PAYMENT.": "v1 payment created; the money arrives as PAYMENT.SALE.COMPLETED",
    "CHECKOUT.": "checkout step; the payment arrives as PAYMENT.CAPTURE.COMPLETED",
}


def _ignored_reason(event_type: str) -> str:
    if event_type in _IGNORED_REASONS:
        return _IGNORED_REASONS[event_type]
    for prefix, reason in _IGNORED_PREFIXES.items():
        if event_type.startswith(prefix):
            return reason
    return "event type not used by the bridge"


# --- field helpers --------------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    return payload


def _lenient_json(body: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _host(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _is_sandbox_host(url: object) -> bool:
    return _host(url) in SANDBOX_HOSTS


def _sandbox_links(payload: Mapping[str, Any]) -> bool:
    """Sandbox events link to the sandbox API (the event's own `links`, always present)."""
    for link in _list(payload.get("links")):
        host = _host(_mapping(link).get("href"))
        if host is not None and host.endswith(".sandbox.paypal.com"):
            return True
    return False


def _merchant_metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    """`custom_id` and `invoice_id` as the merchant set them; a JSON-object custom_id adds its scalar fields."""
    out: dict[str, str] = {}
    custom_id = _optional(obj.get("custom_id"))
    if custom_id:
        out.update(_json_scalars(custom_id))
        out["custom_id"] = custom_id
    invoice_id = _optional(obj.get("invoice_id"))
    if invoice_id:
        out["invoice_id"] = invoice_id
    return out


def _json_scalars(text: str) -> dict[str, str]:
    if not text.startswith("{"):
        return {}
    try:
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | Decimal):
            out[str(key)] = str(item)
    return out


def _capture_of(refund: Mapping[str, Any]) -> str:
    """The capture a v2 refund or reversal belongs to: its `up` link, else supplementary related ids."""
    for link in _list(refund.get("links")):
        link = _mapping(link)
        if link.get("rel") == "up":
            capture_id = _id_after(link.get("href"), "captures")
            if capture_id:
                return capture_id
    related = _mapping(_mapping(refund.get("supplementary_data")).get("related_ids"))
    capture_id = _optional(related.get("capture_id"))
    if capture_id:
        return capture_id
    raise ValueError("the refund names no capture (no up link)")


def _sale_of(refund: Mapping[str, Any]) -> str | None:
    sale_id = _optional(refund.get("sale_id"))
    if sale_id:
        return sale_id
    for link in _list(refund.get("links")):
        link = _mapping(link)
        if link.get("rel") == "sale":
            return _id_after(link.get("href"), "sale")
    return None


def _id_after(href: object, segment: str) -> str | None:
    if not isinstance(href, str):
        return None
    try:
        parts = urlsplit(href).path.rstrip("/").split("/")
    except ValueError:
        return None
    if len(parts) >= 2 and parts[-2] == segment and parts[-1]:
        return parts[-1]
    return None


def _money(obj: object, value_field: str, currency_field: str) -> tuple[Decimal, str]:
    """A PayPal money object (decimal string in major units) as a Decimal at the currency's exponent."""
    if not isinstance(obj, dict):
        raise ValueError("amount is not an object")
    currency = normalize_currency(_text(obj, currency_field))
    value = obj[value_field]
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"amount {value!r} is not a decimal string")
    return from_major_units(value, currency), currency


def _optional_money(obj: object, value_field: str, currency_field: str, currency: str) -> Decimal | None:
    if obj is None:
        return None
    amount, its_currency = _money(obj, value_field, currency_field)
    return abs(amount) if its_currency == currency else None


def _text(obj: Mapping[str, Any], field: str) -> str:
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(f"{field} is missing or empty")
    return str(value)


def _optional(value: object) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None

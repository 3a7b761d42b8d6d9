"""The provider adapter contract: a signature validator and a parser to normalized events.

Every adapter is one class in one module of this package, registered by its `name`. The core calls
`verify` on the ingest path (cheap, constant-time, raw bytes) and `parse` later in the worker, on the
stored call, so a parser bug never loses a webhook: the call is kept and can be reprocessed.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict

from bridge.events import NormalizedEvent

if TYPE_CHECKING:
    from providers._api import Affiliate, HistoryWindow, PaymentRecord


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP call exactly as received. `headers` keys are lower-case; `body` is byte-exact."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query_string: str = ""

    @property
    def query(self) -> dict[str, str]:
        """First value of each query parameter (`?token=...`)."""
        return {k: v[0] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class SignedRequest:
    """What a provider adds to a body to sign it: used by `simulate` and by tests."""

    headers: dict[str, str] = field(default_factory=dict)
    query_string: str = ""


@dataclass(frozen=True)
class CheckoutLink:
    """How links to this provider's checkout carry custom data, for the bridge's `/partnero-checkout.js`.

    A link whose host ends with one of `hosts` and whose path starts with one of `path_prefixes` gets
    the query parameter `param.format(name=...)` (e.g. `checkout[custom][{name}]`) set to the partner key,
    unless the link already has it.
    """

    hosts: tuple[str, ...]
    param: str
    path_prefixes: tuple[str, ...] = ("/",)


class SignatureError(Exception):
    """The request is not authentic. The message is one short line, safe to return as a 401 body."""

    @classmethod
    def missing(cls, what: str) -> SignatureError:
        return cls(f"missing {what}")

    @classmethod
    def mismatch(cls, what: str = "signature") -> SignatureError:
        return cls(f"{what} does not match")

    @classmethod
    def timestamp(cls) -> SignatureError:
        return cls("timestamp outside tolerance")

    @classmethod
    def malformed(cls, what: str) -> SignatureError:
        return cls(f"malformed {what}")


class PayloadError(Exception):
    """An authentic body this adapter cannot read; the call is kept with this message for replay."""


class AcknowledgeOnly(Exception):
    """A provider handshake (WooCommerce's unsigned creation ping): answer 200, store nothing.

    Raise it from `verify`/`authenticate` only for requests that carry no payment at all; the message is
    the reason written to the log.
    """


class ProviderUnavailable(Exception):
    """The provider's API could not be asked right now; reading the stored call is retried later."""


class AdapterOptions(BaseModel):
    """Provider-specific endpoint settings; each adapter subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderAdapter:
    """Base of every adapter. Subclasses set `name`, maybe `Options`, and implement the methods."""

    name: ClassVar[str]
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    # False for providers authenticated some other way than a shared secret (e.g. an API fetch)
    requires_secret: ClassVar[bool] = True
    # a shorter secret is refused on a live endpoint: guessable (providers that allow less say so)
    min_secret_length: ClassVar[int] = 8
    # True when the provider reports a dispute's outcome (lost/won), so a reversal can wait for it
    reports_dispute_outcome: ClassVar[bool] = False
    # checkout links the browser script may decorate with the partner key (none: the provider has no
    # link-level custom data, so the merchant passes it through its own backend)
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = ()
    # why `simulate` has no sample for this provider (when `samples/<name>/` is empty or absent)
    sample_note: ClassVar[str] = ""

    def __init__(self, secrets: Sequence[str], options: AdapterOptions) -> None:
        self.secrets = tuple(secrets)
        self.options = options

    def verify(self, request: WebhookRequest, now: float) -> None:
        """Raise `SignatureError` unless `request` is authentic (any configured secret may match)."""
        raise NotImplementedError

    async def authenticate(self, request: WebhookRequest, now: float) -> None:
        """What ingest awaits. Override only where checking needs I/O (PayPal's certificate fetch)."""
        self.verify(request, now)

    def delivery_id(self, request: WebhookRequest) -> str:
        """The provider's id of this delivery, for inbound dedup; by default a hash of the body."""
        return body_hash(request.body)

    def parse(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Normalized events of a verified request; events not acted on come back as `ignored`."""
        raise NotImplementedError

    async def read(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """What the worker awaits. Override only where the payload needs an API call (Mollie's pings).

        A transient failure of that call raises `ProviderUnavailable`: the call stays stored and is read
        again later. An answer that says the payload is not authentic raises `PayloadError`.
        """
        return self.parse(request)

    async def aclose(self) -> None:
        """Release what the adapter opened (HTTP clients); called once at shutdown."""

    async def list_payments(self, window: HistoryWindow) -> list[PaymentRecord]:
        """The payments made in `window` as the provider's API describes them now (refunds included),
        each with the events this adapter's parsing makes of it, for backfill and reconcile.

        The client lives beside the adapter, in `providers/_<name>_api.py` (its `list_payments`), with the
        shared machinery in `providers._api`; a provider without one has no backfill.
        """
        records: list[PaymentRecord] = await self._api_client("list_payments", "backfill and reconcile")(
            self, self.options, window
        )
        return records

    async def list_affiliates(self, window: HistoryWindow) -> list[Affiliate]:
        """The provider's own affiliates (`providers/_<name>_api.py` `list_affiliates`), to become partners."""
        affiliates: list[Affiliate] = await self._api_client("list_affiliates", "import-affiliates")(
            self, self.options, window
        )
        return affiliates

    def _api_client(self, function: str, what: str) -> Any:
        from providers._api import HistoryUnavailable

        try:
            client = importlib.import_module(f"providers._{self.name}_api")
        except ModuleNotFoundError:
            client = None
        if not hasattr(client, function):
            raise HistoryUnavailable(f"{self.name}: {what} is not available for this provider")
        return getattr(client, function)

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        """The headers or query a genuine provider would send with `body` (the inverse of `verify`)."""
        raise NotImplementedError

    def content_type(self) -> str:
        return "application/json"

    @classmethod
    def sample_events(cls) -> tuple[str, ...]:
        """Events `partnero-bridge simulate` can send: the files in `providers/samples/<name>/`, sale first."""
        folder = SAMPLES / cls.name
        if not folder.is_dir():
            return ()
        names = {p.name.split(".", 1)[0] for p in folder.iterdir() if not p.name.startswith(".")}
        return tuple(sorted(names, key=lambda name: (name != "sale", name)))  # a sale is the default

    def sample(self, event: str, unique: str) -> bytes:
        """A test-mode sample body of `event`; `{{unique}}` in the file becomes `unique`, so each simulated
        delivery (and its payment) is new to the bridge."""
        [path] = [p for p in (SAMPLES / self.name).iterdir() if p.name.split(".", 1)[0] == event]
        return path.read_bytes().replace(b"{{unique}}", unique.encode("ascii"))


SAMPLES = Path(__file__).resolve().parent / "samples"


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()

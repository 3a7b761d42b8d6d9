"""Partners' discount codes: which partner a redeemed code belongs to, for the `coupon` partner source.

A code is looked up in the YAML map first (`coupons.codes`, which wins), then among the program's
promotion codes at Partnero. Partnero's codes are read whole and cached per program; a code missing
from the cache reads them again, at most once a minute, so a code created a moment ago is found without
a request per sale. A promotion code limited to exactly one partner names that partner; a code open to
every partner (or shared by several) names nobody. Codes match case-insensitively, as buyers type them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bridge.config import CouponSettings, Endpoint
from bridge.events import EventKind, NormalizedEvent
from bridge.partnero import Outcome, PartneroClient

REFRESH_SECONDS = 60.0


class CodesUnavailable(Exception):
    """Partnero's promotion codes could not be read; the call is read again later."""


@dataclass(frozen=True)
class CodePartner:
    """The partner a code names: by referral `key` (the YAML map) or by Partnero's partner `id`."""

    field: Literal["key", "id"]
    value: str
    origin: Literal["config", "partnero"]

    def reference(self) -> dict[str, str]:
        """The `partner` object of a Partnero customer."""
        return {self.field: self.value}

    def label(self) -> str:
        return self.value if self.field == "key" else f"id:{self.value}"


def fold(code: str) -> str:
    return code.strip().casefold()


def partner_of(promotion_code: Mapping[str, Any]) -> CodePartner | None:
    """The one partner a Partnero promotion code is limited to; None when it is open or shared."""
    if promotion_code.get("limit_to_specific_partner") is not True:
        return None
    partners = promotion_code.get("coupon_specific_partners")
    if isinstance(partners, Mapping):
        partners = [partners]  # the create form documents one object ({id, full_name})
    if not isinstance(partners, list) or len(partners) != 1 or not isinstance(partners[0], Mapping):
        return None
    partner = partners[0]
    for field in ("key", "id"):
        value = partner.get(field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return CodePartner("key" if field == "key" else "id", str(value).strip(), "partnero")
    return None


class CodeBook:
    """Resolves the codes of a call's sales before they are recorded (network first, then the ledger)."""

    def __init__(self, settings: CouponSettings, timeout_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._clients: dict[str, PartneroClient] = {}
        self._codes: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._read_at: dict[str, float] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def resolve(self, endpoint: Endpoint, events: Iterable[NormalizedEvent]) -> dict[str, CodePartner]:
        """{folded code: partner} for the codes on `events`' sales, where the endpoint reads codes."""
        if "coupon" not in endpoint.settings.partner_key:
            return {}
        wanted = {fold(e.coupon_code) for e in events if e.kind is EventKind.SALE and e.coupon_code}
        found: dict[str, CodePartner] = {}
        for code in sorted(c for c in wanted if c):
            partner = await self.partner(endpoint, code)
            if partner is not None:
                found[code] = partner
        return found

    async def partner(self, endpoint: Endpoint, code: str) -> CodePartner | None:
        configured = self.settings.partner_for(code)
        if configured:
            return CodePartner("key", configured, "config")
        if endpoint.partnero.effective_dry_run:
            return None
        scope = endpoint.partnero.scope
        client = self._client(endpoint)
        known = self._codes.get(scope)
        if known is None or (fold(code) not in known and self._stale(scope)):
            known = await self._read(scope, client)
        promotion_code = known.get(fold(code))
        if promotion_code is None:
            return None
        partner = partner_of(promotion_code)
        if partner is None and promotion_code.get("limit_to_specific_partner") is True:
            # the list may leave the partners out; the single get is documented with them
            one = await client.promotion_code(str(promotion_code.get("code") or code))
            if isinstance(one, Outcome):
                raise CodesUnavailable(one.detail)
            partner = partner_of(one) if one is not None else None
        return partner

    def _stale(self, scope: str) -> bool:
        return self.clock() - self._read_at.get(scope, float("-inf")) >= REFRESH_SECONDS

    async def _read(self, scope: str, client: PartneroClient) -> dict[str, Mapping[str, Any]]:
        answer = await client.promotion_codes()
        if isinstance(answer, Outcome):
            raise CodesUnavailable(answer.detail)
        codes: dict[str, Mapping[str, Any]] = {
            fold(str(c["code"])): c for c in answer if isinstance(c.get("code"), str) and c["code"].strip()
        }
        self._codes[scope] = codes
        self._read_at[scope] = self.clock()
        return codes

    def _client(self, endpoint: Endpoint) -> PartneroClient:
        settings = endpoint.partnero
        if settings.scope not in self._clients:
            self._clients[settings.scope] = PartneroClient(
                settings.base_url, settings.api_key, self.timeout_seconds, max_connections=1
            )
        return self._clients[settings.scope]

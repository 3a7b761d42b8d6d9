"""What the shared end-to-end tests need to act as a provider: each registered adapter's fixtures and signer.

A provider joins the shared suite by shipping `tests/fixtures/<provider>/e2e.json` (see any existing one).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import Endpoint, parse_config
from providers import registry

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass(frozen=True)
class ProviderCase:
    provider: str
    secret: str
    spec: dict[str, Any]

    @property
    def endpoint_settings(self) -> dict[str, Any]:
        return {"provider": self.provider, "secret": self.secret, **self.spec.get("endpoint", {})}

    def endpoint(self) -> Endpoint:
        config = parse_config({"endpoints": {"e": self.endpoint_settings}})
        return config.endpoints["e"]

    def body(self, name: str) -> bytes:
        return (FIXTURES / self.provider / name).read_bytes()

    def signed(self, name: str, now: float | None = None) -> tuple[bytes, dict[str, str], str]:
        """(body, headers, query string) exactly as the provider would send fixture `name`."""
        body = self.body(name)
        signed = self.endpoint().adapter.sign(body, self.secret, now if now is not None else time.time())
        headers = {"content-type": self.spec.get("content_type", "application/json"), **signed.headers}
        return body, headers, signed.query_string


def provider_cases() -> list[ProviderCase]:
    cases = []
    for name in sorted(registry()):
        spec_path = FIXTURES / name / "e2e.json"
        if spec_path.exists():
            secret = _secret_for(name)
            cases.append(ProviderCase(name, secret, json.loads(spec_path.read_text())))
    return cases


def _secret_for(provider: str) -> str:
    # a spec-form whsec_ secret also works as a plain HMAC key or URL token for the other schemes
    return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

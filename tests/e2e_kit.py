"""What the shared end-to-end tests need to act as a provider: each registered adapter's fixtures and signer.

A provider joins the shared suite by shipping `tests/fixtures/<provider>/e2e.json` (see any existing one).
Optional keys: `"body_signed": false` for schemes that do not sign the body (a URL token);
`"server": "tests.<module>:<Class>"` for providers whose API the adapter calls — the class is started as a
context manager around the test (no arguments, a `url` attribute), and `{server_url}` in any string of
`endpoint` is replaced by its URL.

`"partial_refunds"` lists the provider's partial-refund scenarios: a `sale` step and `refunds` steps, each
a fixture `file` with optional `set` edits (dot paths into its JSON, list items by index) and the amount
`booked` in Partnero once it is delivered, in the scenario's `currency` ("0": nothing left booked).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
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
    server_url: str = ""
    server: Any = None

    @property
    def endpoint_settings(self) -> dict[str, Any]:
        settings = {"provider": self.provider, "secret": self.secret, **self.spec.get("endpoint", {})}
        return {k: _substitute(v, self.server_url) for k, v in settings.items()}

    @contextlib.contextmanager
    def provider_server(self) -> Iterator[ProviderCase]:
        """Run the provider's own test server, if it names one, and yield the case pointed at it."""
        target = self.spec.get("server")
        if not target:
            yield self
            return
        module_name, _, class_name = target.partition(":")
        server_class = getattr(importlib.import_module(module_name), class_name)
        with server_class() as server:
            yield replace(self, server_url=server.url, server=server)

    def endpoint(self) -> Endpoint:
        config = parse_config({"endpoints": {"e": self.endpoint_settings}})
        return config.endpoints["e"]

    def body(self, name: str) -> bytes:
        return (FIXTURES / self.provider / name).read_bytes()

    def signed(
        self, name: str, now: float | None = None, edits: Mapping[str, Any] | None = None
    ) -> tuple[bytes, dict[str, str], str]:
        """(body, headers, query string) exactly as the provider would send fixture `name` (with `edits`)."""
        # a provider whose webhooks only name a payment (Mollie) changes the payment before it sends them
        before_webhook = getattr(self.server, "before_webhook", None)
        if before_webhook is not None:
            before_webhook(name)
        body = self.body(name) if not edits else edited(self.body(name), edits)
        signed = self.endpoint().adapter.sign(body, self.secret, now if now is not None else time.time())
        headers = {"content-type": self.spec.get("content_type", "application/json"), **signed.headers}
        return body, headers, signed.query_string


def edited(body: bytes, edits: Mapping[str, Any]) -> bytes:
    """A JSON fixture with the values at some dot paths replaced (`data.items.0.price`)."""
    document = json.loads(body)
    for path, value in edits.items():
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return json.dumps(document).encode()


def provider_cases() -> list[ProviderCase]:
    cases = []
    for name in sorted(registry()):
        spec_path = FIXTURES / name / "e2e.json"
        if spec_path.exists():
            spec = json.loads(spec_path.read_text())
            cases.append(ProviderCase(name, spec.get("secret", _secret_for(name)), spec))
    return cases


def _substitute(value: Any, server_url: str) -> Any:
    if isinstance(value, str):
        return value.replace("{server_url}", server_url)
    if isinstance(value, list):
        return [_substitute(v, server_url) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, server_url) for k, v in value.items()}
    return value


def _secret_for(provider: str) -> str:
    # a spec-form whsec_ secret also works as a plain HMAC key or URL token for the other schemes
    return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

"""`partnero-bridge simulate`: a correctly signed sample webhook of an endpoint's provider, sent to a running
bridge so an operator can check the whole path after set-up.

A simulated call carries `X-Partnero-Bridge-Simulation: 1` and every event read from it is test mode,
whatever the sample says: with the endpoint's `test_mode: skip` nothing reaches Partnero. The header can
only make a call *less* effective, and only a holder of the endpoint's secret can sign one.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import httpx

from bridge.config import Config, Endpoint
from bridge.events import NormalizedEvent
from providers import registry
from providers.base import WebhookRequest

SIMULATION_HEADER = "x-partnero-bridge-simulation"


class SimulationError(Exception):
    """Simulation is not possible as asked; the message says why and what to do."""


def mark_simulated(request: WebhookRequest, events: list[NormalizedEvent]) -> list[NormalizedEvent]:
    if request.header(SIMULATION_HEADER) != "1":
        return events
    return [replace(event, test_mode=True) for event in events]


def provider_samples() -> dict[str, tuple[str, ...]]:
    """Each registered provider → the sample events it can simulate (empty: see its `sample_note`)."""
    return {name: adapter.sample_events() for name, adapter in sorted(registry().items())}


def build(config: Config, endpoint_name: str, event: str | None, now: float) -> WebhookRequest:
    """The sample as the provider would send it to `/webhooks/<endpoint_name>`."""
    endpoint = _endpoint(config, endpoint_name)
    adapter = endpoint.adapter
    events = adapter.sample_events()
    if not events:
        note = adapter.sample_note or "no sample events"
        raise SimulationError(f"provider {endpoint.provider} cannot be simulated: {note}")
    chosen = event or events[0]
    if chosen not in events:
        raise SimulationError(f"{endpoint.provider} has no sample {chosen!r} (it has: {', '.join(events)})")
    if not adapter.secrets and adapter.requires_secret:
        raise SimulationError(f"endpoint {endpoint_name} has no secret to sign with")
    body = adapter.sample(chosen, f"{secrets.randbelow(10**9):09d}")
    try:
        signed = adapter.sign(body, adapter.secrets[0] if adapter.secrets else "", now)
    except NotImplementedError as exc:
        raise SimulationError(f"provider {endpoint.provider} cannot be simulated: {exc}") from None
    headers = {"content-type": adapter.content_type(), **signed.headers, SIMULATION_HEADER: "1"}
    return WebhookRequest("POST", f"/webhooks/{endpoint_name}", headers, body, signed.query_string)


def send(base_url: str, request: WebhookRequest, timeout: float = 15.0) -> httpx.Response:
    url = base_url.rstrip("/") + request.path + (f"?{request.query_string}" if request.query_string else "")
    return httpx.post(url, content=request.body, headers=dict(request.headers), timeout=timeout)


def default_url(config: Config) -> str:
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _endpoint(config: Config, name: str) -> Endpoint:
    endpoint = config.endpoints.get(name)
    if endpoint is None:
        known = ", ".join(sorted(config.endpoints)) or "none configured"
        raise SimulationError(f"no endpoint {name!r} in {config.source} (endpoints: {known})")
    return endpoint

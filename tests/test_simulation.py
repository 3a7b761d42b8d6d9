"""`simulate`: every provider's samples verify, parse and are new each time; simulated calls are test mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.events import EventKind, NormalizedEvent
from bridge.simulation import SIMULATION_HEADER, mark_simulated, provider_samples
from providers import registry
from providers.base import WebhookRequest
from tests.bridge_process import ROOT, BridgeProcess, free_port
from tests.e2e_kit import provider_cases
from tests.partnero_server import PartneroServer

CASES = {case.provider: case for case in provider_cases()}
LS = CASES["lemonsqueezy"]
SAMPLED = [(name, event) for name, events in provider_samples().items() for event in events]


def test_every_provider_has_samples_or_says_why() -> None:
    for name, events in provider_samples().items():
        assert events or registry()[name].sample_note, f"{name}: no samples and no sample_note"
    assert len(SAMPLED) >= 2 * 10


@pytest.mark.parametrize(("provider", "event"), SAMPLED)
def test_a_sample_is_signed_parsed_and_new_each_time(provider: str, event: str) -> None:
    case = CASES[provider]
    adapter = case.endpoint().adapter
    keys, deliveries = set(), set()
    for unique in ("100001", "100002"):
        body = adapter.sample(event, unique)
        signed = adapter.sign(body, case.secret, time.time())
        headers = {"content-type": adapter.content_type(), **signed.headers, SIMULATION_HEADER: "1"}
        request = WebhookRequest("POST", "/webhooks/e", headers, body, signed.query_string)
        adapter.verify(request, time.time())
        events = mark_simulated(request, adapter.parse(request))
        acted = [e for e in events if e.kind is not EventKind.IGNORED]
        assert acted and all(e.test_mode for e in events)
        assert {e.kind.value for e in acted} <= {"sale", "refund", "dispute"}
        assert event != "sale" or acted[0].kind is EventKind.SALE
        keys |= {e.transaction_key for e in acted}
        deliveries.add(adapter.delivery_id(request))
    assert len(keys) == 2 and len(deliveries) == 2


def test_only_the_simulation_header_makes_events_test_mode() -> None:
    event = NormalizedEvent(EventKind.SALE, "order_created", "k")
    plain = WebhookRequest("POST", "/", {}, b"")
    assert mark_simulated(plain, [event]) == [event]
    simulated = WebhookRequest("POST", "/", {SIMULATION_HEADER: "1"}, b"")
    assert mark_simulated(simulated, [event])[0].test_mode is True


def test_simulate_sends_a_test_mode_sale_that_never_reaches_partnero(
    partnero: PartneroServer, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_factory({"shop": LS.endpoint_settings}, server={"host": "127.0.0.1", "port": 0})
    assert "endpoint shop (lemonsqueezy): POST /webhooks/shop" in bridge.logs()
    assert "console: off" in bridge.logs()
    config = yaml.safe_load(bridge.config_path.read_text())
    config["server"]["port"] = bridge.port  # no --url: the config's own host and port
    bridge.config_path.write_text(yaml.safe_dump(config))
    for _ in range(2):
        sent = cli("simulate", "shop", "--config", str(bridge.config_path))
        assert sent.returncode == 0, sent.stderr
        assert "-> 200" in sent.stdout and "stored" in sent.stdout

    def listed() -> list[dict[str, Any]]:
        found = cli("events", "--json", "--config", str(bridge.config_path))
        return list(json.loads(found.stdout)) if found.returncode == 0 else []

    deadline = time.monotonic() + 15
    while len(listed()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = listed()
    assert [(r["kind"], r["status"], r["reason"]) for r in rows] == [
        ("sale", "skipped", "test mode (endpoint test_mode: skip)")
    ] * 2
    assert rows[0]["transaction_key"] != rows[1]["transaction_key"]
    assert partnero.requests == []


def test_simulate_list_and_mistakes(tmp_path: Path) -> None:
    listed = cli("simulate", "--list")
    assert listed.returncode == 0
    lines = dict(line.split(": ", 1) for line in listed.stdout.splitlines())
    assert lines["lemonsqueezy"] == "sale, refund" and lines["mollie"].startswith("— Mollie's webhooks")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"endpoints": {"shop": LS.endpoint_settings}, "server": {"port": free_port()}}))
    assert "no endpoint 'shopp'" in cli("simulate", "shopp", "--config", str(config)).stderr
    assert "no sample 'order'" in cli("simulate", "shop", "order", "--config", str(config)).stderr
    down = cli("simulate", "shop", "--config", str(config))
    assert down.returncode == 1 and "is it running?" in down.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)

"""No forged webhooks from defaults: empty, placeholder and too-short secrets (bridge/secret_policy.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import ConfigError, load_config, parse_config
from bridge.secret_policy import SHIPPED_PLACEHOLDERS, Unverifiable, is_placeholder
from bridge.store.sqlite import SQLiteStore
from providers.lemonsqueezy import LemonSqueezyAdapter, LemonSqueezyOptions
from tests.bridge_process import ROOT

EXAMPLE = ROOT / "config.example.yaml"
SECRET_VARIABLES = (
    "LEMONSQUEEZY_SIGNING_SECRET",
    "POLAR_WEBHOOK_SECRET",
    "GUMROAD_URL_TOKEN",
    "CREEM_WEBHOOK_SECRET",
    "DODO_WEBHOOK_SECRET",
)
LEMON_SALE = ROOT / "tests" / "fixtures" / "lemonsqueezy" / "order_created.json"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*SECRET_VARIABLES, "PARTNERO_API_KEY", "BRIDGE_STORE", "BRIDGE_SIGNUP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def live(provider: str, secret: str, **extra: Any) -> dict[str, Any]:
    return {
        "partnero": {"api_key": "live-key"},
        "endpoints": {"shop": {"provider": provider, "secret": secret, **extra}},
    }


@pytest.mark.parametrize("placeholder", sorted(SHIPPED_PLACEHOLDERS))
def test_every_placeholder_the_project_shipped_stops_a_live_start(placeholder: str) -> None:
    provider = "polar" if placeholder.startswith("whsec_") else "lemonsqueezy"
    with pytest.raises(ConfigError) as error:
        parse_config(live(provider, placeholder))
    [problem] = error.value.problems
    assert problem.startswith("endpoints.shop.secret: is a placeholder")
    assert "endpoint shop would accept forged webhooks" in problem
    assert placeholder not in problem


@pytest.mark.parametrize(
    "variant", ["CHANGE-ME", "my-changeme-secret", "whsec_Y2hhbmdlLW1lLXN0cmlwZQ", "change_me_please_123"]
)
def test_anything_built_like_a_placeholder_is_one(variant: str) -> None:
    assert is_placeholder(variant)
    assert not is_placeholder("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert not is_placeholder("a-real-random-4f9c2e")


def test_a_secret_shorter_than_the_provider_allows_stops_a_live_start() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(live("lemonsqueezy", "abc12"))
    assert error.value.problems == [
        "endpoints.shop.secret: is shorter than 6 characters: endpoint shop would accept forged webhooks"
    ]
    parse_config(live("lemonsqueezy", "abc123"))
    with pytest.raises(ConfigError, match="#2 is shorter than 8 characters"):
        parse_config(
            {
                "partnero": {"api_key": "k"},
                "endpoints": {"c": {"provider": "creem", "secrets": ["long-enough", "short"]}},
            }
        )


def test_in_dry_run_a_weak_secret_is_tolerated_and_said() -> None:
    config = parse_config({"endpoints": {"shop": {"provider": "lemonsqueezy", "secret": "change-me-lemonsqueezy"}}})
    assert config.endpoints["shop"].partnero.effective_dry_run
    assert config.warnings == (
        "endpoint shop: its secret is a placeholder from the example configuration, "
        "public to anyone; tolerated only because it is in dry run",
    )


def test_the_example_configuration_carries_no_usable_secret() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    for name, endpoint in raw["endpoints"].items():
        assert ":-" not in endpoint["secret"], f"endpoints.{name}.secret falls back to a default"
        assert endpoint["secret"].startswith("${") and endpoint["secret"].endswith("}")


def test_example_configuration_out_of_the_box_starts_and_refuses_every_webhook(clean_env: Any) -> None:
    config = load_config(EXAMPLE)
    assert config.endpoints, "the example configures endpoints"
    for name, endpoint in config.endpoints.items():
        assert isinstance(endpoint.adapter, Unverifiable), name
        assert f"endpoint {name}: no secret set" in "\n".join(config.warnings)


def _client(config_path: Path, tmp_path: Path) -> Iterator[tuple[TestClient, SQLiteStore]]:
    config = load_config(config_path)
    store = SQLiteStore(str(tmp_path / "a.db"))
    asyncio.run(store.open())
    with TestClient(create_app(config, store, None)) as client:
        yield client, store
    asyncio.run(store.close())


def test_the_issue_forgery_is_refused(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PARTNERO_API_KEY set, LEMONSQUEEZY_SIGNING_SECRET empty, a sale signed with the old placeholder."""
    clean_env.setenv("PARTNERO_API_KEY", "a-live-partnero-key")
    clean_env.setenv("LEMONSQUEEZY_SIGNING_SECRET", "")
    body = LEMON_SALE.read_bytes()
    forged = LemonSqueezyAdapter(["change-me-lemonsqueezy"], LemonSqueezyOptions()).sign(
        body, "change-me-lemonsqueezy", 0
    )
    for client, store in _client(EXAMPLE, tmp_path):
        response = client.post("/webhooks/lemonsqueezy", content=body, headers=forged.headers)
        assert response.status_code == 401
        assert "no secret configured" in response.text
        assert store.run_sync(lambda tx: tx.received_calls(10)) == []


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRET_VARIABLES, "PARTNERO_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", str(EXAMPLE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, **env},
    )


def test_check_config_refuses_a_placeholder_from_the_environment_naming_the_endpoint() -> None:
    result = _check_config({"PARTNERO_API_KEY": "live", "LEMONSQUEEZY_SIGNING_SECRET": "change-me-lemonsqueezy"})
    assert result.returncode == 2
    assert "endpoints.lemonsqueezy.secret: is a placeholder" in result.stderr
    assert "change-me-lemonsqueezy" not in result.stderr + result.stdout
    dry = _check_config({"LEMONSQUEEZY_SIGNING_SECRET": "change-me-lemonsqueezy"})
    assert dry.returncode == 0, dry.stderr
    assert "warning: endpoint lemonsqueezy: its secret is a placeholder" in dry.stdout


# --- the bridge's own tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["admin", "signups"])
@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("change-me", "is a placeholder"),
        ("change-me-admin-token-please", "is a placeholder"),
        ("short-token", "is shorter than 16 characters"),
    ],
)
def test_a_weak_console_or_relay_token_stops_the_start_even_in_dry_run(section: str, token: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({section: {"token": token}})
    (problem,) = error.value.problems
    assert problem.startswith(f"{section}.token: {reason}")
    assert token not in problem


@pytest.mark.parametrize("section", ["admin", "signups"])
def test_a_long_random_token_or_none_is_accepted(section: str) -> None:
    assert getattr(parse_config({section: {"token": "9f86d081884c7d65"}}), section).enabled
    assert not getattr(parse_config({section: {"token": ""}}), section).enabled

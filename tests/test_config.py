"""Configuration: interpolation, validation messages with YAML paths, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config, redact
from bridge.redact import redact_url
from tests.bridge_process import ROOT


def _endpoints(**endpoint: object) -> dict[str, object]:
    return {"endpoints": {"ls": {"provider": "lemonsqueezy", "secret": "s3cret-value", **endpoint}}}


def test_env_interpolation_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LS_SECRET", "from-env-secret")
    monkeypatch.delenv("PARTNERO_API_KEY", raising=False)
    config = parse_config(
        {
            "partnero": {"api_key": "${PARTNERO_API_KEY}", "base_url": "${PARTNERO_URL:-http://localhost:9/v1}"},
            "server": {"port": "${PORT:-9090}"},
            "endpoints": {"ls": {"provider": "lemonsqueezy", "secret": "${LS_SECRET}"}},
        }
    )
    assert config.partnero.base_url == "http://localhost:9/v1"
    assert config.server.port == 9090
    assert config.endpoints["ls"].adapter.secrets == ("from-env-secret",)
    # no key and dry_run unset: dry run
    assert config.partnero.effective_dry_run


def test_errors_name_the_yaml_path() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"endpoints": {"ls": {"provider": "lemonsqueezy"}}})
    assert error.value.problems == ["endpoints.ls.secret: required"]

    with pytest.raises(ConfigError) as error:
        parse_config(_endpoints(customer_key=["metadata.user_id", "phone"]))
    assert error.value.problems[0].startswith("endpoints.ls.customer_key: unknown source 'phone'")

    with pytest.raises(ConfigError) as error:
        parse_config({"endpoints": {"x": {"provider": "nosuch", "secret": "a"}}})
    assert error.value.problems[0].startswith("endpoints.x.provider: unknown provider 'nosuch'")

    with pytest.raises(ConfigError) as error:
        parse_config({"delivery": {"max_attempts": 0}, "serverr": {}})
    assert sorted(error.value.problems) == [
        "delivery.max_attempts: Input should be greater than or equal to 1",
        "serverr: unknown setting (did you mean 'server'?)",
    ]


def test_unknown_endpoint_settings_are_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_endpoints(amountt="total"))
    assert error.value.problems == ["endpoints.ls.amountt: unknown setting (did you mean 'amount'?)"]


def test_rotation_and_per_endpoint_partnero_override() -> None:
    config = parse_config(
        {
            "partnero": {"api_key": "main-key"},
            "endpoints": {
                "a": {"provider": "lemonsqueezy", "secrets": ["new-secret", "old-secret"]},
                "b": {"provider": "lemonsqueezy", "secret": "b-secret", "partnero": {"api_key": "other-program"}},
            },
        }
    )
    assert config.endpoints["a"].adapter.secrets == ("new-secret", "old-secret")
    assert config.endpoints["b"].partnero.api_key == "other-program"
    assert config.endpoints["a"].partnero.scope != config.endpoints["b"].partnero.scope
    assert not config.endpoints["a"].partnero.effective_dry_run


def test_endpoint_names_become_url_paths() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"endpoints": {"a/b": {"provider": "lemonsqueezy", "secret": "x"}}})
    assert "endpoints.a/b: name must be" in error.value.problems[0]


def test_bad_yaml_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("endpoints: [\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "not valid YAML at line" in str(error.value)


def test_redaction_never_shows_a_usable_secret() -> None:
    assert redact("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == "wh…(38 chars)"
    assert redact("short") == "…(5 chars)"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=ROOT, capture_output=True, text=True)


def test_check_config_lists_endpoints_with_secrets_redacted() -> None:
    result = _cli("check-config", "config.example.yaml")
    assert result.returncode == 0, result.stderr
    assert "lemonsqueezy: POST /webhooks/lemonsqueezy  provider=lemonsqueezy" in result.stdout
    assert "change-me-lemonsqueezy" not in result.stdout
    for provider in ("polar", "gumroad", "creem", "dodopayments"):
        assert f"provider={provider}" in result.stdout


def test_check_config_user_mistake_is_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("endpoints:\n  ls:\n    provider: lemonsqueezy\n")
    result = _cli("check-config", str(path))
    assert result.returncode == 2
    assert "endpoints.ls.secret: required" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_mistake_in_one_run_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "servr": {"port": 8080},
                "admin": {"tokn": "x"},
                "store": {"url": "sqlite://", "retention_dys": 3},
                "endpoints": {
                    "a": {"provider": "lemonsqeezy", "secret": "s"},
                    "b": {"provider": "polar", "secret": "s", "customer_key": ["emial"]},
                    "c": {"provider": "creem"},
                    "d": {"provider": "gumroad", "secret": "s", "tset_mode": "skip"},
                },
            }
        )
    problems = caught.value.problems
    expected = [
        "servr: unknown setting (did you mean 'server'?)",
        "admin.tokn: unknown setting (did you mean 'token'?)",
        "store.StoreSettings.retention_dys: unknown setting (did you mean 'retention_days'?)",
        "endpoints.a.provider: unknown provider 'lemonsqeezy' (did you mean 'lemonsqueezy'?)",
        "endpoints.b.customer_key: unknown source 'emial' (did you mean 'email'?)",
        "endpoints.c.secret: required",
        "endpoints.d.tset_mode: unknown setting (did you mean 'test_mode'?)",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert not any("did you mean" in p for p in problems if p.startswith("store.str"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://bridge:pg-pass@db:5432/bridge?sslmode=require",
            "postgresql://bridge:***@db:5432/bridge?sslmode=require",
        ),
        (
            "postgresql://db/bridge?sslmode=require&password=pg-pass",
            "postgresql://db/bridge?sslmode=require&password=***",
        ),
        ("https://user:pg-pass@partnero.example/v1", "https://user:***@partnero.example/v1"),
        ("https://pg-pass@partnero.example/v1", "https://***@partnero.example/v1"),
        ("https://partnero.example/v1?api_key=pg-pass#pg-pass", "https://partnero.example/v1?api_key=***"),
        ("sqlite:///./data/bridge.db", "sqlite:///./data/bridge.db"),
        ("https://pg-pass@[::1:bad/v1", "(a URL that does not parse; not shown)"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "pg-pass" not in redact_url(url)


def test_check_config_redacts_the_store_and_partnero_urls(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "store: postgresql://bridge:pg-pass@127.0.0.1:9/bridge\n"
        "partnero: {base_url: 'https://user:pp-pass@partnero.example/v1', dry_run: true}\n"
        "endpoints: {ls: {provider: lemonsqueezy, secret: s3cret-value}}\n"
    )
    result = _cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "store: postgresql://bridge:***@127.0.0.1:9/bridge" in result.stdout
    assert "partnero=https://user:***@partnero.example/v1" in result.stdout
    assert "pg-pass" not in result.stdout + result.stderr and "pp-pass" not in result.stdout + result.stderr


@pytest.mark.parametrize("token", [" ", "   ", " padded-token-0123", "padded-token-0123\t"])
def test_a_blank_or_padded_signup_token_is_refused(token: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"signups": {"token": token}})
    assert error.value.problems == ["signups.token: must not be blank or start or end with whitespace"]


def test_check_config_says_where_codes_are_looked_up_without_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    endpoints = (
        "endpoints:\n"
        "  gum: {provider: gumroad, secret: s3cret-value, partner_key: [metadata.partnero_partner, coupon]}\n"
        "  ls: {provider: lemonsqueezy, secret: s3cret-value}\n"
    )
    path.write_text(
        "partnero: {api_key: pk-secret-value, base_url: 'http://127.0.0.1:9/v1'}\n"
        "coupons: {codes: {PODCAST20: ptr_host_key, VIDEO10: ptr_video_key}}\n" + endpoints
    )
    shown = _cli("check-config", str(path)).stdout
    assert "coupons: 2 codes in coupons.codes, then Partnero's promotion codes for gum (used by gum)" in shown
    assert "partner_key=metadata.partnero_partner,coupon  test_mode=" in shown
    assert "PODCAST20" not in shown and "ptr_host_key" not in shown
    path.write_text("partnero: {dry_run: true}\n" + endpoints)
    shown = _cli("check-config", str(path)).stdout
    assert "coupons: 0 codes in coupons.codes, not Partnero's promotion codes (dry run) (used by gum)" in shown
    path.write_text(
        "coupons: {codes: {PODCAST20: ptr_host_key}}\nendpoints: {ls: {provider: lemonsqueezy, secret: s}}\n"
    )
    shown = _cli("check-config", str(path)).stdout
    assert "coupons: 1 code in coupons.codes, unused (no endpoint has coupon in partner_key)" in shown

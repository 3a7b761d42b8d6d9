"""Configuration: interpolation, validation messages with YAML paths, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config, redact
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


def test_adapter_options_are_validated_by_the_adapter() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_endpoints(amount_fieldd="total"))
    assert error.value.problems == ["endpoints.ls.amount_fieldd: unknown setting (did you mean 'amount_field'?)"]


def test_rotation_and_per_endpoint_partnero_override() -> None:
    config = parse_config(
        {
            "partnero": {"api_key": "main-key"},
            "endpoints": {
                "a": {"provider": "lemonsqueezy", "secrets": ["new-secret", "old-secret"]},
                "b": {"provider": "lemonsqueezy", "secret": "x", "partnero": {"api_key": "other-program"}},
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

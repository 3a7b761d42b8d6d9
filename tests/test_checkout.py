"""The checkout script: rules built from the adapters' `checkout_links`, safe JSON injection, the route."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.checkout import build_script, checkout_rules, js_literal, render_script
from bridge.config import Config, DeliverySettings, PartneroSettings, ServerSettings
from bridge.store.sqlite import SQLiteStore
from providers import registry
from providers.base import CheckoutLink, ProviderAdapter

RULES = re.compile(r"const RULES = (.*);\n")
COOKIE = re.compile(r"const COOKIE = (.*);\n")


class HostileAdapter(ProviderAdapter):
    """Values that would break out of a <script> or a JS string if injected raw."""

    name: ClassVar[str] = ""
    checkout_links: ClassVar[tuple[CheckoutLink, ...]] = (
        CheckoutLink(hosts=("EVIL.example",), param="x</script><script>alert(1)</script>{name}\u2028\u2029&"),
    )


def _rules(script: str) -> list[dict[str, object]]:
    match = RULES.search(script)
    assert match is not None
    rules: list[dict[str, object]] = json.loads(match[1])
    return rules


def test_every_wave1_provider_has_its_documented_rule() -> None:
    rules = [(r["provider"], r["hosts"], r["paths"], r["param"]) for r in _rules(render_script())]
    wave1 = {"lemonsqueezy", "gumroad", "polar", "creem", "dodopayments"}
    assert [rule for rule in rules if rule[0] in wave1] == [
        # https://docs.creem.io/learn/customization/payment-links
        ("creem", ["creem.io"], ["/payment/", "/test/payment/"], "metadata[partnero_partner]"),
        # https://docs.dodopayments.com/api-reference/integration-guide (static payment links)
        ("dodopayments", ["checkout.dodopayments.com"], ["/buy/"], "metadata_partnero_partner"),
        # Gumroad: any product-URL query parameter arrives as url_params[...] (reference sheet)
        ("gumroad", ["gumroad.com"], ["/l/"], "partnero_partner"),
        # https://docs.lemonsqueezy.com/help/checkout/passing-custom-data
        ("lemonsqueezy", ["lemonsqueezy.com"], ["/checkout/buy/", "/buy/"], "checkout[custom][partnero_partner]"),
        # Polar checkout links accept only reference_id and utm_* into the checkout metadata
        ("polar", ["buy.polar.sh"], ["/polar_cl_"], "reference_id"),
        ("polar", ["api.polar.sh", "sandbox-api.polar.sh"], ["/v1/checkout-links/"], "reference_id"),
    ]


def test_rules_come_from_every_registered_adapter() -> None:
    expected = sum(len(adapter.checkout_links) for adapter in registry().values())
    assert expected >= 6
    assert len(_rules(render_script())) == expected
    assert COOKIE.search(render_script())[1] == '"partnero_partner"'  # type: ignore[index]


def test_the_name_is_the_cookie_and_the_metadata_key() -> None:
    script = build_script(registry(), "ref_key")
    assert COOKIE.search(script)[1] == '"ref_key"'  # type: ignore[index]
    params = {r["param"] for r in _rules(script)}
    assert {"checkout[custom][ref_key]", "ref_key", "metadata[ref_key]", "metadata_ref_key", "reference_id"} == params


@pytest.mark.parametrize("name", ["", "a b", "x" * 41, "a;b", "é", '"', "a\u2028"])
def test_a_name_that_is_no_safe_key_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cookie name"):
        build_script(registry(), name)


def test_injected_values_cannot_break_out_of_the_script() -> None:
    script = build_script({"hostile": HostileAdapter})
    rules_text = RULES.search(script)[1]  # type: ignore[index]
    for raw in ("</", "<script", ">", "&", "\u2028", "\u2029"):
        assert raw not in rules_text
    assert "\\u003c/script\\u003e" in rules_text and "\\u2028\\u2029\\u0026" in rules_text
    # still the same data once parsed
    assert _rules(script) == [
        {
            "provider": "hostile",
            "hosts": ["evil.example"],
            "paths": ["/"],
            "param": "x</script><script>alert(1)</script>partnero_partner\u2028\u2029&",
        }
    ]
    assert "</script" not in script.lower()


def test_an_injected_value_that_looks_like_a_placeholder_stays_literal() -> None:
    script = build_script(registry(), "__PARTNERO_RULES__")
    assert COOKIE.search(script)[1] == '"__PARTNERO_RULES__"'  # type: ignore[index]
    # the rules were not substituted into the cookie's value, nor into their own params
    assert "checkout[custom][__PARTNERO_RULES__]" in {r["param"] for r in _rules(script)}


def test_js_literal_escapes_only_what_is_unsafe() -> None:
    assert js_literal({"a": "<b>&\u2028é"}) == '{"a":"\\u003cb\\u003e\\u0026\\u2028é"}'
    assert json.loads(js_literal({"a": "<b>&\u2028é"})) == {"a": "<b>&\u2028é"}


def test_checkout_rules_resolve_the_param_and_normalise_hosts() -> None:
    assert checkout_rules({"hostile": HostileAdapter}, "k")[0]["hosts"] == ["evil.example"]
    assert checkout_rules({}, "k") == []


def test_render_script_is_built_once() -> None:
    assert render_script() is render_script()
    assert render_script("other_name") is not render_script()


def test_the_template_placeholders_are_all_filled() -> None:
    script = render_script()
    assert "__PARTNERO_COOKIE__" not in script and "__PARTNERO_RULES__" not in script
    assert script.lstrip().startswith("/*!") and script.rstrip().endswith("})();")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (syntax check only; optional)")
def test_the_rendered_script_is_valid_javascript(tmp_path: Path) -> None:
    path = tmp_path / "partnero-checkout.js"
    path.write_text(render_script(), encoding="utf-8")
    result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_route_serves_the_script(tmp_path: Path) -> None:
    config = Config(PartneroSettings(), "sqlite://", ServerSettings(), DeliverySettings(), {})
    app = create_app(config, SQLiteStore(str(tmp_path / "unused.db")), None)
    with TestClient(app) as client:
        response = client.get("/partnero-checkout.js")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=300"
        assert response.text == render_script()
        assert client.post("/partnero-checkout.js").status_code == 405

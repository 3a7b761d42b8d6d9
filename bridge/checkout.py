"""The browser script behind `GET /partnero-checkout.js`: the partner key carried into checkout links.

Merchants without a backend (a landing page with Lemon Squeezy, Gumroad, Polar, Creem or Dodo links)
include it after the PartneroJS snippet. It reads the `partnero_partner` cookie and adds the key to each
provider checkout link in that provider's custom-data parameter, so the webhook brings it back as
`metadata.<name>`. The script is one static template (`partnero_checkout.js`, package data); the bridge
injects the cookie name and every registered adapter's `checkout_links` as JSON, so a provider declares
its links in its own module and nothing here knows one by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

from providers import registry
from providers.base import ProviderAdapter

DEFAULT_NAME = "partnero_partner"

_TEMPLATE = "partnero_checkout.js"
_PLACEHOLDER = re.compile(r"__PARTNERO_(COOKIE|RULES)__")
# the name is both the cookie's and the metadata key's: Polar and Dodo allow keys of at most 40
# letters, digits, dashes and underscores
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
# JSON is valid JavaScript, but inside a page `</script>` or `<!--` would end or alter the script and
# U+2028/U+2029 are line terminators to older engines: all are written as escapes instead
_UNSAFE = re.compile("[<>&\u2028\u2029]")


def checkout_rules(adapters: Mapping[str, type[ProviderAdapter]], name: str) -> list[dict[str, object]]:
    """The adapters' checkout links as the script's rules, the parameter name resolved for `name`."""
    rules: list[dict[str, object]] = []
    for provider, adapter in sorted(adapters.items()):
        for link in adapter.checkout_links:
            rules.append(
                {
                    "provider": provider,
                    "hosts": [host.lower().strip(".") for host in link.hosts],
                    "paths": list(link.path_prefixes),
                    "param": link.param.format(name=name),
                }
            )
    return rules


def build_script(adapters: Mapping[str, type[ProviderAdapter]], name: str = DEFAULT_NAME) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"checkout script: cookie name {name!r} must be 1-40 letters, digits, '-' or '_'")
    values = {"COOKIE": js_literal(name), "RULES": js_literal(checkout_rules(adapters, name))}
    template = files("bridge").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    # one pass, so an injected value that happens to look like a placeholder is left alone
    return _PLACEHOLDER.sub(lambda match: values[match[1]], template)


@cache
def render_script(name: str = DEFAULT_NAME) -> str:
    """The script for every registered adapter; built once per process (adapters do not change)."""
    return build_script(registry(), name)


def js_literal(value: object) -> str:
    """`value` as JSON that is safe to place anywhere in a script, even inline in an HTML page."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _UNSAFE.sub(lambda match: f"\\u{ord(match[0]):04x}", text)

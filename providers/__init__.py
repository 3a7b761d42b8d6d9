"""Provider adapters, one module each; the registry finds them by their `name`.

Modules are discovered, not listed, so adding a provider is adding one file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from bridge.suggest import did_you_mean
from providers.base import ProviderAdapter

_NOT_ADAPTERS = {"base", "signatures"}


class UnknownProviderError(LookupError):
    pass


@cache
def registry() -> dict[str, type[ProviderAdapter]]:
    found: dict[str, type[ProviderAdapter]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _NOT_ADAPTERS or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, ProviderAdapter)
                and value is not ProviderAdapter
                and value.__module__ == module.__name__
                and getattr(value, "name", None)
            ):
                found[value.name] = value
    return found


def get_adapter_class(name: str) -> type[ProviderAdapter]:
    try:
        return registry()[name]
    except KeyError:
        known = ", ".join(sorted(registry()))
        hint = did_you_mean(name, registry())
        raise UnknownProviderError(f"unknown provider {name!r}{hint} (known: {known})") from None

"""Parse errors name the field that failed, never its value: they reach the log and the console.

Every provider's sample sale is read again with each of its fields in turn replaced by a buyer's email
(the issue's case: an email placed in an amount field appeared in the JSON log). Whatever the adapter
says about a body it cannot read must not contain that email.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from bridge.money import from_major_units, from_minor_units, normalize_currency
from bridge.redact import describe
from providers.base import PayloadError, WebhookRequest
from tests.e2e_kit import provider_cases

SENTINEL = "leak.sentinel+buyer@example.com"
# the adapters that read their payload from the provider's API are left out: the body is only an id
CASES = [case for case in provider_cases() if not case.spec.get("server")]


def replacements(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, document with the value at path replaced by the sentinel), for every scalar leaf."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from replacements(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from replacements(item, (*path, index))
    else:
        yield path, SENTINEL


def with_sentinel(document: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return SENTINEL
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = with_sentinel(document[path[0]], path[1:])
    return copy


def bodies(raw: bytes, form: bool) -> Iterator[tuple[str, bytes]]:
    if form:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True)
        for index, (name, _) in enumerate(pairs):
            changed = [(k, SENTINEL if i == index else v) for i, (k, v) in enumerate(pairs)]
            yield name, urlencode(changed).encode()
        return
    document = json.loads(raw)
    for path, _ in replacements(document):
        yield ".".join(map(str, path)), json.dumps(with_sentinel(document, path)).encode()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.provider)
def test_no_parse_error_quotes_the_value_it_refused(case: Any) -> None:
    adapter = case.endpoint().adapter
    form = case.spec.get("content_type") == "application/x-www-form-urlencoded"
    refused = 0
    for where, body in bodies(case.body(case.spec["sale"]["file"]), form):
        request = WebhookRequest("POST", "/webhooks/e", {"content-type": "application/json"}, body)
        try:
            adapter.parse(request)
        except PayloadError as exc:
            refused += 1
            assert SENTINEL not in str(exc), f"{case.provider}: {where} -> {exc}"
            assert "@" not in str(exc), f"{case.provider}: {where} -> {exc}"
    assert refused, f"{case.provider}: no field of the sample was ever refused"


def test_money_errors_say_what_kind_of_value_was_there() -> None:
    for attempt in (
        lambda: normalize_currency(SENTINEL),
        lambda: from_major_units(SENTINEL, "USD"),
        lambda: from_minor_units(SENTINEL, "USD"),
    ):
        with pytest.raises(ValueError) as error:
            attempt()
        assert SENTINEL not in str(error.value)
    assert describe(SENTINEL) == f"text of {len(SENTINEL)} characters"
    assert describe({"email": SENTINEL}) == "an object"

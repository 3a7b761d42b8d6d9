"""What the fuzz tests feed the adapters: each provider's genuine sample, and strategies that break it.

A `Subject` is one provider case ready to fuzz: its adapter, the e2e sale fixture signed as the provider
would send it, every fixture file as a seed for body mutations, and which parts of the signed request
actually guard it (found by removing each header or query parameter in turn and asking `verify`).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st

from bridge.events import EventKind, NormalizedEvent
from providers.base import AcknowledgeOnly, ProviderAdapter, SignatureError, WebhookRequest
from tests.e2e_kit import FIXTURES, ProviderCase, provider_cases

# when every sample is signed and verified: a fixed clock keeps the timestamps findable in the headers
NOW = 1_754_321_987.0
# a well-formed secret that is not the endpoint's: what it signs is well-formed and never authentic
OTHER_SECRET = "whsec_" + base64.b64encode(b"fuzz: not the endpoint secret!!!").decode()
# providers whose API the adapter calls get this base URL; nothing here ever calls it (no `read`)
UNREACHABLE_SERVER = "http://127.0.0.1:9"
# where a provider's headers name its signature, whatever the adapter signs with
COMMON_AUTH_HEADERS = (
    "authorization",
    "signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-signature",
)
MONEY_FIELDS = ("amount", "refunded_total", "sale_amount", "tax", "refunded_total_tax", "sale_tax")
_CURRENCY = re.compile(r"[A-Z]{3}")

CASES = provider_cases()
_BY_NAME = {case.provider: case for case in CASES}

Expectation = Literal["reject", "accept", "either"]


class Blob(bytes):
    """A body whose repr stays readable in hypothesis' failure report, however large the body is."""

    def __repr__(self) -> str:
        return _short(bytes(self))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class Text(str):
    """A header value whose repr stays readable (junk values run to 100,000 characters)."""

    def __repr__(self) -> str:
        return _short(str(self))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _short(value: bytes | str, keep: int = 240) -> str:
    if len(value) <= keep:
        return repr(value)
    return f"{value[:keep]!r} + <{len(value) - keep} more>"


@dataclass(frozen=True, repr=False)
class Subject:
    """One provider case ready to fuzz: its adapter and its e2e sale sample, signed at NOW."""

    provider: str
    adapter: ProviderAdapter
    path: str
    body: bytes
    headers: Mapping[str, str]
    query: str
    seeds: tuple[bytes, ...]
    seed_names: tuple[str, ...]
    form: bool
    body_signed: bool
    # `verify` alone cannot tell (authenticate does I/O) or the case needs its API server
    needs_network: bool
    genuine_verifies: bool
    # parts of the signed request whose removal makes `verify` refuse it
    guarded_headers: tuple[str, ...]
    guarded_params: tuple[str, ...]
    # how NOW is written in the guarded parts (seconds, milliseconds), when the scheme has a timestamp
    timestamps: tuple[str, ...]
    # the same header or parameter signed otherwise: (other body, other time, other secret)
    donor_headers: Mapping[str, tuple[str, ...]]
    donor_params: Mapping[str, tuple[str, ...]]
    # what the wrong secret alone produces: well-formed, never authentic
    forged_headers: Mapping[str, str]
    forged_params: Mapping[str, str]

    def request(
        self,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        query: str | None = None,
    ) -> WebhookRequest:
        return WebhookRequest(
            method="POST",
            path=self.path,
            headers=dict(self.headers if headers is None else headers),
            body=self.body if body is None else body,
            query_string=self.query if query is None else query,
        )

    def __repr__(self) -> str:
        return f"subject({self.provider!r})"

    @property
    def signed_header_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.headers if name != "content-type")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in parse_qsl(self.query, keep_blank_values=True)))


def accepts(adapter: ProviderAdapter, request: WebhookRequest, now: float = NOW) -> bool:
    """Whether `verify` lets `request` through; any exception but the two documented ones propagates."""
    try:
        adapter.verify(request, now)
    except (SignatureError, AcknowledgeOnly):
        return False
    return True


def overrides(adapter: ProviderAdapter, method: str) -> bool:
    return getattr(type(adapter), method) is not getattr(ProviderAdapter, method)


@functools.cache
def subject(provider: str) -> Subject:
    case = _BY_NAME[provider]
    if case.spec.get("server"):
        case = replace(case, server_url=UNREACHABLE_SERVER)
    adapter = case.endpoint().adapter
    body, headers, query = case.signed(case.spec["sale"]["file"], NOW)
    path = f"/webhooks/{provider}"
    params = dict(parse_qsl(query, keep_blank_values=True))
    genuine_verifies = overrides(adapter, "verify") and accepts(adapter, _request(path, body, headers, query))
    guarded_headers: list[str] = []
    guarded_params: list[str] = []
    if genuine_verifies:
        # a part guards the request when the request without it is refused
        for name in headers:
            fewer = {k: v for k, v in headers.items() if k != name}
            if not accepts(adapter, _request(path, body, fewer, query)):
                guarded_headers.append(name)
        for name in params:
            fewer_params = urlencode([(k, v) for k, v in params.items() if k != name])
            if not accepts(adapter, _request(path, body, headers, fewer_params)):
                guarded_params.append(name)
    guarded_text = [headers[n] for n in guarded_headers] + [params[n] for n in guarded_params]
    renderings = (str(int(NOW)), str(int(NOW * 1000)))
    forged = _sign(adapter, body, OTHER_SECRET, NOW)
    donors = [_sign(adapter, body + b"\n", case.secret, NOW), _sign(adapter, body, case.secret, NOW - 3600), forged]
    signed = [d for d in donors if d is not None]
    return Subject(
        provider=provider,
        adapter=adapter,
        path=path,
        body=Blob(body),
        headers=headers,
        query=query,
        seeds=tuple(seed for _, seed in _seeds(case)),
        seed_names=tuple(name for name, _ in _seeds(case)),
        form=case.spec.get("content_type") == "application/x-www-form-urlencoded",
        body_signed=case.spec.get("body_signed", True),
        needs_network=bool(case.spec.get("server")) or overrides(adapter, "authenticate"),
        genuine_verifies=genuine_verifies,
        guarded_headers=tuple(guarded_headers),
        guarded_params=tuple(guarded_params),
        timestamps=tuple(r for r in renderings if any(r in text for text in guarded_text)),
        donor_headers=_differing(headers, [d[0] for d in signed]),
        donor_params=_differing(params, [d[1] for d in signed]),
        forged_headers=forged[0] if forged else {},
        forged_params=forged[1] if forged else {},
    )


def _differing(genuine: Mapping[str, str], others: Sequence[Mapping[str, str]]) -> dict[str, tuple[str, ...]]:
    """Per name, the values other signings gave it that differ from the genuine one."""
    return {
        name: tuple(dict.fromkeys(o[name] for o in others if o.get(name, value) != value))
        for name, value in genuine.items()
    }


def _request(path: str, body: bytes, headers: Mapping[str, str], query: str) -> WebhookRequest:
    return WebhookRequest(method="POST", path=path, headers=dict(headers), body=body, query_string=query)


def _sign(
    adapter: ProviderAdapter, body: bytes, secret: str, now: float
) -> tuple[dict[str, str], dict[str, str]] | None:
    """(headers, query parameters) of a signing, or None where the secret does not suit the scheme."""
    try:
        signed = adapter.sign(body, secret, now)
    except Exception:
        return None
    return dict(signed.headers), dict(parse_qsl(signed.query_string, keep_blank_values=True))


def _seeds(case: ProviderCase) -> list[tuple[str, Blob]]:
    """(file name, body) of every fixture file of the provider."""
    files = sorted(p for p in (FIXTURES / case.provider).iterdir() if p.is_file())
    return [(p.name, Blob(p.read_bytes())) for p in files if p.name != "e2e.json" and p.suffix != ".md"]


# --- what a parse result must look like -----------------------------------------------------------------


def assert_well_formed(events: object) -> None:
    """The parse contract: NormalizedEvents whose money is finite, non-negative Decimal in an ISO currency."""
    assert isinstance(events, list), f"parse returned {type(events).__name__}, not a list"
    for event in events:
        assert isinstance(event, NormalizedEvent), f"parse returned a {type(event).__name__}"
        assert isinstance(event.kind, EventKind)
        assert isinstance(event.event_type, str)
        for name in MONEY_FIELDS:
            value = getattr(event, name)
            if value is None:
                continue
            assert type(value) is Decimal, f"{name} is a {type(value).__name__}: {value!r}"
            assert value.is_finite() and value >= 0, f"{name} is {value!r}"
            assert event.currency is not None, f"{name} {value} without a currency"
        if event.currency is not None:
            assert isinstance(event.currency, str) and _CURRENCY.fullmatch(event.currency), event.currency
        # a payment the payload cannot name or price is recorded as skipped: the adapter must say why
        if event.kind is not EventKind.IGNORED:
            assert (isinstance(event.transaction_key, str) and event.transaction_key) or event.reason, event
        if event.kind is EventKind.SALE:
            assert event.amount is not None or event.reason, f"sale without an amount or a reason: {event}"
        # a tax is the part of an amount that is tax: never reported without its amount
        for money, tax in (("amount", "tax"), ("refunded_total", "refunded_total_tax"), ("sale_amount", "sale_tax")):
            assert getattr(event, tax) is None or getattr(event, money) is not None, f"{tax} without {money}: {event}"
        metadata = event.customer.metadata
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()), metadata


# --- junk: header values, bodies ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# values that break verifiers: overflowing or digit-limit numbers, NUL, separators alone, huge text
TROUBLE_VALUES = tuple(
    map(
        Text,
        (
            "",
            " ",
            "\t",
            "0",
            "-1",
            "9" * 400,
            "-" + "9" * 400,
            "9" * 5000,
            "1e999",
            "NaN",
            "inf",
            "1754321987.5",
            "v1,",
            "v1,=",
            "v1,!!",
            "t=,v1=",
            "t=" + "9" * 400 + ",v1=00",
            "sha256=",
            "Basic",
            "Basic Og==",
            "Bearer ",
            "null",
            "\u00e9",
            "\u2603",
            "\x00",
            ",",
            ";",
            "=",
            "a" * 100_000,
        ),
    )
)


@functools.cache
def junk_values() -> st.SearchStrategy[str]:
    """Header or parameter values a forger or a broken proxy might send: never a genuine signature."""
    near_now = st.integers(min_value=int(NOW) - 400, max_value=int(NOW) + 400).map(str)
    values = st.one_of(
        st.text(max_size=80),
        st.sampled_from(TROUBLE_VALUES),
        st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=130),
        st.binary(min_size=1, max_size=80).map(_b64),
        st.lists(st.binary(min_size=1, max_size=40).map(lambda b: "v1," + _b64(b)), min_size=1, max_size=3).map(
            " ".join
        ),
        st.binary(max_size=48).map(lambda b: "sha256=" + b.hex()),
        st.tuples(near_now, st.binary(max_size=32)).map(lambda t: f"t={t[0]},v1={t[1].hex()}"),
        st.text(max_size=30).map(lambda t: "Basic " + _b64(("user:" + t).encode())),
        near_now,
        st.integers(min_value=300, max_value=100_000).flatmap(lambda n: st.sampled_from(["a" * n, "9" * n])),
        st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFF), min_size=1, max_size=40),
    )
    return values.map(Text)


@functools.cache
def header_names() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z][a-z0-9-]{0,24}", fullmatch=True)


# values inside a JSON document that json.loads turns into trouble: overflow, NaN, invalid UTF-8, depth
RAW_JSON_VALUES = tuple(
    map(
        Blob,
        (
            b"1e999999999",
            b"-1e999999999",
            b"1e-999999999",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"1" * 5000,
            b"123456789012345678901234567890.123",
            b"-0",
            b"-0.0",
            b"1E+2",
            b"-100",
            b'"\xff\xfe"',
            b'"\xc3"',
            b'"\\ud800"',
            b'"\\u0000"',
            b'"  usd  "',
            b'"12.50"',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        ),
    )
)
# whole bodies of the same kind
RAW_BODIES = tuple(
    map(
        Blob,
        (
            b"",
            b"null",
            b"[]",
            b"{}",
            b'""',
            b"0",
            b"NaN",
            b"1e999999999",
            b"\xef\xbb\xbf{}",
            b"\xff\xfe\xfd",
            b"{" * 100_000,
            b"[" * 100_000 + b"]" * 100_000,
            b"a=1&a=2&%ZZ=%FF",
            b"=&=&&",
        ),
    )
)
WRONG_TYPES: tuple[Any, ...] = (None, True, False, 0, -1, "", "x", [], {}, "12.50", 1.5, 10**30, -(10**30))


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["USD", "usd", "EUR", "JPY", "KWD", "XXX", "", "paid", "refunded", "true"]),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=5)
        ),
        max_leaves=25,
    )


@functools.cache
def json_documents() -> st.SearchStrategy[bytes]:
    documents = st.one_of(st.dictionaries(st.text(max_size=12), json_values(), max_size=6), json_values())
    return documents.map(lambda doc: json.dumps(doc).encode())


@functools.cache
def form_documents() -> st.SearchStrategy[bytes]:
    pairs = st.lists(st.tuples(st.text(max_size=16), st.one_of(st.text(max_size=24), st.sampled_from(FORM_JUNK))))
    return pairs.map(lambda p: urlencode(p).encode())


FORM_JUNK = (
    "",
    "  ",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999999999",
    "-1",
    "0",
    "4.9",
    "49,00",
    "1" * 5000,
    "true",
    "false",
    "TRUE",
    "usd",
    " USD ",
    "xyz",
    "\u00e9\u2603",
)


@st.composite
def byte_edits(draw: st.DrawFn, body: bytes) -> bytes:
    """`body` changed at the byte level: flipped, inserted, deleted, truncated or extended (never equal)."""
    op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"] if body else ["append"]))
    if op == "append":
        return body + draw(st.binary(min_size=1, max_size=16))
    at = draw(st.integers(min_value=0, max_value=len(body) - 1))
    if op == "flip":
        mask = 1 << draw(st.integers(min_value=0, max_value=7))
        return body[:at] + bytes([body[at] ^ mask]) + body[at + 1 :]
    if op == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=16)) + body[at:]
    if op == "delete":
        count = draw(st.integers(min_value=1, max_value=max(1, min(16, len(body) - at))))
        return body[:at] + body[at + count :]
    return body[:at]


_MARKER = "\u0000fuzz-raw-{}\u0000"


@st.composite
def json_mutations(draw: st.DrawFn, provider: str, seed: int) -> bytes:
    """A real payload with keys dropped, values of the wrong type, overflowing numbers, bad text, depth."""
    document = copy.deepcopy(_json_seeds(provider)[seed])
    raw: dict[str, bytes] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        slots = list(_slots(document))
        if not slots:
            break
        # by index: sampling the slots themselves would put whole documents in the strategy's repr
        container, key, _ = slots[draw(st.integers(min_value=0, max_value=len(slots) - 1))]
        op = draw(st.sampled_from(["drop", "drop", "wrong_type", "random", "raw", "raw", "tweak"]))
        if op == "drop":
            del container[key]
        elif op == "wrong_type":
            container[key] = draw(st.sampled_from(WRONG_TYPES))
        elif op == "random":
            container[key] = draw(json_values())
        elif op == "raw":
            marker = _MARKER.format(len(raw))
            raw[marker] = draw(st.sampled_from(RAW_JSON_VALUES))
            container[key] = marker
        else:
            container[key] = draw(_tweaked(container[key]))
    text = json.dumps(document, ensure_ascii=False).encode("utf-8")
    for marker, value in raw.items():
        text = text.replace(json.dumps(marker, ensure_ascii=False).encode("utf-8"), value)
    return text


def _tweaked(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same type but off: numbers at the edges, strings re-cased, padded or replaced."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int | Decimal):
        return st.one_of(st.integers(min_value=-(10**20), max_value=10**20), st.sampled_from([0, -1, 1, 10**15]))
    if isinstance(value, str):
        return st.one_of(
            st.just(value.lower()),
            st.just(value.upper()),
            st.just(f" {value} "),
            st.just(value[: len(value) // 2]),
            st.text(max_size=20),
        )
    return json_values()


def _slots(node: Any, path: str = "") -> list[tuple[Any, Any, str]]:
    """Every (container, key, dotted path) of a parsed JSON document, depth first."""
    found: list[tuple[Any, Any, str]] = []
    items: Sequence[tuple[Any, Any]]
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return found
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        found.append((node, key, where))
        found.extend(_slots(value, where))
    return found


BROKEN_FORM_PARTS = (b"%ZZ=1", b"price=%FF%FE", b"\xff\xfe=\x80", b"=", b"&&", b"a", b"%", b"x=%E2%82")


@st.composite
def form_mutations(draw: st.DrawFn, provider: str, seed: int) -> bytes:
    """A real form post with fields dropped, duplicated, renamed, emptied or junk, and broken encodings."""
    fields = list(_form_seeds(provider)[seed])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["drop", "value", "value", "key", "duplicate", "add"] if fields else ["add"]))
        if op == "add":
            fields.append((draw(st.text(max_size=16)), draw(st.text(max_size=16))))
            continue
        at = draw(st.integers(min_value=0, max_value=len(fields) - 1))
        name, value = fields[at]
        if op == "drop":
            del fields[at]
        elif op == "value":
            fields[at] = (name, draw(st.one_of(st.sampled_from(FORM_JUNK), st.text(max_size=24), _tweaked(value))))
        elif op == "key":
            fields[at] = (draw(st.text(max_size=16)), value)
        else:
            fields.insert(at, (name, draw(st.sampled_from(FORM_JUNK))))
    body = urlencode(fields).encode("ascii")
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        junk = draw(
            st.sampled_from([b"%ZZ=1", b"price=%FF%FE", b"\xff\xfe=\x80", b"=", b"&&", b"a", b"%", b"x=%E2%82"])
        )
        body = body + b"&" + junk if draw(st.booleans()) else junk + b"&" + body
    return body


@functools.cache
def _json_seeds(provider: str) -> tuple[Any, ...]:
    found = []
    for seed in subject(provider).seeds:
        try:
            found.append(json.loads(seed))
        except ValueError:
            continue
    return tuple(found)


@functools.cache
def _form_seeds(provider: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    if not subject(provider).form:
        return ()
    found = []
    for seed in subject(provider).seeds:
        try:
            found.append(tuple(parse_qsl(seed.decode("utf-8"), keep_blank_values=True, errors="strict")))
        except ValueError:
            continue
    return tuple(pairs for pairs in found if pairs)


@functools.cache
def payload_bodies(provider: str) -> st.SearchStrategy[bytes]:
    """Bodies for `parse`: junk, random JSON and forms, and many mutations of the provider's own samples."""
    seeds = subject(provider).seeds
    choices: list[st.SearchStrategy[bytes]] = [
        st.binary(max_size=256),
        json_documents(),
        form_documents(),
        st.sampled_from(RAW_BODIES),
        st.sampled_from(seeds),
        st.sampled_from(seeds).flatmap(byte_edits),
        st.sampled_from(seeds).map(lambda seed: seed.decode("utf-8", "replace").encode("utf-16")),
    ]
    # seeds by index: the strategy's repr stays short in hypothesis' reports
    if json_seeds := _json_seeds(provider):
        seed = st.integers(min_value=0, max_value=len(json_seeds) - 1)
        choices += [seed.flatmap(lambda n: json_mutations(provider, n))] * 4
    if form_seeds := _form_seeds(provider):
        seed = st.integers(min_value=0, max_value=len(form_seeds) - 1)
        choices += [seed.flatmap(lambda n: form_mutations(provider, n))] * 4
    return st.one_of(choices).map(Blob)


@st.composite
def junk_requests(draw: st.DrawFn, provider: str) -> tuple[WebhookRequest, float]:
    """Random bodies under random headers, the adapter's own header names included, with junk values."""
    s = subject(provider)
    body = draw(st.one_of(payload_bodies(provider), st.just(Blob(s.body))))
    headers: dict[str, str] = {}
    for name in dict.fromkeys((*s.signed_header_names, *COMMON_AUTH_HEADERS)):
        choice = draw(st.sampled_from(["absent", "junk", "junk", "forged"]))
        if choice == "junk":
            headers[name] = draw(junk_values())
        elif choice == "forged" and name in s.forged_headers:
            headers[name] = s.forged_headers[name]
    headers.update(draw(st.dictionaries(header_names(), junk_values(), max_size=4)))
    if draw(st.booleans()):
        headers["content-type"] = s.headers.get("content-type", "application/json")
    params: list[tuple[str, str]] = []
    for name in s.param_names:
        choice = draw(st.sampled_from(["absent", "junk", "forged"]))
        if choice == "junk":
            params.append((name, draw(junk_values())))
        elif choice == "forged" and name in s.forged_params:
            params.append((name, s.forged_params[name]))
    query = urlencode(params)
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        query = draw(st.text(max_size=40))
    now = draw(st.one_of(st.just(NOW), st.floats(min_value=0, max_value=4e9)))
    return WebhookRequest("POST", s.path, headers, body, query), now


@dataclass(frozen=True)
class Mutation:
    label: str
    request: WebhookRequest
    now: float
    expect: Expectation


@st.composite
def mutations(draw: st.DrawFn, provider: str) -> Mutation:
    """One change to the genuinely signed sale sample, and what `verify` must then say."""
    s = subject(provider)
    kinds = ["body", "body", "extra", "combine", "clock", "strip"]
    if s.guarded_headers:
        kinds += ["header", "header"]
    if s.guarded_params:
        kinds += ["param", "param"]
    if s.timestamps:
        kinds.append("timestamp")
    kind = draw(st.sampled_from(kinds))
    headers, query, body, now = dict(s.headers), s.query, s.body, NOW
    expect: Expectation = "reject"
    label = kind
    if kind == "body":
        others = [seed for seed in s.seeds if seed != s.body]
        body = draw(st.one_of(byte_edits(s.body), *([st.sampled_from(others)] if others else [])))
        expect = "reject" if s.body_signed else "either"
    elif kind == "header":
        name = draw(st.sampled_from(s.guarded_headers))
        headers[name], label = draw(_changed_value(headers[name], s.donor_headers.get(name, ())))
        label = f"header {name}: {label}"
    elif kind == "param":
        name = draw(st.sampled_from(s.guarded_params))
        pairs = dict(parse_qsl(query, keep_blank_values=True))
        pairs[name], label = draw(_changed_value(pairs[name], s.donor_params.get(name, ())))
        query, label = urlencode(pairs), f"param {name}: {label}"
    elif kind == "timestamp":
        rendering = draw(st.sampled_from(s.timestamps))
        shifted = str(int(rendering) + draw(st.integers(min_value=-(10**6), max_value=10**6).filter(bool)))
        headers = {k: v.replace(rendering, shifted) for k, v in headers.items()}
        query = query.replace(rendering, shifted)
        label = f"timestamp {rendering} -> {shifted}"
    elif kind == "strip":
        headers = {k: v for k, v in headers.items() if k not in s.signed_header_names}
        query = ""
    elif kind == "clock":
        now = NOW + draw(st.sampled_from([-1, 1])) * draw(st.integers(min_value=7 * 86400, max_value=400 * 86400))
        expect = "reject" if s.timestamps else "either"
    elif kind == "combine":
        expect = "either"
        guarded = [("h", n) for n in s.guarded_headers] + [("q", n) for n in s.guarded_params]
        if guarded:
            where, name = draw(st.sampled_from(guarded))
            junk = draw(junk_values())
            if where == "h":
                value = headers[name]
                headers[name] = draw(
                    st.sampled_from([f"{value}, {value}", f"{value} {value}", f"{junk}, {value}", f"{value}, {junk}"])
                )
            else:
                pairs_list = parse_qsl(query, keep_blank_values=True)
                extra = [(name, junk)]
                query = urlencode(extra + pairs_list if draw(st.booleans()) else pairs_list + extra)
            label = f"combine {name}"
    else:
        extra_headers = draw(st.dictionaries(header_names().map(lambda n: "x-fuzz-" + n), junk_values(), max_size=4))
        headers.update(extra_headers)
        expect = "accept"
        if draw(st.booleans()):
            headers["content-type"] = draw(st.sampled_from(["text/plain", "", "application/json; charset=utf-8"]))
            expect = "either"
        if draw(st.booleans()):
            query = urlencode([*parse_qsl(query, keep_blank_values=True), ("fuzz_extra", draw(st.text(max_size=10)))])
            expect = "either"
    return Mutation(label, WebhookRequest("POST", s.path, headers, Blob(body), query), now, expect)


@st.composite
def _changed_value(draw: st.DrawFn, value: str, donors: tuple[str, ...]) -> tuple[str, str]:
    """`value` replaced by one that is certainly not it (hex and base64 ignore case/padding subtleties)."""
    options = ["empty", "junk", "truncate"] + (["donor"] * 2 if donors else [])
    op = draw(st.sampled_from(options))
    if op == "empty":
        return draw(st.sampled_from(["", " ", "\t"])), op
    if op == "donor":
        return draw(st.sampled_from(donors)), op
    if op == "truncate" and len(value) > 1:
        return value[: -draw(st.integers(min_value=1, max_value=len(value) - 1))], op
    junk = draw(junk_values().filter(lambda j: j.strip().lower() != value.strip().lower()))
    return junk, "junk"


# --- fixed corpora: the cases too rare for random sampling to hit every run -----------------------------


def trouble_mutations(provider: str) -> list[Mutation]:
    """The signed sample with one header or parameter replaced by each of TROUBLE_VALUES."""
    s = subject(provider)
    found = []
    for name in s.signed_header_names:
        expect: Expectation = "reject" if name in s.guarded_headers else "either"
        for value in TROUBLE_VALUES:
            request = s.request(Blob(s.body), {**s.headers, name: Text(value)})
            found.append(Mutation(f"header {name}: {_short(value, 24)}", request, NOW, expect))
    pairs = parse_qsl(s.query, keep_blank_values=True)
    for name in s.param_names:
        expect = "reject" if name in s.guarded_params else "either"
        for value in TROUBLE_VALUES:
            query = urlencode([(k, value if k == name else v) for k, v in pairs])
            found.append(
                Mutation(f"param {name}: {_short(value, 24)}", s.request(Blob(s.body), query=query), NOW, expect)
            )
    return found


def trouble_requests(provider: str) -> list[tuple[str, WebhookRequest]]:
    """(label, request): every signature header and parameter set to one trouble value, over the sample
    and over no body."""
    s = subject(provider)
    names = dict.fromkeys((*s.signed_header_names, *COMMON_AUTH_HEADERS))
    found = []
    for value in TROUBLE_VALUES:
        headers = {name: Text(value) for name in names}
        query = urlencode([(name, value) for name in s.param_names])
        for body, which in ((s.body, "sample"), (b"", "empty")):
            found.append(
                (f"every signature field {_short(value, 30)}, {which} body", s.request(Blob(body), headers, query))
            )
    return found


_DROP = object()
# one of each failure kind is enough per field; the random runs combine them
_SWEEP_VALUES: tuple[Any, ...] = (
    _DROP,
    None,
    True,
    "",
    "x",
    [],
    {},
    1.5,
    -1,
    10**30,
    *(("raw", raw) for raw in (b"1e999999999", b"NaN", b"-Infinity", b'"\xff"', b"[" * 5000 + b"]" * 5000)),
)


# for every other fixture, only the numbers are swept: they are where money hides
_NUMBER_SWEEP_VALUES: tuple[Any, ...] = (
    _DROP,
    None,
    "x",
    -1,
    "-1",
    10**30,
    "1e999999999",
    ("raw", b"1e999999999"),
    ("raw", b"NaN"),
)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def field_sweep(provider: str) -> list[tuple[str, Blob]]:
    """(label, body): the sale sample with each field in turn dropped or replaced by each of a few bad values,
    every other fixture with each number so replaced, and the raw bodies and fixtures themselves."""
    s = subject(provider)
    bodies: list[tuple[str, bytes]] = [(f"raw body {_short(body, 40)}", body) for body in RAW_BODIES]
    bodies += list(zip(s.seed_names, s.seeds, strict=True))
    bodies += _sweep("sale", s.body, s.form, numbers_only=False)
    for name, seed in zip(s.seed_names, s.seeds, strict=True):
        if seed != s.body:
            bodies += _sweep(name, seed, s.form, numbers_only=True)
    return [(label, Blob(body)) for label, body in bodies]


def _sweep(name: str, body: bytes, form: bool, *, numbers_only: bool) -> list[tuple[str, bytes]]:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict | list):
        return _json_sweep(name, document, numbers_only)
    if form:
        return _form_sweep(name, body, numbers_only)
    return []


def _json_sweep(name: str, document: Any, numbers_only: bool) -> list[tuple[str, bytes]]:
    found = []
    values = _NUMBER_SWEEP_VALUES if numbers_only else _SWEEP_VALUES
    for index, (container, key, where) in enumerate(_slots(document)):
        current = container[key]
        if numbers_only and not _is_number(current):
            continue
        for value in values:
            changed = copy.deepcopy(document)
            changed_container, changed_key, _ = _slots(changed)[index]
            raw = b""
            if value is _DROP:
                del changed_container[changed_key]
                label = f"{name}: drop {where}"
            elif isinstance(value, tuple):
                changed_container[changed_key], raw = _MARKER, value[1]
                label = f"{name}: {where} = {_short(raw, 20)}"
            else:
                changed_container[changed_key] = value
                label = f"{name}: {where} = {value!r}"
            text = json.dumps(changed).encode()
            found.append((label, text.replace(json.dumps(_MARKER).encode(), raw) if raw else text))
    return found


def _is_number(value: Any) -> bool:
    # providers send money as JSON numbers or as numeric strings ("400", "12.50")
    if isinstance(value, str):
        return bool(_NUMBER.fullmatch(value))
    return isinstance(value, int | float) and not isinstance(value, bool)


def _form_sweep(name: str, body: bytes, numbers_only: bool) -> list[tuple[str, bytes]]:
    found = []
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    for index, (field, value) in enumerate(pairs):
        if numbers_only and not _is_number(value):
            continue
        found.append((f"{name}: drop {field}", urlencode(pairs[:index] + pairs[index + 1 :]).encode()))
        for junk in FORM_JUNK:
            changed = [*pairs[:index], (field, junk), *pairs[index + 1 :]]
            found.append((f"{name}: {field} = {_short(junk, 20)}", urlencode(changed).encode()))
    return found

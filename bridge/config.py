"""The YAML configuration: pydantic models, `${VAR}` interpolation, errors that name the YAML path."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bridge.mapping import validate_sources
from bridge.secret_policy import MIN_TOKEN_LENGTH, Unverifiable, secrets_weakness, weakness
from bridge.suggest import did_you_mean
from providers import UnknownProviderError, get_adapter_class
from providers.base import ProviderAdapter

DEFAULT_BASE_URL = "https://api.partnero.com/v1"
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(Exception):
    """A user mistake in the configuration; `str()` is one line per problem, each naming its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartneroSettings(_Model):
    api_key: str = ""
    base_url: str = DEFAULT_BASE_URL
    # None = decided by the key: no key means nothing can be sent, so dry-run (said loudly at start)
    dry_run: bool | None = None
    max_requests_per_second: float = Field(default=20.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1, le=64)

    @property
    def effective_dry_run(self) -> bool:
        return self.dry_run if self.dry_run is not None else not self.api_key

    @property
    def scope(self) -> str:
        """Identity of the Partnero program: outbound dedup is per program, not per endpoint."""
        return program_scope(self.base_url, self.api_key)


# asked several times for every event recorded and operation delivered: a hash each time showed in the
# drain's profile; the programs are the few the config names
@functools.cache
def program_scope(base_url: str, api_key: str) -> str:
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()[:16]


class PartneroOverride(_Model):
    api_key: str | None = None
    base_url: str | None = None
    dry_run: bool | None = None


class ServerSettings(_Model):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # the public URL's HTTP limits (bridge/limits.py, docs/operations.md)
    max_header_bytes: int = Field(default=65_536, ge=1024)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)


class DeliverySettings(_Model):
    max_attempts: int = Field(default=12, ge=1)
    initial_backoff_seconds: float = Field(default=2.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    timeout_seconds: float = Field(default=15.0, gt=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    # the circuit breaker per Partnero program (docs/delivery.md): consecutive failure waves that open
    # it, and the longest pause between probes while it is open, so a healed Partnero is seen quickly
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_max_pause_seconds: float = Field(default=30.0, gt=0)
    # how long a claimed call or operation stays with its process; after a crash another process takes
    # it over once this runs out (default: three request timeouts plus 30 s)
    lease_seconds: float | None = Field(default=None, gt=0)

    @property
    def lease(self) -> float:
        return self.lease_seconds if self.lease_seconds is not None else self.timeout_seconds * 3 + 30


class EndpointSettings(BaseModel):
    """One webhook URL: `POST /webhooks/<name>`. Keys not listed here are the adapter's own options."""

    model_config = ConfigDict(extra="allow")

    provider: str
    secret: str | None = None
    secrets: list[str] | None = None
    customer_key: list[str] = Field(default_factory=lambda: ["email"])
    # where a payment carries the referring partner's key (checkout custom data from the checkout script):
    # a sale for a customer the bridge has not created yet then creates it in the same call
    partner_key: list[str] = Field(default_factory=list)
    test_mode: Literal["skip", "deliver"] = "skip"
    partnero: PartneroOverride | None = None
    # the commission base: what the buyer paid after discounts, without the tax (the merchant of record
    # keeps it) or with it; sales, partial refunds and disputes all use this one base
    amount: Literal["excluding_tax", "including_tax"] = "excluding_tax"
    # a discount code (`coupon` in partner_key) attributes only a customer with no partner yet, and only
    # when no partner source before it names one; true: the code wins over the sale's other sources
    coupon_overrides: bool = False
    partial_refunds: Literal["adjust", "ignore", "full"] = "adjust"
    disputes: Literal["reverse_on_open", "reverse_on_lost", "ignore"] = "reverse_on_lost"
    # the worker compares the provider's payments with the ledger this often (e.g. 1h) and queues what the
    # webhooks missed (needs the adapter's `api_key`); see docs/backfill.md
    reconcile_every: float | None = Field(default=None, gt=0)
    reconcile_window: float = Field(default=3 * 86400.0, gt=0)  # how far back each run looks
    reconcile_grace: float = Field(default=3600.0, ge=0)  # younger payments are left to their webhook
    reconcile_max_requests: int = Field(default=30, ge=1)  # provider API requests per run

    @field_validator("reconcile_every", "reconcile_window", "reconcile_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration_seconds(value) if isinstance(value, str) else value

    @field_validator("customer_key", "partner_key", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("customer_key")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one source")
        validate_sources(value)
        return value

    @field_validator("partner_key")
    @classmethod
    def _known_partner_sources(cls, value: list[str]) -> list[str]:
        validate_sources(value, partner=True)
        return value

    @model_validator(mode="after")
    def _one_secret_form(self) -> EndpointSettings:
        if self.secret is not None and self.secrets is not None:
            raise ValueError("use either `secret` or `secrets`, not both")
        if "amount_field" in (self.model_extra or {}):
            # the per-provider total/subtotal choice became one setting for every provider
            raise ValueError(
                "`amount_field` is replaced by `amount: excluding_tax` (default) or `amount: including_tax`"
            )
        return self

    def secret_list(self) -> list[str]:
        values = self.secrets if self.secrets is not None else [self.secret or ""]
        return [s for s in values if s]


class SignupSettings(_Model):
    """The sign-up relay: `POST /signups` with this bridge's own bearer token."""

    token: str = ""
    # a sale for a customer whose sign-up is still pending in the bridge waits this long for it
    wait_seconds: float = Field(default=600.0, ge=0)
    partnero: PartneroOverride | None = None

    @field_validator("token")
    @classmethod
    def _no_blank_token(cls, value: str) -> str:
        # a token of spaces (or padded with them) can never arrive intact in a header
        if value and value.strip() != value:
            raise ValueError("must not be blank or start or end with whitespace")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.token)


class AdminSettings(_Model):
    """The operator console at `/admin` and `/metrics`: off while `token` is empty."""

    token: str = ""
    # a listener of its own, so the console need not be reachable where providers post webhooks
    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    session_hours: float = Field(default=12.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.token)


class AlertSettings(_Model):
    """Chat alerts (Slack-compatible JSON POST): dead letters, unparsable calls, long pauses."""

    url: str = ""
    paused_minutes: float = Field(default=15.0, gt=0)
    # at most one alert of a kind per endpoint within this window; the rest are counted into the next
    min_interval_seconds: float = Field(default=60.0, ge=0)


class CouponSettings(_Model):
    """Partners' discount codes (the `coupon` partner source): `codes` maps a code to a partner key and
    wins over the program's promotion codes at Partnero. Codes match case-insensitively."""

    codes: dict[str, str] = Field(default_factory=dict)

    @field_validator("codes")
    @classmethod
    def _distinct_codes(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for code, partner in value.items():
            folded = code.strip().casefold()
            if not folded or not str(partner).strip():
                raise ValueError("a code and its partner key must not be empty")
            if folded in seen:
                raise ValueError(f"{seen[folded]!r} and {code!r} are the same code (codes match case-insensitively)")
            seen[folded] = code
        return value

    def partner_for(self, code: str) -> str | None:
        folded = code.strip().casefold()
        return next((p.strip() for c, p in self.codes.items() if c.strip().casefold() == folded), None)


class StoreSettings(_Model):
    url: str = "sqlite:///./data/bridge.db"
    # raw bodies (buyer PII) of finished calls are dropped after this many days; outcomes are kept
    retention_days: float | None = Field(default=None, gt=0)


class ConfigFile(_Model):
    partnero: PartneroSettings = Field(default_factory=PartneroSettings)
    store: str | StoreSettings = "sqlite:///./data/bridge.db"
    server: ServerSettings = Field(default_factory=ServerSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    signups: SignupSettings = Field(default_factory=SignupSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    coupons: CouponSettings = Field(default_factory=CouponSettings)
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """An endpoint ready to serve: its settings, its Partnero program and its adapter (secrets parsed)."""

    name: str
    settings: EndpointSettings
    partnero: PartneroSettings
    adapter: ProviderAdapter

    @property
    def provider(self) -> str:
        return self.settings.provider


@dataclass(frozen=True)
class Config:
    partnero: PartneroSettings
    store: str
    server: ServerSettings
    delivery: DeliverySettings
    endpoints: Mapping[str, Endpoint]
    source: str = "<config>"
    retention_days: float | None = None
    signups: SignupSettings = field(default_factory=SignupSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # what start-up says loudly but does not refuse (weak secrets on dry-run endpoints)
    warnings: tuple[str, ...] = ()
    coupons: CouponSettings = field(default_factory=CouponSettings)

    @property
    def signup_partnero(self) -> PartneroSettings:
        """The Partnero program sign-ups go to: the default one, unless `signups.partnero` says otherwise."""
        if self.signups.partnero is None:
            return self.partnero
        return self.partnero.model_copy(update=self.signups.partnero.model_dump(exclude_none=True))


def duration_seconds(text: str) -> float:
    """`45s`, `90m`, `1h`, `3d`, `2w` as seconds; ValueError naming the value otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip()
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        raise ValueError(f"{text!r} is not a duration (use 90m, 1h, 3d)")
    return float(int(value[:-1]) * units[value[-1]])  # seconds


def interpolate(value: Any) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string; an unset VAR without default is empty."""
    if isinstance(value, str):
        return _ENV_PATTERN.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    return parse_config(raw if raw is not None else {}, source=str(path))


def parse_config(raw: Any, source: str = "<config>") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    values = interpolate(raw)
    try:
        model = ConfigFile.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_problems(exc) + _endpoint_problems(values)) from None
    problems: list[str] = []
    warnings: list[str] = []
    endpoints: dict[str, Endpoint] = {}
    for name, settings in model.endpoints.items():
        endpoint = _build_endpoint(name, settings, model.partnero, problems, warnings)
        if endpoint is not None:
            endpoints[name] = endpoint
    # unlike a dry-run endpoint's secret, a weak token is refused in dry run too: the console shows buyers'
    # personal data and the relay creates Partnero customers whatever the endpoints do
    for path, token, guards in (
        ("admin.token", model.admin.token, "the console and its buyers' data"),
        ("signups.token", model.signups.token, "the sign-up relay"),
    ):
        weak = weakness(token, MIN_TOKEN_LENGTH) if token else None
        if weak is not None:
            problems.append(f"{path}: {weak}: anyone could use {guards}")
    store = model.store if isinstance(model.store, StoreSettings) else StoreSettings(url=model.store)
    if not store.url.startswith(("sqlite://", "postgresql://", "postgres://")):
        where = "store.url" if isinstance(model.store, StoreSettings) else "store"
        problems.append(f"{where}: must start with sqlite:// or postgresql://")
    if problems:
        raise ConfigError(problems)
    return Config(
        model.partnero,
        store.url,
        model.server,
        model.delivery,
        endpoints,
        source,
        store.retention_days,
        model.signups,
        model.admin,
        model.alerts,
        tuple(warnings),
        model.coupons,
    )


def _build_endpoint(
    name: str,
    settings: EndpointSettings,
    default: PartneroSettings,
    problems: list[str],
    warnings: list[str] | None = None,
) -> Endpoint | None:
    warnings = [] if warnings is None else warnings
    path = f"endpoints.{name}"
    if not _ENDPOINT_NAME.match(name):
        problems.append(f"{path}: name must be letters, digits, '-' or '_' (it becomes the URL path)")
        return None
    try:
        adapter_class = get_adapter_class(settings.provider)
    except UnknownProviderError as exc:
        problems.append(f"{path}.provider: {exc}")
        return None
    secrets = settings.secret_list()
    if adapter_class.requires_secret and settings.secret is None and settings.secrets is None:
        problems.append(f"{path}.secret: required")
        return None
    try:
        options = adapter_class.Options.model_validate(settings.model_extra or {})
    except ValidationError as exc:
        known = set(adapter_class.Options.model_fields) | set(EndpointSettings.model_fields)
        problems.extend(_problems(exc, prefix=path, known=known))
        return None
    partnero = default
    if settings.partnero is not None:
        partnero = default.model_copy(update=settings.partnero.model_dump(exclude_none=True))
    if not secrets and adapter_class.requires_secret:
        warnings.append(f"endpoint {name}: no secret set ({path}.secret is empty): every webhook to it is refused")
        return Endpoint(name, settings, partnero, Unverifiable([], options))
    weak = secrets_weakness(secrets, adapter_class.min_secret_length) if secrets else None
    if weak is not None:
        if not partnero.effective_dry_run:
            problems.append(f"{path}.secret: {weak}: endpoint {name} would accept forged webhooks")
            return None
        warnings.append(f"endpoint {name}: its secret {weak}; tolerated only because it is in dry run")
    try:
        adapter = adapter_class(secrets, options)
    except ValueError as exc:
        problems.append(f"{path}.secret: {exc}")
        return None
    return Endpoint(name, settings, partnero, adapter)


def _endpoint_problems(values: dict[str, Any]) -> list[str]:
    """When the file as a whole is invalid, the provider-level problems of the endpoints whose own
    settings are valid, so one run reports every mistake."""
    endpoints = values.get("endpoints")
    if not isinstance(endpoints, dict):
        return []
    try:
        default = PartneroSettings.model_validate(values.get("partnero") or {})
    except ValidationError:
        default = PartneroSettings()
    problems: list[str] = []
    for name, settings in endpoints.items():
        try:
            valid = EndpointSettings.model_validate(settings)
        except ValidationError:
            continue  # reported with the file's own errors
        _build_endpoint(str(name), valid, default, problems)
    return problems


def _known_keys(loc: tuple[int | str, ...]) -> set[str]:
    """The setting names allowed in the section that holds the unknown key at `loc`."""
    model: type[BaseModel] = ConfigFile
    parts = [str(p) for p in loc[:-1]]
    i = 0
    while i < len(parts):
        if model is ConfigFile and parts[i] == "endpoints":
            model, i = EndpointSettings, i + 2  # endpoints.<name>.…
            continue
        field = model.model_fields.get(parts[i])
        options = (get_args(field.annotation) or (field.annotation,)) if field is not None else ()
        nested = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return set()
        model, i = nested[0], i + 1
        if i < len(parts) and parts[i] == model.__name__:
            i += 1  # a union member's name in the path (store.StoreSettings.…)
    return set(model.model_fields)


def _problems(exc: ValidationError, prefix: str = "", known: set[str] | None = None) -> list[str]:
    problems = []
    for error in exc.errors():
        parts = [prefix] if prefix else []
        parts += [str(p) for p in error["loc"]]
        where = ".".join(parts) or "(top level)"
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            candidates = known if known is not None else _known_keys(tuple(error["loc"]))
            message = "unknown setting" + did_you_mean(str(error["loc"][-1]), candidates)
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return problems


def redact(secret: str) -> str:
    """What `check-config` shows of a secret: enough to tell two apart, never enough to use."""
    if not secret:
        return "(empty)"
    return f"{secret[:2]}…({len(secret)} chars)" if len(secret) >= 12 else f"…({len(secret)} chars)"

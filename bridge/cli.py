"""The `partnero-bridge` command: serve, check-config, events, replay, simulate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bridge import __version__
from bridge.config import Config, ConfigError, load_config, redact
from bridge.redact import redact_url
from bridge.store.base import EventFilter, Store

T = TypeVar("T")

log = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnero-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"partnero-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="receive webhooks and deliver them (worker embedded)")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--no-worker", action="store_true", help="ingest only; run `worker` processes for delivery")

    worker = commands.add_parser("worker", help="deliver stored webhooks without serving HTTP (PostgreSQL scale-out)")
    worker.add_argument("--config", required=True, metavar="FILE")
    worker.add_argument("--log-level", default="INFO")

    migrate = commands.add_parser("migrate", help="bring the store's schema to this version (also done at start)")
    migrate.add_argument("--config", default=os.environ.get("PARTNERO_BRIDGE_CONFIG", "config.yaml"), metavar="FILE")

    check = commands.add_parser("check-config", help="validate a configuration file and list its endpoints")
    check.add_argument("file", metavar="FILE")

    default_config = os.environ.get("PARTNERO_BRIDGE_CONFIG", "config.yaml")
    events = commands.add_parser("events", help="list events (`events show ID` for one, with every Partnero attempt)")
    events.add_argument("show", nargs="*", metavar="show ID", help="show one event or call:N in full")
    events.add_argument("--config", default=default_config, metavar="FILE")
    events.add_argument("--status", choices=sorted(EVENT_STATUSES))
    events.add_argument("--endpoint")
    events.add_argument("--since", metavar="WHEN", help="2026-11-01, 2026-11-01T12:00, or 7d / 36h / 90m")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--json", action="store_true", help="JSON instead of a table")

    replay = commands.add_parser("replay", help="send dead events again, or parse failed calls again")
    replay.add_argument("ids", nargs="*", metavar="ID", help="event ids (12) or unparsed calls (call:5)")
    replay.add_argument("--config", default=default_config, metavar="FILE")
    replay.add_argument("--status", choices=["dead", "failed"], help="replay every event with this status")
    replay.add_argument("--endpoint")
    replay.add_argument("--since", metavar="WHEN")

    signup = commands.add_parser(
        "signup", help="queue a sign-up (create the Partnero customer) — for manual use and backfills"
    )
    signup.add_argument("--config", default=default_config, metavar="FILE")
    signup.add_argument("--key", required=True, help="your key for the customer (the one sales will carry)")
    partner = signup.add_mutually_exclusive_group()
    partner.add_argument("--partner-key", help="the referring partner's key (the partnero_partner cookie)")
    partner.add_argument("--partner-email")
    partner.add_argument("--partner-id")
    signup.add_argument("--email")
    signup.add_argument("--name")
    signup.add_argument("--surname")
    signup.add_argument("--tag", action="append", default=[], dest="tags")
    signup.add_argument("--referral-url")

    simulate = commands.add_parser(
        "simulate", help="send a signed test-mode sample webhook to a running bridge (`simulate --list`: samples)"
    )
    simulate.add_argument("endpoint", nargs="?", metavar="ENDPOINT")
    simulate.add_argument("event", nargs="?", metavar="EVENT", help="sample event (default: the provider's first)")
    simulate.add_argument("--config", default=default_config, metavar="FILE")
    simulate.add_argument("--url", help="the bridge's base URL (default: server.host:port of the config)")
    simulate.add_argument("--list", action="store_true", help="name the events each provider can simulate")

    from bridge import moves

    moves.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in moves.COMMANDS:
        return moves.run(args)
    if args.command == "simulate":
        return simulate_command(args)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "serve":
        return serve_command(args.config, args.host, args.port, args.log_level, with_worker=not args.no_worker)
    if args.command == "worker":
        return worker_command(args.config, args.log_level)
    if args.command == "migrate":
        return migrate_command(args.config)
    if args.command == "events":
        return events_command(args)
    if args.command == "signup":
        return signup_command(args)
    if args.command == "replay":
        if bool(args.ids) == bool(args.status):
            parser.error("replay takes event ids or --status, not both and not neither")
        return replay_command(args)
    parser.error(f"unknown command {args.command}")
    return 2


EVENT_STATUSES = {"pending", "delivered", "skipped", "dead", "duplicate", "ignored", "failed"}
_COLUMNS = (
    "id",
    "time",
    "endpoint",
    "kind",
    "event",
    "transaction_key",
    "customer_key",
    "attributed",
    "status",
    "reason",
)


def _with_store(path: str, work: Callable[[Store], Awaitable[T]]) -> T | None:
    config = _load(path)
    if config is None:
        return None
    from bridge.store import open_store

    async def run() -> T:
        store = open_store(config.store)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def events_command(args: argparse.Namespace) -> int:
    from bridge import admin

    try:
        if args.show:
            if len(args.show) != 2 or args.show[0] != "show":
                print("usage: partnero-bridge events show ID", file=sys.stderr)
                return 2
            detail = _with_store(args.config, lambda store: admin.show(store, args.show[1]))
            if detail is None:
                return 2
            print(json.dumps(detail, indent=2) if args.json else _format_detail(detail))
            return 0
        flt = EventFilter(
            status=args.status,
            endpoint=args.endpoint,
            since=admin.parse_since(args.since) if args.since else None,
            limit=args.limit,
        )
        rows = _with_store(args.config, lambda store: admin.list_rows(store, flt))
    except admin.AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if rows is None:
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0


def replay_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bridge import admin

    async def run(store: Store) -> tuple[int, int]:
        if args.status:
            flt = EventFilter(endpoint=args.endpoint, since=admin.parse_since(args.since) if args.since else None)
            idents = await admin.replay_targets(store, args.status, flt)
        else:
            idents = list(args.ids)
        replayed = 0
        # the bar only draws on a terminal; scripts get one line per id instead
        quiet = len(idents) > 20 and sys.stderr.isatty()
        for ident in tqdm(idents, desc="replay", unit="event", disable=not quiet):
            result = await admin.replay_one(store, ident)
            replayed += result.replayed
            if not quiet:
                print(f"{result.ident}: {result.detail}")
        return replayed, len(idents)

    try:
        counts = _with_store(args.config, run)
    except admin.AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if counts is None:
        return 2
    print(f"replayed {counts[0]} of {counts[1]}; a running bridge picks them up within its poll interval")
    return 0


def signup_command(args: argparse.Namespace) -> int:
    """Store a sign-up exactly as `POST /signups` would; a running bridge (or the next start) sends it."""
    import time

    from pydantic import ValidationError

    from bridge.signups import SIGNUP_ENDPOINT, SignupRequest, first_error
    from providers.base import body_hash

    fields: dict[str, Any] = {"key": args.key, "email": args.email, "name": args.name, "surname": args.surname}
    if args.tags:
        fields["tags"] = args.tags
    if args.partner_key or args.partner_email or args.partner_id:
        fields["partner"] = {"key": args.partner_key, "email": args.partner_email, "id": args.partner_id}
    if args.referral_url:
        fields["options"] = {"referral_url": args.referral_url}
    try:
        signup = SignupRequest.model_validate(fields)
    except ValidationError as exc:
        where, message = first_error(exc)
        print(f"error: {where}: {message}", file=sys.stderr)
        return 2
    body = json.dumps(signup.partnero_body(), separators=(",", ":")).encode()

    async def store_it(store: Store) -> bool:
        _, new = await store.run(
            lambda tx: tx.insert_call(SIGNUP_ENDPOINT, body_hash(body), time.time(), "CLI", "/signups", "", {}, body)
        )
        return new

    new = _with_store(args.config, store_it)
    if new is None:
        return 2
    print(f"sign-up for {signup.key} {'queued' if new else 'was already queued'}")
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no events"
    cells = [[_cell(row.get(c)) for c in _COLUMNS] for row in rows]
    widths = [max(len(c.upper()), *(len(r[i]) for r in cells)) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def attribution_text(attribution: dict[str, Any]) -> str:
    """`code: partner ptr_host (code PODCAST20)`: which rule attributed a sale, for the operator."""
    text = str(attribution.get("rule"))
    if attribution.get("partner"):
        text += f": partner {attribution['partner']}"
    if attribution.get("code"):
        text += f" (code {attribution['code']})"
    return text


def _format_detail(detail: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in detail.items() if k not in ("normalized", "operations", "attribution")]
    if detail.get("attribution"):
        lines.append(f"attributed: {attribution_text(detail['attribution'])}")
    if "normalized" in detail:
        lines.append("normalized: " + json.dumps(detail["normalized"], sort_keys=True))
    for op in detail.get("operations", []):
        lines.append(f"operation {op['id']}: {op['action']} {op['partnero_key']} — {op['status']} ({op['reason']})")
        for attempt in op["attempts"]:
            code = attempt["http_status"] if attempt["http_status"] is not None else "-"
            lines.append(f"  {attempt['time']}  {attempt['outcome']:<9} {code:<4} {attempt['detail']}")
    return "\n".join(lines)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"configuration error in {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def check_config(path: str) -> int:
    config = _load(path)
    if config is None:
        return 2
    print(f"store: {redact_url(config.store)}")
    admin = config.admin
    where = f" on {admin.host or config.server.host}:{admin.port}" if admin.port else ""
    print(f"console: /admin and /metrics{where}" if admin.enabled else "console: off (admin.token is empty)")
    print(f"alerts: {'on' if config.alerts.url else 'off'}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    if not config.endpoints:
        print("no endpoints configured")
    for name, endpoint in config.endpoints.items():
        secrets = ", ".join(redact(s) for s in endpoint.adapter.secrets) or "(none)"
        mode = "dry-run" if endpoint.partnero.effective_dry_run else "live"
        print(
            f"{name}: POST /webhooks/{name}  provider={endpoint.provider}  secrets={secrets}  "
            f"customer_key={','.join(endpoint.settings.customer_key)}  test_mode={endpoint.settings.test_mode}  "
            f"partnero={redact_url(endpoint.partnero.base_url)} ({mode})"
        )
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from bridge import simulation

    if args.list:
        from providers import registry

        for provider, events in simulation.provider_samples().items():
            print(f"{provider}: {', '.join(events) if events else '— ' + registry()[provider].sample_note}")
        return 0
    if not args.endpoint:
        print("usage: partnero-bridge simulate ENDPOINT [EVENT] --config FILE [--url URL]", file=sys.stderr)
        return 2
    config = _load(args.config)
    if config is None:
        return 2
    import time

    import httpx

    try:
        base_url = args.url or simulation.default_url(config)
        request = simulation.build(config, args.endpoint, args.event, time.time())
        response = simulation.send(base_url, request)
    except simulation.SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: could not reach the bridge ({type(exc).__name__}): is it running?", file=sys.stderr)
        return 1
    print(f"POST {base_url.rstrip('/')}{request.path} -> {response.status_code} {response.text.strip()[:200]}")
    return 0 if response.is_success else 1


def serve_command(path: str, host: str | None, port: int | None, log_level: str, with_worker: bool = True) -> int:
    from bridge.logs import setup_logging

    setup_logging(log_level)
    config = _load(path)
    if config is None:
        return 2
    from bridge.store.base import StoreInUse

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(config, host or config.server.host, port if port is not None else config.server.port, with_worker)
            )
    except StoreInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def worker_command(path: str, log_level: str) -> int:
    from bridge.logs import setup_logging

    setup_logging(log_level)
    config = _load(path)
    if config is None:
        return 2
    if config.store.startswith("sqlite"):
        print(
            "error: a separate worker needs a PostgreSQL store; with SQLite, `serve` runs the worker", file=sys.stderr
        )
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(config))
    return 0


async def run_worker(config: Config) -> None:
    import signal

    from bridge.delivery import Worker
    from bridge.store import open_store

    store = open_store(config.store)
    await store.open()
    worker = Worker(config, store)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    watchers = _watch(config, store, worker, stopping)
    log.info("worker %s started", worker.owner)
    try:
        await worker.run(stopping)
    finally:
        await worker.aclose()
        await watchers.aclose()
        await store.close()


def migrate_command(path: str) -> int:
    config = _load(path)
    if config is None:
        return 2
    from bridge.store import open_store

    async def run() -> list[int]:
        store = open_store(config.store)
        applied = await store.migrate_async()
        await store.close()
        return applied

    applied = asyncio.run(run())
    print(f"applied migrations {applied}" if applied else "the store is at the current schema version")
    return 0


async def serve(config: Config, host: str, port: int, with_worker: bool = True) -> None:
    import uvicorn

    from bridge.app import create_app
    from bridge.delivery import Worker
    from bridge.limits import http_limits, limit_server_logs, uvicorn_settings
    from bridge.store import open_store

    for warning in config.warnings:
        log.warning("%s", warning)
    for endpoint in config.endpoints.values():
        if endpoint.partnero.effective_dry_run:
            reason = "dry_run: true" if endpoint.partnero.dry_run else "no partnero.api_key"
            log.warning("DRY RUN for endpoint %s (%s): events are recorded, nothing is sent", endpoint.name, reason)
    from bridge.console import console_app, own_listener

    store = open_store(config.store)
    await store.hold_exclusive()
    await store.open()
    worker = Worker(config, store) if with_worker else None
    app = create_app(config, store, worker)
    limit_server_logs()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **uvicorn_settings(http_limits(config.server)),
        )
    )
    console_server = None
    if own_listener(config):
        console_server = uvicorn.Server(
            uvicorn.Config(
                console_app(config, store, worker),
                host=config.admin.host or host,
                port=config.admin.port or 0,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
    _print_urls(config, host, port)
    stopping = asyncio.Event()
    watchers = _watch(config, store, worker, stopping)
    worker_task = asyncio.create_task(worker.run(stopping)) if worker else None
    console_task = asyncio.create_task(console_server.serve()) if console_server else None
    try:
        await server.serve()
    finally:
        stopping.set()
        if console_server is not None and console_task is not None:
            console_server.should_exit = True
            await console_task
        await watchers.aclose()
        if worker is not None and worker_task is not None:
            worker.wake()
            await worker_task
            await worker.aclose()
        await store.close()


def _print_urls(config: Config, host: str, port: int) -> None:
    """What an operator needs at start: where each provider posts, and where the console is."""
    from bridge.console import console_url

    for name, endpoint in config.endpoints.items():
        print(f"endpoint {name} ({endpoint.provider}): POST /webhooks/{name}", flush=True)
    url = console_url(config, host, port)
    print(f"console: {url}" if url else "console: off (set admin.token to enable /admin and /metrics)", flush=True)


class _Watchers:
    """Metrics and alert hooks on the worker, and the long-pause watch; closed at shutdown."""

    def __init__(self, alerter: Any, task: asyncio.Task[None] | None) -> None:
        self.alerter = alerter
        self.task = task

    async def aclose(self) -> None:
        if self.task is not None:
            await self.task
        if self.alerter is not None:
            await self.alerter.aclose()


def _watch(config: Config, store: Store, worker: Any, stopping: asyncio.Event) -> _Watchers:
    from bridge.alerts import Alerter
    from bridge.metrics import record_attempt

    if worker is not None:
        worker.on_finished.append(record_attempt)
    alerter = Alerter.from_config(config)
    if alerter is None:
        return _Watchers(None, None)
    if worker is not None:
        alerter.watch(worker)
    return _Watchers(alerter, asyncio.create_task(alerter.watch_pauses(config, store, worker, stopping)))

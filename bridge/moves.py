"""The commands for moves — of the bridge (copy-store) and of the merchant between providers (backfill,
reconcile, import-affiliates) — registered on the `partnero-bridge` parser by `cli.py`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from bridge.config import Config, ConfigError, Endpoint, load_config

T = TypeVar("T")

COMMANDS = ("copy-store", "backfill", "reconcile", "import-affiliates")


def add_commands(commands: Any) -> None:
    """Add this module's subcommands to the `partnero-bridge` subparsers."""
    default_config = os.environ.get("PARTNERO_BRIDGE_CONFIG", "config.yaml")
    copy = commands.add_parser(
        "copy-store", help="copy the whole store to another engine (SQLite ↔ PostgreSQL), counts verified"
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to copy")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="the store to fill")
    copy.add_argument("--replace", action="store_true", help="empty a non-empty target first")

    backfill = commands.add_parser(
        "backfill", help="read past payments from the provider's API and record what the ledger lacks"
    )
    reconcile = commands.add_parser(
        "reconcile", help="compare the provider's payments with the ledger; --apply queues what webhooks missed"
    )
    for command in (backfill, reconcile):
        command.add_argument("endpoint", metavar="ENDPOINT", help="a configured endpoint with an api_key")
        command.add_argument("--config", default=default_config, metavar="FILE")
        command.add_argument("--since", required=True, metavar="WHEN", help="2026-01-01, 2026-01-01T12:00 or 30d")
        command.add_argument("--until", metavar="WHEN", help="end of the window (default: now)")
        command.add_argument("--max-requests", type=int, metavar="N", help="stop after N API requests")
    backfill.add_argument("--dry-run", action="store_true", help="say what would be recorded, record nothing")
    reconcile.add_argument("--apply", action="store_true", help="queue what the webhooks missed")

    affiliates = commands.add_parser(
        "import-affiliates", help="create a provider's own affiliates (Lemon Squeezy) as Partnero partners"
    )
    affiliates.add_argument("provider", metavar="PROVIDER", help="where the affiliates are (lemonsqueezy)")
    affiliates.add_argument("--endpoint", required=True, help="an endpoint of that provider, with its api_key")
    affiliates.add_argument("--config", default=default_config, metavar="FILE")
    affiliates.add_argument("--dry-run", action="store_true", help="say what would be created, create nothing")


def run(args: argparse.Namespace) -> int:
    if args.command == "copy-store":
        from bridge.copystore import copy_store_command

        return copy_store_command(args.source, args.target, args.replace)
    if args.command in ("backfill", "reconcile"):
        dry_run = args.dry_run if args.command == "backfill" else not args.apply
        return history_command(args, dry_run, list_missing=args.command == "reconcile")
    if args.command == "import-affiliates":
        return import_affiliates_command(args)
    raise ValueError(f"not a move command: {args.command}")


def run_reporting(work: Coroutine[Any, Any, T], errors: tuple[type[Exception], ...], *bars: Any) -> T | None:
    """Run a command's work; an expected error becomes one `error:` line (and None); progress bars close."""
    try:
        return asyncio.run(work)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    finally:
        for bar in bars:
            bar.close()


def _config_and_endpoint(path: str, name: str) -> tuple[Config, Endpoint] | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"configuration error in {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    endpoint = config.endpoints.get(name)
    if endpoint is None:
        known = ", ".join(sorted(config.endpoints)) or "none"
        print(f"error: no endpoint {name!r} in {path} (configured: {known})", file=sys.stderr)
        return None
    return config, endpoint


def _moment(text: str) -> datetime:
    from bridge.admin import parse_since

    return datetime.fromtimestamp(parse_since(text), tz=UTC)


def history_command(args: argparse.Namespace, dry_run: bool, list_missing: bool) -> int:
    """`backfill` and `reconcile`: one run over the window, a progress bar on a terminal, a summary."""
    from tqdm import tqdm

    from bridge import backfill
    from bridge.admin import AdminError
    from bridge.store import open_store

    found = _config_and_endpoint(args.config, args.endpoint)
    if found is None:
        return 2
    config, endpoint = found
    try:
        since = _moment(args.since)
        until = _moment(args.until) if args.until else None
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if until is not None and until <= since:
        print("error: --until must be after --since", file=sys.stderr)
        return 2
    on_terminal = sys.stderr.isatty()
    pages = tqdm(desc=f"{args.command}: reading the API", unit=" objects", disable=not on_terminal)
    payments = tqdm(desc=f"{args.command}: recording", unit=" payments", disable=not on_terminal)

    async def work() -> backfill.Summary:
        store = open_store(config.store)
        await store.open()
        try:
            return await backfill.run(
                config,
                store,
                endpoint,
                since,
                until,
                dry_run=dry_run,
                max_requests=args.max_requests,
                on_page=pages.update,
                on_record=lambda: payments.update(1),
            )
        finally:
            await store.close()
            await endpoint.adapter.aclose()

    summary = run_reporting(work(), (backfill.HistoryUnavailable,), pages, payments)
    if summary is None:
        return 2
    if list_missing:
        for missed in summary.new:
            print(f"missed by the webhooks: {missed}")
    for line in summary.lines():
        print(line)
    if dry_run:
        what = "--apply to queue them" if list_missing else "run without --dry-run to record them"
        print(f"nothing recorded ({what})")
    elif summary.new:
        print(f"queued {len(summary.new)}; a running bridge delivers them within its poll interval")
    return 1 if summary.stopped else 0


def import_affiliates_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bridge.affiliates import HistoryUnavailable, import_affiliates

    found = _config_and_endpoint(args.config, args.endpoint)
    if found is None:
        return 2
    config, endpoint = found
    if endpoint.provider != args.provider:
        print(
            f"error: endpoint {endpoint.name} is a {endpoint.provider} endpoint, not {args.provider}", file=sys.stderr
        )
        return 2
    bar = tqdm(desc="import-affiliates", unit=" affiliates", disable=not sys.stderr.isatty())

    async def work() -> Any:
        try:
            return await import_affiliates(config, endpoint, args.dry_run, lambda: bar.update(1))
        finally:
            await endpoint.adapter.aclose()

    summary = run_reporting(work(), (HistoryUnavailable,), bar)
    if summary is None:
        return 2
    for line in summary.lines:
        print(line)
    print(("dry run: " if args.dry_run else "") + summary.totals())
    if summary.stopped:
        print(f"error: {summary.stopped}", file=sys.stderr)
        return 1
    return 1 if summary.failed else 0

"""The commands for moves — of the bridge (copy-store) and of the merchant between providers (backfill,
reconcile, import-affiliates) — registered on the `partnero-bridge` parser by `cli.py`."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("copy-store",)


def add_commands(commands: Any) -> None:
    """Add this module's subcommands to the `partnero-bridge` subparsers."""
    copy = commands.add_parser(
        "copy-store", help="copy the whole store to another engine (SQLite ↔ PostgreSQL), counts verified"
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to copy")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="the store to fill")
    copy.add_argument("--replace", action="store_true", help="empty a non-empty target first")


def run(args: argparse.Namespace) -> int:
    if args.command == "copy-store":
        from bridge.copystore import copy_store_command

        return copy_store_command(args.source, args.target, args.replace)
    raise ValueError(f"not a move command: {args.command}")

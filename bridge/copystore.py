"""`partnero-bridge copy-store`: move the whole store to another engine, the way to switch engines.

A merchant who outgrows SQLite takes the ledger along (it is what keeps a re-announced payment from
being paid twice): stop the bridge, copy, point `store:` at the new URL, start it again.
"""

from __future__ import annotations

import sys

from bridge.store import open_store
from bridge.store.base import StoreInUse
from bridge.store.copy import CopyError, TableCount, copy_store


def engine_of(url: str) -> str:
    """What the output may say about a store URL: its engine, never a password or a path."""
    return "SQLite" if url.startswith("sqlite") else "PostgreSQL"


def copy_store_command(source_url: str, target_url: str, replace: bool) -> int:
    from tqdm import tqdm

    if source_url == target_url:
        print("error: --from and --to name the same store", file=sys.stderr)
        return 2
    for url, flag in ((source_url, "--from"), (target_url, "--to")):
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            print(f"error: {flag} must start with sqlite:// or postgresql://", file=sys.stderr)
            return 2
    bar = tqdm(desc="copy-store", unit="row", disable=not sys.stderr.isatty())

    def advance(table: str, rows: int) -> None:
        bar.set_postfix_str(table)
        bar.update(rows)

    async def run() -> list[TableCount]:
        source, target = open_store(source_url), open_store(target_url)
        await source.open()
        try:
            # a SQLite store a running bridge owns is refused: a webhook stored during the copy would be lost
            await source.hold_exclusive()
            await target.open()
            try:
                await target.hold_exclusive()
                return await copy_store(source, target, replace, advance)
            finally:
                await target.close()
        finally:
            await source.close()

    from bridge.moves import run_reporting

    result = run_reporting(run(), (CopyError, StoreInUse), bar)
    if result is None:
        return 2
    width = max(len(count.table) for count in result)
    for count in result:
        verdict = "ok" if count.matches else "MISMATCH"
        print(f"{count.table.ljust(width)}  {count.source:>9} → {count.target:<9} {verdict}")
    if not all(count.matches for count in result):
        print("error: the counts differ; do not switch to the target store", file=sys.stderr)
        return 1
    print(
        f"copied {engine_of(source_url)} → {engine_of(target_url)}; point `store:` at the target and start the bridge"
    )
    return 0

"""Stores: one contract (`base`), engines chosen by the `store:` URL."""

from __future__ import annotations

from bridge.store.base import Store


def open_store(url: str) -> Store:
    if url.startswith("sqlite://"):
        from bridge.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from bridge.store.postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ValueError(f"no store engine for {url.split(':', 1)[0]}://")

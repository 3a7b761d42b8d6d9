"""Versioned, forward-only schema migrations for both engines (`partnero-bridge migrate`, also run at start).

Each engine lists its migrations in order; version N is the N-th script. The applied versions are
recorded in `schema_migrations`, so a store created by an older bridge is brought forward, never back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

# migration 4 of both engines: the customer memory (`known:email`, `known:customer_id`) and the warning an
# operator sees on an event when one email met two keys (SQLite reads DOUBLE PRECISION as REAL)
CUSTOMER_MEMORY = """
CREATE TABLE customer_memory (
    scope TEXT NOT NULL,
    fact TEXT NOT NULL,
    value TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    first_used_at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, fact, value)
);
ALTER TABLE events ADD COLUMN warning TEXT;
"""


# migration 5 of both engines: indexes for the operator's searches (`events`, the console) on a store of
# millions of events. The expressions are indexed as written here and the queries use these same strings
# (bridge/store/sql.py's dialects), so the engine matches them to the index.
SQLITE_EVENT_EMAIL = "lower(COALESCE(json_extract(data, '$.customer.email'), json_extract(data, '$.email')))"
POSTGRES_EVENT_EMAIL = "lower(COALESCE((data::json #>> '{customer,email}'), (data::json #>> '{email}')))"
# the part of a transaction key after its last `:` (the provider's payment id)
SQLITE_KEY_TAIL = "substr(transaction_key, length(rtrim(transaction_key, replace(transaction_key, ':', ''))) + 1)"
POSTGRES_KEY_TAIL = "substring(transaction_key from '[^:]*$')"
SEARCH_INDEXES = """
CREATE INDEX IF NOT EXISTS events_transaction_key ON events (transaction_key);
CREATE INDEX IF NOT EXISTS events_customer_key ON events (customer_key);
CREATE INDEX IF NOT EXISTS events_status ON events (status);
CREATE INDEX IF NOT EXISTS events_call ON events (call_id);
CREATE INDEX IF NOT EXISTS calls_delivery_id ON calls (delivery_id);
CREATE INDEX IF NOT EXISTS operations_status_event ON operations (status, event_id);
CREATE INDEX IF NOT EXISTS events_email ON events (({email}));
CREATE INDEX IF NOT EXISTS events_key_tail ON events (({tail}))
"""


class MigrationError(Exception):
    """The store is at a version this bridge does not know (a newer bridge wrote it)."""


def current_version(conn: Any) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def pending(conn: Any, migrations: Sequence[str]) -> list[tuple[int, str]]:
    version = current_version(conn)
    if version > len(migrations):
        raise MigrationError(
            f"the store is at schema version {version}, this bridge knows {len(migrations)}: upgrade the bridge"
        )
    return [(number, script) for number, script in enumerate(migrations, start=1) if number > version]


def record(conn: Any, version: int, placeholder: str = "?") -> None:
    conn.execute(
        f"INSERT INTO schema_migrations (version, applied_at) VALUES ({placeholder}, {placeholder})",
        (version, time.time()),
    )

"""Versioned, forward-only schema migrations for both engines (`partnero-bridge migrate`, also run at start).

Each engine lists its migrations in order; version N is the N-th script. The applied versions are
recorded in `schema_migrations`, so a store created by an older bridge is brought forward, never back.
"""

from __future__ import annotations

import re
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

# migration 6 of both engines: the status the operator sees stored on the event (`shown_status`), so the
# overview and a status filter read an indexed column instead of computing every event's status from its
# operations (at a million events: the overview 0.4 s, a status few events have 1.6 s, bench/bigstore.py).
# An event's own status shows unless it is `queued`; a queued event shows its operations' — dead wins, then
# pending, then delivered, else skipped (also while it has none). `{event_id}` names the event's id.
OPERATIONS_STATUS = """(SELECT CASE WHEN SUM(CASE WHEN o.status = 'dead' THEN 1 ELSE 0 END) > 0 THEN 'dead'
            WHEN SUM(CASE WHEN o.status = 'pending' THEN 1 ELSE 0 END) > 0 THEN 'pending'
            WHEN SUM(CASE WHEN o.status = 'delivered' THEN 1 ELSE 0 END) > 0 THEN 'delivered'
            ELSE 'skipped' END
        FROM operations o WHERE o.event_id = {event_id})"""
# The column, filled for the events already stored; its index answers a status filter newest first and
# replaces migration 5's index on the event's own status, which no query reads any more. With it the
# event's `amount` and `currency` (as its data says, as text): the overview books the delivered sales of a
# fortnight, and reading them from the JSON cost PostgreSQL ~0.3 s at a million events.
SHOWN_STATUS = """
ALTER TABLE events ADD COLUMN shown_status TEXT;
ALTER TABLE events ADD COLUMN amount TEXT;
ALTER TABLE events ADD COLUMN currency TEXT;
UPDATE events SET shown_status = CASE WHEN status <> 'queued' THEN status ELSE {computed} END,
    amount = {amount}, currency = {currency};
CREATE INDEX events_shown_status ON events (shown_status, id);
DROP INDEX events_status;
"""
# Kept in step by triggers, not by the code that changes an operation: every statement that inserts an
# operation or changes its status — today's and any later batched one — moves its event along inside
# the same transaction, so the stored status cannot drift from the computed one. (Operations are never
# deleted, nor moved to another event; an event's own status never changes after its insert, which
# writes `shown_status` itself.)
_FOLLOW = f"UPDATE events SET shown_status = {OPERATIONS_STATUS.format(event_id='NEW.event_id')}"
SQLITE_SHOWN_STATUS = (
    SHOWN_STATUS.format(
        computed=OPERATIONS_STATUS.format(event_id="events.id"),
        amount="json_extract(data, '$.amount')",
        currency="json_extract(data, '$.currency')",
    )
    + f"""
CREATE TRIGGER events_follow_new_operation AFTER INSERT ON operations WHEN NEW.event_id IS NOT NULL
BEGIN
    {_FOLLOW} WHERE id = NEW.event_id AND status = 'queued';
END;
CREATE TRIGGER events_follow_operation_status AFTER UPDATE OF status ON operations
WHEN NEW.event_id IS NOT NULL AND OLD.status IS NOT NEW.status
BEGIN
    {_FOLLOW} WHERE id = NEW.event_id AND status = 'queued';
END
"""
)
# PostgreSQL: two processes may finish two operations of one event at once. Each computes the status in a
# statement of its own after taking the event's row lock, so the second one waits for the first to commit
# and then sees its operation (computed under the trigger's first snapshot, it would not).
POSTGRES_SHOWN_STATUS = (
    SHOWN_STATUS.format(
        computed=OPERATIONS_STATUS.format(event_id="events.id"),
        amount="(data::json #>> '{amount}')",
        currency="(data::json #>> '{currency}')",
    )
    + f"""
CREATE FUNCTION events_follow_operation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM events WHERE id = NEW.event_id FOR NO KEY UPDATE;
    {_FOLLOW} WHERE id = NEW.event_id AND status = 'queued';
    RETURN NULL;
END
$$;
CREATE TRIGGER events_follow_new_operation AFTER INSERT ON operations
FOR EACH ROW WHEN (NEW.event_id IS NOT NULL) EXECUTE FUNCTION events_follow_operation();
CREATE TRIGGER events_follow_operation_status AFTER UPDATE OF status ON operations
FOR EACH ROW WHEN (NEW.event_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION events_follow_operation()
"""
)

# a `;` inside a trigger's BEGIN … END (where CASE … END nests) or a $$-quoted function body ends no statement
# migration 7, both engines: what a metrics scrape counts (every event by kind and shown status) read from
# an index alone: 0.9 s -> 0.18 s at 1,000,000 events on SQLite, where it read every event's row
EVENT_STATUS_COUNTS = """
CREATE INDEX events_kind_status ON events (kind, shown_status)
"""

_STATEMENT_TOKENS = re.compile(r"\$\$|;|\b(?:BEGIN|CASE|END)\b", re.IGNORECASE)


def statements(script: str) -> list[str]:
    """The statements of a migration script, each run on its own; for scripts without triggers or function
    bodies (migrations 1 to 5) exactly the non-empty parts between the `;`."""
    found: list[str] = []
    start, depth, quoted = 0, 0, False
    for token in _STATEMENT_TOKENS.finditer(script):
        word = token.group().upper()
        if word == "$$":
            quoted = not quoted
        elif quoted:
            continue
        elif word in ("BEGIN", "CASE"):
            depth += 1
        elif word == "END":
            depth -= 1
        elif depth == 0:
            found.append(script[start : token.start()])
            start = token.end()
    found.append(script[start:])
    return [statement for statement in found if statement.strip()]


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

"""The embedded SQLite engine: one writer thread, WAL, `synchronous=FULL`, group commit.

Every `run` is queued to the writer thread, which takes everything queued so far into one
`BEGIN IMMEDIATE … COMMIT` (each piece of work in its own savepoint, so one failure does not undo its
neighbours) and resolves all of them after the single fsync'd commit. Durability then costs one fsync
per batch, not per request. Exactly one process may write a SQLite store: several processes need the
PostgreSQL engine.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bridge.store.base import StoreInUse, Transaction
from bridge.store.migrations import (
    CUSTOMER_MEMORY,
    EVENT_STATUS_COUNTS,
    SEARCH_INDEXES,
    SQLITE_EVENT_EMAIL,
    SQLITE_KEY_TAIL,
    SQLITE_SHOWN_STATUS,
    pending,
    record,
    statements,
)
from bridge.store.sql import SQLITE, SQLTransaction
from bridge.store.waiters import Waiter, resolve

T = TypeVar("T")

V1_INITIAL = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query_string TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB,
    status TEXT NOT NULL,
    error TEXT,
    processed_at REAL,
    not_before REAL,
    read_attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (endpoint, delivery_id)
);
CREATE INDEX IF NOT EXISTS calls_received ON calls (status, id);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    op_key TEXT NOT NULL,
    action TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    target_key TEXT NOT NULL,
    event_id INTEGER,
    customer_key TEXT,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (scope, op_key)
);
CREATE INDEX IF NOT EXISTS operations_due ON operations (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS operations_tx ON operations (scope, transaction_key, id);
CREATE INDEX IF NOT EXISTS operations_event ON operations (event_id);
CREATE TABLE IF NOT EXISTS customers (
    scope TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    state TEXT NOT NULL,
    creator_op_key TEXT,
    email TEXT,
    partner_key TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, customer_key)
);
CREATE INDEX IF NOT EXISTS customers_email ON customers (scope, email COLLATE NOCASE, updated_at);
CREATE TABLE IF NOT EXISTS payments (
    scope TEXT NOT NULL,
    transaction_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    current_key TEXT,
    revision INTEGER NOT NULL,
    sale_request TEXT,
    refunded TEXT NOT NULL,
    refund_ids TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, transaction_key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls (id),
    endpoint TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    event_type TEXT NOT NULL,
    transaction_key TEXT,
    data TEXT NOT NULL,
    customer_key TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    operation_id INTEGER REFERENCES operations (id),
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations (id),
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_op ON attempts (operation_id);
"""

V2_CALL_LEASES = """
ALTER TABLE calls ADD COLUMN lease_owner TEXT;
ALTER TABLE calls ADD COLUMN lease_until REAL;
DROP INDEX IF EXISTS customers_email;
CREATE INDEX customers_email ON customers (scope, lower(email));
"""

V3_CONSOLE = """
CREATE TABLE program_pauses (
    scope TEXT PRIMARY KEY,
    paused_at REAL NOT NULL
);
ALTER TABLE attempts ADD COLUMN latency_seconds REAL;
"""

# migration 4 (the customer memory) seeded with the emails of earlier sales and
# sign-ups (earliest use per email wins: SQLite takes the bare columns from the MIN row); events gain
# the warning an operator sees when one email met two keys
V4_CUSTOMER_MEMORY = (
    CUSTOMER_MEMORY
    + """
INSERT INTO customer_memory (scope, fact, value, customer_key, first_used_at, source, updated_at)
SELECT scope, 'email', value, customer_key, MIN(used_at), source, MIN(used_at) FROM (
    SELECT o.scope AS scope, lower(trim(json_extract(e.data, '$.customer.email'))) AS value,
           e.customer_key AS customer_key, e.created_at AS used_at, e.endpoint AS source
    FROM events e JOIN operations o ON o.event_id = e.id AND o.action = 'create'
    WHERE e.kind = 'sale' AND e.customer_key IS NOT NULL
    UNION ALL
    SELECT scope, lower(trim(email)), customer_key, updated_at, '_signups' FROM customers WHERE email IS NOT NULL
) AS seen WHERE value IS NOT NULL AND value <> '' GROUP BY scope, value
"""
)

V5_SEARCH_INDEXES = SEARCH_INDEXES.format(email=SQLITE_EVENT_EMAIL, tail=SQLITE_KEY_TAIL)

# forward only: a released migration is never edited, a change is a new entry
MIGRATIONS: tuple[str, ...] = (
    V1_INITIAL,
    V2_CALL_LEASES,
    V3_CONSOLE,
    V4_CUSTOMER_MEMORY,
    V5_SEARCH_INDEXES,
    SQLITE_SHOWN_STATUS,
    EVENT_STATUS_COUNTS,
)


def path_from_url(url: str) -> str:
    """`sqlite:///./data/bridge.db` → `./data/bridge.db`; `sqlite:////abs/path.db` → `/abs/path.db`."""
    rest = url.removeprefix("sqlite://")
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


def create_private(path: Path) -> None:
    """Create the store file 0600 (and the directories the bridge makes for it 0700) if it is new.

    It holds raw bodies with buyers' personal data; SQLite gives its -wal and -shm files the
    database file's mode. Files and directories that already exist are left as the operator set them.
    """
    create_private_directories(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    path.chmod(0o600)


def create_private_directories(directory: Path) -> None:
    """Create `directory` and any missing parents 0700; those that exist are left alone."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        created.chmod(0o700)


class SQLiteStore:
    # exactly one process writes a SQLite store, so a new process may void every lease it finds
    single_process = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[tuple[Callable[[Transaction], Any], Waiter] | object | None] = (
            queue.SimpleQueue()
        )
        # work that must not wait behind the queue (`run(urgent=True)`: a webhook's insert)
        self._urgent: collections.deque[tuple[Callable[[Transaction], Any], Waiter]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._owner_lock: int | None = None
        # reads beside the writer (`read`): a thread each, with a connection of its own
        self._readers: ThreadPoolExecutor | None = None  # made by `open`: threads are new each time
        self._reader_local = threading.local()
        self._reader_lock = threading.Lock()
        self._reader_conns: list[sqlite3.Connection] = []

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(path_from_url(url))

    async def open(self) -> None:
        if self.path != ":memory:":
            create_private(Path(self.path))
        self._readers = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="sqlite-reader")
        self._thread = threading.Thread(target=self._writer, name="sqlite-writer", daemon=True)
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self._opened.wait)
        if self._open_error is not None:
            raise self._open_error

    async def hold_exclusive(self) -> None:
        """A lock held for the process's life, not a lease: the kernel drops it when the process dies,
        however it dies, so a crashed owner never blocks its successor and two owners never overlap."""
        if self.path == ":memory:" or self._owner_lock is not None:
            return
        create_private_directories(Path(self.path).parent)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(
                f"the SQLite store {self.path} is in use by another partnero-bridge process; a SQLite store"
                " belongs to one process (stop the other one first). To run several processes, use a"
                " PostgreSQL store (docs/operations.md)."
            ) from None
        self._owner_lock = fd

    async def close(self) -> None:
        if self._owner_lock is not None:
            os.close(self._owner_lock)  # closing the descriptor releases the lock
            self._owner_lock = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    async def ping(self) -> bool:
        try:
            return await self.run(lambda tx: tx.ping())
        except Exception:
            return False

    async def run(self, work: Callable[[Transaction], T], *, urgent: bool = False) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if urgent:
            self._urgent.append((work, (loop, future)))
            self._queue.put(_URGENT)  # wakes the writer if it waits
        else:
            self._queue.put((work, (loop, future)))
        return await future

    async def read(self, work: Callable[[Transaction], T]) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("store is not open")
        if self.path == ":memory:":
            return await self.run(work)  # another connection would open another, empty, database
        assert self._readers is not None  # made by `open`, before the writer started
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read_sync, work)

    def _read_sync(self, work: Callable[[Transaction], T]) -> T:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")  # a write here would bypass the writer's ordering
            conn.execute("PRAGMA busy_timeout=5000")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for the whole read
        try:
            return work(SQLTransaction(conn, SQLITE))
        finally:
            conn.execute("COMMIT")

    async def run_each(self, works: Sequence[Callable[[Transaction], T]]) -> list[T | Exception]:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        # queued back to back, so the writer takes them in order into as few commits as it can
        futures: list[asyncio.Future[T]] = []
        for work in works:
            futures.append(loop.create_future())
            self._queue.put((work, (loop, futures[-1])))
        results: list[T | Exception] = []
        for future in futures:
            try:
                value: T = await future
            except Exception as exc:
                results.append(exc)
            else:
                results.append(value)
        return results

    def run_sync(self, work: Callable[[Transaction], T]) -> T:
        """For CLI commands outside an event loop."""
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future.result()

    async def migrate_async(self) -> list[int]:
        """`partnero-bridge migrate`: apply what is pending without starting the writer."""

        def apply() -> list[int]:
            if self.path != ":memory:":
                create_private(Path(self.path))
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                return self.migrate(conn)
            finally:
                conn.close()

        return await asyncio.get_running_loop().run_in_executor(None, apply)

    @staticmethod
    def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> list[int]:
        """Apply the pending migrations, each in its own transaction; returns the versions applied."""
        applied = []
        for version, script in pending(conn, migrations):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements(script):
                    conn.execute(statement)
                record(conn, version)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            applied.append(version)
        return applied

    def _writer(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # builds differ in their default: durability is the product, say it explicitly
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self.migrate(conn)
        except BaseException as exc:
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        tx = SQLTransaction(conn, SQLITE)
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch: collections.deque[tuple[Callable[[Transaction], Any], Waiter]] = collections.deque()
            if isinstance(first, tuple):
                batch.append(first)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, tuple):  # not the wake-up of urgent work
                    batch.append(item)
            self._run_batch(conn, tx, batch)
        conn.close()

    def _run_batch(
        self,
        conn: sqlite3.Connection,
        tx: SQLTransaction,
        batch: collections.deque[tuple[Callable[[Transaction], Any], Waiter]],
    ) -> None:
        """Run `batch` under as few commits as urgent work allows. Each commit takes the urgent work waiting
        (a webhook's insert) first, then the batch's pieces in order — all of them, unless urgent work is
        waiting again after `URGENT_AFTER_SECONDS`: then it commits after the piece it is on and the urgent
        work goes next, so an insert never waits behind a long round of recording. Every commit takes at
        least one piece of the batch, so a stream of webhooks never stops the rest."""
        while batch or self._urgent:
            done: list[Waiter] = []
            results: list[tuple[Waiter, Any, BaseException | None]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                while self._urgent:
                    self._run_piece(conn, tx, self._urgent.popleft(), done, results)
                started = time.monotonic()
                while batch:
                    self._run_piece(conn, tx, batch.popleft(), done, results)
                    if self._urgent and time.monotonic() - started > URGENT_AFTER_SECONDS:
                        break
                conn.execute("COMMIT")
            except BaseException as exc:
                # the commit itself failed: nothing in this batch is durable, so nobody may be told it is
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                resolve([(waiter, None, exc) for waiter in done])
                continue
            resolve(results)

    @staticmethod
    def _run_piece(
        conn: sqlite3.Connection,
        tx: SQLTransaction,
        item: tuple[Callable[[Transaction], Any], Waiter],
        done: list[Waiter],
        results: list[tuple[Waiter, Any, BaseException | None]],
    ) -> None:
        work, waiter = item
        done.append(waiter)
        conn.execute("SAVEPOINT work")
        try:
            value = work(tx)
        except BaseException as exc:
            conn.execute("ROLLBACK TO work")
            conn.execute("RELEASE work")
            results.append((waiter, None, exc))
        else:
            conn.execute("RELEASE work")
            results.append((waiter, value, None))


# connections that read beside the writer: an operator's pages and a metrics scrape
READER_THREADS = 2
# with urgent work waiting, a commit of queued work ends after the piece running past this
URGENT_AFTER_SECONDS = 0.002
_URGENT = object()  # put in the queue to wake the writer for urgent work

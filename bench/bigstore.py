"""A store of 1,000,000 events: the RSS of `serve` on it, and how fast the operator's searches answer.

    .venv/bin/python bench/bigstore.py [--events 1000000] [--keep DIR]

Fills a SQLite store with the bridge's own schema (its migrations) by direct multi-row inserts — one
call, one event, one operation and one attempt per sale, spread over a year, a few dead and pending,
bodies dropped as retention does — then starts `python -m bridge serve` on it (worker on, console on,
Partnero on a closed loopback port; the pending operations are due in a year, so nothing is sent),
and times:

- the console's pages (`/admin`, `/admin/events` with each kind of search, `/admin/dead`, one event),
  over HTTP with the console's bearer token, each the median of 3 reads;
- the `events` command's query (admin.list_rows, what `partnero-bridge events` prints) in-process, and
  the whole command (a fresh interpreter included) once;
- VmRSS and VmHWM of `serve` after all of it.

Every process is started in its own process group and killed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.store.sqlite import SQLiteStore  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
ENDPOINT = "ls"
SCOPE = "default"
CUSTOMERS = 50_000
YEAR = 365 * 86400
GOAL_MS = 200.0
GOAL_RSS_MB = 150.0


def fill(path: Path, events: int, now: float) -> dict[str, str]:
    """Write `events` sales (call, event, operation, attempt each); returns sample values to search for."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    SQLiteStore.migrate(conn)
    conn.execute("PRAGMA synchronous=OFF")  # a bench fill: a crash means filling again
    rng = random.Random(13)
    chunk = 50_000
    samples: dict[str, str] = {}
    for first in range(1, events + 1, chunk):
        calls, evs, ops, attempts = [], [], [], []
        for n in range(first, min(first + chunk, events + 1)):
            at = now - YEAR + YEAR * n / events
            key = f"ls:order:{n}"
            customer = f"user-{rng.randrange(CUSTOMERS)}"
            email = f"buyer{rng.randrange(CUSTOMERS * 4)}@example.com"
            roll = rng.random()
            status = "dead" if roll < 0.001 else "pending" if roll < 0.0015 else "delivered"
            calls.append((n, ENDPOINT, f"delivery-{n}", at, "POST", "/webhooks/ls", "", "{}", None, "processed", at))
            data = {
                "amount": "19.99",
                "currency": "USD",
                "customer": {"email": email},
                "attribution": {"rule": "cookie", "partner": "p1"},
            }
            # the status shown is the one operation's, amount and currency the data's, as migration 6 stores them
            evs.append(
                (n, n, ENDPOINT, 0, "sale", "order_created", key, json.dumps(data), customer, "queued", n, at, status,
                 data["amount"], data["currency"])
            )  # fmt: skip
            request = json.dumps({"key": key, "amount": "19.99", "amount_units": "USD", "customer": {"key": customer}})
            reason = "created" if status == "delivered" else "rejected 422: bench" if status == "dead" else None
            next_at = now + YEAR if status == "pending" else at
            ops.append(
                (n, SCOPE, f"create:{key}", "create", key, key, n, customer, ENDPOINT, request, status, reason, 1,
                 next_at, 0, at, at)
            )  # fmt: skip
            if status != "pending":
                attempts.append((n, at, "delivered" if status == "delivered" else "dead", 201, reason or "", 0.02))
            if n == events // 2:
                samples.update(
                    key=key, payment_id=f"order:{n}", email=email, customer=customer, delivery=f"delivery-{n}"
                )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO calls (id, endpoint, delivery_id, received_at, method, path, query_string, headers, body,"
            " status, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            calls,
        )
        conn.executemany(
            "INSERT INTO operations (id, scope, op_key, action, transaction_key, target_key, event_id, customer_key,"
            " endpoint, request, status, reason, attempts, next_attempt_at, maybe_sent, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ops,
        )
        conn.executemany(
            "INSERT INTO events (id, call_id, endpoint, seq, kind, event_type, transaction_key, data, customer_key,"
            " status, operation_id, created_at, shown_status, amount, currency)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            evs,
        )
        conn.executemany(
            "INSERT INTO attempts (operation_id, at, outcome, status_code, detail, latency_seconds)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            attempts,
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, float]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, (time.perf_counter() - started) * 1000


def median_ms(measure: object, times: int = 3) -> float:
    return statistics.median(measure() for _ in range(times))  # type: ignore[operator]


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def events_query_ms(config: Path, **flt: object) -> float:
    """The `events` command's query (what it prints), in-process on a store opened once."""
    from bridge import admin
    from bridge.store.base import EventFilter

    async def run() -> float:
        store = SQLiteStore(str(config.parent / "bridge.db"))
        await store.open()
        try:
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                await admin.list_rows(store, EventFilter(limit=50, **flt))  # type: ignore[arg-type]
                timings.append((time.perf_counter() - started) * 1000)
            return statistics.median(timings)
        finally:
            await store.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="fill (or reuse) the store in this folder instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bigstore-") as tmp_dir:
        work = args.keep or Path(tmp_dir)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "bridge.db"
        now = time.time()
        samples_file = work / "samples.json"
        started = time.perf_counter()
        if args.keep and db.exists() and samples_file.exists():
            samples = json.loads(samples_file.read_text())
            fill_note = "reused"
        else:
            for leftover in work.glob("bridge.db*"):
                leftover.unlink()
            samples = fill(db, args.events, now)
            samples_file.write_text(json.dumps(samples))
            fill_note = f"{time.perf_counter() - started:.0f} s"
        # a store made by an older bridge is brought forward by serve's own migrations, as in production
        port = free_port()
        config = work / "bridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "store": f"sqlite:///{db}",
                    "partnero": {"api_key": "bench", "base_url": f"http://127.0.0.1:{free_port()}"},
                    "admin": {"token": TOKEN},
                    "endpoints": {ENDPOINT: {"provider": "lemonsqueezy", "secret": "bench-secret"}},
                }
            )
        )
        log = (work / "serve.log").open("ab")
        serve = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "WARNING"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        serve_started = time.perf_counter()
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300  # the first start on an old store runs its migrations
            while True:
                if serve.poll() is not None:
                    raise RuntimeError(f"serve exited with {serve.returncode}: see {work / 'serve.log'}")
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            ready_s = time.perf_counter() - serve_started
            started_rss = rss_mb(serve.pid)
            s = samples
            pages = [
                ("overview /admin", "/admin"),
                ("events, newest page", "/admin/events"),
                ("events ?q= transaction key", f"/admin/events?q={s['key']}"),
                ("events ?q= provider payment id", f"/admin/events?q={s['payment_id']}"),
                ("events ?q= email", f"/admin/events?q={s['email']}"),
                ("events ?q= customer key", f"/admin/events?q={s['customer']}"),
                ("events ?q= delivery id", f"/admin/events?q={s['delivery']}"),
                ("events ?status=dead", "/admin/events?status=dead"),
                ("events ?status=pending", "/admin/events?status=pending"),
                ("events ?status=skipped (no event has it)", "/admin/events?status=skipped"),
                ("events ?status=delivered", "/admin/events?status=delivered"),
                ("events ?status=delivered, page 50", "/admin/events?status=delivered&page=50"),
                ("events ?since=7d", "/admin/events?since=7d"),
                ("events ?q= nothing matches", "/admin/events?q=no-such-key"),
                ("dead letters /admin/dead", "/admin/dead"),
                ("one event", f"/admin/events/{args.events // 2}"),
                ("Prometheus scrape /metrics", "/metrics"),
            ]
            rows = []
            for name, path in pages:
                status = get(base + path)[0]
                rows.append((f"console: {name}", median_ms(lambda p=path: get(base + p)[1]), status))
            for name, flt in [
                ("events (newest 50)", {}),
                ("events --status dead", {"status": "dead"}),
                ("events --status pending", {"status": "pending"}),
                ("events --since 7d", {"since": now - 7 * 86400}),
                ("events --endpoint ls --status delivered", {"endpoint": ENDPOINT, "status": "delivered"}),
            ]:
                rows.append((f"CLI query: {name}", events_query_ms(config, **flt), 200))
            cli_started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bridge", "events", "--config", str(config), "--status", "dead"],
                cwd=ROOT, capture_output=True, check=True, timeout=120,
            )  # fmt: skip
            cli_ms = (time.perf_counter() - cli_started) * 1000
            rss, peak = rss_mb(serve.pid)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
        load = os.getloadavg()
        size = sum(f.stat().st_size for f in work.glob("bridge.db*")) / 1024 / 1024
        print(
            f"store: {args.events:,} events (and as many calls, operations, attempts), {size:,.0f} MB on disk; "
            f"fill {fill_note}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        print(
            f"serve answered /healthz {ready_s:.1f} s after it was started (migrations pending on the store included)"
        )
        print()
        print("| read | median of 3 | HTTP | goal < 200 ms |")
        print("|---|---:|---:|---|")
        for name, ms, status in rows:
            print(f"| {name} | {ms:,.1f} ms | {status} | {'meets' if ms < GOAL_MS else 'misses'} |")
        print(
            f"| `partnero-bridge events --status dead`, whole command | {cli_ms:,.0f} ms | — "
            "| (interpreter start included) |"
        )
        print()
        print(
            f"serve RSS: {started_rss[0]:.0f} MB after start, {rss:.0f} MB after the reads (peak {peak:.0f} MB); "
            f"goal ≤ {GOAL_RSS_MB:.0f} MB: {'meets' if peak <= GOAL_RSS_MB else 'misses'}"
        )


if __name__ == "__main__":
    main()

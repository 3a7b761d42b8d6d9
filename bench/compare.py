"""The bridge beside a bare Starlette app and a naive in-request handler, as ratios measured in one run.

    .venv/bin/python bench/compare.py [--seconds 8] [--connections 64] [--rate 1000] [--postgres]

Starts everything itself, on loopback only: a Partnero stand-in (tests/partnero_server.py in a process
of its own, 20 ms per request), a second one at 100 ms for the naive handler, the bare app and the naive
handler from bench/compare_apps.py, and `python -m bridge serve` from this checkout (SQLite, worker on,
rate limit lifted, `max_concurrency: 64`). Each HTTP target gets the same signed Lemon Squeezy
`order_created` bodies with distinct order ids:

1. request rate: wrk (Debian's package, installed if missing), one thread, `--connections`, `--seconds`;
2. answer latency at a fixed rate: an open-loop aiohttp generator (Debian has no wrk2) that sends on a
   fixed schedule and measures each answer from the moment it was *due*, so a stalled server cannot
   hide its queue (no coordinated omission); for SQLite, once more into `serve --no-worker` on a fresh
   store (ingest alone), and the fsync latency of the store's disk is printed beside the machine, since
   every answer waits for its commit's fsync;
3. backlog drain (bridge only): from the end of the wrk run until every stored sale is at Partnero,
   transactions per second, then exactly-once checked (stand-in transactions == distinct keys ==
   stored sales);
4. RSS of the bridge process (current and peak).

Every process is started in its own process group and killed with it, on failure too. Everything is
bounded: wrk by `--seconds`, the fixed-rate run by `--rate-seconds`, the drain by `--drain-timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "lemonsqueezy" / "order_created.json"
SECRET = "bench-lemonsqueezy-secret"
CUSTOMER = "123"  # the fixture's meta.custom_data.user_id
PATH = "/webhooks/ls"
GOALS = {"ingest_ratio": 0.35, "p99_ms": 25.0, "p99_fixed_ms": 5.0, "drain_per_s": 2000.0, "vs_naive": 20.0}


# --- processes ----------------------------------------------------------------------------------------


class Processes:
    """Every child in its own session (process group); `kill_all` SIGKILLs each group, idempotently."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[bytes]:
        if "stdout" not in kw:
            kw["stdout"] = (self.logdir / f"{name}.log").open("ab")
            kw["stderr"] = subprocess.STDOUT
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True, **kw)
        self.children.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self.children:
            self.kill(proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=0.5)
            return
        except urllib.error.HTTPError:
            return  # answering, just not 2xx on this path
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class StandIn:
    proc: subprocess.Popen[bytes]
    url: str

    def count(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"count\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))


def start_standin(procs: Processes, latency: float, name: str) -> StandIn:
    log: IO[bytes] = (procs.logdir / f"{name}.log").open("ab")
    proc = procs.start(
        name,
        [sys.executable, "bench/standin.py", "--latency", str(latency), "--customer", CUSTOMER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("port "):
        raise RuntimeError(f"the Partnero stand-in did not start: {line!r}")
    return StandIn(proc, f"http://127.0.0.1:{int(line.split()[1])}/v1")


def start_uvicorn_app(procs: Processes, app: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = procs.start(
        app.rsplit(":", 1)[1],
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/", proc)
    return proc, url


def start_bridge(
    procs: Processes, workdir: Path, store: str, partnero: StandIn, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "store": store,
        "partnero": {
            "api_key": "test-partnero-key",
            "base_url": partnero.url,
            "max_requests_per_second": 1_000_000,
            "max_concurrency": 64,
        },
        "endpoints": {"ls": {"provider": "lemonsqueezy", "secret": SECRET, "customer_key": ["metadata.user_id"]}},
    }
    path = workdir / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = procs.start(
        f"bridge-{workdir.name}",
        [
            sys.executable,
            "-m",
            "bridge",
            "serve",
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "INFO",
            *extra,
        ],
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    return proc, url


# --- load ---------------------------------------------------------------------------------------------


def signed_bodies(first: int, count: int) -> list[tuple[str, bytes]]:
    """(hex signature, body) for `count` order_created bodies with order ids first, first+1, …"""
    template = json.loads(FIXTURE.read_text())
    out = []
    for n in range(first, first + count):
        template["data"]["id"] = str(n)
        template["data"]["attributes"]["order_number"] = n
        template["data"]["attributes"]["identifier"] = f"bench-{n:012d}"
        body = json.dumps(template, separators=(",", ":")).encode()
        out.append((hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(), body))
    return out


def write_requests(path: Path, bodies: list[tuple[str, bytes]]) -> None:
    with path.open("wb") as f:
        for signature, body in bodies:
            f.write(signature.encode() + b"\t" + body + b"\n")


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing Debian's package", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def _millis(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(procs: Processes, wrk: str, url: str, requests_file: Path, seconds: int, connections: int) -> WrkResult:
    proc = procs.start(
        "wrk",
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "signed_post.lua"),
            url + PATH,
            "--",
            PATH,
            str(requests_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.kill(proc)
    text = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    if not (rate and p50 and p99 and total):
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(float(rate.group(1)), _millis(p50.group(1)), _millis(p99.group(1)), int(total.group(1)), errors)


@dataclass
class FixedRateResult:
    offered_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


async def _fixed_rate(url: str, bodies: list[tuple[str, bytes]], rate: float, connections: int) -> FixedRateResult:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(due: float, signature: str, body: bytes) -> None:
            nonlocal errors
            headers = {"Content-Type": "application/json", "X-Signature": signature, "X-Event-Name": "order_created"}
            try:
                async with session.post(url + PATH, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - due)

        loop = asyncio.get_running_loop()
        started = time.perf_counter() + 0.1
        tasks = []
        for index, (signature, body) in enumerate(bodies):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(due, signature, body)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return FixedRateResult(
        rate, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000, errors
    )


def run_fixed_rate(url: str, bodies: list[tuple[str, bytes]], rate: float, connections: int) -> FixedRateResult:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(_fixed_rate(url, bodies, rate, connections))
    return asyncio.run(_fixed_rate(url, bodies, rate, connections))


# --- the bridge's backlog ------------------------------------------------------------------------------


def backlog(store: str) -> tuple[int, int, int]:
    """(calls not parsed yet, operations pending, operations delivered) straight from the store."""
    queries = (
        "SELECT COUNT(*) FROM calls WHERE status = 'received'",
        "SELECT COUNT(*) FROM operations WHERE status = 'pending'",
        "SELECT COUNT(*) FROM operations WHERE status = 'delivered'",
    )
    if store.startswith("sqlite"):
        conn = sqlite3.connect(f"file:{store.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=10)
        try:
            return tuple(conn.execute(q).fetchone()[0] for q in queries)  # type: ignore[return-value]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(store, autocommit=True) as pg:
        return tuple(pg.execute(q).fetchone()[0] for q in queries)  # type: ignore[index, return-value]


def stored_calls(store: str) -> int:
    return _count(store, "SELECT COUNT(*) FROM calls")


def stored_sales(store: str) -> int:
    return _count(store, "SELECT COUNT(*) FROM operations")


def _count(store: str, query: str) -> int:
    if store.startswith("sqlite"):
        conn = sqlite3.connect(f"file:{store.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(query).fetchone()[0])
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(store, autocommit=True) as pg:
        return int(pg.execute(query).fetchone()[0])  # type: ignore[index]


def profile(
    procs: Processes, where: Path | None, name: str, pid: int, seconds: int, gil: bool = False
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the bridge for `seconds` into `<where>/<name>.txt` (collapsed stacks), if asked;
    with `gil`, only the thread holding the GIL is sampled: where the Python CPU of the process goes."""
    if where is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return procs.start(
        f"py-spy-{name}",
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--output",
            str(where / f"{name}.txt"),
        ],
    )


def wait_profile(procs: Processes, profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        try:
            profiler.wait(timeout=60)
        finally:
            procs.kill(profiler)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass
class BridgeRun:
    store_name: str
    wrk: WrkResult
    fixed: FixedRateResult
    delivered_during_load: int
    stored_after_load: int
    drain_per_s: float
    drain_seconds: float
    drained: bool
    exactly_once: str
    rss_mb: float
    peak_rss_mb: float
    cpu_load: float  # CPU seconds of the bridge per second of the wrk run (1.0 = one core)
    cpu_drain: float
    fixed_no_worker: FixedRateResult | None = None  # the same fixed rate into `serve --no-worker`
    notes: list[str] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(store: str, standin: StandIn, timeout: float) -> tuple[float, float, bool, int]:
    """Poll until nothing is received or pending: (transactions/s, seconds, finished, delivered at start)."""
    _, _, delivered_start = backlog(store)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        received, pending, delivered = backlog(store)
        if received == 0 and pending == 0:
            finished = True
            break
        if time.monotonic() > deadline:
            finished = False
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    return (delivered - delivered_start) / seconds, seconds, finished, delivered_start


def measure_bridge(
    procs: Processes,
    wrk: str,
    tmp: Path,
    store_name: str,
    store: str,
    standin: StandIn,
    requests_file: Path,
    fixed_bodies: list[tuple[str, bytes]],
    args: argparse.Namespace,
) -> BridgeRun:
    workdir = tmp / store_name
    workdir.mkdir()
    if store == "sqlite":
        store = f"sqlite:///{workdir / 'bridge.db'}"
    proc, url = start_bridge(procs, workdir, store, standin)
    try:
        profiler = profile(procs, args.profile, f"{store_name}-ingest", proc.pid, args.seconds, args.profile_gil)
        cpu_started, wall_started = cpu_seconds(proc.pid), time.perf_counter()
        load = run_wrk(procs, wrk, url, requests_file, args.seconds, args.connections)
        cpu_load = (cpu_seconds(proc.pid) - cpu_started) / (time.perf_counter() - wall_started)
        _, _, delivered_during_load = backlog(store)
        stored = stored_calls(store)
        wait_profile(procs, profiler)
        profiler = profile(procs, args.profile, f"{store_name}-drain", proc.pid, 15, args.profile_gil)
        cpu_started = cpu_seconds(proc.pid)
        rate, seconds, finished, _ = drain(store, standin, args.drain_timeout)
        cpu_drain = (cpu_seconds(proc.pid) - cpu_started) / seconds
        wait_profile(procs, profiler)
        counted = standin.count()
        sales = stored_sales(store)
        exactly_once = (
            "yes"
            if finished and counted["transactions"] == counted["distinct"] == sales
            else f"NO: {counted['transactions']} posted, {counted['distinct']} distinct, {sales} stored"
        )
        rss, peak = rss_mb(proc.pid)
        fixed = run_fixed_rate(url, fixed_bodies, args.rate, args.connections)
        run = BridgeRun(
            store_name,
            load,
            fixed,
            delivered_during_load,
            stored,
            rate,
            seconds,
            finished,
            exactly_once,
            rss,
            peak,
            cpu_load,
            cpu_drain,
        )
        if store_name == "sqlite":
            procs.kill(proc)
            run.fixed_no_worker = fixed_rate_without_worker(procs, workdir, standin, fixed_bodies, args)
        if load.requests > args.bodies:
            run.notes.append(
                f"wrk sent {load.requests} requests but only {args.bodies} distinct bodies: raise --bodies"
            )
        return run
    finally:
        procs.kill(proc)


def fixed_rate_without_worker(
    procs: Processes, workdir: Path, standin: StandIn, bodies: list[tuple[str, bytes]], args: argparse.Namespace
) -> FixedRateResult:
    """The fixed-rate run into ingest alone (`serve --no-worker`, a fresh SQLite store): the latency the
    durable insert and the HTTP path allow before the worker shares the process."""
    alone = workdir / "no-worker"
    alone.mkdir()
    proc, url = start_bridge(procs, alone, f"sqlite:///{alone / 'bridge.db'}", standin, ("--no-worker",))
    try:
        return run_fixed_rate(url, bodies, args.rate, args.connections)
    finally:
        procs.kill(proc)


def fsync_ms(directory: Path, rounds: int = 200) -> tuple[float, float]:
    """p50 and p99 of one 4 KiB write + fsync in `directory`: every SQLite commit waits for one, and a
    webhook's answer waits for its commit (`synchronous=FULL`)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    took = []
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            took.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.99) - 1]


# --- the report -----------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


def report(
    bare: WrkResult,
    bare_fixed: FixedRateResult,
    naive: WrkResult,
    bridges: list[BridgeRun],
    args: argparse.Namespace,
    fsync: tuple[float, float],
) -> str:
    lines = [
        f"machine: {machine()}",
        f"fsync of 4 KiB where the store lives: p50 {fsync[0]:.2f} ms, p99 {fsync[1]:.2f} ms",
        f"wrk: 1 thread, {args.connections} connections, {args.seconds} s; fixed rate: {args.rate:.0f}/s for "
        f"{args.rate_seconds} s (open-loop aiohttp generator); Partnero stand-in 20 ms (naive: 100 ms)",
        "",
        "| target | req/s | p50 | p99 | vs bare | errors | p99 at fixed rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| bare Starlette (read body, 200) | {bare.requests_per_s:,.0f} | {bare.p50_ms:.1f} ms | {bare.p99_ms:.1f} ms "
        f"| 1.00 | {bare.errors} | {bare_fixed.p99_ms:.1f} ms |",
        f"| naive: verify + Partnero (100 ms) in the request | {naive.requests_per_s:,.0f} | {naive.p50_ms:.1f} ms "
        f"| {naive.p99_ms:.1f} ms | {naive.requests_per_s / bare.requests_per_s:.3f} | {naive.errors} | — |",
    ]
    for b in bridges:
        lines.append(
            f"| partnero-bridge serve ({b.store_name}) | {b.wrk.requests_per_s:,.0f} | {b.wrk.p50_ms:.1f} ms "
            f"| {b.wrk.p99_ms:.1f} ms | {b.wrk.requests_per_s / bare.requests_per_s:.3f} | {b.wrk.errors} "
            f"| {b.fixed.p99_ms:.1f} ms |"
        )
    lines += [
        "",
        "| bridge | calls stored in the load | delivered in it | drain tx/s | drain s | exactly once | RSS (peak) "
        "| CPU in the load | CPU in the drain |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for b in bridges:
        drained = f"{b.drain_seconds:.1f}" + ("" if b.drained else " (timed out)")
        lines.append(
            f"| {b.store_name} | {b.stored_after_load:,} | {b.delivered_during_load:,} | {b.drain_per_s:,.0f} "
            f"| {drained} | {b.exactly_once} | {b.rss_mb:.0f} MB ({b.peak_rss_mb:.0f} MB) "
            f"| {b.cpu_load:.2f} cores | {b.cpu_drain:.2f} cores |"
        )
    sqlite_run = bridges[0]
    ratio = sqlite_run.wrk.requests_per_s / bare.requests_per_s
    vs_naive = sqlite_run.wrk.requests_per_s / naive.requests_per_s
    lines += [
        "",
        "| goal | target | measured | |",
        "|---|---:|---:|---|",
        f"| ingest vs bare Starlette | ≥ {GOALS['ingest_ratio']} | {ratio:.3f} "
        f"| {verdict(ratio >= GOALS['ingest_ratio'])} |",
        f"| p99 at {args.connections} connections | ≤ {GOALS['p99_ms']:.0f} ms | {sqlite_run.wrk.p99_ms:.1f} ms "
        f"| {verdict(sqlite_run.wrk.p99_ms <= GOALS['p99_ms'])} |",
        f"| p99 at {args.rate:.0f}/s | ≤ {GOALS['p99_fixed_ms']:.0f} ms | {sqlite_run.fixed.p99_ms:.1f} ms "
        f"| {verdict(sqlite_run.fixed.p99_ms <= GOALS['p99_fixed_ms'])} |",
        f"| drain to a 20 ms Partnero | ≥ {GOALS['drain_per_s']:,.0f} tx/s | {sqlite_run.drain_per_s:,.0f} tx/s "
        f"| {verdict(sqlite_run.drain_per_s >= GOALS['drain_per_s'] and sqlite_run.exactly_once == 'yes')} |",
        f"| vs naive in-request handler | ≥ {GOALS['vs_naive']:.0f}x | {vs_naive:.1f}x "
        f"| {verdict(vs_naive >= GOALS['vs_naive'])} |",
        f"| RSS after the run | ≤ 150 MB | {sqlite_run.peak_rss_mb:.0f} MB peak "
        f"| {verdict(sqlite_run.peak_rss_mb <= 150)} |",
    ]
    if len(bridges) > 1:
        pg = bridges[1]
        ingest = pg.wrk.requests_per_s / sqlite_run.wrk.requests_per_s
        drain_ratio = pg.drain_per_s / sqlite_run.drain_per_s if sqlite_run.drain_per_s else 0.0
        lines.append(f"| PostgreSQL vs SQLite, ingest | ≥ 0.6 | {ingest:.2f} | {verdict(ingest >= 0.6)} |")
        lines.append(f"| PostgreSQL vs SQLite, drain | ≥ 0.6 | {drain_ratio:.2f} | {verdict(drain_ratio >= 0.6)} |")
    if sqlite_run.fixed_no_worker is not None:
        alone = sqlite_run.fixed_no_worker
        lines.append(
            f"| p99 at {args.rate:.0f}/s, worker off (`serve --no-worker`) | ≤ {GOALS['p99_fixed_ms']:.0f} ms "
            f"| {alone.p99_ms:.1f} ms | {verdict(alone.p99_ms <= GOALS['p99_fixed_ms'])} |"
        )
    for b in bridges:
        lines += [f"note ({b.store_name}): {n}" for n in b.notes]
    return "\n".join(lines)


@contextlib.contextmanager
def postgres_store() -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from tests.postgres_kit import throwaway_schema

    with throwaway_schema() as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="webhooks/s for the fixed-rate latency run")
    parser.add_argument("--rate-seconds", type=int, default=5)
    parser.add_argument("--bodies", type=int, default=60_000, help="distinct signed bodies wrk cycles through")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--postgres", action="store_true", help="also measure the bridge on PostgreSQL")
    parser.add_argument("--profile", type=Path, help="py-spy the bridge during ingest and drain into this folder")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: sample only the GIL holder")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp_dir:
        tmp = Path(tmp_dir)
        procs = Processes(tmp)
        try:
            requests_file = tmp / "requests.txt"
            write_requests(requests_file, signed_bodies(1, args.bodies))
            fixed_count = int(args.rate * args.rate_seconds)
            fixed_bodies = signed_bodies(10_000_000, fixed_count)

            fast = start_standin(procs, 0.02, "partnero-20ms")
            slow = start_standin(procs, 0.1, "partnero-100ms")

            bare_proc, bare_url = start_uvicorn_app(procs, "bench.compare_apps:bare", {})
            bare = run_wrk(procs, wrk, bare_url, requests_file, args.seconds, args.connections)
            bare_fixed = run_fixed_rate(bare_url, fixed_bodies, args.rate, args.connections)
            procs.kill(bare_proc)

            naive_env = {"BENCH_SECRET": SECRET, "BENCH_PARTNERO_URL": slow.url}
            naive_proc, naive_url = start_uvicorn_app(procs, "bench.compare_apps:naive", naive_env)
            naive = run_wrk(procs, wrk, naive_url, requests_file, args.seconds, args.connections)
            procs.kill(naive_proc)
            procs.kill(slow.proc)

            bridges = [measure_bridge(procs, wrk, tmp, "sqlite", "sqlite", fast, requests_file, fixed_bodies, args)]
            if args.postgres:
                procs.kill(fast.proc)
                fresh = start_standin(procs, 0.02, "partnero-20ms-pg")
                with postgres_store() as url:
                    bridges.append(
                        measure_bridge(procs, wrk, tmp, "postgresql", url, fresh, requests_file, fixed_bodies, args)
                    )
            print(report(bare, bare_fixed, naive, bridges, args, fsync_ms(tmp)))
        except BaseException:
            for log in sorted(tmp.glob("*.log")) + sorted(tmp.glob("*/*.log")):
                print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
        finally:
            procs.kill_all()


if __name__ == "__main__":
    main()

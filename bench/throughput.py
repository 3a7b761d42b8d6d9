"""Ingest and delivery throughput: SQLite vs PostgreSQL, one vs two processes, as ratios in one run.

    .venv/bin/python bench/throughput.py [--deliveries 3000] [--concurrency 32]

Each setup gets the same signed Dodo Payments deliveries from one aiohttp client over loopback and
delivers to the same Partnero test server. Ingest = signed deliveries answered 200 per second; delivery =
Partnero transactions created per second, from the first request to the last transaction. Absolute
numbers depend on the machine; the ratios against the SQLite single-process baseline, measured in the
same run, are what the docs quote. Needs PostgreSQL (BRIDGE_TEST_POSTGRES, default the local server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.signatures import standard_webhook_headers, standard_webhook_key  # noqa: E402
from tests.bridge_process import BridgeProcess  # noqa: E402
from tests.e2e_kit import FIXTURES, provider_cases  # noqa: E402
from tests.partnero_server import PartneroServer  # noqa: E402
from tests.postgres_kit import throwaway_schema  # noqa: E402

DODO = next(c for c in provider_cases() if c.provider == "dodopayments")


def bodies(count: int) -> list[tuple[str, bytes]]:
    template = json.loads((FIXTURES / "dodopayments" / "payment_succeeded.json").read_text())
    out = []
    for n in range(count):
        body = json.loads(json.dumps(template))
        body["data"].update(payment_id=f"pay_bench{n}", total_amount=1000 + n, metadata={"user_id": "bench"})
        out.append((f"msg_bench_{n}", json.dumps(body).encode()))
    return out


async def load(urls: list[str], deliveries: list[tuple[str, bytes]], concurrency: int) -> float:
    """Send every delivery once with `concurrency` connections; seconds until the last 200."""
    key = standard_webhook_key(DODO.secret)
    pending = list(enumerate(deliveries))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            while pending:
                index, (msg_id, body) = pending.pop()
                headers = {
                    "content-type": "application/json",
                    **standard_webhook_headers(key, msg_id, int(time.time()), body),
                }
                async with session.post(
                    f"{urls[index % len(urls)]}/webhooks/dodo", data=body, headers=headers
                ) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{response.status} {await response.text()}")
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def run_setup(name: str, store: str, processes: int, count: int, concurrency: int, tmp: Path) -> dict[str, Any]:
    with PartneroServer() as partnero:
        partnero.add_customer("bench")
        config = {
            "partnero": {
                "api_key": partnero.api_key,
                "base_url": partnero.url,
                "max_requests_per_second": 100_000,
                "max_concurrency": 16,
            },
            "delivery": {"poll_interval_seconds": 0.05, "timeout_seconds": 10},
            "store": store,
            "endpoints": {"dodo": DODO.endpoint_settings},
        }
        bridges = []
        try:
            for index in range(processes):
                workdir = tmp / f"{name}-{index}"
                workdir.mkdir()
                bridges.append(BridgeProcess(workdir, json.loads(json.dumps(config))).start())
            deliveries = bodies(count)
            started = time.perf_counter()
            ingest_seconds = asyncio.run(load([b.url for b in bridges], deliveries, concurrency))
            deadline = time.monotonic() + 600
            while len(partnero.transactions) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            delivery_seconds = time.perf_counter() - started
            assert len(partnero.transactions) == count, f"{name}: {len(partnero.transactions)} of {count} delivered"
        finally:
            for bridge in bridges:
                bridge.kill()
    return {"setup": name, "ingest_per_s": count / ingest_seconds, "delivery_per_s": count / delivery_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results.append(
            run_setup("sqlite, 1 process", f"sqlite:///{tmp / 'bench.db'}", 1, args.deliveries, args.concurrency, tmp)
        )
        with throwaway_schema() as url:
            results.append(run_setup("postgresql, 1 process", url, 1, args.deliveries, args.concurrency, tmp))
        with throwaway_schema() as url:
            results.append(run_setup("postgresql, 2 processes", url, 2, args.deliveries, args.concurrency, tmp))
    base = results[0]
    print(f"{args.deliveries} signed deliveries, {args.concurrency} concurrent clients\n")
    print("| setup | ingest /s | vs baseline | delivered /s | vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['setup']} | {r['ingest_per_s']:.0f} | {r['ingest_per_s'] / base['ingest_per_s']:.2f} "
            f"| {r['delivery_per_s']:.0f} | {r['delivery_per_s'] / base['delivery_per_s']:.2f} |"
        )


if __name__ == "__main__":
    main()

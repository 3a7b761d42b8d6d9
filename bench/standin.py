"""The Partnero stand-in for bench/compare.py, in a process of its own so it never shares a GIL with what it measures.

    python bench/standin.py --latency 0.02 --customer 123

Prints `port <n>` once serving; then answers `count` on stdin with a JSON line
`{"transactions": n, "distinct": d}` (created transactions, and how many distinct keys they hold).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.partnero_server import PartneroServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--customer", default="123")
    args = parser.parse_args()
    server = PartneroServer()
    # the tests' server speaks h11; the faster parser keeps the stand-in from being the bottleneck
    server._http._uvicorn.config.http = "httptools"
    server.latency = args.latency
    server.add_customer(args.customer)
    with server:
        print(f"port {server._http.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                keys = [t.key for t in server.transactions]
                print(json.dumps({"transactions": len(keys), "distinct": len(set(keys))}), flush=True)


if __name__ == "__main__":
    main()

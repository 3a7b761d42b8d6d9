"""The `partnero-bridge` command: serve, check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.config import Config, ConfigError, load_config, redact

log = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnero-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"partnero-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="receive webhooks and deliver them (worker embedded)")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="INFO")

    check = commands.add_parser("check-config", help="validate a configuration file and list its endpoints")
    check.add_argument("file", metavar="FILE")

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "serve":
        return serve_command(args.config, args.host, args.port, args.log_level)
    parser.error(f"unknown command {args.command}")
    return 2


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"configuration error in {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def check_config(path: str) -> int:
    config = _load(path)
    if config is None:
        return 2
    print(f"store: {config.store}")
    if not config.endpoints:
        print("no endpoints configured")
    for name, endpoint in config.endpoints.items():
        secrets = ", ".join(redact(s) for s in endpoint.adapter.secrets) or "(none)"
        mode = "dry-run" if endpoint.partnero.effective_dry_run else "live"
        print(
            f"{name}: POST /webhooks/{name}  provider={endpoint.provider}  secrets={secrets}  "
            f"customer_key={','.join(endpoint.settings.customer_key)}  test_mode={endpoint.settings.test_mode}  "
            f"partnero={endpoint.partnero.base_url} ({mode})"
        )
    return 0


def serve_command(path: str, host: str | None, port: int | None, log_level: str) -> int:
    from bridge.logs import setup_logging

    setup_logging(log_level)
    config = _load(path)
    if config is None:
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, host or config.server.host, port if port is not None else config.server.port))
    return 0


async def serve(config: Config, host: str, port: int) -> None:
    import uvicorn

    from bridge.app import create_app
    from bridge.delivery import Worker
    from bridge.store import open_store

    for endpoint in config.endpoints.values():
        if endpoint.partnero.effective_dry_run:
            reason = "dry_run: true" if endpoint.partnero.dry_run else "no partnero.api_key"
            log.warning("DRY RUN for endpoint %s (%s): events are recorded, nothing is sent", endpoint.name, reason)
    store = open_store(config.store)
    await store.open()
    worker = Worker(config, store)
    app = create_app(config, store, worker)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    )
    stopping = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(stopping))
    try:
        await server.serve()
    finally:
        stopping.set()
        worker.wake()
        await worker_task
        await worker.aclose()
        await store.close()

"""The operator console (`/admin`) and `/metrics`: on the bridge's port, or on a listener of its own."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bridge.config import Config
from bridge.console.routes import console_routes
from bridge.delivery import Worker
from bridge.store.base import Store


def own_listener(config: Config) -> bool:
    """The console moves off the webhook port when `admin.port` names another port."""
    return config.admin.enabled and config.admin.port is not None and config.admin.port != config.server.port


def mounted_routes(config: Config, store: Store, worker: Worker | None) -> list[BaseRoute]:
    """What the webhook app serves of the console: everything, unless it is off or has its own listener."""
    if not config.admin.enabled or own_listener(config):
        return []
    return console_routes(config, store, worker)


def console_app(config: Config, store: Store, worker: Worker | None) -> Starlette:
    return Starlette(routes=console_routes(config, store, worker))


def console_url(config: Config, host: str, port: int) -> str | None:
    if not config.admin.enabled:
        return None
    if own_listener(config):
        host, port = config.admin.host or host, config.admin.port or port
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/admin"

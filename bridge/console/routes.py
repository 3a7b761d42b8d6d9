"""The console's HTTP side: `/admin` pages (GET shows, POST changes) and `/metrics`.

Every page has a JSON twin (`?format=json`) with the same data. State changes — replay, bulk replay,
pause, resume — are POST forms, refused without a session or token (401, or a 303 to the login form
for a page) and from another origin (403); nothing changes on GET.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from bridge import admin
from bridge.config import Config
from bridge.console import auth, views
from bridge.delivery import Worker
from bridge.metrics import exposition
from bridge.signups import SIGNUP_ENDPOINT
from bridge.store.base import Store

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
STATUSES = ("pending", "delivered", "skipped", "dead", "duplicate", "ignored", "failed")
KINDS = ("sale", "refund", "dispute", "ignored", "signup", "unparsed")
NOTICES = {
    "paused": "Delivery to that program is paused. Operations wait in the queue until you resume.",
    "resumed": "Delivery resumed; waiting operations go out within the poll interval.",
    "replayed": "Replay queued for {n} event(s).",
    "logged_out": "You are logged out.",
}
Handler = Callable[[Request], Awaitable[Response]]


def console_routes(config: Config, store: Store, worker: Worker | None) -> list[BaseRoute]:
    """`/admin/...` and `/metrics`, for the main app or the console's own listener."""
    settings = config.admin
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    endpoints = sorted(config.endpoints)

    def guarded(handler: Handler, changes_state: bool = False) -> Handler:
        async def run(request: Request) -> Response:
            refused = auth.refuse(request, settings, changes_state)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except admin.AdminError as exc:
                return render(request, "error.html", {"message": str(exc)}, status=_status_of(exc))

        return run

    def render(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse({k: v for k, v in data.items() if k != "svg"}, status_code=status)
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        context = {
            **data,
            "endpoints": endpoints,
            "statuses": STATUSES,
            "kinds": KINDS,
            "notice": notice.format(n=_int(request.query_params.get("n"))),
        }
        return templates.TemplateResponse(request, template, context, status_code=status)

    async def overview(request: Request) -> Response:
        data = await views.overview(config, store, worker)
        if request.query_params.get("format") == "json":
            for chart in data["charts"]:
                chart.pop("svg")
        return render(request, "overview.html", data)

    async def events(request: Request) -> Response:
        params = dict(request.query_params)
        flt, page = views.event_filter(params, PAGE_SIZE)
        rows = await admin.list_rows(store, flt)
        return render(request, "events.html", _paged(rows, page, params, "events"))

    async def event(request: Request) -> Response:
        ident = request.path_params["ident"]
        return render(request, "event.html", {"event": await views.event_detail(config, store, ident)})

    async def replay_one(request: Request) -> Response:
        result = await admin.replay_one(store, request.path_params["ident"])
        if request.query_params.get("format") == "json":
            return JSONResponse({"id": result.ident, "replayed": result.replayed, "detail": result.detail})
        target = f"/admin/events/{result.ident}"
        return RedirectResponse(f"{target}?notice=replayed&n={int(result.replayed)}", status_code=303)

    async def dead(request: Request) -> Response:
        params = dict(request.query_params)
        flt, page = views.event_filter({**params, "status": params.get("status") or "dead"}, PAGE_SIZE)
        if flt.status not in ("dead", "failed"):
            raise admin.AdminError(f"status {flt.status!r}: dead letters are dead or failed")
        rows = await admin.list_rows(store, flt)
        return render(request, "dead.html", _paged(rows, page, params, "dead"))

    async def bulk_targets(params: dict[str, str]) -> list[str]:
        status = params.get("status") or "dead"
        flt, _ = views.event_filter({**params, "status": status, "page": ""}, PAGE_SIZE)
        return await admin.replay_targets(store, status, replace(flt, offset=0))

    async def confirm_bulk(request: Request) -> Response:
        params = _filters(dict(request.query_params))
        targets = await bulk_targets(params)
        return render(request, "confirm.html", {"count": len(targets), "filters": params})

    async def bulk_replay(request: Request) -> Response:
        form = await request.form()
        params = _filters({k: str(v) for k, v in form.items()})
        if form.get("confirm") != "yes":
            raise admin.AdminError("bulk replay needs the confirmation (confirm=yes)")
        replayed = 0
        for ident in await bulk_targets(params):
            replayed += (await admin.replay_one(store, ident)).replayed
        if request.query_params.get("format") == "json":
            return JSONResponse({"replayed": replayed})
        return RedirectResponse(f"/admin/dead?{urlencode({**params, 'notice': 'replayed', 'n': replayed})}", 303)

    def program_action(paused: bool) -> Handler:
        async def act(request: Request) -> Response:
            scope = request.path_params["scope"]
            if scope not in views.programs(config):
                return render(request, "error.html", {"message": f"no Partnero program {scope}"}, status=404)
            changed = await store.run(lambda tx: tx.set_program_paused(scope, paused, time.time()))
            if request.query_params.get("format") == "json":
                return JSONResponse({"program": scope, "paused": paused, "changed": changed})
            return RedirectResponse(f"/admin?notice={'paused' if paused else 'resumed'}", status_code=303)

        return act

    async def signups(request: Request) -> Response:
        params = dict(request.query_params)
        _, page = views.event_filter({"page": params.get("page", "")}, PAGE_SIZE)
        rows = await views.signups(store, page, PAGE_SIZE)
        return render(request, "signups.html", _paged(rows, page, params, "signups"))

    async def login_form(request: Request) -> Response:
        return render(request, "login.html", {"next": auth.safe_next(request.query_params.get("next")), "error": ""})

    async def login(request: Request) -> Response:
        if not auth.same_origin(request):
            return render(request, "login.html", {"next": "/admin", "error": "cross-origin login refused"}, 403)
        form = await request.form()
        target = auth.safe_next(str(form.get("next") or ""))
        if not auth.valid_token(settings, str(form.get("token") or "")):
            return render(request, "login.html", {"next": target, "error": "That is not the admin token."}, 401)
        response = RedirectResponse(target, status_code=303)
        auth.set_session(response, request, settings)
        return response

    async def logout(request: Request) -> Response:
        if not auth.same_origin(request):
            return render(request, "error.html", {"message": "cross-origin request refused"}, status=403)
        response = RedirectResponse("/admin/login?notice=logged_out", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/admin")
        return response

    async def metrics(request: Request) -> Response:
        if auth.bearer_ok(settings, request) is not True:
            return Response("send Authorization: Bearer <admin token>", status_code=401, media_type="text/plain")
        body, content_type = exposition(await views.gauges(config, store, worker), request.headers.get("accept"))
        return Response(body, media_type=content_type)

    admin_routes: list[BaseRoute] = [
        Route("/", guarded(overview), methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", guarded(events), methods=["GET"]),
        Route("/events/{ident}", guarded(event), methods=["GET"]),
        Route("/events/{ident}/replay", guarded(replay_one, changes_state=True), methods=["POST"]),
        Route("/dead", guarded(dead), methods=["GET"]),
        Route("/dead/replay", guarded(confirm_bulk), methods=["GET"]),
        Route("/dead/replay", guarded(bulk_replay, changes_state=True), methods=["POST"]),
        Route("/programs/{scope}/pause", guarded(program_action(True), changes_state=True), methods=["POST"]),
        Route("/programs/{scope}/resume", guarded(program_action(False), changes_state=True), methods=["POST"]),
        Route("/signups", guarded(signups), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return [
        Route("/admin", guarded(overview), methods=["GET"]),
        Mount("/admin", routes=admin_routes),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _paged(rows: list[dict[str, Any]], page: int, params: dict[str, str], view: str) -> dict[str, Any]:
    more = len(rows) > PAGE_SIZE
    base = {k: v for k, v in params.items() if k not in ("page", "format", "notice", "n") and v}

    def link(number: int) -> str:
        return f"/admin/{view}?{urlencode({**base, 'page': number})}"

    return {
        "rows": rows[:PAGE_SIZE],
        "page": page,
        "filters": base,
        "newer": link(page - 1) if page > 1 else None,
        "older": link(page + 1) if more else None,
        "signup_endpoint": SIGNUP_ENDPOINT,
    }


def _filters(params: dict[str, str]) -> dict[str, str]:
    return {k: params[k] for k in ("endpoint", "since", "until", "q", "status", "kind") if params.get(k)}


def _status_of(exc: admin.AdminError) -> int:
    return 404 if str(exc).startswith(("no event", "no call")) else 400


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 10 else 0

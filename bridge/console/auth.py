"""Who may use the console: the admin token as a Bearer header (scripts, Prometheus) or a session cookie
from the login form (people); and state changes only from the console's own origin.

The session cookie is `<expiry>.<HMAC of the expiry under the token>`: nothing is kept on the server, and
changing the token ends every session. It is HttpOnly and SameSite=Strict (Secure on HTTPS); the Origin
check on every POST covers what SameSite does not (another port of the same host is the same site).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from bridge.config import AdminSettings

COOKIE = "partnero_bridge_session"
LOGIN_PATH = "/admin/login"


def _signature(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"session:{expires}".encode(), hashlib.sha256).hexdigest()


def session_value(settings: AdminSettings, now: float) -> str:
    expires = int(now + settings.session_hours * 3600)
    return f"{expires}.{_signature(settings.token, expires)}"


def valid_session(settings: AdminSettings, value: str | None, now: float) -> bool:
    if not value or "." not in value:
        return False
    expires_text, signature = value.split(".", 1)
    if not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    return expires > now and hmac.compare_digest(signature.encode(), _signature(settings.token, expires).encode())


def valid_token(settings: AdminSettings, given: str) -> bool:
    return bool(settings.token) and hmac.compare_digest(given.encode(), settings.token.encode())


def bearer_ok(settings: AdminSettings, request: Request) -> bool | None:
    """True or False when an Authorization header was sent, None when there is none."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and valid_token(settings, given.strip())


def same_origin(request: Request) -> bool:
    """The request comes from a page of this very origin (scheme, host and port)."""
    sent = request.headers.get("origin")
    if sent is None:
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        sent = f"{parts.scheme}://{parts.netloc}"
    host = request.headers.get("host", "")
    return bool(host) and sent.lower() == f"{request.url.scheme}://{host}".lower()


def refuse(request: Request, settings: AdminSettings, changes_state: bool) -> Response | None:
    """None when the request may go on; else the answer to give (401, 403, or 303 to the login form)."""
    bearer = bearer_ok(settings, request)
    if bearer is True:
        return None  # a browser never adds a Bearer header on its own: no cross-site risk
    if bearer is False:
        return PlainTextResponse("wrong or malformed bearer token", status_code=401)
    if valid_session(settings, request.cookies.get(COOKIE), time.time()):
        if changes_state and not same_origin(request):
            return PlainTextResponse("cross-origin request refused", status_code=403)
        return None
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
    return PlainTextResponse("log in at /admin/login or send Authorization: Bearer <admin token>", status_code=401)


def set_session(response: Response, request: Request, settings: AdminSettings) -> None:
    response.set_cookie(
        COOKIE,
        session_value(settings, time.time()),
        max_age=int(settings.session_hours * 3600),
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin"

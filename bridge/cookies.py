"""Reading the referring partner's key from a request's Cookie header, for merchants' sign-up code.

PartneroJS stores the partner's key in the first-party cookie `partnero_partner`; the merchant's backend
reads it at sign-up and passes it to the relay (`POST /signups`, `partner.key`).
"""

from __future__ import annotations

import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote

PARTNER_COOKIE = "partnero_partner"
# partner keys are short tokens; anything else in the cookie is not one (and must not reach Partnero)
_KEY = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


def partner_key_from_cookie_header(header: str | None, name: str = PARTNER_COOKIE) -> str | None:
    """The partner key in a `Cookie:` header value, or None when absent, empty or malformed."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        # one malformed cookie makes SimpleCookie give up on the whole header: read ours by hand
        return _by_hand(header, name)
    morsel = jar.get(name)
    value = morsel.value if morsel is not None else _by_hand(header, name)
    return _clean(value)


def _by_hand(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = unquote(value.strip().strip('"')).strip()
    return value if _KEY.match(value) else None

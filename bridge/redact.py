"""What may be shown of a URL: everything but its credentials (user info, secret-looking parameters)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameters that carry credentials (libpq's password/sslpassword, API keys and tokens)
_SECRET_PARAMETER_PARTS = ("pass", "secret", "token", "key", "auth", "sig", "cred")


def redact_url(url: str) -> str:
    """`url` with any password (or bare token) in its user info and secret-looking query values masked.

    A URL that does not parse is not shown at all: guessing where its password is would be unsafe.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises ValueError here, not later
    except ValueError:
        return "(a URL that does not parse; not shown)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        # a user name alone may itself be the credential (https://<token>@host): mask it too
        netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _is_secret_parameter(k) else v) for k, v in pairs], safe="*")
    if (netloc, query, parts.fragment) == (parts.netloc, parts.query, ""):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_PARAMETER_PARTS)


def describe(value: object) -> str:
    """What an error may say about a payload value: its kind and size, never the value.

    Parse errors end up in the log and the console; the value in a wrong field can be anything the
    buyer typed (an email placed in an amount field appeared in the JSON log), so it is never quoted.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return f"text of {len(value)} characters"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"
